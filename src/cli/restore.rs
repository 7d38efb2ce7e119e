//! `pacsbak restore ...`: the restore commands. `restore db plan` works out the
//! restore sequence from backup files alone, for when msdb is gone with the server.
//!
//! The subcommands are nested (`restore db plan`, later `restore db run`,
//! `restore files`) so each kind of restore has its own group.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::bakfile::plan::{describe_folder, plan, PlanRequest};
use crate::bakfile::MtfDate;

/// `pacsbak restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(subcommand)]
    pub command: RestoreCommand,
}

/// What to restore.
#[derive(Debug, Subcommand)]
pub enum RestoreCommand {
    /// Files of a snapshot (program folders, backup files) into a folder.
    Files(super::restore_files::RestoreFilesArgs),
    /// A SQL Server database.
    Db(DbArgs),
}

/// `pacsbak restore db`.
#[derive(Debug, Args)]
pub struct DbArgs {
    #[command(subcommand)]
    pub command: DbCommand,
}

/// Database restore steps.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Work out the restore sequence (full, differential, logs) by LSN, from a
    /// folder of backup files or (without --from-folder) from the repository alone.
    Plan(PlanArgs),
    /// Fetch the chain from the repository and run the RESTORE sequence.
    Run(RunArgs),
}

/// Arguments of `restore db run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Policy whose instance restores (and whose staging folder it reads).
    #[arg(long)]
    pub policy: String,
    /// Database whose backups to restore.
    #[arg(long)]
    pub database: String,
    /// Point in time, server local time.
    #[arg(long)]
    pub at: Option<String>,
    /// Name to restore as (e.g. PACS_drill).
    #[arg(long = "as")]
    pub as_name: String,
    /// Folder for the data files, as SQL Server sees it.
    #[arg(long)]
    pub move_data: String,
    /// Folder for the log files, as SQL Server sees it.
    #[arg(long)]
    pub move_log: String,
    /// Replace an existing database of that name.
    #[arg(long)]
    pub replace: bool,
    /// Storage target to restore from.
    #[arg(long)]
    pub target: Option<String>,
}

/// Arguments of `restore db plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Folder of .bak/.trn files; without it, the repository's manifests.
    #[arg(long)]
    pub from_folder: Option<PathBuf>,
    /// Storage target (when planning from the repository).
    #[arg(long)]
    pub target: Option<String>,
    /// Database to plan for (required when the folder holds several).
    #[arg(long)]
    pub database: Option<String>,
    /// Point in time, server local time: "2026-11-25 03:00:00" or "2026-11-25T03:00:00".
    #[arg(long)]
    pub at: Option<String>,
}

/// Runs `restore`.
pub fn run(global: &super::GlobalArgs, args: RestoreArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RestoreCommand::Files(f) => super::restore_files::run(global, f),
        RestoreCommand::Db(db) => match &db.command {
            DbCommand::Plan(p) => run_plan(global, p),
            DbCommand::Run(r) => run_restore(global, r),
        },
    }
}

/// Parses `--at`.
fn parse_at(s: &str) -> anyhow::Result<MtfDate> {
    MtfDate::parse_text(s).with_context(|| format!("--at {s:?}: expected YYYY-MM-DD HH:MM[:SS]"))
}

fn run_plan(global: &super::GlobalArgs, args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let json = global.json;
    let at = args.at.as_deref().map(parse_at).transpose()?;
    let (p, from) = match &args.from_folder {
        Some(folder) => {
            let (descriptions, unreadable) =
                describe_folder(folder).with_context(|| format!("reading {}", folder.display()))?;
            let req = PlanRequest {
                database: args.database.clone(),
                at,
            };
            let mut p = plan(&descriptions, &req);
            p.skipped.extend(unreadable);
            (p, folder.display().to_string())
        }
        None => {
            let db = args
                .database
                .clone()
                .context("--database is required when planning from the repository")?;
            let rt = super::context::runtime()?;
            rt.block_on(async {
                let repo = super::context::open_repository(global, args.target.as_deref()).await?;
                let p = crate::jobs::restore_db::plan_from_repository(&repo, &db, at).await?;
                anyhow::Ok((p, format!("the repository on {}", repo.storage().name())))
            })?
        }
    };
    print_plan(&p, &from, json)
}

/// Prints a plan; exit 1 when it is broken.
pub fn print_plan(
    p: &crate::bakfile::RestorePlan,
    from: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &p)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "Restore plan for [{}] from {}{}",
            p.database.as_deref().unwrap_or("?"),
            from,
            p.at.map(|a| format!(" to {a}")).unwrap_or_default()
        )?;
        for (i, s) in p.steps.iter().enumerate() {
            let last = i + 1 == p.steps.len();
            let recovery = if last { "RECOVERY" } else { "NORECOVERY" };
            let stop = s
                .stop_at
                .map(|a| format!(", STOPAT = '{a}'"))
                .unwrap_or_default();
            writeln!(
                out,
                "  {}. {:<12} {}  (taken {}, LSN {} .. {})  WITH {}{}",
                i + 1,
                s.kind,
                s.files.join(" + "),
                s.backup_start_date.map_or("?".into(), |d| d.to_string()),
                s.first_lsn.map_or("?".into(), |l| l.to_string()),
                s.last_lsn.map_or("?".into(), |l| l.to_string()),
                recovery,
                stop
            )?;
        }
        for s in &p.skipped {
            writeln!(out, "  not used: {}: {}", s.source, s.reason)?;
        }
        for pr in &p.problems {
            writeln!(out, "  PROBLEM: {pr}")?;
        }
        writeln!(
            out,
            "  verdict: {}",
            if p.ok {
                "OK"
            } else {
                "BROKEN: the restore cannot reach its target"
            }
        )?;
    }
    Ok(if p.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn run_restore(global: &super::GlobalArgs, a: &RunArgs) -> anyhow::Result<ExitCode> {
    let at = a.at.as_deref().map(parse_at).transpose()?;
    let (cfg, policy) = super::context::load_policy(global, &a.policy)?;
    let rt = super::context::runtime()?;
    rt.block_on(async {
        let target = a.target.clone().or_else(|| policy.targets.first().cloned());
        let t = cfg.target(target.as_deref())?;
        let pass = crate::config::repository_passphrase(&cfg.main, &cfg.dir)?;
        let repo = crate::repository::Repository::open(t.open()?, &pass).await?;
        let instance = crate::sqlserver::Instance::open(&policy.instance_spec()?).await?;
        let o = crate::jobs::restore_db::RestoreDbOptions {
            database: a.database.clone(),
            at,
            as_name: a.as_name.clone(),
            move_data: a.move_data.clone(),
            move_log: a.move_log.clone(),
            replace: a.replace,
        };
        let r = crate::jobs::restore_db::run(&policy, &instance, &repo, &o).await?;
        if global.json {
            super::context::print_json(&r)?;
        } else {
            println!(
                "Restored [{}] as [{}] from the repository on {}",
                a.database, a.as_name, t.name
            );
            for f in &r.staged {
                println!("  staged  {f}");
            }
            for s in &r.statements {
                println!("  ran     {s}");
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

//! `pacsbak restore ...`: the restore commands. `restore db plan` works out the
//! restore sequence from backup files alone, for when msdb is gone with the server.
//!
//! The subcommands are nested (`restore db plan`, later `restore db run`,
//! `restore files`) so each kind of restore has its own group.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::context::{finish, load_policy, open_repository, runtime};
use crate::bakfile::plan::{plan_folder, PlanRequest};
use crate::bakfile::MtfDate;
use crate::outcome::{Outcome, PlanOutcome};

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
    /// Every file of the chain into one folder, in restore order, with the T-SQL
    /// that restores them (for a DBA restoring by hand after a disaster).
    Fetch(FetchArgs),
}

/// Arguments of `restore db fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Database whose backups to fetch.
    #[arg(long)]
    pub database: String,
    /// Point in time, server local time.
    #[arg(long)]
    pub at: Option<String>,
    /// The folder to write the files into (the new server must read it).
    #[arg(long)]
    pub to: PathBuf,
    /// Storage target to read.
    #[arg(long)]
    pub target: Option<String>,
    /// Data files' folder on the server restored to: the T-SQL gets MOVE clauses.
    #[arg(long)]
    pub move_data: Option<String>,
    /// Log files' folder (default: the data folder).
    #[arg(long)]
    pub move_log: Option<String>,
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
    /// Keep the staged backup files after the restore (removed by default: they are
    /// patient data outside the encrypted repository).
    #[arg(long)]
    pub keep_staging: bool,
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
            DbCommand::Fetch(f) => run_fetch(global, f),
        },
    }
}

/// Parses `--at`.
fn parse_at(s: &str) -> anyhow::Result<MtfDate> {
    MtfDate::parse_text(s).with_context(|| format!("--at {s:?}: expected YYYY-MM-DD HH:MM[:SS]"))
}

fn run_plan(global: &super::GlobalArgs, args: &PlanArgs) -> anyhow::Result<ExitCode> {
    let at = args.at.as_deref().map(parse_at).transpose()?;
    let (plan, from) = match &args.from_folder {
        Some(folder) => {
            let req = PlanRequest {
                database: args.database.clone(),
                at,
            };
            let p = plan_folder(folder, &req)
                .with_context(|| format!("reading {}", folder.display()))?;
            (p, folder.display().to_string())
        }
        None => {
            let db = args
                .database
                .clone()
                .context("--database is required when planning from the repository")?;
            let rt = runtime()?;
            rt.block_on(async {
                let repo = open_repository(global, args.target.as_deref()).await?;
                let p = crate::jobs::restore_db::plan_from_repository(&repo, &db, at).await?;
                anyhow::Ok((p, format!("the repository on {}", repo.storage().name())))
            })?
        }
    };
    finish(
        &Outcome::RestorePlan(PlanOutcome { from, plan }),
        global.json,
    )
}

fn run_restore(global: &super::GlobalArgs, a: &RunArgs) -> anyhow::Result<ExitCode> {
    let at = a.at.as_deref().map(parse_at).transpose()?;
    let (_cfg, policy) = load_policy(global, &a.policy)?;
    let rt = runtime()?;
    rt.block_on(async {
        let target = policy.restore_target(a.target.as_deref());
        let repo = open_repository(global, target).await?;
        let instance = crate::sqlserver::Instance::open(&policy.instance_spec()?).await?;
        let o = crate::jobs::restore_db::RestoreDbOptions {
            database: a.database.clone(),
            at,
            as_name: a.as_name.clone(),
            move_data: a.move_data.clone(),
            move_log: a.move_log.clone(),
            replace: a.replace,
            keep_staging: a.keep_staging,
            cancel: Default::default(),
        };
        let r = crate::jobs::restore_db::run(&policy, &instance, &repo, &o).await?;
        finish(&Outcome::RestoreDb(r), global.json)
    })
}

fn run_fetch(global: &super::GlobalArgs, a: &FetchArgs) -> anyhow::Result<ExitCode> {
    let at = a.at.as_deref().map(parse_at).transpose()?;
    let rt = runtime()?;
    rt.block_on(async {
        let repo = open_repository(global, a.target.as_deref()).await?;
        let o = crate::jobs::restore_db::FetchOptions {
            database: a.database.clone(),
            at,
            to: a.to.clone(),
            move_data: a.move_data.clone(),
            move_log: a.move_log.clone(),
        };
        let r = crate::jobs::restore_db::fetch(&repo, &o).await?;
        finish(&Outcome::RestoreFetch(r), global.json)
    })
}

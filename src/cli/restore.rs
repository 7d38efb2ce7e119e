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
    /// Work out the restore sequence (full, differential, logs) by LSN.
    Plan(PlanArgs),
}

/// Arguments of `restore db plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Folder of .bak/.trn files.
    #[arg(long)]
    pub from_folder: PathBuf,
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
            DbCommand::Plan(p) => run_plan(p, global.json),
        },
    }
}

/// Parses `--at`.
fn parse_at(s: &str) -> anyhow::Result<MtfDate> {
    MtfDate::parse_text(s).with_context(|| format!("--at {s:?}: expected YYYY-MM-DD HH:MM[:SS]"))
}

fn run_plan(args: &PlanArgs, json: bool) -> anyhow::Result<ExitCode> {
    let at = args.at.as_deref().map(parse_at).transpose()?;
    let (descriptions, unreadable) = describe_folder(&args.from_folder)
        .with_context(|| format!("reading {}", args.from_folder.display()))?;
    let req = PlanRequest {
        database: args.database.clone(),
        at,
    };
    let mut p = plan(&descriptions, &req);
    p.skipped.extend(unreadable);
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
            args.from_folder.display(),
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

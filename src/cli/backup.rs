//! `pacsbak backup files|db|folders|manual`: snapshot folders and files into the
//! repository; native SQL Server backups, program folders and the manual
//! pre-upgrade backup of a policy.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::context::{finish, open_repository, runtime};
use super::GlobalArgs;
use crate::outcome::Outcome;
use crate::records::Series;
use crate::repository::BackupOptions;

/// Backups.
#[derive(Debug, Args)]
pub struct BackupArgs {
    #[command(subcommand)]
    command: BackupCommand,
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// Back up folders (program folders) or single files (.bak, .trn).
    Files {
        /// Storage target (optional when there is only one).
        #[arg(long)]
        target: Option<String>,
        /// Tag the snapshot (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Folders or files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Native SQL Server backups of a policy's databases, verified and offsite.
    Db {
        /// Policy name (policies/NAME.toml) or file.
        #[arg(long)]
        policy: String,
        /// full, diff or log (default: what the policy's schedules make due now).
        #[arg(long = "type")]
        kind: Option<crate::records::BackupKind>,
        /// Only this database.
        #[arg(long)]
        database: Option<String>,
    },
    /// The program folders of a policy (server and workstations): all of them, or
    /// with `--due` those whose schedule fired since their last good copy.
    Folders {
        /// Policy name or file.
        #[arg(long)]
        policy: String,
        /// Only this folder (by its name in the policy); repeatable.
        #[arg(long = "folder")]
        folders: Vec<String>,
        /// Only folders that are due by their schedules (for Task Scheduler or cron).
        #[arg(long)]
        due: bool,
    },
    /// Before an upgrade: COPY_ONLY fulls of every database and the program
    /// folders (server and workstations), offsite, verified, pinned.
    Manual {
        /// Policy name or file.
        #[arg(long)]
        policy: String,
        /// Why (recorded in every snapshot).
        #[arg(long)]
        reason: String,
    },
}

/// Runs `backup ...`.
pub fn run(global: &GlobalArgs, args: BackupArgs) -> anyhow::Result<ExitCode> {
    let (target, tags, paths) = match args.command {
        BackupCommand::Files {
            target,
            tags,
            paths,
        } => (target, tags, paths),
        BackupCommand::Db {
            policy,
            kind,
            database,
        } => return super::backup_db::run_db(global, &policy, kind, database),
        BackupCommand::Folders {
            policy,
            folders,
            due,
        } => return super::backup_db::run_folders(global, &policy, folders, due),
        BackupCommand::Manual { policy, reason } => {
            return super::backup_db::run_manual(global, &policy, &reason)
        }
    };
    let rt = runtime()?;
    rt.block_on(async {
        let repo = open_repository(global, target.as_deref()).await?;
        // The same sources again are the next version of the same series.
        let opts = BackupOptions {
            tags,
            series: Series::files(&paths).key(),
            ..BackupOptions::default()
        };
        let report = repo.backup(&paths, &opts).await?;
        finish(&Outcome::BackupFiles(report), global.json)
    })
}

//! `pacsbak backup files`: snapshot folders and files into the repository.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::context::{human_bytes, open_repository, print_json, runtime};
use super::GlobalArgs;
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
}

/// Runs `backup ...`.
pub fn run(global: &GlobalArgs, args: BackupArgs) -> anyhow::Result<ExitCode> {
    let BackupCommand::Files {
        target,
        tags,
        paths,
    } = args.command;
    let rt = runtime()?;
    rt.block_on(async {
        let repo = open_repository(global, target.as_deref()).await?;
        let opts = BackupOptions {
            tags,
            ..BackupOptions::default()
        };
        let report = repo.backup(&paths, &opts).await?;
        let s = &report.summary;
        if global.json {
            print_json(&report)?;
        } else {
            println!("snapshot {} saved", report.snapshot_id.short());
            println!(
                "  {} files, {} folders, {} links, {} read",
                s.files,
                s.dirs,
                s.symlinks,
                human_bytes(s.bytes_read)
            );
            println!(
                "  {} new chunks ({}), {} added to the repository",
                s.new_chunks,
                human_bytes(s.new_bytes),
                human_bytes(s.added_bytes)
            );
            if report.adopted_packs > 0 {
                println!(
                    "  reused {} packs left by an interrupted backup",
                    report.adopted_packs
                );
            }
            for e in &s.errors {
                eprintln!("  not backed up: {e}");
            }
        }
        Ok(if s.errors.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

//! `pacsbak restore files SNAP --to DIR`: files back from the repository.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::context::{open_repository, print_json, runtime};
use super::GlobalArgs;
use crate::render::human_bytes;
use crate::repository::RestoreOptions;

/// Options of `restore files`.
#[derive(Debug, Args)]
pub struct RestoreFilesArgs {
    /// Storage target (optional when there is only one).
    #[arg(long)]
    target: Option<String>,
    /// Snapshot id (prefix) or `latest` (the newest that `--kind`/`--tag` select).
    snapshot: String,
    #[command(flatten)]
    filter: super::filter::FilterArgs,
    /// Folder to restore into (created if missing).
    #[arg(long)]
    to: PathBuf,
    /// Only this path inside the snapshot.
    #[arg(long)]
    path: Option<String>,
    /// Replace files that already exist.
    #[arg(long)]
    overwrite: bool,
}

/// Runs `restore files`; exit code 1 when any file failed.
pub fn run(global: &GlobalArgs, args: RestoreFilesArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async {
        let repo = open_repository(global, args.target.as_deref()).await?;
        let snap = repo
            .find_snapshot_matching(&args.snapshot, &args.filter.filter())
            .await?;
        let opts = RestoreOptions {
            path: args.path,
            overwrite: args.overwrite,
        };
        let report = repo.restore(&snap, &args.to, &opts).await?;
        if global.json {
            print_json(&report)?;
        } else {
            println!(
                "restored {} files ({}), {} folders, {} links from {} into {}; every file's blake3 verified",
                report.files,
                human_bytes(report.bytes),
                report.dirs,
                report.symlinks,
                snap.id.short(),
                args.to.display()
            );
            for e in &report.errors {
                eprintln!("FAILED {e}");
            }
        }
        Ok(super::context::done(report.errors.is_empty()))
    })
}

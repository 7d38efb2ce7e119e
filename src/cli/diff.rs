//! `pacsbak diff A B`: the file update record between two snapshots.

use std::process::ExitCode;

use clap::Args;

use super::context::{open_repository, print_json, runtime};
use super::GlobalArgs;
use crate::render::human_bytes;
use crate::repository::{diff_snapshots, ChangeKind};

/// Options of `diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Storage target (optional when there is only one).
    #[arg(long)]
    target: Option<String>,
    /// Older snapshot (id prefix).
    old: String,
    /// Newer snapshot (id prefix, or `latest`: the newest of the older one's source,
    /// e.g. the same program folder or database).
    new: String,
    #[command(flatten)]
    filter: super::filter::FilterArgs,
}

/// Runs `diff`.
pub fn run(global: &GlobalArgs, args: DiffArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async {
        let repo = open_repository(global, args.target.as_deref()).await?;
        let a = repo
            .find_snapshot_matching(&args.old, &args.filter.filter())
            .await?;
        let same_source = crate::repository::SnapshotFilter {
            source: Some(a.snapshot.source_key()),
            ..args.filter.filter()
        };
        let b = repo.find_snapshot_matching(&args.new, &same_source).await?;
        let d = diff_snapshots(&a.snapshot, &b.snapshot);
        if global.json {
            print_json(&serde_json::json!({
                "old": a.id.to_hex(), "new": b.id.to_hex(),
                "added": d.count(ChangeKind::Added), "changed": d.count(ChangeKind::Changed),
                "removed": d.count(ChangeKind::Removed), "unchanged": d.unchanged,
                "changes": d.changes,
            }))?;
        } else {
            println!("changes from {} to {}:", a.id.short(), b.id.short());
            for c in &d.changes {
                let mark = match c.change {
                    ChangeKind::Added => "+",
                    ChangeKind::Removed => "-",
                    ChangeKind::Changed => "M",
                };
                let size = |s: Option<u64>| s.map(human_bytes).unwrap_or_else(|| "-".into());
                let hash = |h: &Option<String>| {
                    h.as_deref()
                        .map(|h| h[..16.min(h.len())].to_string())
                        .unwrap_or_else(|| "-".into())
                };
                println!(
                    "{mark} {}  {} -> {}  {} -> {}",
                    c.path,
                    size(c.old_size),
                    size(c.new_size),
                    hash(&c.old_blake3),
                    hash(&c.new_blake3)
                );
            }
            println!(
                "{} added, {} changed, {} removed, {} unchanged",
                d.count(ChangeKind::Added),
                d.count(ChangeKind::Changed),
                d.count(ChangeKind::Removed),
                d.unchanged
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}

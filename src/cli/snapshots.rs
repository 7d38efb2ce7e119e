//! `pacsbak snapshots`: what the repository holds.

use std::process::ExitCode;

use clap::Args;

use super::context::{open_repository, print_json, runtime};
use super::GlobalArgs;
use crate::render::human_bytes;

/// Options of `snapshots`.
#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    /// Storage target (optional when there is only one).
    #[arg(long)]
    target: Option<String>,
}

#[derive(serde::Serialize)]
struct Row {
    id: String,
    #[serde(with = "time::serde::rfc3339")]
    time: time::OffsetDateTime,
    hostname: String,
    kind: crate::repository::SnapshotKind,
    tags: Vec<String>,
    sources: Vec<String>,
    files: u64,
    size: u64,
    pinned: bool,
    /// The typed record of a native backup (absent for other kinds, and for a
    /// record that cannot be read: `meta` still shows what is there).
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<crate::records::BackupRecord>,
    meta: std::collections::BTreeMap<String, serde_json::Value>,
}

/// Runs `snapshots`.
pub fn run(global: &GlobalArgs, args: SnapshotsArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async {
        let repo = open_repository(global, args.target.as_deref()).await?;
        let rows: Vec<Row> = repo
            .snapshots()
            .await?
            .into_iter()
            .map(|s| Row {
                id: s.id.to_hex(),
                time: s.snapshot.time,
                hostname: s.snapshot.hostname.clone(),
                kind: s.snapshot.kind,
                tags: s.snapshot.tags.clone(),
                sources: s.snapshot.sources.iter().map(|r| r.path.clone()).collect(),
                files: s.snapshot.summary.files,
                size: s.snapshot.total_size(),
                pinned: s.snapshot.pinned,
                record: (s.snapshot.kind == crate::repository::SnapshotKind::SqlBackup)
                    .then(|| crate::records::BackupRecord::from_snapshot(&s.snapshot).ok())
                    .flatten(),
                meta: s.snapshot.meta.clone(),
            })
            .collect();
        if global.json {
            print_json(&rows)?;
        } else {
            println!(
                "{:<10} {:<20} {:<16} {:>8} {:>10}  sources",
                "id", "time (UTC)", "host", "files", "size"
            );
            let fmt =
                time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
            for r in &rows {
                println!(
                    "{:<10} {:<20} {:<16} {:>8} {:>10}  {}{}{}",
                    &r.id[..8],
                    r.time.format(&fmt).unwrap_or_default(),
                    r.hostname,
                    r.files,
                    human_bytes(r.size),
                    r.sources.join(", "),
                    if r.tags.is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", r.tags.join(","))
                    },
                    if r.pinned { " (pinned)" } else { "" },
                );
            }
            println!("{} snapshots", rows.len());
        }
        Ok(ExitCode::SUCCESS)
    })
}

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
    #[command(flatten)]
    filter: super::filter::FilterArgs,
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
    /// Dated later than this machine's clock says it is now: taken under a clock that
    /// was ahead (never `latest`).
    future_dated: bool,
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
        let listing = repo.snapshot_listing().await?;
        let filter = args.filter.filter();
        let now = crate::clock::current().now();
        let rows: Vec<Row> = listing
            .readable
            .into_iter()
            .filter(|s| filter.matches(&s.snapshot))
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
                future_dated: s.is_future_dated(now),
                record: (s.snapshot.kind == crate::repository::SnapshotKind::SqlBackup)
                    .then(|| crate::records::BackupRecord::from_snapshot(&s.snapshot).ok())
                    .flatten(),
                meta: s.snapshot.meta.clone(),
            })
            .collect();
        let damaged = listing.damaged;
        let suspicious = !damaged.is_empty() || rows.iter().any(|r| r.future_dated);
        if global.json {
            print_json(&serde_json::json!({ "snapshots": rows, "damaged": damaged }))?;
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
                if r.future_dated {
                    println!(
                        "           ^ DATED IN THE FUTURE: taken under a clock that was ahead; never taken as latest"
                    );
                }
            }
            for d in &damaged {
                println!("{:<10} DAMAGED MANIFEST: {}", &d.id.to_hex()[..8], d.error);
            }
            println!(
                "{} snapshots{}",
                rows.len(),
                if damaged.is_empty() {
                    String::new()
                } else {
                    format!(", {} damaged manifests (skipped by every command)", damaged.len())
                }
            );
        }
        // Damage or a future date is a finding: exit 1, as for verify.
        Ok(super::context::done(!suspicious))
    })
}

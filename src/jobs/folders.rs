//! `backup folders`: the PACS server's and the workstations' program folders into
//! the repository. A workstation that cannot be reached (switched off, share
//! missing) is reported as missed with the age of its last good copy, and tried
//! again next run; it never fails the run. A server folder that cannot be read does.
//! With `--due` only folders whose schedule fired since their last good copy run, so
//! a missed workstation stays due until a copy of it succeeds.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;
use tracing::{info_span, warn, Instrument};

use super::db_backup::{offsite, OffsiteCopy};
use super::Target;
use crate::policy::{FolderRole, Policy};
use crate::repository::{BackupOptions, SnapshotKind, SnapshotRef};

/// What happened to one folder.
#[derive(Debug, Clone, Serialize)]
pub struct FolderResult {
    /// Name in the policy.
    pub name: String,
    /// Server or workstation.
    pub role: FolderRole,
    /// Path.
    pub path: String,
    /// `backed-up`, `missed` (workstation unreachable), `failed`, or `not-due`
    /// (its schedule has not fired since its last good copy).
    pub status: String,
    /// For `not-due`: the schedule's next firing (local time).
    pub next_due: Option<String>,
    /// Copies per target.
    pub offsite: Vec<OffsiteCopy>,
    /// When the last good copy was taken (RFC 3339), if any.
    pub last_good: Option<String>,
    /// Its age in hours.
    pub last_good_age_hours: Option<f64>,
    /// Why it was missed or failed.
    pub error: Option<String>,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct FoldersRun {
    /// Policy.
    pub policy: String,
    /// Per folder.
    pub results: Vec<FolderResult>,
    /// No folder failed (missed workstations do not count).
    pub ok: bool,
}

/// Which of a policy's folders a run takes.
#[derive(Debug, Clone, Default)]
pub struct FolderFilter {
    /// Only the server's program folders (the manual pre-upgrade backup).
    pub only_server: bool,
    /// Only these folders, by name (empty: all).
    pub names: Vec<String>,
    /// Only folders due at this local time: whose schedule fired since their last
    /// good copy (a folder without a schedule is always due).
    pub due_at: Option<time::PrimitiveDateTime>,
}

/// How far back a schedule's last firing is looked for.
const SCHEDULE_HORIZON_DAYS: i64 = 35;

/// Backs up the policy's folders that `filter` selects.
pub async fn run(
    policy: &Policy,
    targets: &[Target],
    filter: &FolderFilter,
    pinned: bool,
    extra_tags: &[String],
    extra_meta: &BTreeMap<String, serde_json::Value>,
) -> FoldersRun {
    let span = info_span!("job", job = "backup folders", policy = %policy.name);
    async {
        // Snapshots of the first target, read once: last good copies.
        let mut known: Option<Vec<SnapshotRef>> = None;
        let mut results = Vec::new();
        for f in &policy.folders {
            if filter.only_server && f.role != FolderRole::Server {
                continue;
            }
            if !filter.names.is_empty() && !filter.names.iter().any(|n| n == &f.name) {
                continue;
            }
            let step = info_span!("step", step = "folder", folder = %f.name);
            let r = async {
                let mut r = FolderResult {
                    name: f.name.clone(),
                    role: f.role,
                    path: f.path.display().to_string(),
                    status: "backed-up".into(),
                    next_due: None,
                    offsite: Vec::new(),
                    last_good: None,
                    last_good_age_hours: None,
                    error: None,
                };
                if filter.due_at.is_some() && known.is_none() {
                    known = Some(first_target_snapshots(targets).await);
                }
                if let (Some(now), Some(cron)) = (filter.due_at, &f.schedule) {
                    let last_good = known.as_deref().and_then(|s| last_good_copy(s, &f.name));
                    let fired =
                        cron.last_at_or_before(now, time::Duration::days(SCHEDULE_HORIZON_DAYS));
                    let due = match (fired, last_good) {
                        (_, None) => true,
                        (Some(fired), Some(good)) => crate::storage::to_local(good) < fired,
                        (None, Some(_)) => false,
                    };
                    if !due {
                        r.status = "not-due".into();
                        r.next_due = cron.next_after(now).and_then(|t| {
                            t.format(time::macros::format_description!(
                                "[year]-[month]-[day] [hour]:[minute]"
                            ))
                            .ok()
                        });
                        r.set_last_good(last_good);
                        return r;
                    }
                }
                if let Err(e) = std::fs::read_dir(&f.path) {
                    r.status = if f.role == FolderRole::Workstation {
                        "missed"
                    } else {
                        "failed"
                    }
                    .into();
                    r.error = Some(format!("cannot read {}: {e}", f.path.display()));
                    if known.is_none() {
                        known = Some(first_target_snapshots(targets).await);
                    }
                    r.set_last_good(known.as_deref().and_then(|s| last_good_copy(s, &f.name)));
                    warn!(folder = %f.name, status = %r.status, "program folder not backed up");
                    return r;
                }
                let mut tags = vec![
                    "program-folder".to_string(),
                    format!("folder:{}", f.name),
                    format!(
                        "role:{}",
                        if f.role == FolderRole::Server {
                            "server"
                        } else {
                            "workstation"
                        }
                    ),
                    format!("policy:{}", policy.name),
                ];
                tags.extend(extra_tags.iter().cloned());
                let mut meta = extra_meta.clone();
                meta.insert("folder".into(), json!(f.name));
                meta.insert("path".into(), json!(f.path.display().to_string()));
                meta.insert("policy".into(), json!(policy.name));
                let bopts = BackupOptions {
                    tags,
                    kind: SnapshotKind::Files,
                    meta,
                    pinned,
                };
                for t in targets {
                    r.offsite
                        .push(offsite(t, std::slice::from_ref(&f.path), &bopts).await);
                }
                if r.offsite.iter().any(|o| !o.verified) {
                    r.status = "failed".into();
                    r.error = r.offsite.iter().find_map(|o| o.error.clone());
                }
                r
            }
            .instrument(step)
            .await;
            results.push(r);
        }
        let ok = results.iter().all(|r| r.status != "failed");
        FoldersRun {
            policy: policy.name.clone(),
            results,
            ok,
        }
    }
    .instrument(span)
    .await
}

/// When the newest snapshot of folder `name` was taken.
fn last_good_copy(snapshots: &[SnapshotRef], name: &str) -> Option<time::OffsetDateTime> {
    let tag = format!("folder:{name}");
    snapshots
        .iter()
        .filter(|s| s.snapshot.tags.contains(&tag))
        .map(|s| s.snapshot.time)
        .max()
}

/// The first target's snapshots (none when it cannot be read: the folder is then
/// treated as never copied, so it is backed up rather than skipped).
async fn first_target_snapshots(targets: &[Target]) -> Vec<SnapshotRef> {
    match targets.first() {
        Some(t) => t.repo.snapshots().await.unwrap_or_default(),
        None => Vec::new(),
    }
}

impl FolderResult {
    fn set_last_good(&mut self, when: Option<time::OffsetDateTime>) {
        if let Some(when) = when {
            self.last_good = when
                .format(&time::format_description::well_known::Rfc3339)
                .ok();
            self.last_good_age_hours =
                Some((time::OffsetDateTime::now_utc() - when).as_seconds_f64() / 3600.0);
        }
    }
}

//! `backup folders`: the PACS server's and the workstations' program folders into
//! the repository. A workstation that cannot be reached (switched off, share
//! missing) is reported as missed with the age of its last good copy, and tried
//! again next run; it never fails the run. A server folder that cannot be read does.
//! With `--due` only folders whose schedule fired since their last good copy run (a
//! copy that read every file, on every target), so a missed workstation or a failed
//! copy stays due until a copy succeeds.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;
use tracing::{info_span, warn, Instrument};

use super::db_backup::{offsite, OffsiteCopy};
use super::Target;
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, ErrorRecord};
use crate::outcome::Status;
use crate::policy::{FolderRole, Policy};
use crate::records::{Series, Tag, Tags};
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
    /// Ok (backed up on every target), missed (a workstation that could not be
    /// reached), failed, or not due (its schedule has not fired since its last good
    /// copy).
    pub status: Status,
    /// For `not-due`: the schedule's next firing (local time).
    pub next_due: Option<String>,
    /// Copies per target.
    pub offsite: Vec<OffsiteCopy>,
    /// When the last good copy was taken (RFC 3339), if any.
    pub last_good: Option<String>,
    /// Its age in hours.
    pub last_good_age_hours: Option<f64>,
    /// Why it was missed or failed.
    pub error: Option<ErrorRecord>,
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

impl FoldersRun {
    /// Adds the policy's targets that could not be opened as failed copies of every
    /// folder that was backed up or due.
    pub fn note_unreachable(&mut self, unreachable: &[super::UnreachableTarget]) {
        if unreachable.is_empty() {
            return;
        }
        for r in &mut self.results {
            if r.status == Status::NotDue || r.status == Status::Missed {
                continue;
            }
            r.offsite.extend(
                unreachable
                    .iter()
                    .map(super::UnreachableTarget::as_failed_copy),
            );
            r.status = Status::Failed;
            if r.error.is_none() {
                r.error = unreachable.first().map(|u| u.error.clone());
            }
        }
        self.ok = self.results.iter().all(|r| !r.status.is_failure());
    }
}

/// Which of a policy's folders a run takes.
#[derive(Debug, Clone, Default)]
pub struct FolderFilter {
    /// Only these folders, by name (empty: all).
    pub names: Vec<String>,
    /// Only folders due now by this clock: whose schedule fired since their last
    /// good copy (a folder without a schedule is always due).
    pub due: Option<Clock>,
}

/// `backup folders`: the policy's targets opened (one unreachable is a failed copy
/// of each folder, the others still get theirs), then [`run`].
pub async fn run_for_policy(
    cfg: &crate::config::ConfigDir,
    policy: &Policy,
    filter: &FolderFilter,
) -> crate::error::Result<FoldersRun> {
    let targets = super::open_targets(cfg, policy).await?;
    let mut r = run(
        policy,
        &targets.open,
        filter,
        false,
        &[],
        &Default::default(),
    )
    .await;
    r.note_unreachable(&targets.unreachable);
    Ok(r)
}

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
        // Snapshots of every target, read once: last good copies.
        let mut known: Option<Vec<Vec<SnapshotRef>>> = None;
        // One "now" for the whole run, from the clock the run is judged by.
        let now = filter
            .due
            .as_ref()
            .map_or_else(|| crate::clock::current().now(), Clock::now);
        let mut results = Vec::new();
        for f in &policy.folders {
            if !filter.names.is_empty() && !filter.names.iter().any(|n| n == &f.name) {
                continue;
            }
            let step = info_span!("step", step = "folder", folder = %f.name);
            let r = async {
                let mut r = FolderResult {
                    name: f.name.clone(),
                    role: f.role,
                    path: f.path.display().to_string(),
                    status: Status::Ok,
                    next_due: None,
                    offsite: Vec::new(),
                    last_good: None,
                    last_good_age_hours: None,
                    error: None,
                };
                if filter.due.is_some() && known.is_none() {
                    known = Some(snapshots_per_target(targets).await);
                }
                if let (Some(clock), Some(cron)) = (&filter.due, &f.schedule) {
                    let last_good = known
                        .as_deref()
                        .and_then(|s| last_good_copy(s, &policy.name, &f.name, now));
                    // Due once the first firing after the last good copy has come.
                    let due = match last_good {
                        None => true,
                        Some(good) => cron
                            .next_instant_after(good, clock)
                            .is_some_and(|fired| fired <= now),
                    };
                    if !due {
                        r.status = Status::NotDue;
                        r.next_due = cron.next_instant_after(now, clock).and_then(|t| {
                            clock
                                .local(t)
                                .format(time::macros::format_description!(
                                    "[year]-[month]-[day] [hour]:[minute]"
                                ))
                                .ok()
                        });
                        r.set_last_good(last_good, now);
                        return r;
                    }
                }
                let unusable = if crate::config::resolves_to_filesystem_root(&f.path) {
                    Some(
                        Error::new(
                            ErrorKind::Config,
                            format!(
                                "{} resolves to the root of a drive (a link to it?): name the PACS program folder itself",
                                f.path.display()
                            ),
                        )
                        .with("file", policy.file.display()),
                    )
                } else {
                    std::fs::read_dir(&f.path).err().map(|e| {
                        Error::new(
                            ErrorKind::Io,
                            format!("cannot read {}: {e}", f.path.display()),
                        )
                    })
                };
                if let Some(e) = unusable {
                    r.status = if f.role == FolderRole::Workstation && e.kind() == ErrorKind::Io {
                        Status::Missed
                    } else {
                        Status::Failed
                    };
                    r.error = Some(e.with("folder", &f.name).record());
                    if known.is_none() {
                        known = Some(snapshots_per_target(targets).await);
                    }
                    r.set_last_good(
                        known
                            .as_deref()
                            .and_then(|s| last_good_copy(s, &policy.name, &f.name, now)),
                        now,
                    );
                    warn!(folder = %f.name, status = ?r.status, "program folder not backed up");
                    return r;
                }
                let mut tags: Vec<String> = [
                    Tag::ProgramFolder,
                    Tag::Folder(f.name.clone()),
                    Tag::Role(f.role.as_str().to_string()),
                    Tag::Policy(policy.name.clone()),
                ]
                .into_iter()
                .map(String::from)
                .collect();
                tags.extend(extra_tags.iter().cloned());
                let mut meta = extra_meta.clone();
                meta.insert("folder".into(), json!(f.name));
                meta.insert("path".into(), json!(f.path.display().to_string()));
                meta.insert("policy".into(), json!(policy.name));
                // One run, one backup: its snapshots on the several targets are twins.
                meta.insert(
                    crate::repository::RUN.into(),
                    json!(format!("{:016x}", rand::random::<u64>())),
                );
                let bopts = BackupOptions {
                    tags,
                    kind: SnapshotKind::Files,
                    meta,
                    pinned,
                    series: Series::Folder {
                        policy: policy.name.clone(),
                        folder: f.name.clone(),
                    }
                    .key(),
                    cancel: None,
                };
                for t in targets {
                    r.offsite
                        .push(offsite(t, std::slice::from_ref(&f.path), &bopts).await);
                }
                if r.offsite.iter().any(|o| !o.verified) {
                    r.status = Status::Failed;
                    r.error = r.offsite.iter().find_map(|o| o.error.clone());
                }
                r
            }
            .instrument(step)
            .await;
            results.push(r);
        }
        let ok = results.iter().all(|r| !r.status.is_failure());
        FoldersRun {
            policy: policy.name.clone(),
            results,
            ok,
        }
    }
    .instrument(span)
    .await
}

/// When folder `name` of `policy` last got a complete copy on every target: per
/// target the newest of its snapshots that read every file, then the oldest of those.
/// A target without one means there is no good copy yet, so the folder stays due.
/// Snapshots dated after `now` (a clock that was ahead) do not count.
fn last_good_copy(
    per_target: &[Vec<SnapshotRef>],
    policy: &str,
    name: &str,
    now: time::OffsetDateTime,
) -> Option<time::OffsetDateTime> {
    let (folder_tag, policy_tag) = (Tag::Folder(name.into()), Tag::Policy(policy.into()));
    let newest = |snapshots: &Vec<SnapshotRef>| {
        snapshots
            .iter()
            .filter(|s| {
                let tags = Tags(&s.snapshot.tags);
                tags.has(&folder_tag)
                    && tags.has(&policy_tag)
                    && s.snapshot.summary.errors.is_empty()
                    && !s.is_future_dated(now)
            })
            .map(|s| s.snapshot.time)
            .max()
    };
    per_target
        .iter()
        .map(newest)
        .collect::<Option<Vec<_>>>()?
        .into_iter()
        .min()
}

/// Each target's snapshots (none for a target that cannot be read: its folders are
/// then treated as never copied there, so they are backed up rather than skipped).
async fn snapshots_per_target(targets: &[Target]) -> Vec<Vec<SnapshotRef>> {
    let mut out = Vec::with_capacity(targets.len());
    for t in targets {
        out.push(t.repo.snapshots().await.unwrap_or_default());
    }
    out
}

impl FolderResult {
    fn set_last_good(&mut self, when: Option<time::OffsetDateTime>, now: time::OffsetDateTime) {
        if let Some(when) = when {
            self.last_good = when
                .format(&time::format_description::well_known::Rfc3339)
                .ok();
            self.last_good_age_hours = Some((now - when).as_seconds_f64() / 3600.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repository::{Id, Snapshot, Summary};
    use time::macros::datetime;

    fn far_future() -> time::OffsetDateTime {
        time::macros::datetime!(2100-01-01 00:00 UTC)
    }

    fn snap(tags: &[&str], time: time::OffsetDateTime, errors: &[&str]) -> SnapshotRef {
        SnapshotRef {
            id: Id::random(),
            snapshot: Snapshot {
                time,
                finished: time,
                tags: tags.iter().map(|t| t.to_string()).collect(),
                kind: SnapshotKind::Files,
                summary: Summary {
                    errors: errors.iter().map(|e| e.to_string()).collect(),
                    ..Summary::default()
                },
                ..Snapshot::empty_for_tests()
            },
        }
    }

    #[test]
    fn a_good_copy_read_every_file_on_every_target_under_this_policy() {
        let tags = ["folder:reg-1", "policy:pacs"];
        let mon = datetime!(2026-11-23 02:00 UTC);
        let tue = datetime!(2026-11-24 02:00 UTC);
        let wed = datetime!(2026-11-25 02:00 UTC);
        let nas = vec![
            snap(&tags, mon, &[]),
            snap(&tags, tue, &[]),
            // Wednesday's copy could not read a file: not good.
            snap(&tags, wed, &["reg-1/app.ini: permission denied"]),
            // Another policy's folder of the same name does not count.
            snap(&["folder:reg-1", "policy:lab"], wed, &[]),
        ];
        let s3 = vec![snap(&tags, mon, &[])];
        assert_eq!(
            last_good_copy(std::slice::from_ref(&nas), "pacs", "reg-1", far_future()),
            Some(tue)
        );
        // The copy is only as good as its worst target.
        assert_eq!(
            last_good_copy(&[nas.clone(), s3], "pacs", "reg-1", far_future()),
            Some(mon)
        );
        assert_eq!(
            last_good_copy(&[nas, Vec::new()], "pacs", "reg-1", far_future()),
            None
        );
        assert_eq!(last_good_copy(&[], "pacs", "reg-1", far_future()), None);
    }
}

//! `status`: are we protected right now? Per database of a policy the newest good
//! full, differential and log in the repository, the newest point it can restore and
//! its age against the RPO, what each other target holds and how far it lags; per
//! program folder its last good copy; the last verify from the journal; the next
//! scheduled runs; and every open problem. Read from the repository (the truth) and
//! the journal, with or without a daemon, without asking SQL Server.
//!
//! Backup dates in records are the SQL Server's wall-clock time; ages are taken
//! against "now" in the hospital's zone (`time_zone`), on which both must agree.

use std::collections::BTreeMap;

use serde::Serialize;
use time::PrimitiveDateTime;
use tracing::{info_span, Instrument};

use super::{PolicyTargets, UnreachableTarget};
use crate::bakfile::plan::{plan, PlanRequest};
use crate::clock::Clock;
use crate::error::Result;
use crate::policy::Policy;
use crate::records::{BackupKind, BackupRecord, Tag, Tags};
use crate::repository::{SnapshotKind, SnapshotRef};

/// One database's protection.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseStatus {
    /// The database.
    pub database: String,
    /// Start of the newest good full, differential and log backup in the repository
    /// on the policy's first target (server wall-clock time).
    pub newest: BTreeMap<BackupKind, String>,
    /// The newest point the repository can restore to, when its chain is whole.
    pub restorable_to: Option<String>,
    /// Its age in minutes.
    pub age_minutes: Option<i64>,
    /// The RPO in minutes, when the policy sets one.
    pub rpo_minutes: Option<u64>,
    /// Within the RPO (false without a restorable point).
    pub rpo_met: bool,
    /// Per other target: minutes its newest backup of this database lags the first's
    /// (`None`: it holds none).
    pub lag_minutes: BTreeMap<String, Option<i64>>,
}

/// One program folder's last good copy.
#[derive(Debug, Clone, Serialize)]
pub struct FolderStatus {
    /// The folder's name in the policy.
    pub folder: String,
    /// When its newest complete copy on the first target was taken (RFC 3339).
    pub last_good: Option<String>,
    /// Its age in hours.
    pub age_hours: Option<f64>,
}

/// The answer to "are we protected right now?" for one policy.
#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// The policy.
    pub policy: String,
    /// The target restores read from.
    pub target: Option<String>,
    /// Per database.
    pub databases: Vec<DatabaseStatus>,
    /// Per program folder.
    pub folders: Vec<FolderStatus>,
    /// The last `verify` the journal recorded: when it ended and whether it passed.
    pub last_verify: Option<(String, bool)>,
    /// Percent of the first target's data read back and found good since the 1st
    /// of this month (the nightly verify slice reads all of it within
    /// `read_all_within_days`).
    pub read_back_this_month_percent: Option<f64>,
    /// The next firing of each schedule (hospital wall-clock time).
    pub next_runs: BTreeMap<String, String>,
    /// What needs a person, one line each.
    pub problems: Vec<String>,
    /// Every database within its RPO and no problem.
    pub ok: bool,
}

/// The status of `policy` from its targets (the first is where restores read) and,
/// when given, the journal.
pub async fn run(
    policy: &Policy,
    targets: &PolicyTargets,
    journal: Option<&crate::journal::Journal>,
    clock: &Clock,
) -> Result<StatusReport> {
    let span = info_span!("job", job = "status", policy = %policy.name);
    async {
        let now = clock.now();
        let wall_now = clock.local(now);
        let mut report = StatusReport {
            policy: policy.name.clone(),
            target: targets.open.first().map(|t| t.name.clone()),
            databases: Vec::new(),
            folders: Vec::new(),
            last_verify: None,
            read_back_this_month_percent: None,
            next_runs: BTreeMap::new(),
            problems: Vec::new(),
            ok: false,
        };
        for u in &targets.unreachable {
            report.problems.push(unreachable(u));
        }
        let mut per_target: Vec<(String, Vec<SnapshotRef>)> = Vec::new();
        for t in &targets.open {
            let listing = t.repo.snapshot_listing().await?;
            for d in &listing.damaged {
                report.problems.push(format!("{}: damaged snapshot manifest {}: {}", t.name, d.id.short(), d.error));
            }
            let (future, current): (Vec<SnapshotRef>, Vec<SnapshotRef>) =
                listing.readable.into_iter().partition(|s| s.is_future_dated(now));
            for f in &future {
                report.problems.push(format!("{}: snapshot {} is dated {}, in the future (a clock was ahead)", t.name, f.id.short(), f.snapshot.time));
            }
            per_target.push((t.name.clone(), current));
        }
        if let Some((first_name, first)) = per_target.first() {
            let records = records_of(first, policy);
            let others: Vec<(&String, Vec<BackupRecord>)> = per_target
                .iter()
                .skip(1)
                .map(|(name, snaps)| (name, records_of(snaps, policy)))
                .collect();
            let (descs, _) =
                super::restore_db::describe_snapshots(&targets.open[0].repo, first.clone()).await?;
            let mut names: Vec<String> = records.iter().map(|r| r.database.clone()).collect();
            names.sort_by_key(|n| n.to_lowercase());
            names.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
            for name in names {
                let mine: Vec<&BackupRecord> = records.iter().filter(|r| r.database.eq_ignore_ascii_case(&name)).collect();
                let mut newest = BTreeMap::new();
                for kind in [BackupKind::Full, BackupKind::Diff, BackupKind::Log] {
                    if let Some(t) = mine.iter().filter(|r| r.kind == kind).filter_map(|r| start(r)).max() {
                        newest.insert(kind, wall(t));
                    }
                }
                let p = plan(&descs, &PlanRequest { database: Some(name.clone()), at: None });
                let point = p.steps.last().and_then(|s| s.backup_start_date).and_then(|d| d.to_datetime()).filter(|_| p.ok);
                let age = point.map(|t| (wall_now - t).whole_minutes());
                let rpo = policy.rpo(&name);
                let rpo_met = match (age, rpo) {
                    (Some(a), Some(r)) => a <= r as i64,
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                let tolerance = crate::repository::CLOCK_TOLERANCE.whole_minutes();
                if age.is_some_and(|a| a < -tolerance) {
                    report.problems.push(format!(
                        "{name}: the newest restorable point {} is {} minutes in the future by this machine's clock: SQL Server's clock and this machine's disagree (or time_zone is not the server's)",
                        point.map(wall).unwrap_or_default(),
                        -age.unwrap_or_default()
                    ));
                }
                if point.is_none() {
                    report.problems.push(format!("{name}: nothing restorable from {first_name}{}", if p.problems.is_empty() { String::new() } else { format!(": {}", p.problems.join("; ")) }));
                } else if !rpo_met {
                    report.problems.push(format!("{name}: RPO missed: the newest restorable point is {} minutes old, the RPO {} minutes", age.unwrap_or_default(), rpo.unwrap_or_default()));
                }
                let newest_here = mine.iter().filter_map(|r| start(r)).max();
                let mut lag_minutes = BTreeMap::new();
                for (other, theirs) in &others {
                    let theirs = theirs.iter().filter(|r| r.database.eq_ignore_ascii_case(&name)).filter_map(start).max();
                    lag_minutes.insert((*other).clone(), match (newest_here, theirs) {
                        (Some(a), Some(b)) => Some((a - b).whole_minutes().max(0)),
                        _ => None,
                    });
                }
                report.databases.push(DatabaseStatus {
                    database: name,
                    newest,
                    restorable_to: point.map(wall),
                    age_minutes: age,
                    rpo_minutes: rpo,
                    rpo_met,
                    lag_minutes,
                });
            }
            for f in &policy.folders {
                let (folder_tag, policy_tag) = (Tag::Folder(f.name.clone()), Tag::Policy(policy.name.clone()));
                let last = first
                    .iter()
                    .filter(|s| {
                        let tags = Tags(&s.snapshot.tags);
                        tags.has(&folder_tag) && tags.has(&policy_tag) && s.snapshot.summary.errors.is_empty()
                    })
                    .map(|s| s.snapshot.time)
                    .max();
                report.folders.push(FolderStatus {
                    folder: f.name.clone(),
                    last_good: last.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
                    age_hours: last.map(|t| ((now - t).as_seconds_f64() / 3600.0 * 10.0).round() / 10.0),
                });
            }
        }
        if let Some(t) = targets.open.first() {
            let local = clock.local(now);
            let month_start = local.replace_day(1).ok().map(|d| d.replace_time(time::Time::MIDNIGHT));
            if let Some(ms) = month_start {
                let since = match clock.instant_of(ms) {
                    crate::clock::Instant::Unique(x)
                    | crate::clock::Instant::Skipped(x)
                    | crate::clock::Instant::Twice(x, _) => x,
                };
                report.read_back_this_month_percent = t
                    .repo
                    .read_back_since(since.unix_timestamp())
                    .await
                    .ok()
                    .map(|f| (f * 1000.0).round() / 10.0);
            }
        }
        if let Some(j) = journal {
            report.last_verify = j
                .last_end("verify")?
                .map(|e| (e.time, e.status.as_deref() == Some("ok")));
        }
        for (kind, cron) in &policy.schedules {
            if let Some(t) = cron.next_instant_after(now, clock) {
                report.next_runs.insert(format!("{kind} backups"), wall(clock.local(t)));
            }
        }
        for f in &policy.folders {
            if let Some(t) = f.schedule.as_ref().and_then(|c| c.next_instant_after(now, clock)) {
                report.next_runs.insert(format!("folder {}", f.name), wall(clock.local(t)));
            }
        }
        report.ok = report.problems.is_empty() && report.databases.iter().all(|d| d.rpo_met);
        Ok(report)
    }
    .instrument(span)
    .await
}

fn unreachable(u: &UnreachableTarget) -> String {
    format!("target {} cannot be opened: {}", u.target, u.error)
}

/// The backup records of `policy`'s native backups among `snaps` (its instance).
fn records_of(snaps: &[SnapshotRef], policy: &Policy) -> Vec<BackupRecord> {
    snaps
        .iter()
        .filter(|s| s.snapshot.kind == SnapshotKind::SqlBackup)
        .filter_map(|s| BackupRecord::from_snapshot(&s.snapshot).ok())
        .filter(|r| r.instance == policy.instance_name)
        .collect()
}

fn start(r: &BackupRecord) -> Option<PrimitiveDateTime> {
    r.backup_start.and_then(|d| d.to_datetime())
}

fn wall(t: PrimitiveDateTime) -> String {
    t.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]"
    ))
    .unwrap_or_default()
}

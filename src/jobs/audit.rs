//! `retention audit`: the maintenance plan's cleanup of the local backup folder,
//! compared with the policy (contract item 21: monitor the automatic
//! backup-deletion task).
//!
//! Read: each Maintenance Cleanup Task (folder, extension, age) from the plans'
//! package XML, the Agent jobs that run it (enabled, scheduled, last outcome), the
//! Agent itself, msdb's backup history with its files, and the folder. A cleanup
//! reports success even when it deleted nothing, so the folder is what is judged.
//! Every finding carries its severity and the fix.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use serde::Serialize;
use tracing::{info_span, Instrument};

use super::check::{Finding, Severity};
use crate::error::Result;
use crate::journal::{EntryKind, Journal, JournalFilter};
use crate::policy::Policy;
use crate::records::{BackupKind, BackupRecord};
use crate::repository::{Repository, SnapshotKind};
use crate::sqlserver::catalog::{self, MsdbBackup};
use crate::sqlserver::maintenance::{cleanup_tasks, CleanupTask};
use crate::sqlserver::Instance;

/// The audit's report.
#[derive(Debug, Clone, Serialize)]
pub struct AuditReport {
    /// Policy.
    pub policy: String,
    /// Instance.
    pub instance: String,
    /// The backup folder, as SQL Server sees it.
    pub folder: String,
    /// Every cleanup task found, on this folder or not.
    pub cleanup_tasks: Vec<CleanupTask>,
    /// Findings, worst first; none when all is well.
    pub findings: Vec<Finding>,
    /// The worst severity (`ok` with no finding).
    pub worst: Severity,
}

fn same_folder(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        s.trim_end_matches(['\\', '/'])
            .replace('/', "\\")
            .to_lowercase()
    };
    norm(a) == norm(b)
}

fn hours(secs: i64) -> String {
    if secs % 86_400 == 0 {
        format!("{} day(s)", secs / 86_400)
    } else {
        format!("{:.1} hour(s)", secs as f64 / 3600.0)
    }
}

/// The longest time a backup job of `policy` took to get its copies offsite and
/// proven, over the journal's last 30 days (seconds).
pub fn offsite_lag(journal: &Journal, policy: &str) -> Option<i64> {
    let since = (time::OffsetDateTime::now_utc() - time::Duration::days(30))
        .format(&time::format_description::well_known::Rfc3339)
        .ok()?;
    let mut entries = Vec::new();
    for job in super::retention::BACKUP_JOBS {
        entries.extend(
            journal
                .list(&JournalFilter {
                    since: Some(since.clone()),
                    job: Some(job.to_string()),
                    ..JournalFilter::default()
                })
                .ok()?,
        );
    }
    let parse = |t: &str| {
        time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
    };
    let starts: BTreeMap<&str, time::OffsetDateTime> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::JobStart && e.policy.as_deref() == Some(policy))
        .filter_map(|e| Some((e.job_id.as_str(), parse(&e.time)?)))
        .collect();
    entries
        .iter()
        .filter(|e| e.kind == EntryKind::JobEnd)
        .filter_map(|e| Some((parse(&e.time)? - *starts.get(e.job_id.as_str())?).whole_seconds()))
        .max()
}

/// Audits the cleanup of `policy`'s backup folder. `repo` is the policy's first
/// target (to tell a file deleted after its offsite copy from one deleted before);
/// `lag` the time its copies take to get offsite ([`offsite_lag`]).
pub async fn run(
    policy: &Policy,
    instance: &Instance,
    repo: Option<&Repository>,
    lag: Option<i64>,
) -> Result<AuditReport> {
    let span = info_span!("job", job = "retention audit", policy = %policy.name);
    async {
        let mut f: Vec<Finding> = Vec::new();
        let mut add = |severity, area: &str, database: Option<&str>, finding: String, action: String| {
            f.push(Finding {
                severity,
                area: area.into(),
                database: database.map(str::to_string),
                finding,
                action,
            })
        };
        let folder = policy.server_folder.clone();
        let mut sql = instance.connect().await?;
        match catalog::agent_status(&mut sql).await? {
            Some(s) if !s.eq_ignore_ascii_case("Running") => add(
                Severity::Critical,
                "agent",
                None,
                format!("SQL Server Agent is {s}: the maintenance plan's cleanup does not run, and the backup folder fills"),
                "start the SQL Server Agent service and set its start mode to Automatic".into(),
            ),
            _ => {}
        }
        let tasks = cleanup_tasks(&mut sql).await?;
        let ours: Vec<&CleanupTask> = tasks
            .iter()
            .filter(|t| same_folder(&t.folder, &folder))
            .collect();
        let pacsbak_cleans = policy.local_cleanup_after.is_some();
        if ours.is_empty() && !pacsbak_cleans {
            match tasks.first() {
                Some(other) => add(
                    Severity::Warning,
                    "cleanup-folder",
                    None,
                    format!(
                        "no Maintenance Cleanup Task deletes in the policy's backup folder {folder}: task \"{}\" of plan \"{}\" deletes in {} instead, so the policy's backups are never removed and the disk fills",
                        other.task, other.plan, other.folder
                    ),
                    format!("point the task's folder at {folder}, or let pacsbak clean it: [local_cleanup] after = \"7d\" in the policy"),
                ),
                None => add(
                    Severity::Warning,
                    "cleanup-folder",
                    None,
                    format!("nothing deletes old backups in {folder}: no Maintenance Cleanup Task, no [local_cleanup]; the disk fills"),
                    "set [local_cleanup] after = \"7d\" in the policy (deletes only files proven offsite), or add a cleanup task".into(),
                ),
            }
        }
        // What the policy needs kept locally: the newest chain (a full interval)
        // and the time its copies take to get offsite.
        let server_now = catalog::server_now(&mut sql).await?.unwrap_or_else(|| {
            let n = time::OffsetDateTime::now_utc();
            time::PrimitiveDateTime::new(n.date(), n.time())
        });
        let full_interval = policy.schedules.get(&BackupKind::Full).and_then(|c| {
            let a = c.next_after(server_now)?;
            let b = c.next_after(a)?;
            Some((b - a).whole_seconds())
        });
        let local_files = super::local_cleanup::backup_files(&policy.local_folder, &policy.staging.1)
            .unwrap_or_default();
        let now = std::time::SystemTime::now();
        let age_of = |p: &PathBuf| -> Option<i64> {
            let m = std::fs::metadata(p).ok()?.modified().ok()?;
            Some(now.duration_since(m).map_or(0, |d| d.as_secs() as i64))
        };
        for t in &ours {
            let task = format!("task \"{}\" of plan \"{}\" ({} *.{} older than {})", t.task, t.plan, t.folder, t.extension, t.older_than);
            let jobs_ok: Vec<_> = t.jobs.iter().filter(|j| j.enabled && j.scheduled).collect();
            if jobs_ok.is_empty() {
                add(
                    Severity::Warning,
                    "cleanup-schedule",
                    None,
                    format!("{task} is not scheduled: its Agent job is disabled or has no enabled schedule ({})", t.jobs.iter().map(|j| format!("{}: {}", j.name, if j.enabled { "no schedule" } else { "disabled" })).collect::<Vec<_>>().join(", ")),
                    "enable the subplan's job and its schedule in SQL Server Agent, or set [local_cleanup] in the policy".into(),
                );
            }
            for j in &t.jobs {
                match j.last_status {
                    Some(0) => add(
                        Severity::Critical,
                        "cleanup-failing",
                        None,
                        format!("{task}: its job \"{}\" failed when it last ran: {}", j.name, j.last_message.clone().unwrap_or_default()),
                        "read the job history in SQL Server Agent; the service account needs delete rights on the folder".into(),
                    ),
                    None if j.enabled => add(
                        Severity::Warning,
                        "cleanup-never-ran",
                        None,
                        format!("{task}: its job \"{}\" has never run", j.name),
                        "check the job's schedule and that SQL Server Agent runs".into(),
                    ),
                    _ => {}
                }
            }
            let Some(age) = t.older_than_seconds.filter(|_| t.age_based) else {
                add(Severity::Warning, "cleanup-age", None, format!("{task}: its age is not one pacsbak can read"), "set an age in days or weeks".into());
                continue;
            };
            if let Some(interval) = full_interval.filter(|&i| age < i) {
                add(
                    Severity::Warning,
                    "cleanup-age",
                    None,
                    format!("{task} deletes files younger than the time between fulls ({}): the newest chain is not kept in the folder, so a restore must fetch it from offsite and the RPO/RTO suffer", hours(interval)),
                    format!("raise the task's age to at least {}", hours(interval + 86_400)),
                );
            }
            if let Some(lag) = lag.filter(|&l| age < l) {
                add(
                    Severity::Critical,
                    "cleanup-offsite",
                    None,
                    format!("{task} deletes files sooner than pacsbak takes to copy them offsite (up to {} in the last 30 days)", hours(lag)),
                    "raise the task's age well above the offsite copy time".into(),
                );
            }
            // Silent failure: files the cleanup should have deleted by its last
            // successful run are still there.
            let last_success_age = t
                .jobs
                .iter()
                .filter(|j| j.last_status == Some(1))
                .filter_map(|j| j.last_run)
                .map(|r| (server_now - r).whole_seconds())
                .min();
            if let Some(ran_ago) = last_success_age {
                let stale: Vec<&PathBuf> = local_files
                    .iter()
                    .filter(|p| p.extension().is_some_and(|e| e.to_string_lossy().eq_ignore_ascii_case(&t.extension)))
                    .filter(|p| age_of(p).is_some_and(|a| a - ran_ago > age))
                    .collect();
                if !stale.is_empty() {
                    add(
                        Severity::Critical,
                        "cleanup-silent",
                        None,
                        format!(
                            "{task} last ran successfully {} ago, yet {} file(s) older than its age are still there (first: {}): it deletes nothing, and the disk will fill",
                            hours(ran_ago), stale.len(), stale[0].display()
                        ),
                        "check the task's folder and extension (no leading dot), and that the files are not encrypted backups, which xp_delete_file skips".into(),
                    );
                }
            }
        }
        if policy.schedules.contains_key(&BackupKind::Log)
            && !pacsbak_cleans
            && !ours.is_empty()
            && !ours.iter().any(|t| t.extension == "trn")
        {
            add(
                Severity::Warning,
                "cleanup-logs",
                None,
                format!("the cleanup of {folder} deletes no .trn files: the policy's log backups pile up"),
                "add a Maintenance Cleanup Task for extension trn, or set [local_cleanup] in the policy".into(),
            );
        }

        // The folder against msdb's history and the repository.
        let history = catalog::backup_files(&mut sql, 5000).await?;
        let existing: HashSet<String> = catalog::databases(&mut sql)
            .await?
            .into_iter()
            .map(|d| d.name.to_lowercase())
            .collect();
        let in_folder = |dev: &str| {
            let p = policy.local_path_of(dev);
            p.starts_with(&policy.local_folder).then_some(p)
        };
        let offsite: Vec<BackupRecord> = match repo {
            Some(r) => r
                .snapshots()
                .await?
                .iter()
                .filter(|s| s.snapshot.kind == SnapshotKind::SqlBackup)
                .filter_map(|s| BackupRecord::from_snapshot(&s.snapshot).ok())
                .collect(),
            None => Vec::new(),
        };
        let is_offsite = |b: &MsdbBackup| {
            offsite.iter().any(|r| {
                r.database.eq_ignore_ascii_case(&b.database_name)
                    && r.first_lsn == b.first_lsn
                    && r.last_lsn == b.last_lsn
            })
        };
        // Newest chain per database: newest full (not copy-only), newest
        // differential on it, logs after.
        let mut by_db: BTreeMap<String, Vec<&(MsdbBackup, String)>> = BTreeMap::new();
        for row in history.iter().filter(|(_, d)| in_folder(d).is_some()) {
            by_db.entry(row.0.database_name.clone()).or_default().push(row);
        }
        let month_ago = server_now - time::Duration::days(30);
        for (db, rows) in &by_db {
            if !existing.contains(&db.to_lowercase()) {
                let present: Vec<PathBuf> = rows.iter().filter_map(|(_, d)| in_folder(d)).filter(|p| p.exists()).collect();
                if !present.is_empty() {
                    add(
                        Severity::Warning,
                        "orphans",
                        Some(db),
                        format!("{} backup file(s) of database {db}, which no longer exists, are in the folder (first: {})", present.len(), present[0].display()),
                        "keep them as long as the hospital's rules ask, then delete them by hand; no rule of pacsbak's or the policy's covers a dropped database".into(),
                    );
                }
                continue;
            }
            let kind = |b: &MsdbBackup| b.backup_type.native();
            let full = rows.iter().find(|(b, _)| kind(b) == Some(BackupKind::Full) && !b.is_copy_only);
            if let Some((full, _)) = full {
                let diff = rows.iter().find(|(b, _)| {
                    kind(b) == Some(BackupKind::Diff) && b.database_backup_lsn == full.checkpoint_lsn
                });
                let base_start = diff.map_or(full.backup_start_date, |(d, _)| d.backup_start_date);
                let chain = rows.iter().filter(|(b, _)| {
                    b.backup_set_id == full.backup_set_id
                        || diff.is_some_and(|(d, _)| d.backup_set_id == b.backup_set_id)
                        || (kind(b) == Some(BackupKind::Log) && !b.is_copy_only && b.backup_start_date >= base_start)
                });
                let missing: Vec<PathBuf> = chain.filter_map(|(_, d)| in_folder(d)).filter(|p| !p.exists()).collect();
                if !missing.is_empty() {
                    add(
                        Severity::Warning,
                        "local-chain",
                        Some(db),
                        format!("{} file(s) of the newest restorable chain are gone from the folder (first: {}): fewer backups are there than the policy needs; a restore must fetch them from offsite", missing.len(), missing[0].display()),
                        "raise the cleanup's age above the time between fulls, and check it cleans the right folder".into(),
                    );
                }
            }
            if repo.is_some() {
                let lost: Vec<&(MsdbBackup, String)> = rows
                    .iter()
                    .copied()
                    .filter(|(b, d)| {
                        b.backup_start_date.is_some_and(|t| t >= month_ago)
                            && in_folder(d).is_some_and(|p| !p.exists())
                            && !is_offsite(b)
                    })
                    .collect();
                if let Some((b, d)) = lost.first() {
                    add(
                        Severity::Critical,
                        "deleted-before-offsite",
                        Some(db),
                        format!("{} backup(s) were deleted from the folder before pacsbak copied them offsite (first: {d}, {} taken {}): they exist nowhere now", lost.len(), b.backup_type, b.backup_start_date.map(|t| t.to_string()).unwrap_or_default()),
                        "raise the cleanup's age above the offsite copy time; take a full backup now so the chain restarts from a copy that exists".into(),
                    );
                }
            }
        }
        f.sort_by_key(|x| std::cmp::Reverse(x.severity));
        Ok(AuditReport {
            policy: policy.name.clone(),
            instance: policy.instance_name.clone(),
            folder,
            cleanup_tasks: tasks,
            worst: f.first().map_or(Severity::Ok, |x| x.severity),
            findings: f,
        })
    }
    .instrument(span)
    .await
}

//! `check`: what threatens the policy's backups on the instance, each finding with a
//! severity and what to do: the Agent, recovery model against the log schedule, a
//! log waiting for LOG_BACKUP, percent or tiny growth steps, log usage, free space
//! on the backup volume, and the RPO: the age of the newest point restorable from
//! the repository (msdb's newest backup beside it), snapshots dated in the future.

use serde::Serialize;
use tracing::{info_span, Instrument};

use super::db_backup::select_databases;
use super::free_space;
use super::restore_db::describe_snapshots;
use crate::bakfile::plan::{plan, PlanRequest};
use crate::error::Result;
use crate::policy::Policy;
use crate::records::BackupKind;
use crate::repository::Repository;
use crate::sqlserver::catalog;
use crate::sqlserver::Instance;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Fine, for the record.
    Ok,
    /// Worth knowing.
    Info,
    /// Will hurt if left.
    Warning,
    /// Backups are failing the policy now.
    Critical,
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Severity.
    pub severity: Severity,
    /// What it is about (`agent`, `recovery-model`, `growth`, `rpo`...).
    pub area: String,
    /// The database, when it is about one.
    pub database: Option<String>,
    /// What was found.
    pub finding: String,
    /// What to do.
    pub action: String,
}

/// The check's report.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// Policy.
    pub policy: String,
    /// Instance.
    pub instance: String,
    /// Findings, worst first.
    pub findings: Vec<Finding>,
    /// The worst severity.
    pub worst: Severity,
}

/// Runs the check.
impl CheckReport {
    /// Adds a critical finding for each of the policy's targets that could not be
    /// opened: a copy the policy counts on is not there to restore from.
    pub fn note_unreachable(&mut self, unreachable: &[super::UnreachableTarget]) {
        for u in unreachable {
            self.findings.push(Finding {
                severity: Severity::Critical,
                area: "target".into(),
                database: None,
                finding: format!("target {} cannot be opened: {}", u.target, u.error),
                action: "`pacsbak target check` it; mount the share, fix the credentials".into(),
            });
        }
        self.findings.sort_by_key(|x| std::cmp::Reverse(x.severity));
        self.worst = self.findings.first().map_or(Severity::Ok, |x| x.severity);
    }
}

/// `repo` is the repository restores read from (the policy's first target): the RPO
/// is judged by what it can restore, not by what msdb says was taken.
pub async fn run(
    policy: &Policy,
    instance: &Instance,
    repo: Option<&Repository>,
) -> Result<CheckReport> {
    let span = info_span!("job", job = "check", policy = %policy.name);
    async {
        let mut f = Vec::new();
        let mut add = |severity, area: &str, database: Option<&str>, finding: String, action: &str| {
            f.push(Finding {
                severity,
                area: area.into(),
                database: database.map(str::to_string),
                finding,
                action: action.into(),
            })
        };
        let mut sql = instance.connect().await?;
        match catalog::agent_status(&mut sql).await {
            Ok(Some(s)) if s.eq_ignore_ascii_case("Running") => add(Severity::Ok, "agent", None, "SQL Server Agent is running".into(), "nothing"),
            Ok(Some(s)) => add(Severity::Warning, "agent", None, format!("SQL Server Agent is {s}: maintenance plans and jobs do not run"), "start the SQL Server Agent service and set it to start automatically"),
            Ok(None) => add(Severity::Info, "agent", None, "no SQL Server Agent on this instance (Express edition?)".into(), "pacsbak's own schedule must cover every backup"),
            Err(e) => add(Severity::Info, "agent", None, format!("Agent status unreadable: {e}"), "grant VIEW SERVER STATE to pacsbak's login"),
        }
        let dbs = catalog::databases(&mut sql).await?;
        let files = catalog::master_files(&mut sql).await?;
        let last = catalog::last_backups(&mut sql).await?;
        let now = catalog::server_now(&mut sql).await?.unwrap_or_else(|| {
            let n = time::OffsetDateTime::now_utc();
            time::PrimitiveDateTime::new(n.date(), n.time())
        });
        let has_log_schedule = policy.schedules.contains_key(&BackupKind::Log);
        // What the repository can restore, read once for every database.
        let described = match repo {
            Some(r) => {
                let machine_now = crate::clock::current().now();
                let snaps = r.snapshots().await?;
                for s in &snaps {
                    if s.is_future_dated(machine_now) {
                        add(Severity::Critical, "clock", None, format!("snapshot {} on {} is dated {}, in the future: it was taken under a clock that was ahead, and is never taken as latest", s.id.short(), r.storage().name(), s.snapshot.time), "fix the clock of the machine that took it (NTP); check the backups taken around then");
                    }
                }
                Some((r.storage().name().to_string(), describe_snapshots(r, snaps).await?.0))
            }
            None => None,
        };
        let mut largest = 0i64;
        for sel in select_databases(policy, &dbs, None) {
            let db = match sel {
                Ok(d) => d,
                Err((n, m)) => {
                    add(Severity::Critical, "database", Some(&n), m, "fix the policy's database list or bring the database back");
                    continue;
                }
            };
            let name = db.name.as_str();
            if !db.state.eq_ignore_ascii_case("ONLINE") {
                add(Severity::Critical, "state", Some(name), format!("database is {}", db.state), "bring it online; it cannot be backed up");
            }
            let simple = db.recovery_model.eq_ignore_ascii_case("SIMPLE");
            if simple && has_log_schedule {
                add(Severity::Critical, "recovery-model", Some(name), "recovery model SIMPLE, but the policy schedules log backups: they will fail and point-in-time restore is impossible".into(), "ALTER DATABASE ... SET RECOVERY FULL, then take a full backup");
            } else if !simple && !has_log_schedule {
                add(Severity::Warning, "recovery-model", Some(name), format!("recovery model {} without log backups in the policy: the log grows until the disk is full", db.recovery_model), "add a log schedule (e.g. every 15 minutes) or switch to SIMPLE if point-in-time restore is not needed");
            }
            if db.log_reuse_wait.eq_ignore_ascii_case("LOG_BACKUP") {
                add(Severity::Warning, "log-reuse", Some(name), "the log waits for a log backup (log_reuse_wait_desc = LOG_BACKUP)".into(), "run `pacsbak backup db --type log` and check the log schedule runs");
            }
            let mine: Vec<_> = files.iter().filter(|x| x.database_id == db.id).collect();
            largest = largest.max(mine.iter().filter(|x| !x.type_desc.eq_ignore_ascii_case("LOG")).map(|x| x.size_pages).sum());
            for file in &mine {
                if file.is_percent_growth {
                    add(Severity::Warning, "growth", Some(name), format!("file {} grows by {} percent: growth steps get huge on a large file", file.name, file.growth), "set a fixed growth (e.g. 256 MB for data, 128 MB for log)");
                } else if file.growth > 0 && file.growth < 8192 {
                    add(Severity::Warning, "growth", Some(name), format!("file {} grows by {} MB at a time: many tiny steps fragment it", file.name, file.growth * 8 / 1024), "set a fixed growth of at least 64 MB");
                }
            }
            if let Ok(Some((total, pct))) = catalog::log_usage(&mut sql, name).await {
                if pct >= 80.0 {
                    add(Severity::Warning, "log-usage", Some(name), format!("log {pct:.0} percent used of {} MB", total / 1_048_576), "take a log backup; find what keeps the log from being reused");
                }
            }
            let newest = last
                .iter()
                .filter(|(d, _, _)| d.eq_ignore_ascii_case(name))
                .filter_map(|(_, _, t)| *t)
                .max();
            let msdb_view = match newest {
                Some(t) => format!("msdb's newest backup {} minutes ago", (now - t).whole_minutes()),
                None => "no backup in msdb".to_string(),
            };
            // The newest point the repository can restore to.
            let restorable = described.as_ref().map(|(target, descs)| {
                let p = plan(descs, &PlanRequest { database: Some(name.to_string()), at: None });
                let point = p
                    .steps
                    .last()
                    .and_then(|s| s.backup_start_date)
                    .and_then(|d| d.to_datetime())
                    .filter(|_| p.ok);
                (target, point, p.problems)
            });
            match (policy.rpo(name), restorable, newest) {
                (rpo, Some((target, None, problems)), _) => add(Severity::Critical, "rpo", Some(name), format!("nothing restorable from the repository on {target}{} ({msdb_view}){}", rpo.map(|r| format!(", RPO {r} minutes")).unwrap_or_default(), if problems.is_empty() { String::new() } else { format!(": {}", problems.join("; ")) }), "run `pacsbak backup db --type full` now; `pacsbak restore db plan` shows the chain"),
                (Some(rpo), Some((target, Some(point), _)), _) => {
                    let age = (now - point).whole_minutes();
                    if age > rpo as i64 {
                        add(Severity::Critical, "rpo", Some(name), format!("newest point restorable from {target}: {age} minutes ago, RPO {rpo} minutes ({msdb_view})"), "run the due backup now and find why the schedule did not");
                    } else {
                        add(Severity::Ok, "rpo", Some(name), format!("newest point restorable from {target}: {age} minutes ago, within the RPO of {rpo} minutes ({msdb_view})"), "nothing");
                    }
                }
                (Some(rpo), None, Some(t)) => {
                    let age = (now - t).whole_minutes();
                    if age > rpo as i64 {
                        add(Severity::Critical, "rpo", Some(name), format!("last backup {age} minutes ago, RPO {rpo} minutes (msdb only: the repository was not read)"), "run the due backup now and find why the schedule did not");
                    } else {
                        add(Severity::Warning, "rpo", Some(name), format!("last backup {age} minutes ago by msdb, within the RPO of {rpo} minutes; the repository was not read, so this is not proof of a restorable copy"), "make the policy's first target reachable");
                    }
                }
                (_, None, None) => add(Severity::Critical, "rpo", Some(name), "no backup in msdb".into(), "run `pacsbak backup db --type full` now"),
                (None, _, _) => add(Severity::Info, "rpo", Some(name), format!("no RPO set for this database ({msdb_view})"), "set [rpo] in the policy"),
            }
        }
        let need = (largest.max(0) as u64) * 8192;
        match free_space(&policy.local_folder) {
            Some(free) if free < need => add(Severity::Critical, "free-space", None, format!("{} MB free on the backup volume, the largest database needs about {} MB", free / 1_048_576, need / 1_048_576), "free space or move the backup folder"),
            Some(free) => add(Severity::Ok, "free-space", None, format!("{} MB free on the backup volume", free / 1_048_576), "nothing"),
            None => add(Severity::Info, "free-space", None, format!("free space of {} unknown (not a local volume)", policy.local_folder.display()), "check the share's quota"),
        }
        f.sort_by_key(|x| std::cmp::Reverse(x.severity));
        let worst = f.first().map(|x| x.severity).unwrap_or(Severity::Ok);
        Ok(CheckReport { policy: policy.name.clone(), instance: instance.name.clone(), findings: f, worst })
    }
    .instrument(span)
    .await
}

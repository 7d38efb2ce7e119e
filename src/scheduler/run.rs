//! One scheduled job, run through the same library calls as its command.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::{JobSpec, JobWhat};
use crate::config::ConfigDir;
use crate::error::{Error, ErrorKind, ErrorRecord};
use crate::jobs::db_backup::{self, DbBackupOptions};
use crate::jobs::folders::{self, FolderFilter};
use crate::jobs::locks::LockSet;
use crate::jobs::open_targets;
use crate::outcome::{JobFailure, Outcome};
use crate::policy::Policy;
use crate::records::BackupKind;
use crate::repository::ReadData;
use crate::sqlserver::{Endpoint, Instance};

/// What the jobs of one daemon share: the locks, and the embedded simulator of a
/// policy, started once (two simulators on one state folder would each keep their
/// own copy of it).
#[derive(Clone, Default)]
pub struct JobContext {
    /// Locks held by running jobs.
    pub locks: LockSet,
    embedded: Arc<tokio::sync::Mutex<HashMap<PathBuf, Arc<Instance>>>>,
}

impl JobContext {
    /// The instance of `policy`: opened for each job, except the embedded simulator.
    async fn instance(&self, policy: &Policy) -> Result<Arc<Instance>, Error> {
        let spec = policy.instance_spec()?;
        let Endpoint::Embedded(root) = &spec.endpoint else {
            return Ok(Arc::new(Instance::open(&spec).await?));
        };
        let mut running = self.embedded.lock().await;
        if let Some(i) = running.get(root) {
            return Ok(i.clone());
        }
        let i = Arc::new(Instance::open(&spec).await?);
        running.insert(root.clone(), i.clone());
        Ok(i)
    }
}

/// What a run came to.
#[derive(Debug)]
pub struct JobResult {
    /// Everything it was asked to do was done and proven.
    pub ok: bool,
    /// The typed outcome, as the command's `--json` prints it.
    pub outcome: Outcome,
    /// Each failure in it (server, database, SQL Server error number), for alerts.
    pub failures: Vec<ErrorRecord>,
}

impl JobResult {
    fn failed(command: &str, e: &Error) -> JobResult {
        let record = e.record();
        JobResult {
            ok: false,
            outcome: Outcome::Failed(JobFailure {
                command: command.to_string(),
                ok: false,
                error: record.clone(),
            }),
            failures: vec![record],
        }
    }
}

/// Runs `spec` with the configuration `cfg`; `cancel` stops it (a BACKUP in
/// flight is killed).
/// Runs one job; `ctx` is what the daemon's jobs share.
pub async fn run_job(
    spec: &JobSpec,
    cfg: &ConfigDir,
    cancel: CancellationToken,
    ctx: &JobContext,
) -> JobResult {
    let command = spec.journal_job();
    match &spec.what {
        JobWhat::BackupDb { policy, kind } => {
            let run = async {
                let targets = open_targets(cfg, policy).await?;
                let instance = ctx.instance(policy).await?;
                let opts = DbBackupOptions {
                    kind: Some(*kind),
                    cancel,
                    // A log with no full to base it on: the daemon runs the full job.
                    no_promotion: *kind == BackupKind::Log,
                    ..DbBackupOptions::default()
                };
                let mut r = db_backup::run(policy, &instance, &targets.open, &opts).await?;
                r.note_unreachable(&targets.unreachable);
                Ok::<_, Error>(r)
            };
            match run.await {
                Ok(r) => {
                    let mut failures: Vec<ErrorRecord> = r
                        .results
                        .iter()
                        .filter(|d| !d.ok)
                        .map(|d| {
                            d.error.clone().unwrap_or_else(|| {
                                ErrorRecord::new(ErrorKind::Storage, "not proven offsite")
                            })
                        })
                        .collect();
                    if r.results.is_empty() {
                        failures.push(ErrorRecord::new(
                            ErrorKind::Config,
                            "the policy selected no database",
                        ));
                    }
                    JobResult {
                        ok: r.ok,
                        failures,
                        outcome: Outcome::BackupDb(r),
                    }
                }
                Err(e) => JobResult::failed(&command, &e),
            }
        }
        JobWhat::Folder { policy, folder } => {
            let filter = FolderFilter {
                names: vec![folder.clone()],
                due: None,
            };
            match folders::run_for_policy(cfg, policy, &filter).await {
                Ok(r) => JobResult {
                    ok: r.ok,
                    failures: r.results.iter().filter_map(|f| f.error.clone()).collect(),
                    outcome: Outcome::BackupFolders(r),
                },
                Err(e) => JobResult::failed(&command, &e),
            }
        }
        JobWhat::Copy { from, to } => match crate::jobs::copy::run(cfg, from, to).await {
            Ok(r) => JobResult {
                ok: r.ok,
                failures: r.targets.iter().filter_map(|t| t.error.clone()).collect(),
                outcome: Outcome::Copy(r),
            },
            Err(e) => JobResult::failed(&command, &e),
        },
        JobWhat::Maintenance { policy, .. } => {
            let Some(r) = &cfg.main.daemon.retention else {
                return JobResult::failed(
                    &command,
                    &Error::new(ErrorKind::Config, "[daemon.retention] is gone"),
                );
            };
            let opts = crate::repository::PruneOptions {
                repack_unused_percent: r.repack_unused_percent,
                grace: time::Duration::hours(i64::from(r.grace_hours)),
                dry_run: false,
            };
            // An unreachable server fails the audit only: retention, prune and the
            // local cleanup need no SQL Server.
            let (instance, unreachable) = if r.audit {
                match ctx.instance(policy).await {
                    Ok(i) => (Some(i), None),
                    Err(e) => (None, Some(e.with("policy", &policy.name).record())),
                }
            } else {
                (None, None)
            };
            let mut m =
                crate::jobs::retention::maintenance(cfg, policy, &opts, instance.as_deref()).await;
            if let Some(e) = unreachable {
                m.failures.push(e);
                m.ok = false;
            }
            JobResult {
                ok: m.ok,
                failures: m.failures.clone(),
                outcome: Outcome::Maintenance(m),
            }
        }
        JobWhat::Drill { test } => {
            let opts = crate::drills::DrillOptions { cancel };
            let mut rec = crate::drills::run(cfg, test, &opts).await;
            if let Err(e) = crate::drills::save_report(cfg, &mut rec, None) {
                tracing::error!(error = %e, "the drill's HTML report could not be written");
            }
            JobResult {
                ok: rec.ok,
                failures: rec.failures(),
                outcome: Outcome::Drill(rec),
            }
        }
        JobWhat::Verify { target, percent } => {
            let read = ReadData::Percent(*percent);
            match crate::jobs::verify::run(cfg, Some(target), read).await {
                Ok(v) => {
                    let failures = if v.ok {
                        Vec::new()
                    } else {
                        vec![ErrorRecord::new(
                            ErrorKind::Integrity,
                            format!(
                                "verify found damage on target {target}: {} damaged packs, {} missing chunks, {} damaged snapshots",
                                v.report.damaged_packs.len(),
                                v.report.missing_chunks.len(),
                                v.report.damaged_snapshots.len()
                            ),
                        )]
                    };
                    JobResult {
                        ok: v.ok,
                        failures,
                        outcome: Outcome::Verify(v),
                    }
                }
                Err(e) => JobResult::failed(&command, &e),
            }
        }
    }
}

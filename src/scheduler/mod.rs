//! The scheduler: what runs when, and the daemon that runs it.
//!
//! The jobs come from the policies (full, diff and log backups, program folders)
//! and from `[daemon]` in pacsbak.toml (copies, the nightly verify slice). Each has
//! a cron schedule in the hospital's zone, a time-out and the locks it holds while
//! it runs (docs/decisions/0010):
//!
//! - a policy's full and diff share one lock, so two never overlap and a diff
//!   whose full still runs waits; its log backups have a lock of their own and
//!   keep running beside a long full, as SQL Server permits;
//! - a folder, a copy source, a verified target: one run at a time each;
//! - at most `max_parallel` jobs at once.

mod daemon;
mod metrics;
mod run;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

pub use daemon::{run_daemon, DaemonOptions};
pub use metrics::Metrics;
pub use run::{run_job, JobContext, JobResult};

use crate::config::ConfigDir;
use crate::error::Result;
use crate::policy::{Cron, Policy};
use crate::records::BackupKind;

/// What a scheduled job does.
#[derive(Debug, Clone)]
pub enum JobWhat {
    /// `backup db --type KIND` over the policy's databases.
    BackupDb {
        /// The policy.
        policy: Arc<Policy>,
        /// Full, diff or log.
        kind: BackupKind,
    },
    /// `backup folders FOLDER`.
    Folder {
        /// The policy.
        policy: Arc<Policy>,
        /// The folder's name.
        folder: String,
    },
    /// `copy --from FROM --to TO...`.
    Copy {
        /// Source target.
        from: String,
        /// Destination targets.
        to: Vec<String>,
    },
    /// Retention, prune, local cleanup and audit of one policy.
    Maintenance {
        /// The policy.
        policy: Arc<Policy>,
        /// The targets it prunes (the default one when the policy names none).
        targets: Vec<String>,
    },
    /// `drill run NAME`: a restore test's drill.
    Drill {
        /// The restore test.
        test: Arc<crate::drills::RestoreTest>,
    },
    /// `verify --read-data=N%` of one target.
    Verify {
        /// The target.
        target: String,
        /// Share of packs read back.
        percent: f64,
    },
}

/// A job the daemon runs on a schedule.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Stable name (`backup-full/pacs`, `copy/nas`, `verify/offsite-s3`): what the
    /// journal, alerts and metrics call it.
    pub key: String,
    /// What it does.
    pub what: JobWhat,
    /// When.
    pub schedule: Cron,
    /// Longest run before it is stopped.
    pub timeout: Duration,
}

impl JobSpec {
    /// The journal's `job` column for it.
    pub fn journal_job(&self) -> String {
        match &self.what {
            JobWhat::BackupDb { kind, .. } => format!("backup-{kind}"),
            JobWhat::Folder { .. } => "backup-folders".into(),
            JobWhat::Copy { .. } => "copy".into(),
            JobWhat::Verify { .. } => "verify".into(),
            JobWhat::Maintenance { .. } => "retention".into(),
            JobWhat::Drill { .. } => crate::drills::JOURNAL_JOB.into(),
        }
    }

    /// The journal's `policy` column: the policy, or the target a repository job is about.
    pub fn journal_policy(&self) -> Option<String> {
        match &self.what {
            JobWhat::BackupDb { policy, .. }
            | JobWhat::Folder { policy, .. }
            | JobWhat::Maintenance { policy, .. } => Some(policy.name.clone()),
            JobWhat::Copy { from, .. } => Some(from.clone()),
            JobWhat::Verify { target, .. } => Some(target.clone()),
            JobWhat::Drill { test } => Some(test.policy.clone()),
        }
    }

    /// The journal's `database` column: the folder for folder jobs.
    pub fn journal_detail(&self) -> Option<String> {
        match &self.what {
            JobWhat::Folder { folder, .. } => Some(folder.clone()),
            JobWhat::Drill { test } => Some(test.database.clone()),
            _ => None,
        }
    }

    /// The locks it holds while running.
    pub fn locks(&self) -> Vec<String> {
        match &self.what {
            JobWhat::BackupDb { policy, kind } => match kind {
                BackupKind::Log => vec![format!("log/{}", policy.name)],
                _ => vec![data_lock(policy)],
            },
            JobWhat::Folder { policy, folder } => vec![format!("folder/{}/{folder}", policy.name)],
            JobWhat::Copy { from, .. } => vec![format!("copy/{from}")],
            JobWhat::Verify { target, .. } => vec![format!("verify/{target}")],
            // One drill per staging instance at a time: they share its disk.
            JobWhat::Drill { test } => vec![format!("drill/{}", test.staging_name)],
            // One prune per repository at a time (docs/decisions/0011).
            JobWhat::Maintenance { policy, targets } => targets
                .iter()
                .map(|t| format!("prune/{t}"))
                .chain([format!("local/{}", policy.name)])
                .collect(),
        }
    }

    /// Full and diff of one policy: a missed run of either is caught up once, as
    /// the newest of them (docs/decisions/0010).
    pub fn catch_up_group(&self) -> String {
        match &self.what {
            JobWhat::BackupDb {
                policy,
                kind: BackupKind::Full | BackupKind::Diff,
            } => data_lock(policy),
            _ => self.key.clone(),
        }
    }
}

/// The lock of a policy's fulls and diffs.
pub fn data_lock(policy: &Policy) -> String {
    format!("data/{}", policy.name)
}

/// Everything the daemon runs by, loaded and validated together: a reload either
/// takes all of it or none.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration folder.
    pub cfg: Arc<ConfigDir>,
    /// Every policy in policies/.
    pub policies: Vec<Arc<Policy>>,
    /// Every restore test in restore-tests/.
    pub restore_tests: Vec<Arc<crate::drills::RestoreTest>>,
    /// The scheduled jobs.
    pub jobs: Vec<JobSpec>,
    /// blake3 of each configuration file, by path relative to the folder.
    pub files: BTreeMap<String, String>,
}

/// What changed between two loads, for the journal.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ConfigChange {
    /// Files that appeared.
    pub added: Vec<String>,
    /// Files whose content changed.
    pub changed: Vec<String>,
    /// Files that went away.
    pub removed: Vec<String>,
}

impl ConfigChange {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// The configuration files that make up the daemon's configuration, with their hashes.
pub fn config_files(dir: &Path) -> Result<BTreeMap<String, String>> {
    let mut paths: Vec<PathBuf> = vec![dir.join(crate::config::MAIN_FILE)];
    for sub in ["storage-targets", "policies", "restore-tests"] {
        paths.extend(crate::config::toml_files(&dir.join(sub))?);
    }
    let mut out = BTreeMap::new();
    for p in paths {
        let bytes = std::fs::read(&p).map_err(|e| crate::Error::io(&p, e))?;
        let rel = p
            .strip_prefix(dir)
            .unwrap_or(&p)
            .to_string_lossy()
            .replace('\\', "/");
        out.insert(rel, blake3::hash(&bytes).to_hex().to_string());
    }
    Ok(out)
}

impl Loaded {
    /// Loads and validates the folder and every policy, and plans the jobs.
    pub fn load(dir: &Path) -> Result<Loaded> {
        let files = config_files(dir)?;
        let cfg = Arc::new(ConfigDir::load(dir)?);
        let mut policies = Vec::new();
        for path in crate::config::toml_files(&dir.join("policies"))? {
            let p = Policy::load(&path, dir)?;
            // What a job would find missing only when it runs: refused now.
            for t in &p.targets {
                cfg.target(Some(t))
                    .map_err(|e| e.with("file", path.display()))?;
            }
            p.instance_spec()
                .map_err(|e| e.with("file", path.display()))?;
            policies.push(Arc::new(p));
        }
        let mut restore_tests = Vec::new();
        for t in crate::drills::RestoreTest::load_all(&cfg)? {
            // What a drill would find wrong only when it runs at night: refused now.
            if !policies.iter().any(|p| p.name == t.policy) {
                return Err(crate::Error::new(
                    crate::ErrorKind::Config,
                    format!(
                        "{}: key `source.policy`: no policy {:?} in policies/",
                        t.file.display(),
                        t.policy
                    ),
                )
                .with("file", t.file.display())
                .with("key", "source.policy"));
            }
            if t.schedule.is_some() {
                t.staging_spec()
                    .map_err(|e| e.with("file", t.file.display()))?;
            }
            restore_tests.push(Arc::new(t));
        }
        crate::config::repository_passphrase(&cfg.main, &cfg.dir)?;
        let mut jobs = plan(&cfg, &policies);
        jobs.extend(restore_tests.iter().filter_map(|t| {
            Some(JobSpec {
                key: format!("drill/{}", t.name),
                what: JobWhat::Drill { test: t.clone() },
                schedule: t.schedule.clone()?,
                timeout: Duration::from_secs(cfg.main.daemon.timeout_minutes.max(1) * 60),
            })
        }));
        Ok(Loaded {
            cfg,
            policies,
            restore_tests,
            jobs,
            files,
        })
    }

    /// The files that differ from `before`.
    pub fn change_since(&self, before: &BTreeMap<String, String>) -> ConfigChange {
        let mut c = ConfigChange::default();
        for (f, h) in &self.files {
            match before.get(f) {
                None => c.added.push(f.clone()),
                Some(old) if old != h => c.changed.push(f.clone()),
                _ => {}
            }
        }
        c.removed = before
            .keys()
            .filter(|f| !self.files.contains_key(*f))
            .cloned()
            .collect();
        c
    }
}

/// The scheduled jobs of a configuration.
pub fn plan(cfg: &ConfigDir, policies: &[Arc<Policy>]) -> Vec<JobSpec> {
    let d = &cfg.main.daemon;
    let minutes = |m: u64| Duration::from_secs(m.max(1) * 60);
    let mut jobs = Vec::new();
    for p in policies {
        for (kind, cron) in &p.schedules {
            jobs.push(JobSpec {
                key: format!("backup-{kind}/{}", p.name),
                what: JobWhat::BackupDb {
                    policy: p.clone(),
                    kind: *kind,
                },
                schedule: cron.clone(),
                timeout: minutes(if *kind == BackupKind::Log {
                    d.log_timeout_minutes
                } else {
                    d.timeout_minutes
                }),
            });
        }
        for f in &p.folders {
            if let Some(cron) = &f.schedule {
                jobs.push(JobSpec {
                    key: format!("backup-folders/{}/{}", p.name, f.name),
                    what: JobWhat::Folder {
                        policy: p.clone(),
                        folder: f.name.clone(),
                    },
                    schedule: cron.clone(),
                    timeout: minutes(d.timeout_minutes),
                });
            }
        }
    }
    for c in &d.copy {
        jobs.push(JobSpec {
            key: format!("copy/{}/{}", c.from, c.to.join("+")),
            what: JobWhat::Copy {
                from: c.from.clone(),
                to: c.to.clone(),
            },
            schedule: c.schedule.clone(),
            timeout: minutes(d.timeout_minutes),
        });
    }
    if let Some(r) = &d.retention {
        for p in policies
            .iter()
            .filter(|p| p.retention.is_some() || p.local_cleanup_after.is_some())
        {
            jobs.push(JobSpec {
                key: format!("retention/{}", p.name),
                what: JobWhat::Maintenance {
                    policy: p.clone(),
                    targets: if p.targets.is_empty() {
                        cfg.target(None)
                            .map(|t| vec![t.name.clone()])
                            .unwrap_or_default()
                    } else {
                        p.targets.clone()
                    },
                },
                schedule: r.schedule.clone(),
                timeout: minutes(d.timeout_minutes),
            });
        }
    }
    if let Some(v) = &d.verify {
        let targets: Vec<String> = if v.targets.is_empty() {
            cfg.targets.keys().cloned().collect()
        } else {
            v.targets.clone()
        };
        for t in targets {
            jobs.push(JobSpec {
                key: format!("verify/{t}"),
                what: JobWhat::Verify {
                    target: t,
                    percent: v.percent_per_run(),
                },
                schedule: v.schedule.clone(),
                timeout: minutes(d.timeout_minutes),
            });
        }
    }
    jobs
}

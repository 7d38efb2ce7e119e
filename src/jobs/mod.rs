//! The jobs a policy runs: native database backups into the repository, program
//! folders, the manual pre-upgrade backup, restores from the repository alone and
//! the instance check. Each job is library code with a serializable report; the
//! CLI (src/cli/) only parses arguments and prints.

pub mod audit;
pub mod check;
pub mod copy;
pub mod db_backup;
pub mod folders;
pub mod local_cleanup;
pub mod locks;
pub mod manual;
pub mod restore_db;
pub mod retention;
pub mod sandbox;
pub mod sandbox_live;
pub mod status;
pub mod verify;

use std::sync::Arc;

use serde::Serialize;
use tracing::warn;

use crate::config::{repository_passphrase, ConfigDir, TargetConfig};
use crate::error::{Error, ErrorKind, ErrorRecord, Result};
use crate::policy::Policy;
use crate::repository::Repository;
use crate::storage::seen;

/// A repository on one storage target.
#[derive(Clone, Debug)]
pub struct Target {
    /// The target's name.
    pub name: String,
    /// The open repository.
    pub repo: Repository,
}

/// Opens the repository on target `t`. A target that held a repository when this
/// machine last opened it and now looks empty (or whose folder is gone) is reported
/// as missing, naming that repository: an unmounted share must not look like a new
/// target. A repository opened is remembered for next time.
pub async fn open_repository(t: &TargetConfig, passphrase: &str) -> Result<Repository> {
    let opened = match crate::storage::open_target(t) {
        Ok(storage) => Repository::open(storage, passphrase).await,
        Err(e) => Err(e),
    };
    match opened {
        Ok(repo) => {
            seen::remember(t, &repo.config().id.to_hex());
            Ok(repo)
        }
        Err(e) => match seen::held_before(t) {
            Some(held) if matches!(e.context("found"), Some("nothing" | "no folder")) => {
                Err(Error::new(
                    ErrorKind::Storage,
                    format!(
                        "missing: this target held repository {} (last opened here {}) and now {}. Is the share mounted, the disk attached, the bucket right? Nothing was written; do not run `repo init` here",
                        held.repository.get(..8).unwrap_or(&held.repository),
                        held.seen,
                        if e.context("found") == Some("nothing") {
                            "looks empty"
                        } else {
                            "its folder does not exist"
                        }
                    ),
                )
                .with("target", &t.name))
            }
            _ => Err(e.with("target", &t.name)),
        },
    }
}

/// A target named by the policy whose repository could not be opened.
#[derive(Debug, Clone, Serialize)]
pub struct UnreachableTarget {
    /// The target's name.
    pub target: String,
    /// Why it could not be opened.
    pub error: ErrorRecord,
}

impl UnreachableTarget {
    /// The failed copy this target stands for in a job's outcome.
    pub fn as_failed_copy(&self) -> db_backup::OffsiteCopy {
        db_backup::OffsiteCopy::failed(&self.target, self.error.clone())
    }
}

/// The policy's targets: the ones open, and the ones that could not be opened.
#[derive(Debug, Clone)]
pub struct PolicyTargets {
    /// Targets whose repository is open.
    pub open: Vec<Target>,
    /// Targets that could not be opened: a job still runs on the others and reports
    /// these as failed copies (one unreachable share must not stop the offsite copy).
    pub unreachable: Vec<UnreachableTarget>,
}

/// Opens the repository on every target the policy names (the default target when
/// it names none). Fails only when none can be opened.
pub async fn open_targets(cfg: &ConfigDir, policy: &Policy) -> Result<PolicyTargets> {
    let pass = repository_passphrase(&cfg.main, &cfg.dir)?;
    let names: Vec<Option<&str>> = if policy.targets.is_empty() {
        vec![None]
    } else {
        policy.targets.iter().map(|t| Some(t.as_str())).collect()
    };
    let mut out = PolicyTargets {
        open: Vec::new(),
        unreachable: Vec::new(),
    };
    let mut first_error = None;
    for n in names {
        let t = cfg.target(n)?;
        match open_repository(t, &pass).await {
            Ok(repo) => out.open.push(Target {
                name: t.name.clone(),
                repo,
            }),
            Err(e) => {
                let e = e.with("target", &t.name);
                warn!(target = %t.name, error = %e, "target unreachable; the others are used");
                out.unreachable.push(UnreachableTarget {
                    target: t.name.clone(),
                    error: e.record(),
                });
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) if out.open.is_empty() => Err(e),
        _ => Ok(out),
    }
}

/// A progress callback: (what, percent).
pub type Progress = Arc<dyn Fn(&str, f64) + Send + Sync>;

/// Free bytes on the volume holding `path` (sysinfo), when it is a local volume.
pub fn free_space(path: &std::path::Path) -> Option<u64> {
    let canon = path.canonicalize().ok()?;
    let disks = sysinfo::Disks::new_with_refreshed_list();
    disks
        .list()
        .iter()
        .filter(|d| canon.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(|d| d.available_space())
}

/// `YYYYMMDD_HHMMSS`.
pub fn stamp(t: time::PrimitiveDateTime) -> String {
    format!(
        "{:04}{:02}{:02}_{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

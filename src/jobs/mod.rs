//! The jobs a policy runs: native database backups into the repository, program
//! folders, the manual pre-upgrade backup, restores from the repository alone and
//! the instance check. Each job is library code with a serializable report; the
//! CLI (src/cli/) only parses arguments and prints.

pub mod check;
pub mod db_backup;
pub mod folders;
pub mod manual;
pub mod restore_db;
pub mod sandbox;

use std::sync::Arc;

use crate::config::{repository_passphrase, ConfigDir};
use crate::error::Result;
use crate::policy::Policy;
use crate::repository::Repository;

/// A repository on one storage target.
#[derive(Clone, Debug)]
pub struct Target {
    /// The target's name.
    pub name: String,
    /// The open repository.
    pub repo: Repository,
}

/// Opens the repository on every target the policy names (the default target when
/// it names none).
pub async fn open_targets(cfg: &ConfigDir, policy: &Policy) -> Result<Vec<Target>> {
    let pass = repository_passphrase(&cfg.main, &cfg.dir)?;
    let names: Vec<Option<&str>> = if policy.targets.is_empty() {
        vec![None]
    } else {
        policy.targets.iter().map(|t| Some(t.as_str())).collect()
    };
    let mut out = Vec::new();
    for n in names {
        let t = cfg.target(n)?;
        let storage = crate::storage::open_target(t)?;
        let repo = Repository::open(storage, &pass)
            .await
            .map_err(|e| e.with("target", &t.name))?;
        out.push(Target {
            name: t.name.clone(),
            repo,
        });
    }
    Ok(out)
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

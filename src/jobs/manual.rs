//! `backup manual`: before an upgrade, a COPY_ONLY full of every database of the
//! policy (the nightly differential chain stays intact), plus the program
//! folders of the server and the workstations (a switched-off workstation is
//! reported missed), offsite to every target, verified and pinned; then a summary of what
//! can be restored from where.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;
use tracing::{info_span, Instrument};

use super::db_backup::{self, DbBackupOptions, DbBackupRun, OffsiteCopy};
use super::folders::{self, FoldersRun};
use super::{Progress, Target};
use crate::error::Result;
use crate::outcome::Status;
use crate::policy::Policy;
use crate::records::BackupKind;
use crate::sqlserver::Instance;

/// The outcome of a manual backup.
#[derive(Debug, Clone, Serialize)]
pub struct ManualRun {
    /// Why it was taken.
    pub reason: String,
    /// The database backups.
    pub databases: DbBackupRun,
    /// The program folders (server and workstations).
    pub folders: FoldersRun,
    /// What can be restored from where, one line each.
    pub restorable: Vec<String>,
    /// Everything succeeded.
    pub ok: bool,
}

impl ManualRun {
    /// Adds the policy's targets that could not be opened as failed copies.
    pub fn note_unreachable(&mut self, unreachable: &[super::UnreachableTarget]) {
        self.databases.note_unreachable(unreachable);
        self.folders.note_unreachable(unreachable);
        self.ok = self.ok && self.databases.ok && self.folders.ok;
    }
}

/// Runs the manual backup.
pub async fn run(
    policy: &Policy,
    instance: &Instance,
    targets: &[Target],
    reason: &str,
    progress: Option<Progress>,
) -> Result<ManualRun> {
    let span = info_span!("job", job = "backup manual", policy = %policy.name);
    async {
        let opts = DbBackupOptions {
            kind: Some(BackupKind::Full),
            database: None,
            copy_only: true,
            pinned: true,
            tags: vec!["manual".into()],
            reason: Some(reason.to_string()),
            progress,
            cancel: Default::default(),
            no_promotion: false,
        };
        let databases = db_backup::run(policy, instance, targets, &opts).await?;
        let mut meta = BTreeMap::new();
        meta.insert("reason".to_string(), json!(reason));
        let folders = folders::run(
            policy,
            targets,
            // Every program folder: an upgrade changes the server's and the
            // workstations' alike (a switched-off workstation is reported missed).
            &folders::FolderFilter::default(),
            true,
            &["manual".to_string()],
            &meta,
        )
        .await;
        let mut restorable = Vec::new();
        for r in &databases.results {
            if r.ok {
                restorable.push(format!(
                    "database {}: copy-only full of {}, from {}",
                    r.database,
                    r.record
                        .as_ref()
                        .and_then(|rec| rec.backup_start)
                        .map_or("?".into(), |d| d.to_string()),
                    copies(&r.offsite)
                ));
            } else {
                restorable.push(format!(
                    "database {}: NOT backed up: {}",
                    r.database,
                    r.error.as_ref().map_or("failed".into(), |e| e.to_string())
                ));
            }
        }
        for f in &folders.results {
            if f.status == Status::Ok {
                restorable.push(format!(
                    "folder {} ({}): from {}",
                    f.name,
                    f.path,
                    copies(&f.offsite)
                ));
            } else {
                restorable.push(format!(
                    "folder {} ({}): NOT backed up: {}",
                    f.name,
                    f.path,
                    f.error.as_ref().map_or("failed".into(), |e| e.to_string())
                ));
            }
        }
        let ok = databases.ok && folders.ok;
        Ok(ManualRun {
            reason: reason.to_string(),
            databases,
            folders,
            restorable,
            ok,
        })
    }
    .instrument(span)
    .await
}

/// Where the copies of one backup are: `target (snapshot id), ...`.
fn copies(offsite: &[OffsiteCopy]) -> String {
    offsite
        .iter()
        .map(|o| {
            format!(
                "{} (snapshot {})",
                o.target,
                o.snapshot.as_deref().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

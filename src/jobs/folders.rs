//! `backup folders`: the PACS server's and the workstations' program folders into
//! the repository. A workstation that cannot be reached (switched off, share
//! missing) is reported as missed with the age of its last good copy, and tried
//! again next run; it never fails the run. A server folder that cannot be read does.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::json;
use tracing::{info_span, warn, Instrument};

use super::db_backup::{offsite, OffsiteCopy};
use super::Target;
use crate::policy::{FolderRole, Policy};
use crate::repository::{BackupOptions, SnapshotKind};

/// What happened to one folder.
#[derive(Debug, Clone, Serialize)]
pub struct FolderResult {
    /// Name in the policy.
    pub name: String,
    /// Server or workstation.
    pub role: FolderRole,
    /// Path.
    pub path: String,
    /// `backed-up`, `missed` (workstation unreachable) or `failed`.
    pub status: String,
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

/// Backs up the policy's folders (`only_server`: the server's alone).
pub async fn run(
    policy: &Policy,
    targets: &[Target],
    only_server: bool,
    pinned: bool,
    extra_tags: &[String],
    extra_meta: &BTreeMap<String, serde_json::Value>,
) -> FoldersRun {
    let span = info_span!("job", job = "backup folders", policy = %policy.name);
    async {
        let mut results = Vec::new();
        for f in &policy.folders {
            if only_server && f.role != FolderRole::Server {
                continue;
            }
            let step = info_span!("step", step = "folder", folder = %f.name);
            let r = async {
                let mut r = FolderResult {
                    name: f.name.clone(),
                    role: f.role,
                    path: f.path.display().to_string(),
                    status: "backed-up".into(),
                    offsite: Vec::new(),
                    last_good: None,
                    last_good_age_hours: None,
                    error: None,
                };
                if let Err(e) = std::fs::read_dir(&f.path) {
                    r.status = if f.role == FolderRole::Workstation {
                        "missed"
                    } else {
                        "failed"
                    }
                    .into();
                    r.error = Some(format!("cannot read {}: {e}", f.path.display()));
                    if let Some(t) = targets.first() {
                        if let Ok(snaps) = t.repo.snapshots().await {
                            let tag = format!("folder:{}", f.name);
                            if let Some(s) =
                                snaps.iter().rev().find(|s| s.snapshot.tags.contains(&tag))
                            {
                                let when = s.snapshot.time;
                                r.last_good = when
                                    .format(&time::format_description::well_known::Rfc3339)
                                    .ok();
                                r.last_good_age_hours = Some(
                                    (time::OffsetDateTime::now_utc() - when).as_seconds_f64()
                                        / 3600.0,
                                );
                            }
                        }
                    }
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

//! `retention local`: deleting backup files from the server's backup folder once
//! they are safe elsewhere (`[local_cleanup]` of a policy).
//!
//! A `.bak`/`.trn` file is deleted only when all of these hold, checked now:
//! it is older than `local_cleanup.after`; a snapshot holding exactly its bytes (the
//! same blake3) is on *every* offsite target of the policy; each of those
//! snapshots is proven there by reading back every pack it needs; and the file is
//! not part of the newest restorable chain of its database. Anything else keeps the
//! file and says why. The maintenance plan's cleanup can then be switched off, or
//! kept and watched by `retention audit`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use tracing::{info, info_span, warn, Instrument};

use crate::config::ConfigDir;
use crate::error::{Error, ErrorKind, Result};
use crate::policy::Policy;
use crate::records::{BackupRecord, Tags};
use crate::repository::{ReadBack, SnapshotKind, SnapshotRef};

/// One backup file in the local folder and what was done with it.
#[derive(Debug, Clone, Serialize)]
pub struct LocalFile {
    /// Path as pacsbak sees it.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Age in hours (by its modification time).
    pub age_hours: f64,
    /// Deleted (or, in a dry run, would be).
    pub delete: bool,
    /// Why it was deleted, or kept.
    pub reason: String,
}

/// `retention local`'s outcome.
#[derive(Debug, Clone, Serialize)]
pub struct LocalCleanupRun {
    /// The policy.
    pub policy: String,
    /// The folder cleaned.
    pub folder: String,
    /// Nothing was deleted: what would be is listed.
    pub dry_run: bool,
    /// Every backup file found.
    pub files: Vec<LocalFile>,
    /// Files deleted (or that would be).
    pub deleted: usize,
    /// Bytes freed (or that would be).
    pub bytes_freed: u64,
    /// What is wrong: a target that could not be read (then nothing is deleted), a
    /// file dated in the future, a deletion that failed.
    pub problems: Vec<String>,
    /// No problem.
    pub ok: bool,
}

/// The backup files under `folder` (its `restore-staging` left out), recursively.
pub(crate) fn backup_files(folder: &Path, staging: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![folder.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot list the local backup folder: {e} (is the share reachable?)"),
            )
            .with("path", dir.display())
        })?;
        for e in entries.flatten() {
            let p = e.path();
            if p == staging {
                continue;
            }
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(t) if t.is_file() => {
                    let ext = p
                        .extension()
                        .map(|x| x.to_string_lossy().to_ascii_lowercase());
                    if matches!(ext.as_deref(), Some("bak" | "trn" | "dif")) {
                        out.push(p);
                    }
                }
                _ => {}
            }
        }
    }
    out.sort();
    Ok(out)
}

fn blake3_of(path: &Path) -> std::io::Result<String> {
    let mut h = blake3::Hasher::new();
    h.update_reader(std::fs::File::open(path)?)?;
    Ok(h.finalize().to_hex().to_string())
}

/// Runs the cleanup of `policy`'s local backup folder.
pub async fn run(cfg: &ConfigDir, policy: &Policy, dry_run: bool) -> Result<LocalCleanupRun> {
    let span = info_span!("job", job = "retention local", policy = %policy.name, dry_run);
    async {
        let after = policy.local_cleanup_after.ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "policy {} has no [local_cleanup]: pacsbak deletes nothing from its backup folder until `after` is set there",
                    policy.name
                ),
            )
            .with("policy", &policy.name)
            .with("file", policy.file.display())
        })?;
        let opened = super::open_targets(cfg, policy).await?;
        let mut run = LocalCleanupRun {
            policy: policy.name.clone(),
            folder: policy.local_folder.display().to_string(),
            dry_run,
            files: Vec::new(),
            deleted: 0,
            bytes_freed: 0,
            problems: Vec::new(),
            ok: true,
        };
        for u in &opened.unreachable {
            run.problems.push(format!(
                "target {} could not be opened ({}): nothing is deleted while a target cannot be checked",
                u.target, u.error.message
            ));
        }
        // Per target: the policy's native backups by the blake3 of their files.
        let mut by_hash: Vec<(String, HashMap<String, SnapshotRef>)> = Vec::new();
        let mut newest_chain: HashSet<String> = HashSet::new();
        for t in &opened.open {
            let snaps: Vec<SnapshotRef> = t
                .repo
                .snapshots()
                .await?
                .into_iter()
                .filter(|s| s.snapshot.kind == SnapshotKind::SqlBackup)
                .filter(|s| {
                    BackupRecord::from_snapshot(&s.snapshot).is_ok_and(|r| {
                        r.policy.as_deref().or(Tags(&s.snapshot.tags).policy().as_deref())
                            == Some(policy.name.as_str())
                            || r.instance == policy.instance_name
                    })
                })
                .collect();
            let mut map = HashMap::new();
            for s in &snaps {
                for e in &s.snapshot.entries {
                    if let Some(h) = &e.blake3 {
                        map.insert(h.clone(), s.clone());
                    }
                }
            }
            // The newest chain of each database, as planned from this target.
            let mut databases: Vec<String> = snaps
                .iter()
                .filter_map(|s| BackupRecord::from_snapshot(&s.snapshot).ok())
                .map(|r| r.database)
                .collect();
            databases.sort();
            databases.dedup();
            let (descs, _) = super::restore_db::describe_snapshots(&t.repo, snaps.clone()).await?;
            for db in databases {
                let p = crate::bakfile::plan(
                    &descs,
                    &crate::bakfile::PlanRequest {
                        database: Some(db.clone()),
                        at: None,
                    },
                );
                for step in &p.steps {
                    for src in &step.files {
                        let short = src.split_once(':').map(|x| x.0).unwrap_or_default();
                        for s in snaps.iter().filter(|s| s.id.short() == short) {
                            if let Ok(r) = BackupRecord::from_snapshot(&s.snapshot) {
                                for f in &r.files {
                                    newest_chain.insert(file_name(&f.server_path));
                                }
                            }
                        }
                    }
                }
            }
            by_hash.push((t.name.clone(), map));
        }

        let now = std::time::SystemTime::now();
        let mut proven: HashMap<(String, crate::repository::Id), std::result::Result<(), String>> =
            HashMap::new();
        for path in backup_files(&policy.local_folder, &policy.staging.1)? {
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    run.problems.push(format!("{}: {e}", path.display()));
                    continue;
                }
            };
            let modified = meta.modified().unwrap_or(now);
            let age = now.duration_since(modified);
            let mut file = LocalFile {
                path: path.display().to_string(),
                size: meta.len(),
                age_hours: age.as_ref().map_or(0.0, |a| a.as_secs_f64() / 3600.0),
                delete: false,
                reason: String::new(),
            };
            file.reason = match age {
                Err(_) => {
                    run.problems.push(format!(
                        "{} is dated in the future: a clock is wrong; it is kept",
                        path.display()
                    ));
                    "dated in the future".into()
                }
                Ok(a) if (a.as_secs() as i64) < after.0.whole_seconds() => {
                    format!("younger than local_cleanup.after ({after})")
                }
                Ok(_) if newest_chain.contains(&file_name(&path.display().to_string())) => {
                    "part of the newest restorable chain".into()
                }
                Ok(_) if !opened.unreachable.is_empty() => {
                    "a target could not be checked".into()
                }
                Ok(_) => {
                    let hash = match blake3_of(&path) {
                        Ok(h) => h,
                        Err(e) => {
                            run.problems.push(format!("cannot read {}: {e}", path.display()));
                            run.files.push(file);
                            continue;
                        }
                    };
                    let mut why_not = None;
                    for ((name, map), t) in by_hash.iter().zip(&opened.open) {
                        let Some(snap) = map.get(&hash) else {
                            why_not = Some(format!(
                                "not on target {name}: no snapshot there holds these exact bytes"
                            ));
                            break;
                        };
                        let key = (name.clone(), snap.id);
                        if !proven.contains_key(&key) {
                            let r = match t.repo.verify_snapshot(snap, ReadBack::All).await {
                                Ok(r) if r.ok() => Ok(()),
                                Ok(r) => Err(format!(
                                    "{} damaged pack(s), {} missing chunk(s)",
                                    r.damaged_packs.len(),
                                    r.missing_chunks.len()
                                )),
                                Err(e) => Err(e.to_string()),
                            };
                            proven.insert(key.clone(), r);
                        }
                        if let Some(Err(e)) = proven.get(&key) {
                            why_not = Some(format!(
                                "its copy on target {name} (snapshot {}) is not proven: {e}",
                                snap.id.short()
                            ));
                            break;
                        }
                    }
                    match why_not {
                        Some(w) => w,
                        None => {
                            file.delete = true;
                            format!(
                                "older than {after}, proven on {}",
                                by_hash
                                    .iter()
                                    .map(|(n, _)| n.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        }
                    }
                }
            };
            if file.delete && !dry_run {
                if let Err(e) = std::fs::remove_file(&path) {
                    file.delete = false;
                    run.problems
                        .push(format!("cannot delete {}: {e}", path.display()));
                } else {
                    info!(file = %path.display(), "deleted from the local backup folder: proven offsite");
                }
            }
            if file.delete {
                run.deleted += 1;
                run.bytes_freed += file.size;
            }
            run.files.push(file);
        }
        if !run.problems.is_empty() {
            warn!(problems = run.problems.len(), "local cleanup found problems");
        }
        run.ok = run.problems.is_empty();
        Ok(run)
    }
    .instrument(span)
    .await
}

/// The last component of a Windows or POSIX path, lower-cased (Windows names
/// compare without case).
fn file_name(path: &str) -> String {
    path.rsplit(['\\', '/'])
        .next()
        .unwrap_or(path)
        .to_lowercase()
}

//! Database restores from the repository alone (msdb gone with the server): the
//! chain is planned from the snapshot manifests' metadata with the backup-file
//! planner (`bakfile::plan`), the files are fetched into a staging folder the target
//! server can read, and the RESTORE sequence runs with MOVE, NORECOVERY, STOPAT and
//! a final RECOVERY.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;
use tracing::{info, info_span, Instrument};

use crate::bakfile::plan::{plan, BackupDescription, PlanRequest, RestorePlan};
use crate::bakfile::{BackupType, MtfDate};
use crate::error::{Error, ErrorKind, Result};
use crate::policy::{server_join, Policy};
use crate::records::{BackupKind, BackupRecord, Tags};
use crate::repository::{Repository, RestoreOptions, SnapshotKind, SnapshotRef};
use crate::sqlserver::{quote, restore, run_long, Instance};

/// Descriptions of every native backup in the repository; sources are
/// `SNAPSHOT:FILE`.
pub async fn describe_repository(
    repo: &Repository,
) -> Result<(Vec<BackupDescription>, Vec<SnapshotRef>)> {
    describe_snapshots(repo, repo.snapshots().await?).await
}

/// Like [`describe_repository`], for snapshots of `repo` already listed: the native
/// backups among them, twins once, those on damaged packs marked unusable.
pub async fn describe_snapshots(
    repo: &Repository,
    snaps: Vec<SnapshotRef>,
) -> Result<(Vec<BackupDescription>, Vec<SnapshotRef>)> {
    let snaps: Vec<SnapshotRef> = snaps
        .into_iter()
        .filter(|s| s.snapshot.kind == SnapshotKind::SqlBackup)
        .collect();
    // The same backup stored twice (a copy made before copies recognised their
    // twins) is one backup to the planner.
    let mut seen = std::collections::HashSet::new();
    let snaps: Vec<SnapshotRef> = snaps
        .into_iter()
        .filter(|s| s.snapshot.twin_key().is_none_or(|k| seen.insert(k)))
        .collect();
    let on_damaged = repo.snapshots_on_damaged_packs(&snaps).await?;
    let mut out = Vec::new();
    for s in &snaps {
        let mut described = describe_snapshot(s);
        if let Some(packs) = on_damaged.get(&s.id) {
            let why = format!(
                "a pack it needs was found damaged by verify ({}): skipped",
                packs
                    .iter()
                    .map(|p| p.short())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            for d in &mut described {
                d.unusable.get_or_insert_with(|| why.clone());
            }
        }
        out.extend(described);
    }
    Ok((out, snaps))
}

/// The planner's view of one snapshot's backup set: one description per stripe.
/// A snapshot whose record cannot be read is described as unusable, with the
/// reason, so the plan names it instead of failing or skipping it silently.
pub(crate) fn describe_snapshot(s: &SnapshotRef) -> Vec<BackupDescription> {
    let record = match BackupRecord::from_snapshot(&s.snapshot) {
        Ok(r) => r,
        Err(e) => {
            let tags = Tags(&s.snapshot.tags);
            return vec![BackupDescription {
                source: format!("{}:?", s.id.short()),
                database_name: tags.database().unwrap_or_default(),
                server_name: String::new(),
                backup_type: BackupType::Other(b'?'),
                position: 1,
                first_lsn: None,
                last_lsn: None,
                checkpoint_lsn: None,
                database_backup_lsn: None,
                backup_start_date: None,
                family_count: 1,
                family_sequence: 1,
                media_set_id: None,
                unusable: Some(e.message().to_string()),
            }];
        }
    };
    record
        .files
        .iter()
        .map(|f| BackupDescription {
            source: format!("{}:{}", s.id.short(), f.name),
            database_name: record.database.clone(),
            server_name: record.instance.clone(),
            backup_type: BackupType::from(record.kind),
            position: f.position,
            first_lsn: record.first_lsn,
            last_lsn: record.last_lsn,
            checkpoint_lsn: record.checkpoint_lsn,
            database_backup_lsn: record.database_backup_lsn,
            backup_start_date: record.backup_start,
            family_count: f.family_count,
            family_sequence: f.family_sequence,
            media_set_id: f.media_set_id.clone(),
            unusable: None,
        })
        .collect()
}

/// The refusal of a plan that is not ok, with what breaks it.
pub fn broken_chain(p: &RestorePlan, database: &str, consequence: &str) -> Error {
    Error::new(
        ErrorKind::Refused,
        format!(
            "the restore chain of {database} is broken, {consequence}: {}",
            if p.problems.is_empty() {
                "no full backup".into()
            } else {
                p.problems.join("; ")
            }
        ),
    )
    .with("database", database)
}

/// The snapshot (short id) and file of a planned source `SNAPSHOT:FILE`, as
/// [`describe_snapshot`] names them.
pub fn source_parts(source: &str) -> (&str, &str) {
    source.split_once(':').unwrap_or((source, ""))
}

/// The last component of `path`, as text.
pub(crate) fn file_name_of(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// Plans a restore of `database` (to `at`) from the repository's manifests.
pub async fn plan_from_repository(
    repo: &Repository,
    database: &str,
    at: Option<MtfDate>,
) -> Result<RestorePlan> {
    let span = info_span!("job", job = "restore db plan", database);
    async {
        let (descs, _) = describe_repository(repo).await?;
        let mut p = plan(
            &descs,
            &PlanRequest {
                database: Some(database.to_string()),
                at,
            },
        );
        if descs
            .iter()
            .all(|d| !d.database_name.eq_ignore_ascii_case(database))
        {
            p.ok = false;
            p.problems.push(format!(
                "the repository holds no native backup of database {database:?}"
            ));
        }
        Ok(p)
    }
    .instrument(span)
    .await
}

/// What `restore db run` does.
#[derive(Debug, Clone)]
pub struct RestoreDbOptions {
    /// Database whose backups to restore.
    pub database: String,
    /// Point in time.
    pub at: Option<MtfDate>,
    /// Name to restore as.
    pub as_name: String,
    /// Folder for data files, as SQL Server sees it.
    pub move_data: String,
    /// Folder for log files, as SQL Server sees it.
    pub move_log: String,
    /// Replace an existing database of that name.
    pub replace: bool,
    /// Leave the staged backup files in the staging folder after the restore.
    pub keep_staging: bool,
    /// Stops the restore: the RESTORE in flight is killed.
    pub cancel: tokio_util::sync::CancellationToken,
}

/// The outcome of a restore.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreDbRun {
    /// The database whose backups were restored.
    pub database: String,
    /// The name it was restored as.
    pub as_name: String,
    /// The target it was restored from.
    pub target: String,
    /// The plan followed.
    pub plan: RestorePlan,
    /// Files staged (as pacsbak sees them).
    pub staged: Vec<String>,
    /// Statements run, in order.
    pub statements: Vec<String>,
    /// The staged files were removed after the restore (kept with `--keep-staging`).
    pub staging_removed: bool,
    /// Restored and recovered.
    pub ok: bool,
}

/// Runs the restore.
pub async fn run(
    policy: &Policy,
    instance: &Instance,
    repo: &Repository,
    o: &RestoreDbOptions,
) -> Result<RestoreDbRun> {
    let span =
        info_span!("job", job = "restore db run", database = %o.database, as_name = %o.as_name);
    async {
        let (descs, snaps) = describe_repository(repo).await?;
        let p = plan(
            &descs,
            &PlanRequest {
                database: Some(o.database.clone()),
                at: o.at,
            },
        );
        if !p.ok {
            return Err(broken_chain(&p, &o.database, "nothing was restored"));
        }
        // A database of that name is refused before anything is fetched: SQL Server
        // would refuse it only after every file was staged.
        if !o.replace {
            let mut sql = instance.connect().await?;
            let exists = sql
                .rows(&format!(
                    "SELECT name FROM sys.databases WHERE name = {}",
                    quote::string(&o.as_name)
                ))
                .await?;
            if !exists.is_empty() {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "database {:?} already exists on {}: nothing was fetched. Restore under another name (--as), or give --replace to overwrite it",
                        o.as_name, instance.name
                    ),
                )
                .with("server", &instance.name)
                .with("database", &o.as_name));
            }
        }
        // Stage every file.
        let sub = format!(
            "{}_{}",
            restore::file_safe(&o.as_name),
            time::OffsetDateTime::now_utc().unix_timestamp()
        );
        let local_dir: PathBuf = policy.staging.1.join(&sub);
        let server_dir = server_join(&policy.staging.0, &sub);
        std::fs::create_dir_all(&local_dir).map_err(|e| Error::io(&local_dir, e))?;
        let restored = stage_and_restore(instance, repo, policy, o, p, &snaps, &local_dir, &server_dir).await;
        // The staged copies are patient data outside the repository: removed after
        // the restore, whether it worked or not, unless asked to keep them.
        let staging_removed = !o.keep_staging && std::fs::remove_dir_all(&local_dir).is_ok();
        let mut run = restored?;
        run.staging_removed = staging_removed;
        Ok(run)
    }
    .instrument(span)
    .await
}

/// The plan's files, fetched from the repository into `dir` (one folder, every
/// name as the snapshot holds it); returns each planned source (`SNAPSHOT:FILE`)
/// with the path it was written to.
pub async fn stage_plan(
    repo: &Repository,
    plan: &RestorePlan,
    snaps: &[SnapshotRef],
    dir: &std::path::Path,
) -> Result<Vec<(String, PathBuf)>> {
    let by_short: BTreeMap<String, &SnapshotRef> =
        snaps.iter().map(|s| (s.id.short(), s)).collect();
    let mut staged = Vec::new();
    for step in &plan.steps {
        for src in &step.files {
            let (short, name) = src
                .split_once(':')
                .ok_or_else(|| Error::new(ErrorKind::Internal, format!("bad source {src}")))?;
            let snap = by_short.get(short).ok_or_else(|| {
                Error::new(ErrorKind::Internal, format!("snapshot {short} vanished"))
            })?;
            let stage = info_span!("step", step = "stage", file = name);
            repo.restore(
                snap,
                dir,
                &RestoreOptions {
                    path: Some(name.to_string()),
                    overwrite: true,
                },
            )
            .instrument(stage)
            .await?;
            staged.push((src.clone(), dir.join(name)));
        }
    }
    Ok(staged)
}

/// Fetches the plan's files into the staging folder and runs the RESTORE sequence.
#[allow(clippy::too_many_arguments)]
async fn stage_and_restore(
    instance: &Instance,
    repo: &Repository,
    policy: &Policy,
    o: &RestoreDbOptions,
    p: RestorePlan,
    snaps: &[SnapshotRef],
    local_dir: &std::path::Path,
    server_dir: &str,
) -> Result<RestoreDbRun> {
    let staged_files = stage_plan(repo, &p, snaps, local_dir).await?;
    let device_of: BTreeMap<String, String> = staged_files
        .iter()
        .map(|(src, local)| (src.clone(), server_join(server_dir, &file_name_of(local))))
        .collect();
    let first = p
        .steps
        .first()
        .ok_or_else(|| Error::new(ErrorKind::Internal, "empty plan"))?;
    let first_devices: Vec<String> = first
        .files
        .iter()
        .map(|f| device_of.get(f).cloned().unwrap_or_else(|| f.clone()))
        .collect();
    let mut sql = instance.connect().await?;
    let files = restore::file_list(&mut sql, &first_devices, first.position)
        .await
        .map_err(|e| e.with("database", &o.as_name))?;
    drop(sql);
    let moves = restore::move_clauses(&files, &o.as_name, &o.move_data, &o.move_log);
    let mut statements = Vec::new();
    for (i, s) in restore::statements(&p, &device_of, &o.as_name, &moves, o.replace)
        .into_iter()
        .enumerate()
    {
        let kind = s
            .kind
            .map(|k| k.to_string())
            .unwrap_or_else(|| "recovery".into());
        let step = info_span!("step", step = "restore", n = i + 1, kind = %kind);
        run_long(
            instance,
            &o.as_name,
            &s.sql,
            policy.stall,
            &o.cancel,
            &mut |_| {},
        )
        .instrument(step)
        .await?;
        statements.push(s.sql);
    }
    info!(steps = p.steps.len(), "database restored");
    Ok(RestoreDbRun {
        database: o.database.clone(),
        as_name: o.as_name.clone(),
        target: repo.storage().name().to_string(),
        plan: p,
        staged: staged_files
            .iter()
            .map(|(_, l)| l.display().to_string())
            .collect(),
        statements,
        staging_removed: false,
        ok: true,
    })
}

/// One file `restore db fetch` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct FetchedFile {
    /// Its place in the restore order, from 1.
    pub order: usize,
    /// `full`, `diff` or `log`.
    pub kind: String,
    /// Where it was written.
    pub path: String,
    /// Bytes.
    pub size: u64,
}

/// The outcome of `restore db fetch`: a folder a DBA restores from by hand.
#[derive(Debug, Clone, Serialize)]
pub struct FetchRun {
    /// The database.
    pub database: String,
    /// The target read.
    pub target: String,
    /// The folder written.
    pub folder: String,
    /// The plan followed.
    pub plan: RestorePlan,
    /// The files, in restore order (their names start with that order).
    pub files: Vec<FetchedFile>,
    /// The T-SQL to run, in order, reading the files from the folder.
    pub tsql: Vec<String>,
    /// Every file of the chain was written.
    pub ok: bool,
}

/// What `restore db fetch` is asked.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The database.
    pub database: String,
    /// Point in time.
    pub at: Option<MtfDate>,
    /// The folder (created; files already there of the same names are replaced).
    pub to: PathBuf,
    /// Data files' folder on the server restored to: MOVE clauses are printed.
    pub move_data: Option<String>,
    /// Log files' folder (default: the data folder).
    pub move_log: Option<String>,
}

/// Every file of the chain into one folder, named in restore order
/// (`01-…full.bak`, `02-…diff.bak`, `03-…log.trn`), with the T-SQL that restores
/// them: the disaster path when pacsbak cannot reach the new server itself.
pub async fn fetch(repo: &Repository, o: &FetchOptions) -> Result<FetchRun> {
    let span = info_span!("job", job = "restore db fetch", database = %o.database);
    async {
        let (descs, snaps) = describe_repository(repo).await?;
        let p = plan(
            &descs,
            &PlanRequest {
                database: Some(o.database.clone()),
                at: o.at,
            },
        );
        if !p.ok {
            return Err(broken_chain(&p, &o.database, "nothing was fetched"));
        }
        std::fs::create_dir_all(&o.to).map_err(|e| Error::io(&o.to, e))?;
        let staged = stage_plan(repo, &p, &snaps, &o.to).await?;
        let kind_of: BTreeMap<&str, BackupKind> = p
            .steps
            .iter()
            .flat_map(|s| s.files.iter().map(move |f| (f.as_str(), s.kind)))
            .collect();
        let mut files = Vec::new();
        let mut device_of = BTreeMap::new();
        for (i, (src, path)) in staged.iter().enumerate() {
            let ordered = o.to.join(format!("{:02}-{}", i + 1, file_name_of(path)));
            std::fs::rename(path, &ordered).map_err(|e| Error::io(&ordered, e))?;
            let size = std::fs::metadata(&ordered).map(|m| m.len()).unwrap_or(0);
            device_of.insert(src.clone(), ordered.display().to_string());
            files.push(FetchedFile {
                order: i + 1,
                kind: kind_of
                    .get(src.as_str())
                    .map(|k| k.to_string())
                    .unwrap_or_default(),
                path: ordered.display().to_string(),
                size,
            });
        }
        let database_files = p
            .steps
            .first()
            .and_then(|s| s.files.first())
            .and_then(|src| {
                let short = source_parts(src).0;
                snaps.iter().find(|s| s.id.short() == short)
            })
            .and_then(|s| BackupRecord::from_snapshot(&s.snapshot).ok())
            .map(|r| r.database_files)
            .unwrap_or_default();
        let mut tsql = Vec::new();
        let moves = match &o.move_data {
            Some(data) if !database_files.is_empty() => restore::move_clauses(
                &database_files,
                &o.database,
                data,
                o.move_log.as_deref().unwrap_or(data),
            ),
            Some(_) => {
                tsql.push(format!(
                    "-- The backup record does not list the database's files: run RESTORE FILELISTONLY FROM DISK = {} and add a MOVE for each.",
                    quote::string(files.first().map(|f| f.path.as_str()).unwrap_or_default())
                ));
                Vec::new()
            }
            None => {
                tsql.push("-- On a server whose folders differ from the original's, add MOVE clauses to the first RESTORE (or run `restore db fetch` with --move-data/--move-log).".into());
                Vec::new()
            }
        };
        tsql.extend(
            restore::statements(&p, &device_of, &o.database, &moves, false)
                .into_iter()
                .map(|s| s.sql),
        );
        info!(files = files.len(), "chain fetched");
        Ok(FetchRun {
            database: o.database.clone(),
            target: repo.storage().name().to_string(),
            folder: o.to.display().to_string(),
            plan: p,
            ok: !files.is_empty(),
            files,
            tsql,
        })
    }
    .instrument(span)
    .await
}

//! `backup db`: for each database of a policy, pre-flight, BACKUP WITH CHECKSUM,
//! cross-check of the file's own header against msdb, then RESTORE VERIFYONLY WITH
//! CHECKSUM on the server while the file is stored in the first target's repository;
//! the `sql-backup` snapshot is written once both have passed, then stored on the
//! other targets; each copy is proven on its target (every pack present with its
//! size, the packs the backup added read back).
//!
//! A backup that fails VERIFYONLY, or whose file and msdb disagree, gets no
//! snapshot (data stored meanwhile stays, unreferenced, for later backups to reuse).
//! Nothing is ever deleted, here or offsite. One database failing does not stop the
//! others; it makes the run fail.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

use super::{free_space, stamp, Progress, Target};
use crate::bakfile;
use crate::error::{Error, ErrorKind, ErrorRecord, Result};
use crate::outcome::Status;
use crate::policy::{DatabaseSelection, Policy};
use crate::records::BackupKind;
use crate::records::{BackupRecord, CheckVerdict, Series, StripeFile, Tag};
use crate::repository::{BackupOptions, Ingested, ReadBack, SnapshotKind};
use crate::sqlserver::catalog::{self, DatabaseInfo, MsdbBackup};
use crate::sqlserver::{run_long, verifyonly_sql, BackupStatement, Instance};

/// What to back up.
#[derive(Clone, Default)]
pub struct DbBackupOptions {
    /// The type; `None`: the one the policy's schedules make due now.
    pub kind: Option<BackupKind>,
    /// Only this database.
    pub database: Option<String>,
    /// COPY_ONLY (manual backups).
    pub copy_only: bool,
    /// Pin the snapshots.
    pub pinned: bool,
    /// Extra tags.
    pub tags: Vec<String>,
    /// Why (manual backups), recorded in the manifest.
    pub reason: Option<String>,
    /// Progress callback.
    pub progress: Option<Progress>,
    /// Stops the job: the BACKUP in flight is killed, later databases are not
    /// started (the daemon's shutdown and time-outs).
    pub cancel: CancellationToken,
    /// A log or diff backup that finds no full to base it on fails (error context
    /// `needs: full`) instead of taking a full itself: the daemon runs the policy's
    /// full job, under its own lock and time-out.
    pub no_promotion: bool,
}

/// One target's copy of one backup.
#[derive(Debug, Clone, Serialize)]
pub struct OffsiteCopy {
    /// Target name.
    pub target: String,
    /// Snapshot id (short), when stored.
    pub snapshot: Option<String>,
    /// The copy was proven: every pack the snapshot needs is on the target with its
    /// size, and the packs this backup added were read back and matched.
    pub verified: bool,
    /// Seconds to store it.
    pub ingest_seconds: f64,
    /// Chunks taken along the cuts of the series' previous backup instead of being
    /// cut anew (docs/decisions/0007).
    pub chunks_predicted: u64,
    /// Seconds to prove it.
    pub verify_seconds: f64,
    /// Packs read back (the ones this backup added).
    pub packs_read: usize,
    /// Packs checked for presence and size only (read back by earlier backups).
    pub packs_present: usize,
    /// What went wrong.
    pub error: Option<ErrorRecord>,
}

impl OffsiteCopy {
    /// A copy not made yet.
    fn pending(target: &str) -> OffsiteCopy {
        OffsiteCopy {
            target: target.to_string(),
            snapshot: None,
            verified: false,
            ingest_seconds: 0.0,
            chunks_predicted: 0,
            verify_seconds: 0.0,
            packs_read: 0,
            packs_present: 0,
            error: None,
        }
    }

    /// A copy that was not made, for `error`.
    pub fn failed(target: &str, error: ErrorRecord) -> OffsiteCopy {
        OffsiteCopy {
            error: Some(error),
            ..OffsiteCopy::pending(target)
        }
    }
}

/// The outcome for one database.
#[derive(Debug, Clone, Serialize)]
pub struct DbBackupResult {
    /// Database.
    pub database: String,
    /// The type asked for.
    pub requested: BackupKind,
    /// The type taken.
    pub kind: BackupKind,
    /// COPY_ONLY.
    pub copy_only: bool,
    /// Everything worth telling (a full taken instead of a diff...).
    pub notes: Vec<String>,
    /// Files as pacsbak sees them.
    pub files: Vec<String>,
    /// Bytes in the files.
    pub size: u64,
    /// BACKUP seconds.
    pub backup_seconds: f64,
    /// VERIFYONLY seconds.
    pub verifyonly_seconds: f64,
    /// Copies on the targets.
    pub offsite: Vec<OffsiteCopy>,
    /// The backup record its snapshots carry, once the file was described.
    pub record: Option<BackupRecord>,
    /// Ok: backed up, verified, stored and read back on every target.
    pub status: Status,
    /// Success: backed up, verified, stored and read back on every target.
    pub ok: bool,
    /// The failure, with server, database and SQL Server error number.
    pub error: Option<ErrorRecord>,
}

/// The outcome of a run.
#[derive(Debug, Clone, Serialize)]
pub struct DbBackupRun {
    /// Policy name.
    pub policy: String,
    /// Instance name.
    pub instance: String,
    /// Per database.
    pub results: Vec<DbBackupResult>,
    /// Every database succeeded.
    pub ok: bool,
}

impl DbBackupRun {
    /// Adds the policy's targets that could not be opened as failed copies of every
    /// database: the backup is on the other targets, but not where the policy wants it.
    pub fn note_unreachable(&mut self, unreachable: &[super::UnreachableTarget]) {
        if unreachable.is_empty() {
            return;
        }
        for r in &mut self.results {
            r.offsite.extend(
                unreachable
                    .iter()
                    .map(super::UnreachableTarget::as_failed_copy),
            );
            r.ok = false;
            r.status = Status::Failed;
            if r.error.is_none() {
                r.error = unreachable.first().map(|u| u.error.clone());
            }
        }
        self.ok = false;
    }
}

/// The databases a policy selects, from sys.databases; names that do not exist are
/// returned as errors.
pub fn select_databases(
    policy: &Policy,
    all: &[DatabaseInfo],
    only: Option<&str>,
) -> Vec<std::result::Result<DatabaseInfo, (String, String)>> {
    let mut names: Vec<String> = match &policy.databases {
        DatabaseSelection::Names(n) => n.clone(),
        DatabaseSelection::AllUser { exclude } => all
            .iter()
            .filter(|d| !d.is_system())
            .filter(|d| !exclude.iter().any(|x| x.eq_ignore_ascii_case(&d.name)))
            .map(|d| d.name.clone())
            .collect(),
    };
    if let Some(o) = only {
        names.retain(|n| n.eq_ignore_ascii_case(o));
        if names.is_empty() {
            names.push(o.to_string());
        }
    }
    names
        .into_iter()
        .map(|n| {
            all.iter()
                .find(|d| d.name.eq_ignore_ascii_case(&n))
                .cloned()
                .ok_or_else(|| {
                    (
                        n.clone(),
                        format!("database {n:?} does not exist on the instance"),
                    )
                })
        })
        .collect()
}

/// Runs `backup db`.
pub async fn run(
    policy: &Policy,
    instance: &Instance,
    targets: &[Target],
    opts: &DbBackupOptions,
) -> Result<DbBackupRun> {
    let span = info_span!("job", job = "backup db", policy = %policy.name);
    async {
        let mut sql = instance.connect().await?;
        let all = catalog::databases(&mut sql).await?;
        let now = catalog::server_now(&mut sql).await.ok().flatten();
        let requested = match opts.kind {
            Some(k) => k,
            None => now
                .and_then(|n| policy.due_kind(n))
                .unwrap_or(BackupKind::Full),
        };
        // The native backups the first target holds, read once for every database:
        // what the comparison with msdb's history needs.
        let stored = stored_records(targets, &instance.name).await;
        let mut results = Vec::new();
        for sel in select_databases(policy, &all, opts.database.as_deref()) {
            let r = match sel {
                _ if opts.cancel.is_cancelled() => {
                    let name = match &sel {
                        Ok(db) => db.name.clone(),
                        Err((name, _)) => name.clone(),
                    };
                    failed(
                        &name,
                        requested,
                        opts.copy_only,
                        Error::new(ErrorKind::Cancelled, "not started: the job was stopped")
                            .with("server", &instance.name),
                    )
                }
                Ok(db) => {
                    backup_one(policy, instance, targets, opts, &db, requested, &stored).await
                }
                Err((name, msg)) => failed(
                    &name,
                    requested,
                    opts.copy_only,
                    Error::new(ErrorKind::Config, msg).with("server", &instance.name),
                ),
            };
            results.push(r);
        }
        let ok = !results.is_empty() && results.iter().all(|r| r.ok);
        Ok(DbBackupRun {
            policy: policy.name.clone(),
            instance: instance.name.clone(),
            results,
            ok,
        })
    }
    .instrument(span)
    .await
}

impl DbBackupResult {
    /// A result not yet reached: nothing done, not ok.
    fn pending(db: &str, kind: BackupKind, copy_only: bool) -> DbBackupResult {
        DbBackupResult {
            database: db.to_string(),
            requested: kind,
            kind,
            copy_only,
            notes: Vec::new(),
            files: Vec::new(),
            size: 0,
            backup_seconds: 0.0,
            verifyonly_seconds: 0.0,
            offsite: Vec::new(),
            record: None,
            status: Status::Failed,
            ok: false,
            error: None,
        }
    }
}

fn failed(db: &str, kind: BackupKind, copy_only: bool, e: Error) -> DbBackupResult {
    warn!(database = db, error = %e, "database backup failed");
    DbBackupResult {
        error: Some(e.record()),
        ..DbBackupResult::pending(db, kind, copy_only)
    }
}

async fn backup_one(
    policy: &Policy,
    instance: &Instance,
    targets: &[Target],
    opts: &DbBackupOptions,
    db: &DatabaseInfo,
    requested: BackupKind,
    stored: &std::result::Result<Vec<BackupRecord>, ErrorRecord>,
) -> DbBackupResult {
    let span = info_span!("database", database = %db.name, kind = %requested);
    let mut res = DbBackupResult::pending(&db.name, requested, opts.copy_only);
    match backup_steps(policy, instance, targets, opts, db, &mut res)
        .instrument(span)
        .await
    {
        Ok(()) => {
            res.ok = res.offsite.iter().all(|o| o.verified) && !res.offsite.is_empty();
            if !res.ok && res.error.is_none() {
                res.error = Some(
                    Error::new(
                        ErrorKind::Storage,
                        "the offsite copy failed on at least one target",
                    )
                    .with("server", &instance.name)
                    .with("database", &db.name)
                    .record(),
                );
            }
        }
        Err(e) => {
            res.ok = false;
            res.error = Some(e.record());
            warn!(database = %db.name, error = %e, "database backup failed");
        }
    }
    if opts.cancel.is_cancelled() {
        return res;
    }
    // Backups msdb shows that the repository lacks (taken by another tool or by
    // hand, or by a run of ours that failed): stored now, or the chain is broken.
    let step = info_span!("step", step = "outside-backups", database = %db.name);
    match adopt_outside_backups(policy, instance, targets, opts, db, stored, &mut res)
        .instrument(step)
        .await
    {
        Ok(None) => {}
        Ok(Some(broken)) | Err(broken) => {
            warn!(database = %db.name, error = %broken, "restore chain in the repository is broken");
            res.ok = false;
            if res.error.is_none() {
                res.error = Some(broken.record());
            } else {
                res.notes.push(broken.to_string());
            }
        }
    }
    res.status = if res.ok { Status::Ok } else { Status::Failed };
    res
}

/// The records of `instance`'s native backups on the first target (none without one).
async fn stored_records(
    targets: &[Target],
    instance: &str,
) -> std::result::Result<Vec<BackupRecord>, ErrorRecord> {
    let Some(first) = targets.first() else {
        return Ok(Vec::new());
    };
    let snaps = first.repo.snapshots().await.map_err(|e| e.record())?;
    Ok(snaps
        .iter()
        .filter(|s| s.snapshot.kind == SnapshotKind::SqlBackup)
        .filter_map(|s| BackupRecord::from_snapshot(&s.snapshot).ok())
        .filter(|r| r.instance == instance)
        .collect())
}

/// Compares msdb's history of `db` since the newest full in the repository with the
/// repository. A full or log backup pacsbak does not hold breaks the chain (a log
/// taken elsewhere truncated the log; a full elsewhere moved the differential base):
/// when its file can be read it is checked and stored, and the chain is whole again;
/// when not, the broken chain is returned, until a newer full (or, for a log, a
/// differential) in the repository heals it. Copy-only backups never break a chain.
async fn adopt_outside_backups(
    policy: &Policy,
    instance: &Instance,
    targets: &[Target],
    opts: &DbBackupOptions,
    db: &DatabaseInfo,
    stored: &std::result::Result<Vec<BackupRecord>, ErrorRecord>,
    res: &mut DbBackupResult,
) -> Result<Option<Error>> {
    if targets.is_empty() {
        return Ok(None);
    }
    let ctx = |e: Error| e.with("server", &instance.name).with("database", &db.name);
    let stored = stored
        .as_ref()
        .map_err(|e| ctx(Error::new(e.kind, e.message.clone())))?;
    // This run's backup, once proven on every target, counts as stored.
    let records: Vec<BackupRecord> = stored
        .iter()
        .filter(|r| r.database.eq_ignore_ascii_case(&db.name))
        .chain(res.record.as_ref().filter(|_| res.ok))
        .cloned()
        .collect();
    let start_of = |r: &BackupRecord| r.backup_start.and_then(|d| d.to_datetime());
    let newest_base = |kinds: &[BackupKind], records: &[BackupRecord]| {
        records
            .iter()
            .filter(|r| !r.copy_only && kinds.contains(&r.kind))
            .filter_map(start_of)
            .max()
    };
    let Some(since) = newest_base(&[BackupKind::Full], &records) else {
        return Ok(None);
    };
    // This run's own backup is known even when its copy failed (that failure is
    // reported already; it is not a backup taken outside pacsbak).
    let mut known: std::collections::HashSet<_> = records
        .iter()
        .chain(res.record.as_ref())
        .map(|r| (r.first_lsn, r.last_lsn))
        .collect();
    let mut sql = instance.connect().await?;
    let history = catalog::msdb_backups_since(&mut sql, &db.name, since).await?;
    let mut broken = Vec::new();
    for b in history {
        let kind = match b.backup_type.native() {
            Some(k @ (BackupKind::Full | BackupKind::Log)) if !b.is_copy_only => k,
            _ => continue,
        };
        if known.contains(&(b.first_lsn, b.last_lsn)) {
            continue;
        }
        let devices = catalog::media_devices(&mut sql, b.media_set_id).await?;
        let started = b.backup_start_date;
        let files: Vec<(String, PathBuf)> = devices
            .iter()
            .map(|d| (d.clone(), policy.local_path_of(d)))
            .collect();
        let readable = files.iter().all(|(_, l)| l.is_file());
        let adopted = if readable {
            adopt(
                policy,
                instance,
                targets,
                &opts.cancel,
                db,
                OutsideBackup {
                    kind,
                    files: &files,
                    lsns: (b.first_lsn, b.last_lsn),
                },
            )
            .await
        } else {
            Err(ctx(Error::new(
                ErrorKind::Io,
                format!("its file {} cannot be read here", devices.join(", ")),
            )))
        };
        match adopted {
            Ok(snapshot) => {
                known.insert((b.first_lsn, b.last_lsn));
                res.notes.push(format!(
                    "msdb shows a {kind} backup started {} that pacsbak did not take ({}): checked and stored as snapshot {snapshot}, the chain is whole",
                    started.map(|t| t.to_string()).unwrap_or_default(),
                    devices.join(", ")
                ));
            }
            Err(why) => {
                // Healed by a newer full (or, for a log gap, a differential) stored here.
                let healers: &[BackupKind] = match kind {
                    BackupKind::Log => &[BackupKind::Full, BackupKind::Diff],
                    _ => &[BackupKind::Full],
                };
                let healed = newest_base(healers, &records)
                    .zip(started)
                    .is_some_and(|(base, gap)| base > gap);
                if healed {
                    res.notes.push(format!(
                        "msdb shows a {kind} backup started {} that pacsbak did not take ({}); a newer base in the repository makes it irrelevant",
                        started.map(|t| t.to_string()).unwrap_or_default(),
                        devices.join(", ")
                    ));
                } else {
                    broken.push(format!(
                        "a {kind} backup started {} to {} is not in the repository and could not be stored ({})",
                        started.map(|t| t.to_string()).unwrap_or_default(),
                        devices.join(", "),
                        why.message()
                    ));
                }
            }
        }
    }
    if broken.is_empty() {
        return Ok(None);
    }
    Ok(Some(ctx(Error::new(
        ErrorKind::Integrity,
        format!(
            "restore chain broken: {}. Restores past that point are impossible from the repository until the next full backup: take one now (`pacsbak backup db --type full`)",
            broken.join("; ")
        ),
    ))))
}

/// A backup msdb lists that the repository lacks.
struct OutsideBackup<'a> {
    kind: BackupKind,
    /// Its files (as SQL Server names them, as pacsbak reaches them).
    files: &'a [(String, PathBuf)],
    /// Its first and last LSN, as msdb has them.
    lsns: (Option<bakfile::Lsn>, Option<bakfile::Lsn>),
}

/// Checks (RESTORE VERIFYONLY) and stores a backup pacsbak did not take on every
/// target; the id of its snapshot on the first.
async fn adopt(
    policy: &Policy,
    instance: &Instance,
    targets: &[Target],
    cancel: &CancellationToken,
    db: &DatabaseInfo,
    found: OutsideBackup<'_>,
) -> Result<String> {
    let OutsideBackup { kind, files, lsns } = found;
    let server_files: Vec<String> = files.iter().map(|(s, _)| s.clone()).collect();
    run_long(
        instance,
        &db.name,
        &verifyonly_sql(&server_files),
        policy.stall,
        cancel,
        &mut |_| {},
    )
    .await?;
    let opts = DbBackupOptions {
        reason: Some("taken outside pacsbak; found in msdb".into()),
        ..DbBackupOptions::default()
    };
    let d = describe(instance, policy, &opts, db, kind, files).await?;
    // A file appended to holds several backups; pacsbak stores a file as its last one.
    if (d.record.first_lsn, d.record.last_lsn) != lsns {
        return Err(Error::new(
            ErrorKind::Refused,
            "the file holds another backup after this one (it was appended to): pacsbak stores a backup file whose last set is the backup",
        ));
    }
    let bopts = sql_snapshot_options(policy, &opts, &d.record);
    let local: Vec<PathBuf> = files.iter().map(|(_, l)| l.clone()).collect();
    let mut first = None;
    for t in targets {
        let copy = offsite(t, &local, &bopts).await;
        if let Some(e) = copy.error {
            return Err(Error::new(e.kind, e.message));
        }
        first.get_or_insert(copy.snapshot.unwrap_or_default());
    }
    Ok(first.unwrap_or_default())
}

async fn backup_steps(
    policy: &Policy,
    instance: &Instance,
    targets: &[Target],
    opts: &DbBackupOptions,
    db: &DatabaseInfo,
    res: &mut DbBackupResult,
) -> Result<()> {
    let ctx = |e: Error| e.with("server", &instance.name).with("database", &db.name);
    let mut sql = instance.connect().await?;
    // Pre-flight.
    if !db.state.eq_ignore_ascii_case("ONLINE") {
        return Err(ctx(Error::new(
            ErrorKind::SqlServer,
            format!("database is {}, not ONLINE: nothing to back up", db.state),
        )));
    }
    let mut kind = res.requested;
    if kind == BackupKind::Log && db.recovery_model.eq_ignore_ascii_case("SIMPLE") {
        return Err(ctx(Error::new(
            ErrorKind::Config,
            "recovery model SIMPLE allows no log backups: set it to FULL (ALTER DATABASE ... SET RECOVERY FULL) or drop the log schedule for this database",
        )));
    }
    if kind != BackupKind::Full
        && !opts.copy_only
        && !catalog::has_full_base(&mut sql, &db.name).await?
    {
        if opts.no_promotion {
            return Err(ctx(Error::new(
                ErrorKind::Refused,
                format!("no full backup in msdb to base a {kind} backup on: the policy's full backup runs first"),
            ))
            .with("needs", "full"));
        }
        res.notes.push(format!(
            "no full backup in msdb to base a {kind} backup on: took a full backup instead"
        ));
        kind = BackupKind::Full;
    }
    let files_all = catalog::master_files(&mut sql).await?;
    let pages: i64 = files_all
        .iter()
        .filter(|f| f.database_id == db.id)
        .filter(|f| (kind == BackupKind::Log) == f.type_desc.eq_ignore_ascii_case("LOG"))
        .map(|f| f.size_pages)
        .sum();
    let estimate = (pages.max(0) as u64) * 8192;
    if crate::config::resolves_to_filesystem_root(&policy.local_folder) {
        return Err(ctx(Error::new(
            ErrorKind::Config,
            format!(
                "the backup folder {} resolves to the root of a drive (a link to it?): SQL Server would write backup files there; point backup.server_folder at a folder of its own",
                policy.local_folder.display()
            ),
        )
        .with("file", policy.file.display())
        .with("key", "backup.server_folder")));
    }
    std::fs::create_dir_all(&policy.local_folder).ok();
    match free_space(&policy.local_folder) {
        Some(free) if free < estimate => {
            return Err(ctx(Error::new(
                ErrorKind::Refused,
                format!(
                    "not enough free space for the backup: about {estimate} bytes needed, {free} free on the volume of {}",
                    policy.local_folder.display()
                ),
            )))
        }
        Some(_) => {}
        None => res.notes.push(format!(
            "free space on {} unknown (not a local volume): not checked",
            policy.local_folder.display()
        )),
    }
    let now = catalog::server_now(&mut sql)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            let n = time::OffsetDateTime::now_utc();
            time::PrimitiveDateTime::new(n.date(), n.time())
        });
    drop(sql);

    let mut attempt = 0;
    let (files, run) = loop {
        attempt += 1;
        let extra = if opts.copy_only { "_copyonly" } else { "" };
        let files = reserve_files(policy, &db.name, kind, now, extra).map_err(ctx)?;
        let stmt = BackupStatement {
            database: db.name.clone(),
            kind,
            files: files.iter().map(|(s, _)| s.clone()).collect(),
            compression: policy.compression,
            copy_only: opts.copy_only,
            description: opts.reason.as_ref().map(|r| format!("pacsbak: {r}")),
        };
        let label = format!("{} {kind}", db.name);
        let mut cb = |p: f64| {
            if let Some(pr) = &opts.progress {
                pr(&label, p)
            }
        };
        let step = info_span!("step", step = "backup", database = %db.name, kind = %kind);
        match run_long(
            instance,
            &db.name,
            &stmt.sql(),
            policy.stall,
            &opts.cancel,
            &mut cb,
        )
        .instrument(step)
        .await
        {
            Ok(r) => break (files, r),
            Err(e) if attempt == 1 && kind == BackupKind::Diff && e.sql_error() == Some(3035) => {
                release_unused(&files);
                res.notes.push(
                    "SQL Server has no differential base (3035): took a full backup instead".into(),
                );
                kind = BackupKind::Full;
            }
            Err(e) => {
                // A BACKUP whose KILL was refused may still write into its file.
                if e.context("still running").is_none() {
                    release_unused(&files);
                }
                return Err(ctx(e));
            }
        }
    };
    res.kind = kind;
    res.backup_seconds = run.seconds;
    res.files = files.iter().map(|(_, l)| l.display().to_string()).collect();
    let server_files: Vec<String> = files.iter().map(|(s, _)| s.clone()).collect();

    let local: Vec<PathBuf> = files.iter().map(|(_, l)| l.clone()).collect();

    // RESTORE VERIFYONLY on the server while the file is described (msdb against its
    // own header) and goes into the first target: the snapshot is written only once
    // all have passed, and VERIFYONLY's verdict is reported first.
    // A failed VERIFYONLY stops the ingest at its next chunk: what it stored stays
    // indexed for later backups, and the failure is reported without waiting for it.
    let unusable = CancellationToken::new();
    let verifyonly = async {
        let step = info_span!("step", step = "verifyonly", database = %db.name);
        let verdict = run_long(
            instance,
            &db.name,
            &verifyonly_sql(&server_files),
            policy.stall,
            &opts.cancel,
            &mut |_| {},
        )
        .instrument(step)
        .await;
        if verdict.is_err() {
            unusable.cancel();
        }
        verdict
    };
    let stored = async {
        let d = describe(instance, policy, opts, db, kind, &files).await?;
        let bopts = sql_snapshot_options(policy, opts, &d.record);
        let first = match targets.first() {
            Some(t) if !unusable.is_cancelled() => {
                let first_opts = BackupOptions {
                    cancel: Some(unusable.clone()),
                    ..bopts.clone()
                };
                Some(store(t, &local, &first_opts).await)
            }
            _ => None,
        };
        Ok::<_, Error>((d, bopts, first))
    };
    let (verified, stored) = tokio::join!(verifyonly, stored);
    let v = verified.map_err(|e| {
        let failure = ctx(Error::new(
            ErrorKind::Integrity,
            format!(
                "RESTORE VERIFYONLY failed: the backup is not usable and no snapshot of it was written offsite: {}",
                e.message()
            ),
        ))
        .with("file", &server_files[0]);
        match e.sql_error() {
            Some(n) => failure.with_sql_error(n),
            None => failure,
        }
    })?;
    res.verifyonly_seconds = v.seconds;
    let (d, bopts, first) = stored?;
    res.size = d.record.size;
    res.notes.extend(d.notes);
    res.record = Some(d.record);

    // Offsite: every target, each copy proven by reading back what it stored.
    if let Some((copy, ingested)) = first {
        res.offsite.push(commit(&targets[0], copy, ingested).await);
    }
    for t in targets.iter().skip(1) {
        res.offsite.push(offsite(t, &local, &bopts).await);
    }
    info!(database = %db.name, kind = %kind, size = res.size, "database backed up");
    Ok(())
}

/// The record of a native backup just taken: msdb's history row and the file's own
/// header, which must agree on database, type and LSNs.
async fn describe(
    instance: &Instance,
    policy: &Policy,
    opts: &DbBackupOptions,
    db: &DatabaseInfo,
    kind: BackupKind,
    files: &[(String, PathBuf)],
) -> Result<Described> {
    let ctx = |e: Error| e.with("server", &instance.name).with("database", &db.name);
    let server_files: Vec<String> = files.iter().map(|(s, _)| s.clone()).collect();
    let mut notes = Vec::new();
    let mut sql = instance.connect().await?;
    let msdb = catalog::msdb_backup_for_device(&mut sql, &server_files[0]).await?;
    // What a drill needs before it fetches anything: the room the restore takes and
    // the row counts to compare it with. Missing, they are a note, not a failure.
    let database_files = match catalog::database_files(&mut sql, &db.name).await {
        Ok(f) => f,
        Err(e) => {
            notes.push(format!("the database's file sizes could not be read: {e}"));
            Vec::new()
        }
    };
    let mut row_counts = BTreeMap::new();
    if kind != BackupKind::Log {
        for table in &policy.count_rows {
            match catalog::count_rows(&mut sql, &db.name, table).await {
                Ok(n) => {
                    row_counts.insert(table.clone(), n);
                }
                Err(e) => notes.push(format!("rows of {table} could not be counted: {e}")),
            }
        }
    }
    drop(sql);
    let mut stripes = Vec::new();
    let mut header = None;
    let mut size = 0;
    for (i, (srv, l)) in files.iter().enumerate() {
        let f = bakfile::inspect(l).map_err(|e| ctx(e).with("file", l.display()))?;
        size += f.size;
        let set = f.sets.last().ok_or_else(|| {
            ctx(Error::new(
                ErrorKind::Integrity,
                "the backup file holds no backup set",
            ))
            .with("file", l.display())
        })?;
        if i == 0 {
            if let Some(m) = &msdb {
                compare(m, &set.header, set.kind.map(|k| k.letter())).map_err(|m| {
                    ctx(Error::new(ErrorKind::Integrity, m)).with("file", l.display())
                })?;
            } else {
                notes.push("msdb has no history row for this file (error 3009?): the file's own header is the record".into());
            }
            header = Some(set.header.clone());
        }
        stripes.push(StripeFile {
            name: l
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
            server_path: srv.clone(),
            family_sequence: f.media.family_sequence.max(1),
            family_count: f.media.family_count.max(1),
            media_set_id: f.media.media_set_id.clone(),
            position: set.header.position,
            size: f.size,
        });
    }
    let m = msdb.as_ref();
    let h = header.as_ref();
    let record = BackupRecord {
        instance: instance.name.clone(),
        database: db.name.clone(),
        kind,
        copy_only: opts.copy_only && kind != BackupKind::Diff,
        pinned: opts.pinned,
        reason: opts.reason.clone(),
        policy: Some(policy.name.clone()),
        first_lsn: m.and_then(|m| m.first_lsn).or(h.and_then(|h| h.first_lsn)),
        last_lsn: m.and_then(|m| m.last_lsn).or(h.and_then(|h| h.last_lsn)),
        checkpoint_lsn: m
            .and_then(|m| m.checkpoint_lsn)
            .or(h.and_then(|h| h.checkpoint_lsn)),
        database_backup_lsn: m
            .and_then(|m| m.database_backup_lsn)
            .or(h.and_then(|h| h.database_backup_lsn)),
        backup_start: m
            .and_then(|m| m.backup_start_date)
            .map(bakfile::MtfDate::from_datetime)
            .or(h.and_then(|h| h.backup_start_date)),
        backup_finish: m
            .and_then(|m| m.backup_finish_date)
            .map(bakfile::MtfDate::from_datetime),
        size,
        files: stripes,
        has_backup_checksums: m.is_some_and(|m| m.has_backup_checksums)
            || h.is_some_and(|h| h.has_backup_checksums),
        compression: policy.compression,
        verifyonly: CheckVerdict::Passed,
        server_version: h.map(|h| h.software_version()),
        database_files,
        row_counts,
    };
    Ok(Described { record, notes })
}

/// What [`describe`] found.
struct Described {
    record: BackupRecord,
    notes: Vec<String>,
}

/// Tags and metadata of a native backup's snapshot.
fn sql_snapshot_options(
    policy: &Policy,
    opts: &DbBackupOptions,
    record: &BackupRecord,
) -> BackupOptions {
    let mut tags: Vec<String> = [
        Tag::SqlBackup,
        Tag::Database(record.database.clone()),
        Tag::Kind(record.kind),
        Tag::Policy(policy.name.clone()),
    ]
    .into_iter()
    .map(String::from)
    .collect();
    if opts.copy_only {
        tags.push(Tag::CopyOnly.to_string());
    }
    tags.extend(opts.tags.iter().cloned());
    BackupOptions {
        tags,
        kind: SnapshotKind::SqlBackup,
        meta: record.to_meta(),
        pinned: opts.pinned,
        series: Series::Sql {
            instance: policy.instance_name.clone(),
            database: record.database.clone(),
            kind: record.kind,
        }
        .key(),
        cancel: None,
    }
}

/// Chooses the backup's file names and reserves them: each file is created empty and
/// exclusively in the local folder, so two runs at once (two processes, or two
/// machines on one share) never choose the same name; SQL Server then writes over the
/// empty file (`INIT, FORMAT`). Where pacsbak may not create files there (it reads
/// what the SQL Server service writes), a random suffix makes the name unique
/// instead (docs/decisions/0009).
fn reserve_files(
    policy: &Policy,
    database: &str,
    kind: BackupKind,
    now: time::PrimitiveDateTime,
    extra: &str,
) -> Result<Vec<(String, PathBuf)>> {
    let base = stamp(now);
    for n in 1..=1000u32 {
        let stamped = if n == 1 {
            base.clone()
        } else {
            format!("{base}_{n}")
        };
        let files = policy.backup_files(database, kind, &stamped, extra);
        let mut made: Vec<(String, PathBuf)> = Vec::new();
        let mut taken = false;
        for (server, local) in &files {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(local)
            {
                Ok(_) => {
                    give_to_folder_owner(local);
                    made.push((server.clone(), local.clone()))
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    taken = true;
                    break;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::PermissionDenied
                            | std::io::ErrorKind::ReadOnlyFilesystem
                    ) =>
                {
                    release_unused(&made);
                    let unique = format!("{base}_{:06x}", rand::random::<u32>() & 0xff_ffff);
                    return Ok(policy.backup_files(database, kind, &unique, extra));
                }
                Err(e) => {
                    release_unused(&made);
                    return Err(Error::io(local, e).with("key", "backup.local_folder"));
                }
            }
        }
        if !taken {
            return Ok(files);
        }
        release_unused(&made);
    }
    Err(Error::new(
        ErrorKind::Refused,
        format!(
            "no free backup file name for {base}: 1000 names taken in {}",
            policy.local_folder.display()
        ),
    ))
}

/// Hands a reserved file to the owner of its folder (on Unix, where pacsbak may run
/// as root beside SQL Server on Linux, whose service account must write it), group
/// writable. Best effort: where it cannot, the file keeps pacsbak's owner.
#[cfg(unix)]
fn give_to_folder_owner(file: &std::path::Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if let Some(folder) = file.parent().and_then(|d| std::fs::metadata(d).ok()) {
        let _ = std::os::unix::fs::chown(file, Some(folder.uid()), Some(folder.gid()));
    }
    let _ = std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o660));
}

/// Windows: the file inherits the folder's access control list.
#[cfg(not(unix))]
fn give_to_folder_owner(_file: &std::path::Path) {}

/// Removes reserved files SQL Server did not write (still empty). A partial file a
/// failed BACKUP left is kept: it is evidence, and VERIFYONLY reports it.
fn release_unused(files: &[(String, PathBuf)]) {
    for (_, local) in files {
        if std::fs::metadata(local).is_ok_and(|m| m.is_file() && m.len() == 0) {
            let _ = std::fs::remove_file(local);
        }
    }
}

/// Stores `files` on one target as a snapshot and proves the copy (see `commit`).
pub async fn offsite(t: &Target, files: &[PathBuf], bopts: &BackupOptions) -> OffsiteCopy {
    let (copy, ingested) = store(t, files, bopts).await;
    commit(t, copy, ingested).await
}

/// Stores the data of `files` on one target without writing the snapshot yet.
async fn store(
    t: &Target,
    files: &[PathBuf],
    bopts: &BackupOptions,
) -> (OffsiteCopy, Option<Ingested>) {
    let span = info_span!("step", step = "offsite-store", target = %t.name);
    let mut c = OffsiteCopy::pending(&t.name);
    let s = Instant::now();
    let ingested = match t.repo.ingest(files, bopts).instrument(span).await {
        Ok(i) => i,
        Err(e) => {
            c.error = Some(e.with("target", &t.name).record());
            return (c, None);
        }
    };
    c.ingest_seconds = s.elapsed().as_secs_f64();
    c.chunks_predicted = ingested.predicted_chunks();
    if !ingested.summary().errors.is_empty() {
        c.error = Some(
            Error::new(
                ErrorKind::Io,
                format!("not stored: {}", ingested.summary().errors.join("; ")),
            )
            .with("target", &t.name)
            .record(),
        );
        return (c, None);
    }
    (c, Some(ingested))
}

/// Writes the snapshot of what [`store`] stored, then proves it on the target: every
/// pack it needs is there with the right size, and the packs this backup added (all
/// of them, for a pinned backup) are read back and every chunk in them checked.
async fn commit(t: &Target, mut c: OffsiteCopy, ingested: Option<Ingested>) -> OffsiteCopy {
    let Some(ingested) = ingested else {
        return c;
    };
    let span = info_span!("step", step = "offsite-verify", target = %t.name);
    async {
        let s = Instant::now();
        let rep = match t.repo.commit(ingested).await {
            Ok(r) => r,
            Err(e) => {
                c.error = Some(e.with("target", &t.name).record());
                return c;
            }
        };
        c.ingest_seconds += s.elapsed().as_secs_f64();
        c.snapshot = Some(rep.snapshot_id.short());
        let s = Instant::now();
        let snap = match t.repo.find_snapshot(&rep.snapshot_id.to_hex()).await {
            Ok(s) => s,
            Err(e) => {
                c.error = Some(e.with("target", &t.name).record());
                return c;
            }
        };
        // A pinned (pre-upgrade) backup is the rollback point: read all of it back.
        let read_back = if snap.snapshot.pinned {
            ReadBack::All
        } else {
            ReadBack::Added(&rep.packs_added)
        };
        match t.repo.verify_snapshot(&snap, read_back).await {
            Ok(v) => {
                c.packs_read = v.packs_read;
                c.packs_present = v.packs_present;
                if v.ok() {
                    c.verified = true;
                } else {
                    c.error = Some(
                        Error::new(
                            ErrorKind::Integrity,
                            format!(
                                "read-back failed: {} damaged packs, {} missing chunks",
                                v.damaged_packs.len(),
                                v.missing_chunks.len()
                            ),
                        )
                        .with("target", &t.name)
                        .record(),
                    )
                }
            }
            Err(e) => c.error = Some(e.with("target", &t.name).record()),
        }
        c.verify_seconds = s.elapsed().as_secs_f64();
        c
    }
    .instrument(span)
    .await
}

fn compare(
    m: &MsdbBackup,
    h: &bakfile::BackupHeader,
    letter: Option<char>,
) -> std::result::Result<(), String> {
    let mut diffs = Vec::new();
    if !m.database_name.eq_ignore_ascii_case(&h.database_name) {
        diffs.push(format!(
            "database: msdb {:?}, file {:?}",
            m.database_name, h.database_name
        ));
    }
    if let Some(l) = letter {
        if l != m.backup_type.letter() {
            diffs.push(format!("type: msdb {}, file {l}", m.backup_type));
        }
    }
    for (name, a, b) in [
        ("FirstLSN", m.first_lsn, h.first_lsn),
        ("LastLSN", m.last_lsn, h.last_lsn),
        ("CheckpointLSN", m.checkpoint_lsn, h.checkpoint_lsn),
        (
            "DatabaseBackupLSN",
            m.database_backup_lsn,
            h.database_backup_lsn,
        ),
    ] {
        if let (Some(a), Some(b)) = (a, b) {
            if a != b {
                diffs.push(format!("{name}: msdb {a}, file {b}"));
            }
        }
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the backup file and msdb disagree ({}): the file is not what SQL Server recorded; nothing was stored offsite",
            diffs.join("; ")
        ))
    }
}

//! One drill, phase by phase: plan the chain from the target's manifests, check
//! the room it needs before anything is fetched, mark what it will create, fetch
//! the files into the staging folder, RESTORE with MOVE (full, differential, logs,
//! STOPAT), RECOVERY, run the checks, then drop what it created. Whatever stops it
//! midway, the drop still runs (a killed process leaves its mark for the next
//! drill or `drill cleanup`), and the record says which phase failed and why.

use std::collections::BTreeMap;
use std::time::Instant;

use rand::Rng;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

use super::checks::{self, ProbeContext};
use super::config::{DrillPoint, RestoreTest};
use super::marks::{self, DrillMark};
use super::record::{ChainFile, CheckResult, DrillRecord, Phase, PhaseName};
use crate::bakfile::plan::{plan, PlanRequest, RestorePlan};
use crate::bakfile::MtfDate;
use crate::config::{repository_passphrase, ConfigDir};
use crate::error::{Error, ErrorKind, Result};
use crate::jobs::restore_db::{
    broken_chain, describe_repository, file_name_of, source_parts, stage_plan,
};
use crate::policy::{server_join, Policy};
use crate::records::{BackupKind, BackupRecord};
use crate::repository::{Repository, SnapshotRef};
use crate::sqlserver::restore::DatabaseFile;
use crate::sqlserver::{catalog, restore, run_long, Endpoint, Instance};

/// What a drill may be told from outside.
#[derive(Debug, Clone, Default)]
pub struct DrillOptions {
    /// Stops the drill: the RESTORE in flight is killed, what was created dropped.
    pub cancel: CancellationToken,
}

/// What the phases hand on to the next.
struct Planned {
    policy: Policy,
    repo: Repository,
    plan: RestorePlan,
    snaps: Vec<SnapshotRef>,
    records: BTreeMap<String, BackupRecord>,
    restored_to: Option<time::PrimitiveDateTime>,
    /// The database's files as the newest backup in the chain recorded them.
    restore_files: Option<Vec<DatabaseFile>>,
}

/// Runs the drill `test`; never fails: a drill that could not run is a failed
/// drill, with the reason in its record.
pub async fn run(cfg: &ConfigDir, test: &RestoreTest, opts: &DrillOptions) -> DrillRecord {
    let span = info_span!("job", job = "drill", drill = %test.name);
    async {
        let clock = crate::clock::Clock::system(cfg.main.time_zone.as_deref()).ok();
        let today = clock.map(|c| c.local_now()).unwrap_or_else(|| {
            let n = time::OffsetDateTime::now_utc();
            time::PrimitiveDateTime::new(n.date(), n.time())
        });
        // `YYYYMMDD` of the `YYYYMMDD_HHMMSS` every file name uses.
        let stamp = crate::jobs::stamp(today);
        let date = stamp.get(..8).unwrap_or(&stamp);
        let mut rec = DrillRecord {
            drill: test.name.clone(),
            policy: test.policy.clone(),
            database: test.database.clone(),
            target: test.target.clone().unwrap_or_default(),
            staging: test.staging_name.clone(),
            on_production: false,
            drill_database: test.database_name(date),
            point: match &test.point {
                DrillPoint::Latest => "latest".into(),
                DrillPoint::Random => "random".into(),
                DrillPoint::At(t) => t.to_string(),
            },
            restored_to: None,
            started: now_rfc3339(),
            finished: String::new(),
            chain: Vec::new(),
            restore_size: None,
            fetched_bytes: 0,
            phases: Vec::new(),
            checks: Vec::new(),
            rto_seconds: test.rto.map(|a| a.0.whole_seconds().max(0) as u64),
            restore_seconds: 0.0,
            throughput: None,
            dropped: false,
            kept: false,
            report_file: None,
            error: None,
            ok: false,
        };
        let marks_dir = marks::marks_dir(&cfg.journal_path());
        let mut staging: Option<Instance> = None;
        let mut mark: Option<DrillMark> = None;
        let outcome = drive(
            cfg,
            test,
            opts,
            &mut rec,
            &mut staging,
            &mut mark,
            &marks_dir,
        )
        .await;
        if let Err(e) = &outcome {
            warn!(error = %e, "drill failed");
            rec.error = Some(e.record());
        }
        // What the drill created goes, whatever happened above.
        if let (Some(instance), Some(m)) = (&staging, &mark) {
            let t = Instant::now();
            let restored = outcome.is_ok();
            if test.keep && restored {
                // The database stays; the fetched files (patient data outside the
                // encrypted repository) go.
                if let Some(folder) = &m.fetch_folder {
                    let _ = std::fs::remove_dir_all(folder);
                }
                let detail = match m.remove(&marks_dir) {
                    Ok(()) => format!(
                        "{} kept, as the restore test asks: it is yours to drop",
                        m.database
                    ),
                    Err(e) => format!("{} kept; its mark could not be removed: {e}", m.database),
                };
                rec.kept = true;
                rec.phases.push(Phase {
                    phase: PhaseName::Cleanup,
                    seconds: secs(t),
                    ok: true,
                    detail,
                });
            } else {
                match marks::clean(instance, m, &marks_dir).await {
                    Ok(c) => {
                        rec.dropped = c.dropped;
                        rec.phases.push(Phase {
                            phase: PhaseName::Cleanup,
                            seconds: secs(t),
                            ok: c.dropped || c.detail == "already gone",
                            detail: format!("{}: {}", c.database, c.detail),
                        });
                    }
                    Err(e) => rec.phases.push(Phase {
                        phase: PhaseName::Cleanup,
                        seconds: secs(t),
                        ok: false,
                        detail: format!(
                            "{} could not be dropped ({e}); `pacsbak drill cleanup` will try again",
                            m.database
                        ),
                    }),
                }
            }
        }
        rec.finished = now_rfc3339();
        rec.ok = rec.error.is_none()
            && rec.phases.iter().all(|p| p.ok)
            && !rec.checks.is_empty()
            && rec.checks.iter().all(|c| c.ok);
        info!(ok = rec.ok, seconds = rec.restore_seconds, "drill finished");
        rec
    }
    .instrument(span)
    .await
}

/// The phases up to the checks; the caller cleans up.
#[allow(clippy::too_many_arguments)]
async fn drive(
    cfg: &ConfigDir,
    test: &RestoreTest,
    opts: &DrillOptions,
    rec: &mut DrillRecord,
    staging: &mut Option<Instance>,
    mark: &mut Option<DrillMark>,
    marks_dir: &std::path::Path,
) -> Result<()> {
    // Plan.
    let t = Instant::now();
    let planned = match plan_chain(cfg, test, rec)
        .instrument(info_span!("step", step = "plan"))
        .await
    {
        Ok(p) => p,
        Err(e) => {
            rec.phases.push(Phase {
                phase: PhaseName::Plan,
                seconds: secs(t),
                ok: false,
                detail: e.message().to_string(),
            });
            return Err(e);
        }
    };
    rec.phases.push(Phase {
        phase: PhaseName::Plan,
        seconds: secs(t),
        ok: true,
        detail: format!(
            "{} from target {}, {} in {} files",
            chain_words(&planned.plan),
            rec.target,
            crate::render::human_bytes(rec.chain.iter().map(|c| c.size).sum()),
            rec.chain.len()
        ),
    });

    // Room, the instance, and the name: refused before anything is fetched.
    let t = Instant::now();
    let space = async {
        let inst = Instance::open(&test.staging_spec()?).await?;
        rec.on_production = is_production(&planned.policy, test, &inst).await?;
        let instance = staging.insert(inst);
        if rec.on_production && !test.production {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "staging instance {} is the production instance of policy {}: nothing was restored. A drill runs there only when [staging] says production = true",
                    test.staging_name, planned.policy.name
                ),
            )
            .with("file", test.file.display()));
        }
        check_room(test, rec, instance, planned.restore_files.as_deref()).await
    }
    .instrument(info_span!("step", step = "space"))
    .await;
    let instance = match (space, staging.as_ref()) {
        (Ok(detail), Some(i)) => {
            rec.phases.push(Phase {
                phase: PhaseName::Space,
                seconds: secs(t),
                ok: true,
                detail,
            });
            i
        }
        (Ok(_), None) => return Err(Error::new(ErrorKind::Internal, "staging instance vanished")),
        (Err(e), _) => {
            rec.phases.push(Phase {
                phase: PhaseName::Space,
                seconds: secs(t),
                ok: false,
                detail: e.message().to_string(),
            });
            return Err(e);
        }
    };

    // Leftovers of a killed drill on this server go first (not those of a drill
    // still running); a database of the drill's name that no mark claims is never
    // touched.
    for old in DrillMark::load_all(marks_dir)? {
        if old.address == instance.address() && !old.owner_running() {
            let c = marks::clean(instance, &old, marks_dir).await?;
            info!(database = %c.database, detail = %c.detail, "leftover of an earlier drill");
        }
    }
    refuse_existing(test, rec, instance).await?;
    let fetch_local = test.fetch_folder_local.join(&rec.drill_database);
    let fetch_server = server_join(&test.fetch_folder_server, &rec.drill_database);
    let (pid, process_started, host) = marks::this_process();
    let m = mark.insert(DrillMark {
        drill: test.name.clone(),
        instance: test.staging_name.clone(),
        address: instance.address(),
        database: rec.drill_database.clone(),
        since: server_time(test, instance).await?,
        database_id: None,
        create_date: None,
        fetch_folder: Some(fetch_local.clone()),
        pid,
        process_started,
        host,
    });
    m.save(marks_dir)?;

    // Fetch.
    let t = Instant::now();
    let fetched = unless_cancelled(&opts.cancel, async {
        std::fs::create_dir_all(&fetch_local).map_err(|e| Error::io(&fetch_local, e))?;
        stage_plan(&planned.repo, &planned.plan, &planned.snaps, &fetch_local).await
    })
    .instrument(info_span!("step", step = "fetch"))
    .await;
    let staged = match fetched {
        Ok(s) => s,
        Err(e) => {
            rec.phases.push(Phase {
                phase: PhaseName::Fetch,
                seconds: secs(t),
                ok: false,
                detail: e.message().to_string(),
            });
            return Err(e);
        }
    };
    rec.fetched_bytes = staged
        .iter()
        .filter_map(|(_, p)| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    rec.phases.push(Phase {
        phase: PhaseName::Fetch,
        seconds: secs(t),
        ok: true,
        detail: format!(
            "{} fetched into {}",
            crate::render::human_bytes(rec.fetched_bytes),
            fetch_local.display()
        ),
    });

    // Restore and recovery.
    let device_of: BTreeMap<String, String> = staged
        .iter()
        .map(|(src, local)| {
            (
                src.clone(),
                server_join(&fetch_server, &file_name_of(local)),
            )
        })
        .collect();
    let t = Instant::now();
    let restored = restore_chain(
        test, rec, instance, &planned, &device_of, m, marks_dir, opts,
    )
    .instrument(info_span!("step", step = "restore"))
    .await;
    if let Err(e) = restored {
        if !rec
            .phases
            .iter()
            .any(|p| matches!(p.phase, PhaseName::Restore | PhaseName::Recovery) && !p.ok)
        {
            rec.phases.push(Phase {
                phase: PhaseName::Restore,
                seconds: secs(t),
                ok: false,
                detail: e.message().to_string(),
            });
        }
        return Err(e);
    }
    rec.restore_seconds = [PhaseName::Fetch, PhaseName::Restore, PhaseName::Recovery]
        .iter()
        .map(|p| rec.seconds(*p))
        .sum();
    if rec.restore_seconds > 0.0 {
        rec.throughput = Some(rec.fetched_bytes as f64 / rec.restore_seconds);
    }

    // Checks.
    let t = Instant::now();
    let mut results: Vec<CheckResult> = Vec::new();
    let checked = unless_cancelled(&opts.cancel, async {
        if test.checkdb {
            results.push(checks::checkdb(instance, &rec.drill_database).await);
        }
        let source_counts = last_base_counts(&planned);
        let ctx = ProbeContext {
            restored_to: planned.restored_to,
            rpo_minutes: planned.policy.rpo(&test.database),
            source_counts: &source_counts,
        };
        for p in &test.probes {
            results.push(checks::probe(instance, &rec.drill_database, p, &ctx).await);
        }
        Ok(())
    })
    .instrument(info_span!("step", step = "checks"))
    .await;
    if let Err(e) = checked {
        rec.phases.push(Phase {
            phase: PhaseName::Checks,
            seconds: secs(t),
            ok: false,
            detail: e.message().to_string(),
        });
        rec.checks = results;
        return Err(e);
    }
    results.extend(checks::rto(rec.restore_seconds, test.rto));
    let failed = results.iter().filter(|c| !c.ok).count();
    rec.phases.push(Phase {
        phase: PhaseName::Checks,
        seconds: secs(t),
        ok: failed == 0,
        detail: format!("{} checks, {failed} failed", results.len()),
    });
    rec.checks = results;
    Ok(())
}

/// Refuses a drill database name that exists already: no drill of this run made it.
async fn refuse_existing(test: &RestoreTest, rec: &DrillRecord, instance: &Instance) -> Result<()> {
    match marks::database_identity(instance, &rec.drill_database).await? {
        None => Ok(()),
        Some(s) => Err(Error::new(
            ErrorKind::Refused,
            format!(
                "database {} already exists on {} (database_id {}, created {}, {}) and no drill created it: nothing was restored. Drop or rename it yourself, or change [staging] database",
                rec.drill_database, test.staging_name, s.id, s.created, s.state
            ),
        )
        .with("server", &test.staging_name)
        .with("database", &rec.drill_database)),
    }
}

/// The staging server's clock, as its create_date values are written.
async fn server_time(test: &RestoreTest, instance: &Instance) -> Result<String> {
    let mut sql = instance.connect().await?;
    catalog::server_now(&mut sql)
        .await?
        .map(marks::fmt_time)
        .ok_or_else(|| {
            Error::new(
                ErrorKind::SqlServer,
                "the staging server did not say its time (SELECT GETDATE())",
            )
            .with("server", &test.staging_name)
        })
}

/// The chain from the target's manifests, named and sized; a broken chain (a log
/// missing offsite, a damaged pack) is refused here, before anything is fetched.
async fn plan_chain(cfg: &ConfigDir, test: &RestoreTest, rec: &mut DrillRecord) -> Result<Planned> {
    let policy = test.load_policy(cfg)?;
    let target = cfg.target(test.target.as_deref().or(policy.restore_target(None)))?;
    rec.target = target.name.clone();
    let pass = repository_passphrase(&cfg.main, &cfg.dir)?;
    let repo = crate::jobs::open_repository(target, &pass).await?;
    let (descs, snaps) = describe_repository(&repo).await?;
    // Two servers may have a database of the same name on one target: only the
    // policy's instance's backups are this drill's.
    let descs: Vec<_> = descs
        .into_iter()
        .filter(|d| {
            d.server_name.is_empty() || d.server_name.eq_ignore_ascii_case(&policy.instance_name)
        })
        .collect();
    let records: BTreeMap<String, BackupRecord> = snaps
        .iter()
        .filter_map(|s| {
            BackupRecord::from_snapshot(&s.snapshot)
                .ok()
                .map(|r| (s.id.short(), r))
        })
        .filter(|(_, r)| r.instance.eq_ignore_ascii_case(&policy.instance_name))
        .collect();
    let at = match &test.point {
        DrillPoint::Latest => None,
        DrillPoint::At(t) => Some(*t),
        DrillPoint::Random => random_point(&records, &test.database),
    };
    if let (DrillPoint::Random, Some(a)) = (&test.point, at) {
        rec.point = format!("random: {a}");
    }
    let mut p = plan(
        &descs,
        &PlanRequest {
            database: Some(test.database.clone()),
            at,
        },
    );
    if !descs
        .iter()
        .any(|d| d.database_name.eq_ignore_ascii_case(&test.database))
    {
        p.ok = false;
        p.problems.push(format!(
            "target {} holds no native backup of database {:?}",
            target.name, test.database
        ));
    }
    if !p.ok {
        return Err(
            broken_chain(&p, &test.database, "nothing was fetched").with("target", &target.name)
        );
    }
    for step in &p.steps {
        for src in &step.files {
            let (short, name) = source_parts(src);
            let size = records
                .get(short)
                .and_then(|r| r.files.iter().find(|f| f.name == name))
                .map(|f| f.size)
                .unwrap_or(0);
            rec.chain.push(ChainFile {
                kind: step.kind.to_string(),
                source: src.clone(),
                backup_start: step.backup_start_date.map(|d| d.to_string()),
                size,
            });
        }
    }
    let chain_records: Vec<&BackupRecord> = p
        .steps
        .iter()
        .filter_map(|s| s.files.first())
        .filter_map(|src| records.get(source_parts(src).0))
        .collect();
    let restore_files = recorded_files(&chain_records);
    rec.restore_size = restore_files
        .as_ref()
        .map(|f| f.iter().map(|x| x.size).sum());
    let last = p.steps.last();
    let restored_to = last.and_then(|s| s.stop_at).or_else(|| {
        last.and_then(|s| s.files.first())
            .and_then(|src| records.get(source_parts(src).0))
            .and_then(|r| r.backup_finish.or(r.backup_start))
    });
    rec.restored_to = restored_to.map(|d| d.to_string());
    Ok(Planned {
        policy,
        repo,
        restored_to: restored_to.and_then(|d| d.to_datetime()),
        plan: p,
        snaps,
        records,
        restore_files,
    })
}

/// A point between the end of the oldest full of `database` and the start of its
/// newest backup, uniformly; `None` (latest) when there is no such window.
fn random_point(records: &BTreeMap<String, BackupRecord>, database: &str) -> Option<MtfDate> {
    let of_db = || {
        records
            .values()
            .filter(|r| r.database.eq_ignore_ascii_case(database))
    };
    let from = of_db()
        .filter(|r| r.kind == BackupKind::Full)
        .filter_map(|r| r.backup_finish.or(r.backup_start)?.to_datetime())
        .min()?;
    let to = of_db()
        .filter_map(|r| r.backup_start?.to_datetime())
        .max()?;
    let span = (to - from).whole_seconds();
    if span <= 0 {
        return None;
    }
    let offset = rand::thread_rng().gen_range(0..=span);
    Some(MtfDate::from_datetime(
        from + time::Duration::seconds(offset),
    ))
}

/// Whether `staging` is the policy's own instance: the same server and port.
async fn is_production(policy: &Policy, test: &RestoreTest, staging: &Instance) -> Result<bool> {
    use crate::policy::ConnectionSource;
    // Embedded simulators are the same instance when they keep the same folder
    // (opening the policy's here would start a second one on its state).
    match (&policy.connection, &test.staging_connection) {
        (ConnectionSource::Embedded(a), ConnectionSource::Embedded(b)) => return Ok(a == b),
        (ConnectionSource::Embedded(_), _) | (_, ConnectionSource::Embedded(_)) => {
            return Ok(false)
        }
        _ => {}
    }
    // The drill host may not hold production's connection string (a staging
    // server's own pacsbak): then it cannot be the same connection.
    let spec = match policy.instance_spec() {
        Ok(s) => s,
        Err(e) => {
            warn!(error = %e, "the policy's instance cannot be compared with the staging instance");
            return Ok(false);
        }
    };
    Ok(match spec.endpoint {
        // The embedded simulator is never a staging instance (those come from a
        // connection string).
        Endpoint::Embedded(_) => false,
        Endpoint::Ado(_) => Instance::open(&spec).await?.address() == staging.address(),
    })
}

/// Checks the room the restore needs (when the records know it) and the local
/// fetch folder's room for the chain.
async fn check_room(
    test: &RestoreTest,
    rec: &mut DrillRecord,
    instance: &Instance,
    files: Option<&[DatabaseFile]>,
) -> Result<String> {
    let mut notes = Vec::new();
    match files {
        Some(files) => notes.push(check_disks(test, rec.on_production, instance, files).await?),
        None if rec.on_production => {
            return Err(Error::new(
                ErrorKind::Refused,
                "the backup records hold no file sizes (taken before drills existed), so the production server's free space cannot be checked before fetching: nothing was fetched. Take a full backup with this version first",
            )
            .with("server", &test.staging_name))
        }
        None => notes.push("the backup records hold no file sizes (taken before drills existed): checked after FILELISTONLY, before RESTORE".into()),
    }
    let chain_bytes: u64 = rec.chain.iter().map(|c| c.size).sum();
    std::fs::create_dir_all(&test.fetch_folder_local)
        .map_err(|e| Error::io(&test.fetch_folder_local, e))?;
    if let Some(free) = crate::jobs::free_space(&test.fetch_folder_local) {
        if free < chain_bytes {
            return Err(Error::new(
                ErrorKind::Refused,
                format!(
                    "the fetch folder {} has {} free but the chain is {}: nothing was fetched",
                    test.fetch_folder_local.display(),
                    crate::render::human_bytes(free),
                    crate::render::human_bytes(chain_bytes)
                ),
            ));
        }
    }
    Ok(notes.join("; "))
}

/// The database's files against the restore test's limit and the staging
/// server's free space, each drive with the files MOVE puts on it.
async fn check_disks(
    test: &RestoreTest,
    on_production: bool,
    instance: &Instance,
    files: &[DatabaseFile],
) -> Result<String> {
    let need: u64 = files.iter().map(|f| f.size).sum();
    refuse_if_larger(test, need)?;
    let mut notes = vec![format!(
        "the restore needs {} (at most {})",
        crate::render::human_bytes(need),
        crate::render::human_bytes(test.largest_restore)
    )];
    let drives = match checks::fixed_drives(instance).await {
        Ok(d) => d,
        Err(e) if on_production || test.production => {
            return Err(e.with("check", "free space (xp_fixeddrives)"))
        }
        Err(e) => {
            notes.push(format!(
                "the server's free space could not be read ({e}); the configured limit holds"
            ));
            return Ok(notes.join("; "));
        }
    };
    let mut per_folder: BTreeMap<(Option<String>, &str), u64> = BTreeMap::new();
    for f in files {
        let folder = if f.is_log() {
            test.log_folder.as_str()
        } else {
            test.data_folder.as_str()
        };
        let letter = drive_letter(folder);
        // Folders on one drive share its free space: counted under the drive.
        let key = match &letter {
            Some(_) => (letter.clone(), ""),
            None => (None, folder),
        };
        *per_folder.entry(key).or_default() += f.size;
    }
    for ((letter, folder), need) in per_folder {
        let free = match letter
            .as_deref()
            .and_then(|l| drives.iter().find(|(d, _)| d == l))
        {
            Some((_, free)) => Some(*free),
            None => drives.iter().map(|(_, f)| *f).min(),
        };
        let place = letter
            .map(|l| format!("drive {l}:"))
            .unwrap_or_else(|| folder.to_string());
        match free {
            Some(free) if free < need => {
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "the staging server has {} free for {place} but the restore needs {} there: nothing was restored",
                        crate::render::human_bytes(free),
                        crate::render::human_bytes(need)
                    ),
                )
                .with("server", &test.staging_name))
            }
            Some(free) => notes.push(format!("{} free for {place}", crate::render::human_bytes(free))),
            None => notes.push("xp_fixeddrives reported no drive".into()),
        }
    }
    Ok(notes.join("; "))
}

/// `E` of `E:\Drill\data`; `None` for a path without a drive letter.
fn drive_letter(folder: &str) -> Option<String> {
    folder
        .get(..2)
        .filter(|p| p.ends_with(':') && p.as_bytes()[0].is_ascii_alphabetic())
        .map(|p| p[..1].to_ascii_uppercase())
}

fn refuse_if_larger(test: &RestoreTest, need: u64) -> Result<()> {
    if need > test.largest_restore {
        return Err(Error::new(
            ErrorKind::Refused,
            format!(
                "the restore needs {} for its data and log files but the staging disk takes at most {} (largest_restore in {}): nothing was restored",
                crate::render::human_bytes(need),
                crate::render::human_bytes(test.largest_restore),
                test.file.display()
            ),
        )
        .with("file", test.file.display())
        .with("key", "staging.largest_restore"));
    }
    Ok(())
}

/// RESTORE with MOVE, every step WITH NORECOVERY, then RECOVERY; the mark gets
/// the database's identity after the first statement.
#[allow(clippy::too_many_arguments)]
async fn restore_chain(
    test: &RestoreTest,
    rec: &mut DrillRecord,
    instance: &Instance,
    planned: &Planned,
    device_of: &BTreeMap<String, String>,
    mark: &mut DrillMark,
    marks_dir: &std::path::Path,
    opts: &DrillOptions,
) -> Result<()> {
    let first = planned
        .plan
        .steps
        .first()
        .ok_or_else(|| Error::new(ErrorKind::Internal, "empty plan"))?;
    let devices: Vec<String> = first
        .files
        .iter()
        .map(|f| device_of.get(f).cloned().unwrap_or_else(|| f.clone()))
        .collect();
    let t = Instant::now();
    let files = {
        let mut sql = instance.connect().await?;
        restore::file_list(&mut sql, &devices, first.position).await?
    };
    if planned.restore_files.is_none() {
        rec.restore_size = Some(files.iter().map(|f| f.size).sum());
        let room = check_disks(test, rec.on_production, instance, &files).await?;
        info!(%room, "room checked from FILELISTONLY");
    }
    let moves = restore::move_clauses(
        &files,
        &rec.drill_database,
        &test.data_folder,
        &test.log_folder,
    );
    let stmts = restore::statements(&planned.plan, device_of, &rec.drill_database, &moves, false);
    let stall = planned.policy.stall;
    let n = stmts.len();
    for (i, s) in stmts.iter().enumerate() {
        let recovery = s.kind.is_none();
        let t_rec = Instant::now();
        if recovery {
            rec.phases.push(Phase {
                phase: PhaseName::Restore,
                seconds: secs(t),
                ok: true,
                detail: format!(
                    "{} RESTORE statements with MOVE into {}",
                    n - 1,
                    test.data_folder
                ),
            });
        }
        let ran = run_long(
            instance,
            &rec.drill_database,
            &s.sql,
            stall,
            &opts.cancel,
            &mut |_| {},
        )
        .await;
        if let Err(e) = ran {
            rec.phases.push(Phase {
                phase: if recovery {
                    PhaseName::Recovery
                } else {
                    PhaseName::Restore
                },
                seconds: if recovery { secs(t_rec) } else { secs(t) },
                ok: false,
                detail: format!("step {} of {n} failed: {}", i + 1, e.message()),
            });
            return Err(e.with("database", &rec.drill_database));
        }
        if i == 0 {
            if let Some(shown) = marks::database_identity(instance, &rec.drill_database).await? {
                mark.database_id = Some(shown.id);
                mark.create_date = Some(shown.created);
                mark.save(marks_dir)?;
            }
        }
        if recovery {
            rec.phases.push(Phase {
                phase: PhaseName::Recovery,
                seconds: secs(t_rec),
                ok: true,
                detail: format!("{} online", rec.drill_database),
            });
        }
    }
    Ok(())
}

/// Row counts of the last full or differential restored: what the source held
/// when that backup was taken.
fn last_base_counts(planned: &Planned) -> BTreeMap<String, u64> {
    planned
        .plan
        .steps
        .iter()
        .rev()
        .find(|s| s.kind != BackupKind::Log)
        .and_then(|s| s.files.first())
        .and_then(|src| planned.records.get(source_parts(src).0))
        .map(|r| r.row_counts.clone())
        .unwrap_or_default()
}

/// `f`, unless the drill is stopped first (daemon stop or time-out): then an
/// error, so the cleanup runs at once.
async fn unless_cancelled<T>(
    cancel: &CancellationToken,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    tokio::select! {
        r = f => r,
        _ = cancel.cancelled() => Err(Error::new(ErrorKind::Cancelled, "the drill was stopped (daemon stop or time-out): what it created is dropped")),
    }
}

fn chain_words(p: &RestorePlan) -> String {
    let count = |k: BackupKind| p.steps.iter().filter(|s| s.kind == k).count();
    let (d, l) = (count(BackupKind::Diff), count(BackupKind::Log));
    let mut parts = vec!["full".to_string()];
    if d > 0 {
        parts.push("differential".into());
    }
    if l > 0 {
        parts.push(format!("{l} log{}", if l == 1 { "" } else { "s" }));
    }
    parts.join(" + ")
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The database's files a restore of the chain recreates: as the newest backup
/// that recorded them found them.
fn recorded_files(records: &[&BackupRecord]) -> Option<Vec<DatabaseFile>> {
    records
        .iter()
        .rev()
        .find(|r| !r.database_files.is_empty())
        .map(|r| r.database_files.clone())
}

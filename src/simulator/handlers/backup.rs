//! BACKUP DATABASE / BACKUP LOG: checks (4208, 4214, 3035, 3201), a checkpoint,
//! the pages or log records to copy, progress over the backup's duration (3211 INFO
//! messages, each flushed in its own packet, and a sys.dm_exec_requests row), the
//! file written through `backup_media`, msdb history, 4035 and 3014 at the end.
//! Faults (disk full, dropped connection, slow, pause, damage) act here.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use rusqlite::params;

use super::{cannot_open, fail, media_error};
use crate::simulator::backup_media::{
    damage, write_set, FileEntry, MediaError, SetHeader, SetPayload,
};
use crate::simulator::engine::pages::PAGE_SIZE;
use crate::simulator::engine::{new_guid, RequestInfo};
use crate::simulator::session::{Abort, Ctx, Outcome};
use crate::simulator::sql::lexer::Tok;
use crate::simulator::sql::{fmt_unix, Parser, SqlError, StmtError};

/// Options of a BACKUP statement.
#[derive(Debug, Default)]
struct Opts {
    log: bool,
    db: String,
    disks: Vec<String>,
    checksum: bool,
    compression: bool,
    copy_only: bool,
    differential: bool,
    init: bool,
    stats: Option<i64>,
    description: String,
    name: String,
}

fn parse(ctx: &Ctx<'_>, t: &[Tok]) -> Result<Opts, SqlError> {
    let mut p = Parser::new(t);
    let mut o = Opts::default();
    p.expect_kw("BACKUP")?;
    if p.eat_kw("LOG") {
        o.log = true;
    } else {
        p.expect_kw("DATABASE")?;
    }
    o.db = p.ident(&ctx.params)?;
    p.expect_kw("TO")?;
    loop {
        if !(p.eat_kw("DISK") || p.eat_kw("URL")) {
            return Err(SqlError::near(p.peek()));
        }
        p.expect_sym("=")?;
        o.disks.push(p.string(&ctx.params)?);
        if !p.eat_sym(",") {
            break;
        }
    }
    if p.eat_kw("WITH") {
        loop {
            let w = p
                .peek()
                .and_then(|t| t.ident())
                .map(|s| s.to_ascii_uppercase())
                .ok_or_else(|| SqlError::near(p.peek()))?;
            p.i += 1;
            match w.as_str() {
                "CHECKSUM" => o.checksum = true,
                "NO_CHECKSUM" => o.checksum = false,
                "COMPRESSION" => o.compression = true,
                "NO_COMPRESSION" => o.compression = false,
                "COPY_ONLY" => o.copy_only = true,
                "DIFFERENTIAL" => o.differential = true,
                "INIT" | "FORMAT" => o.init = true,
                "NOINIT"
                | "NOFORMAT"
                | "SKIP"
                | "NOSKIP"
                | "REWIND"
                | "NOREWIND"
                | "UNLOAD"
                | "NOUNLOAD"
                | "NORECOVERY"
                | "CONTINUE_AFTER_ERROR"
                | "STOP_ON_ERROR" => {}
                "STATS" => {
                    o.stats = Some(if p.eat_sym("=") {
                        p.number(&ctx.params)?.clamp(1, 100)
                    } else {
                        10
                    });
                }
                "DESCRIPTION" => {
                    p.expect_sym("=")?;
                    o.description = p.string(&ctx.params)?;
                }
                "NAME" | "MEDIANAME" | "MEDIADESCRIPTION" => {
                    p.expect_sym("=")?;
                    let v = p.string(&ctx.params)?;
                    if w == "NAME" {
                        o.name = v;
                    }
                }
                "MAXTRANSFERSIZE" | "BUFFERCOUNT" | "BLOCKSIZE" => {
                    p.expect_sym("=")?;
                    p.number(&ctx.params)?;
                }
                _ => return Err(SqlError::syntax(&w)),
            }
            if !p.eat_sym(",") {
                break;
            }
        }
    }
    if !p.done() {
        return Err(SqlError::near(p.peek()));
    }
    Ok(o)
}

struct Plan {
    header: SetHeader,
    payload: SetPayload,
    data_pages: usize,
    log_pages: usize,
    logical: (String, String),
    database_id: i64,
    new_diff_base: Option<(i64, String)>,
    new_log_chain: Option<i64>,
}

/// Between the statement's task and the thread writing the backup file: how many
/// units of work (pages) the writer may do, how many it has done, whether it must
/// stop. The statement hands out the work one STATS step at a time, so 3211
/// messages, `percent_complete`, the pause and drop faults all follow the pages
/// actually written.
struct Gate {
    state: Mutex<GateState>,
    cv: Condvar,
    /// Wakes the statement when the writer has done all it may, or has finished.
    moved: tokio::sync::Notify,
}

#[derive(Default)]
struct GateState {
    allowed: u64,
    done: u64,
    stop: bool,
    finished: bool,
}

impl Gate {
    fn new() -> Gate {
        Gate {
            state: Mutex::new(GateState::default()),
            cv: Condvar::new(),
            moved: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets the writer go up to `n` units.
    fn allow(&self, n: u64) {
        let mut s = self.lock();
        s.allowed = s.allowed.max(n);
        self.cv.notify_all();
    }

    /// Tells the writer to stop (cancel, dropped connection).
    fn stop(&self) {
        self.lock().stop = true;
        self.cv.notify_all();
    }

    /// Whether the writer was told to stop.
    fn stopped(&self) -> bool {
        self.lock().stop
    }

    /// Units done, and whether the writer has finished (written or failed).
    fn progress(&self) -> (u64, bool) {
        let s = self.lock();
        (s.done, s.finished)
    }

    fn finish(&self) {
        self.lock().finished = true;
        self.moved.notify_one();
    }

    /// The writer takes one unit, waiting until it is allowed; `None` when stopped,
    /// otherwise whether it had to wait.
    fn take(&self) -> Option<bool> {
        let mut s = self.lock();
        let mut waited = false;
        while s.done >= s.allowed && !s.stop {
            waited = true;
            s = self.cv.wait(s).unwrap_or_else(|p| p.into_inner());
        }
        if s.stop {
            return None;
        }
        s.done += 1;
        if s.done == s.allowed {
            self.moved.notify_one();
        }
        Some(waited)
    }
}

/// Stops the writer when the statement goes away without finishing (its session
/// ended, the server stopped): no thread is left waiting at the gate.
struct StopOnDrop(Arc<Gate>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.stop();
    }
}

/// The `slow_backup` fault's pace: at least `us_per_unit` per unit of work, counted
/// from the last time the writer waited at the gate (a pause is not caught up on).
struct Pace {
    us_per_unit: u64,
    since: Instant,
    units: u64,
}

impl Pace {
    fn unit(&mut self, waited: bool) {
        if self.us_per_unit == 0 {
            return;
        }
        if waited {
            self.since = Instant::now();
            self.units = 0;
        }
        self.units += 1;
        let due = self.since + std::time::Duration::from_micros(self.us_per_unit * self.units);
        let now = Instant::now();
        // Sleeps of a millisecond or more only: finer ones cost more than they wait.
        if due > now + std::time::Duration::from_millis(1) {
            std::thread::sleep(due - now);
        }
    }
}

/// Puts back the devices a stopped backup touched: appended files cut back to their
/// old length, created or overwritten ones removed.
fn undo_writes(touched: &[(String, Option<u64>)]) {
    for (disk, before) in touched {
        match before {
            Some(len) => {
                let _ = std::fs::OpenOptions::new()
                    .write(true)
                    .open(disk)
                    .and_then(|f| f.set_len(*len));
            }
            None => {
                let _ = std::fs::remove_file(disk);
            }
        }
    }
}

/// What the writer thread did.
struct Written {
    header: SetHeader,
    bytes: u64,
    /// The failure, with the device it happened on.
    error: Option<(MediaError, String)>,
    /// Devices opened for writing, with their length before (appended) or `None`
    /// (created or overwritten): what to undo when the backup is stopped.
    touched: Vec<(String, Option<u64>)>,
}

/// The work of one BACKUP that the writer thread needs.
struct Job {
    header: SetHeader,
    payload: SetPayload,
    disks: Vec<String>,
    init: bool,
    data_pages: usize,
    log_pages: usize,
    disk_full_at: Option<u32>,
    us_per_page: u64,
}

/// Writes every family of the set, taking each unit of work from the gate: first
/// the log pages (family 1 carries the log), then the data pages as the bakfile
/// writer asks for them. Pages are encoded as they are written.
fn write_families(mut job: Job, gate: &Gate) -> Written {
    let families = job.disks.len().max(1);
    let mut header = job.header.clone();
    let mut out = Written {
        header: job.header.clone(),
        bytes: 0,
        error: None,
        touched: Vec::new(),
    };
    let mut pace = Pace {
        us_per_unit: job.us_per_page,
        since: Instant::now(),
        units: 0,
    };
    let stopped = || {
        (
            MediaError::Write(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "the backup was stopped",
            )),
            String::new(),
        )
    };
    for _ in 0..job.log_pages {
        match gate.take() {
            Some(waited) => pace.unit(waited),
            None => {
                out.error = Some(stopped());
                return out;
            }
        }
    }
    for (k, disk) in job.disks.iter().enumerate() {
        let fam = SetPayload {
            pages: job
                .payload
                .pages
                .iter()
                .skip(k)
                .step_by(families)
                .cloned()
                .collect(),
            log: if k == 0 {
                std::mem::take(&mut job.payload.log)
            } else {
                Vec::new()
            },
        };
        let mut h = header.clone();
        h.family_sequence = k as i64 + 1;
        let fail_after = job
            .disk_full_at
            .map(|p| (job.data_pages * PAGE_SIZE) * p as usize / 100 / families);
        let path = Path::new(disk);
        let before = (!job.init && path.exists())
            .then(|| std::fs::metadata(path).map(|m| m.len()).unwrap_or(0));
        out.touched.push((disk.clone(), before));
        let mut before_page = || match gate.take() {
            Some(waited) => {
                pace.unit(waited);
                true
            }
            None => false,
        };
        match write_set(path, &mut h, &fam, job.init, fail_after, &mut before_page) {
            Ok(n) => out.bytes += n,
            Err(e) => {
                out.error = Some((e, disk.clone()));
                return out;
            }
        }
        header.position = h.position;
        header.backup_size += h.backup_size;
        header.compressed_size += h.compressed_size;
    }
    out.header = header;
    out
}

/// Runs a BACKUP statement.
pub async fn run(ctx: &mut Ctx<'_>, t: &[Tok]) -> Result<Outcome, StmtError> {
    let o = parse(ctx, t)?;
    let what = if o.log {
        "BACKUP LOG"
    } else {
        "BACKUP DATABASE"
    };
    let plan = match prepare(ctx, &o) {
        Ok(p) => p,
        Err(errs) => return Ok(fail(ctx, &errs, what)),
    };
    let started = Instant::now();
    let total = (plan.data_pages + plan.log_pages).max(1) as u64;
    let (us_per_page, disk_full_at, drop_at) = {
        let inst = ctx.shared.lock();
        let f = &inst.state.faults;
        (
            f.slow_us_per_page.unwrap_or(0),
            f.disk_full_at,
            f.drop_connection_at,
        )
    };
    // The file is written by a thread of its own; this task hands it the work step
    // by step and reports progress.
    let gate = Arc::new(Gate::new());
    let job = Job {
        header: plan.header.clone(),
        payload: plan.payload,
        disks: o.disks.clone(),
        init: o.init,
        data_pages: plan.data_pages,
        log_pages: plan.log_pages,
        disk_full_at,
        us_per_page,
    };
    let writer = {
        let gate = gate.clone();
        tokio::task::spawn_blocking(move || {
            let w = write_families(job, &gate);
            // Stopped (cancelled, connection dropped, statement gone): what was
            // written is undone here, so no path leaves a partial file behind.
            if gate.stopped() {
                undo_writes(&w.touched);
            }
            gate.finish();
            w
        })
    };
    let _stop_on_drop = StopOnDrop(gate.clone());
    // Progress: step through the work in STATS increments (10% when not asked).
    let step = o.stats.unwrap_or(10).max(1) as u32;
    let mut pct = 0u32;
    let shared = ctx.shared.clone();
    let result: Result<(), Abort> = async {
        while pct < 100 {
            let next = (pct + step).min(100);
            let target = total * u64::from(next) / 100;
            gate.allow(target);
            // Wait for the writer to get there; meanwhile percent_complete follows
            // the pages written.
            let reached = loop {
                let (done, finished) = gate.progress();
                if done >= target {
                    break true;
                }
                if finished {
                    break false;
                }
                let live = (done as f64 * 100.0 / total as f64).clamp(pct as f64, next as f64);
                set_progress(&mut ctx.shared.lock().requests, ctx.spid, live, started);
                tokio::select! {
                    _ = gate.moved.notified() => {}
                    _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                    _ = ctx.wait_cancel() => return Err(Abort::Cancelled),
                }
            };
            if !reached {
                // The writer failed (a full disk): its error is reported below.
                return Ok(());
            }
            pct = next;
            if drop_at.is_some_and(|d| pct >= d) {
                return Err(Abort::Disconnect);
            }
            if disk_full_at.is_some_and(|d| pct >= d) {
                return Ok(());
            }
            // Pause point (SIMCTL FAULT pause_backup).
            loop {
                let notified = shared.resume.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let paused = {
                    let mut inst = ctx.shared.lock();
                    set_progress(&mut inst.requests, ctx.spid, pct as f64, started);
                    inst.state
                        .faults
                        .pause_backup_at
                        .is_some_and(|p| pct >= p && pct < 100)
                };
                if !paused {
                    break;
                }
                tokio::select! {
                    _ = &mut notified => {}
                    _ = ctx.wait_cancel() => return Err(Abort::Cancelled),
                }
            }
            if o.stats.is_some() && pct < 100 {
                ctx.info(3211, &format!("{pct} percent processed."));
                ctx.flush().await?;
            }
        }
        Ok(())
    }
    .await;
    if let Err(a) = result {
        // Stopped: the writer ends at its next page and undoes what it wrote.
        gate.stop();
        let _ = writer.await;
        ctx.shared.lock().requests.remove(&ctx.spid);
        return Err(a.into());
    }
    // The rest of the work (all of it after a full disk: the writer fails by itself).
    gate.allow(u64::MAX);
    let w = writer.await.unwrap_or_else(|e| Written {
        header: plan.header.clone(),
        bytes: 0,
        error: Some((
            MediaError::Write(std::io::Error::other(format!("backup writer failed: {e}"))),
            o.disks.first().cloned().unwrap_or_default(),
        )),
        touched: Vec::new(),
    });
    if let Some((e, disk)) = &w.error {
        ctx.shared.lock().requests.remove(&ctx.spid);
        return Ok(fail(ctx, &[media_error(e, disk)], what));
    }
    let mut header = w.header;
    let written = w.bytes;
    let damaged = std::mem::take(&mut ctx.shared.lock().state.faults.damage_after_write);
    if damaged {
        if let Some(disk) = o.disks.first() {
            damage(Path::new(disk));
        }
    }
    let secs = started.elapsed().as_secs_f64().max(0.001);
    // Commit: state, history, messages.
    let hist = {
        let mut inst = ctx.shared.lock();
        inst.requests.remove(&ctx.spid);
        let finish = inst.now_unix();
        header.finish = finish;
        if let Some(m) = inst.state.db_mut(&o.db) {
            if let Some(b) = plan.new_diff_base.clone() {
                m.diff_base = Some(b);
            }
            if let Some(l) = plan.new_log_chain {
                if o.log {
                    m.log_truncated_lsn = l;
                }
                m.log_chain_lsn = Some(l);
            }
        }
        let _ = inst.save();
        record_history(&inst.catalog.conn, &header, &o, plan.database_id)
    };
    if let Err(e) = hist {
        ctx.error(3009, 16, &format!("Could not insert a backup or restore history/detail record in the msdb database. This may indicate a problem with the msdb database. The backup/restore operation was still successful. ({e})"));
    }
    let pos = header.position;
    if plan.data_pages > 0 {
        ctx.info(
            4035,
            &format!(
                "Processed {} pages for database '{}', file '{}' on file {pos}.",
                plan.data_pages, header.database_name, plan.logical.0
            ),
        );
    }
    ctx.info(
        4035,
        &format!(
            "Processed {} pages for database '{}', file '{}' on file {pos}.",
            plan.log_pages, header.database_name, plan.logical.1
        ),
    );
    if o.stats.is_some() {
        ctx.info(3211, "100 percent processed.");
    }
    let label = if o.log {
        "BACKUP LOG"
    } else if o.differential {
        "BACKUP DATABASE WITH DIFFERENTIAL"
    } else {
        "BACKUP DATABASE"
    };
    let mb = written as f64 / 1_048_576.0 / secs;
    ctx.info(
        3014,
        &format!(
            "{label} successfully processed {total} pages in {secs:.3} seconds ({mb:.3} MB/sec)."
        ),
    );
    Ok(Outcome::default())
}

fn set_progress(
    reqs: &mut std::collections::HashMap<u16, RequestInfo>,
    spid: u16,
    pct: f64,
    started: Instant,
) {
    if let Some(r) = reqs.get_mut(&spid) {
        // Only forward: a live reading never goes below a step already reported.
        r.percent = r.percent.max(pct);
        let pct = r.percent;
        let el = started.elapsed().as_millis() as f64;
        r.estimated_ms = if pct > 0.0 {
            (el * (100.0 - pct) / pct) as i64
        } else {
            0
        };
    }
}

fn prepare(ctx: &mut Ctx<'_>, o: &Opts) -> Result<Plan, Vec<SqlError>> {
    let mut inst = ctx.shared.lock();
    let Some(meta) = inst.state.db(&o.db).cloned() else {
        return Err(vec![SqlError::new(
            911,
            format!(
                "Database '{}' does not exist. Make sure that the name is entered correctly.",
                o.db
            ),
        )]);
    };
    if meta.state != "ONLINE" {
        return Err(vec![SqlError::new(954, format!("The database \"{}\" cannot be opened. It is acting as a mirror database or is in the middle of a restore.", meta.name))]);
    }
    for d in &o.disks {
        if let Some(prefix) = &inst.state.faults.unreachable_prefix {
            if d.starts_with(prefix.as_str()) {
                return Err(vec![cannot_open(d, 53, "The network path was not found.")]);
            }
        }
        let parent = Path::new(d)
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        if !parent.as_os_str().is_empty() && !parent.is_dir() {
            return Err(vec![cannot_open(
                d,
                3,
                "The system cannot find the path specified.",
            )]);
        }
    }
    if o.log {
        if meta.recovery_model == "SIMPLE" {
            return Err(vec![SqlError::new(4208, "The statement BACKUP LOG is not allowed while the recovery model is SIMPLE. Use BACKUP DATABASE or change the recovery model using ALTER DATABASE.")]);
        }
        if meta.log_chain_lsn.is_none() {
            return Err(vec![SqlError::new(
                4214,
                "BACKUP LOG cannot be performed because there is no current database backup.",
            )]);
        }
    }
    let differential = o.differential && !o.log;
    if differential && meta.diff_base.is_none() {
        return Err(vec![SqlError::new(3035, format!("Cannot perform a differential backup for database \"{}\", because a current database backup does not exist. Perform a full database backup by reissuing BACKUP DATABASE, omitting the WITH DIFFERENTIAL option.", meta.name))]);
    }
    let e = |e: crate::Error| {
        vec![SqlError::new(
            3203,
            format!("Read on \"{}\" failed: {e}", meta.name),
        )]
    };
    let start = inst.now_unix();
    let (first, checkpoint) = if o.log {
        (meta.log_chain_lsn.unwrap_or(meta.lsn), 0)
    } else {
        let c = inst.checkpoint(&meta.name).map_err(e)?;
        (c, c)
    };
    // The backup's own log record ends the range.
    inst.log_ops(&meta.name, vec!["BACKUP".into()]).map_err(e)?;
    let meta = inst.state.db(&o.db).cloned().ok_or_else(Vec::new)?;
    let last = meta.lsn;
    let mut payload = SetPayload::default();
    let (data_pages, log_pages);
    if o.log {
        payload.log = inst
            .read_log_from(&meta.name, first)
            .into_iter()
            .filter(|r| r.lsn >= first && r.lsn < last)
            .collect();
        data_pages = 0;
        log_pages = payload
            .log
            .iter()
            .map(|r| r.op.len() + 40)
            .sum::<usize>()
            .div_ceil(PAGE_SIZE)
            .max(1);
    } else {
        let base = meta.diff_base.as_ref().map(|b| b.0).unwrap_or(0);
        let df = inst.data_file(&meta.name).map_err(e)?;
        // The point-in-time copy: shared pages, none copied.
        payload.pages = df
            .pages()
            .iter()
            .enumerate()
            .filter(|(i, p)| !differential || *i == 0 || p.lsn > base)
            .map(|(i, p)| (i as u32, p.clone()))
            .collect();
        data_pages = payload.pages.len();
        log_pages = 2;
    }
    let total_pages = inst.data_file(&meta.name).map_err(e)?.pages().len() as u32;
    let backup_type = if o.log {
        2
    } else if differential {
        5
    } else {
        1
    };
    let set_guid = new_guid();
    let database_backup_lsn = meta.diff_base.as_ref().map(|b| b.0).unwrap_or(0);
    let (diff_lsn, diff_guid) = if differential {
        meta.diff_base.clone().unwrap_or((0, String::new()))
    } else {
        (0, String::new())
    };
    let header = SetHeader {
        backup_type,
        name: o.name.clone(),
        description: o.description.clone(),
        position: 1,
        database_name: meta.name.clone(),
        server_name: "PACSSIM".into(),
        machine_name: "PACSSIM".into(),
        user_name: "sa".into(),
        database_guid: meta.guid.clone(),
        fork_guid: meta.fork_guid.clone(),
        backup_set_guid: set_guid.clone(),
        family_guid: new_guid(),
        family_count: o.disks.len() as i64,
        family_sequence: 1,
        creation_date: meta.create_date,
        start,
        finish: start,
        first_lsn: first,
        last_lsn: last,
        checkpoint_lsn: if o.log {
            meta.checkpoint_lsn
        } else {
            checkpoint
        },
        database_backup_lsn,
        diff_base_lsn: diff_lsn,
        diff_base_guid: diff_guid,
        backup_size: 0,
        compressed_size: 0,
        compressed: o.compression,
        has_checksums: o.checksum,
        copy_only: o.copy_only && !differential,
        recovery_model: meta.recovery_model.replace('_', "-"),
        files: meta
            .files
            .iter()
            .map(|f| FileEntry {
                logical: f.logical.clone(),
                physical: f.physical.clone(),
                kind: if f.is_log { "L".into() } else { "D".into() },
                file_id: f.file_id,
                size: std::fs::metadata(&f.physical)
                    .map(|m| m.len() as i64)
                    .unwrap_or(0),
            })
            .collect(),
        total_pages,
    };
    let new_diff_base =
        (!o.log && !differential && !o.copy_only).then(|| (checkpoint, set_guid.clone()));
    let new_log_chain = if o.log {
        (!o.copy_only).then_some(last)
    } else if meta.log_chain_lsn.is_none() && meta.recovery_model != "SIMPLE" && !differential {
        Some(first)
    } else {
        None
    };
    let logical = (
        meta.data_file()
            .map(|f| f.logical.clone())
            .unwrap_or_default(),
        meta.log_file()
            .map(|f| f.logical.clone())
            .unwrap_or_default(),
    );
    let command = if o.log {
        "BACKUP LOG"
    } else {
        "BACKUP DATABASE"
    };
    inst.requests.insert(
        ctx.spid,
        RequestInfo {
            spid: ctx.spid,
            command: command.into(),
            database_id: meta.database_id,
            start: start as f64,
            percent: 0.0,
            estimated_ms: 0,
        },
    );
    Ok(Plan {
        header,
        payload,
        data_pages,
        log_pages,
        logical,
        database_id: meta.database_id,
        new_diff_base,
        new_log_chain,
    })
}

fn record_history(
    c: &rusqlite::Connection,
    h: &SetHeader,
    o: &Opts,
    _db_id: i64,
) -> rusqlite::Result<()> {
    c.execute(
        "INSERT INTO msdb.backupmediaset(media_uuid, media_family_count, is_compressed, is_encrypted, software_name)
         VALUES (?1, ?2, ?3, 0, 'Microsoft SQL Server')",
        params![h.family_guid, o.disks.len() as i64, h.compressed as i64],
    )?;
    let media_set_id = c.last_insert_rowid();
    for (k, d) in o.disks.iter().enumerate() {
        c.execute(
            "INSERT INTO msdb.backupmediafamily VALUES (?1, ?2, ?3, 1, NULL, ?4, 2, 512, 0)",
            params![media_set_id, k as i64 + 1, new_guid(), d],
        )?;
    }
    let ty = match h.backup_type {
        2 => "L",
        5 => "I",
        _ => "D",
    };
    c.execute(
        "INSERT INTO msdb.backupset(media_set_id, name, description, database_name, type, is_copy_only,
           backup_start_date, backup_finish_date, backup_size, compressed_backup_size, has_backup_checksums,
           is_damaged, first_lsn, last_lsn, checkpoint_lsn, database_backup_lsn, differential_base_lsn,
           differential_base_guid, recovery_model, database_guid, family_guid, last_recovery_fork_guid,
           backup_set_uuid, server_name, machine_name, user_name, position, database_creation_date,
           compatibility_level, is_snapshot, is_password_protected)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21,
           ?22, 'PACSSIM', 'PACSSIM', 'sa', ?23, ?24, 150, 0, 0)",
        params![
            media_set_id,
            if h.name.is_empty() { None } else { Some(h.name.clone()) },
            if h.description.is_empty() { None } else { Some(h.description.clone()) },
            h.database_name,
            ty,
            h.copy_only as i64,
            fmt_unix(h.start),
            fmt_unix(h.finish),
            h.backup_size,
            h.compressed_size,
            h.has_checksums as i64,
            h.first_lsn,
            h.last_lsn,
            h.checkpoint_lsn,
            h.database_backup_lsn,
            if h.diff_base_lsn == 0 { None } else { Some(h.diff_base_lsn) },
            if h.diff_base_guid.is_empty() { None } else { Some(h.diff_base_guid.clone()) },
            h.recovery_model.replace('-', "_"),
            h.database_guid,
            h.family_guid,
            h.fork_guid,
            h.backup_set_guid,
            h.position,
            fmt_unix(h.creation_date),
        ],
    )?;
    Ok(())
}

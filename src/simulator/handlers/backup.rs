//! BACKUP DATABASE / BACKUP LOG: checks (4208, 4214, 3035, 3201), a checkpoint,
//! the pages or log records to copy, progress over the backup's duration (3211 INFO
//! messages, each flushed in its own packet, and a sys.dm_exec_requests row), the
//! file written through `backup_media`, msdb history, 4035 and 3014 at the end.
//! Faults (disk full, dropped connection, slow, pause, damage) act here.

use std::path::Path;
use std::time::Instant;

use rusqlite::params;

use super::{cannot_open, fail, media_error};
use crate::simulator::backup_media::{damage, write_set, FileEntry, SetHeader, SetPayload};
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
    let total = (plan.data_pages + plan.log_pages).max(1);
    let (us_per_page, disk_full_at, drop_at) = {
        let inst = ctx.shared.lock();
        let f = &inst.state.faults;
        (
            f.slow_us_per_page.unwrap_or(50),
            f.disk_full_at,
            f.drop_connection_at,
        )
    };
    // Progress: step through the work in STATS increments (10% when not asked).
    let step = o.stats.unwrap_or(10).max(1) as u32;
    let mut pct = 0u32;
    let shared = ctx.shared.clone();
    let result: Result<(), Abort> = async {
        while pct < 100 {
            let next = (pct + step).min(100);
            let pages_in_step = total as u64 * (next - pct) as u64 / 100;
            let delay = std::time::Duration::from_micros(us_per_page * pages_in_step.max(1));
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = ctx.wait_cancel() => return Err(Abort::Cancelled),
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
                    set_progress(&mut inst.requests, ctx.spid, pct, started, total);
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
        ctx.shared.lock().requests.remove(&ctx.spid);
        return Err(a.into());
    }
    // Write the files.
    let mut header = plan.header.clone();
    let families = o.disks.len().max(1);
    let mut written = 0u64;
    for (k, disk) in o.disks.iter().enumerate() {
        let mut fam = SetPayload {
            pages: Vec::new(),
            log: if k == 0 {
                plan.payload.log.clone()
            } else {
                Vec::new()
            },
        };
        fam.pages = plan
            .payload
            .pages
            .iter()
            .enumerate()
            .filter(|(i, _)| i % families == k)
            .map(|(_, p)| p.clone())
            .collect();
        let mut h = header.clone();
        h.family_sequence = k as i64 + 1;
        let fail_after =
            disk_full_at.map(|p| (plan.data_pages * PAGE_SIZE) * p as usize / 100 / families);
        match write_set(Path::new(disk), &mut h, &fam, o.init, fail_after) {
            Ok(n) => written += n,
            Err(e) => {
                ctx.shared.lock().requests.remove(&ctx.spid);
                return Ok(fail(ctx, &[media_error(&e, disk)], what));
            }
        }
        header.position = h.position;
        header.backup_size += h.backup_size;
        header.compressed_size += h.compressed_size;
        let damaged = std::mem::take(&mut ctx.shared.lock().state.faults.damage_after_write);
        if damaged {
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
    pct: u32,
    started: Instant,
    _total: usize,
) {
    if let Some(r) = reqs.get_mut(&spid) {
        r.percent = pct as f64;
        let el = started.elapsed().as_millis() as f64;
        r.estimated_ms = if pct > 0 {
            (el * (100.0 - pct as f64) / pct as f64) as i64
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
            .read_log(&meta.name)
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
        payload.pages = df
            .pages
            .iter()
            .enumerate()
            .filter(|(i, p)| !differential || *i == 0 || p.lsn > base)
            .map(|(i, p)| (i as u32, p.clone()))
            .collect();
        data_pages = payload.pages.len();
        log_pages = 2;
    }
    let total_pages = inst.data_file(&meta.name).map_err(e)?.pages.len() as u32;
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

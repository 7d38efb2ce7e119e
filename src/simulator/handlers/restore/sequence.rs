//! One RESTORE DATABASE / RESTORE LOG step: read the set, check it against the
//! statement and the instance, apply it (`apply`), then history and messages; and
//! RESTORE ... WITH RECOVERY without a device, which ends a restore sequence.

use std::path::Path;
use std::time::Instant;

use super::apply;
use super::Opts;
use crate::simulator::backup_media::read_set;
use crate::simulator::handlers::{fail, media_error};
use crate::simulator::session::{Ctx, Outcome};
use crate::simulator::sql::{fmt_unix, SqlError, StmtError};

pub(super) fn restore(ctx: &mut Ctx<'_>, o: &Opts) -> Result<Outcome, StmtError> {
    let what = if o.kind == "LOG" {
        "RESTORE LOG"
    } else {
        "RESTORE DATABASE"
    };
    let started = Instant::now();
    // RESTORE DATABASE x WITH RECOVERY: finish a restore sequence.
    if o.disks.is_empty() {
        let mut inst = ctx.shared.lock();
        let Some(m) = inst.state.db_mut(&o.db) else {
            drop(inst);
            return Ok(fail(ctx, &[SqlError::new(3117, "The log or differential backup cannot be restored because no files are ready to rollforward.")], what));
        };
        if m.state == "RESTORING" && !o.norecovery {
            m.state = "ONLINE".into();
            m.restore = None;
            corrupt_if_asked(&mut inst, &o.db);
        }
        let _ = inst.save();
        drop(inst);
        ctx.info(
            3014,
            &format!("{what} successfully processed 0 pages in 0.001 seconds (0.000 MB/sec)."),
        );
        return Ok(Outcome::default());
    }
    let paths: Vec<&Path> = o.disks.iter().map(Path::new).collect();
    let (h, payload) = match read_set(&paths, o.file) {
        Ok(x) => x,
        Err(e) => return Ok(fail(ctx, &[media_error(&e, &o.disks[0])], what)),
    };
    if h.family_count > o.disks.len() as i64 {
        return Ok(fail(ctx, &[SqlError::new(3132, format!("The media set has {} media families but only {} are provided. All members must be provided.", h.family_count, o.disks.len()))], what));
    }
    if o.checksum && !h.has_checksums {
        return Ok(fail(ctx, &[SqlError::new(3187, "RESTORE WITH CHECKSUM cannot be specified because the backup set does not contain checksum information.")], what));
    }
    let mut inst = ctx.shared.lock();
    let in_use = inst
        .sessions
        .iter()
        .any(|(s, i)| *s != ctx.spid && i.database.eq_ignore_ascii_case(&o.db));
    let res = apply::apply(&mut inst, o, &h, &payload, in_use);
    let (pages, name) = match res {
        Ok(x) => x,
        Err(errs) => {
            drop(inst);
            return Ok(fail(ctx, &errs, what));
        }
    };
    if !o.norecovery {
        if let Some(m) = inst.state.db_mut(&name) {
            m.state = "ONLINE".into();
            m.restore = None;
        }
        corrupt_if_asked(&mut inst, &name);
    }
    let now = inst.now_unix();
    let _ = inst.catalog.conn.execute(
        "INSERT INTO msdb.restorehistory(restore_date, destination_database_name, user_name, backup_set_id, restore_type, replace, recovery, stop_at)
         VALUES (?1, ?2, 'sa', (SELECT MAX(backup_set_id) FROM msdb.backupset WHERE backup_set_uuid = ?3), ?4, ?5, ?6, ?7)",
        rusqlite::params![fmt_unix(now), name, h.backup_set_guid, if o.kind == "LOG" { "L" } else { "D" }, o.replace as i64, (!o.norecovery) as i64, o.stopat.map(fmt_unix)],
    );
    let _ = inst.save();
    let files = inst
        .state
        .db(&name)
        .map(|m| m.files.clone())
        .unwrap_or_default();
    drop(inst);
    if let Some(step) = o.stats {
        let mut p = step;
        while p < 100 {
            ctx.info(3211, &format!("{p} percent processed."));
            p += step;
        }
    }
    for f in &files {
        if o.kind == "LOG" && !f.is_log {
            continue;
        }
        let n = if f.is_log { 2 } else { pages };
        ctx.info(
            4035,
            &format!(
                "Processed {n} pages for database '{name}', file '{}' on file {}.",
                f.logical, o.file
            ),
        );
    }
    if o.stats.is_some() {
        ctx.info(3211, "100 percent processed.");
    }
    let secs = started.elapsed().as_secs_f64().max(0.001);
    let label = what;
    ctx.info(
        3014,
        &format!(
            "{label} successfully processed {} pages in {secs:.3} seconds ({:.3} MB/sec).",
            pages + 2,
            (pages * 8192) as f64 / 1_048_576.0 / secs
        ),
    );
    Ok(Outcome::default())
}

/// The `corrupt_restore` fault: one byte of the restored database's first data
/// page flipped on disk, as a failing staging disk would leave it. The page's
/// checksum no longer matches, which DBCC CHECKDB reports (8928, 8939).
fn corrupt_if_asked(inst: &mut crate::simulator::engine::Instance, db: &str) {
    if !inst.state.faults.corrupt_restore {
        return;
    }
    let Some(path) = inst
        .state
        .db(db)
        .and_then(|m| m.data_file())
        .map(|f| f.physical.clone())
    else {
        return;
    };
    let page = crate::simulator::engine::pages::PAGE_SIZE;
    if let Ok(mut bytes) = std::fs::read(&path) {
        if bytes.len() >= 2 * page {
            bytes[page + crate::simulator::engine::pages::HEADER + 7] ^= 0x5a;
            let _ = std::fs::write(&path, &bytes);
        }
    }
}

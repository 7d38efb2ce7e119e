//! Putting a backup set onto a database: a full (new files, pages laid out), a
//! differential (changed pages over the full) or a log (records replayed up to
//! STOPAT), with the chain checks by LSN of sqlserver.md.

use std::collections::HashMap;
use std::path::Path;

use super::Opts;
use crate::simulator::backup_media::{SetHeader, SetPayload};
use crate::simulator::engine::pages::DataFile;
use crate::simulator::engine::state::{DbMeta, FileMeta, RestoreProgress};
use crate::simulator::engine::Instance;
use crate::simulator::sql::SqlError;

/// Applies the set `h` (read with `payload`) to database `o.db`, or says why not.
/// Returns the pages processed and the database's name.
pub(super) fn apply(
    inst: &mut Instance,
    o: &Opts,
    h: &SetHeader,
    payload: &SetPayload,
    in_use: bool,
) -> Result<(usize, String), Vec<SqlError>> {
    let existing = inst.state.db(&o.db).cloned();
    match (o.kind.as_str(), h.backup_type) {
        ("DATABASE", 1) => full(inst, o, h, payload, existing, in_use),
        ("DATABASE", 5) => differential(inst, h, payload, existing),
        ("LOG", 2) => log(inst, o, h, payload, existing),
        (_, t) => {
            let made = if t == 2 {
                "BACKUP LOG"
            } else {
                "BACKUP DATABASE"
            };
            Err(vec![SqlError::new(3135, format!("The backup set in file '{}' was created by {made} and cannot be used for this restore operation.", o.disks[0]))])
        }
    }
}

/// A full backup: checks 3154/3159/3101, MOVE (3234, 5133/3156, 1834/3156), new files.
fn full(
    inst: &mut Instance,
    o: &Opts,
    h: &SetHeader,
    payload: &SetPayload,
    existing: Option<DbMeta>,
    in_use: bool,
) -> Result<(usize, String), Vec<SqlError>> {
    if let Some(m) = &existing {
        if !o.replace {
            if !m.guid.eq_ignore_ascii_case(&h.database_guid)
                || !m.name.eq_ignore_ascii_case(&h.database_name)
            {
                return Err(vec![SqlError::new(3154, format!("The backup set holds a backup of a database other than the existing '{}' database.", m.name))]);
            }
            if m.state == "ONLINE"
                && m.recovery_model != "SIMPLE"
                && m.log_chain_lsn.is_some_and(|l| m.lsn > l)
            {
                return Err(vec![SqlError::new(3159, format!("The tail of the log for the database \"{}\" has not been backed up. Use BACKUP LOG WITH NORECOVERY to backup the log if it contains work you do not want to lose. Use the WITH REPLACE or WITH STOPAT clause of the RESTORE statement to just overwrite the contents of the log.", m.name))]);
            }
        }
        if in_use {
            return Err(vec![SqlError::new(
                3101,
                "Exclusive access could not be obtained because the database is in use.",
            )]);
        }
    }
    let moves: HashMap<String, String> = o
        .moves
        .iter()
        .map(|(l, p)| (l.to_ascii_lowercase(), p.clone()))
        .collect();
    for (l, _) in &o.moves {
        if !h.files.iter().any(|f| f.logical.eq_ignore_ascii_case(l)) {
            return Err(vec![SqlError::new(3234, format!("Logical file '{l}' is not part of database '{}'. Use RESTORE FILELISTONLY to list the logical file names.", h.database_name))]);
        }
    }
    let mut files = Vec::new();
    for f in &h.files {
        let phys = moves
            .get(&f.logical.to_ascii_lowercase())
            .cloned()
            .unwrap_or_else(|| f.physical.clone());
        let parent = Path::new(&phys)
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        if !parent.as_os_str().is_empty() && !parent.is_dir() {
            return Err(vec![
                    SqlError::new(5133, format!("Directory lookup for the file \"{phys}\" failed with the operating system error 3(The system cannot find the path specified.).")),
                    SqlError::new(3156, format!("File '{}' cannot be restored to '{phys}'. Use WITH MOVE to identify a valid location for the file.", f.logical)),
                ]);
        }
        if let Some(owner) = inst.state.databases.iter().find(|d| {
            !d.name.eq_ignore_ascii_case(&o.db) && d.files.iter().any(|x| x.physical == phys)
        }) {
            return Err(vec![
                    SqlError::new(1834, format!("The file '{phys}' cannot be overwritten.  It is being used by database '{}'.", owner.name)),
                    SqlError::new(3156, format!("File '{}' cannot be restored to '{phys}'. Use WITH MOVE to identify a valid location for the file.", f.logical)),
                ]);
        }
        files.push(FileMeta {
            file_id: f.file_id,
            logical: f.logical.clone(),
            physical: phys,
            is_log: f.kind == "L",
            growth: if f.kind == "L" { 10 } else { 8192 },
            is_percent_growth: f.kind == "L",
            max_size: -1,
        });
    }
    let mut df = DataFile::default();
    df.replace_pages(h.total_pages as usize, &payload.pages);
    let id = existing.as_ref().map(|m| m.database_id).unwrap_or_else(|| {
        let i = inst.state.next_database_id;
        inst.state.next_database_id += 1;
        i
    });
    let next_ids = next_ids_of(&df);
    let meta = DbMeta {
        name: existing
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_else(|| o.db.clone()),
        database_id: id,
        guid: h.database_guid.clone(),
        fork_guid: h.fork_guid.clone(),
        // A full restore creates the database now, as sys.databases then shows it.
        create_date: inst.now_unix(),
        state: "RESTORING".into(),
        recovery_model: h.recovery_model.replace('-', "_"),
        files,
        lsn: h.last_lsn,
        checkpoint_lsn: h.checkpoint_lsn,
        diff_base: None,
        log_chain_lsn: None,
        log_truncated_lsn: h.last_lsn,
        restore: Some(RestoreProgress {
            last_lsn: h.last_lsn,
            full_checkpoint_lsn: h.checkpoint_lsn,
            full_guid: h.backup_set_guid.clone(),
            stopped: false,
        }),
        next_ids,
    };
    inst.state
        .databases
        .retain(|d| !d.name.eq_ignore_ascii_case(&o.db));
    inst.unload(&o.db);
    inst.write_files(&meta, &mut df, &[])
        .map_err(|e| vec![SqlError::new(3203, e.to_string())])?;
    let name = meta.name.clone();
    inst.state.databases.push(meta);
    inst.set_data_file(&name, df)
        .map_err(|e| vec![SqlError::new(3203, e.to_string())])?;
    Ok((payload.pages.len(), name))
}

/// A differential over the restored full (3117, 3136).
fn differential(
    inst: &mut Instance,
    h: &SetHeader,
    payload: &SetPayload,
    existing: Option<DbMeta>,
) -> Result<(usize, String), Vec<SqlError>> {
    let Some(m) = existing.clone().filter(|m| m.state == "RESTORING") else {
        return Err(vec![SqlError::new(3117, "The log or differential backup cannot be restored because no files are ready to rollforward.")]);
    };
    let rp = m.restore.clone().ok_or_else(Vec::new)?;
    if rp.full_checkpoint_lsn != h.database_backup_lsn || rp.last_lsn > h.last_lsn {
        return Err(vec![SqlError::new(3136, "This differential backup cannot be restored because the database has not been restored to the correct earlier state.")]);
    }
    let mut df = inst
        .data_file(&m.name)
        .map_err(|e| vec![SqlError::new(3203, e.to_string())])?
        .clone();
    df.replace_pages(h.total_pages as usize, &payload.pages);
    let next = next_ids_of(&df);
    inst.set_data_file(&m.name, df)
        .map_err(|e| vec![SqlError::new(3203, e.to_string())])?;
    if let Some(mm) = inst.state.db_mut(&m.name) {
        mm.lsn = h.last_lsn;
        mm.next_ids = next;
        if let Some(r) = mm.restore.as_mut() {
            r.last_lsn = h.last_lsn;
        }
    }
    Ok((payload.pages.len(), m.name))
}

/// A log backup that continues the chain (3117, 4305, 4326), replayed up to STOPAT.
fn log(
    inst: &mut Instance,
    o: &Opts,
    h: &SetHeader,
    payload: &SetPayload,
    existing: Option<DbMeta>,
) -> Result<(usize, String), Vec<SqlError>> {
    let Some(m) = existing.clone().filter(|m| m.state == "RESTORING") else {
        return Err(vec![SqlError::new(3117, "The log or differential backup cannot be restored because no files are ready to rollforward.")]);
    };
    let rp = m.restore.clone().ok_or_else(Vec::new)?;
    if h.first_lsn > rp.last_lsn {
        return Err(vec![SqlError::new(4305, format!("The log in this backup set begins at LSN {}, which is too recent to apply to the database. An earlier log backup that includes LSN {} can be restored.", h.first_lsn, rp.last_lsn))]);
    }
    if h.last_lsn <= rp.last_lsn || rp.stopped {
        return Err(vec![SqlError::new(4326, format!("The log in this backup set terminates at LSN {}, which is too early to apply to the database. A more recent log backup that includes LSN {} can be restored.", h.last_lsn, rp.last_lsn))]);
    }
    let mut df = inst
        .data_file(&m.name)
        .map_err(|e| vec![SqlError::new(3203, e.to_string())])?
        .clone();
    let mut applied = rp.last_lsn;
    let mut stopped = false;
    for r in payload.log.iter().filter(|r| r.lsn >= rp.last_lsn) {
        if o.stopat.is_some_and(|s| r.time > s) {
            stopped = true;
            break;
        }
        df.apply(&r.op, r.lsn);
        applied = r.lsn + 1;
    }
    if !stopped {
        applied = h.last_lsn;
    }
    let next = next_ids_of(&df);
    inst.set_data_file(&m.name, df)
        .map_err(|e| vec![SqlError::new(3203, e.to_string())])?;
    if let Some(mm) = inst.state.db_mut(&m.name) {
        mm.lsn = applied;
        mm.next_ids = next;
        if let Some(r) = mm.restore.as_mut() {
            r.last_lsn = applied;
            r.stopped = stopped;
        }
    }
    Ok(((payload.log.len() / 60).max(1), m.name))
}

fn next_ids_of(df: &DataFile) -> [i64; 4] {
    let mut ids = [1i64; 4];
    for (k, obj) in [101u32, 102, 103, 104].iter().enumerate() {
        let max = df
            .rows(*obj)
            .filter_map(|r| r.split('\t').next()?.parse::<i64>().ok())
            .max()
            .unwrap_or(0);
        ids[k] = max + 1;
    }
    ids
}

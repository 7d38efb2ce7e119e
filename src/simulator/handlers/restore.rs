//! RESTORE HEADERONLY / FILELISTONLY / VERIFYONLY / DATABASE / LOG, with SQL
//! Server's checks and errors (3154, 3156, 3159, 3101, 3117, 3136, 4305, 4326,
//! 3241, 3189, 3201), each followed by 3013; MOVE, REPLACE, NORECOVERY, RECOVERY,
//! STOPAT; the LSN chain rules of sqlserver.md.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use super::{fail, media_error};
use crate::simulator::backup_media::{read_headers, read_set, verify, SetHeader};
use crate::simulator::engine::pages::{DataFile, Page};
use crate::simulator::engine::state::{DbMeta, FileMeta, RestoreProgress};
use crate::simulator::session::{Ctx, Outcome};
use crate::simulator::sql::lexer::Tok;
use crate::simulator::sql::{fmt_unix, Parser, SqlError, StmtError};
use crate::simulator::tds::token::Column;
use crate::simulator::tds::types::{parse_datetime, SqlType, Value};

#[derive(Debug, Default)]
struct Opts {
    kind: String,
    db: String,
    disks: Vec<String>,
    file: i64,
    moves: Vec<(String, String)>,
    replace: bool,
    norecovery: bool,
    checksum: bool,
    stats: Option<i64>,
    stopat: Option<i64>,
}

fn parse(ctx: &Ctx<'_>, t: &[Tok]) -> Result<Opts, SqlError> {
    let mut p = Parser::new(t);
    let mut o = Opts {
        file: 1,
        ..Default::default()
    };
    p.expect_kw("RESTORE")?;
    let k = p
        .peek()
        .and_then(|t| t.ident())
        .map(|s| s.to_ascii_uppercase())
        .ok_or_else(|| SqlError::near(p.peek()))?;
    p.i += 1;
    o.kind = k.clone();
    match k.as_str() {
        "DATABASE" | "LOG" => o.db = p.ident(&ctx.params)?,
        "HEADERONLY" | "FILELISTONLY" | "VERIFYONLY" | "LABELONLY" => {}
        _ => return Err(SqlError::syntax(&k)),
    }
    if p.eat_kw("FROM") {
        loop {
            if !p.eat_kw("DISK") {
                return Err(SqlError::near(p.peek()));
            }
            p.expect_sym("=")?;
            o.disks.push(p.string(&ctx.params)?);
            if !p.eat_sym(",") {
                break;
            }
        }
    } else if o.kind != "DATABASE" && o.kind != "LOG" {
        return Err(SqlError::near(p.peek()));
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
                "FILE" => {
                    p.expect_sym("=")?;
                    o.file = p.number(&ctx.params)?;
                }
                "MOVE" => {
                    let l = p.string(&ctx.params)?;
                    p.expect_kw("TO")?;
                    o.moves.push((l, p.string(&ctx.params)?));
                }
                "REPLACE" => o.replace = true,
                "NORECOVERY" => o.norecovery = true,
                "RECOVERY" => o.norecovery = false,
                "CHECKSUM" => o.checksum = true,
                "NO_CHECKSUM"
                | "NOUNLOAD"
                | "UNLOAD"
                | "REWIND"
                | "NOREWIND"
                | "LOADHISTORY"
                | "CONTINUE_AFTER_ERROR"
                | "STOP_ON_ERROR"
                | "KEEP_REPLICATION" => {}
                "STATS" => {
                    o.stats = Some(if p.eat_sym("=") {
                        p.number(&ctx.params)?.clamp(1, 100)
                    } else {
                        10
                    })
                }
                "STOPAT" => {
                    p.expect_sym("=")?;
                    let s = p.string(&ctx.params)?;
                    let d = parse_datetime(&s).ok_or_else(|| SqlError::new(241, "Conversion failed when converting date and/or time from character string."))?;
                    o.stopat = Some(d.assume_utc().unix_timestamp());
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

/// Runs a RESTORE statement.
pub async fn run(ctx: &mut Ctx<'_>, t: &[Tok]) -> Result<Outcome, StmtError> {
    let o = parse(ctx, t)?;
    match o.kind.as_str() {
        "HEADERONLY" | "LABELONLY" => headeronly(ctx, &o),
        "FILELISTONLY" => filelistonly(ctx, &o),
        "VERIFYONLY" => verifyonly(ctx, &o),
        _ => restore(ctx, &o),
    }
}

fn dt(secs: i64) -> Value {
    Value::Str(fmt_unix(secs))
}

fn opt_guid(s: &str) -> Value {
    if s.is_empty() {
        Value::Null
    } else {
        Value::Str(s.to_string())
    }
}

fn headeronly(ctx: &mut Ctx<'_>, o: &Opts) -> Result<Outcome, StmtError> {
    let path = o.disks.first().cloned().unwrap_or_default();
    let sets = match read_headers(Path::new(&path)) {
        Ok(s) => s,
        Err(e) => return Ok(fail(ctx, &[media_error(&e, &path)], "RESTORE HEADERONLY")),
    };
    use SqlType::*;
    let cols: Vec<Column> = [
        ("BackupName", NVarChar(128)),
        ("BackupDescription", NVarChar(255)),
        ("BackupType", SmallInt),
        ("ExpirationDate", DateTime),
        ("Compressed", Bit),
        ("Position", SmallInt),
        ("DeviceType", TinyInt),
        ("UserName", NVarChar(128)),
        ("ServerName", NVarChar(128)),
        ("DatabaseName", NVarChar(128)),
        ("DatabaseVersion", Int),
        ("DatabaseCreationDate", DateTime),
        ("BackupSize", Numeric(20, 0)),
        ("FirstLSN", Numeric(25, 0)),
        ("LastLSN", Numeric(25, 0)),
        ("CheckpointLSN", Numeric(25, 0)),
        ("DatabaseBackupLSN", Numeric(25, 0)),
        ("BackupStartDate", DateTime),
        ("BackupFinishDate", DateTime),
        ("SortOrder", SmallInt),
        ("CodePage", SmallInt),
        ("UnicodeLocaleId", Int),
        ("UnicodeComparisonStyle", Int),
        ("CompatibilityLevel", TinyInt),
        ("SoftwareVendorId", Int),
        ("SoftwareVersionMajor", Int),
        ("SoftwareVersionMinor", Int),
        ("SoftwareVersionBuild", Int),
        ("MachineName", NVarChar(128)),
        ("Flags", Int),
        ("BindingID", Guid),
        ("RecoveryForkID", Guid),
        ("Collation", NVarChar(128)),
        ("FamilyGUID", Guid),
        ("HasBulkLoggedData", Bit),
        ("IsSnapshot", Bit),
        ("IsReadOnly", Bit),
        ("IsSingleUser", Bit),
        ("HasBackupChecksums", Bit),
        ("IsDamaged", Bit),
        ("BeginsLogChain", Bit),
        ("HasIncompleteMetaData", Bit),
        ("IsForceOffline", Bit),
        ("IsCopyOnly", Bit),
        ("FirstRecoveryForkID", Guid),
        ("ForkPointLSN", Numeric(25, 0)),
        ("RecoveryModel", NVarChar(60)),
        ("DifferentialBaseLSN", Numeric(25, 0)),
        ("DifferentialBaseGUID", Guid),
        ("BackupTypeDescription", NVarChar(60)),
        ("BackupSetGUID", Guid),
        ("CompressedBackupSize", Numeric(20, 0)),
        ("Containment", TinyInt),
        ("KeyAlgorithm", NVarChar(32)),
        ("EncryptorThumbprint", VarBinary(20)),
        ("EncryptorType", NVarChar(32)),
    ]
    .into_iter()
    .map(|(n, t)| Column::new(n, t))
    .collect();
    let rows: Vec<Vec<Value>> = sets
        .iter()
        .map(|h| {
            let flags =
                512 | if h.has_checksums { 16 } else { 0 } | if h.copy_only { 1024 } else { 0 };
            let desc = match h.backup_type {
                2 => "Transaction Log",
                5 => "Database Differential",
                _ => "Database",
            };
            vec![
                if h.name.is_empty() {
                    Value::Null
                } else {
                    Value::Str(h.name.clone())
                },
                if h.description.is_empty() {
                    Value::Null
                } else {
                    Value::Str(h.description.clone())
                },
                Value::Int(h.backup_type),
                Value::Null,
                Value::Int(h.compressed as i64),
                Value::Int(h.position),
                Value::Int(2),
                Value::Str(h.user_name.clone()),
                Value::Str(h.server_name.clone()),
                Value::Str(h.database_name.clone()),
                Value::Int(904),
                dt(h.creation_date),
                Value::Int(h.backup_size),
                Value::Int(h.first_lsn),
                Value::Int(h.last_lsn),
                Value::Int(h.checkpoint_lsn),
                Value::Int(h.database_backup_lsn),
                dt(h.start),
                dt(h.finish),
                Value::Int(52),
                Value::Int(0),
                Value::Int(1033),
                Value::Int(196609),
                Value::Int(150),
                Value::Int(4608),
                Value::Int(15),
                Value::Int(0),
                Value::Int(4355),
                Value::Str(h.machine_name.clone()),
                Value::Int(flags),
                Value::Str(h.database_guid.clone()),
                Value::Str(h.fork_guid.clone()),
                Value::Str("SQL_Latin1_General_CP1_CI_AS".into()),
                Value::Str(h.family_guid.clone()),
                Value::Int(0),
                Value::Int(0),
                Value::Int(0),
                Value::Int(0),
                Value::Int(h.has_checksums as i64),
                Value::Int(0),
                Value::Int(0),
                Value::Int(0),
                Value::Int(0),
                Value::Int(h.copy_only as i64),
                Value::Str(h.fork_guid.clone()),
                Value::Null,
                Value::Str(h.recovery_model.clone()),
                if h.diff_base_lsn == 0 {
                    Value::Null
                } else {
                    Value::Int(h.diff_base_lsn)
                },
                opt_guid(&h.diff_base_guid),
                Value::Str(desc.into()),
                Value::Str(h.backup_set_guid.clone()),
                Value::Int(h.compressed_size),
                Value::Int(0),
                Value::Null,
                Value::Null,
                Value::Null,
            ]
        })
        .collect();
    ctx.rows(&cols, &rows);
    Ok(Outcome {
        count: Some(rows.len() as u64),
        error: false,
    })
}

fn find_set(ctx: &mut Ctx<'_>, o: &Opts, what: &str) -> Result<SetHeader, Outcome> {
    let path = o.disks.first().cloned().unwrap_or_default();
    match read_headers(Path::new(&path)) {
        Err(e) => Err(fail(ctx, &[media_error(&e, &path)], what)),
        Ok(sets) => match sets.into_iter().find(|s| s.position == o.file) {
            Some(s) => Ok(s),
            None => Err(fail(
                ctx,
                &[media_error(
                    &crate::simulator::backup_media::MediaError::NoSet(o.file),
                    &path,
                )],
                what,
            )),
        },
    }
}

fn filelistonly(ctx: &mut Ctx<'_>, o: &Opts) -> Result<Outcome, StmtError> {
    let h = match find_set(ctx, o, "RESTORE FILELIST") {
        Ok(h) => h,
        Err(out) => return Ok(out),
    };
    use SqlType::*;
    let cols: Vec<Column> = [
        ("LogicalName", NVarChar(128)),
        ("PhysicalName", NVarChar(260)),
        ("Type", Char(1)),
        ("FileGroupName", NVarChar(128)),
        ("Size", Numeric(20, 0)),
        ("MaxSize", Numeric(20, 0)),
        ("FileID", BigInt),
        ("CreateLSN", Numeric(25, 0)),
        ("DropLSN", Numeric(25, 0)),
        ("UniqueID", Guid),
        ("ReadOnlyLSN", Numeric(25, 0)),
        ("ReadWriteLSN", Numeric(25, 0)),
        ("BackupSizeInBytes", Numeric(20, 0)),
        ("SourceBlockSize", Int),
        ("FileGroupID", Int),
        ("LogGroupGUID", Guid),
        ("DifferentialBaseLSN", Numeric(25, 0)),
        ("DifferentialBaseGUID", Guid),
        ("IsReadOnly", Bit),
        ("IsPresent", Bit),
        ("TDEThumbprint", VarBinary(32)),
        ("SnapshotURL", NVarChar(360)),
    ]
    .into_iter()
    .map(|(n, t)| Column::new(n, t))
    .collect();
    let rows: Vec<Vec<Value>> = h
        .files
        .iter()
        .map(|f| {
            let data = f.kind == "D";
            vec![
                Value::Str(f.logical.clone()),
                Value::Str(f.physical.clone()),
                Value::Str(f.kind.clone()),
                if data {
                    Value::Str("PRIMARY".into())
                } else {
                    Value::Null
                },
                Value::Int(f.size),
                Value::Int(35_184_372_080_640),
                Value::Int(f.file_id),
                Value::Int(0),
                Value::Int(0),
                Value::Str(h.database_guid.clone()),
                Value::Int(0),
                Value::Int(0),
                Value::Int(if data { h.backup_size } else { 0 }),
                Value::Int(512),
                Value::Int(if data { 1 } else { 0 }),
                Value::Null,
                if data && h.diff_base_lsn != 0 {
                    Value::Int(h.diff_base_lsn)
                } else {
                    Value::Int(0)
                },
                opt_guid(&h.diff_base_guid),
                Value::Int(0),
                Value::Int(1),
                Value::Null,
                Value::Null,
            ]
        })
        .collect();
    ctx.rows(&cols, &rows);
    Ok(Outcome {
        count: Some(rows.len() as u64),
        error: false,
    })
}

fn verifyonly(ctx: &mut Ctx<'_>, o: &Opts) -> Result<Outcome, StmtError> {
    for path in &o.disks {
        match verify(Path::new(path), o.file) {
            Ok(h) if o.checksum && !h.has_checksums => {
                return Ok(fail(ctx, &[SqlError::new(3187, "RESTORE WITH CHECKSUM cannot be specified because the backup set does not contain checksum information.")], "VERIFY DATABASE"))
            }
            Ok(_) => {}
            Err(e) => return Ok(fail(ctx, &[media_error(&e, path)], "VERIFY DATABASE")),
        }
    }
    ctx.info(
        3262,
        &format!("The backup set on file {} is valid.", o.file),
    );
    Ok(Outcome::default())
}

fn restore(ctx: &mut Ctx<'_>, o: &Opts) -> Result<Outcome, StmtError> {
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
    let existing = inst.state.db(&o.db).cloned();
    let res: Result<(usize, String), Vec<SqlError>> = (|| match (o.kind.as_str(), h.backup_type) {
        ("DATABASE", 1) => {
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
                    !d.name.eq_ignore_ascii_case(&o.db)
                        && d.files.iter().any(|x| x.physical == phys)
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
            let mut pages: Vec<Page> = vec![
                Page {
                    obj_id: 0,
                    lsn: 0,
                    rows: Vec::new()
                };
                h.total_pages as usize
            ];
            for (id, p) in &payload.pages {
                if let Some(slot) = pages.get_mut(*id as usize) {
                    *slot = p.clone();
                }
            }
            let df = DataFile { pages };
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
                create_date: h.creation_date,
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
            inst.write_files(&meta, &df, &[])
                .map_err(|e| vec![SqlError::new(3203, e.to_string())])?;
            let name = meta.name.clone();
            inst.state.databases.push(meta);
            inst.set_data_file(&name, df)
                .map_err(|e| vec![SqlError::new(3203, e.to_string())])?;
            Ok((payload.pages.len(), name))
        }
        ("DATABASE", 5) => {
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
            df.pages.resize(
                h.total_pages as usize,
                Page {
                    obj_id: 0,
                    lsn: 0,
                    rows: Vec::new(),
                },
            );
            for (id, p) in &payload.pages {
                if let Some(slot) = df.pages.get_mut(*id as usize) {
                    *slot = p.clone();
                }
            }
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
        ("LOG", 2) => {
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
        (_, t) => {
            let made = if t == 2 {
                "BACKUP LOG"
            } else {
                "BACKUP DATABASE"
            };
            Err(vec![SqlError::new(3135, format!("The backup set in file '{}' was created by {made} and cannot be used for this restore operation.", o.disks[0]))])
        }
    })();
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

//! The small statements: DBCC CHECKDB (page checksums of the data file), DROP /
//! CREATE / ALTER DATABASE, USE (with its ENVCHANGE), and SET/DECLARE/PRINT, which
//! the simulator accepts without effect.

use super::super::sql::lexer::Tok;
use super::super::sql::{Parser, SqlError, StmtError};
use crate::simulator::engine::pages::DataFile;
use crate::simulator::session::{Ctx, Outcome};
use crate::simulator::tds::token;

/// DBCC CHECKDB [(db)] [WITH ...].
pub fn dbcc(ctx: &mut Ctx<'_>, t: &[Tok]) -> Result<Outcome, StmtError> {
    let mut p = Parser::new(t);
    p.expect_kw("DBCC")?;
    if !p.eat_kw("CHECKDB") {
        let w = p.peek().map(|t| t.display()).unwrap_or_default();
        return Err(SqlError::new(2526, format!("Incorrect DBCC statement. Check the documentation for the correct DBCC syntax and options. ({w})")).into());
    }
    let mut db = ctx.db.clone();
    if p.eat_sym("(") {
        db = match p.peek() {
            Some(Tok::Str(s, _)) => {
                p.i += 1;
                s.clone()
            }
            _ => p.ident(&ctx.params)?,
        };
        while !p.eat_sym(")") {
            if p.done() {
                return Err(SqlError::near(None).into());
            }
            p.i += 1;
        }
    }
    let no_info = t.iter().any(|x| x.is_kw("NO_INFOMSGS"));
    let result = {
        let inst = ctx.shared.lock();
        match inst.state.db(&db) {
            None => Err(SqlError::new(2520, format!("Could not find database '{db}'. The database either does not exist, or was dropped before a statement tried to use it. Verify if the database exists by querying the sys.databases catalog view."))),
            Some(m) if m.state != "ONLINE" => Err(SqlError::new(922, format!("Database '{}' is being recovered. Waiting until recovery is finished.", m.name))),
            Some(m) => {
                let path = m.data_file().map(|f| f.physical.clone()).unwrap_or_default();
                match std::fs::read(&path) {
                    Ok(bytes) if !bytes.is_empty() => Ok((m.name.clone(), DataFile::damaged_pages(&bytes))),
                    _ => Err(SqlError::new(5120, format!("Unable to open the physical file \"{path}\". Operating system error 2: \"2(The system cannot find the file specified.)\"."))),
                }
            }
        }
    };
    let (name, damaged) = result?;
    if damaged.is_empty() {
        if !no_info {
            ctx.info0(8989, &format!("CHECKDB found 0 allocation errors and 0 consistency errors in database '{name}'."));
        }
        return Ok(Outcome::default());
    }
    // As SQL Server reports a page whose checksum fails: 8928 (the page could not
    // be processed) and 8939 (the test that failed) per page, a per-table and a
    // per-database summary, and the minimum repair level.
    let mut per_table: std::collections::BTreeMap<u32, usize> = Default::default();
    for (page, obj, what) in &damaged {
        let (obj, partition, alloc) = ids(*obj);
        ctx.error(8928, 16, &format!("Object ID {obj}, index ID 0, partition ID {partition}, alloc unit ID {alloc} (type In-row data): Page (1:{page}) could not be processed.  See other errors for details."));
        ctx.error(8939, 16, &format!("Table error: Object ID {obj}, index ID 0, partition ID {partition}, alloc unit ID {alloc} (type In-row data), page (1:{page}). Test (IS_OFF (BUF_IOERR, pBUF->bstat)) failed. Values are 133129 and -4. ({what})"));
        *per_table.entry(obj).or_default() += 2;
    }
    for (obj, n) in &per_table {
        let table = crate::simulator::engine::pages::TABLES
            .iter()
            .find(|t| t.obj_id == *obj)
            .map_or("unknown", |t| t.name);
        ctx.info0(8990, &format!("CHECKDB found 0 allocation errors and {n} consistency errors in table '{table}' (object ID {obj})."));
    }
    let total: usize = per_table.values().sum();
    ctx.error(8989, 16, &format!("CHECKDB found 0 allocation errors and {total} consistency errors in database '{name}'."));
    ctx.error(8958, 16, &format!("repair_allow_data_loss is the minimum repair level for the errors found by DBCC CHECKDB ({name})."));
    Ok(Outcome {
        count: None,
        error: true,
    })
}

/// Object, partition and allocation unit ids as SQL Server numbers them for an
/// object's in-row data (a page whose header is damaged names object 0).
fn ids(obj: u32) -> (u32, u64, u64) {
    let base = 72_057_594_037_927_936u64;
    (
        obj,
        base + u64::from(obj) * 65_536,
        base + u64::from(obj) * 65_536 + 1_048_576,
    )
}

/// DROP DATABASE, CREATE DATABASE, ALTER DATABASE ... SET RECOVERY.
pub fn ddl(ctx: &mut Ctx<'_>, t: &[Tok]) -> Result<Outcome, StmtError> {
    let mut p = Parser::new(t);
    let verb = t[0].display().to_ascii_uppercase();
    p.i = 1;
    p.expect_kw("DATABASE")?;
    let mut names = vec![p.ident(&ctx.params)?];
    let mut inst = ctx.shared.lock();
    match verb.as_str() {
        "DROP" => {
            while p.eat_sym(",") {
                names.push(p.ident(&ctx.params)?);
            }
            if !p.done() {
                return Err(SqlError::near(p.peek()).into());
            }
            for n in names {
                let Some(m) = inst.state.db(&n).cloned() else {
                    return Err(SqlError::new(3701, format!("Cannot drop the database '{n}', because it does not exist or you do not have permission.")).into());
                };
                if inst
                    .sessions
                    .iter()
                    .any(|(s, i)| *s != ctx.spid && i.database.eq_ignore_ascii_case(&n))
                    || ctx.db.eq_ignore_ascii_case(&n)
                {
                    return Err(SqlError::new(
                        3702,
                        format!(
                            "Cannot drop database \"{}\" because it is currently in use.",
                            m.name
                        ),
                    )
                    .into());
                }
                for f in &m.files {
                    let _ = std::fs::remove_file(&f.physical);
                }
                inst.state
                    .databases
                    .retain(|d| d.database_id != m.database_id);
                inst.unload(&m.name);
            }
        }
        "CREATE" => {
            if !p.done() {
                return Err(SqlError::near(p.peek()).into());
            }
            if inst.state.db(&names[0]).is_some() {
                return Err(SqlError::new(
                    1801,
                    format!(
                        "Database '{}' already exists. Choose a different database name.",
                        names[0]
                    ),
                )
                .into());
            }
            inst.create_database(&names[0], false)
                .map_err(|e| SqlError::new(5123, e.to_string()))?;
        }
        _ => {
            p.expect_kw("SET")?;
            let single = p.eat_kw("SINGLE_USER");
            if single || p.eat_kw("MULTI_USER") {
                let Some(m) = inst.state.db(&names[0]) else {
                    return Err(SqlError::new(5011, format!("User does not have permission to alter database '{}', the database does not exist, or the database is not in a state that allows access checks.", names[0])).into());
                };
                if m.state == "RESTORING" {
                    return Err(SqlError::new(5052, format!("ALTER DATABASE is not permitted while a database is in the Restoring state. ({})", m.name)).into());
                }
                if !single {
                    return Ok(Outcome::default());
                }
                // SINGLE_USER WITH ROLLBACK IMMEDIATE: every other session in the
                // database is ended, as SQL Server does, and holds it no longer.
                let name = m.name.clone();
                let others: Vec<u16> = inst
                    .sessions
                    .iter_mut()
                    .filter(|(s, i)| **s != ctx.spid && i.database.eq_ignore_ascii_case(&name))
                    .map(|(s, i)| {
                        i.database = "master".into();
                        *s
                    })
                    .collect();
                drop(inst);
                let switches = ctx.shared.kill_switches();
                for s in others {
                    if let Some(k) = switches.get(&s) {
                        k.cancel.send_replace(true);
                        k.killed.send_replace(true);
                    }
                }
                return Ok(Outcome::default());
            }
            p.expect_kw("RECOVERY")?;
            let model = p
                .peek()
                .and_then(|t| t.ident())
                .map(|s| s.to_ascii_uppercase())
                .unwrap_or_default();
            if !["FULL", "SIMPLE", "BULK_LOGGED"].contains(&model.as_str()) {
                return Err(SqlError::near(p.peek()).into());
            }
            let Some(m) = inst.state.db_mut(&names[0]) else {
                return Err(SqlError::new(5011, format!("User does not have permission to alter database '{}', the database does not exist, or the database is not in a state that allows access checks.", names[0])).into());
            };
            if model == "SIMPLE" {
                m.log_chain_lsn = None;
                m.log_truncated_lsn = m.lsn;
            }
            m.recovery_model = model;
        }
    }
    let _ = inst.save();
    Ok(Outcome::default())
}

/// USE db.
pub fn use_db(ctx: &mut Ctx<'_>, t: &[Tok]) -> Result<Outcome, StmtError> {
    let mut p = Parser::new(t);
    p.i = 1;
    let name = p.ident(&ctx.params)?;
    let found = {
        let inst = ctx.shared.lock();
        match ["master", "msdb", "tempdb", "model"]
            .iter()
            .find(|s| s.eq_ignore_ascii_case(&name))
        {
            Some(s) => Some(s.to_string()),
            None => inst
                .state
                .db(&name)
                .filter(|d| d.state == "ONLINE")
                .map(|d| d.name.clone()),
        }
    };
    let Some(found) = found else {
        return Err(SqlError::new(
            911,
            format!(
                "Database '{name}' does not exist. Make sure that the name is entered correctly."
            ),
        )
        .into());
    };
    let old = std::mem::replace(&mut ctx.db, found.clone());
    token::envchange_str(1, &found, &old, &mut ctx.out);
    ctx.info0(5701, &format!("Changed database context to '{found}'."));
    Ok(Outcome::default())
}

/// SET / DECLARE / PRINT: accepted; PRINT sends its text.
pub fn set(ctx: &mut Ctx<'_>, t: &[Tok]) -> Result<Outcome, StmtError> {
    if t[0].is_kw("PRINT") {
        if let Some(Tok::Str(s, _)) = t.get(1) {
            ctx.info0(0, s);
        }
    }
    Ok(Outcome::default())
}

/// KILL session_id: cancels what the session runs (a BACKUP undoes its partial file)
/// and closes its connection, with SQL Server's errors for the sessions it refuses.
pub fn kill(ctx: &mut Ctx<'_>, t: &[Tok]) -> Result<Outcome, StmtError> {
    let mut p = Parser::new(t);
    p.expect_kw("KILL")?;
    let target = p.number(&ctx.params)?;
    if !p.done() {
        return Err(SqlError::near(p.peek()).into());
    }
    if ctx.shared.lock().state.faults.kill_denied {
        return Err(SqlError {
            number: 6102,
            class: 14,
            message: "User does not have permission to use the KILL statement.".into(),
        }
        .into());
    }
    if target == i64::from(ctx.spid) {
        return Err(SqlError::new(6104, "Cannot use KILL to kill your own process.").into());
    }
    if !(51..=i64::from(u16::MAX)).contains(&target) {
        return Err(SqlError::new(6107, "Only user processes can be killed.").into());
    }
    let switch = ctx.shared.kill_switches().get(&(target as u16)).cloned();
    let Some(switch) = switch else {
        return Err(SqlError::new(
            6106,
            format!("Process ID {target} is not an active process ID."),
        )
        .into());
    };
    switch.cancel.send_replace(true);
    switch.killed.send_replace(true);
    Ok(Outcome::default())
}

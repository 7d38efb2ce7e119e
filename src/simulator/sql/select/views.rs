//! The catalog views a SELECT may read, refreshed from the instance before it runs
//! (sys.databases, sys.master_files, sys.dm_* and the Agent's service row), and a
//! user database's tables loaded into an attached in-memory schema.

use super::rewrite::{quote, sqlite_type};
use super::SelectEnv;
use crate::simulator::engine::pages::TABLES;
use crate::simulator::engine::Instance;
use crate::simulator::sql::SqlError;

pub(super) fn refresh_sys(inst: &mut Instance, env: &SelectEnv) -> rusqlite::Result<()> {
    use rusqlite::params;
    let now = crate::simulator::sql::fmt_unix(inst.now_unix());
    let started = crate::simulator::sql::fmt_unix(inst.state.started_at);
    let dbs = inst.state.databases.clone();
    let mut log_usage = Vec::new();
    for d in &dbs {
        let (total, used) = inst.log_bytes(&d.name);
        log_usage.push((d.database_id, total, used));
    }
    let c = &inst.catalog.conn;
    c.execute_batch(
        "DELETE FROM sys.databases; DELETE FROM sys.master_files; DELETE FROM sys.dm_db_log_space_usage;
         DELETE FROM sys.dm_exec_requests; DELETE FROM sys.dm_exec_sessions; DELETE FROM sys.dm_server_services;",
    )?;
    let mut ins_db = c.prepare(
        "INSERT INTO sys.databases VALUES (?1, ?2, NULL, X'01', ?3, 150, 'SQL_Latin1_General_CP1_CI_AS', 0,
          'MULTI_USER', 0, ?4, ?5, ?6, ?7, 2, 'CHECKSUM', ?8, ?9, 0)",
    )?;
    let system = [
        ("master", 1, "SIMPLE"),
        ("tempdb", 2, "SIMPLE"),
        ("model", 3, "FULL"),
        ("msdb", 4, "SIMPLE"),
    ];
    for (n, id, rm) in system {
        ins_db.execute(params![
            n,
            id,
            started,
            0,
            "ONLINE",
            if rm == "FULL" { 1 } else { 3 },
            rm,
            0,
            "NOTHING"
        ])?;
    }
    for d in &dbs {
        let state = match d.state.as_str() {
            "ONLINE" => 0,
            "RESTORING" => 1,
            "RECOVERING" => 2,
            "SUSPECT" => 4,
            _ => 6,
        };
        let rm = match d.recovery_model.as_str() {
            "FULL" => 1,
            "BULK_LOGGED" => 2,
            _ => 3,
        };
        let waits_log = d.recovery_model != "SIMPLE"
            && d.log_chain_lsn.is_some()
            && d.lsn > d.log_truncated_lsn;
        let (w, wd) = if waits_log {
            (2, "LOG_BACKUP")
        } else {
            (0, "NOTHING")
        };
        ins_db.execute(params![
            d.name,
            d.database_id,
            crate::simulator::sql::fmt_unix(d.create_date),
            state,
            d.state,
            rm,
            d.recovery_model,
            w,
            wd
        ])?;
    }
    let mut ins_f = c.prepare("INSERT INTO sys.master_files VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, 'ONLINE', ?9, ?10, ?11, 0, 0, ?12)")?;
    for d in &dbs {
        for f in &d.files {
            let bytes = std::fs::metadata(&f.physical)
                .map(|m| m.len() as i64)
                .unwrap_or(0);
            let pages = if f.is_log {
                (bytes + 8 * 1024 * 1024) / 8192
            } else {
                (bytes + 8191) / 8192
            };
            ins_f.execute(params![
                d.database_id,
                f.file_id,
                crate::simulator::engine::new_guid(),
                if f.is_log { 1 } else { 0 },
                if f.is_log { "LOG" } else { "ROWS" },
                if f.is_log { 0 } else { 1 },
                f.logical,
                f.physical,
                pages,
                f.max_size,
                f.growth,
                f.is_percent_growth as i64
            ])?;
        }
    }
    for (id, total, used) in log_usage {
        c.execute(
            "INSERT INTO sys.dm_db_log_space_usage VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id,
                total,
                used,
                used as f64 * 100.0 / total.max(1) as f64,
                used
            ],
        )?;
    }
    let db_id = |name: &str| -> i64 {
        match name.to_ascii_lowercase().as_str() {
            "master" => 1,
            "tempdb" => 2,
            "model" => 3,
            "msdb" => 4,
            _ => dbs
                .iter()
                .find(|d| d.name.eq_ignore_ascii_case(name))
                .map(|d| d.database_id)
                .unwrap_or(1),
        }
    };
    let now_unix = inst.now_unix() as f64;
    for (spid, s) in &inst.sessions {
        c.execute(
            "INSERT INTO sys.dm_exec_sessions VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1)",
            params![
                *spid as i64,
                now,
                s.host,
                s.program,
                s.login,
                if *spid == env.spid {
                    "running"
                } else {
                    "sleeping"
                },
                db_id(&s.database)
            ],
        )?;
    }
    let mut ins_r = c.prepare(
        "INSERT INTO sys.dm_exec_requests VALUES (?1, 0, ?2, ?3, ?4, ?5, 1, 0, ?6, 0, ?6, ?7, ?8, 0, ?9, 0, 0)",
    )?;
    ins_r.execute(params![
        env.spid as i64,
        now,
        "running",
        "SELECT",
        db_id(env.db),
        Option::<String>::None,
        0.0,
        0,
        0
    ])?;
    for r in inst.requests.values() {
        if r.spid == env.spid {
            continue;
        }
        let elapsed = ((now_unix - r.start) * 1000.0).max(0.0) as i64;
        ins_r.execute(params![
            r.spid as i64,
            crate::simulator::sql::fmt_unix(r.start as i64),
            "suspended",
            r.command,
            r.database_id,
            "BACKUPIO",
            r.percent,
            r.estimated_ms,
            elapsed
        ])?;
    }
    let agent = if inst.state.agent_running {
        (4, "Running")
    } else {
        (1, "Stopped")
    };
    c.execute(
        "INSERT INTO sys.dm_server_services VALUES ('SQL Server (MSSQLSERVER)', 2, 'Automatic', 4, 'Running', 4242, ?1,
           'NT Service\\MSSQLSERVER', '/opt/mssql/bin/sqlservr', 'N', '', 'Y')",
        params![format!("{started} +00:00")],
    )?;
    c.execute(
        "INSERT INTO sys.dm_server_services VALUES ('SQL Server Agent (MSSQLSERVER)', 2, 'Automatic', ?1, ?2, ?3, ?4,
           'NT Service\\SQLSERVERAGENT', '/opt/mssql/bin/sqlagent', 'N', '', 'N')",
        params![agent.0, agent.1, if inst.state.agent_running { 4343 } else { 0 }, format!("{started} +00:00")],
    )?;
    Ok(())
}

pub(super) fn load_user_db(inst: &mut Instance, db: &str) -> Result<(), SqlError> {
    let alias = format!("u_{}", db.to_ascii_lowercase());
    let mut tables = Vec::new();
    for t in TABLES {
        let rows = inst
            .table_rows(db, t.name)
            .map_err(|e| SqlError::new(945, format!("Database '{db}' cannot be opened: {e}")))?;
        tables.push((t, rows));
    }
    let c = &inst.catalog.conn;
    let q = |e: rusqlite::Error| SqlError::new(102, e.to_string());
    c.execute("ATTACH DATABASE ':memory:' AS ?1", [&alias])
        .map_err(q)?;
    for (t, rows) in tables {
        let cols: Vec<String> = t
            .columns
            .iter()
            .map(|(n, ty)| format!("{} {}", quote(n), ty))
            .collect();
        c.execute_batch(&format!(
            "CREATE TABLE {}.{}({});",
            quote(&alias),
            quote(t.name),
            cols.join(", ")
        ))
        .map_err(q)?;
        let ph: Vec<String> = (1..=t.columns.len()).map(|k| format!("?{k}")).collect();
        let mut st = c
            .prepare(&format!(
                "INSERT INTO {}.{} VALUES ({})",
                quote(&alias),
                quote(t.name),
                ph.join(", ")
            ))
            .map_err(q)?;
        for r in rows {
            let vals: Vec<rusqlite::types::Value> = t
                .columns
                .iter()
                .zip(r.iter().chain(std::iter::repeat(&String::new())))
                .map(|((_, ty), v)| {
                    if sqlite_type(ty) == "INTEGER" {
                        v.parse::<i64>()
                            .map(rusqlite::types::Value::Integer)
                            .unwrap_or(rusqlite::types::Value::Null)
                    } else {
                        rusqlite::types::Value::Text(v.clone())
                    }
                })
                .collect();
            st.execute(rusqlite::params_from_iter(vals)).map_err(q)?;
        }
    }
    Ok(())
}

//! SELECT statements, run by SQLite over the catalog: the T-SQL tokens are rewritten
//! to SQLite (`rewrite`: three-part names such as `msdb.dbo.backupset` and
//! `sys.databases` to the attached schemas, `[quoted]` identifiers, `N'strings'`,
//! `TOP n` to `LIMIT`, `@@SPID`, `SERVERPROPERTY`, `CAST`, sp_executesql parameters
//! inlined as literals), the sys views refreshed and user tables of a database loaded
//! on demand (`views`), T-SQL functions registered in SQLite (`functions`), and the
//! results typed here from the declared T-SQL column types so they travel as a real
//! server sends them.

mod functions;
mod rewrite;
mod views;

use std::collections::HashMap;

use rusqlite::types::ValueRef;

use super::lexer::Tok;
use super::SqlError;
use crate::simulator::engine::Instance;
use crate::simulator::tds::token::Column;
use crate::simulator::tds::types::{SqlType, Value, MAX};

/// Marks a text value that carries its T-SQL type: `MARK type MARK value`.
const MARK: char = '\u{1}';
/// Prefix of the SQLite name given to an unnamed result column.
const UNNAMED: &str = "\u{2}";

/// What a SELECT needs to know about its session.
pub struct SelectEnv<'a> {
    /// @@SPID.
    pub spid: u16,
    /// Current database.
    pub db: &'a str,
    /// Parameters (lower-case names without `@`).
    pub params: &'a HashMap<String, Value>,
}

/// Runs a SELECT; returns its columns and rows.
pub fn run(
    inst: &mut Instance,
    env: &SelectEnv,
    toks: &[Tok],
) -> Result<(Vec<Column>, Vec<Vec<Value>>), SqlError> {
    let mut db_ids: Vec<(i64, String)> = vec![
        (1, "master".into()),
        (2, "tempdb".into()),
        (3, "model".into()),
        (4, "msdb".into()),
    ];
    db_ids.extend(
        inst.state
            .databases
            .iter()
            .map(|d| (d.database_id, d.name.clone())),
    );
    let mut rw = rewrite::Rewriter {
        env,
        user_dbs: Vec::new(),
        db_ids,
    };
    let (mut sql, limit) = rw.rewrite(toks, true)?;
    if let Some(l) = limit {
        sql.push_str(&format!(" LIMIT {l}"));
    }
    views::refresh_sys(inst, env)
        .map_err(|e| SqlError::new(50000, format!("catalog refresh failed: {e}")))?;
    functions::register_functions(inst)
        .map_err(|e| SqlError::new(50000, format!("catalog functions: {e}")))?;
    let user_dbs = rw.user_dbs.clone();
    for db in &user_dbs {
        let online = inst
            .state
            .db(db)
            .map(|d| d.state == "ONLINE")
            .unwrap_or(false);
        if !online {
            for d in &user_dbs {
                let _ = inst.catalog.conn.execute(
                    "DETACH DATABASE ?1",
                    [format!("u_{}", d.to_ascii_lowercase())],
                );
            }
            return Err(SqlError::new(
                927,
                format!("Database '{db}' cannot be opened. It is in the middle of a restore."),
            ));
        }
        if let Err(e) = views::load_user_db(inst, db) {
            for d in &user_dbs {
                let _ = inst.catalog.conn.execute(
                    "DETACH DATABASE ?1",
                    [format!("u_{}", d.to_ascii_lowercase())],
                );
            }
            return Err(e);
        }
    }
    let result = query(&inst.catalog.conn, &sql);
    for d in &user_dbs {
        let _ = inst.catalog.conn.execute(
            "DETACH DATABASE ?1",
            [format!("u_{}", d.to_ascii_lowercase())],
        );
    }
    result
}

fn map_sqlite_error(e: rusqlite::Error) -> SqlError {
    let m = e.to_string();
    if let Some(t) = m.strip_prefix("no such table: ") {
        let name = t.replace("msdb.", "msdb.dbo.").replace("u_", "");
        return SqlError::new(208, format!("Invalid object name '{name}'."));
    }
    if let Some(c) = m.strip_prefix("no such column: ") {
        return SqlError::new(207, format!("Invalid column name '{c}'."));
    }
    if let Some(f) = m.strip_prefix("no such function: ") {
        return SqlError::new(
            195,
            format!("'{f}' is not a recognized built-in function name."),
        );
    }
    if let Some(rest) = m.strip_prefix("near \"") {
        let near = rest.split('"').next().unwrap_or("");
        return SqlError::syntax(near);
    }
    SqlError::new(102, format!("Incorrect syntax: {m}"))
}

fn query(
    conn: &rusqlite::Connection,
    sql: &str,
) -> Result<(Vec<Column>, Vec<Vec<Value>>), SqlError> {
    let mut st = conn.prepare(sql).map_err(map_sqlite_error)?;
    let decl: Vec<(String, Option<SqlType>)> = st
        .columns()
        .iter()
        .map(|c| {
            let ty = c
                .decl_type()
                .and_then(|d| match d.to_ascii_lowercase().as_str() {
                    "nvarcharmax" => Some(SqlType::NVarChar(MAX)),
                    "varbinarymax" => Some(SqlType::VarBinary(MAX)),
                    other => SqlType::parse(other),
                });
            let name = if c.name().starts_with(UNNAMED) {
                String::new()
            } else {
                c.name().to_string()
            };
            (name, ty)
        })
        .collect();
    let n = decl.len();
    let mut rows = Vec::new();
    let mut marks: Vec<Option<SqlType>> = vec![None; n];
    let mut q = st.query([]).map_err(map_sqlite_error)?;
    while let Some(r) = q.next().map_err(map_sqlite_error)? {
        let mut row = Vec::with_capacity(n);
        for (k, mark) in marks.iter_mut().enumerate() {
            let v = match r.get_ref(k).map_err(map_sqlite_error)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => Value::Int(i),
                ValueRef::Real(f) => Value::Float(f),
                ValueRef::Text(t) => {
                    let s = String::from_utf8_lossy(t).to_string();
                    match s.strip_prefix(MARK).and_then(|r| r.split_once(MARK)) {
                        Some((ty, v)) => {
                            let t = SqlType::parse(ty).unwrap_or(SqlType::NVarChar(4000));
                            *mark = Some(t);
                            match t {
                                SqlType::VarBinary(_) => {
                                    Value::Bytes(hex::decode(v).unwrap_or_default())
                                }
                                SqlType::Variant
                                    if v.parse::<i64>().is_ok() && ty == "sql_variant" =>
                                {
                                    Value::Str(v.to_string())
                                }
                                _ => Value::Str(v.to_string()),
                            }
                        }
                        None => Value::Str(s),
                    }
                }
                ValueRef::Blob(b) => Value::Bytes(b.to_vec()),
            };
            row.push(v);
        }
        rows.push(row);
    }
    let cols = decl
        .into_iter()
        .enumerate()
        .map(|(k, (name, ty))| {
            let ty = marks[k].or(ty).unwrap_or_else(|| {
                rows.iter()
                    .map(|r: &Vec<Value>| &r[k])
                    .find(|v| !matches!(v, Value::Null))
                    .map(SqlType::infer)
                    .unwrap_or(SqlType::Int)
            });
            Column::new(name, ty)
        })
        .collect();
    Ok((cols, rows))
}

//! SELECT statements, run by SQLite over the catalog: the T-SQL tokens are rewritten
//! to SQLite (three-part names such as `msdb.dbo.backupset` and `sys.databases` to the
//! attached schemas, `[quoted]` identifiers, `N'strings'`, `TOP n` to `LIMIT`,
//! `@@SPID`, `SERVERPROPERTY`, `CAST`, sp_executesql parameters inlined as literals),
//! user tables of a database loaded on demand, and the results typed from the
//! declared T-SQL column types so they travel as a real server sends them.

use std::collections::HashMap;

use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;

use super::lexer::Tok;
use super::SqlError;
use crate::simulator::engine::pages::{table, TABLES};
use crate::simulator::engine::Instance;
use crate::simulator::tds::token::Column;
use crate::simulator::tds::types::{SqlType, Value, MAX};

/// `@@VERSION` as the simulator reports it.
pub const VERSION: &str = "Microsoft SQL Server 2019 (RTM-CU18) (KB5017593) - 15.0.4355.3 (X64) \n\tSep 10 2022 12:00:00 \n\tCopyright (C) 2019 Microsoft Corporation\n\tDeveloper Edition (64-bit) on Linux (pacsbak simulator) <X64>";

const MARK: char = '\u{1}';
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

/// SERVERPROPERTY values.
pub fn server_property(name: &str) -> Value {
    let v = match name.to_ascii_lowercase().as_str() {
        "productversion" => "15.0.4355.3",
        "productlevel" => "RTM",
        "productupdatelevel" => "CU18",
        "edition" => "Developer Edition (64-bit)",
        "engineedition" => return Value::Int(3),
        "machinename" | "servername" | "computernamephysicalnetbios" => "PACSSIM",
        "instancename" => return Value::Null,
        "collation" => "SQL_Latin1_General_CP1_CI_AS",
        "isclustered" | "ishadrenabled" | "issingleuser" => return Value::Int(0),
        "productmajorversion" => "15",
        "productminorversion" => "0",
        "productbuild" => "4355",
        _ => return Value::Null,
    };
    Value::Str(v.to_string())
}

fn literal(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:e}"),
        Value::Bytes(b) => format!("X'{}'", hex::encode(b)),
        other => format!("'{}'", other.to_text().replace('\'', "''")),
    }
}

fn typed(ty: &str, v: &Value, in_list: bool) -> String {
    if in_list {
        format!("sim_typed('{ty}', {})", literal(v))
    } else {
        literal(v)
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

struct Rewriter<'a> {
    env: &'a SelectEnv<'a>,
    user_dbs: Vec<String>,
    db_ids: Vec<(i64, String)>,
}

fn matching_paren(t: &[Tok], open: usize) -> usize {
    let mut depth = 0;
    for (i, tok) in t.iter().enumerate().skip(open) {
        if tok.is_sym("(") {
            depth += 1;
        } else if tok.is_sym(")") {
            depth -= 1;
            if depth == 0 {
                return i;
            }
        }
    }
    t.len()
}

fn sqlite_type(ty: &str) -> &'static str {
    let t = ty.to_ascii_lowercase();
    if t.contains("int") || t.starts_with("bit") {
        "INTEGER"
    } else if t.contains("char")
        || t.contains("xml")
        || t.contains("date")
        || t.contains("time")
        || t.contains("uniqueidentifier")
    {
        "TEXT"
    } else if t.contains("binary") || t.contains("image") {
        "BLOB"
    } else if t.contains("float") || t.contains("real") {
        "REAL"
    } else {
        "NUMERIC"
    }
}

impl Rewriter<'_> {
    fn need_db(&mut self, name: &str) -> Result<String, SqlError> {
        if !self
            .db_ids
            .iter()
            .any(|(_, n)| n.eq_ignore_ascii_case(name))
        {
            return Err(SqlError::new(911, format!("Database '{name}' does not exist. Make sure that the name is entered correctly.")));
        }
        if !self.user_dbs.iter().any(|d| d.eq_ignore_ascii_case(name)) {
            self.user_dbs.push(name.to_string());
        }
        Ok(format!("u_{}", name.to_ascii_lowercase()))
    }

    fn db_id_of(&self, name: &str) -> Option<i64> {
        self.db_ids
            .iter()
            .find(|(_, n)| n.eq_ignore_ascii_case(name))
            .map(|(i, _)| *i)
    }

    fn object(&mut self, parts: &[String], from_ctx: bool) -> Result<String, SqlError> {
        let lower: Vec<String> = parts.iter().map(|p| p.to_ascii_lowercase()).collect();
        let sys_obj = |obj: &str, db: &str, me: &Self| -> String {
            if obj.eq_ignore_ascii_case("dm_db_log_space_usage") {
                format!(
                    "(SELECT * FROM sys.dm_db_log_space_usage WHERE database_id = {})",
                    me.db_id_of(db).unwrap_or(0)
                )
            } else {
                format!("sys.{}", quote(obj))
            }
        };
        let user_or_plain = |me: &mut Self, db: &str, obj: &str| -> Result<String, SqlError> {
            if db.eq_ignore_ascii_case("msdb") {
                Ok(format!("msdb.{}", quote(obj)))
            } else if db.eq_ignore_ascii_case("master")
                || db.eq_ignore_ascii_case("tempdb")
                || db.eq_ignore_ascii_case("model")
            {
                Ok(format!("main.{}", quote(obj)))
            } else {
                let alias = me.need_db(db)?;
                Ok(format!("{}.{}", quote(&alias), quote(obj)))
            }
        };
        match lower.len() {
            3 => {
                if lower[1] == "sys" || lower[1] == "information_schema" {
                    Ok(sys_obj(&parts[2], &parts[0], self))
                } else {
                    user_or_plain(self, &parts[0], &parts[2])
                }
            }
            2 if lower[0] == "sys" => Ok(sys_obj(&parts[1], self.env.db, self)),
            2 if lower[0] == "dbo" => {
                let db = self.env.db.to_string();
                user_or_plain(self, &db, &parts[1])
            }
            1 if from_ctx => {
                let db = self.env.db.to_string();
                if db.eq_ignore_ascii_case("msdb") || table(&parts[0]).is_some() {
                    user_or_plain(self, &db, &parts[0])
                } else {
                    Ok(quote(&parts[0]))
                }
            }
            _ => Ok(parts.iter().map(|p| quote(p)).collect::<Vec<_>>().join(".")),
        }
    }

    /// Rewrites tokens `t[a..b]`; `list` marks the outer select list.
    fn rewrite(&mut self, t: &[Tok], top: bool) -> Result<(String, Option<String>), SqlError> {
        let mut out: Vec<String> = Vec::new();
        let mut limit = None;
        let mut i = 0;
        let mut in_list = false;
        let mut item_start = false;
        let mut depth = 0i32;
        let mut seen_select = false;
        while i < t.len() {
            let tok = &t[i];
            let prev_from = i > 0 && (t[i - 1].is_kw("FROM") || t[i - 1].is_kw("JOIN"));
            if tok.is_kw("SELECT") && !seen_select && top {
                seen_select = true;
                in_list = true;
                item_start = true;
                out.push("SELECT".into());
                i += 1;
                if t.get(i).is_some_and(|x| x.is_kw("DISTINCT")) {
                    out.push("DISTINCT".into());
                    i += 1;
                }
                if t.get(i).is_some_and(|x| x.is_kw("TOP")) {
                    if t.get(i + 1).is_some_and(|x| x.is_sym("(")) {
                        let close = matching_paren(t, i + 1);
                        let (inner, _) = self.rewrite(&t[i + 2..close.min(t.len())], false)?;
                        limit = Some(inner);
                        i = close + 1;
                    } else if let Some(n) = t.get(i + 1) {
                        limit = Some(match n {
                            Tok::Var(_) => self.rewrite(&t[i + 1..i + 2], false)?.0,
                            other => other.display(),
                        });
                        i += 2;
                    }
                }
                continue;
            }
            if in_list && depth == 0 && tok.is_kw("FROM") {
                in_list = false;
            }
            if tok.is_sym("(") {
                depth += 1;
            }
            if tok.is_sym(")") {
                depth -= 1;
            }
            let at_item = in_list && item_start;
            item_start = false;
            if in_list && depth == 0 && tok.is_sym(",") {
                item_start = true;
            }
            // alias = expr  (T-SQL alias form)
            if at_item && tok.ident().is_some() && t.get(i + 1).is_some_and(|x| x.is_sym("=")) {
                let end = item_end(t, i + 2);
                let (expr, _) = self.rewrite_item(&t[i + 2..end])?;
                out.push(format!("{expr} AS {}", quote(tok.ident().unwrap_or(""))));
                i = end;
                continue;
            }
            if at_item {
                let end = item_end(t, i);
                let (expr, named) = self.rewrite_item(&t[i..end])?;
                out.push(expr);
                if !named {
                    out.push(format!("AS \"{UNNAMED}{}\"", i));
                }
                i = end;
                continue;
            }
            let (piece, used) = self.token(t, i, prev_from, false)?;
            out.push(piece);
            i += used;
        }
        Ok((out.join(" "), limit))
    }

    /// One select-list item; returns its text and whether it names its column.
    fn rewrite_item(&mut self, t: &[Tok]) -> Result<(String, bool), SqlError> {
        let n = t.len();
        let has_as = {
            let mut d = 0;
            let mut found = false;
            for x in t {
                if x.is_sym("(") {
                    d += 1
                } else if x.is_sym(")") {
                    d -= 1
                } else if d == 0 && x.is_kw("AS") {
                    found = true
                }
            }
            found
        };
        let plain_ref = t.iter().enumerate().all(|(k, x)| {
            if k % 2 == 0 {
                x.ident().is_some() || x.is_sym("*")
            } else {
                x.is_sym(".")
            }
        });
        let implicit_alias = n >= 2
            && t[n - 1].ident().is_some()
            && !t[n - 2].is_sym(".")
            && !matches!(&t[n - 2], Tok::Sym(s) if s != ")")
            && !t[n - 1].is_kw("END");
        let named = has_as || plain_ref || implicit_alias;
        let mut out = Vec::new();
        let mut i = 0;
        while i < n {
            let (piece, used) = self.token(t, i, false, i == 0)?;
            out.push(piece);
            i += used;
        }
        Ok((out.join(" "), named))
    }

    /// Rewrites the token at `i`; returns text and tokens consumed.
    fn token(
        &mut self,
        t: &[Tok],
        i: usize,
        from_ctx: bool,
        item_head: bool,
    ) -> Result<(String, usize), SqlError> {
        let tok = &t[i];
        let in_list = item_head;
        match tok {
            Tok::Str(s, _) => Ok((format!("'{}'", s.replace('\'', "''")), 1)),
            Tok::Num(n) => Ok((n.clone(), 1)),
            Tok::Sym(s) => Ok((s.clone(), 1)),
            Tok::Var(v) => match self.env.params.get(&v.to_ascii_lowercase()) {
                Some(val) => Ok((literal(val), 1)),
                None => Err(SqlError::new(
                    137,
                    format!("Must declare the scalar variable \"@{v}\"."),
                )),
            },
            Tok::Global(g) => {
                let s = match g.as_str() {
                    "VERSION" => typed("nvarchar(300)", &Value::Str(VERSION.into()), in_list),
                    "SPID" => typed("smallint", &Value::Int(self.env.spid as i64), in_list),
                    "SERVERNAME" => typed("nvarchar(128)", &Value::Str("PACSSIM".into()), in_list),
                    "MICROSOFTVERSION" => "251662595".into(),
                    "TRANCOUNT" | "ERROR" | "ROWCOUNT" => "0".into(),
                    "LANGUAGE" => typed("nvarchar(128)", &Value::Str("us_english".into()), in_list),
                    _ => "NULL".into(),
                };
                Ok((s, 1))
            }
            Tok::Word(_) | Tok::QuotedIdent(_) => {
                // WITH (NOLOCK) and friends
                if tok.is_kw("WITH") && t.get(i + 1).is_some_and(|x| x.is_sym("(")) {
                    let close = matching_paren(t, i + 1);
                    return Ok((String::new(), close + 1 - i));
                }
                let is_word = matches!(tok, Tok::Word(_));
                if is_word && t.get(i + 1).is_some_and(|x| x.is_sym("(")) {
                    return self.function(t, i, in_list);
                }
                if is_word && (tok.is_kw("GETDATE") || tok.is_kw("CURRENT_TIMESTAMP")) {
                    return Ok(("sim_now()".into(), 1));
                }
                if is_word && super::lexer::is_reserved(tok.ident().unwrap_or("")) {
                    return Ok((tok.display(), 1));
                }
                // A dotted name.
                let mut parts = vec![tok.ident().unwrap_or("").to_string()];
                let mut j = i + 1;
                while t.get(j).is_some_and(|x| x.is_sym(".")) {
                    if t.get(j + 1).is_some_and(|x| x.is_sym(".")) {
                        parts.push("dbo".into());
                        j += 1;
                        continue;
                    }
                    match t.get(j + 1) {
                        Some(x) if x.ident().is_some() => {
                            parts.push(x.ident().unwrap_or("").to_string());
                            j += 2;
                        }
                        Some(x) if x.is_sym("*") => {
                            return Ok((format!("{}.*", self.object(&parts, false)?), j + 2 - i));
                        }
                        _ => break,
                    }
                }
                Ok((self.object(&parts, from_ctx)?, j - i))
            }
        }
    }

    fn function(
        &mut self,
        t: &[Tok],
        i: usize,
        in_list: bool,
    ) -> Result<(String, usize), SqlError> {
        let name = t[i].ident().unwrap_or("").to_ascii_uppercase();
        let close = matching_paren(t, i + 1);
        let args = &t[i + 2..close.min(t.len())];
        let used = close + 1 - i;
        let arg_str = |me: &mut Self, a: &[Tok]| -> Result<String, SqlError> {
            let mut out = Vec::new();
            let mut k = 0;
            while k < a.len() {
                let (p, u) = me.token(a, k, false, false)?;
                out.push(p);
                k += u;
            }
            Ok(out.join(" "))
        };
        match name.as_str() {
            "SERVERPROPERTY" => {
                let prop = args.first().map(|a| a.display()).unwrap_or_default();
                let v = server_property(&prop);
                Ok((typed("sql_variant", &v, in_list), used))
            }
            "CAST" | "CONVERT" => {
                let (expr, ty) = if name == "CAST" {
                    let mut d = 0;
                    let mut as_pos = None;
                    for (k, x) in args.iter().enumerate() {
                        if x.is_sym("(") {
                            d += 1
                        } else if x.is_sym(")") {
                            d -= 1
                        } else if d == 0 && x.is_kw("AS") {
                            as_pos = Some(k)
                        }
                    }
                    let p = as_pos.ok_or_else(|| SqlError::syntax(")"))?;
                    (&args[..p], &args[p + 1..])
                } else {
                    let comma = args
                        .iter()
                        .position(|x| x.is_sym(","))
                        .ok_or_else(|| SqlError::syntax(")"))?;
                    let rest = &args[comma + 1..];
                    let end = rest
                        .iter()
                        .position(|x| x.is_sym(","))
                        .unwrap_or(rest.len());
                    (&rest[..end], &args[..comma])
                };
                let ty_s: String = ty.iter().map(|x| x.display()).collect::<Vec<_>>().join("");
                let e = arg_str(self, expr)?;
                if in_list {
                    Ok((format!("sim_typed('{ty_s}', {e})"), used))
                } else {
                    Ok((format!("CAST({e} AS {})", sqlite_type(&ty_s)), used))
                }
            }
            "DB_NAME" => {
                let a = arg_str(self, args)?;
                let a = if a.trim().is_empty() {
                    format!("{}", self.db_id_of(self.env.db).unwrap_or(1))
                } else {
                    a
                };
                Ok((format!("sim_db_name({a})"), used))
            }
            "DB_ID" => {
                let a = arg_str(self, args)?;
                let a = if a.trim().is_empty() {
                    format!("'{}'", self.env.db.replace('\'', "''"))
                } else {
                    a
                };
                Ok((format!("sim_db_id({a})"), used))
            }
            "GETDATE" | "SYSDATETIME" | "GETUTCDATE" | "SYSUTCDATETIME" | "SYSDATETIMEOFFSET" => {
                Ok(("sim_now()".into(), used))
            }
            "SUSER_SNAME" | "SUSER_NAME" | "ORIGINAL_LOGIN" => Ok(("'sa'".into(), used)),
            "HOST_NAME" => Ok(("'PACSSIM'".into(), used)),
            "DATEDIFF" | "DATEADD" => {
                let unit = args
                    .first()
                    .map(|a| a.display().to_ascii_lowercase())
                    .unwrap_or_default();
                let rest = arg_str(self, args.get(2..).unwrap_or(&[]))?;
                Ok((
                    format!("sim_{}('{unit}', {rest})", name.to_ascii_lowercase()),
                    used,
                ))
            }
            _ => {
                let f = match name.as_str() {
                    "ISNULL" => "IFNULL",
                    "LEN" => "LENGTH",
                    "COUNT_BIG" => "COUNT",
                    "UPPER" | "LOWER" | "COUNT" | "MAX" | "MIN" | "SUM" | "AVG" | "COALESCE"
                    | "ABS" | "ROUND" | "REPLACE" | "SUBSTRING" | "LTRIM" | "RTRIM" | "TRIM"
                    | "NULLIF" | "IIF" => name.as_str(),
                    other => {
                        return Err(SqlError::new(
                            195,
                            format!("'{other}' is not a recognized built-in function name."),
                        ))
                    }
                };
                let f = if f == "SUBSTRING" { "SUBSTR" } else { f };
                Ok((format!("{f}({})", arg_str(self, args)?), used))
            }
        }
    }
}

fn item_end(t: &[Tok], start: usize) -> usize {
    let mut d = 0;
    for (k, x) in t.iter().enumerate().skip(start) {
        if x.is_sym("(") {
            d += 1;
        } else if x.is_sym(")") {
            if d == 0 {
                return k;
            }
            d -= 1;
        } else if d == 0
            && (x.is_sym(",")
                || x.is_kw("FROM")
                || x.is_kw("INTO")
                || x.is_kw("UNION")
                || x.is_kw("ORDER")
                || x.is_kw("WHERE"))
        {
            return k;
        }
    }
    t.len()
}

fn refresh_sys(inst: &mut Instance, env: &SelectEnv) -> rusqlite::Result<()> {
    use rusqlite::params;
    let now = super::fmt_unix(inst.now_unix());
    let started = super::fmt_unix(inst.state.started_at);
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
            super::fmt_unix(d.create_date),
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
            super::fmt_unix(r.start as i64),
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

fn load_user_db(inst: &mut Instance, db: &str) -> Result<(), SqlError> {
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

fn register_functions(inst: &Instance) -> rusqlite::Result<()> {
    let c = &inst.catalog.conn;
    let mut names: Vec<(i64, String)> = vec![
        (1, "master".into()),
        (2, "tempdb".into()),
        (3, "model".into()),
        (4, "msdb".into()),
    ];
    names.extend(
        inst.state
            .databases
            .iter()
            .map(|d| (d.database_id, d.name.clone())),
    );
    let n2 = names.clone();
    let det = FunctionFlags::SQLITE_UTF8;
    c.create_scalar_function("sim_db_name", 1, det, move |ctx| {
        let id: i64 = ctx.get(0).unwrap_or(0);
        Ok(names.iter().find(|(i, _)| *i == id).map(|(_, n)| n.clone()))
    })?;
    c.create_scalar_function("sim_db_id", 1, det, move |ctx| {
        let n: String = ctx.get(0).unwrap_or_default();
        Ok(n2
            .iter()
            .find(|(_, x)| x.eq_ignore_ascii_case(&n))
            .map(|(i, _)| *i))
    })?;
    let now = super::fmt_unix(inst.now_unix());
    c.create_scalar_function("sim_now", 0, det, move |_| Ok(now.clone()))?;
    c.create_scalar_function("sim_typed", 2, det, |ctx| {
        let ty: String = ctx.get(0)?;
        let raw = ctx.get_raw(1);
        let text = match raw {
            ValueRef::Null => return Ok(None),
            ValueRef::Integer(i) => i.to_string(),
            ValueRef::Real(f) => f.to_string(),
            ValueRef::Text(t) => {
                let s = String::from_utf8_lossy(t).to_string();
                match s.strip_prefix(MARK) {
                    Some(r) => r.split_once(MARK).map(|(_, v)| v.to_string()).unwrap_or(s),
                    None => s,
                }
            }
            ValueRef::Blob(b) => {
                if ty.to_ascii_lowercase().starts_with("varbinary")
                    || ty.to_ascii_lowercase().starts_with("binary")
                {
                    hex::encode(b)
                } else {
                    String::from_utf8_lossy(b).to_string()
                }
            }
        };
        Ok(Some(format!("{MARK}{ty}{MARK}{text}")))
    })?;
    for (name, f) in [("sim_datediff", true), ("sim_dateadd", false)] {
        c.create_scalar_function(name, 3, det, move |ctx| {
            let unit: String = ctx.get(0)?;
            let secs = |u: &str| match u {
                "second" | "ss" | "s" => 1,
                "minute" | "mi" | "n" => 60,
                "hour" | "hh" => 3600,
                "day" | "dd" | "d" => 86400,
                "week" | "wk" | "ww" => 604_800,
                _ => 86400,
            };
            let parse = |s: String| {
                crate::simulator::tds::types::parse_datetime(&s)
                    .map(|d| d.assume_utc().unix_timestamp())
            };
            if f {
                let a: Option<String> = ctx.get(1)?;
                let b: Option<String> = ctx.get(2)?;
                match (a.and_then(parse), b.and_then(parse)) {
                    (Some(a), Some(b)) => Ok(Some(((b - a) / secs(&unit)).to_string())),
                    _ => Ok(None),
                }
            } else {
                let n: i64 = ctx.get(1)?;
                let d: Option<String> = ctx.get(2)?;
                Ok(d.and_then(parse)
                    .map(|t| super::fmt_unix(t + n * secs(&unit))))
            }
        })?;
    }
    Ok(())
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
    let mut rw = Rewriter {
        env,
        user_dbs: Vec::new(),
        db_ids,
    };
    let (mut sql, limit) = rw.rewrite(toks, true)?;
    if let Some(l) = limit {
        sql.push_str(&format!(" LIMIT {l}"));
    }
    refresh_sys(inst, env)
        .map_err(|e| SqlError::new(50000, format!("catalog refresh failed: {e}")))?;
    register_functions(inst)
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
        if let Err(e) = load_user_db(inst, db) {
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

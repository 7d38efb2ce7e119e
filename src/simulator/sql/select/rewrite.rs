//! T-SQL tokens of a SELECT rewritten to SQLite: names mapped to the attached
//! schemas, quoting, literals and parameters, TOP, and the T-SQL functions and
//! casts that SQLite spells differently.

use super::functions::{server_property, VERSION};
use super::{SelectEnv, UNNAMED};
use crate::simulator::engine::pages::table;
use crate::simulator::sql::lexer::Tok;
use crate::simulator::sql::SqlError;
use crate::simulator::tds::types::Value;

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

pub(super) fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub(super) struct Rewriter<'a> {
    pub(super) env: &'a SelectEnv<'a>,
    pub(super) user_dbs: Vec<String>,
    pub(super) db_ids: Vec<(i64, String)>,
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

pub(super) fn sqlite_type(ty: &str) -> &'static str {
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
    pub(super) fn rewrite(
        &mut self,
        t: &[Tok],
        top: bool,
    ) -> Result<(String, Option<String>), SqlError> {
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
                // `AND (`, `IN (`, `NOT (`: an operator before a parenthesised group,
                // not a function call.
                const OPERATORS: &[&str] = &[
                    "AND", "OR", "NOT", "IN", "EXISTS", "WHERE", "ON", "WHEN", "THEN", "ELSE",
                    "BETWEEN", "LIKE", "IS", "HAVING",
                ];
                if is_word && OPERATORS.iter().any(|o| tok.is_kw(o)) {
                    return Ok((tok.display(), 1));
                }
                if is_word && t.get(i + 1).is_some_and(|x| x.is_sym("(")) {
                    return self.function(t, i, in_list);
                }
                if is_word && (tok.is_kw("GETDATE") || tok.is_kw("CURRENT_TIMESTAMP")) {
                    return Ok(("sim_now()".into(), 1));
                }
                if is_word && crate::simulator::sql::lexer::is_reserved(tok.ident().unwrap_or("")) {
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

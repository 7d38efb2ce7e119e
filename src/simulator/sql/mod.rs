//! Statements: a batch is tokenized, split into statements, and each statement goes
//! to the handler of its family (SELECT, BACKUP, RESTORE, DBCC, DROP/CREATE/ALTER
//! DATABASE, USE, SET, EXEC, and the simulator's own SIMCTL). Syntax errors get
//! SQL Server's numbers (102, 156, 105) and the session goes on.

pub mod lexer;
pub mod select;

use lexer::{lex, Tok};

use super::handlers;
use super::session::{Abort, Ctx, Outcome};
use super::tds::token::{self, DONE_COUNT, DONE_ERROR, DONE_MORE};
use super::tds::types::Value;

/// A statement error with SQL Server's number and text.
#[derive(Debug, Clone)]
pub struct SqlError {
    /// Error number.
    pub number: i32,
    /// Severity (16 unless said otherwise).
    pub class: u8,
    /// Message text.
    pub message: String,
}

impl SqlError {
    /// A severity-16 error.
    pub fn new(number: i32, message: impl Into<String>) -> Self {
        SqlError {
            number,
            class: 16,
            message: message.into(),
        }
    }

    /// Error 102 (or 156 for a reserved word) near a token.
    pub fn syntax(near: &str) -> Self {
        if lexer::is_reserved(near) {
            SqlError {
                number: 156,
                class: 15,
                message: format!("Incorrect syntax near the keyword '{near}'."),
            }
        } else {
            SqlError {
                number: 102,
                class: 15,
                message: format!("Incorrect syntax near '{near}'."),
            }
        }
    }

    /// Syntax error at the token `t` (or at the end).
    pub fn near(t: Option<&Tok>) -> Self {
        match t {
            Some(Tok::Word(w)) => SqlError::syntax(w),
            Some(t) => SqlError {
                number: 102,
                class: 15,
                message: format!("Incorrect syntax near '{}'.", t.display()),
            },
            None => SqlError {
                number: 102,
                class: 15,
                message: "Incorrect syntax near ')'.".into(),
            },
        }
    }
}

/// Formats unix seconds as a datetime literal.
pub fn fmt_unix(secs: i64) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    super::tds::types::format_datetime(&time::PrimitiveDateTime::new(t.date(), t.time()))
}

/// A value as a T-SQL literal.
pub fn literal_tsql(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bytes(b) => format!("0x{}", hex::encode(b)),
        other => lexer::quote_str(&other.to_text()),
    }
}

const STARTERS: &[&str] = &[
    "SELECT", "BACKUP", "RESTORE", "DBCC", "DROP", "USE", "EXEC", "EXECUTE", "SIMCTL", "DECLARE",
    "CREATE", "ALTER", "PRINT", "SET", "KILL",
];

/// Splits tokens into statements at `;` and at statement keywords.
pub fn split(toks: Vec<Tok>) -> Vec<Vec<Tok>> {
    let mut out: Vec<Vec<Tok>> = Vec::new();
    let mut cur: Vec<Tok> = Vec::new();
    let mut depth = 0;
    for t in toks {
        if t.is_sym("(") {
            depth += 1;
        } else if t.is_sym(")") {
            depth -= 1;
        }
        if depth == 0 && t.is_sym(";") {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        let starts = depth == 0
            && !cur.is_empty()
            && STARTERS.iter().any(|k| t.is_kw(k))
            && !cur.last().is_some_and(|p| {
                p.is_kw("UNION") || p.is_kw("ALL") || p.is_kw("EXCEPT") || p.is_kw("INTERSECT")
            })
            && !(t.is_kw("SET")
                && cur
                    .first()
                    .is_some_and(|f| f.is_kw("ALTER") || f.is_kw("UPDATE")))
            && !(t.is_kw("SELECT") && cur.first().is_some_and(|f| f.is_kw("INSERT")));
        if starts {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(t);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Runs a batch: each statement's results and a DONE (DONEINPROC inside an RPC).
pub async fn run_batch(ctx: &mut Ctx<'_>, text: &str) -> Result<(), Abort> {
    let toks = match lex(text) {
        Ok(t) => t,
        Err(e) => {
            ctx.error(e.number, 15, &e.message);
            finish_stmt(
                ctx,
                Outcome {
                    count: None,
                    error: true,
                },
                true,
            );
            return Ok(());
        }
    };
    let stmts: Vec<Vec<Tok>> = split(toks)
        .into_iter()
        .filter(|s| !(s.len() == 1 && s[0].is_kw("GO")))
        .collect();
    if stmts.is_empty() {
        finish_stmt(ctx, Outcome::default(), true);
        return Ok(());
    }
    let n = stmts.len();
    for (i, s) in stmts.into_iter().enumerate() {
        if ctx.cancelled() {
            return Err(Abort::Cancelled);
        }
        let outcome = match run_statement(ctx, &s).await {
            Ok(o) => o,
            Err(StmtError::Sql(e)) => {
                ctx.error(e.number, e.class, &e.message);
                Outcome {
                    count: None,
                    error: true,
                }
            }
            Err(StmtError::Abort(a)) => return Err(a),
        };
        finish_stmt(ctx, outcome, i + 1 == n);
    }
    Ok(())
}

fn finish_stmt(ctx: &mut Ctx<'_>, o: Outcome, last: bool) {
    let mut status = 0;
    if o.count.is_some() {
        status |= DONE_COUNT;
    }
    if o.error {
        status |= DONE_ERROR;
    }
    if ctx.in_rpc {
        token::doneinproc(status | DONE_MORE, 0xC1, o.count.unwrap_or(0), &mut ctx.out);
    } else {
        if !last {
            status |= DONE_MORE;
        }
        token::done(status, 0xC1, o.count.unwrap_or(0), &mut ctx.out);
    }
}

/// A statement's failure: an error message, or the request stops.
#[derive(Debug)]
pub enum StmtError {
    /// Report and go on with the batch.
    Sql(SqlError),
    /// Stop the request.
    Abort(Abort),
}

impl From<SqlError> for StmtError {
    fn from(e: SqlError) -> Self {
        StmtError::Sql(e)
    }
}

impl From<Abort> for StmtError {
    fn from(a: Abort) -> Self {
        StmtError::Abort(a)
    }
}

async fn run_statement(ctx: &mut Ctx<'_>, s: &[Tok]) -> Result<Outcome, StmtError> {
    let first = &s[0];
    let word = first
        .ident()
        .map(|w| w.to_ascii_uppercase())
        .unwrap_or_default();
    match (word.as_str(), matches!(first, Tok::Word(_))) {
        ("SELECT", true) => {
            let (cols, rows) = {
                let mut inst = ctx.shared.lock();
                let env = select::SelectEnv {
                    spid: ctx.spid,
                    db: &ctx.db,
                    params: &ctx.params,
                };
                select::run(&mut inst, &env, s)?
            };
            ctx.rows(&cols, &rows);
            Ok(Outcome {
                count: Some(rows.len() as u64),
                error: false,
            })
        }
        ("BACKUP", true) => handlers::backup::run(ctx, s).await,
        ("RESTORE", true) => handlers::restore::run(ctx, s).await,
        ("DBCC", true) => handlers::misc::dbcc(ctx, s),
        ("DROP" | "CREATE" | "ALTER", true) => handlers::misc::ddl(ctx, s),
        ("USE", true) => handlers::misc::use_db(ctx, s),
        ("SET" | "DECLARE" | "PRINT", true) => handlers::misc::set(ctx, s),
        ("EXEC" | "EXECUTE", true) => handlers::agent::exec(ctx, s).await,
        ("SIMCTL", true) => handlers::control::run(ctx, s),
        ("KILL", true) => handlers::misc::kill(ctx, s),
        _ => Err(SqlError::near(Some(first)).into()),
    }
}

/// A cursor over a statement's tokens, for the hand-written statement parsers.
pub struct Parser<'a> {
    /// The tokens.
    pub t: &'a [Tok],
    /// Position.
    pub i: usize,
}

impl<'a> Parser<'a> {
    /// A parser at the start of `t`.
    pub fn new(t: &'a [Tok]) -> Self {
        Parser { t, i: 0 }
    }
    /// The current token.
    pub fn peek(&self) -> Option<&'a Tok> {
        self.t.get(self.i)
    }
    /// Consumes `kw` if it is next.
    pub fn eat_kw(&mut self, kw: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_kw(kw)) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    /// Consumes the symbol if it is next.
    pub fn eat_sym(&mut self, s: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_sym(s)) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    /// Requires `kw`.
    pub fn expect_kw(&mut self, kw: &str) -> Result<(), SqlError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(SqlError::near(self.peek()))
        }
    }
    /// Requires the symbol.
    pub fn expect_sym(&mut self, s: &str) -> Result<(), SqlError> {
        if self.eat_sym(s) {
            Ok(())
        } else {
            Err(SqlError::near(self.peek()))
        }
    }
    /// An identifier, or a variable resolved through `params`.
    pub fn ident(
        &mut self,
        params: &std::collections::HashMap<String, Value>,
    ) -> Result<String, SqlError> {
        match self.peek() {
            Some(Tok::Word(w)) if !lexer::is_reserved(w) => {
                self.i += 1;
                Ok(w.clone())
            }
            Some(Tok::QuotedIdent(w)) => {
                self.i += 1;
                Ok(w.clone())
            }
            Some(Tok::Var(v)) => {
                let text = variable_text(v, params);
                self.i += 1;
                text
            }
            other => Err(SqlError::near(other)),
        }
    }
    /// A string literal or variable.
    pub fn string(
        &mut self,
        params: &std::collections::HashMap<String, Value>,
    ) -> Result<String, SqlError> {
        match self.peek() {
            Some(Tok::Str(s, _)) => {
                self.i += 1;
                Ok(s.clone())
            }
            Some(Tok::Var(v)) => {
                let text = variable_text(v, params);
                self.i += 1;
                text
            }
            other => Err(SqlError::near(other)),
        }
    }
    /// A number or variable.
    pub fn number(
        &mut self,
        params: &std::collections::HashMap<String, Value>,
    ) -> Result<i64, SqlError> {
        match self.peek() {
            Some(Tok::Num(n)) => {
                self.i += 1;
                n.parse().map_err(|_| SqlError::syntax(n))
            }
            Some(Tok::Var(v)) => {
                self.i += 1;
                match params.get(&v.to_ascii_lowercase()) {
                    Some(Value::Int(i)) => Ok(*i),
                    Some(other) => other
                        .to_text()
                        .parse()
                        .map_err(|_| SqlError::syntax(&other.to_text())),
                    None => Err(SqlError::new(
                        137,
                        format!("Must declare the scalar variable \"@{v}\"."),
                    )),
                }
            }
            other => Err(SqlError::near(other)),
        }
    }
    /// At the end of the statement.
    pub fn done(&self) -> bool {
        self.i >= self.t.len()
    }
}

/// The value of `@name` as text, or SQL Server's error 137 when it was not declared.
fn variable_text(
    name: &str,
    params: &std::collections::HashMap<String, Value>,
) -> Result<String, SqlError> {
    params
        .get(&name.to_ascii_lowercase())
        .map(|v| v.to_text())
        .ok_or_else(|| {
            SqlError::new(
                137,
                format!("Must declare the scalar variable \"@{name}\"."),
            )
        })
}

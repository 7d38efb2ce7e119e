//! RESTORE HEADERONLY / FILELISTONLY / VERIFYONLY / DATABASE / LOG, with SQL
//! Server's checks and errors (3154, 3156, 3159, 3101, 3117, 3136, 4305, 4326,
//! 3241, 3189, 3201), each followed by 3013; MOVE, REPLACE, NORECOVERY, RECOVERY,
//! STOPAT; the LSN chain rules of sqlserver.md. This file parses the statement;
//! `inspect` answers the *ONLY forms, `sequence` runs a restore step and reports
//! it, `apply` puts a full, differential or log backup onto the database.

mod apply;
mod inspect;
mod sequence;

use crate::simulator::session::{Ctx, Outcome};
use crate::simulator::sql::lexer::Tok;
use crate::simulator::sql::{Parser, SqlError, StmtError};
use crate::simulator::tds::types::parse_datetime;

/// Options of a RESTORE statement.
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
        "HEADERONLY" | "LABELONLY" => inspect::headeronly(ctx, &o),
        "FILELISTONLY" => inspect::filelistonly(ctx, &o),
        "VERIFYONLY" => inspect::verifyonly(ctx, &o),
        _ => {
            let delay = if o.disks.is_empty() {
                None
            } else {
                ctx.shared.lock().state.faults.slow_restore_ms
            };
            let out = sequence::restore(ctx, &o);
            if let Some(ms) = delay {
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            out
        }
    }
}

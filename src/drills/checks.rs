//! What proves a restored database: DBCC CHECKDB, the restore test's SQL probes,
//! and the RTO. Each check ends as a [`CheckResult`], passed or failed, with the
//! SQL Server error when the server refused; none is skipped silently.

use std::collections::BTreeMap;

use time::PrimitiveDateTime;

use super::config::{Expectation, Probe};
use super::record::CheckResult;
use crate::error::{Error, Result};
use crate::sqlserver::conn::{datetime, float, text};
use crate::sqlserver::{quote, Instance};

/// DBCC CHECKDB of `database`, all messages asked for; the first consistency
/// error SQL Server reports (8939, 8928, 2533...) fails it, with its number.
pub async fn checkdb(instance: &Instance, database: &str) -> CheckResult {
    let stmt = format!(
        "DBCC CHECKDB ({}) WITH NO_INFOMSGS, ALL_ERRORMSGS",
        quote::string(database)
    );
    let outcome = async {
        let mut sql = instance.connect().await?;
        sql.exec(&stmt).await
    }
    .await;
    let expected = "0 allocation errors and 0 consistency errors".to_string();
    match outcome {
        Ok(()) => CheckResult {
            kind: "checkdb".into(),
            name: "DBCC CHECKDB".into(),
            expected,
            actual: "no errors reported".into(),
            ok: true,
            error: None,
        },
        Err(e) => {
            let e = e.with("database", database);
            CheckResult {
                kind: "checkdb".into(),
                name: "DBCC CHECKDB".into(),
                expected,
                actual: e.message().to_string(),
                ok: false,
                error: Some(e.record()),
            }
        }
    }
}

/// What a probe's value is compared with, besides its expectation.
pub struct ProbeContext<'a> {
    /// The point the restore reached.
    pub restored_to: Option<PrimitiveDateTime>,
    /// The policy's RPO of the database, minutes.
    pub rpo_minutes: Option<u64>,
    /// Row counts the backup record holds (of the last full or differential restored).
    pub source_counts: &'a BTreeMap<String, u64>,
}

/// The value a probe read.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Number(f64),
    Time(PrimitiveDateTime),
    /// A date without a time (DICOM's StudyDate is one): compared by day.
    Date(time::Date),
    Text(String),
    Null,
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Number(n) if n.fract() == 0.0 => write!(f, "{n:.0}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::Time(t) => f.write_str(&super::marks::fmt_time(*t)),
            Value::Date(d) => write!(f, "{d}"),
            Value::Text(s) => write!(f, "{s:?}"),
            Value::Null => f.write_str("NULL"),
        }
    }
}

/// Runs one probe in `database` and holds its value to the expectation.
pub async fn probe(
    instance: &Instance,
    database: &str,
    p: &Probe,
    ctx: &ProbeContext<'_>,
) -> CheckResult {
    let read = async {
        let mut sql = instance.connect().await?;
        sql.exec(&format!("USE {}", quote::ident(database))).await?;
        let rows = sql.rows(&p.sql).await?;
        Ok::<_, Error>(rows.first().map_or(Value::Null, |r| {
            if let Some(t) = datetime(r, 0usize) {
                Value::Time(t)
            } else if let Ok(Some(d)) = r.try_get::<time::Date, usize>(0) {
                Value::Date(d)
            } else if let Some(n) = float(r, 0usize) {
                Value::Number(n)
            } else if let Some(s) = text(r, 0usize) {
                parse_text_value(s)
            } else {
                Value::Null
            }
        }))
    }
    .await;
    let mut result = CheckResult {
        kind: "probe".into(),
        name: p.name.clone(),
        expected: String::new(),
        actual: String::new(),
        ok: false,
        error: None,
    };
    let value = match read {
        Ok(v) => v,
        Err(e) => {
            let e = e.with("database", database).with("probe", &p.name);
            result.expected = describe(&p.expect, ctx, p);
            result.actual = format!("the query failed: {}", e.message());
            result.error = Some(e.record());
            return result;
        }
    };
    result.actual = value.to_string();
    let (ok, expected) = judge(&p.expect, &value, ctx, p);
    result.ok = ok;
    result.expected = expected;
    result
}

/// A value sent as text: a number, a date (`2026-12-04`), or the text itself.
fn parse_text_value(s: String) -> Value {
    let t = s.trim();
    if let Ok(n) = t.parse::<f64>() {
        return Value::Number(n);
    }
    let date = time::macros::format_description!("[year]-[month]-[day]");
    match time::Date::parse(t, &date) {
        Ok(d) => Value::Date(d),
        Err(_) => Value::Text(s),
    }
}

fn describe(e: &Expectation, ctx: &ProbeContext<'_>, p: &Probe) -> String {
    judge(e, &Value::Null, ctx, p).1
}

/// Whether `v` meets `e`, and the expectation in words (with the numbers it was
/// held to).
fn judge(e: &Expectation, v: &Value, ctx: &ProbeContext<'_>, p: &Probe) -> (bool, String) {
    let num = match v {
        Value::Number(n) => Some(*n),
        _ => None,
    };
    match e {
        Expectation::AtLeast(a) => (num.is_some_and(|n| n >= *a), format!("at least {a}")),
        Expectation::AtMost(b) => (num.is_some_and(|n| n <= *b), format!("at most {b}")),
        Expectation::Between(a, b) => (
            num.is_some_and(|n| n >= *a && n <= *b),
            format!("between {a} and {b}"),
        ),
        Expectation::WithinPercentOfSource(pct) => {
            let table = p.count_table.as_deref().unwrap_or_default();
            let found = ctx
                .source_counts
                .iter()
                .find(|(k, _)| same_table(k, table))
                .map(|(_, v)| v);
            match found {
                None => (
                    false,
                    format!(
                        "within {pct}% of the rows of {table} at backup time, but the backup record has no count of {table} (add it to the policy's [backup] count_rows)"
                    ),
                ),
                Some(src) => {
                    let src = *src as f64;
                    let ok = num.is_some_and(|n| (n - src).abs() <= src * pct / 100.0);
                    (ok, format!("within {pct}% of {src:.0} (rows of {table} at backup time)"))
                }
            }
        }
        Expectation::NotOlderThan(age) => newest(v, ctx.restored_to, age.0, &age.to_string()),
        Expectation::NotOlderThanRpo => match ctx.rpo_minutes {
            Some(m) => newest(
                v,
                ctx.restored_to,
                time::Duration::minutes(m as i64),
                &format!("the RPO ({m} minutes)"),
            ),
            None => (
                false,
                "no older than the RPO, but the policy gives this database no RPO".into(),
            ),
        },
    }
}

/// `dbo.Study`, `[dbo].[Study]` and `Study` name one table.
fn same_table(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let s = s.replace(['[', ']'], "").to_ascii_lowercase();
        match s.split_once('.') {
            Some(_) => s,
            None => format!("dbo.{s}"),
        }
    };
    norm(a) == norm(b)
}

fn newest(
    v: &Value,
    restored_to: Option<PrimitiveDateTime>,
    within: time::Duration,
    said: &str,
) -> (bool, String) {
    match restored_to {
        None => (
            false,
            format!("no older than {said} before the restored point, which is not known"),
        ),
        Some(point) => {
            let limit = point - within;
            // DICOM's StudyDate is often stored as char(8) `20261125`.
            let dicom = match v {
                Value::Number(n) if (19000101.0..=99991231.0).contains(n) && n.fract() == 0.0 => {
                    let n = *n as u32;
                    time::Month::try_from((n / 100 % 100) as u8)
                        .ok()
                        .and_then(|m| {
                            time::Date::from_calendar_date((n / 10000) as i32, m, (n % 100) as u8)
                                .ok()
                        })
                        .map(Value::Date)
                }
                _ => None,
            };
            let v = dicom.as_ref().unwrap_or(v);
            let ok = match v {
                Value::Time(t) => *t >= limit,
                // A date holds anything of its day: the day of the limit is enough.
                Value::Date(d) => *d >= limit.date(),
                _ => false,
            };
            (
                ok,
                format!(
                    "no older than {} ({said} before the restored point {})",
                    super::marks::fmt_time(limit),
                    super::marks::fmt_time(point)
                ),
            )
        }
    }
}

/// The RTO check: fetch + restore + recovery against the restore test's RTO.
pub fn rto(restore_seconds: f64, rto: Option<crate::retention::Age>) -> Option<CheckResult> {
    let rto = rto?;
    let limit = rto.0.whole_seconds() as f64;
    Some(CheckResult {
        kind: "rto".into(),
        name: "RTO".into(),
        expected: format!("fetch + restore + recovery within {rto}"),
        actual: format!("{restore_seconds:.1} s"),
        ok: restore_seconds <= limit,
        error: None,
    })
}

/// The free space of the server's drives, bytes, by drive letter
/// (`xp_fixeddrives`: available on every version pacsbak supports).
pub async fn fixed_drives(instance: &Instance) -> Result<Vec<(String, u64)>> {
    let mut sql = instance.connect().await?;
    let rows = sql.rows("EXEC master.dbo.xp_fixeddrives").await?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                text(r, 0usize).unwrap_or_default().to_ascii_uppercase(),
                crate::sqlserver::conn::int(r, 1usize)
                    .and_then(|mb| u64::try_from(mb).ok())
                    .unwrap_or(0)
                    * 1024
                    * 1024,
            )
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn probe(expect: Expectation, table: Option<&str>) -> Probe {
        Probe {
            name: "p".into(),
            sql: "SELECT 1".into(),
            count_table: table.map(str::to_string),
            expect,
        }
    }

    #[test]
    fn expectations_hold_values_as_sql_server_sends_them() {
        let counts: BTreeMap<String, u64> = [("dbo.Study".to_string(), 1000)].into();
        let ctx = ProbeContext {
            restored_to: Some(datetime!(2026-11-25 03:00)),
            rpo_minutes: Some(15),
            source_counts: &counts,
        };
        let within = probe(
            Expectation::WithinPercentOfSource(5.0),
            Some("[dbo].[Study]"),
        );
        assert!(judge(&within.expect, &Value::Number(1040.0), &ctx, &within).0);
        assert!(!judge(&within.expect, &Value::Number(1060.0), &ctx, &within).0);
        let unknown = probe(Expectation::WithinPercentOfSource(5.0), Some("dbo.Series"));
        assert!(!judge(&unknown.expect, &Value::Number(1000.0), &ctx, &unknown).0);
        let rpo = probe(Expectation::NotOlderThanRpo, None);
        assert!(
            judge(
                &rpo.expect,
                &Value::Time(datetime!(2026-11-25 02:50)),
                &ctx,
                &rpo
            )
            .0
        );
        assert!(
            !judge(
                &rpo.expect,
                &Value::Time(datetime!(2026-11-25 02:40)),
                &ctx,
                &rpo
            )
            .0
        );
        // A date, and DICOM's char(8) date, are compared by day.
        assert!(
            judge(
                &rpo.expect,
                &parse_text_value("2026-11-25".into()),
                &ctx,
                &rpo
            )
            .0
        );
        assert!(
            judge(
                &rpo.expect,
                &parse_text_value("20261125".into()),
                &ctx,
                &rpo
            )
            .0
        );
        assert!(
            !judge(
                &rpo.expect,
                &parse_text_value("20261124".into()),
                &ctx,
                &rpo
            )
            .0
        );
        assert!(!judge(&rpo.expect, &Value::Null, &ctx, &rpo).0);
        let range = probe(Expectation::Between(1.0, 10.0), None);
        assert!(judge(&range.expect, &Value::Number(10.0), &ctx, &range).0);
        assert!(!judge(&range.expect, &Value::Text("ten".into()), &ctx, &range).0);
    }
}

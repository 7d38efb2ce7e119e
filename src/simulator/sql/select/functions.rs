//! `@@VERSION`, SERVERPROPERTY and the T-SQL functions registered in SQLite
//! (DB_NAME, DB_ID, GETDATE, DATEDIFF, DATEADD and the typing helpers).

use rusqlite::functions::FunctionFlags;
use rusqlite::types::ValueRef;

use super::MARK;
use crate::simulator::engine::Instance;
use crate::simulator::tds::types::Value;

/// `@@VERSION` as the simulator reports it.
pub const VERSION: &str = "Microsoft SQL Server 2019 (RTM-CU18) (KB5017593) - 15.0.4355.3 (X64) \n\tSep 10 2022 12:00:00 \n\tCopyright (C) 2019 Microsoft Corporation\n\tDeveloper Edition (64-bit) on Linux (pacsbak simulator) <X64>";

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

pub(super) fn register_functions(inst: &Instance) -> rusqlite::Result<()> {
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
    let now = crate::simulator::sql::fmt_unix(inst.now_unix());
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
                    .map(|t| crate::simulator::sql::fmt_unix(t + n * secs(&unit))))
            }
        })?;
    }
    Ok(())
}

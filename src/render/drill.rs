//! Drills as text: the record phase by phase with its checks, the list of
//! restore tests, cleanup, estimates, and `restore db fetch`'s folder and T-SQL.

use std::io::{self, Write};

use super::human_bytes;
use crate::drills::estimate::EstimateRun;
use crate::drills::{CleanupRun, DrillList, DrillRecord};
use crate::jobs::restore_db::FetchRun;

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "FAIL"
    }
}

/// Seconds as `1 h 02 min`, `3 min 05 s` or `4.2 s`.
pub fn duration(s: f64) -> String {
    let whole = s.round() as u64;
    if whole >= 3600 {
        format!("{} h {:02} min", whole / 3600, whole % 3600 / 60)
    } else if whole >= 60 {
        format!("{} min {:02} s", whole / 60, whole % 60)
    } else {
        format!("{s:.1} s")
    }
}

/// `drill run`.
pub fn record(out: &mut impl Write, r: &DrillRecord) -> io::Result<()> {
    writeln!(
        out,
        "drill {}: {} — {} ({}) from target {} into {} on {}{}",
        r.drill,
        verdict(r.ok),
        r.database,
        r.policy,
        r.target,
        r.drill_database,
        r.staging,
        if r.on_production {
            " (the PRODUCTION instance, as the restore test allows)"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "  point: {}{}",
        r.point,
        r.restored_to
            .as_deref()
            .map(|t| format!(", restored to {t}"))
            .unwrap_or_default()
    )?;
    for c in &r.chain {
        writeln!(
            out,
            "  chain: {:<4} {} ({})",
            c.kind,
            c.source,
            human_bytes(c.size)
        )?;
    }
    for p in &r.phases {
        writeln!(
            out,
            "  {:<8} {:>12}  {}  {}",
            p.phase.as_str(),
            duration(p.seconds),
            if p.ok { "ok    " } else { "FAILED" },
            p.detail
        )?;
    }
    match r.rto_seconds {
        Some(rto) => writeln!(
            out,
            "  time to restore (fetch + restore + recovery): {} against an RTO of {}",
            duration(r.restore_seconds),
            duration(rto as f64)
        )?,
        None => writeln!(
            out,
            "  time to restore (fetch + restore + recovery): {} (no RTO set)",
            duration(r.restore_seconds)
        )?,
    }
    for c in &r.checks {
        writeln!(
            out,
            "  check {} {:?}: expected {}, found {}",
            verdict(c.ok),
            c.name,
            c.expected,
            c.actual
        )?;
    }
    if let Some(e) = &r.error {
        writeln!(out, "  error: {e}")?;
    }
    writeln!(
        out,
        "  drill database: {}",
        super::html::drill_database_fate(r)
    )
}

/// `drill list`.
pub fn list(out: &mut impl Write, l: &DrillList) -> io::Result<()> {
    if l.drills.is_empty() {
        writeln!(
            out,
            "no restore tests: add one to restore-tests/ in the configuration folder"
        )?;
    }
    for d in &l.drills {
        let last = match &d.last {
            Some(x) => format!(
                "last {} at {} ({})",
                verdict(x.ok),
                x.finished,
                duration(x.restore_seconds)
            ),
            None => "never run".into(),
        };
        writeln!(
            out,
            "{:<24} {:<24} staging {:<20} {:<18} {last}",
            d.name,
            d.source,
            d.staging,
            d.schedule.as_deref().unwrap_or("(not scheduled)")
        )?;
    }
    for m in &l.leftovers {
        writeln!(
            out,
            "LEFTOVER: {} on {} from drill {} (since {}): run `pacsbak drill cleanup`",
            m.database, m.instance, m.drill, m.since
        )?;
    }
    Ok(())
}

/// `drill cleanup`.
pub fn cleanup(out: &mut impl Write, r: &CleanupRun) -> io::Result<()> {
    if r.cleaned.is_empty() && r.unknown.is_empty() {
        writeln!(out, "nothing left by earlier drills")?;
    }
    for c in &r.cleaned {
        writeln!(out, "{} on {}: {}", c.database, c.instance, c.detail)?;
    }
    for u in &r.unknown {
        writeln!(out, "NOT CLEANED: {u}")?;
    }
    Ok(())
}

/// `drill estimate`.
pub fn estimate(out: &mut impl Write, r: &EstimateRun) -> io::Result<()> {
    writeln!(
        out,
        "policy {}: a full restore of every database, now",
        r.policy
    )?;
    for t in &r.targets {
        match t.throughput {
            Some(tp) => writeln!(
                out,
                "target {}: {}/s measured by {} drill(s)",
                t.target,
                human_bytes(tp as u64),
                t.drills
            )?,
            None => writeln!(out, "target {}: no drill measured yet", t.target)?,
        }
        for d in &t.databases {
            let time = d.seconds.map(duration).unwrap_or_else(|| "unknown".into());
            let rto = match (d.rto_seconds, d.within_rto) {
                (Some(r), Some(true)) => format!(" within the RTO of {}", duration(r as f64)),
                (Some(r), Some(false)) => format!(" OVER the RTO of {}", duration(r as f64)),
                (Some(r), None) => format!(" (RTO {})", duration(r as f64)),
                (None, _) => String::new(),
            };
            writeln!(
                out,
                "  {:<20} {} in {} files: {time}{rto}",
                d.database,
                human_bytes(d.chain_bytes),
                d.chain_files
            )?;
            if let Some(n) = &d.note {
                writeln!(out, "    {n}")?;
            }
        }
        if let Some(total) = t.seconds_total {
            writeln!(
                out,
                "  all databases one after another: {}",
                duration(total)
            )?;
        }
    }
    Ok(())
}

/// `restore db fetch`.
pub fn fetch(out: &mut impl Write, r: &FetchRun) -> io::Result<()> {
    writeln!(
        out,
        "{}: {} file(s) from target {} in {}, in restore order:",
        r.database,
        r.files.len(),
        r.target,
        r.folder
    )?;
    for f in &r.files {
        writeln!(
            out,
            "  {:>2}. {:<4} {} ({})",
            f.order,
            f.kind,
            f.path,
            human_bytes(f.size)
        )?;
    }
    writeln!(out, "\nRun on the SQL Server that reads this folder:\n")?;
    for s in &r.tsql {
        writeln!(out, "{s}")?;
    }
    Ok(())
}

//! HTML pages for people who do not read JSON: the drill report a hospital IT
//! manager files as evidence (what was restored, from where, each phase against
//! the RTO, every check). One self-contained page: no scripts, no external files,
//! every value escaped.

use std::fmt::Write;

use super::drill::duration;
use super::human_bytes;
use crate::drills::DrillRecord;

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,'Microsoft YaHei',sans-serif;margin:2em;color:#222;max-width:60em}\
h1{font-size:1.5em}table{border-collapse:collapse;margin:1em 0;width:100%}\
td,th{border:1px solid #ccc;padding:.35em .6em;text-align:left;vertical-align:top}\
th{background:#f3f3f3}.pass{background:#e5f5e5;color:#185c18}.fail{background:#fbe3e3;color:#8a1010}\
.verdict{font-size:1.3em;font-weight:bold;padding:.5em 1em;display:inline-block;border-radius:4px}\
.bar{height:1em;background:#4a7fc1;display:inline-block}.rto{color:#8a1010}\
.small{color:#666;font-size:.9em}";

/// What became of the drill database, in words.
pub fn drill_database_fate(r: &DrillRecord) -> &'static str {
    let cleanup_failed = r
        .phases
        .iter()
        .any(|p| p.phase == crate::drills::PhaseName::Cleanup && !p.ok);
    if r.kept {
        "kept, as the restore test asks"
    } else if r.dropped {
        "dropped 已删除"
    } else if cleanup_failed {
        "NOT dropped: see the cleanup phase; `pacsbak drill cleanup` retries"
    } else if r
        .phases
        .iter()
        .any(|p| p.phase == crate::drills::PhaseName::Restore)
    {
        "gone before the cleanup"
    } else {
        "not created"
    }
}

/// The drill report page.
pub fn drill_report(r: &DrillRecord) -> String {
    let mut h = String::new();
    let ok_class = |ok: bool| if ok { "pass" } else { "fail" };
    let word = |ok: bool| if ok { "PASS 通过" } else { "FAIL 未通过" };
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Restore drill {} — {}</title><style>{STYLE}</style></head><body>",
        escape(&r.drill),
        escape(&r.started)
    );
    let _ = write!(
        h,
        "<h1>Restore drill 恢复演练: {}</h1><p class=\"verdict {}\">{}</p>",
        escape(&r.drill),
        ok_class(r.ok),
        word(r.ok)
    );
    if let Some(e) = &r.error {
        let _ = write!(
            h,
            "<p class=\"fail\">What stopped the drill: {}</p>",
            escape(&e.to_string())
        );
    }
    let _ = write!(h, "<h2>What was restored, from where 恢复内容</h2><table>");
    let rows: Vec<(&str, String)> = vec![
        (
            "Database 数据库",
            format!("{} (policy {})", r.database, r.policy),
        ),
        ("Read from 来源 (offsite target)", r.target.clone()),
        (
            "Restored into 恢复到",
            format!(
                "{} on {}{}",
                r.drill_database,
                r.staging,
                if r.on_production {
                    " — the PRODUCTION instance, as the restore test allows"
                } else {
                    " (staging instance)"
                }
            ),
        ),
        ("Point asked 恢复时间点", r.point.clone()),
        (
            "Point reached",
            r.restored_to.clone().unwrap_or_else(|| "—".into()),
        ),
        ("Started (UTC)", r.started.clone()),
        ("Finished (UTC)", r.finished.clone()),
        ("Bytes fetched", human_bytes(r.fetched_bytes)),
        (
            "Database size restored",
            r.restore_size
                .map(human_bytes)
                .unwrap_or_else(|| "—".into()),
        ),
        ("Afterwards", drill_database_fate(r).into()),
    ];
    for (k, v) in rows {
        let _ = write!(h, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(&v));
    }
    h.push_str("</table>");

    let _ = write!(h, "<h2>Time against the RTO 恢复时间目标</h2>");
    let scale = r
        .rto_seconds
        .map(|s| s as f64)
        .unwrap_or(0.0)
        .max(r.phases.iter().map(|p| p.seconds).sum::<f64>())
        .max(0.001);
    h.push_str(
        "<table><tr><th>Phase 阶段</th><th>Time</th><th></th><th>Result</th><th>Detail</th></tr>",
    );
    for p in &r.phases {
        let width = (p.seconds / scale * 300.0).clamp(1.0, 300.0);
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td><span class=\"bar\" style=\"width:{width:.0}px\"></span></td><td class=\"{}\">{}</td><td>{}</td></tr>",
            p.phase.as_str(),
            duration(p.seconds),
            ok_class(p.ok),
            if p.ok { "ok" } else { "failed" },
            escape(&p.detail)
        );
    }
    h.push_str("</table>");
    let _ = write!(
        h,
        "<p>Time to restore (fetch + restore + recovery): <b>{}</b>{}</p>",
        duration(r.restore_seconds),
        match r.rto_seconds {
            Some(rto) if r.restore_seconds <= rto as f64 =>
                format!(", within the RTO of {}", duration(rto as f64)),
            Some(rto) => format!(
                ", <span class=\"rto\">over the RTO of {}</span>",
                duration(rto as f64)
            ),
            None => ", no RTO set".into(),
        }
    );

    let _ = write!(h, "<h2>Checks 检查</h2>");
    if r.checks.is_empty() {
        h.push_str("<p class=\"fail\">No check ran: the database was not restored, so nothing is proven.</p>");
    } else {
        h.push_str("<table><tr><th>Check</th><th>Expected 预期</th><th>Found 实际</th><th>Result</th></tr>");
        for c in &r.checks {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"{}\">{}</td></tr>",
                escape(&c.name),
                escape(&c.expected),
                escape(&c.actual),
                ok_class(c.ok),
                word(c.ok)
            );
        }
        h.push_str("</table>");
    }

    let _ = write!(h, "<h2>Backup chain restored 备份链</h2>");
    h.push_str(
        "<table><tr><th>#</th><th>Type</th><th>Backup started</th><th>File</th><th>Size</th></tr>",
    );
    for (i, c) in r.chain.iter().enumerate() {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i + 1,
            escape(&c.kind),
            escape(c.backup_start.as_deref().unwrap_or("—")),
            escape(&c.source),
            human_bytes(c.size)
        );
    }
    h.push_str("</table>");
    let _ = write!(
        h,
        "<p class=\"small\">Written by pacsbak {}. The same record is in the journal (`pacsbak journal --job drill --json`).</p></body></html>",
        env!("CARGO_PKG_VERSION")
    );
    h.push('\n');
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}

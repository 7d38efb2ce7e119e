//! Outcomes rendered for people (text) and for scripts (JSON): the one place a
//! job's result becomes output, so the CLI, the journal, `status` and the reports
//! say the same thing the same way.

mod drill;
pub mod html;

use std::io::{self, Write};

use crate::error::ErrorRecord;
use crate::jobs::check::Severity;
use crate::jobs::db_backup::DbBackupRun;
use crate::jobs::folders::FoldersRun;
use crate::outcome::{Outcome, PlanOutcome, Status};

/// Writes `outcome` to stdout: pretty JSON with `json`, else text.
pub fn print(outcome: &Outcome, json: bool) -> io::Result<()> {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    if json {
        write_json(&mut out, outcome)
    } else {
        write_text(&mut out, outcome)
    }
}

/// Pretty JSON of any serializable value, one document, newline-terminated.
pub fn write_json<T: serde::Serialize>(out: &mut impl Write, value: &T) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// Human-readable byte counts.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn error_text(e: Option<&ErrorRecord>, otherwise: &str) -> String {
    e.map_or_else(|| otherwise.to_string(), ErrorRecord::to_string)
}

/// The text form of an outcome.
pub fn write_text(out: &mut impl Write, outcome: &Outcome) -> io::Result<()> {
    match outcome {
        Outcome::BackupDb(r) => db_run(out, r),
        Outcome::BackupFolders(r) => folders_run(out, r),
        Outcome::BackupManual(r) => {
            writeln!(out, "Manual backup: {}", r.reason)?;
            db_run(out, &r.databases)?;
            folders_run(out, &r.folders)?;
            writeln!(
                out,
                "What can be restored from where (pinned: retention keeps it until unpinned):"
            )?;
            for l in &r.restorable {
                writeln!(out, "  {l}")?;
            }
            Ok(())
        }
        Outcome::BackupFiles(report) => {
            let s = &report.summary;
            writeln!(out, "snapshot {} saved", report.snapshot_id.short())?;
            writeln!(
                out,
                "  {} files, {} folders, {} links, {} read",
                s.files,
                s.dirs,
                s.symlinks,
                human_bytes(s.bytes_read)
            )?;
            writeln!(
                out,
                "  {} new chunks ({}), {} added to the repository",
                s.new_chunks,
                human_bytes(s.new_bytes),
                human_bytes(s.added_bytes)
            )?;
            if report.adopted_packs > 0 {
                writeln!(
                    out,
                    "  reused {} packs left by an interrupted backup",
                    report.adopted_packs
                )?;
            }
            for e in &s.errors {
                writeln!(out, "  NOT backed up: {e}")?;
            }
            Ok(())
        }
        Outcome::RestoreDb(r) => {
            writeln!(
                out,
                "Restored [{}] as [{}] from the repository on {}",
                r.database, r.as_name, r.target
            )?;
            for f in &r.staged {
                writeln!(out, "  staged  {f}")?;
            }
            for s in &r.statements {
                writeln!(out, "  ran     {s}")?;
            }
            Ok(())
        }
        Outcome::RestorePlan(p) => plan(out, p),
        Outcome::Status(r) => {
            for p in &r.policies {
                status(out, p)?;
            }
            writeln!(
                out,
                "{}",
                if r.ok {
                    "PROTECTED: every database within its RPO, nothing open"
                } else {
                    "NOT PROTECTED as the policies ask: see above"
                }
            )
        }
        Outcome::Check(r) => {
            writeln!(out, "Check of policy {} on {}", r.policy, r.instance)?;
            findings(out, &r.findings)
        }
        Outcome::Maintenance(m) => {
            writeln!(out, "Retention of policy {}", m.policy)?;
            if let Some(r) = &m.retention {
                retention_run(out, r)?;
            }
            if let Some(p) = &m.prune {
                prune_run(out, p)?;
            }
            for f in &m.failures {
                writeln!(out, "  FAILED: {f}")?;
            }
            Ok(())
        }
        Outcome::Audit(r) => {
            writeln!(
                out,
                "Cleanup audit of policy {} on {}: backup folder {}",
                r.policy, r.instance, r.folder
            )?;
            for t in &r.cleanup_tasks {
                writeln!(
                    out,
                    "  plan \"{}\", {}: *.{} older than {} in {}",
                    t.plan, t.task, t.extension, t.older_than, t.folder
                )?;
            }
            if r.findings.is_empty() {
                writeln!(out, "  no findings: the cleanup matches the policy")?;
            }
            findings(out, &r.findings)
        }
        Outcome::Verify(v) => {
            let report = &v.report;
            writeln!(
                out,
                "{} snapshots, {} packs; {} packs read ({}), {} chunks checked",
                report.snapshots,
                report.packs,
                report.packs_read,
                human_bytes(report.bytes_read),
                report.chunks_checked
            )?;
            for d in &report.damaged_packs {
                writeln!(
                    out,
                    "DAMAGED pack {}: {}",
                    d.pack.get(..16).unwrap_or(&d.pack),
                    d.problem
                )?;
                writeln!(out, "  breaks snapshots: {}", d.snapshots.join(", "))?;
                for f in &d.files {
                    writeln!(out, "  breaks file: {f}")?;
                }
            }
            for m in &report.missing_chunks {
                writeln!(out, "MISSING {m}")?;
            }
            for d in &report.damaged_snapshots {
                writeln!(
                    out,
                    "DAMAGED manifest {}: {} (skipped by every command)",
                    d.id.short(),
                    d.error
                )?;
            }
            if report.unindexed_packs > 0 {
                writeln!(
                    out,
                    "{} packs are stored but not indexed (left by an interrupted backup; the next backup reuses them)",
                    report.unindexed_packs
                )?;
            }
            writeln!(
                out,
                "{}",
                if v.ok {
                    "repository OK"
                } else {
                    "repository DAMAGED"
                }
            )
        }
        Outcome::Copy(r) => {
            for t in &r.targets {
                match (&t.report, &t.error) {
                    (Some(c), _) => writeln!(
                        out,
                        "{} -> {}{}: {} snapshots copied ({} already there), {} packs, {} sent",
                        c.from,
                        c.to,
                        if c.reencrypted {
                            " (other keys: re-encrypted)"
                        } else {
                            ""
                        },
                        c.copied.len(),
                        c.already_present,
                        c.packs_sent,
                        human_bytes(c.bytes_sent)
                    )?,
                    (None, e) => writeln!(
                        out,
                        "{} -> {}: FAILED: {}",
                        r.from,
                        t.target,
                        error_text(e.as_ref(), "failed")
                    )?,
                }
            }
            Ok(())
        }
        Outcome::Retention(r) => retention_run(out, r),
        Outcome::Prune(r) => prune_run(out, r),
        Outcome::LocalCleanup(r) => {
            writeln!(
                out,
                "policy {}: local backup folder {}{}",
                r.policy,
                r.folder,
                if r.dry_run {
                    " (dry run: nothing deleted)"
                } else {
                    ""
                }
            )?;
            for f in &r.files {
                writeln!(
                    out,
                    "  {} {} ({}, {:.0} h old): {}",
                    if f.delete { "delete" } else { "keep  " },
                    f.path,
                    human_bytes(f.size),
                    f.age_hours,
                    f.reason
                )?;
            }
            writeln!(
                out,
                "  {} file(s), {} freed",
                r.deleted,
                human_bytes(r.bytes_freed)
            )?;
            for p in &r.problems {
                writeln!(out, "  PROBLEM: {p}")?;
            }
            Ok(())
        }
        Outcome::Drill(r) => drill::record(out, r),
        Outcome::DrillList(r) => drill::list(out, r),
        Outcome::DrillCleanup(r) => drill::cleanup(out, r),
        Outcome::DrillEstimate(r) => drill::estimate(out, r),
        Outcome::RestoreFetch(r) => drill::fetch(out, r),
        Outcome::Failed(f) => writeln!(out, "error: {}", f.error),
    }
}

/// `retention plan|apply`: one line per snapshot, then the totals and problems.
pub fn retention_run(
    out: &mut impl Write,
    r: &crate::jobs::retention::RetentionRun,
) -> io::Result<()> {
    for t in &r.targets {
        let Some(plan) = &t.plan else {
            writeln!(
                out,
                "target {}: FAILED: {}",
                t.target,
                error_text(t.error.as_ref(), "failed")
            )?;
            continue;
        };
        writeln!(out, "target {}:", t.target)?;
        for d in &plan.decisions {
            writeln!(
                out,
                "  {} {} {:<6} {:<40} {}{}",
                if d.keep { "keep  " } else { "remove" },
                d.snapshot.short(),
                d.kind,
                d.group,
                d.time.date(),
                format_args!(
                    " {:02}:{:02}  {}",
                    d.time.hour(),
                    d.time.minute(),
                    d.reasons.join("; ")
                )
            )?;
        }
        writeln!(
            out,
            "  {} kept, {} {}",
            plan.keep,
            plan.remove,
            if r.applied { "removed" } else { "to remove" }
        )?;
        for p in &plan.problems {
            writeln!(out, "  PROBLEM: {p}")?;
        }
    }
    Ok(())
}

/// `prune`: per target what was condemned, swept and freed.
pub fn prune_run(out: &mut impl Write, r: &crate::jobs::retention::PruneRun) -> io::Result<()> {
    for t in &r.targets {
        let Some(p) = &t.report else {
            writeln!(
                out,
                "target {}: FAILED: {}",
                t.target,
                error_text(t.error.as_ref(), "failed")
            )?;
            continue;
        };
        writeln!(
            out,
            "target {}{}: {} packs ({}) before; {} unused and {} repacked: {} condemned, {} rewritten",
            t.target,
            if p.dry_run { " (dry run: nothing changed)" } else { "" },
            p.packs_before,
            human_bytes(p.bytes_before),
            p.packs_unused,
            p.packs_repacked,
            human_bytes(p.bytes_condemned),
            human_bytes(p.bytes_rewritten)
        )?;
        if p.dry_run {
            writeln!(
                out,
                "  would free {} once swept",
                human_bytes(p.bytes_condemned.saturating_sub(p.bytes_rewritten))
            )?;
        } else {
            writeln!(
                out,
                "  swept {} mark(s): {} packs deleted, {} freed, {} rescued; now {}",
                p.marks_swept,
                p.packs_deleted,
                human_bytes(p.bytes_freed),
                p.packs_rescued,
                human_bytes(p.bytes_after)
            )?;
        }
        for m in &p.marks_pending {
            writeln!(
                out,
                "  pending: {} ({} packs) written {}: deleted once its grace period is over",
                m.object, m.packs, m.created
            )?;
        }
    }
    Ok(())
}

/// Findings of `check` and `retention audit`, each with what to do.
fn findings(out: &mut impl Write, list: &[crate::jobs::check::Finding]) -> io::Result<()> {
    for f in list {
        let sev = format!("{:?}", f.severity).to_uppercase();
        writeln!(
            out,
            "  {sev:<8} {:<14} {}{}",
            f.area,
            f.database
                .as_ref()
                .map(|d| format!("[{d}] "))
                .unwrap_or_default(),
            f.finding
        )?;
        if f.severity >= Severity::Warning {
            writeln!(out, "           do: {}", f.action)?;
        }
    }
    Ok(())
}

/// A database backup run.
pub fn db_run(out: &mut impl Write, r: &DbBackupRun) -> io::Result<()> {
    writeln!(
        out,
        "Database backups of policy {} on {}",
        r.policy, r.instance
    )?;
    for d in &r.results {
        if d.ok {
            writeln!(
                out,
                "  OK    {:<20} {:<4}{} {}  backup {:.1}s, verifyonly {:.1}s",
                d.database,
                d.kind,
                if d.copy_only { " copy-only" } else { "" },
                human_bytes(d.size),
                d.backup_seconds,
                d.verifyonly_seconds
            )?;
        } else {
            writeln!(
                out,
                "  FAIL  {:<20} {:<4} {}",
                d.database,
                d.kind,
                error_text(d.error.as_ref(), "failed")
            )?;
        }
        for n in &d.notes {
            writeln!(out, "        note: {n}")?;
        }
        for f in &d.files {
            writeln!(out, "        file: {f}")?;
        }
        for o in &d.offsite {
            writeln!(
                out,
                "        offsite {}: snapshot {} {}",
                o.target,
                o.snapshot.as_deref().unwrap_or("-"),
                if o.verified {
                    format!(
                        "stored {:.1}s, read back {:.1}s",
                        o.ingest_seconds, o.verify_seconds
                    )
                } else {
                    format!("FAILED: {}", error_text(o.error.as_ref(), "?"))
                }
            )?;
        }
    }
    Ok(())
}

/// A program folders run.
pub fn folders_run(out: &mut impl Write, r: &FoldersRun) -> io::Result<()> {
    writeln!(out, "Program folders of policy {}", r.policy)?;
    let age = |h: Option<f64>| h.map_or_else(|| "none".into(), |h| format!("{h:.1} hours ago"));
    for f in &r.results {
        match f.status {
            Status::Ok => writeln!(
                out,
                "  OK     {:<20} {}  -> {}",
                f.name,
                f.path,
                f.offsite
                    .iter()
                    .map(|o| format!("{} {}", o.target, o.snapshot.as_deref().unwrap_or("-")))
                    .collect::<Vec<_>>()
                    .join(", ")
            )?,
            Status::NotDue => writeln!(
                out,
                "  -      {:<20} {}  not due (last good copy {}; next {})",
                f.name,
                f.path,
                age(f.last_good_age_hours),
                f.next_due.as_deref().unwrap_or("-")
            )?,
            Status::Missed => writeln!(
                out,
                "  MISSED {:<20} {} ({}); last good copy: {}",
                f.name,
                f.path,
                error_text(f.error.as_ref(), "unreachable"),
                age(f.last_good_age_hours)
            )?,
            Status::Failed => writeln!(
                out,
                "  FAIL   {:<20} {}: {}",
                f.name,
                f.path,
                error_text(f.error.as_ref(), "failed")
            )?,
        }
    }
    Ok(())
}

/// A restore plan, with the RECOVERY options each step runs with.
pub fn plan(out: &mut impl Write, o: &PlanOutcome) -> io::Result<()> {
    let p = &o.plan;
    writeln!(
        out,
        "Restore plan for [{}] from {}{}",
        p.database.as_deref().unwrap_or("?"),
        o.from,
        p.at.map(|a| format!(" to {a}")).unwrap_or_default()
    )?;
    for (i, s) in p.steps.iter().enumerate() {
        let last = i + 1 == p.steps.len();
        let recovery = if last { "RECOVERY" } else { "NORECOVERY" };
        let stop = s
            .stop_at
            .map(|a| format!(", STOPAT = '{a}'"))
            .unwrap_or_default();
        writeln!(
            out,
            "  {}. {:<12} {}  (taken {}, LSN {} .. {})  WITH {}{}",
            i + 1,
            s.kind,
            s.files.join(" + "),
            s.backup_start_date.map_or("?".into(), |d| d.to_string()),
            s.first_lsn.map_or("?".into(), |l| l.to_string()),
            s.last_lsn.map_or("?".into(), |l| l.to_string()),
            recovery,
            stop
        )?;
    }
    for s in &p.skipped {
        writeln!(out, "  not used: {}: {}", s.source, s.reason)?;
    }
    for pr in &p.problems {
        writeln!(out, "  PROBLEM: {pr}")?;
    }
    writeln!(
        out,
        "  verdict: {}",
        if p.ok {
            "OK"
        } else {
            "BROKEN: the restore cannot reach its target"
        }
    )
}

/// One policy's status, as a person on call reads it.
fn status(out: &mut impl Write, p: &crate::jobs::status::StatusReport) -> io::Result<()> {
    writeln!(
        out,
        "policy {} (restores read from {})",
        p.policy,
        p.target.as_deref().unwrap_or("no reachable target")
    )?;
    for d in &p.databases {
        let rpo = d
            .rpo_minutes
            .map(|r| format!(", RPO {r} min"))
            .unwrap_or_default();
        match (&d.restorable_to, d.age_minutes) {
            (Some(t), Some(age)) => writeln!(
                out,
                "  {:<14} {} restorable to {t} ({age} min ago{rpo})",
                d.database,
                if d.rpo_met { "ok    " } else { "MISSED" }
            )?,
            _ => writeln!(out, "  {:<14} NOTHING RESTORABLE{rpo}", d.database)?,
        }
        let newest: Vec<String> = d.newest.iter().map(|(k, t)| format!("{k} {t}")).collect();
        writeln!(out, "  {:<14} newest: {}", "", newest.join(", "))?;
        for (target, lag) in &d.lag_minutes {
            match lag {
                Some(m) => writeln!(out, "  {:<14} copy on {target}: {m} min behind", "")?,
                None => writeln!(out, "  {:<14} copy on {target}: NONE", "")?,
            }
        }
    }
    for f in &p.folders {
        match f.age_hours {
            Some(h) => writeln!(out, "  folder {:<12} last good copy {h:.1} h ago", f.folder)?,
            None => writeln!(out, "  folder {:<12} never copied", f.folder)?,
        }
    }
    match &p.last_verify {
        Some((t, ok)) => writeln!(
            out,
            "  last verify {t}: {}",
            if *ok { "passed" } else { "FAILED" }
        )?,
        None => writeln!(out, "  last verify: none in the journal")?,
    }
    if let Some(share) = p.read_back_this_month_percent {
        writeln!(out, "  data read back this month: {share:.1}%")?;
    }
    for (what, t) in &p.next_runs {
        writeln!(out, "  next {what}: {t}")?;
    }
    for problem in &p.problems {
        writeln!(out, "  PROBLEM {problem}")?;
    }
    Ok(())
}

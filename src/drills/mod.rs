//! DR drills: scheduled test restores from the offsite copy into a staging
//! instance, checked, timed against the RTO, dropped afterwards and recorded
//! (docs/decisions/0012-dr-drills.md).
//!
//! `config` reads `restore-tests/*.toml`; `run` drives one drill phase by phase;
//! `checks` holds DBCC CHECKDB, the probes and the RTO; `marks` remembers what a
//! drill created so that only that is dropped; `record` is the typed outcome the
//! journal keeps and the reports render; `estimate` projects full restores from
//! the throughput drills measured.

pub mod checks;
pub mod config;
pub mod estimate;
pub mod marks;
pub mod record;
pub mod run;

use serde::Serialize;

pub use config::{DrillPoint, Expectation, Probe, RestoreTest};
pub use record::{CheckResult, DrillRecord, Phase, PhaseName};
pub use run::{run, DrillOptions};

use crate::config::ConfigDir;
use crate::error::Result;
use crate::journal::{Journal, JournalFilter};

/// The journal's `job` name of a drill.
pub const JOURNAL_JOB: &str = "drill";

/// A restore test with its last drill, for `drill list`.
#[derive(Debug, Clone, Serialize)]
pub struct DrillSummary {
    /// The restore test's name.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Policy and database restored.
    pub source: String,
    /// The staging instance.
    pub staging: String,
    /// Its schedule, if the daemon runs it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The last drill's end time and result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last: Option<LastDrill>,
}

/// The newest recorded drill of a restore test.
#[derive(Debug, Clone, Serialize)]
pub struct LastDrill {
    /// When it ended (UTC).
    pub finished: String,
    /// Passed.
    pub ok: bool,
    /// Fetch + restore + recovery, seconds.
    pub restore_seconds: f64,
}

/// `drill list`'s outcome.
#[derive(Debug, Clone, Serialize)]
pub struct DrillList {
    /// Every restore test.
    pub drills: Vec<DrillSummary>,
    /// Marks of drill databases not yet dropped (a killed drill's leftovers).
    pub leftovers: Vec<marks::DrillMark>,
    /// Every restore test's last drill passed, and nothing is left over.
    pub ok: bool,
}

/// Every drill the journal recorded, oldest first.
pub fn recorded(journal: &Journal) -> Result<Vec<DrillRecord>> {
    Ok(journal
        .list(&JournalFilter {
            job: Some(JOURNAL_JOB.into()),
            ..JournalFilter::default()
        })?
        .into_iter()
        .filter_map(|e| e.outcome)
        .filter_map(|v| serde_json::from_value::<DrillRecord>(v).ok())
        .collect())
}

/// The restore tests and what the journal says of each.
pub fn list(cfg: &ConfigDir) -> Result<DrillList> {
    let tests = RestoreTest::load_all(cfg)?;
    let history = match Journal::open(&cfg.journal_path()) {
        Ok(j) => recorded(&j)?,
        Err(_) => Vec::new(),
    };
    let drills: Vec<DrillSummary> = tests
        .iter()
        .map(|t| DrillSummary {
            name: t.name.clone(),
            description: t.description.clone(),
            source: format!("{}/{}", t.policy, t.database),
            staging: t.staging_name.clone(),
            schedule: t.schedule.as_ref().map(|c| c.as_str().to_string()),
            last: history
                .iter()
                .rev()
                .find(|r| r.drill == t.name)
                .map(|r| LastDrill {
                    finished: r.finished.clone(),
                    ok: r.ok,
                    restore_seconds: r.restore_seconds,
                }),
        })
        .collect();
    let leftovers = marks::DrillMark::load_all(&marks::marks_dir(&cfg.journal_path()))?;
    let ok = leftovers.is_empty() && drills.iter().all(|d| d.last.as_ref().is_some_and(|l| l.ok));
    Ok(DrillList {
        drills,
        leftovers,
        ok,
    })
}

/// `drill cleanup`'s outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CleanupRun {
    /// Each mark dealt with.
    pub cleaned: Vec<marks::Cleaned>,
    /// Marks whose staging instance no restore test names any more (left in place).
    pub unknown: Vec<String>,
    /// Every mark was dealt with.
    pub ok: bool,
}

/// Drops what killed drills left (the databases their marks name, and only
/// those), on every staging instance the restore tests name.
pub async fn cleanup(cfg: &ConfigDir) -> Result<CleanupRun> {
    let dir = marks::marks_dir(&cfg.journal_path());
    let tests = RestoreTest::load_all(cfg)?;
    let mut run = CleanupRun {
        cleaned: Vec::new(),
        unknown: Vec::new(),
        ok: true,
    };
    for mark in marks::DrillMark::load_all(&dir)? {
        if mark.owner_running() {
            run.unknown.push(format!(
                "{} on {}: its drill is still running (process {} on {}): left to it",
                mark.database, mark.instance, mark.pid, mark.host
            ));
            continue;
        }
        let mut instance = None;
        for t in &tests {
            let Ok(spec) = t.staging_spec() else { continue };
            let Ok(i) = crate::sqlserver::Instance::open(&spec).await else {
                continue;
            };
            if i.address() == mark.address {
                instance = Some(i);
                break;
            }
        }
        match instance {
            Some(i) => match marks::clean(&i, &mark, &dir).await {
                Ok(c) => run.cleaned.push(c),
                Err(e) => {
                    run.ok = false;
                    run.cleaned.push(marks::Cleaned {
                        database: mark.database.clone(),
                        instance: mark.instance.clone(),
                        dropped: false,
                        detail: format!("could not be dropped: {e}"),
                    });
                }
            },
            None => {
                run.ok = false;
                run.unknown.push(format!(
                    "{} on {} ({}): no restore test names that instance any more",
                    mark.database, mark.instance, mark.address
                ));
            }
        }
    }
    Ok(run)
}

/// Where drill reports go: `reports/drills/` beside the journal.
pub fn reports_dir(cfg: &ConfigDir) -> std::path::PathBuf {
    cfg.journal_path()
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default()
        .join("reports")
        .join("drills")
}

/// Writes the drill's HTML report (to `file`, or `reports/drills/NAME-TIME.html`)
/// and notes its path in the record.
pub fn save_report(
    cfg: &ConfigDir,
    rec: &mut DrillRecord,
    file: Option<&std::path::Path>,
) -> Result<std::path::PathBuf> {
    let path = match file {
        Some(f) => f.to_path_buf(),
        None => {
            let dir = reports_dir(cfg);
            std::fs::create_dir_all(&dir).map_err(|e| crate::Error::io(&dir, e))?;
            let stamp: String = rec
                .started
                .chars()
                .filter(|c| c.is_ascii_digit())
                .take(14)
                .collect();
            dir.join(format!(
                "{}-{stamp}.html",
                crate::sqlserver::restore::file_safe(&rec.drill)
            ))
        }
    };
    rec.report_file = Some(path.display().to_string());
    std::fs::write(&path, crate::render::html::drill_report(rec))
        .map_err(|e| crate::Error::io(&path, e))?;
    Ok(path)
}

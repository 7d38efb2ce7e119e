//! The typed outcome of a drill: what was restored, from where, each phase's time
//! against the RTO, every check with its result. The journal stores it as it is;
//! the text, JSON and HTML reports render it; `drill estimate` reads the
//! throughput it measured.

use serde::{Deserialize, Serialize};

use crate::error::ErrorRecord;

/// One phase of a drill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PhaseName {
    /// The chain planned from the repository's manifests.
    Plan,
    /// Room for the restore checked (configured limit, server and local free space).
    Space,
    /// The chain's files fetched from the target into the staging folder.
    Fetch,
    /// RESTORE DATABASE / LOG ... WITH NORECOVERY, every step.
    Restore,
    /// RESTORE ... WITH RECOVERY.
    Recovery,
    /// DBCC CHECKDB and the probes.
    Checks,
    /// The drill database dropped, the fetched files removed.
    Cleanup,
}

impl PhaseName {
    /// As reports spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            PhaseName::Plan => "plan",
            PhaseName::Space => "space",
            PhaseName::Fetch => "fetch",
            PhaseName::Restore => "restore",
            PhaseName::Recovery => "recovery",
            PhaseName::Checks => "checks",
            PhaseName::Cleanup => "cleanup",
        }
    }

    /// Whether the phase counts toward the time held against the RTO: the time
    /// from "we need the database" to "it is online" (fetch, restore, recovery).
    pub fn counts_for_rto(self) -> bool {
        matches!(
            self,
            PhaseName::Fetch | PhaseName::Restore | PhaseName::Recovery
        )
    }
}

/// How one phase went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Phase {
    /// Which.
    pub phase: PhaseName,
    /// Seconds it took.
    pub seconds: f64,
    /// It did what it had to.
    pub ok: bool,
    /// What it did or found, in words.
    pub detail: String,
}

/// One check of the restored database.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResult {
    /// `checkdb`, `probe` or `rto`.
    pub kind: String,
    /// Name in the report.
    pub name: String,
    /// What was expected, in words.
    pub expected: String,
    /// What was found.
    pub actual: String,
    /// Passed.
    pub ok: bool,
    /// The SQL Server error, when the check could not run or failed with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorRecord>,
}

/// One backup file of the restored chain.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChainFile {
    /// `full`, `diff` or `log`.
    pub kind: String,
    /// The planned source, `SNAPSHOT:FILE`.
    pub source: String,
    /// When the backup started (server local time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_start: Option<String>,
    /// Bytes.
    pub size: u64,
}

/// A drill, start to end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DrillRecord {
    /// The restore test (`restore-tests/NAME.toml`).
    pub drill: String,
    /// The policy whose backups were restored.
    pub policy: String,
    /// The database restored.
    pub database: String,
    /// The storage target read.
    pub target: String,
    /// The staging instance.
    pub staging: String,
    /// The staging instance is the production one (allowed by the restore test).
    pub on_production: bool,
    /// The drill database's name.
    pub drill_database: String,
    /// The point asked for: `latest`, `random` or a time.
    pub point: String,
    /// The point the restore reached (STOPAT, or the last backup's start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_to: Option<String>,
    /// When it started (UTC, RFC 3339).
    pub started: String,
    /// When it ended.
    pub finished: String,
    /// The chain restored, in order.
    pub chain: Vec<ChainFile>,
    /// Bytes the restored database's files take, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_size: Option<u64>,
    /// Bytes fetched from the target.
    pub fetched_bytes: u64,
    /// Each phase, in order.
    pub phases: Vec<Phase>,
    /// Every check.
    pub checks: Vec<CheckResult>,
    /// The RTO, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto_seconds: Option<u64>,
    /// Fetch + restore + recovery, seconds: the time held against the RTO.
    pub restore_seconds: f64,
    /// Bytes of the chain restored per second of fetch + restore + recovery:
    /// what `drill estimate` projects full restores with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput: Option<f64>,
    /// The drill database was dropped afterwards.
    pub dropped: bool,
    /// It was kept, as the restore test asked.
    pub kept: bool,
    /// The HTML report written for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_file: Option<String>,
    /// What stopped the drill, if something did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorRecord>,
    /// Restored, every check passed, within the RTO, cleaned up.
    pub ok: bool,
}

impl DrillRecord {
    /// Seconds of one phase (0 when it did not run).
    pub fn seconds(&self, phase: PhaseName) -> f64 {
        self.phases
            .iter()
            .filter(|p| p.phase == phase)
            .map(|p| p.seconds)
            .sum()
    }

    /// Every failure of the drill, for alerts: what stopped it, failed checks,
    /// a failed cleanup.
    pub fn failures(&self) -> Vec<ErrorRecord> {
        let mut out: Vec<ErrorRecord> = self.error.iter().cloned().collect();
        for c in self.checks.iter().filter(|c| !c.ok) {
            out.push(c.error.clone().unwrap_or_else(|| {
                ErrorRecord::new(
                    crate::ErrorKind::Integrity,
                    format!(
                        "drill {}: check {:?} failed: expected {}, found {}",
                        self.drill, c.name, c.expected, c.actual
                    ),
                )
            }));
        }
        for p in self.phases.iter().filter(|p| !p.ok) {
            if p.phase == PhaseName::Cleanup {
                out.push(ErrorRecord::new(
                    crate::ErrorKind::Refused,
                    format!("drill {}: cleanup: {}", self.drill, p.detail),
                ));
            }
        }
        if out.is_empty() && !self.ok {
            out.push(ErrorRecord::new(
                crate::ErrorKind::Integrity,
                format!("drill {} did not pass", self.drill),
            ));
        }
        out
    }
}

//! What a job hands back: one serializable outcome per job, with a status per item
//! and errors as data.
//!
//! The CLI renders an [`Outcome`] as text or JSON (src/render/), and the scheduler's
//! journal will store it as it is, so every consumer reads the same thing instead of
//! re-parsing printed text. Exit codes come from here and from
//! [`crate::ErrorKind::exit_code`], nowhere else.

use serde::{Deserialize, Serialize};

use crate::bakfile::RestorePlan;
use crate::error::{Error, ErrorRecord};
use crate::jobs::check::{CheckReport, Severity};
use crate::jobs::db_backup::DbBackupRun;
use crate::jobs::folders::FoldersRun;
use crate::jobs::manual::ManualRun;
use crate::jobs::restore_db::RestoreDbRun;
use crate::repository::{BackupReport, CopyReport, VerifyReport};

/// How one item of a job (a database, a folder, a target's copy) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Done and proven.
    Ok,
    /// Tried and failed: someone must look.
    Failed,
    /// Could not be reached this time (a switched-off workstation); tried again
    /// next run, and reported with the age of its last good copy.
    Missed,
    /// Not due by its schedule: nothing to do.
    NotDue,
}

impl Status {
    /// Whether this status fails the job.
    pub fn is_failure(self) -> bool {
        self == Status::Failed
    }
}

/// `copy`'s outcome for one destination.
#[derive(Debug, Serialize)]
pub struct CopyTarget {
    /// The destination target.
    pub target: String,
    /// Ok or failed.
    pub status: Status,
    /// The copy is there.
    pub ok: bool,
    /// What was copied, when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<CopyReport>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorRecord>,
}

/// `copy`'s outcome: each destination on its own.
#[derive(Debug, Serialize)]
pub struct CopyRun {
    /// The source target.
    pub from: String,
    /// Per destination.
    pub targets: Vec<CopyTarget>,
    /// Destinations that did not get their copy.
    pub failed: usize,
    /// Every destination got its copy.
    pub ok: bool,
}

/// The outcome of one job, as every command that reports returns it.
#[derive(Debug, Serialize)]
#[serde(tag = "job", rename_all = "kebab-case")]
pub enum Outcome {
    /// `backup db`.
    BackupDb(DbBackupRun),
    /// `backup folders`.
    BackupFolders(FoldersRun),
    /// `backup manual`.
    BackupManual(ManualRun),
    /// `backup files`.
    BackupFiles(BackupReport),
    /// `restore db run`.
    RestoreDb(RestoreDbRun),
    /// `restore db plan`.
    RestorePlan(PlanOutcome),
    /// `check`.
    Check(CheckReport),
    /// `verify`.
    Verify(VerifyOutcome),
    /// `copy`.
    Copy(CopyRun),
    /// `retention plan|apply`.
    Retention(crate::jobs::retention::RetentionRun),
    /// `prune`.
    Prune(crate::jobs::retention::PruneRun),
    /// The daemon's nightly retention job of one policy.
    Maintenance(crate::jobs::retention::MaintenanceRun),
    /// `retention audit`.
    Audit(crate::jobs::audit::AuditReport),
    /// `retention local`.
    LocalCleanup(crate::jobs::local_cleanup::LocalCleanupRun),
    /// `status`: one report per policy.
    Status(StatusRun),
    /// `drill run`, and the daemon's drills.
    Drill(crate::drills::DrillRecord),
    /// `drill list`.
    DrillList(crate::drills::DrillList),
    /// `drill cleanup`.
    DrillCleanup(crate::drills::CleanupRun),
    /// `drill estimate`.
    DrillEstimate(crate::drills::estimate::EstimateRun),
    /// `restore db fetch`.
    RestoreFetch(crate::jobs::restore_db::FetchRun),
    /// A job that could not run at all.
    Failed(JobFailure),
}

/// `status`'s outcome: every policy asked about.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRun {
    /// One report per policy.
    pub policies: Vec<crate::jobs::status::StatusReport>,
    /// Every policy protected: each database within its RPO, no problem open.
    pub ok: bool,
}

/// `restore db plan`'s outcome: the plan and where it was made from.
#[derive(Debug, Clone, Serialize)]
pub struct PlanOutcome {
    /// Where the backups were described from (a folder, a target's repository).
    pub from: String,
    /// The plan.
    #[serde(flatten)]
    pub plan: RestorePlan,
}

/// `verify`'s outcome.
#[derive(Debug, Serialize)]
pub struct VerifyOutcome {
    /// The target verified.
    pub target: String,
    /// What verify found.
    #[serde(flatten)]
    pub report: VerifyReport,
    /// Nothing damaged or missing.
    pub ok: bool,
}

/// A job that stopped before it had anything to report.
#[derive(Debug, Clone, Serialize)]
pub struct JobFailure {
    /// Which command (`backup db`, `verify`...).
    pub command: String,
    /// Always false.
    pub ok: bool,
    /// Why.
    pub error: ErrorRecord,
}

impl JobFailure {
    /// The failure of `command` with `error`.
    pub fn new(command: impl Into<String>, error: &Error) -> Self {
        Self {
            command: command.into(),
            ok: false,
            error: error.record(),
        }
    }
}

impl Outcome {
    /// Whether the job did everything it was asked and proved it.
    pub fn ok(&self) -> bool {
        match self {
            Outcome::BackupDb(r) => r.ok,
            Outcome::BackupFolders(r) => r.ok,
            Outcome::BackupManual(r) => r.ok,
            Outcome::BackupFiles(r) => r.summary.errors.is_empty(),
            Outcome::RestoreDb(r) => r.ok,
            Outcome::RestorePlan(p) => p.plan.ok,
            Outcome::Check(r) => r.worst < Severity::Warning,
            Outcome::Verify(v) => v.ok,
            Outcome::Copy(r) => r.ok,
            Outcome::Retention(r) => r.ok,
            Outcome::Prune(r) => r.ok,
            Outcome::LocalCleanup(r) => r.ok,
            Outcome::Maintenance(r) => r.ok,
            Outcome::Audit(r) => r.worst < Severity::Warning,
            Outcome::Status(r) => r.ok,
            Outcome::Drill(r) => r.ok,
            Outcome::DrillList(r) => r.ok,
            Outcome::DrillCleanup(r) => r.ok,
            Outcome::DrillEstimate(r) => r.ok,
            Outcome::RestoreFetch(r) => r.ok,
            Outcome::Failed(_) => false,
        }
    }

    /// The process exit code: 0 all good, 1 something was found damaged or not
    /// done, 2 the job could not run (a critical check finding counts as that: the
    /// instance cannot meet the policy as it stands).
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Failed(f) => f.error.kind.exit_code(),
            Outcome::Check(crate::jobs::check::CheckReport { worst, .. })
            | Outcome::Audit(crate::jobs::audit::AuditReport { worst, .. }) => match worst {
                Severity::Critical => 2,
                Severity::Warning => 1,
                _ => 0,
            },
            o if o.ok() => 0,
            _ => 1,
        }
    }
}

//! `drill estimate`: how long a full restore of every database of a policy would
//! take now, per target: the chain the repository holds today (its bytes) over the
//! throughput the drills measured from that target. No drill from a target, no
//! estimate: the report says so instead of guessing.

use serde::Serialize;

use super::record::DrillRecord;
use crate::bakfile::plan::{plan, PlanRequest};
use crate::config::{repository_passphrase, ConfigDir};
use crate::error::Result;
use crate::jobs::restore_db::describe_repository;
use crate::policy::Policy;
use crate::records::BackupRecord;

/// The estimate for one database on one target.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseEstimate {
    /// The database.
    pub database: String,
    /// Bytes of its newest restorable chain.
    pub chain_bytes: u64,
    /// Files in that chain.
    pub chain_files: usize,
    /// Seconds a restore would take at the measured throughput.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// The RTO a restore test gives this database, seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rto_seconds: Option<u64>,
    /// Within the RTO (when both are known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub within_rto: Option<bool>,
    /// Why there is no estimate, or what is wrong with the chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One target's estimates.
#[derive(Debug, Clone, Serialize)]
pub struct TargetEstimate {
    /// The target.
    pub target: String,
    /// Bytes per second: the median of the drills that restored from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput: Option<f64>,
    /// Drills the throughput comes from.
    pub drills: usize,
    /// Per database.
    pub databases: Vec<DatabaseEstimate>,
    /// Every database restorable within its RTO, as far as measured.
    pub seconds_total: Option<f64>,
}

/// `drill estimate`'s outcome.
#[derive(Debug, Clone, Serialize)]
pub struct EstimateRun {
    /// The policy.
    pub policy: String,
    /// Per target.
    pub targets: Vec<TargetEstimate>,
    /// Every database has an estimate and none is over its RTO.
    pub ok: bool,
}

/// The median throughput of the drills that restored from `target` (passed or
/// not: a drill over its RTO measured a slow restore, and that counts most).
pub fn measured_throughput(history: &[DrillRecord], target: &str) -> (Option<f64>, usize) {
    let mut v: Vec<f64> = history
        .iter()
        .filter(|r| r.target == target)
        .filter_map(|r| r.throughput)
        .filter(|t| t.is_finite() && *t > 0.0)
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    (v.get(n / 2).copied(), n)
}

/// Estimates a full restore of every database of `policy` from each of its targets.
pub async fn estimate(
    cfg: &ConfigDir,
    policy: &Policy,
    history: &[DrillRecord],
) -> Result<EstimateRun> {
    let tests = super::RestoreTest::load_all(cfg)?;
    let pass = repository_passphrase(&cfg.main, &cfg.dir)?;
    let names: Vec<String> = if policy.targets.is_empty() {
        vec![cfg.target(None)?.name.clone()]
    } else {
        policy.targets.clone()
    };
    let mut run = EstimateRun {
        policy: policy.name.clone(),
        targets: Vec::new(),
        ok: true,
    };
    for name in names {
        let repo = crate::jobs::open_repository(cfg.target(Some(&name))?, &pass).await?;
        let (descs, snaps) = describe_repository(&repo).await?;
        let records: std::collections::BTreeMap<String, BackupRecord> = snaps
            .iter()
            .filter_map(|s| {
                BackupRecord::from_snapshot(&s.snapshot)
                    .ok()
                    .map(|r| (s.id.short(), r))
            })
            .filter(|(_, r)| r.policy.as_deref().is_none_or(|p| p == policy.name))
            .collect();
        let mut databases: Vec<String> = records.values().map(|r| r.database.clone()).collect();
        databases.sort();
        databases.dedup();
        let (throughput, drills) = measured_throughput(history, &name);
        let mut out = Vec::new();
        for db in databases {
            let p = plan(
                &descs,
                &PlanRequest {
                    database: Some(db.clone()),
                    at: None,
                },
            );
            let files: Vec<&String> = p.steps.iter().flat_map(|s| &s.files).collect();
            let chain_bytes: u64 = files
                .iter()
                .filter_map(|src| {
                    let (short, file) = crate::jobs::restore_db::source_parts(src);
                    records
                        .get(short)?
                        .files
                        .iter()
                        .find(|f| f.name == file)
                        .map(|f| f.size)
                })
                .sum();
            let rto_seconds = tests
                .iter()
                .filter(|t| t.policy == policy.name && t.database.eq_ignore_ascii_case(&db))
                .filter_map(|t| t.rto.map(|a| a.0.whole_seconds().max(0) as u64))
                .min();
            let seconds = throughput.filter(|_| p.ok).map(|t| chain_bytes as f64 / t);
            let within_rto = match (seconds, rto_seconds) {
                (Some(s), Some(r)) => Some(s <= r as f64),
                _ => None,
            };
            let note = if !p.ok {
                Some(format!("no restorable chain: {}", p.problems.join("; ")))
            } else if throughput.is_none() {
                Some(format!("no passing drill has restored from target {name} yet: run `pacsbak drill run` to measure it"))
            } else {
                None
            };
            if seconds.is_none() || within_rto == Some(false) {
                run.ok = false;
            }
            out.push(DatabaseEstimate {
                database: db,
                chain_bytes,
                chain_files: files.len(),
                seconds,
                rto_seconds,
                within_rto,
                note,
            });
        }
        let seconds_total = out.iter().map(|d| d.seconds).sum::<Option<f64>>();
        run.targets.push(TargetEstimate {
            target: name,
            throughput,
            drills,
            databases: out,
            seconds_total,
        });
    }
    Ok(run)
}

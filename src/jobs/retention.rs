//! `retention plan|apply` and `prune`: the policies' and targets' rules applied to
//! each target's snapshots, then the space reclaimed.
//!
//! Applying removes manifests only; `prune` then deletes what no manifest needs,
//! in two phases (repository/prune.rs). Append-only targets refuse both up front:
//! their credentials cannot delete, and deleting is the maintenance host's job.

use std::collections::{HashMap, HashSet};

use serde::Serialize;
use tracing::{info, info_span, Instrument};

use crate::config::{repository_passphrase, ConfigDir, TargetConfig};
use crate::error::{Error, ErrorKind, ErrorRecord, Result};
use crate::journal::{Journal, JournalFilter};
use crate::policy::Policy;
use crate::repository::{Id, PruneOptions, PruneReport, Repository};
use crate::retention::{plan, Group, PlanInput, RuleSources, Rules, TargetPlan};

/// What `retention plan|apply` is asked.
#[derive(Debug, Clone, Default)]
pub struct RetentionRequest {
    /// Only the groups of this policy.
    pub policy: Option<String>,
    /// Only this target (default: every target the policies name).
    pub target: Option<String>,
    /// Rules for every group, in place of the configured ones (`--keep-*`).
    pub rules: Option<Rules>,
    /// Remove what the plan says.
    pub apply: bool,
}

/// One target's plan, and what applying it did.
#[derive(Debug, Clone, Serialize)]
pub struct TargetRetention {
    /// The target.
    pub target: String,
    /// The plan (absent when the target could not be read).
    pub plan: Option<TargetPlan>,
    /// Manifests removed.
    pub removed: usize,
    /// Why the target was not planned or applied.
    pub error: Option<ErrorRecord>,
}

/// `retention plan|apply`'s outcome.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionRun {
    /// Whether removals were made.
    pub applied: bool,
    /// Per target.
    pub targets: Vec<TargetRetention>,
    /// Every target planned (and applied), no problem found.
    pub ok: bool,
}

/// `prune`'s outcome for one target.
#[derive(Debug, Clone, Serialize)]
pub struct PruneTarget {
    /// The target.
    pub target: String,
    /// What prune did.
    pub report: Option<PruneReport>,
    /// Why it did not.
    pub error: Option<ErrorRecord>,
}

/// `prune`'s outcome.
#[derive(Debug, Clone, Serialize)]
pub struct PruneRun {
    /// Per target.
    pub targets: Vec<PruneTarget>,
    /// Every target pruned.
    pub ok: bool,
}

/// Every policy of the configuration folder.
pub fn load_policies(cfg: &ConfigDir) -> Result<Vec<Policy>> {
    crate::config::toml_files(&cfg.dir.join("policies"))?
        .iter()
        .map(|p| Policy::load(p, &cfg.dir))
        .collect()
}

/// The targets a request covers: the one asked for, or every target a policy
/// names (the default target when none does).
fn targets_of<'a>(
    cfg: &'a ConfigDir,
    policies: &[Policy],
    asked: Option<&str>,
) -> Result<Vec<&'a TargetConfig>> {
    if let Some(t) = asked {
        return Ok(vec![cfg.target(Some(t))?]);
    }
    let mut names: Vec<&str> = policies
        .iter()
        .flat_map(|p| p.targets.iter().map(String::as_str))
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Ok(vec![cfg.target(None)?]);
    }
    names.into_iter().map(|n| cfg.target(Some(n))).collect()
}

/// Refuses deletion on an append-only target before anything is read.
fn deletable(t: &TargetConfig, what: &str) -> Result<()> {
    if t.append_only {
        return Err(Error::new(
            ErrorKind::Refused,
            format!("target {} is append-only (append_only = true): {what} deletes, and these credentials may not; run it on the maintenance host with credentials that may delete", t.name),
        )
        .with("target", &t.name));
    }
    Ok(())
}

/// The journal's `job` of every backup: the `backup` command, and the daemon's jobs.
pub const BACKUP_JOBS: [&str; 5] = [
    "backup",
    "backup-full",
    "backup-diff",
    "backup-log",
    "backup-folders",
];

/// Snapshots whose offsite proof failed, by the journal's backup outcomes:
/// `(target, short id)`. Any object of an outcome with `target`, `snapshot` and
/// `verified: false` is one.
pub fn failed_proofs(journal: &Journal) -> Result<HashSet<(String, String)>> {
    fn walk(v: &serde_json::Value, out: &mut HashSet<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                if let (Some(t), Some(s), Some(false)) = (
                    m.get("target").and_then(|v| v.as_str()),
                    m.get("snapshot").and_then(|v| v.as_str()),
                    m.get("verified").and_then(|v| v.as_bool()),
                ) {
                    out.insert((t.to_string(), s.to_string()));
                }
                m.values().for_each(|v| walk(v, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = HashSet::new();
    for job in BACKUP_JOBS {
        for e in journal.list(&JournalFilter {
            job: Some(job.to_string()),
            ..JournalFilter::default()
        })? {
            if let Some(o) = &e.outcome {
                walk(o, &mut out);
            }
        }
    }
    Ok(out)
}

/// The rules of `group` on `target`: the policy's, and the target's own besides.
fn rules_for(
    policies: &[Policy],
    target: &TargetConfig,
    fixed: Option<&Rules>,
    group: &Group,
    policy: Option<&str>,
) -> RuleSources {
    if let Some(r) = fixed {
        // Given on the command line for every group; a target still keeps longer.
        let mut out = vec![("--keep".into(), r.clone())];
        if let Some(t) = &target.retention {
            out.push((format!("target {}", target.name), t.clone()));
        }
        return out;
    }
    let owner = policy
        .and_then(|name| policies.iter().find(|p| p.name == name))
        .or_else(|| match group {
            Group::Database { instance, .. } => {
                policies.iter().find(|p| &p.instance_name == instance)
            }
            _ => None,
        });
    let Some(owner) = owner else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(r) = &owner.retention {
        out.push((format!("policy {}", owner.name), r.clone()));
    }
    if let (false, Some(r)) = (out.is_empty(), &target.retention) {
        out.push((format!("target {}", target.name), r.clone()));
    }
    out
}

/// Plans one target (and applies the plan when asked).
async fn one_target(
    cfg: &ConfigDir,
    policies: &[Policy],
    t: &TargetConfig,
    req: &RetentionRequest,
    proofs: &HashSet<(String, String)>,
) -> Result<TargetRetention> {
    if req.apply {
        deletable(t, "retention apply")?;
    }
    let pass = repository_passphrase(&cfg.main, &cfg.dir)?;
    let repo = super::open_repository(t, &pass).await?;
    let snaps = repo.snapshots().await?;
    let mut no_good: HashMap<Id, String> = HashMap::new();
    for (id, packs) in repo.snapshots_on_damaged_packs(&snaps).await? {
        no_good.insert(id, format!("needs {} damaged pack(s)", packs.len()));
    }
    for s in &snaps {
        if proofs.contains(&(t.name.clone(), s.id.short())) {
            no_good
                .entry(s.id)
                .or_insert_with(|| "its offsite proof failed".into());
        }
    }
    // `--policy` selects whole groups: a group any of whose snapshots that policy
    // took (a chain is never planned in part).
    let of_policy = |s: &crate::repository::SnapshotRef, want: &str| {
        let (group, policy) = crate::retention::group_of(s);
        policy.as_deref() == Some(want)
            || matches!(&group, Group::Database { instance, .. }
                if policy.is_none() && policies.iter().any(|p| p.name == want && &p.instance_name == instance))
    };
    let wanted: HashSet<Group> = snaps
        .iter()
        .filter(|s| req.policy.as_deref().is_none_or(|want| of_policy(s, want)))
        .map(|s| crate::retention::group_of(s).0)
        .collect();
    let in_scope: Vec<_> = snaps
        .into_iter()
        .filter(|s| wanted.contains(&crate::retention::group_of(s).0))
        .collect();
    let clock = crate::clock::current();
    let plan = plan(
        &in_scope,
        &|g, p| rules_for(policies, t, req.rules.as_ref(), g, p),
        &PlanInput {
            target: &t.name,
            clock: &clock,
            no_good: &no_good,
        },
    );
    let mut removed = 0;
    if req.apply {
        guard_every_group_keeps_one(&plan)?;
        let ids: Vec<Id> = plan.removals().map(|d| d.snapshot).collect();
        repo.forget(&ids).await?;
        removed = ids.len();
        info!(target = %t.name, removed, "retention applied");
    }
    Ok(TargetRetention {
        target: t.name.clone(),
        plan: Some(plan),
        removed,
        error: None,
    })
}

/// The last line of defence, independent of the rules: a plan that would leave a
/// group with nothing is a bug, and nothing is removed.
fn guard_every_group_keeps_one(plan: &TargetPlan) -> Result<()> {
    let mut kept: HashMap<&str, bool> = HashMap::new();
    for d in &plan.decisions {
        *kept.entry(&d.group).or_default() |= d.keep;
    }
    if let Some((g, _)) = kept.iter().find(|(_, k)| !**k) {
        return Err(Error::new(
            ErrorKind::Internal,
            format!("the retention plan would remove every snapshot of {g}: refused, nothing was removed; please report this"),
        )
        .with("target", &plan.target));
    }
    Ok(())
}

/// `retention plan` / `retention apply`.
pub async fn run(cfg: &ConfigDir, req: &RetentionRequest) -> Result<RetentionRun> {
    let span = info_span!(
        "job",
        job = if req.apply {
            "retention apply"
        } else {
            "retention plan"
        }
    );
    async {
        let policies = load_policies(cfg)?;
        if let Some(p) = &req.policy {
            if !policies.iter().any(|x| &x.name == p) {
                return Err(
                    Error::new(ErrorKind::Config, format!("no policy named {p:?}"))
                        .with("policy", p),
                );
            }
        }
        // Without the journal no failed proof can be known: that is an error, not
        // "everything proven".
        let proofs = failed_proofs(&Journal::open(&cfg.journal_path())?)?;
        let mut targets = Vec::new();
        for t in targets_of(cfg, &policies, req.target.as_deref())? {
            targets.push(match one_target(cfg, &policies, t, req, &proofs).await {
                Ok(r) => r,
                Err(e) => TargetRetention {
                    target: t.name.clone(),
                    plan: None,
                    removed: 0,
                    error: Some(e.with("target", &t.name).record()),
                },
            });
        }
        let ok = targets
            .iter()
            .all(|t| t.error.is_none() && t.plan.as_ref().is_some_and(|p| p.problems.is_empty()));
        Ok(RetentionRun {
            applied: req.apply,
            targets,
            ok,
        })
    }
    .instrument(span)
    .await
}

/// `prune` on the target asked for, or on every target the policies name.
pub async fn prune(cfg: &ConfigDir, target: Option<&str>, opts: &PruneOptions) -> Result<PruneRun> {
    let span = info_span!("job", job = "prune", dry_run = opts.dry_run);
    async {
        let policies = load_policies(cfg)?;
        let pass = repository_passphrase(&cfg.main, &cfg.dir)?;
        let mut targets = Vec::new();
        for t in targets_of(cfg, &policies, target)? {
            let pruned = async {
                if !opts.dry_run {
                    deletable(t, "prune")?;
                }
                let repo: Repository = super::open_repository(t, &pass).await?;
                repo.prune(opts).await
            }
            .await;
            targets.push(match pruned {
                Ok(r) => PruneTarget {
                    target: t.name.clone(),
                    report: Some(r),
                    error: None,
                },
                Err(e) => PruneTarget {
                    target: t.name.clone(),
                    report: None,
                    error: Some(e.with("target", &t.name).record()),
                },
            });
        }
        Ok(PruneRun {
            ok: targets.iter().all(|t| t.error.is_none()),
            targets,
        })
    }
    .instrument(span)
    .await
}

/// What the daemon's nightly retention job of one policy did.
#[derive(Debug, Clone, Serialize)]
pub struct MaintenanceRun {
    /// The policy.
    pub policy: String,
    /// The plans applied, per target (append-only targets are left out).
    pub retention: Option<RetentionRun>,
    /// Prune of those targets.
    pub prune: Option<PruneRun>,
    /// The local folder's cleanup, when the policy has `[local_cleanup]`.
    pub local: Option<super::local_cleanup::LocalCleanupRun>,
    /// The audit of the maintenance plan's cleanup, when asked.
    pub audit: Option<super::audit::AuditReport>,
    /// Each failure and each warning or worse finding, for alerts.
    pub failures: Vec<ErrorRecord>,
    /// Nothing failed, no problem, no finding of warning or worse.
    pub ok: bool,
}

/// The daemon's nightly job for `policy`: retention applied on its targets (not the
/// append-only ones), prune with `prune` options, the local folder's cleanup, and
/// the audit when `instance` is given.
pub async fn maintenance(
    cfg: &ConfigDir,
    policy: &Policy,
    prune_opts: &PruneOptions,
    instance: Option<&crate::sqlserver::Instance>,
) -> MaintenanceRun {
    let mut failures: Vec<ErrorRecord> = Vec::new();
    let mut note = |e: Error| failures.push(e.with("policy", &policy.name).record());
    let deletable_targets: Vec<String> = match targets_of(cfg, std::slice::from_ref(policy), None) {
        Ok(ts) => ts
            .into_iter()
            .filter(|t| !t.append_only)
            .map(|t| t.name.clone())
            .collect(),
        Err(e) => {
            note(e);
            Vec::new()
        }
    };
    let mut retention: Option<RetentionRun> = None;
    let mut prune_run: Option<PruneRun> = None;
    if policy.retention.is_some() {
        for t in &deletable_targets {
            let req = RetentionRequest {
                policy: Some(policy.name.clone()),
                target: Some(t.clone()),
                rules: None,
                apply: true,
            };
            match run(cfg, &req).await {
                Ok(r) => {
                    let all = retention.get_or_insert(RetentionRun {
                        applied: true,
                        targets: Vec::new(),
                        ok: true,
                    });
                    all.ok &= r.ok;
                    all.targets.extend(r.targets);
                }
                Err(e) => note(e),
            }
            match prune(cfg, Some(t), prune_opts).await {
                Ok(p) => {
                    let all = prune_run.get_or_insert(PruneRun {
                        targets: Vec::new(),
                        ok: true,
                    });
                    all.ok &= p.ok;
                    all.targets.extend(p.targets);
                }
                Err(e) => note(e),
            }
        }
    }
    for t in retention.iter().flat_map(|r| &r.targets) {
        failures.extend(t.error.clone());
        for p in t.plan.iter().flat_map(|p| &p.problems) {
            failures.push(
                Error::new(ErrorKind::Refused, p.clone())
                    .with("target", &t.target)
                    .record(),
            );
        }
    }
    for t in prune_run.iter().flat_map(|r| &r.targets) {
        failures.extend(t.error.clone());
    }
    let local = match policy.local_cleanup_after {
        Some(_) => match super::local_cleanup::run(cfg, policy, false).await {
            Ok(l) => {
                for p in &l.problems {
                    failures.push(ErrorRecord::new(ErrorKind::Refused, p.clone()));
                }
                Some(l)
            }
            Err(e) => {
                failures.push(e.record());
                None
            }
        },
        None => None,
    };
    let audit = match instance {
        Some(i) => {
            let target = policy
                .restore_target(None)
                .and_then(|t| cfg.target(Some(t)).ok());
            let pass = repository_passphrase(&cfg.main, &cfg.dir);
            let repo = match (target, pass) {
                (Some(t), Ok(p)) => super::open_repository(t, &p).await.ok(),
                _ => None,
            };
            let lag = Journal::open(&cfg.journal_path())
                .ok()
                .and_then(|j| super::audit::offsite_lag(&j, &policy.name));
            match super::audit::run(policy, i, repo.as_ref(), lag).await {
                Ok(a) => {
                    for f in a
                        .findings
                        .iter()
                        .filter(|f| f.severity >= super::check::Severity::Warning)
                    {
                        failures.push(ErrorRecord::new(
                            ErrorKind::Refused,
                            format!("cleanup audit ({}): {} Do: {}", f.area, f.finding, f.action),
                        ));
                    }
                    Some(a)
                }
                Err(e) => {
                    failures.push(e.record());
                    None
                }
            }
        }
        None => None,
    };
    MaintenanceRun {
        policy: policy.name.clone(),
        ok: failures.is_empty(),
        retention,
        prune: prune_run,
        local,
        audit,
        failures,
    }
}

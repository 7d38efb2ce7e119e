//! The retention plan: every snapshot of a target, kept or removed, with the rule
//! that decided. Pure: it reads manifests already listed and decides; nothing here
//! touches storage.
//!
//! Per group (one database of one instance, one program folder of one policy, one
//! set of `backup files` sources):
//! - the period rules (`keep_last`, `keep_daily`...) choose among the *restore
//!   points that need no log*: full and differential backups (program-folder and
//!   files snapshots are all such points);
//! - `keep_within` keeps every backup younger than it, logs included: the
//!   point-in-time window;
//! - pinned snapshots are kept;
//! - chains are closed: a kept differential keeps its full, a kept log keeps the
//!   full, differential and logs the restore planner needs to reach it, so the log
//!   chain is never cut inside the window;
//! - the newest restorable chain (planned as `restore db plan` would, now) is kept
//!   whatever the rules say, and for folders the newest snapshot;
//! - a backup whose offsite proof failed, or that needs a pack found damaged, is
//!   no good backup: no rule counts it (an older good one is kept in its place),
//!   and only the window or a pin keeps it;
//! - a group whose clock looks wrong (a snapshot dated in the future) or that has
//!   no restorable chain keeps everything, and the plan says so as a problem.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use time::OffsetDateTime;

use super::rules::{Period, Rules};
use crate::bakfile::plan::{plan as plan_restore, BackupDescription, PlanRequest};
use crate::clock::Clock;
use crate::records::{BackupKind, BackupRecord, Tags};
use crate::repository::{Id, SnapshotKind, SnapshotRef};

/// What a group of snapshots is a history of.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Group {
    /// One database of one instance.
    Database {
        /// The instance's name in the policy.
        instance: String,
        /// The database.
        database: String,
    },
    /// One program folder of one policy.
    Folder {
        /// The policy.
        policy: String,
        /// The folder's name in it.
        folder: String,
    },
    /// `backup files` of the same sources from the same host.
    Files {
        /// The host that took them.
        hostname: String,
        /// The sources, as given.
        sources: String,
    },
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Group::Database { instance, database } => write!(f, "database {instance}/{database}"),
            Group::Folder { policy, folder } => write!(f, "folder {policy}/{folder}"),
            Group::Files { hostname, sources } => write!(f, "files {hostname}:{sources}"),
        }
    }
}

/// The group of a snapshot, and the policy that took it when it says.
pub fn group_of(s: &SnapshotRef) -> (Group, Option<String>) {
    let snap = &s.snapshot;
    let tags = Tags(&snap.tags);
    if snap.kind == SnapshotKind::SqlBackup {
        if let Ok(r) = BackupRecord::from_snapshot(snap) {
            return (
                Group::Database {
                    instance: r.instance,
                    database: r.database,
                },
                r.policy.or_else(|| tags.policy()),
            );
        }
    }
    if let (Some(policy), Some(folder)) = (tags.policy(), tags.folder()) {
        return (
            Group::Folder {
                policy: policy.clone(),
                folder,
            },
            Some(policy),
        );
    }
    (
        Group::Files {
            hostname: snap.hostname.clone(),
            sources: snap
                .sources
                .iter()
                .map(|r| r.path.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        },
        tags.policy(),
    )
}

/// The rules a group is kept by: each with where it comes from (`policy pacs`,
/// `target nas`), OR-ed. Empty: no rules cover the group, and it keeps everything.
pub type RuleSources = Vec<(String, Rules)>;

/// What the planner needs besides the snapshots.
pub struct PlanInput<'a> {
    /// The target's name, for the plan.
    pub target: &'a str,
    /// The clock: `now` for the window, the zone for the periods.
    pub clock: &'a Clock,
    /// Snapshots that are no good backup, with why (a failed offsite proof, a
    /// damaged pack).
    pub no_good: &'a HashMap<Id, String>,
}

/// One snapshot's fate.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// The snapshot id.
    pub snapshot: Id,
    /// When it was taken.
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
    /// Its group, as text.
    pub group: String,
    /// `full`, `diff`, `log`, `folder` or `files`.
    pub kind: String,
    /// Pinned (a manual backup, a rollback point).
    pub pinned: bool,
    /// Kept or removed.
    pub keep: bool,
    /// Each rule that keeps it, or why nothing does.
    pub reasons: Vec<String>,
}

/// The plan for one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetPlan {
    /// The target.
    pub target: String,
    /// Every snapshot, oldest first.
    pub decisions: Vec<Decision>,
    /// Snapshots kept.
    pub keep: usize,
    /// Snapshots to remove.
    pub remove: usize,
    /// What is wrong (a clock in the future, a group with no restorable chain, a
    /// broken log chain inside the window): said loudly; the groups concerned keep
    /// everything.
    pub problems: Vec<String>,
}

impl TargetPlan {
    /// The snapshots to remove.
    pub fn removals(&self) -> impl Iterator<Item = &Decision> {
        self.decisions.iter().filter(|d| !d.keep)
    }
}

/// Plans retention for the snapshots of one target.
pub fn plan(
    snapshots: &[SnapshotRef],
    rules_of: &dyn Fn(&Group, Option<&str>) -> RuleSources,
    input: &PlanInput<'_>,
) -> TargetPlan {
    let mut groups: BTreeMap<Group, (Option<String>, Vec<&SnapshotRef>)> = BTreeMap::new();
    for s in snapshots {
        let (g, policy) = group_of(s);
        let entry = groups.entry(g).or_insert((None, Vec::new()));
        if policy.is_some() {
            entry.0 = policy;
        }
        entry.1.push(s);
    }
    let mut decisions = Vec::new();
    let mut problems = Vec::new();
    for (group, (policy, mut snaps)) in groups {
        snaps.sort_by_key(|s| (s.snapshot.time, s.id));
        let rules = rules_of(&group, policy.as_deref());
        decisions.extend(plan_group(&group, &snaps, &rules, input, &mut problems));
    }
    decisions.sort_by_key(|d| (d.time, d.snapshot));
    let keep = decisions.iter().filter(|d| d.keep).count();
    TargetPlan {
        target: input.target.to_string(),
        remove: decisions.len() - keep,
        keep,
        decisions,
        problems,
    }
}

/// Why each snapshot of one group is kept (empty: removed).
struct Keeps(HashMap<Id, Vec<String>>);

impl Keeps {
    fn add(&mut self, id: Id, why: impl Into<String>) {
        let why = why.into();
        let v = self.0.entry(id).or_default();
        if !v.contains(&why) {
            v.push(why);
        }
    }
}

fn plan_group(
    group: &Group,
    snaps: &[&SnapshotRef],
    rules: &RuleSources,
    input: &PlanInput<'_>,
    problems: &mut Vec<String>,
) -> Vec<Decision> {
    let now = input.clock.now();
    let records: HashMap<Id, BackupRecord> = snaps
        .iter()
        .filter_map(|s| Some((s.id, BackupRecord::from_snapshot(&s.snapshot).ok()?)))
        .collect();
    let kind_of = |s: &SnapshotRef| -> String {
        match records.get(&s.id) {
            Some(r) => r.kind.as_str().to_string(),
            None => match group {
                Group::Folder { .. } => "folder".into(),
                _ if s.snapshot.kind == SnapshotKind::SqlBackup => "unreadable".into(),
                _ => "files".into(),
            },
        }
    };
    let mut keeps = Keeps(HashMap::new());
    let keep_all = |why: String, keeps: &mut Keeps| {
        for s in snaps {
            keeps.add(s.id, why.clone());
        }
    };

    let future: Vec<&&SnapshotRef> = snaps.iter().filter(|s| s.is_future_dated(now)).collect();
    if let Some(f) = future.first() {
        problems.push(format!(
            "{group}: snapshot {} is dated {}, in the future by this machine's clock: a clock is wrong; nothing of this group is removed until it is fixed",
            f.id.short(),
            f.snapshot.time
        ));
        keep_all(
            "kept: a snapshot of this group is dated in the future".into(),
            &mut keeps,
        );
    }
    if rules.is_empty() {
        keep_all(
            "kept: no retention rules cover this group".into(),
            &mut keeps,
        );
    }
    let good = |s: &SnapshotRef| !input.no_good.contains_key(&s.id);

    // Pins and the window.
    for s in snaps {
        if s.snapshot.pinned {
            keeps.add(s.id, "pinned");
        }
        for (source, r) in rules {
            if let Some(w) = r.keep_within {
                if s.snapshot.time > now - w.0 {
                    keeps.add(s.id, format!("keep_within {w} ({source})"));
                }
            }
        }
    }

    // Period rules over restore points that need no log, newest first.
    let points: Vec<&&SnapshotRef> = snaps
        .iter()
        .rev()
        .filter(|s| good(s))
        .filter(|s| records.get(&s.id).is_none_or(|r| r.kind != BackupKind::Log))
        .collect();
    for (source, r) in rules {
        for (period, count) in r.periods() {
            let mut left = count;
            let mut last: Option<String> = None;
            for s in &points {
                if left == 0 {
                    break;
                }
                let bucket = period.bucket(input.clock.local(s.snapshot.time));
                if bucket.is_some() && bucket == last {
                    continue;
                }
                let label = match (&bucket, period) {
                    (Some(b), _) => format!("{} {b} ({source})", period.key()),
                    (None, Period::Last) => {
                        format!("{} #{} ({source})", period.key(), count - left + 1)
                    }
                    (None, _) => period.key().to_string(),
                };
                keeps.add(s.id, label);
                last = bucket;
                left -= 1;
            }
        }
    }

    let problems_before = problems.len();
    match group {
        Group::Database { database, .. } => close_chains(
            database, snaps, &records, &good, &mut keeps, problems, group,
        ),
        _ => {
            if let Some(newest) = snaps
                .iter()
                .rev()
                .find(|s| good(s) && !s.is_future_dated(now))
            {
                keeps.add(newest.id, "newest good snapshot");
            }
        }
    }
    // Any problem found in the group keeps all of it: the rules cannot be trusted
    // to know what a broken chain still needs.
    if problems.len() > problems_before {
        for s in snaps {
            keeps.add(s.id, "kept: this group has a problem (see problems)");
        }
    }

    snaps
        .iter()
        .map(|s| {
            let mut reasons = keeps.0.remove(&s.id).unwrap_or_default();
            let keep = !reasons.is_empty();
            if let Some(why) = input.no_good.get(&s.id) {
                reasons.push(format!("no good backup ({why}): no rule counts it"));
            }
            if !keep {
                reasons.push("no rule keeps it".into());
            }
            Decision {
                snapshot: s.id,
                time: s.snapshot.time,
                group: group.to_string(),
                kind: kind_of(s),
                pinned: s.snapshot.pinned,
                keep,
                reasons,
            }
        })
        .collect()
}

/// Keeps what the kept backups of one database need to be restored: the full of a
/// differential, the chain the planner builds to a log, and the newest chain.
fn close_chains(
    database: &str,
    snaps: &[&SnapshotRef],
    records: &HashMap<Id, BackupRecord>,
    good: &dyn Fn(&SnapshotRef) -> bool,
    keeps: &mut Keeps,
    problems: &mut Vec<String>,
    group: &Group,
) {
    // The same backup stored twice is one backup to the planner; a twin of a kept
    // snapshot is kept with it.
    let mut twins: HashMap<String, Vec<Id>> = HashMap::new();
    for s in snaps {
        if let Some(k) = s.snapshot.twin_key() {
            twins.entry(k).or_default().push(s.id);
        }
    }
    let descriptions: Vec<BackupDescription> = {
        let mut seen = HashSet::new();
        snaps
            .iter()
            .filter(|s| good(s))
            .filter(|s| s.snapshot.twin_key().is_none_or(|k| seen.insert(k)))
            .flat_map(|s| {
                crate::jobs::restore_db::describe_snapshot(s)
                    .into_iter()
                    .map(|mut d| {
                        let file = d.source.split_once(':').map(|x| x.1).unwrap_or_default();
                        d.source = format!("{}:{file}", s.id.to_hex());
                        d
                    })
            })
            .collect()
    };
    let by_hex: HashMap<String, Id> = snaps.iter().map(|s| (s.id.to_hex(), s.id)).collect();
    let plan_to = |at: Option<crate::bakfile::MtfDate>| {
        plan_restore(
            &descriptions,
            &PlanRequest {
                database: Some(database.to_string()),
                at,
            },
        )
    };
    let steps_of = |p: &crate::bakfile::plan::RestorePlan| -> Vec<Id> {
        p.steps
            .iter()
            .flat_map(|st| st.files.iter())
            .filter_map(|src| by_hex.get(src.split_once(':')?.0).copied())
            .collect()
    };

    let newest = plan_to(None);
    if newest.ok {
        for id in steps_of(&newest) {
            keeps.add(id, "newest restorable chain");
        }
    } else {
        problems.push(format!(
            "{group}: no restorable chain ({}); nothing of this group is removed until there is one",
            newest.problems.join("; ")
        ));
        for s in snaps {
            keeps.add(s.id, "kept: the group has no restorable chain");
        }
    }

    // Differentials keep their full.
    let kept: Vec<&&SnapshotRef> = snaps
        .iter()
        .filter(|s| keeps.0.contains_key(&s.id))
        .collect();
    for s in &kept {
        let Some(r) = records.get(&s.id) else {
            continue;
        };
        if r.kind == BackupKind::Diff {
            // Its full, good or not: without it the differential is useless.
            let base = snaps.iter().find(|f| {
                records.get(&f.id).is_some_and(|fr| {
                    fr.kind == BackupKind::Full
                        && !fr.copy_only
                        && fr.checkpoint_lsn == r.database_backup_lsn
                })
            });
            match base {
                Some(f) => keeps.add(f.id, format!("base of differential {}", s.id.short())),
                None => problems.push(format!(
                    "{group}: differential {} is kept but its full backup is not here",
                    s.id.short()
                )),
            }
        }
    }
    // Logs keep the chain that reaches them. The window's logs form one chain: it is
    // planned to the oldest of them, the younger ones being kept by the window.
    let mut oldest_window_log_done = false;
    for s in &kept {
        let Some(r) = records.get(&s.id) else {
            continue;
        };
        if r.kind != BackupKind::Log || r.copy_only || !good(s) {
            continue;
        }
        let reasons = keeps.0.get(&s.id).cloned().unwrap_or_default();
        let by_window = reasons.iter().all(|w| w.starts_with("keep_within"));
        if by_window && oldest_window_log_done {
            continue;
        }
        oldest_window_log_done |= by_window;
        let p = plan_to(r.backup_start);
        if !p.ok {
            problems.push(format!(
                "{group}: log backup {} is kept but cannot be restored: {}",
                s.id.short(),
                p.problems.join("; ")
            ));
        }
        for id in steps_of(&p) {
            if id != s.id {
                keeps.add(id, format!("chain to log {}", s.id.short()));
            }
        }
    }
    // A kept snapshot keeps its twins.
    for ids in twins.values() {
        if let Some(kept) = ids.iter().find(|id| keeps.0.contains_key(id)) {
            let short = kept.short();
            for id in ids {
                if id != kept {
                    keeps.add(*id, format!("twin of {short}"));
                }
            }
        }
    }
}

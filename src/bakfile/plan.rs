//! The restore planner: which backups to restore, in which order, by LSN.
//!
//! It works on [`BackupDescription`]s, not on files, so the same rules plan from a
//! folder of `.bak`/`.trn` files today and from the offsite repository's manifests
//! later. The rules are those of ../shared/spec/sqlserver.md:
//!
//! 1. the newest complete full backup (taken no later than `--at`);
//! 2. the newest differential whose DatabaseBackupLSN is that full's CheckpointLSN;
//! 3. the logs after it: the first with FirstLSN <= restored LastLSN < LastLSN, each
//!    next one starting at the previous LastLSN; STOPAT on the last when `--at` is
//!    given;
//! 4. a set striped over several files needs every file.
//!
//! Anything that stands in the way is reported by name, never papered over: gaps,
//! missing stripes, differentials on a base that is not there, files of other
//! databases, damaged or incomplete files.

use std::collections::BTreeMap;

use serde::Serialize;

use super::header::{BackupType, Lsn};
use super::mtf::MtfDate;
use super::reader::BackupFile;
use crate::records::BackupKind;

/// One backup (one file, or one stripe of a striped set), from wherever it is
/// described: a file's headers or a repository manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupDescription {
    /// Where it comes from: a path or a repository object name.
    pub source: String,
    /// HEADERONLY's DatabaseName; a plan covers one database (compared
    /// case-insensitively).
    pub database_name: String,
    /// HEADERONLY's ServerName; shown, not used by the rules.
    pub server_name: String,
    /// The set's type as the file or record says; types pacsbak does not restore
    /// (file, partial) are reported, not planned.
    pub backup_type: BackupType,
    /// The set's Position in its file (RESTORE's `FILE =`).
    pub position: u16,
    /// FirstLSN; a backup without First/LastLSN is skipped.
    pub first_lsn: Option<Lsn>,
    /// LastLSN: where the restore stands after applying it.
    pub last_lsn: Option<Lsn>,
    /// CheckpointLSN: picks the newest full; differentials point at it.
    pub checkpoint_lsn: Option<Lsn>,
    /// DatabaseBackupLSN: for a differential, the CheckpointLSN of its base full.
    pub database_backup_lsn: Option<Lsn>,
    /// BackupStartDate, compared with `--at`; without one a set is not used when
    /// `--at` is given.
    pub backup_start_date: Option<MtfDate>,
    /// Media families (files) the set is striped over, 1 when not striped.
    pub family_count: u16,
    /// This file's family number, 1-based.
    pub family_sequence: u16,
    /// The media set, to tell two stripes of one set from two copies.
    pub media_set_id: Option<String>,
    /// Damaged or incomplete: not to be used.
    pub unusable: Option<String>,
}

impl BackupDescription {
    /// The descriptions of every set in an inspected file.
    pub fn from_file(f: &BackupFile) -> Vec<BackupDescription> {
        let damaged = (!f.damage.is_empty()).then(|| {
            f.damage
                .first()
                .map(|d| d.what.clone())
                .unwrap_or_else(|| "damaged".into())
        });
        f.sets
            .iter()
            .map(|s| BackupDescription {
                source: f.path.clone(),
                database_name: s.header.database_name.clone(),
                server_name: s.header.server_name.clone(),
                backup_type: s.kind.unwrap_or(BackupType::Other(b'?')),
                position: s.header.position,
                first_lsn: s.header.first_lsn,
                last_lsn: s.header.last_lsn,
                checkpoint_lsn: s.header.checkpoint_lsn,
                database_backup_lsn: s.header.database_backup_lsn,
                backup_start_date: s.header.backup_start_date,
                family_count: f.media.family_count.max(1),
                family_sequence: f.media.family_sequence.max(1),
                media_set_id: f.media.media_set_id.clone(),
                unusable: if s.complete {
                    damaged.clone()
                } else {
                    Some("incomplete: ends before ESET".into())
                },
            })
            .collect()
    }

    fn kind(&self) -> Option<BackupKind> {
        self.backup_type.native()
    }
}

/// What to plan for.
#[derive(Debug, Clone, Default)]
pub struct PlanRequest {
    /// The database; required when the descriptions hold several.
    pub database: Option<String>,
    /// Restore to this point in time (server local time, like the backup dates).
    pub at: Option<MtfDate>,
}

/// One RESTORE statement of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanStep {
    /// Full, differential or log.
    pub kind: BackupKind,
    /// Every file of the set, in family order.
    pub files: Vec<String>,
    /// The set's Position in each file (RESTORE's `FILE =`).
    pub position: u16,
    /// The set's FirstLSN.
    pub first_lsn: Option<Lsn>,
    /// The set's LastLSN.
    pub last_lsn: Option<Lsn>,
    /// The set's BackupStartDate.
    pub backup_start_date: Option<MtfDate>,
    /// STOPAT for the last log when a point in time was asked for.
    pub stop_at: Option<MtfDate>,
}

/// A backup that is not part of the plan, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// The file left out (a striped set's files joined by ` + `).
    pub source: String,
    /// Why, in words.
    pub reason: String,
}

/// The planner's answer.
#[derive(Debug, Clone, Serialize)]
pub struct RestorePlan {
    /// The database planned for: as asked, or the only one found; `None` when
    /// none could be chosen.
    pub database: Option<String>,
    /// The point in time asked for (`--at`).
    pub at: Option<MtfDate>,
    /// The RESTORE statements in order: full, differential if any, logs.
    pub steps: Vec<PlanStep>,
    /// What breaks the plan: with any of these the restore cannot reach its target.
    pub problems: Vec<String>,
    /// Backups left out, each with its reason (notes, not failures).
    pub skipped: Vec<Skipped>,
    /// Steps exist and nothing breaks them.
    pub ok: bool,
}

/// One backup set, with all of its stripes found so far.
#[derive(Debug, Clone)]
struct SetGroup {
    first: BackupDescription,
    stripes: BTreeMap<u16, String>,
}

impl SetGroup {
    fn missing(&self) -> Vec<u16> {
        (1..=self.first.family_count.max(1))
            .filter(|n| !self.stripes.contains_key(n))
            .collect()
    }

    fn step(&self, kind: BackupKind, stop_at: Option<MtfDate>) -> PlanStep {
        let d = &self.first;
        PlanStep {
            kind,
            files: self.stripes.values().cloned().collect(),
            position: d.position,
            first_lsn: d.first_lsn,
            last_lsn: d.last_lsn,
            backup_start_date: d.backup_start_date,
            stop_at,
        }
    }

    fn name(&self) -> String {
        let files: Vec<&str> = self.stripes.values().map(String::as_str).collect();
        files.join(" + ")
    }
}

/// Plans a restore from backup descriptions.
pub fn plan(descriptions: &[BackupDescription], req: &PlanRequest) -> RestorePlan {
    let mut plan = RestorePlan {
        database: req.database.clone(),
        at: req.at,
        steps: Vec::new(),
        problems: Vec::new(),
        skipped: Vec::new(),
        ok: false,
    };
    let mut databases: Vec<String> = descriptions
        .iter()
        .map(|d| d.database_name.clone())
        .collect();
    databases.sort();
    databases.dedup();
    let database = match &req.database {
        Some(d) => d.clone(),
        None if databases.len() == 1 => databases[0].clone(),
        None if databases.is_empty() => {
            plan.problems.push("no backups found".into());
            return plan;
        }
        None => {
            plan.problems.push(format!(
                "backups of several databases ({}): choose one with --database",
                databases.join(", ")
            ));
            return plan;
        }
    };
    plan.database = Some(database.clone());

    // Group stripes into sets; note other databases and unusable files.
    let mut groups: Vec<SetGroup> = Vec::new();
    for d in descriptions {
        if !d.database_name.eq_ignore_ascii_case(&database) {
            plan.skipped.push(Skipped {
                source: d.source.clone(),
                reason: format!("backup of another database: {}", d.database_name),
            });
            continue;
        }
        if let Some(why) = &d.unusable {
            plan.skipped.push(Skipped {
                source: d.source.clone(),
                reason: format!("not usable: {why}"),
            });
            continue;
        }
        if d.first_lsn.is_none() || d.last_lsn.is_none() {
            plan.skipped.push(Skipped {
                source: d.source.clone(),
                reason: "no LSNs in the header".into(),
            });
            continue;
        }
        let same = groups.iter_mut().find(|g| {
            let f = &g.first;
            f.backup_type == d.backup_type
                && f.first_lsn == d.first_lsn
                && f.last_lsn == d.last_lsn
                && f.checkpoint_lsn == d.checkpoint_lsn
                && f.backup_start_date == d.backup_start_date
                && f.family_count == d.family_count
                && !g.stripes.contains_key(&d.family_sequence)
        });
        match same {
            Some(g) => {
                g.stripes.insert(d.family_sequence, d.source.clone());
            }
            None => {
                let mut stripes = BTreeMap::new();
                stripes.insert(d.family_sequence, d.source.clone());
                groups.push(SetGroup {
                    first: d.clone(),
                    stripes,
                });
            }
        }
    }
    let mut complete: Vec<SetGroup> = Vec::new();
    for g in groups {
        let missing = g.missing();
        if missing.is_empty() {
            complete.push(g);
        } else {
            let nums: Vec<String> = missing.iter().map(u16::to_string).collect();
            plan.skipped.push(Skipped {
                source: g.name(),
                reason: format!(
                    "{} backup striped over {} files: file(s) {} of the set are missing",
                    g.first.backup_type,
                    g.first.family_count,
                    nums.join(", ")
                ),
            });
        }
    }
    let in_time = |g: &SetGroup| match (req.at, g.first.backup_start_date) {
        (Some(at), Some(start)) => start <= at,
        (Some(_), None) => false,
        (None, _) => true,
    };

    // Differentials whose full backup is not among the descriptions.
    let fulls: Vec<Option<Lsn>> = complete
        .iter()
        .filter(|g| g.first.kind() == Some(BackupKind::Full))
        .map(|g| g.first.checkpoint_lsn)
        .collect();
    let mut foreign: Vec<String> = Vec::new();
    for g in complete
        .iter()
        .filter(|g| g.first.kind() == Some(BackupKind::Diff))
    {
        if !fulls.contains(&g.first.database_backup_lsn) {
            foreign.push(g.name());
            plan.skipped.push(Skipped {
                source: g.name(),
                reason: format!(
                    "differential on a base that is not here: its full backup has CheckpointLSN {}",
                    g.first
                        .database_backup_lsn
                        .map_or("?".into(), |l| l.to_string())
                ),
            });
        }
    }

    // 1. The newest full.
    let full = complete
        .iter()
        .filter(|g| g.first.kind() == Some(BackupKind::Full) && in_time(g))
        .max_by_key(|g| (g.first.checkpoint_lsn, g.first.last_lsn))
        .cloned();
    let Some(full) = full else {
        plan.problems.push(match req.at {
            Some(at) => format!("no complete full backup of {database} taken at or before {at}"),
            None => format!("no complete full backup of {database}"),
        });
        skip_rest(&mut plan, &complete, &foreign);
        return plan;
    };
    let mut used: Vec<String> = vec![full.name()];
    let mut steps = vec![full.clone()];

    // 2. The newest differential on it.
    let diff = complete
        .iter()
        .filter(|g| {
            g.first.kind() == Some(BackupKind::Diff)
                && g.first.database_backup_lsn == full.first.checkpoint_lsn
                && in_time(g)
        })
        .max_by_key(|g| g.first.last_lsn)
        .cloned();
    if let Some(d) = diff {
        used.push(d.name());
        steps.push(d);
    }

    // 3. Logs, by LSN.
    let mut logs: Vec<&SetGroup> = complete
        .iter()
        .filter(|g| g.first.kind() == Some(BackupKind::Log))
        .collect();
    logs.sort_by_key(|g| (g.first.first_lsn, g.first.last_lsn));
    let mut restored = steps.last().and_then(|g| g.first.last_lsn);
    let mut log_steps: Vec<SetGroup> = Vec::new();
    // A point that is the start of the last full or differential is that backup.
    let mut reached_at =
        req.at.is_some() && steps.last().and_then(|g| g.first.backup_start_date) == req.at;
    loop {
        if req.at.is_some() && reached_at {
            break;
        }
        let next = logs.iter().find(|g| {
            let (f, l) = (g.first.first_lsn, g.first.last_lsn);
            f <= restored && restored < l
        });
        let Some(next) = next else { break };
        if let (Some(at), Some(start)) = (req.at, next.first.backup_start_date) {
            if start >= at {
                reached_at = true;
            }
        }
        restored = next.first.last_lsn;
        used.push(next.name());
        log_steps.push((*next).clone());
    }
    for g in &logs {
        if used.contains(&g.name()) {
            continue;
        }
        let (f, l) = (g.first.first_lsn, g.first.last_lsn);
        let reason = if f == l && l <= restored {
            "log backup with no log records (FirstLSN = LastLSN): nothing to apply".to_string()
        } else if l <= restored {
            "log backup older than the restored point: not needed".to_string()
        } else if reached_at {
            "log backup after the point in time: not needed".to_string()
        } else {
            let problem = format!(
                "log chain broken: the restore reaches LSN {} but the next log backup {} starts at FirstLSN {}",
                restored.map_or("?".into(), |l| l.to_string()),
                g.name(),
                f.map_or("?".into(), |l| l.to_string())
            );
            if !plan
                .problems
                .iter()
                .any(|p| p.starts_with("log chain broken"))
            {
                plan.problems.push(problem);
            }
            "after a gap in the log chain".to_string()
        };
        plan.skipped.push(Skipped {
            source: g.name(),
            reason,
        });
    }
    if let Some(at) = req.at {
        if !reached_at {
            let last = log_steps
                .last()
                .or(steps.last())
                .and_then(|g| g.first.backup_start_date);
            plan.problems.push(format!(
                "no log backup reaches {at}: the newest backup in the chain was taken {}",
                last.map_or("?".into(), |d| d.to_string())
            ));
        }
    }
    let n_logs = log_steps.len();
    let mut out: Vec<PlanStep> = steps
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let kind = if i == 0 {
                BackupKind::Full
            } else {
                BackupKind::Diff
            };
            g.step(kind, None)
        })
        .collect();
    for (i, g) in log_steps.iter().enumerate() {
        let stop = if i + 1 == n_logs && reached_at {
            req.at
        } else {
            None
        };
        out.push(g.step(BackupKind::Log, stop));
    }
    plan.steps = out;
    let unused: Vec<&SetGroup> = complete
        .iter()
        .filter(|g| g.first.kind() != Some(BackupKind::Log) && !used.contains(&g.name()))
        .collect();
    for g in unused {
        let reason = match g.first.kind() {
            Some(BackupKind::Full) => "older full backup: a newer one is used".to_string(),
            Some(BackupKind::Diff) if g.first.database_backup_lsn == full.first.checkpoint_lsn => {
                "older differential: the newest one on the same base is used".to_string()
            }
            Some(BackupKind::Diff) if fulls.contains(&g.first.database_backup_lsn) => {
                "differential on another full backup".to_string()
            }
            Some(BackupKind::Diff) => continue,
            _ => format!("{} backup: not planned", g.first.backup_type),
        };
        plan.skipped.push(Skipped {
            source: g.name(),
            reason,
        });
    }
    plan.ok = plan.problems.is_empty() && !plan.steps.is_empty();
    plan
}

fn skip_rest(plan: &mut RestorePlan, groups: &[SetGroup], used: &[String]) {
    for g in groups {
        if !used.contains(&g.name()) {
            plan.skipped.push(Skipped {
                source: g.name(),
                reason: "no full backup to start from".into(),
            });
        }
    }
}

/// Describes every backup file directly in `dir` (not recursing); files that are
/// not backups, or not readable, come back as skipped with the reason.
pub fn describe_folder(
    dir: &std::path::Path,
) -> crate::error::Result<(Vec<BackupDescription>, Vec<Skipped>)> {
    let entries = std::fs::read_dir(dir).map_err(|e| crate::Error::io(dir, e))?;
    let mut paths = Vec::new();
    for e in entries {
        let e = e.map_err(|e| crate::Error::io(dir, e))?;
        if std::fs::metadata(e.path())
            .map(|m| m.is_file())
            .unwrap_or(false)
        {
            paths.push(e.path());
        }
    }
    paths.sort();
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for p in paths {
        match super::reader::inspect(&p) {
            Ok(f) => out.extend(BackupDescription::from_file(&f)),
            Err(e) => {
                if e.kind() == crate::ErrorKind::Format && !is_backup_name(&p) {
                    continue;
                }
                skipped.push(Skipped {
                    source: p.display().to_string(),
                    reason: e.message().to_string(),
                })
            }
        }
    }
    Ok((out, skipped))
}

/// Plans a restore from the backup files in `dir`, proving each file the plan would
/// use with `inspect --check` first: a file found damaged is skipped with the reason
/// and the plan is made again, so a plan never ends on a file known to be bad.
pub fn plan_folder(dir: &std::path::Path, req: &PlanRequest) -> crate::error::Result<RestorePlan> {
    let (descriptions, unreadable) = describe_folder(dir)?;
    let mut p = plan_verified(&descriptions, req, |source| {
        match super::check::check(std::path::Path::new(source)) {
            Ok(r) if r.ok => None,
            Ok(r) => Some(format!(
                "inspect --check: DAMAGED ({})",
                r.damage
                    .first()
                    .map_or_else(|| "an incomplete set".to_string(), |d| d.what.clone())
            )),
            Err(e) => Some(format!("inspect --check: {}", e.message())),
        }
    });
    p.skipped.extend(unreadable);
    Ok(p)
}

/// Plans, then asks `check` about every file the plan uses (`Some(reason)`: unusable);
/// an unusable file is skipped with its reason and the plan made again, until the plan
/// uses only files that passed. Each file is checked at most once.
pub fn plan_verified(
    descriptions: &[BackupDescription],
    req: &PlanRequest,
    mut check: impl FnMut(&str) -> Option<String>,
) -> RestorePlan {
    let mut descs = descriptions.to_vec();
    let mut verdicts: std::collections::HashMap<String, Option<String>> =
        std::collections::HashMap::new();
    loop {
        let p = plan(&descs, req);
        let mut changed = false;
        for file in p.steps.iter().flat_map(|s| s.files.iter()) {
            let verdict = verdicts
                .entry(file.clone())
                .or_insert_with(|| check(file))
                .clone();
            if let Some(why) = verdict {
                for d in descs.iter_mut().filter(|d| &d.source == file) {
                    if d.unusable.is_none() {
                        d.unusable = Some(why.clone());
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            return p;
        }
    }
}

fn is_backup_name(p: &std::path::Path) -> bool {
    let ext = p
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    matches!(ext.as_str(), "bak" | "trn" | "dif" | "diff" | "log")
}

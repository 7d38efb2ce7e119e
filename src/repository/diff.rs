//! `diff`: what changed between two snapshots — the file update record the
//! maintenance contract asks for when server programs are upgraded.

use std::collections::BTreeMap;

use serde::Serialize;

use super::snapshot::{Entry, EntryKind, Snapshot};

/// How an entry changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Only in the newer snapshot.
    Added,
    /// Only in the older snapshot.
    Removed,
    /// In both, with different content, kind or link target.
    Changed,
}

/// One changed entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// What happened.
    pub change: ChangeKind,
    /// Path.
    pub path: String,
    /// Entry kind (in the newer snapshot, or the older for removals).
    pub kind: EntryKind,
    /// Size before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_size: Option<u64>,
    /// Size after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_size: Option<u64>,
    /// blake3 before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_blake3: Option<String>,
    /// blake3 after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_blake3: Option<String>,
}

/// All changes between two snapshots, in path order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SnapshotDiff {
    /// Changed entries.
    pub changes: Vec<Change>,
    /// Entries present in both and identical.
    pub unchanged: usize,
}

impl SnapshotDiff {
    /// Count of one kind of change.
    pub fn count(&self, kind: ChangeKind) -> usize {
        self.changes.iter().filter(|c| c.change == kind).count()
    }
}

/// Paths are compared below each snapshot's source root, so the same folder backed
/// up under two different root names (`PACS` before and after a rename of the
/// parent) still lines up when there is one root each.
pub fn diff_snapshots(old: &Snapshot, new: &Snapshot) -> SnapshotDiff {
    let strip_root = old.sources.len() == 1 && new.sources.len() == 1;
    let key = |e: &Entry| -> String {
        if strip_root {
            match e.path.split_once('/') {
                Some((_, rest)) => rest.to_string(),
                None => String::new(),
            }
        } else {
            e.path.clone()
        }
    };
    let a: BTreeMap<String, &Entry> = old.entries.iter().map(|e| (key(e), e)).collect();
    let b: BTreeMap<String, &Entry> = new.entries.iter().map(|e| (key(e), e)).collect();
    let mut out = SnapshotDiff::default();
    for (k, ea) in &a {
        match b.get(k) {
            None => out
                .changes
                .push(change(ChangeKind::Removed, ea, Some(ea), None)),
            Some(eb) => {
                if ea.kind != eb.kind
                    || ea.blake3 != eb.blake3
                    || ea.size != eb.size
                    || ea.target != eb.target
                {
                    out.changes
                        .push(change(ChangeKind::Changed, eb, Some(ea), Some(eb)));
                } else {
                    out.unchanged += 1;
                }
            }
        }
    }
    for (k, eb) in &b {
        if !a.contains_key(k) {
            out.changes
                .push(change(ChangeKind::Added, eb, None, Some(eb)));
        }
    }
    out.changes.sort_by(|x, y| x.path.cmp(&y.path));
    out
}

fn change(kind: ChangeKind, shown: &Entry, old: Option<&Entry>, new: Option<&Entry>) -> Change {
    let size = |e: Option<&Entry>| e.filter(|e| e.kind == EntryKind::File).map(|e| e.size);
    Change {
        change: kind,
        path: shown.path.clone(),
        kind: shown.kind,
        old_size: size(old),
        new_size: size(new),
        old_blake3: old.and_then(|e| e.blake3.clone()),
        new_blake3: new.and_then(|e| e.blake3.clone()),
    }
}

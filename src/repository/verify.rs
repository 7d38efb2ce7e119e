//! `verify`: prove the repository can give back every snapshot.
//!
//! Structure always: every indexed pack exists with its size, every chunk every
//! snapshot needs is indexed. With `--read-data`, packs are downloaded and every
//! byte checked: the pack's hash, its own header, each group's seal and each chunk's
//! keyed id. Damage is reported with the snapshots and files it breaks. When each
//! pack was last read is recorded in the repository, so sampled runs (`10%`) read
//! the least recently verified packs first.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{info, info_span, warn, Instrument};

use super::fetch::GroupReader;
use super::format::paths;
use super::id::Id;
use super::pack::{open_group, read_pack_header, verify_group, IndexedPack};
use super::snapshot::{EntryKind, SnapshotRef};
use super::Repository;
use crate::error::{Error, ErrorKind, Result};

/// How much data to read back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadData {
    /// Structure only.
    None,
    /// Every pack.
    All,
    /// This share of packs, least recently verified first.
    Percent(f64),
    /// Slice `n` of `m` (1-based), by pack id: `1/7` on Monday, `2/7` on Tuesday...
    Slice(u32, u32),
}

impl std::str::FromStr for ReadData {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("--read-data takes all, N% or n/m, not {s:?}");
        if s.is_empty() || s == "all" {
            return Ok(ReadData::All);
        }
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p.parse().map_err(|_| bad())?;
            if !(v > 0.0 && v <= 100.0) {
                return Err(bad());
            }
            return Ok(ReadData::Percent(v));
        }
        if let Some((n, m)) = s.split_once('/') {
            let n: u32 = n.parse().map_err(|_| bad())?;
            let m: u32 = m.parse().map_err(|_| bad())?;
            if n == 0 || m == 0 || n > m {
                return Err(bad());
            }
            return Ok(ReadData::Slice(n, m));
        }
        Err(bad())
    }
}

/// Which of a snapshot's packs [`Repository::verify_snapshot`] reads back.
#[derive(Debug, Clone, Copy)]
pub enum ReadBack<'a> {
    /// The packs the backup added to the index (stored or adopted): the nightly
    /// proof. Older packs were proven the same way by the backup that added them and
    /// are re-read by the scheduled `verify --read-data`.
    Added(&'a [Id]),
    /// Every pack the snapshot needs: for pinned (pre-upgrade) backups.
    All,
}

/// Options of a verify run.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Data to read back.
    pub read_data: ReadData,
}

/// A pack that is missing, truncated or damaged, and what it breaks.
#[derive(Debug, Clone, Serialize)]
pub struct DamagedPack {
    /// Pack id.
    pub pack: String,
    /// What is wrong.
    pub problem: String,
    /// Snapshots that need it.
    pub snapshots: Vec<String>,
    /// Files that need it, as `snapshot:path`.
    pub files: Vec<String>,
}

/// The outcome of a verify run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    /// Snapshots checked.
    pub snapshots: usize,
    /// Packs indexed.
    pub packs: usize,
    /// Packs read back.
    pub packs_read: usize,
    /// Bytes read back.
    pub bytes_read: u64,
    /// Packs checked only for presence and size (a snapshot's proof: they were read
    /// back by the backup that stored them).
    pub packs_present: usize,
    /// Chunks checked by their keyed id.
    pub chunks_checked: u64,
    /// Packs missing, truncated or damaged.
    pub damaged_packs: Vec<DamagedPack>,
    /// Snapshot files whose chunks no index lists.
    pub missing_chunks: Vec<String>,
    /// Packs stored but not indexed (left by an interrupted backup; reused later).
    pub unindexed_packs: usize,
    /// Snapshot manifests that cannot be read back.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub damaged_snapshots: Vec<super::DamagedSnapshot>,
}

impl VerifyReport {
    /// Whether everything checked is intact.
    pub fn ok(&self) -> bool {
        self.damaged_packs.is_empty()
            && self.missing_chunks.is_empty()
            && self.damaged_snapshots.is_empty()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct VerifyState {
    /// Pack id (hex) → unix time of its last successful read.
    last_read: BTreeMap<String, i64>,
    /// Pack id (hex) → unix time a read found it damaged. A pack damaged later than
    /// its last good read is suspect: every snapshot proof that needs it reads it.
    #[serde(default)]
    damaged: BTreeMap<String, i64>,
}

impl VerifyState {
    /// Every pack that is suspect.
    fn suspects(&self) -> HashSet<Id> {
        self.damaged
            .keys()
            .filter_map(|hex| hex.parse::<Id>().ok())
            .filter(|id| self.is_suspect(id))
            .collect()
    }

    fn is_suspect(&self, id: &Id) -> bool {
        let hex = id.to_hex();
        match (self.damaged.get(&hex), self.last_read.get(&hex)) {
            (Some(bad), Some(good)) => bad > good,
            (Some(_), None) => true,
            _ => false,
        }
    }
}

impl Repository {
    /// Checks the repository; see the module docs.
    pub async fn verify(&self, opts: &VerifyOptions) -> Result<VerifyReport> {
        let span = info_span!("verify", target = self.storage.name());
        async move {
            let mut report = VerifyReport::default();
            let indexed = self.read_index_files().await?;
            let state = self.load_verify_state().await;
            let index = Arc::new(super::index_preferring_healthy(&indexed, &state.suspects()));
            report.packs = index.packs().len();

            let stored = self.stored_packs().await?;
            report.unindexed_packs = stored.keys().filter(|id| !index.has_pack(id)).count();

            let mut bad: BTreeMap<Id, String> = BTreeMap::new();
            for p in index.packs() {
                if let Some(problem) = presence_problem(&stored, &p.id, p.size) {
                    bad.insert(p.id, problem);
                }
            }

            let listing = self.snapshot_listing().await?;
            let snapshots = listing.readable;
            report.damaged_snapshots = listing.damaged;
            report.snapshots = snapshots.len();
            let reader = GroupReader {
                repo: self.clone(),
                index: index.clone(),
                handle: tokio::runtime::Handle::current(),
            };

            // Read data first, so that the structural pass knows which packs are bad.
            let selected = select_packs(&index, &state, opts.read_data, &bad);
            if !selected.is_empty() {
                let results = self.read_packs_whole(selected, &indexed).await?;
                let mut newly = VerifyState::default();
                let now = OffsetDateTime::now_utc().unix_timestamp();
                for (id, res) in results {
                    match res {
                        Ok((bytes, chunks)) => {
                            report.packs_read += 1;
                            report.bytes_read += bytes;
                            report.chunks_checked += chunks;
                            newly.last_read.insert(id.to_hex(), now);
                        }
                        Err(problem) => {
                            report.packs_read += 1;
                            newly.damaged.insert(id.to_hex(), now);
                            bad.insert(id, problem);
                        }
                    }
                }
                self.save_verify_state(state, newly).await;
            }

            // Structure: every chunk of every snapshot is indexed and its pack is sound.
            let bad_prefixes: HashMap<[u8; 16], Id> = indexed
                .iter()
                .filter(|p| bad.contains_key(&p.id))
                .flat_map(|p| {
                    p.groups
                        .iter()
                        .flat_map(move |g| g.chunks.iter().map(move |c| (c.prefix(), p.id)))
                })
                .collect();
            let mut hits: BTreeMap<Id, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
            for snap in &snapshots {
                let rb = reader.clone();
                let snap_c = snap.clone();
                let checked = tokio::task::spawn_blocking(move || snapshot_chunks(&rb, &snap_c))
                    .await
                    .map_err(|e| {
                        Error::new(ErrorKind::Internal, format!("verify task failed: {e}"))
                    })?;
                for (path, lists, outcome) in checked {
                    match outcome {
                        Ok(ids) => {
                            for id in ids {
                                if let Some(pack) = bad_prefixes.get(&id.prefix()) {
                                    let e = hits.entry(*pack).or_default();
                                    e.0.insert(snap.id.short());
                                    e.1.insert(format!("{}:{path}", snap.id.short()));
                                } else if !index.contains(&id) {
                                    report.missing_chunks.push(format!(
                                        "{}:{path}: chunk {} missing",
                                        snap.id.short(),
                                        id.short()
                                    ));
                                }
                            }
                        }
                        Err(e) => {
                            // The chunk list itself could not be read: blame its pack.
                            let list_packs: Vec<Id> = lists
                                .iter()
                                .filter_map(|l| index.lookup(l))
                                .filter_map(|loc| index.pack(loc.pack).map(|p| p.id))
                                .filter(|p| bad.contains_key(p))
                                .collect();
                            if list_packs.is_empty() {
                                report
                                    .missing_chunks
                                    .push(format!("{}:{path}: {e}", snap.id.short()));
                            }
                            for id in list_packs {
                                let h = hits.entry(id).or_default();
                                h.0.insert(snap.id.short());
                                h.1.insert(format!("{}:{path}", snap.id.short()));
                            }
                        }
                    }
                }
            }
            for (id, problem) in bad {
                let (snaps, files) = hits.remove(&id).unwrap_or_default();
                report.damaged_packs.push(DamagedPack {
                    pack: id.to_hex(),
                    problem,
                    snapshots: snaps.into_iter().collect(),
                    files: files.into_iter().collect(),
                });
            }
            info!(
                ok = report.ok(),
                packs_read = report.packs_read,
                "verify finished"
            );
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// The offsite proof of a backup just stored: every chunk the snapshot needs is
    /// indexed and every pack holding them is on the target with the size the index
    /// gives (one listing); the packs `read_back` names are read and every chunk in
    /// them is checked. See [`ReadBack`] for which.
    pub async fn verify_snapshot(
        &self,
        snap: &SnapshotRef,
        read_back: ReadBack<'_>,
    ) -> Result<VerifyReport> {
        let span = info_span!("verify_snapshot", target = self.storage.name(), snapshot = %snap.id.short());
        async move {
            let mut report = VerifyReport {
                snapshots: 1,
                ..VerifyReport::default()
            };
            let indexed = self.read_index_files().await?;
            let state = self.load_verify_state().await;
            let index = Arc::new(super::index_preferring_healthy(&indexed, &state.suspects()));
            let reader = GroupReader {
                repo: self.clone(),
                index: index.clone(),
                handle: tokio::runtime::Handle::current(),
            };
            let snap_c = snap.clone();
            let checked = tokio::task::spawn_blocking(move || snapshot_chunks(&reader, &snap_c))
                .await
                .map_err(|e| Error::new(ErrorKind::Internal, format!("verify task failed: {e}")))?;
            let mut needed: BTreeMap<Id, u64> = BTreeMap::new();
            for (path, _lists, outcome) in checked {
                match outcome {
                    Ok(ids) => {
                        for id in ids {
                            match index.lookup(&id).and_then(|loc| index.pack(loc.pack)) {
                                Some(p) => {
                                    needed.insert(p.id, p.size);
                                }
                                None => report.missing_chunks.push(format!(
                                    "{}:{path}: chunk {} missing",
                                    snap.id.short(),
                                    id.short()
                                )),
                            }
                        }
                    }
                    Err(e) => report
                        .missing_chunks
                        .push(format!("{}:{path}: {e}", snap.id.short())),
                }
            }
            report.packs = needed.len();
            let stored = self.stored_packs().await?;
            let fresh: HashSet<Id> = match read_back {
                ReadBack::Added(ids) => ids.iter().copied().collect(),
                ReadBack::All => needed.keys().copied().collect(),
            };
            // Packs an earlier read found damaged are read again, whoever added them.
            let mut selected = Vec::new();
            for (&id, &size) in &needed {
                let Some(problem) = presence_problem(&stored, &id, size) else {
                    if fresh.contains(&id) || state.is_suspect(&id) {
                        selected.push((id, size));
                    } else {
                        report.packs_present += 1;
                    }
                    continue;
                };
                report.damaged_packs.push(DamagedPack {
                    pack: id.to_hex(),
                    problem,
                    snapshots: vec![snap.id.short()],
                    files: Vec::new(),
                });
            }
            // Fresh packs this snapshot does not need (adopted leftovers) are proven too.
            for p in &indexed {
                if fresh.contains(&p.id) && !needed.contains_key(&p.id) {
                    selected.push((p.id, p.size));
                    report.packs += 1;
                }
            }
            let results = self.read_packs_whole(selected, &indexed).await?;
            let mut newly = VerifyState::default();
            let now = OffsetDateTime::now_utc().unix_timestamp();
            for (id, res) in results {
                report.packs_read += 1;
                match res {
                    Ok((bytes, chunks)) => {
                        report.bytes_read += bytes;
                        report.chunks_checked += chunks;
                        if state.is_suspect(&id) {
                            newly.last_read.insert(id.to_hex(), now);
                        }
                    }
                    Err(problem) => {
                        newly.damaged.insert(id.to_hex(), now);
                        report.damaged_packs.push(DamagedPack {
                            pack: id.to_hex(),
                            problem,
                            snapshots: vec![snap.id.short()],
                            files: Vec::new(),
                        })
                    }
                }
            }
            // Written only when something changed (rare), so the nightly proof leaves no
            // state object behind on an append-only target.
            if !newly.damaged.is_empty() || !newly.last_read.is_empty() {
                self.save_verify_state(state, newly).await;
            }
            info!(
                ok = report.ok(),
                packs_read = report.packs_read,
                packs_present = report.packs_present,
                "snapshot verified"
            );
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// Every pack object on the target, with its size (one listing).
    async fn stored_packs(&self) -> Result<HashMap<Id, u64>> {
        Ok(self
            .storage
            .list(paths::DATA)
            .await?
            .into_iter()
            .filter_map(|o| paths::id_of(&o.path).map(|id| (id, o.size)))
            .collect())
    }

    /// Reads the `selected` packs (id, size) whole on worker threads, checking each
    /// against what `indexed` says it holds.
    async fn read_packs_whole(
        &self,
        selected: Vec<(Id, u64)>,
        indexed: &[IndexedPack],
    ) -> Result<Vec<PackOutcome>> {
        let groups_of: HashMap<Id, usize> =
            indexed.iter().map(|p| (p.id, p.groups.len())).collect();
        let repo = self.clone();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || read_packs(&repo, &handle, &selected, &groups_of))
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, format!("verify task failed: {e}")))
    }

    /// Packs a read found damaged and no later read found good.
    pub(crate) async fn suspect_packs(&self) -> HashSet<Id> {
        self.load_verify_state().await.suspects()
    }

    /// For each of `snaps` that needs a pack a read found damaged: those packs. A
    /// restore plan skips such backups (with this reason) and falls back to a chain
    /// that is whole. Reads nothing when no pack is suspect.
    pub async fn snapshots_on_damaged_packs(
        &self,
        snaps: &[SnapshotRef],
    ) -> Result<BTreeMap<Id, Vec<Id>>> {
        let suspects = self.suspect_packs().await;
        if suspects.is_empty() {
            return Ok(BTreeMap::new());
        }
        let index = Arc::new(self.load_index().await?);
        let reader = GroupReader {
            repo: self.clone(),
            index: index.clone(),
            handle: tokio::runtime::Handle::current(),
        };
        let snaps = snaps.to_vec();
        tokio::task::spawn_blocking(move || {
            let mut out = BTreeMap::new();
            for snap in &snaps {
                let mut bad: Vec<Id> = Vec::new();
                for (_, _, outcome) in snapshot_chunks(&reader, snap) {
                    for id in outcome.unwrap_or_default() {
                        if let Some(p) = index.lookup(&id).and_then(|l| index.pack(l.pack)) {
                            if suspects.contains(&p.id) && !bad.contains(&p.id) {
                                bad.push(p.id);
                            }
                        }
                    }
                }
                if !bad.is_empty() {
                    out.insert(snap.id, bad);
                }
            }
            out
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("verify task failed: {e}")))
    }

    /// The share of packs (0..=1) read back and found good since `since` (unix
    /// time), by bytes: what `status` shows as this month's read-back.
    pub async fn read_back_since(&self, since: i64) -> Result<f64> {
        let index = self.load_index().await?;
        let state = self.load_verify_state().await;
        let (mut read, mut total) = (0u64, 0u64);
        for p in index.packs() {
            total += p.size;
            if state
                .last_read
                .get(&p.id.to_hex())
                .is_some_and(|t| *t >= since)
            {
                read += p.size;
            }
        }
        Ok(if total == 0 {
            1.0
        } else {
            read as f64 / total as f64
        })
    }

    async fn load_verify_state(&self) -> VerifyState {
        let mut state = VerifyState::default();
        let Ok(list) = self.storage.list(paths::VERIFY).await else {
            return state;
        };
        for obj in list {
            let Ok(sealed) = self.storage.read(&obj.path).await else {
                continue;
            };
            let Ok(plain) = self.key.open(&sealed) else {
                continue;
            };
            if let Ok(s) = serde_json::from_slice::<VerifyState>(&plain) {
                for (k, v) in s.last_read {
                    let e = state.last_read.entry(k).or_insert(v);
                    *e = (*e).max(v);
                }
                for (k, v) in s.damaged {
                    let e = state.damaged.entry(k).or_insert(v);
                    *e = (*e).max(v);
                }
            }
        }
        state
    }

    /// Best effort: a failure to record verification times does not fail the run.
    async fn save_verify_state(&self, mut old: VerifyState, newly: VerifyState) {
        let previous: Vec<String> = match self.storage.list(paths::VERIFY).await {
            Ok(l) => l.into_iter().map(|o| o.path).collect(),
            Err(_) => Vec::new(),
        };
        for read_clean in newly.last_read.keys() {
            old.damaged.remove(read_clean);
        }
        old.last_read.extend(newly.last_read);
        old.damaged.extend(newly.damaged);
        let Ok(json) = serde_json::to_vec(&old) else {
            return;
        };
        let name = format!(
            "{}{:016x}-{}",
            paths::VERIFY,
            OffsetDateTime::now_utc().unix_timestamp(),
            Id::random().short()
        );
        if let Err(e) = self
            .storage
            .write(&name, Bytes::from(self.key.seal(&json)))
            .await
        {
            warn!(error = %e, "could not record verification times");
            return;
        }
        for p in previous {
            let _ = self.storage.delete(&p).await;
        }
    }
}

/// What is wrong with pack `id` of `size` bytes by the listing `stored`, if anything.
fn presence_problem(stored: &HashMap<Id, u64>, id: &Id, size: u64) -> Option<String> {
    match stored.get(id) {
        None => Some("pack is missing from the target".into()),
        Some(&s) if s != size => Some(format!(
            "pack is {s} bytes, the index says {size} (truncated?)"
        )),
        Some(_) => None,
    }
}

fn select_packs(
    index: &super::index::Index,
    state: &VerifyState,
    mode: ReadData,
    bad: &BTreeMap<Id, String>,
) -> Vec<(Id, u64)> {
    let mut packs: Vec<(Id, u64)> = index
        .packs()
        .iter()
        .filter(|p| !bad.contains_key(&p.id))
        .map(|p| (p.id, p.size))
        .collect();
    packs.sort();
    match mode {
        ReadData::None => Vec::new(),
        ReadData::All => packs,
        ReadData::Slice(n, m) => packs
            .into_iter()
            .enumerate()
            .filter(|(i, _)| (*i as u32) % m == n - 1)
            .map(|(_, p)| p)
            .collect(),
        ReadData::Percent(pct) => {
            let want = ((packs.len() as f64) * pct / 100.0).ceil() as usize;
            packs.sort_by_key(|(id, _)| {
                state
                    .last_read
                    .get(&id.to_hex())
                    .copied()
                    .unwrap_or(i64::MIN)
            });
            packs.truncate(want);
            packs
        }
    }
}

type PackOutcome = (Id, std::result::Result<(u64, u64), String>);

fn read_packs(
    repo: &Repository,
    handle: &tokio::runtime::Handle,
    packs: &[(Id, u64)],
    groups_of: &HashMap<Id, usize>,
) -> Vec<PackOutcome> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::with_capacity(packs.len()));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(&(id, size)) = packs.get(i) else {
                    return;
                };
                let outcome = check_pack(repo, handle, id, size, groups_of.get(&id).copied());
                if let Ok(mut r) = results.lock() {
                    r.push((id, outcome));
                }
            });
        }
    });
    results.into_inner().unwrap_or_default()
}

fn check_pack(
    repo: &Repository,
    handle: &tokio::runtime::Handle,
    id: Id,
    size: u64,
    expected_groups: Option<usize>,
) -> std::result::Result<(u64, u64), String> {
    let bytes = handle
        .block_on(repo.storage.read(&paths::pack(&id)))
        .map_err(|e| format!("cannot read pack: {e}"))?;
    if bytes.len() as u64 != size {
        return Err(format!(
            "pack is {} bytes, the index says {size}",
            bytes.len()
        ));
    }
    if Id::hash(&bytes) != id {
        return Err("pack bytes do not match its id (corrupted)".into());
    }
    let groups = read_pack_header(&repo.key, &bytes).map_err(|e| format!("pack header: {e}"))?;
    if let Some(n) = expected_groups {
        if n != groups.len() {
            return Err(format!(
                "pack header lists {} groups, the index {n}",
                groups.len()
            ));
        }
    }
    let mut chunks = 0u64;
    for g in &groups {
        let sealed = &bytes[g.offset as usize..g.offset as usize + g.stored_len as usize];
        let plain = open_group(&repo.key, sealed, g.raw_len as usize)
            .map_err(|e| format!("group at offset {}: {e}", g.offset))?;
        chunks += verify_group(&repo.key, &plain)
            .map_err(|e| format!("group at offset {}: {e}", g.offset))? as u64;
    }
    Ok((bytes.len() as u64, chunks))
}

/// Every file's chunk ids (chunk lists expanded), or why they could not be read.
type FileChunks = (String, Vec<Id>, Result<Vec<Id>>);

fn snapshot_chunks(reader: &GroupReader, snap: &SnapshotRef) -> Vec<FileChunks> {
    snap.snapshot
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| {
            // The list blobs themselves are chunks too.
            let expanded = reader.file_chunks(e).map(|mut v| {
                v.extend(e.chunk_lists.iter().copied());
                v
            });
            (e.path.clone(), e.chunk_lists.clone(), expanded)
        })
        .collect()
}

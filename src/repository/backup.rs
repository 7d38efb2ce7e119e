//! `backup files`: snapshots of folder trees and single large files.
//!
//! The work runs on a blocking thread as a pipeline: this thread walks the sources,
//! cuts files into chunks and keeps only chunks the repository lacks; worker threads
//! compress and seal groups of new chunks; a packer fills packs; an uploader stores
//! each pack and checkpoints an index file every few packs, so a killed backup leaves
//! reusable packs. The manifest is written last.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use crossbeam_channel::{bounded, Receiver, Sender};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

use super::chunker::{chunk_stream, Cutting};
use super::crypto::MasterKey;
use super::cut_cache::{CutCache, SeriesCuts};
use super::format::paths;
use super::id::Id;
use super::index::Index;
use super::pack::{finish_pack, seal_group, GroupBuilder, GroupEntry, IndexedPack};
use super::prediction::{chunk_stream_predicted, id_prefix, PredictionStats, PreviousCuts};
use super::snapshot::{
    source_name, Entry, EntryKind, Snapshot, SnapshotKind, SourceRoot, Summary, IDS_PER_LIST,
    INLINE_CHUNKS, MANIFEST_VERSION,
};
use super::Repository;
use crate::error::{Error, ErrorKind, Result};

/// Index checkpoints are written after this many packs.
const PACKS_PER_INDEX_CHECKPOINT: usize = 8;
/// Files this large are cut on a thread of their own while this one hashes.
const BACKGROUND_CUTTING_FROM: u64 = 16 * 1024 * 1024;

/// What a backup should record besides the data.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Tags for the snapshot.
    pub tags: Vec<String>,
    /// Kind of snapshot.
    pub kind: SnapshotKind,
    /// Origin facts to record in the manifest.
    pub meta: BTreeMap<String, serde_json::Value>,
    /// Whether retention must keep it until unpinned.
    pub pinned: bool,
    /// The series this backup is the next version of (one database's fulls, one
    /// set of folders): large files are cut along the cuts its previous version
    /// left in the local cut cache, and leave theirs for the next. `None`: cut
    /// every file and remember nothing (log backups share nothing with the last).
    pub series: Option<String>,
    /// Stops the ingest at its next chunk once cancelled (a native backup found
    /// unusable meanwhile). What was stored by then stays indexed, so later backups
    /// reuse it; no snapshot is written.
    pub cancel: Option<CancellationToken>,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            tags: Vec::new(),
            kind: SnapshotKind::Files,
            meta: BTreeMap::new(),
            pinned: false,
            series: None,
            cancel: None,
        }
    }
}

/// The outcome of a backup.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupReport {
    /// The new snapshot's id.
    pub snapshot_id: Id,
    /// Its counters.
    pub summary: Summary,
    /// Packs left by an interrupted run and reused.
    pub adopted_packs: usize,
    /// Chunks of large files taken along the cuts of the series' previous version
    /// instead of being cut (see [`BackupOptions::series`]).
    pub predicted_chunks: u64,
    /// Packs this backup added to the index, stored or adopted: the ones a
    /// read-back must prove.
    #[serde(skip)]
    pub packs_added: Vec<Id>,
}

/// A snapshot whose data is stored on the target but whose manifest is not yet
/// written: nothing lists it until [`Repository::commit`]. Dropped instead, it leaves
/// indexed data that later backups reuse and no snapshot, as when a native backup
/// fails RESTORE VERIFYONLY while its file is being stored.
#[derive(Debug)]
pub struct Ingested {
    snapshot: Snapshot,
    adopted_packs: usize,
    predicted_chunks: u64,
    packs_added: Vec<Id>,
}

impl Ingested {
    /// What was read and stored.
    pub fn summary(&self) -> &Summary {
        &self.snapshot.summary
    }

    /// Chunks taken along the previous version's cuts (see [`BackupOptions::series`]).
    pub fn predicted_chunks(&self) -> u64 {
        self.predicted_chunks
    }
}

impl Repository {
    /// Backs up `sources` (folders or files) into a new snapshot.
    pub async fn backup(&self, sources: &[PathBuf], opts: &BackupOptions) -> Result<BackupReport> {
        let ingested = self.ingest(sources, opts).await?;
        self.commit(ingested).await
    }

    /// Stores the data of `sources` (packs and index) without writing the snapshot.
    pub async fn ingest(&self, sources: &[PathBuf], opts: &BackupOptions) -> Result<Ingested> {
        let span = info_span!(
            "backup",
            target = self.storage.name(),
            sources = sources.len()
        );
        async move {
            if sources.is_empty() {
                return Err(Error::new(
                    ErrorKind::Config,
                    "nothing to back up: give at least one path",
                ));
            }
            for s in sources {
                std::fs::symlink_metadata(s).map_err(|e| {
                    Error::new(ErrorKind::Io, format!("cannot read backup source: {e}"))
                        .with("path", s.display())
                })?;
            }
            let started = OffsetDateTime::now_utc();
            let series_key = opts.series.as_deref().map(|s| {
                self.key
                    .chunk_id(format!("pacsbak cut cache series\n{s}").as_bytes())
            });
            let is_cancelled = || opts.cancel.as_ref().is_some_and(|c| c.is_cancelled());
            if is_cancelled() {
                return Err(cancelled());
            }
            let mut index = self.load_dedup_index().await?;
            let adopted = self.adopt_orphan_packs(&mut index).await?;
            if is_cancelled() {
                return Err(cancelled());
            }
            let index = Arc::new(index);
            let repo = self.clone();
            let handle = tokio::runtime::Handle::current();
            let sources_owned = sources.to_vec();
            let cancel = opts.cancel.clone();
            let (((roots, entries, mut summary), cuts), written) =
                tokio::task::spawn_blocking(move || {
                    let cache = series_key.and_then(|k| CutCache::open(&repo.config.id, &k));
                    let mut cuts = CutMemory {
                        previous: cache.as_ref().map(CutCache::load).unwrap_or_default(),
                        one_file: sources_owned.len() == 1 && sources_owned[0].is_file(),
                        ..CutMemory::default()
                    };
                    let out = run_pipeline(&repo, &handle, &index, cancel.as_ref(), |sink| {
                        walk_sources(&repo, sink, &sources_owned, &mut cuts).map_err(Error::from)
                    })?;
                    if let Some(cache) = cache {
                        if let Err(e) = cache.save(&cuts.saved) {
                            warn!(error = %e, "cannot save the cut cache; the next backup of this series cuts every file");
                        }
                    }
                    Ok::<_, Error>(((out.0, cuts), out.1))
                })
                .await
                .map_err(|e| Error::new(ErrorKind::Internal, format!("backup task failed: {e}")))??;
            if summary.files == 0 {
                let names: Vec<String> = sources.iter().map(|s| s.display().to_string()).collect();
                return Err(Error::new(
                    ErrorKind::Refused,
                    format!(
                        "no files under {}: an empty folder (an unmounted share? a wrong path? a link that leads nowhere?) is not a backup; no snapshot was written{}",
                        names.join(", "),
                        if summary.errors.is_empty() {
                            String::new()
                        } else {
                            format!(" (read errors: {})", summary.errors.join("; "))
                        }
                    ),
                )
                .with("path", names.join(", ")));
            }
            if cuts.stats != PredictionStats::default() {
                info!(
                    predicted = cuts.stats.predicted,
                    cut = cuts.stats.cut,
                    "large files cut along their previous version"
                );
            }
            summary.new_chunks = written.new_chunks;
            summary.new_bytes = written.new_bytes;
            summary.added_bytes = written.added_bytes;
            let snapshot = Snapshot {
                version: MANIFEST_VERSION,
                time: started,
                finished: OffsetDateTime::now_utc(),
                hostname: super::hostname(),
                tags: opts.tags.clone(),
                kind: opts.kind,
                sources: roots,
                entries,
                summary,
                pinned: opts.pinned,
                meta: opts.meta.clone(),
            };
            Ok(Ingested {
                snapshot,
                adopted_packs: adopted.len(),
                predicted_chunks: cuts.stats.predicted,
                packs_added: adopted.into_iter().chain(written.packs).collect(),
            })
        }
        .instrument(span)
        .await
    }

    /// Writes the manifest of an ingested snapshot: from now on it is listed.
    pub async fn commit(&self, ingested: Ingested) -> Result<BackupReport> {
        let Ingested {
            snapshot,
            adopted_packs,
            predicted_chunks,
            packs_added,
        } = ingested;
        let snapshot_id = self.save_snapshot(&snapshot).await?;
        self.check_clock_against_target(&snapshot_id).await?;
        let summary = snapshot.summary;
        info!(target = self.storage.name(), snapshot = %snapshot_id.short(), files = summary.files, added = summary.added_bytes, "backup finished");
        Ok(BackupReport {
            snapshot_id,
            summary,
            adopted_packs,
            predicted_chunks,
            packs_added,
        })
    }
}

/// How far the machine's clock may run ahead of a target's before a snapshot it
/// dates is called future-dated (file servers and object stores keep their own time;
/// S3 itself refuses requests 15 minutes off).
pub const CLOCK_TOLERANCE: time::Duration = time::Duration::minutes(5);

impl Repository {
    /// Compares the snapshot's date (the machine's clock) with the time the target
    /// gave its manifest. A machine clock ahead of the target's by more than
    /// [`CLOCK_TOLERANCE`] fails the backup: the snapshot stays (its data is good) but
    /// is dated in the future, so it is never taken as `latest` and `check` names it.
    async fn check_clock_against_target(&self, id: &Id) -> Result<()> {
        let written = match self.storage.modified(&paths::snapshot(id)).await {
            Ok(Some(t)) => OffsetDateTime::from(t),
            // The target keeps no times, or cannot say now: nothing to compare.
            Ok(None) | Err(_) => return Ok(()),
        };
        // The machine's clock now, just after the write: however long the backup
        // took, the difference is the clocks' alone.
        let dated = OffsetDateTime::now_utc();
        let ahead = dated - written;
        if ahead > CLOCK_TOLERANCE {
            return Err(Error::new(
                ErrorKind::Clock,
                format!(
                    "this machine's clock is {} ahead of the target's: it says {dated} where the target says {written}, so snapshot {} is dated in the future. Fix the clock (NTP); the snapshot is kept, but it is never taken as `latest`",
                    human_duration(ahead),
                    id.short()
                ),
            )
            .with("target", self.storage.name())
            .with("snapshot", id.short()));
        }
        Ok(())
    }
}

/// `3 d 4 h`, `12 min`: a clock difference as a person reads it.
pub fn human_duration(d: time::Duration) -> String {
    let s = d.whole_seconds().unsigned_abs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// The error of an ingest stopped through [`BackupOptions::cancel`].
fn cancelled() -> Error {
    Error::new(
        ErrorKind::Refused,
        "stopped before the end because the backup was found unusable; what was stored stays for later backups",
    )
}

/// A group on its way to the packer.
struct SealedGroup {
    sealed: Vec<u8>,
    raw_len: u32,
    ids: Vec<Id>,
}

/// Decides which chunks are new and gathers them into groups: what a producer
/// (the file walker, or a copy re-encrypting another repository's chunks) feeds.
pub(crate) struct ChunkSink<'a> {
    key: &'a MasterKey,
    index: &'a Index,
    pending: HashSet<[u8; 16]>,
    group: GroupBuilder,
    group_size: usize,
    tx: Sender<GroupBuilder>,
    spare: Receiver<Vec<u8>>,
    new_chunks: u64,
    new_bytes: u64,
    cancel: Option<&'a CancellationToken>,
    /// Whether a chunk was refused because `cancel` fired.
    cancelled: bool,
}

/// The pipeline stopped because a later stage failed; the cause is reported there.
pub(crate) struct Stopped;

impl From<Stopped> for Error {
    fn from(_: Stopped) -> Error {
        Error::new(ErrorKind::Internal, "backup pipeline stopped early")
    }
}

impl ChunkSink<'_> {
    /// Stores `data` unless the repository (or this run) already has it; its id.
    pub(crate) fn add(&mut self, data: &[u8]) -> std::result::Result<Id, Stopped> {
        self.add_known(data, self.key.chunk_id(data))
    }

    /// [`Self::add`] for a chunk whose id the caller computed already.
    pub(crate) fn add_known(&mut self, data: &[u8], id: Id) -> std::result::Result<Id, Stopped> {
        if self.cancel.is_some_and(CancellationToken::is_cancelled) {
            self.cancelled = true;
            return Err(Stopped);
        }
        if !self.index.contains(&id) && self.pending.insert(id.prefix()) {
            self.group.push(id, data);
            self.new_chunks += 1;
            self.new_bytes += data.len() as u64;
            if self.group.data_len() >= self.group_size {
                self.flush()?;
            }
        }
        Ok(id)
    }

    fn flush(&mut self) -> std::result::Result<(), Stopped> {
        if self.group.is_empty() {
            return Ok(());
        }
        let buf = self
            .spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(self.group_size + 256 * 1024));
        let g = std::mem::replace(&mut self.group, GroupBuilder::with_buffer(buf));
        self.tx.send(g).map_err(|_| Stopped)
    }
}

type PipelineOutput = (Vec<SourceRoot>, Vec<Entry>, Summary);

/// What the pipeline wrote.
#[derive(Debug, Clone, Default)]
pub(crate) struct Written {
    /// Chunks that were new.
    pub(crate) new_chunks: u64,
    /// Their bytes before compression.
    pub(crate) new_bytes: u64,
    /// Bytes stored (packs and index).
    pub(crate) added_bytes: u64,
    /// Packs stored, in the order they were stored.
    pub(crate) packs: Vec<Id>,
}

/// Runs the write pipeline of `repo` (blocking) while `produce` feeds it chunks;
/// returns what `produce` returned once every pack and index it caused is stored.
pub(crate) fn run_pipeline<T>(
    repo: &Repository,
    handle: &tokio::runtime::Handle,
    index: &Index,
    cancel: Option<&CancellationToken>,
    produce: impl FnOnce(&mut ChunkSink<'_>) -> Result<T>,
) -> Result<(T, Written)> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8);
    let (group_tx, group_rx) = bounded::<GroupBuilder>(workers * 2);
    let (sealed_tx, sealed_rx) = bounded::<SealedGroup>(workers * 2);
    let (pack_tx, pack_rx) = bounded::<(Vec<u8>, Vec<GroupEntry>)>(2);
    let (used_pack_tx, used_pack_rx) = bounded::<Vec<u8>>(2);
    let (spare_tx, spare_rx) = bounded::<Vec<u8>>(workers * 2);
    let (spent_tx, spent_rx) = bounded::<Vec<u8>>(workers * 2);
    let key = repo.key.clone();
    let level = repo.config.zstd_level;
    let pack_size = repo.config.pack_size as usize;

    std::thread::scope(|scope| {
        for _ in 0..workers {
            let rx = group_rx.clone();
            let tx = sealed_tx.clone();
            let key = key.clone();
            let spare = spare_tx.clone();
            let spent = spent_rx.clone();
            scope.spawn(move || seal_worker(&key, level, rx, tx, spare, spent));
        }
        drop(group_rx);
        drop(sealed_tx);
        drop(spare_tx);
        drop(spent_rx);
        let packer = scope
            .spawn(move || packer(&key, pack_size, sealed_rx, pack_tx, spent_tx, used_pack_rx));
        let uploader = scope.spawn(move || uploader(repo, handle, pack_rx, used_pack_tx));

        let mut sink = ChunkSink {
            key: &repo.key,
            index,
            pending: HashSet::new(),
            group: GroupBuilder::default(),
            group_size: repo.config.group_size as usize,
            tx: group_tx,
            spare: spare_rx,
            new_chunks: 0,
            new_bytes: 0,
            cancel,
            cancelled: false,
        };
        let produced = produce(&mut sink);
        let flushed = sink.flush();
        let (new_chunks, new_bytes, refused) = (sink.new_chunks, sink.new_bytes, sink.cancelled);
        drop(sink);
        let packed = packer
            .join()
            .map_err(|_| Error::new(ErrorKind::Internal, "packer thread panicked"))?;
        let uploaded = uploader
            .join()
            .map_err(|_| Error::new(ErrorKind::Internal, "uploader thread panicked"))?;
        // The first real failure wins; `Stopped` only means a later stage failed, or
        // the caller cancelled.
        let (added_bytes, packs) = uploaded?;
        packed?;
        if refused {
            return Err(cancelled());
        }
        let value = produced?;
        flushed?;
        Ok((
            value,
            Written {
                new_chunks,
                new_bytes,
                added_bytes,
                packs,
            },
        ))
    })
}

fn seal_worker(
    key: &MasterKey,
    level: i32,
    rx: Receiver<GroupBuilder>,
    tx: Sender<SealedGroup>,
    spare: Sender<Vec<u8>>,
    spent: Receiver<Vec<u8>>,
) {
    let mut compressor = match super::pack::group_compressor(level) {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "cannot create a zstd compressor");
            return;
        }
    };
    for g in rx {
        let (plain, ids) = g.finish();
        let buf = spent.try_recv().unwrap_or_default();
        let sealed = seal_group(key, &plain, &mut compressor, buf);
        let msg = SealedGroup {
            sealed,
            raw_len: plain.len() as u32,
            ids,
        };
        // `plain` goes back to the walker for reuse below.
        if tx.send(msg).is_err() {
            return;
        }
        let _ = spare.try_send(plain);
    }
}

fn packer(
    key: &MasterKey,
    pack_size: usize,
    rx: Receiver<SealedGroup>,
    tx: Sender<(Vec<u8>, Vec<GroupEntry>)>,
    spent: Sender<Vec<u8>>,
    used_packs: Receiver<Vec<u8>>,
) -> Result<()> {
    let mut pack: Vec<u8> = Vec::new();
    let mut groups: Vec<GroupEntry> = Vec::new();
    for g in rx {
        if pack.capacity() == 0 {
            // A buffer the uploader is done with is already mapped; a new one
            // would be faulted in page by page.
            pack = used_packs.try_recv().unwrap_or_default();
            pack.clear();
            pack.reserve(pack_size + g.sealed.len() + 64 * 1024);
        }
        groups.push(GroupEntry {
            offset: pack.len() as u32,
            stored_len: g.sealed.len() as u32,
            raw_len: g.raw_len,
            chunks: g.ids,
        });
        pack.extend_from_slice(&g.sealed);
        let _ = spent.try_send(g.sealed);
        if pack.len() >= pack_size {
            finish_pack(key, &mut pack, &groups);
            tx.send((std::mem::take(&mut pack), std::mem::take(&mut groups)))
                .map_err(|_| Error::new(ErrorKind::Internal, "uploader stopped"))?;
        }
    }
    if !groups.is_empty() {
        finish_pack(key, &mut pack, &groups);
        tx.send((pack, groups))
            .map_err(|_| Error::new(ErrorKind::Internal, "uploader stopped"))?;
    }
    Ok(())
}

/// Stores packs (several at once, as the target allows), then index checkpoints
/// listing only packs whose upload finished; returns the bytes added. On failure the
/// uploads in flight are awaited, so whatever got stored is adopted next time.
/// Buffers the storage no longer holds go back to the packer through `used_packs`.
/// Returns the bytes added and the packs stored.
fn uploader(
    repo: &Repository,
    handle: &tokio::runtime::Handle,
    rx: Receiver<(Vec<u8>, Vec<GroupEntry>)>,
    used_packs: Sender<Vec<u8>>,
) -> Result<(u64, Vec<Id>)> {
    type Upload = tokio::task::JoinHandle<Result<(IndexedPack, Bytes)>>;
    let in_flight_max = repo.storage.upload_concurrency().max(1);
    let mut in_flight: std::collections::VecDeque<Upload> = std::collections::VecDeque::new();
    let mut unindexed: Vec<IndexedPack> = Vec::new();
    let mut added = 0u64;
    let mut packs = Vec::new();
    let mut first_err: Option<Error> = None;
    let finish = |h: Upload,
                  unindexed: &mut Vec<IndexedPack>,
                  added: &mut u64,
                  first_err: &mut Option<Error>| {
        match handle.block_on(h) {
            Ok(Ok((p, buffer))) => {
                *added += p.size;
                unindexed.push(p);
                if let Ok(buffer) = buffer.try_into_mut() {
                    let _ = used_packs.try_send(Vec::from(buffer));
                }
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(Error::new(
                    ErrorKind::Internal,
                    format!("upload task failed: {e}"),
                ));
            }
        }
    };
    for (pack, groups) in rx {
        let id = Id::hash(&pack);
        let size = pack.len() as u64;
        let storage = repo.storage.clone();
        packs.push(id);
        in_flight.push_back(handle.spawn(async move {
            let pack = Bytes::from(pack);
            storage.write(&paths::pack(&id), pack.clone()).await?;
            Ok((IndexedPack { id, size, groups }, pack))
        }));
        while in_flight.len() >= in_flight_max {
            if let Some(h) = in_flight.pop_front() {
                finish(h, &mut unindexed, &mut added, &mut first_err);
            }
        }
        if first_err.is_some() {
            break;
        }
        if unindexed.len() >= PACKS_PER_INDEX_CHECKPOINT {
            added += handle.block_on(repo.write_index(&unindexed))?;
            unindexed.clear();
        }
    }
    while let Some(h) = in_flight.pop_front() {
        finish(h, &mut unindexed, &mut added, &mut first_err);
    }
    if let Some(e) = first_err {
        // Packs stored so far stay; the next backup adopts them.
        return Err(e);
    }
    added += handle.block_on(repo.write_index(&unindexed))?;
    Ok((added, packs))
}

/// The cuts a backup starts from and the ones it leaves (see `cut_cache`).
#[derive(Default)]
struct CutMemory {
    /// The previous version's, by entry path.
    previous: SeriesCuts,
    /// Whether the backup is of one file: it then follows the previous version's
    /// one file whatever its name (tonight's `.bak` is named for tonight).
    one_file: bool,
    /// This version's, for the next.
    saved: SeriesCuts,
    stats: PredictionStats,
}

impl CutMemory {
    fn previous_of(&mut self, key: &[u8; 16], max_size: u32) -> Option<PreviousCuts> {
        let chunks = match self.previous.remove(key) {
            Some(c) => c,
            None if self.one_file && self.previous.len() == 1 => {
                self.previous.pop_first().map(|(_, c)| c)?
            }
            None => return None,
        };
        Some(PreviousCuts::new(chunks, max_size)).filter(|p| !p.is_empty())
    }
}

fn walk_sources(
    repo: &Repository,
    sink: &mut ChunkSink<'_>,
    sources: &[PathBuf],
    cuts: &mut CutMemory,
) -> std::result::Result<PipelineOutput, Stopped> {
    let mut roots = Vec::new();
    let mut entries = Vec::new();
    let mut summary = Summary::default();
    let mut used = HashSet::new();
    for src in sources {
        let display = src.to_string_lossy().to_string();
        let mut name = source_name(&display);
        let mut n = 2;
        while !used.insert(name.clone()) {
            name = format!("{}-{n}", source_name(&display));
            n += 1;
        }
        // A source that is a link is followed: its contents are what was asked for.
        // Links further down are stored as links.
        let link = std::fs::symlink_metadata(src)
            .ok()
            .filter(|m| m.file_type().is_symlink())
            .and_then(|_| std::fs::read_link(src).ok());
        let walked = match &link {
            Some(_) => std::fs::canonicalize(src).unwrap_or_else(|_| src.clone()),
            None => src.clone(),
        };
        roots.push(SourceRoot {
            name: name.clone(),
            path: display,
            link: link.map(|l| l.to_string_lossy().to_string()),
        });
        walk(repo, sink, &walked, &name, &mut entries, &mut summary, cuts)?;
    }
    Ok((roots, entries, summary))
}

fn walk(
    repo: &Repository,
    sink: &mut ChunkSink<'_>,
    path: &Path,
    rel: &str,
    entries: &mut Vec<Entry>,
    summary: &mut Summary,
    cuts: &mut CutMemory,
) -> std::result::Result<(), Stopped> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) => {
            summary.errors.push(format!("{}: {e}", path.display()));
            return Ok(());
        }
    };
    let mut entry = Entry {
        path: rel.to_string(),
        kind: EntryKind::File,
        size: 0,
        mode: Some(mode_of(&meta)),
        mtime_ns: mtime_ns(&meta),
        attributes: attributes_of(&meta),
        created_ns: created_ns(&meta),
        blake3: None,
        chunks: Vec::new(),
        chunk_lists: Vec::new(),
        target: None,
    };
    let ft = meta.file_type();
    if ft.is_symlink() {
        match std::fs::read_link(path) {
            Ok(t) => {
                entry.kind = EntryKind::Symlink;
                entry.target = Some(t.to_string_lossy().to_string());
                summary.symlinks += 1;
                entries.push(entry);
            }
            Err(e) => summary.errors.push(format!("{}: {e}", path.display())),
        }
    } else if ft.is_dir() {
        entry.kind = EntryKind::Dir;
        summary.dirs += 1;
        entries.push(entry);
        let mut children: Vec<(String, PathBuf)> = Vec::new();
        match std::fs::read_dir(path) {
            Ok(rd) => {
                for item in rd {
                    match item {
                        Ok(de) => match de.file_name().into_string() {
                            Ok(name) => children.push((name, de.path())),
                            Err(raw) => summary.errors.push(format!(
                                "{}: file name is not valid Unicode, skipped",
                                path.join(raw).display()
                            )),
                        },
                        Err(e) => summary.errors.push(format!("{}: {e}", path.display())),
                    }
                }
            }
            Err(e) => summary.errors.push(format!("{}: {e}", path.display())),
        }
        children.sort();
        for (name, child) in children {
            walk(
                repo,
                sink,
                &child,
                &format!("{rel}/{name}"),
                entries,
                summary,
                cuts,
            )?;
        }
    } else if ft.is_file() {
        // The cache knows files by a keyed hash of their path, never by name.
        let path_key = repo
            .key
            .chunk_id(format!("pacsbak cut cache path\n{rel}").as_bytes())
            .prefix();
        let previous = cuts.previous_of(&path_key, repo.config.chunker.max_size);
        match backup_file_checked(repo, sink, path, previous.as_ref()) {
            Ok(Some(FileChunks {
                size,
                hash,
                ids,
                sizes,
                stats,
            })) => {
                cuts.stats.predicted += stats.predicted;
                cuts.stats.cut += stats.cut;
                if size >= BACKGROUND_CUTTING_FROM {
                    let kept = ids.iter().zip(sizes).map(|(id, n)| (id_prefix(id), n));
                    cuts.saved.insert(path_key, kept.collect());
                }
                summary.files += 1;
                summary.bytes_read += size;
                entry.size = size;
                entry.blake3 = Some(hash);
                set_chunks(sink, &mut entry, ids)?;
                entries.push(entry);
            }
            Ok(None) => return Err(Stopped),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "file skipped");
                summary.errors.push(not_read(path, &e));
            }
        }
    } else {
        summary.errors.push(format!(
            "{}: not a file, folder or link; skipped",
            path.display()
        ));
    }
    Ok(())
}

/// Records a file's chunk ids in its entry: inline when few, else as chunk-list
/// blobs stored through `sink`.
pub(crate) fn set_chunks(
    sink: &mut ChunkSink<'_>,
    entry: &mut Entry,
    ids: Vec<Id>,
) -> std::result::Result<(), Stopped> {
    entry.chunks.clear();
    entry.chunk_lists.clear();
    if ids.len() <= INLINE_CHUNKS {
        entry.chunks = ids;
        return Ok(());
    }
    for list in ids.chunks(IDS_PER_LIST) {
        let mut bytes = Vec::with_capacity(list.len() * 32);
        for id in list {
            bytes.extend_from_slice(&id.0);
        }
        entry.chunk_lists.push(sink.add(&bytes)?);
    }
    Ok(())
}

/// What a file was cut into.
struct FileChunks {
    size: u64,
    /// Plain blake3 of the file, hex.
    hash: String,
    ids: Vec<Id>,
    sizes: Vec<u32>,
    stats: PredictionStats,
}

/// `Ok(None)` means the pipeline stopped; `Err` is a problem with this file.
type FileResult = std::io::Result<Option<FileChunks>>;

/// Reads of a file that keeps changing before it is reported instead of stored.
const READ_ATTEMPTS: u32 = 3;

/// Reads a file, then checks it again: a file whose size or modification time moved
/// while it was read (a .bak still being written, a log appended to, a file cut
/// short) is read again, and after [`READ_ATTEMPTS`] reported, never stored as if
/// the part read were the whole.
/// What a backup says of a file it could not read: a file a running program holds
/// open (Windows' sharing and lock violations) gets what to do about it.
fn not_read(path: &Path, e: &std::io::Error) -> String {
    const SHARING_VIOLATION: i32 = 32;
    const LOCK_VIOLATION: i32 = 33;
    let held =
        cfg!(windows) && matches!(e.raw_os_error(), Some(SHARING_VIOLATION | LOCK_VIOLATION));
    if held {
        format!(
            "{}: {e}: a running program holds it open, NOT backed up. Stop its service around the backup, or back up from a VSS shadow copy (docs/operations.md)",
            path.display()
        )
    } else {
        format!("{}: {e}", path.display())
    }
}

fn backup_file_checked(
    repo: &Repository,
    sink: &mut ChunkSink<'_>,
    path: &Path,
    previous: Option<&PreviousCuts>,
) -> FileResult {
    let mut seen = (0, 0, 0);
    for attempt in 1..=READ_ATTEMPTS {
        let before = std::fs::metadata(path)?;
        let Some(chunks) = backup_file(repo, sink, path, previous)? else {
            return Ok(None);
        };
        let after = std::fs::metadata(path)?;
        if after.len() == before.len()
            && chunks.size == after.len()
            && after.modified().ok() == before.modified().ok()
        {
            return Ok(Some(chunks));
        }
        seen = (before.len(), chunks.size, after.len());
        warn!(path = %path.display(), attempt, "file changed while it was read; reading it again");
    }
    Err(std::io::Error::other(format!(
        "changed while it was read, {READ_ATTEMPTS} times (last time {} bytes when opened, {} read, {} after): not stored. Is a program still writing it?",
        seen.0, seen.1, seen.2
    )))
}

/// Cuts and stores one file; a large one along `previous`, when there is one.
fn backup_file(
    repo: &Repository,
    sink: &mut ChunkSink<'_>,
    path: &Path,
    previous: Option<&PreviousCuts>,
) -> FileResult {
    let file = File::open(path)?;
    let large = file
        .metadata()
        .is_ok_and(|m| m.len() >= BACKGROUND_CUTTING_FROM);
    let mut out = FileChunks {
        size: 0,
        hash: String::new(),
        ids: Vec::new(),
        sizes: Vec::new(),
        stats: PredictionStats::default(),
    };
    let mut hasher = blake3::Hasher::new();
    let mut stopped = false;
    let mut take = |chunk: &[u8], id: Option<Id>| {
        hasher.update(chunk);
        out.size += chunk.len() as u64;
        let added = match id {
            Some(id) => sink.add_known(chunk, id),
            None => sink.add(chunk),
        };
        match added {
            Ok(id) => {
                out.ids.push(id);
                out.sizes.push(chunk.len() as u32);
                Ok(())
            }
            Err(Stopped) => {
                stopped = true;
                Err(std::io::Error::other("pipeline stopped"))
            }
        }
    };
    let params = &repo.config.chunker;
    let seed = repo.key.chunker_seed();
    let res = match previous {
        Some(prev) if large => chunk_stream_predicted::<_, std::io::Error>(
            file,
            params,
            seed,
            prev,
            |c| repo.key.chunk_id(c),
            &mut take,
        )
        .map(|stats| out.stats = stats),
        _ => {
            let cutting = if large {
                Cutting::Background
            } else {
                Cutting::Inline
            };
            chunk_stream::<_, std::io::Error>(file, params, seed, cutting, |c| take(c, None))
        }
    };
    if stopped {
        return Ok(None);
    }
    res?;
    out.hash = hasher.finalize().to_hex().to_string();
    Ok(Some(out))
}

#[cfg(unix)]
fn mode_of(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

#[cfg(not(unix))]
fn mode_of(meta: &std::fs::Metadata) -> u32 {
    if meta.permissions().readonly() {
        0o444
    } else {
        0o666
    }
}

/// The Windows attributes a restore sets again (read-only, hidden, system, archive).
#[cfg(windows)]
fn attributes_of(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::windows::fs::MetadataExt;
    Some(meta.file_attributes() & super::restore::KEPT_ATTRIBUTES)
}

#[cfg(not(windows))]
fn attributes_of(_meta: &std::fs::Metadata) -> Option<u32> {
    None
}

/// The creation time a restore on Windows sets again.
#[cfg(windows)]
fn created_ns(meta: &std::fs::Metadata) -> Option<i128> {
    meta.created().ok().map(ns_since_epoch)
}

#[cfg(not(windows))]
fn created_ns(_meta: &std::fs::Metadata) -> Option<i128> {
    None
}

fn mtime_ns(meta: &std::fs::Metadata) -> Option<i128> {
    meta.modified().ok().map(ns_since_epoch)
}

fn ns_since_epoch(t: std::time::SystemTime) -> i128 {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

//! `prune`: reclaiming the space of removed snapshots, in two phases and without a
//! lock (decision 0002: backups take none; docs/decisions/0011).
//!
//! Phase 1, *mark*: the chunks every manifest references are the used set. A pack
//! none of whose chunks is used is condemned; a pack whose unused share reaches the
//! threshold has its used chunks written into new packs (indexed like a backup's),
//! then is condemned. The condemned packs are written to a mark, `prune/<time>`.
//! From then on backups no longer deduplicate against them (and never adopt them),
//! while restores still read them: nothing is deleted yet.
//!
//! Phase 2, *sweep*, once the mark is older than the grace period (longer than any
//! backup runs): the manifests are read again, and a condemned pack holding a chunk
//! that a manifest written since needs, and no other pack holds, is rescued. The
//! index is rewritten without the condemned packs, the old index files deleted,
//! then the packs, then the mark. Each step can be cut by a crash: the next prune
//! finds the mark and sweeps again, and deleting what is gone is no error.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{debug, info, info_span, warn, Instrument};

use super::fetch::GroupReader;
use super::format::paths;
use super::id::Id;
use super::index::{GroupLoc, Index};
use super::pack::IndexedPack;
use super::Repository;
use crate::error::{Error, ErrorKind, Result};

/// How prune runs.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// A pack whose unused share (by stored bytes) reaches this percentage is
    /// repacked; below it the pack is left as it is.
    pub repack_unused_percent: u8,
    /// How old a mark must be before its packs are deleted: longer than any backup
    /// into this repository runs. Zero sweeps the new mark in the same run (only
    /// when no backup is running).
    pub grace: time::Duration,
    /// Compute and report, change nothing.
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            repack_unused_percent: 10,
            grace: time::Duration::hours(24),
            dry_run: false,
        }
    }
}

/// What prune did (or, with `dry_run`, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// Nothing was changed.
    pub dry_run: bool,
    /// Packs in the index before.
    pub packs_before: usize,
    /// Their bytes.
    pub bytes_before: u64,
    /// Packs no snapshot needs, condemned by this run's mark.
    pub packs_unused: usize,
    /// Packs repacked (their used chunks rewritten), condemned too.
    pub packs_repacked: usize,
    /// Bytes the condemned packs hold.
    pub bytes_condemned: u64,
    /// Bytes written by repacking (packs and index).
    pub bytes_rewritten: u64,
    /// Marks swept (their grace period over).
    pub marks_swept: usize,
    /// Packs deleted by the sweeps.
    pub packs_deleted: usize,
    /// Bytes freed by the sweeps.
    pub bytes_freed: u64,
    /// Condemned packs kept because a snapshot written after the mark needs them.
    pub packs_rescued: usize,
    /// Marks still inside their grace period: `(object, age in hours, packs)`.
    pub marks_pending: Vec<PendingMark>,
    /// Bytes in the index after.
    pub bytes_after: u64,
}

/// A mark waiting for its grace period.
#[derive(Debug, Clone, Serialize)]
pub struct PendingMark {
    /// The object under `prune/`.
    pub object: String,
    /// When it was written.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// Packs it condemns.
    pub packs: usize,
}

/// A mark as stored (sealed JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Mark {
    /// Unix seconds when it was written.
    created: i64,
    /// The condemned packs.
    packs: Vec<Id>,
}

/// The chunks the snapshots of this run use, and which snapshots were read.
#[derive(Default)]
struct Used {
    snapshots: HashSet<Id>,
    chunks: Arc<HashSet<Id>>,
}

/// Index files hold at most this many packs (objects stay bounded in size).
const PACKS_PER_INDEX_FILE: usize = 256;

/// Stops the process at a named point when `PACSBAK_FAILPOINT` names it: the crash
/// tests' way to kill a prune exactly there (as `kill -9` would, nothing cleaned).
fn failpoint(name: &str) {
    if std::env::var("PACSBAK_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}

impl Repository {
    /// Packs condemned by a prune mark: backups neither deduplicate against them
    /// nor adopt them. An unreadable mark is an error: guessing could let a backup
    /// reference a pack about to be deleted.
    pub(crate) async fn condemned_packs(&self) -> Result<HashSet<Id>> {
        Ok(self
            .read_marks()
            .await?
            .into_iter()
            .flat_map(|(_, m)| m.packs)
            .collect())
    }

    async fn read_marks(&self) -> Result<Vec<(String, Mark)>> {
        let mut out = Vec::new();
        for obj in self.storage.list(paths::PRUNE).await? {
            let sealed = self.storage.read(&obj.path).await?;
            let mark = self
                .key
                .open(&sealed)
                .ok()
                .and_then(|plain| serde_json::from_slice::<Mark>(&plain).ok())
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::Integrity,
                        "a prune mark cannot be read: no backup or prune may proceed until it is restored from a copy of this target, or removed by hand after checking that no prune is running",
                    )
                    .with("target", self.storage.name())
                    .with("object", &obj.path)
                })?;
            out.push((obj.path, mark));
        }
        Ok(out)
    }

    /// Removes snapshot manifests (retention). Refused on append-only targets by
    /// the storage itself.
    pub async fn forget(&self, ids: &[Id]) -> Result<()> {
        for id in ids {
            self.storage.delete(&paths::snapshot(id)).await?;
        }
        Ok(())
    }

    /// Sweeps the marks whose grace period is over, then marks what is unused now.
    pub async fn prune(&self, opts: &PruneOptions) -> Result<PruneReport> {
        let span = info_span!(
            "prune",
            target = self.storage.name(),
            dry_run = opts.dry_run
        );
        async {
            let mut report = PruneReport {
                dry_run: opts.dry_run,
                ..PruneReport::default()
            };
            let now = crate::clock::current().now();
            let mut known: Option<Used> = None;
            for (object, mark) in self.read_marks().await? {
                let created = OffsetDateTime::from_unix_timestamp(mark.created)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH);
                if created > now + time::Duration::minutes(5) {
                    return Err(Error::new(
                        ErrorKind::Refused,
                        format!("prune mark {object} is dated {created}, in the future by this machine's clock: a clock is wrong; nothing was deleted"),
                    )
                    .with("target", self.storage.name()));
                }
                if now - created >= opts.grace && !opts.dry_run {
                    self.sweep(&object, &mark, &mut report, &mut known).await?;
                } else {
                    report.marks_pending.push(PendingMark {
                        object,
                        created,
                        packs: mark.packs.len(),
                    });
                }
            }
            let new_mark = self.mark(opts, &mut report, &mut known).await?;
            if let Some((object, mark)) = new_mark {
                if opts.grace <= time::Duration::ZERO {
                    self.sweep(&object, &mark, &mut report, &mut known).await?;
                } else {
                    report.marks_pending.push(PendingMark {
                        object,
                        created: now,
                        packs: mark.packs.len(),
                    });
                }
            }
            report.bytes_after = if opts.dry_run {
                report.bytes_before - report.bytes_condemned + report.bytes_rewritten
            } else {
                self.read_index_files()
                    .await?
                    .iter()
                    .map(|p| (p.id, p.size))
                    .collect::<HashMap<_, _>>()
                    .values()
                    .sum()
            };
            info!(
                condemned = report.bytes_condemned,
                freed = report.bytes_freed,
                "prune finished"
            );
            Ok(report)
        }
        .instrument(span)
        .await
    }

    /// Every chunk the snapshots reference (chunk-list blobs expanded and counted),
    /// read with `index`. `known` holds what an earlier step of this run found: only
    /// manifests written since are read (a superset is safe: it keeps more). A
    /// damaged manifest, or a list blob that cannot be read, stops prune: what it
    /// references cannot be known.
    async fn used_chunks(
        &self,
        index: &Arc<Index>,
        known: &mut Option<Used>,
    ) -> Result<Arc<HashSet<Id>>> {
        let listed: Vec<Id> = self
            .storage
            .list(paths::SNAPSHOTS)
            .await?
            .iter()
            .filter_map(|o| paths::id_of(&o.path))
            .collect();
        let used = known.get_or_insert_with(Used::default);
        let mut fresh = Vec::new();
        let mut damaged = Vec::new();
        for id in listed.iter().filter(|id| !used.snapshots.contains(id)) {
            match self.load_snapshot_exact(id).await {
                Ok(s) => fresh.push(s),
                Err(e) if e.kind() == ErrorKind::Integrity => damaged.push(*id),
                Err(e) => return Err(e),
            }
        }
        if let Some(d) = damaged.first() {
            return Err(Error::new(
                ErrorKind::Integrity,
                format!(
                    "{} snapshot manifest(s) cannot be read (first: {}): prune must know every snapshot's chunks; restore the manifests from a copy of this target or remove them by hand, then prune again",
                    damaged.len(),
                    d.short()
                ),
            )
            .with("target", self.storage.name()));
        }
        let reader = GroupReader {
            repo: self.clone(),
            index: index.clone(),
            handle: tokio::runtime::Handle::current(),
        };
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .clamp(1, 8);
        // Chunk lists are expanded on every core: each needs a group read and opened.
        let found = tokio::task::spawn_blocking(move || {
            std::thread::scope(|scope| {
                let per = fresh.len().div_ceil(threads).max(1);
                let workers: Vec<_> = fresh
                    .chunks(per)
                    .map(|part| {
                        let reader = reader.clone();
                        scope.spawn(move || {
                            let mut out = HashSet::new();
                            for s in part {
                                for e in &s.entries {
                                    out.extend(e.chunk_lists.iter().copied());
                                    if e.chunk_lists.is_empty() {
                                        out.extend(e.chunks.iter().copied());
                                    } else {
                                        out.extend(
                                            reader
                                                .file_chunks(e)
                                                .map_err(|err| err.with("file", &e.path))?,
                                        );
                                    }
                                }
                            }
                            Ok::<_, Error>(out)
                        })
                    })
                    .collect();
                let mut all = HashSet::new();
                for w in workers {
                    let part = w
                        .join()
                        .map_err(|_| Error::new(ErrorKind::Internal, "prune thread panicked"))??;
                    all.extend(part);
                }
                Ok::<_, Error>(all)
            })
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("prune task failed: {e}")))??;
        let chunks = Arc::make_mut(&mut used.chunks);
        chunks.extend(found);
        used.snapshots.extend(listed);
        Ok(used.chunks.clone())
    }

    /// Phase 1: condemns unused packs, repacks partly used ones, writes the mark.
    async fn mark(
        &self,
        opts: &PruneOptions,
        report: &mut PruneReport,
        known: &mut Option<Used>,
    ) -> Result<Option<(String, Mark)>> {
        let already = self.condemned_packs().await?;
        let suspects = self.suspect_packs().await;
        let started = std::time::Instant::now();
        let files = self.read_index_files().await?;
        debug!(
            ms = started.elapsed().as_millis(),
            files = files.len(),
            "prune: index read"
        );
        let mut packs: HashMap<Id, &IndexedPack> = HashMap::new();
        for p in &files {
            packs.entry(p.id).or_insert(p);
        }
        report.packs_before = packs.len();
        report.bytes_before = packs.values().map(|p| p.size).sum();
        let index = Arc::new(super::index_preferring_healthy(&files, &suspects));
        let used = self.used_chunks(&index, known).await?;
        debug!(
            ms = started.elapsed().as_millis(),
            chunks = used.len(),
            "prune: used chunks known"
        );

        let mut unused: Vec<Id> = Vec::new();
        let mut repack: Vec<Id> = Vec::new();
        for (id, p) in &packs {
            if already.contains(id) {
                continue;
            }
            let pos = index.pack_position(id);
            let (mut used_bytes, mut total) = (0f64, 0f64);
            for g in &p.groups {
                let served = g
                    .chunks
                    .iter()
                    .filter(|c| {
                        used.contains(c) && index.lookup(c).is_some_and(|l| Some(l.pack) == pos)
                    })
                    .count();
                total += g.stored_len as f64;
                if !g.chunks.is_empty() {
                    used_bytes += g.stored_len as f64 * served as f64 / g.chunks.len() as f64;
                }
            }
            if used_bytes == 0.0 {
                unused.push(*id);
            } else if !suspects.contains(id)
                && total > 0.0
                && (total - used_bytes) * 100.0 >= total * opts.repack_unused_percent as f64
            {
                repack.push(*id);
            }
        }
        report.packs_unused = unused.len();
        debug!(
            ms = started.elapsed().as_millis(),
            unused = unused.len(),
            repack = repack.len(),
            "prune: packs classified"
        );
        report.packs_repacked = repack.len();
        report.bytes_condemned = unused
            .iter()
            .chain(&repack)
            .filter_map(|id| packs.get(id))
            .map(|p| p.size)
            .sum();
        if unused.is_empty() && repack.is_empty() {
            return Ok(None);
        }
        if opts.dry_run {
            // What the repacked packs would take again, estimated from their groups.
            report.bytes_rewritten = repack
                .iter()
                .filter_map(|id| packs.get(id))
                .map(|p| {
                    p.groups
                        .iter()
                        .map(|g| {
                            let n = g.chunks.iter().filter(|c| used.contains(c)).count();
                            g.stored_len as u64 * n as u64 / g.chunks.len().max(1) as u64
                        })
                        .sum::<u64>()
                })
                .sum();
            return Ok(None);
        }

        if !repack.is_empty() {
            let condemned: HashSet<Id> = unused
                .iter()
                .chain(&repack)
                .chain(already.iter())
                .copied()
                .collect();
            // A chunk is only taken as safe elsewhere in a healthy pack.
            let keep_index =
                Arc::new(Index::of_packs(files.iter().filter(|p| {
                    !condemned.contains(&p.id) && !suspects.contains(&p.id)
                })));
            let sources: Vec<IndexedPack> = repack
                .iter()
                .filter_map(|id| packs.get(id).map(|p| (*p).clone()))
                .collect();
            let repo = self.clone();
            let handle = tokio::runtime::Handle::current();
            let reader = GroupReader {
                repo: self.clone(),
                index: index.clone(),
                handle: handle.clone(),
            };
            let written = tokio::task::spawn_blocking(move || {
                super::backup::run_pipeline(&repo, &handle, &keep_index, None, |sink| {
                    for p in &sources {
                        let Some(pos) = reader.index.pack_position(&p.id) else {
                            continue;
                        };
                        for g in &p.groups {
                            if !g.chunks.iter().any(|c| used.contains(c)) {
                                continue;
                            }
                            let opened = reader.read(GroupLoc {
                                pack: pos,
                                offset: g.offset,
                                stored_len: g.stored_len,
                                raw_len: g.raw_len,
                            })?;
                            for (id, data) in opened.chunks() {
                                if used.contains(&id) {
                                    sink.add_known(data, id)?;
                                }
                            }
                        }
                    }
                    Ok(())
                })
            })
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, format!("repack task failed: {e}")))??;
            report.bytes_rewritten = written.1.added_bytes;
            info!(
                packs = written.1.packs.len(),
                bytes = written.1.added_bytes,
                "repacked the used chunks of partly used packs"
            );
        }
        debug!(ms = started.elapsed().as_millis(), "prune: repacked");
        failpoint("prune:after-repack");

        let mark = Mark {
            created: crate::clock::current().now().unix_timestamp(),
            packs: unused.into_iter().chain(repack).collect(),
        };
        let json = serde_json::to_vec(&mark)
            .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        let object = format!(
            "{}{:016x}-{}",
            paths::PRUNE,
            mark.created,
            Id::random().short()
        );
        self.storage
            .write(&object, Bytes::from(self.key.seal(&json)))
            .await?;
        info!(object, packs = mark.packs.len(), "prune mark written");
        failpoint("prune:after-mark");
        Ok(Some((object, mark)))
    }

    /// Phase 2: deletes the packs of one mark whose grace period is over.
    async fn sweep(
        &self,
        object: &str,
        mark: &Mark,
        report: &mut PruneReport,
        known: &mut Option<Used>,
    ) -> Result<()> {
        let started = std::time::Instant::now();
        let files_listed = self.storage.list(paths::INDEX).await?;
        let files = self.read_index_objects(&files_listed).await?;
        let suspects = self.suspect_packs().await;
        let index = Arc::new(super::index_preferring_healthy(&files, &suspects));
        let used = self.used_chunks(&index, known).await?;
        let mut deleting: HashSet<Id> = mark.packs.iter().copied().collect();
        // A chunk whose only other copy is in a pack a read found damaged is rescued.
        let staying = Index::of_packs(
            files
                .iter()
                .filter(|p| !deleting.contains(&p.id) && !suspects.contains(&p.id)),
        );
        for c in used.iter() {
            if staying.contains(c) {
                continue;
            }
            if let Some(pack) = index.lookup(c).and_then(|l| index.pack(l.pack)) {
                if deleting.remove(&pack.id) {
                    warn!(pack = %pack.id.short(), "a condemned pack holds a chunk a newer snapshot needs: rescued");
                    report.packs_rescued += 1;
                }
            }
        }
        let mut seen = HashSet::new();
        let keep: Vec<&IndexedPack> = files
            .iter()
            .filter(|p| !deleting.contains(&p.id) && seen.insert(p.id))
            .collect();
        let gone: HashMap<Id, u64> = files
            .iter()
            .filter(|p| deleting.contains(&p.id))
            .map(|p| (p.id, p.size))
            .collect();
        for chunk in keep.chunks(PACKS_PER_INDEX_FILE) {
            let owned: Vec<IndexedPack> = chunk.iter().map(|p| (*p).clone()).collect();
            self.write_index(&owned).await?;
        }
        failpoint("prune:after-new-index");
        for obj in &files_listed {
            self.storage.delete(&obj.path).await?;
        }
        failpoint("prune:after-index-delete");
        for (n, id) in deleting.iter().enumerate() {
            self.storage.delete(&paths::pack(id)).await?;
            if n == deleting.len() / 2 {
                failpoint("prune:during-pack-delete");
            }
        }
        self.storage.delete(object).await?;
        report.marks_swept += 1;
        report.packs_deleted += deleting.len();
        report.bytes_freed += deleting.iter().filter_map(|id| gone.get(id)).sum::<u64>();
        info!(
            object,
            packs = deleting.len(),
            ms = started.elapsed().as_millis(),
            "prune mark swept"
        );
        Ok(())
    }
}

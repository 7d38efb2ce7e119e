//! `copy --from A --to B`: the second (and third) copy of the 3-2-1 rule.
//!
//! When B was created with `repo init --copy-keys-from A` it shares A's master key
//! and chunker parameters (docs/decisions/0003-copy-shares-keys.md): packs travel as
//! they are, never decrypted, and only packs holding chunks B lacks are sent. Order
//! is the backup's: packs, then an index listing them, then each manifest last, so an
//! interrupted copy leaves B consistent and the next copy resumes from what is stored.
//!
//! When B has keys of its own, every chunk a missing snapshot needs is read from A,
//! opened, and fed to B's write pipeline, which names it under B's key, keeps it only
//! if B lacks it, and seals it with B's key: chunk boundaries stay A's. Each file's
//! blake3 is checked on the way; the manifest is rewritten with B's chunk ids and
//! records A's snapshot id (`copied_from`) so the next copy skips it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;
use tracing::{info, info_span, Instrument};

use super::backup::{run_pipeline, set_chunks, ChunkSink};
use super::fetch::GroupReader;
use super::format::paths;
use super::id::Id;
use super::pack::IndexedPack;
use super::snapshot::{Entry, EntryKind, COPIED_FROM};
use super::Repository;
use crate::error::{Error, ErrorKind, Result};

/// Index checkpoints during a copy are written after this many packs.
const PACKS_PER_CHECKPOINT: usize = 8;

/// What a copy did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyReport {
    /// Source target.
    pub from: String,
    /// Destination target.
    pub to: String,
    /// Snapshots copied now.
    pub copied: Vec<Id>,
    /// Snapshots the destination already had.
    pub already_present: usize,
    /// Packs sent.
    pub packs_sent: usize,
    /// Bytes sent (packs, index and manifests).
    pub bytes_sent: u64,
    /// Whether the keys differed, so chunks were decrypted and sealed anew.
    pub reencrypted: bool,
}

impl Repository {
    /// Creates a repository on `storage` that shares `from`'s master key and
    /// parameters, opened by `passphrase`, so `copy` can move packs unchanged.
    pub async fn init_copy_of(
        storage: Arc<dyn crate::storage::Storage>,
        passphrase: &str,
        from: &Repository,
    ) -> Result<Repository> {
        Self::init_inner(storage, passphrase, from.config.clone(), Some(&from.key)).await
    }

    /// Whether `other` can read this repository's packs as they are.
    pub fn shares_keys_with(&self, other: &Repository) -> bool {
        self.config.id == other.config.id
            && self.key.chunk_id(b"pacsbak key comparison")
                == other.key.chunk_id(b"pacsbak key comparison")
    }

    /// Copies every snapshot `dest` lacks, sending only the packs it needs.
    pub async fn copy_to(&self, dest: &Repository) -> Result<CopyReport> {
        let span = info_span!("copy", from = self.storage.name(), to = dest.storage.name());
        self.copy_inner(dest).instrument(span).await
    }

    async fn copy_inner(&self, dest: &Repository) -> Result<CopyReport> {
        let reencrypt = !self.shares_keys_with(dest);
        let mut report = CopyReport {
            from: self.storage.name().to_string(),
            to: dest.storage.name().to_string(),
            reencrypted: reencrypt,
            ..CopyReport::default()
        };
        let mut have: HashSet<Id> = dest
            .storage
            .list(paths::SNAPSHOTS)
            .await?
            .iter()
            .filter_map(|o| paths::id_of(&o.path))
            .collect();
        // The destination's manifests, read once and only when needed.
        let mut dest_snapshots = None;
        if reencrypt {
            let snaps = dest.snapshots().await?;
            have.extend(snaps.iter().filter_map(|s| s.snapshot.copied_from()));
            dest_snapshots = Some(snaps);
        }
        let mut missing = Vec::new();
        for obj in self.storage.list(paths::SNAPSHOTS).await? {
            if let Some(id) = paths::id_of(&obj.path) {
                if have.contains(&id) {
                    report.already_present += 1;
                } else {
                    missing.push(id);
                }
            }
        }
        // The same backup the policy stored on both targets is not copied again.
        if !missing.is_empty() {
            let dest_snapshots = match dest_snapshots {
                Some(s) => s,
                None => dest.snapshots().await?,
            };
            let twins: HashSet<String> = dest_snapshots
                .iter()
                .filter_map(|s| s.snapshot.twin_key())
                .collect();
            if !twins.is_empty() {
                let mut still = Vec::new();
                for id in missing {
                    let snap = self.load_snapshot_exact(&id).await?;
                    if snap.twin_key().is_some_and(|k| twins.contains(&k)) {
                        report.already_present += 1;
                    } else {
                        still.push(id);
                    }
                }
                missing = still;
            }
        }
        if missing.is_empty() {
            return Ok(report);
        }
        if reencrypt {
            self.reencrypt_into(dest, &missing, &have, &mut report)
                .await?;
            info!(
                snapshots = report.copied.len(),
                packs = report.packs_sent,
                bytes = report.bytes_sent,
                "copy (re-encrypted) finished"
            );
            return Ok(report);
        }
        let src_index = Arc::new(self.load_index().await?);
        let mut dest_index = dest.load_dedup_index().await?;
        dest.adopt_orphan_packs(&mut dest_index).await?;
        let src_packs: HashMap<Id, IndexedPack> = self
            .read_index_files()
            .await?
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
        // Which source packs hold chunks the destination lacks.
        let mut snapshots = Vec::new();
        for id in &missing {
            snapshots.push((*id, self.load_snapshot_exact(id).await?));
        }
        let reader = GroupReader {
            repo: self.clone(),
            index: src_index.clone(),
            handle: tokio::runtime::Handle::current(),
        };
        let dest_index = Arc::new(dest_index);
        let di = dest_index.clone();
        let needed: BTreeSet<Id> = tokio::task::spawn_blocking(move || -> Result<BTreeSet<Id>> {
            let mut packs = BTreeSet::new();
            let mut need = |id: &Id| -> Result<()> {
                if di.contains(id) {
                    return Ok(());
                }
                let loc = reader.index.lookup(id).ok_or_else(|| {
                    Error::new(ErrorKind::Integrity, "a chunk a snapshot needs is in no index of the source; run `pacsbak verify` on it")
                        .with("chunk", id.short())
                })?;
                if let Some(p) = reader.index.pack(loc.pack) {
                    packs.insert(p.id);
                }
                Ok(())
            };
            for (_, snap) in &snapshots {
                for e in &snap.entries {
                    for l in &e.chunk_lists {
                        need(l)?;
                    }
                    for c in reader.file_chunks(e)? {
                        need(&c)?;
                    }
                }
            }
            Ok(packs)
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("copy planning failed: {e}")))??;
        // Packs, several at once; an index checkpoint every few packs.
        let conc = dest.storage.upload_concurrency().max(1);
        let ids: Vec<Id> = needed.into_iter().collect();
        let mut unindexed: Vec<IndexedPack> = Vec::new();
        for batch in ids.chunks(conc) {
            let mut tasks = Vec::new();
            for id in batch {
                let (src, dst, id) = (self.storage.clone(), dest.storage.clone(), *id);
                tasks.push(tokio::spawn(async move {
                    let path = paths::pack(&id);
                    let bytes = src.read(&path).await?;
                    if Id::hash(&bytes) != id {
                        return Err(Error::new(
                            ErrorKind::Integrity,
                            "source pack does not match its name; not copied",
                        )
                        .with("object", &path));
                    }
                    let n = bytes.len() as u64;
                    dst.write(&path, bytes).await?;
                    Ok::<_, Error>((id, n))
                }));
            }
            let mut first_err = None;
            for t in tasks {
                match t.await {
                    Ok(Ok((id, n))) => {
                        report.packs_sent += 1;
                        report.bytes_sent += n;
                        if let Some(p) = src_packs.get(&id) {
                            unindexed.push(p.clone());
                        }
                    }
                    Ok(Err(e)) => {
                        first_err.get_or_insert(e);
                    }
                    Err(e) => {
                        first_err.get_or_insert(Error::new(
                            ErrorKind::Internal,
                            format!("copy task failed: {e}"),
                        ));
                    }
                }
            }
            if let Some(e) = first_err {
                return Err(e);
            }
            if unindexed.len() >= PACKS_PER_CHECKPOINT {
                report.bytes_sent += dest.write_index(&unindexed).await?;
                unindexed.clear();
            }
        }
        report.bytes_sent += dest.write_index(&unindexed).await?;
        // Manifests last, byte for byte (same key, same name).
        for id in &missing {
            let path = paths::snapshot(id);
            let bytes: Bytes = self.storage.read(&path).await?;
            report.bytes_sent += bytes.len() as u64;
            dest.storage.write(&path, bytes).await?;
            report.copied.push(*id);
        }
        info!(
            snapshots = report.copied.len(),
            packs = report.packs_sent,
            bytes = report.bytes_sent,
            "copy finished"
        );
        Ok(report)
    }

    /// Copies `missing` snapshots into `dest`, whose keys differ: chunks are opened
    /// here and sealed anew by `dest`'s write pipeline.
    async fn reencrypt_into(
        &self,
        dest: &Repository,
        missing: &[Id],
        dest_has: &HashSet<Id>,
        report: &mut CopyReport,
    ) -> Result<()> {
        let mut snapshots = Vec::new();
        for id in missing {
            let snap = self.load_snapshot_exact(id).await?;
            // A snapshot that is itself a copy of one the destination holds (a copy
            // going back, or arriving by another route) is already there.
            if snap.copied_from().is_some_and(|c| dest_has.contains(&c)) {
                report.already_present += 1;
                continue;
            }
            snapshots.push((*id, snap));
        }
        if snapshots.is_empty() {
            return Ok(());
        }
        let reader = GroupReader {
            repo: self.clone(),
            index: Arc::new(self.load_index().await?),
            handle: tokio::runtime::Handle::current(),
        };
        let mut dest_index = dest.load_dedup_index().await?;
        dest.adopt_orphan_packs(&mut dest_index).await?;
        let dest_repo = dest.clone();
        let handle = tokio::runtime::Handle::current();
        let (rewritten, written) = tokio::task::spawn_blocking(move || {
            run_pipeline(&dest_repo, &handle, &dest_index, None, |sink| {
                let mut out = Vec::with_capacity(snapshots.len());
                for (id, mut snap) in snapshots {
                    for entry in snap.entries.iter_mut() {
                        reencrypt_entry(&reader, sink, entry)?;
                    }
                    snap.meta
                        .insert(COPIED_FROM.to_string(), serde_json::json!(id.to_hex()));
                    out.push((id, snap));
                }
                Ok(out)
            })
        })
        .await
        .map_err(|e| Error::new(ErrorKind::Internal, format!("copy task failed: {e}")))??;
        report.packs_sent += written.packs.len();
        report.bytes_sent += written.added_bytes;
        // Manifests last, each once every pack and index it needs is stored.
        for (source_id, snap) in rewritten {
            let new_id = dest.save_snapshot(&snap).await?;
            report.bytes_sent += dest
                .storage
                .size(&paths::snapshot(&new_id))
                .await?
                .unwrap_or(0);
            report.copied.push(source_id);
        }
        Ok(())
    }
}

/// Feeds one file's chunks to `sink` and points `entry` at their new ids, checking
/// that the bytes read back still have the blake3 the manifest records.
fn reencrypt_entry(
    reader: &GroupReader,
    sink: &mut ChunkSink<'_>,
    entry: &mut Entry,
) -> Result<()> {
    if entry.kind != EntryKind::File || (entry.chunks.is_empty() && entry.chunk_lists.is_empty()) {
        return Ok(());
    }
    let ids = reader.file_chunks(entry)?;
    let mut new_ids = Vec::with_capacity(ids.len());
    let mut hasher = blake3::Hasher::new();
    reader.for_each_chunk(&ids, 2, |data| {
        hasher.update(data);
        new_ids.push(sink.add(data)?);
        Ok(())
    })?;
    let hash = hasher.finalize().to_hex().to_string();
    if entry.blake3.as_deref().is_some_and(|h| h != hash) {
        return Err(Error::new(
            ErrorKind::Integrity,
            "a file read back from the source does not match its recorded blake3; not copied",
        )
        .with("target", reader.repo.storage.name())
        .with("path", &entry.path));
    }
    set_chunks(sink, entry, new_ids)?;
    Ok(())
}

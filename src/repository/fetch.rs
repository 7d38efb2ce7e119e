//! Reading chunks back: groups fetched and opened in parallel, delivered in order.
//!
//! Used by restore (and by anything that needs a file's bytes). Every group opened is
//! authenticated by its seal, and a chunk is only taken from a group whose table
//! lists its full id; restore then proves each file by its blake3, so bytes that
//! came back different from what was stored never reach a restored file.

use std::collections::VecDeque;
use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver};

use super::format::paths;
use super::id::Id;
use super::index::{GroupLoc, Index};
use super::pack::{group_chunks, open_group, PackError};
use super::snapshot::Entry;
use super::Repository;
use crate::error::{Error, ErrorKind, Result};

/// An opened, verified group.
pub(crate) struct OpenedGroup {
    plain: Vec<u8>,
    chunks: Vec<(Id, std::ops::Range<usize>)>,
}

impl OpenedGroup {
    /// Every chunk of the group with its bytes, in stored order.
    pub(crate) fn chunks(&self) -> impl Iterator<Item = (Id, &[u8])> {
        self.chunks
            .iter()
            .map(|(id, r)| (*id, &self.plain[r.clone()]))
    }

    /// The bytes of chunk `id`, if this group holds it.
    pub(crate) fn chunk(&self, id: &Id) -> Option<&[u8]> {
        self.chunks
            .iter()
            .find(|(c, _)| c == id)
            .map(|(_, r)| &self.plain[r.clone()])
    }
}

/// Reads groups of one repository from blocking threads.
#[derive(Clone)]
pub(crate) struct GroupReader {
    pub(crate) repo: Repository,
    pub(crate) index: Arc<Index>,
    pub(crate) handle: tokio::runtime::Handle,
}

impl GroupReader {
    /// Fetches, opens and verifies one group (blocking).
    pub(crate) fn read(&self, loc: GroupLoc) -> Result<OpenedGroup> {
        let pack = self
            .index
            .pack(loc.pack)
            .ok_or_else(|| Error::new(ErrorKind::Internal, "index names an unknown pack"))?;
        let path = paths::pack(&pack.id);
        let start = loc.offset as u64;
        let sealed = self.handle.block_on(
            self.repo
                .storage
                .read_range(&path, start..start + loc.stored_len as u64),
        )?;
        let damaged = |e: PackError| {
            Error::new(ErrorKind::Integrity, format!("damaged data in pack: {e}"))
                .with("target", self.repo.storage.name())
                .with("pack", pack.id.short())
                .with("offset", loc.offset)
        };
        if sealed.len() != loc.stored_len as usize {
            return Err(damaged(PackError::Malformed(
                "pack is shorter than its index says".into(),
            )));
        }
        // The seal authenticates the group and restore checks each file's blake3, so
        // the per-chunk keyed hashes are left to `verify --read-data`.
        let plain = open_group(&self.repo.key, &sealed, loc.raw_len as usize).map_err(damaged)?;
        let chunks = group_chunks(&plain).map_err(damaged)?;
        Ok(OpenedGroup { plain, chunks })
    }

    fn locate(&self, id: &Id) -> Result<GroupLoc> {
        self.index.lookup(id).ok_or_else(|| {
            Error::new(
                ErrorKind::Integrity,
                "a chunk the snapshot needs is not in the repository",
            )
            .with("chunk", id.short())
            .with("target", self.repo.storage.name())
        })
    }

    /// Reads one chunk (used for chunk-list blobs).
    pub(crate) fn chunk(&self, id: &Id) -> Result<Vec<u8>> {
        let g = self.read(self.locate(id)?)?;
        g.chunk(id).map(|c| c.to_vec()).ok_or_else(|| {
            Error::new(
                ErrorKind::Integrity,
                "chunk missing from the group its index names",
            )
            .with("chunk", id.short())
        })
    }

    /// The chunk ids of a file entry, expanding chunk-list blobs.
    pub(crate) fn file_chunks(&self, entry: &Entry) -> Result<Vec<Id>> {
        if entry.chunk_lists.is_empty() {
            return Ok(entry.chunks.clone());
        }
        let mut ids = Vec::new();
        for list in &entry.chunk_lists {
            let bytes = self.chunk(list)?;
            if bytes.len() % 32 != 0 {
                return Err(
                    Error::new(ErrorKind::Integrity, "chunk list has a bad length")
                        .with("path", &entry.path),
                );
            }
            ids.extend(bytes.chunks_exact(32).map(|c| {
                let mut a = [0u8; 32];
                a.copy_from_slice(c);
                Id(a)
            }));
        }
        Ok(ids)
    }

    /// Delivers the bytes of `ids` in order to `sink`, opening groups on `workers`
    /// threads ahead of the consumer.
    pub(crate) fn for_each_chunk(
        &self,
        ids: &[Id],
        workers: usize,
        mut sink: impl FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        // Runs of consecutive chunks that live in the same group become one job.
        let mut jobs: Vec<(GroupLoc, std::ops::Range<usize>)> = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let loc = self.locate(id)?;
            match jobs.last_mut() {
                Some((l, r)) if *l == loc => r.end = i + 1,
                _ => jobs.push((loc, i..i + 1)),
            }
        }
        if jobs.is_empty() {
            return Ok(());
        }
        let workers = workers.clamp(1, 8);
        let (job_tx, job_rx) =
            bounded::<(GroupLoc, crossbeam_channel::Sender<Result<OpenedGroup>>)>(workers * 2);
        std::thread::scope(|scope| {
            for _ in 0..workers {
                let rx = job_rx.clone();
                let me = self.clone();
                scope.spawn(move || {
                    for (loc, reply) in rx {
                        let _ = reply.send(me.read(loc));
                    }
                });
            }
            drop(job_rx);
            let depth = workers * 2;
            let mut inflight: VecDeque<(Receiver<Result<OpenedGroup>>, std::ops::Range<usize>)> =
                VecDeque::new();
            let mut next = 0usize;
            let result = (|| loop {
                while inflight.len() < depth && next < jobs.len() {
                    let (loc, range) = jobs[next].clone();
                    let (tx, rx) = bounded(1);
                    job_tx
                        .send((loc, tx))
                        .map_err(|_| Error::new(ErrorKind::Internal, "reader threads stopped"))?;
                    inflight.push_back((rx, range));
                    next += 1;
                }
                let Some((rx, range)) = inflight.pop_front() else {
                    return Ok(());
                };
                let group = rx
                    .recv()
                    .map_err(|_| Error::new(ErrorKind::Internal, "reader thread stopped"))??;
                for id in &ids[range] {
                    let data = group.chunk(id).ok_or_else(|| {
                        Error::new(ErrorKind::Integrity, "chunk missing from its group")
                            .with("chunk", id.short())
                    })?;
                    sink(data)?;
                }
            })();
            drop(job_tx);
            result
        })
    }
}

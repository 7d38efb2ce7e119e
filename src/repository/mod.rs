//! The offsite repository: deduplicated, compressed, encrypted, verifiable.
//!
//! A [`Repository`] is a storage target opened with a passphrase. Writers add
//! packs, then index files, then snapshot manifests, never rewriting an object, so
//! two processes can back up into one repository at once and a crash leaves only
//! unreferenced objects behind. The layout is in docs/repository-format.md.

mod backup;
mod chunker;
mod copy;
mod crypto;
mod cut_cache;
mod diff;
mod fetch;
mod format;
mod id;
mod index;
mod keys;
mod pack;
mod prediction;
mod prune;
mod restore;
mod safe_path;
mod snapshot;
mod verify;

use std::sync::Arc;

use bytes::Bytes;
use tracing::{info, warn};

pub use backup::{BackupOptions, BackupReport, Ingested, CLOCK_TOLERANCE};
pub use copy::CopyReport;
pub use cut_cache::cache_dir as cut_cache_dir;
pub use diff::{diff_snapshots, Change, ChangeKind, SnapshotDiff};
pub use format::{ChunkerParams, RepoConfig};
pub use id::Id;
pub use index::Index;
pub use keys::KeyFile;
pub use prune::{PendingMark, PruneOptions, PruneReport};
pub use restore::{RestoreOptions, RestoreReport};
pub use snapshot::{
    DamagedSnapshot, Entry, EntryKind, Snapshot, SnapshotFilter, SnapshotKind, SnapshotListing,
    SnapshotRef, SourceRoot, Summary, RUN,
};
pub use verify::{DamagedPack, ReadBack, ReadData, VerifyOptions, VerifyReport};

use crate::error::{Error, ErrorKind, Result};
use crate::storage::Storage;
use crypto::MasterKey;
use format::{paths, FORMAT_VERSION};
use pack::IndexedPack;

/// An open repository: a storage target and the keys to read it.
#[derive(Clone, Debug)]
pub struct Repository {
    storage: Arc<dyn Storage>,
    key: Arc<MasterKey>,
    config: RepoConfig,
}

/// A key slot as listed by `repo key list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    /// Slot id.
    pub id: Id,
    /// Whether this is the slot the repository was opened with.
    pub current: bool,
    /// Host that added it.
    pub hostname: String,
    /// Label.
    pub label: String,
    /// When it was added.
    #[serde(with = "time::serde::rfc3339")]
    pub created: time::OffsetDateTime,
}

/// This machine's name, for manifests and key slots.
pub fn hostname() -> String {
    std::env::var("COMPUTERNAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}

impl Repository {
    /// Creates a repository on an empty target.
    pub async fn init(storage: Arc<dyn Storage>, passphrase: &str) -> Result<Repository> {
        Self::init_with(storage, passphrase, RepoConfig::new_default()).await
    }

    /// Creates a repository with explicit parameters (benchmarks and tuning).
    pub async fn init_with(
        storage: Arc<dyn Storage>,
        passphrase: &str,
        config: RepoConfig,
    ) -> Result<Repository> {
        Self::init_inner(storage, passphrase, config, None).await
    }

    async fn init_inner(
        storage: Arc<dyn Storage>,
        passphrase: &str,
        config: RepoConfig,
        shared_key: Option<&MasterKey>,
    ) -> Result<Repository> {
        config.validate()?;
        check_passphrase(passphrase)?;
        if storage.size(paths::CONFIG).await?.is_some()
            || !storage.list(paths::KEYS).await?.is_empty()
        {
            return Err(Error::new(
                ErrorKind::Refused,
                "a repository already exists on this target; nothing was changed",
            )
            .with("target", storage.name()));
        }
        let key = match shared_key {
            Some(k) => k.clone(),
            None => MasterKey::generate(),
        };
        let slot = KeyFile::create(&key, passphrase, "initial")?;
        let slot_json = serde_json::to_vec_pretty(&slot)
            .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        let cfg_json = serde_json::to_vec(&config)
            .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        // Key slot first: a config without a key would be unreadable forever.
        storage
            .write(&paths::key(&Id::random()), Bytes::from(slot_json))
            .await?;
        storage
            .write(paths::CONFIG, Bytes::from(key.seal(&cfg_json)))
            .await?;
        info!(target = storage.name(), id = %config.id.short(), "repository created");
        Ok(Repository {
            storage,
            key: Arc::new(key),
            config,
        })
    }

    /// Opens an existing repository; a wrong passphrase is refused before any write.
    pub async fn open(storage: Arc<dyn Storage>, passphrase: &str) -> Result<Repository> {
        let (key, _) = unlock(storage.as_ref(), passphrase).await?;
        let sealed = storage.read(paths::CONFIG).await.map_err(|e| {
            Error::new(
                ErrorKind::Format,
                format!("repository config unreadable: {e}"),
            )
            .with("target", storage.name())
        })?;
        let plain = key.open(&sealed).map_err(|e| {
            Error::new(ErrorKind::Integrity, format!("repository config: {e}"))
                .with("target", storage.name())
        })?;
        let config: RepoConfig = serde_json::from_slice(&plain).map_err(|e| {
            Error::new(ErrorKind::Format, format!("repository config: {e}"))
                .with("target", storage.name())
        })?;
        if config.version > FORMAT_VERSION {
            return Err(Error::new(
                ErrorKind::Format,
                format!(
                    "repository format {} is newer than this pacsbak understands ({FORMAT_VERSION}): upgrade pacsbak",
                    config.version
                ),
            )
            .with("target", storage.name()));
        }
        Ok(Repository {
            storage,
            key: Arc::new(key),
            config,
        })
    }

    /// The storage target.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The pinned parameters.
    pub fn config(&self) -> &RepoConfig {
        &self.config
    }

    /// Adds a key slot for `new_passphrase`.
    pub async fn add_key(&self, new_passphrase: &str, label: &str) -> Result<Id> {
        check_passphrase(new_passphrase)?;
        let slot = KeyFile::create(&self.key, new_passphrase, label)?;
        let json = serde_json::to_vec_pretty(&slot)
            .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        let id = Id::random();
        self.storage
            .write(&paths::key(&id), Bytes::from(json))
            .await?;
        Ok(id)
    }

    /// Lists key slots; `passphrase` marks the slot it opens as current.
    pub async fn list_keys(&self, passphrase: &str) -> Result<Vec<KeyInfo>> {
        let (_, current) = unlock(self.storage.as_ref(), passphrase).await?;
        let mut out = Vec::new();
        for (id, slot) in read_slots(self.storage.as_ref()).await?.0 {
            out.push(KeyInfo {
                id,
                current: id == current,
                hostname: slot.hostname,
                label: slot.label,
                created: slot.created,
            });
        }
        out.sort_by_key(|k| k.created);
        Ok(out)
    }

    /// Removes a key slot; the last slot, and the slot in use, cannot be removed.
    pub async fn remove_key(&self, passphrase: &str, id_prefix: &str) -> Result<Id> {
        let keys = self.list_keys(passphrase).await?;
        let matches: Vec<&KeyInfo> = keys
            .iter()
            .filter(|k| k.id.to_hex().starts_with(&id_prefix.to_lowercase()))
            .collect();
        let target = match matches.as_slice() {
            [one] => *one,
            [] => {
                return Err(
                    Error::new(ErrorKind::Config, "no key slot has that id").with("key", id_prefix)
                )
            }
            _ => {
                return Err(Error::new(
                    ErrorKind::Config,
                    "several key slots start with that id: give more digits",
                )
                .with("key", id_prefix))
            }
        };
        if target.current {
            return Err(Error::new(
                ErrorKind::Refused,
                "refusing to remove the key slot you opened the repository with; open it with another passphrase first",
            ));
        }
        if keys.len() <= 1 {
            return Err(Error::new(
                ErrorKind::Refused,
                "refusing to remove the last key slot",
            ));
        }
        self.storage.delete(&paths::key(&target.id)).await?;
        Ok(target.id)
    }

    /// Loads every index file into memory.
    pub async fn load_index(&self) -> Result<Index> {
        let suspects = self.suspect_packs().await;
        Ok(index_preferring_healthy(
            &self.read_index_files().await?,
            &suspects,
        ))
    }

    /// The index a backup deduplicates against: packs a read found damaged are left
    /// out, so their chunks are stored again in new packs and the next snapshot is
    /// restorable (self-healing) instead of as broken as the last; packs a prune
    /// mark condemned are left out, so no new snapshot comes to need them.
    pub async fn load_dedup_index(&self) -> Result<Index> {
        let suspects = self.suspect_packs().await;
        let condemned = self.condemned_packs().await?;
        Ok(Index::of_packs(
            self.read_index_files()
                .await?
                .iter()
                .filter(|p| !suspects.contains(&p.id) && !condemned.contains(&p.id)),
        ))
    }

    /// Every pack entry of every index file (duplicates possible).
    pub(crate) async fn read_index_files(&self) -> Result<Vec<IndexedPack>> {
        // A prune's sweep writes the new index files before deleting the old ones: a
        // listed file gone by the time it is read means listing again.
        let mut attempt = 0;
        loop {
            let listed = self.storage.list(paths::INDEX).await?;
            match self.read_index_objects(&listed).await {
                Err(e) if attempt < 3 && self.any_gone(&listed).await => {
                    attempt += 1;
                    warn!(error = %e, "an index file went away while it was read (a prune swept it): listing again");
                }
                other => return other,
            }
        }
    }

    /// Whether any of `objects` no longer exists.
    async fn any_gone(&self, objects: &[crate::storage::ObjectInfo]) -> bool {
        for o in objects {
            if matches!(self.storage.size(&o.path).await, Ok(None)) {
                return true;
            }
        }
        false
    }

    /// The pack entries of the index files `objects` (as listed under `index/`).
    pub(crate) async fn read_index_objects(
        &self,
        objects: &[crate::storage::ObjectInfo],
    ) -> Result<Vec<IndexedPack>> {
        let mut out = Vec::new();
        for obj in objects {
            let sealed = self.storage.read(&obj.path).await?;
            match pack::open_index(&self.key, &sealed) {
                Ok(packs) => out.extend(packs),
                Err(e) => {
                    return Err(Error::new(
                        ErrorKind::Integrity,
                        format!("index file is damaged: {e}; move it out of index/ (keep it for the investigation): the next backup re-indexes its packs from their own headers"),
                    )
                    .with("target", self.storage.name())
                    .with("object", &obj.path))
                }
            }
        }
        Ok(out)
    }

    /// Writes an index file for `packs` (which must already be stored).
    pub(crate) async fn write_index(&self, packs: &[IndexedPack]) -> Result<u64> {
        if packs.is_empty() {
            return Ok(0);
        }
        let sealed = pack::seal_index(&self.key, packs);
        let len = sealed.len() as u64;
        self.storage
            .write(&paths::index(&Id::hash(&sealed)), Bytes::from(sealed))
            .await?;
        Ok(len)
    }

    /// Indexes packs that exist but no index lists (left by an interrupted backup),
    /// so their chunks are reused. Damaged leftovers are reported and skipped.
    /// Returns the packs adopted.
    pub async fn adopt_orphan_packs(&self, index: &mut Index) -> Result<Vec<Id>> {
        let mut adopted = Vec::new();
        let condemned = self.condemned_packs().await?;
        for obj in self.storage.list(paths::DATA).await? {
            let Some(id) = paths::id_of(&obj.path) else {
                continue;
            };
            // A condemned pack is unindexed while a sweep is cut short between
            // its index and its packs: it is deleted next, never adopted.
            if index.has_pack(&id) || condemned.contains(&id) {
                continue;
            }
            let bytes = self.storage.read(&obj.path).await?;
            if Id::hash(&bytes) != id {
                warn!(object = %obj.path, "unindexed pack does not match its name; ignored");
                continue;
            }
            match pack::read_pack_header(&self.key, &bytes) {
                Ok(groups) => adopted.push(IndexedPack {
                    id,
                    size: bytes.len() as u64,
                    groups,
                }),
                Err(e) => {
                    warn!(object = %obj.path, error = %e, "unindexed pack unreadable; ignored")
                }
            }
        }
        if !adopted.is_empty() {
            self.write_index(&adopted).await?;
            for p in &adopted {
                index.add_pack(p);
            }
            index.compact();
            info!(
                count = adopted.len(),
                "adopted packs left by an interrupted backup"
            );
        }
        Ok(adopted.iter().map(|p| p.id).collect())
    }

    /// All readable snapshots, oldest first. A damaged manifest is skipped with a
    /// warning naming it (see [`Repository::snapshot_listing`]): one flipped byte in
    /// one manifest must not hide every other backup.
    pub async fn snapshots(&self) -> Result<Vec<SnapshotRef>> {
        let listing = self.snapshot_listing().await?;
        for d in &listing.damaged {
            warn!(snapshot = %d.id.short(), error = %d.error, "damaged snapshot manifest skipped");
        }
        Ok(listing.readable)
    }

    /// Every manifest: the readable ones (oldest first) and the damaged ones with why.
    pub async fn snapshot_listing(&self) -> Result<SnapshotListing> {
        let mut listing = SnapshotListing::default();
        for obj in self.storage.list(paths::SNAPSHOTS).await? {
            let Some(id) = paths::id_of(&obj.path) else {
                continue;
            };
            match self.load_snapshot_exact(&id).await {
                Ok(snapshot) => listing.readable.push(SnapshotRef { id, snapshot }),
                Err(e) if e.kind() == ErrorKind::Integrity => {
                    listing.damaged.push(DamagedSnapshot {
                        id,
                        error: e.record(),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        listing.readable.sort_by_key(|s| (s.snapshot.time, s.id));
        Ok(listing)
    }

    /// Finds a snapshot by id or unique id prefix, or `latest`. A prefix is matched
    /// against object names, so only the one manifest found is read and decrypted.
    pub async fn find_snapshot(&self, spec: &str) -> Result<SnapshotRef> {
        self.find_snapshot_matching(spec, &SnapshotFilter::default())
            .await
    }

    /// Like [`Repository::find_snapshot`], `latest` meaning the newest snapshot that
    /// `filter` matches and that is not dated in the future by this machine's clock
    /// (such snapshots are named in a warning, never taken silently).
    pub async fn find_snapshot_matching(
        &self,
        spec: &str,
        filter: &SnapshotFilter,
    ) -> Result<SnapshotRef> {
        if spec == "latest" {
            let now = crate::clock::current().now();
            let (future, current): (Vec<SnapshotRef>, Vec<SnapshotRef>) = self
                .snapshots()
                .await?
                .into_iter()
                .filter(|s| filter.matches(&s.snapshot))
                .partition(|s| s.is_future_dated(now));
            for f in &future {
                warn!(snapshot = %f.id.short(), dated = %f.snapshot.time, "snapshot dated in the future (a clock was wrong when it was taken): not taken as latest");
            }
            return current.into_iter().last().ok_or_else(|| {
                Error::new(
                    ErrorKind::Config,
                    if future.is_empty() {
                        "no snapshot matches".to_string()
                    } else {
                        format!(
                            "no snapshot matches but {} dated in the future ({}): give its id to use it",
                            future.len(),
                            future.iter().map(|f| f.id.short()).collect::<Vec<_>>().join(", ")
                        )
                    },
                )
                .with("target", self.storage.name())
                .with("filter", filter.to_string())
            });
        }
        let spec_l = spec.to_lowercase();
        let found: Vec<Id> = self
            .storage
            .list(paths::SNAPSHOTS)
            .await?
            .iter()
            .filter_map(|o| paths::id_of(&o.path))
            .filter(|id| id.to_hex().starts_with(&spec_l))
            .collect();
        match found.as_slice() {
            [id] => Ok(SnapshotRef {
                id: *id,
                snapshot: self.load_snapshot_exact(id).await?,
            }),
            [] => Err(Error::new(ErrorKind::Config, "no snapshot has that id")
                .with("snapshot", spec)
                .with("target", self.storage.name())),
            _ => Err(Error::new(
                ErrorKind::Config,
                "several snapshots start with that id: give more digits",
            )
            .with("snapshot", spec)),
        }
    }

    async fn load_snapshot_exact(&self, id: &Id) -> Result<Snapshot> {
        let path = paths::snapshot(id);
        let sealed = self.storage.read(&path).await?;
        let damaged = |what: String| {
            Error::new(
                ErrorKind::Integrity,
                format!("snapshot manifest is damaged: {what}"),
            )
            .with("target", self.storage.name())
            .with("object", &path)
        };
        let compressed = self.key.open(&sealed).map_err(|e| damaged(e.to_string()))?;
        let plain =
            zstd::stream::decode_all(compressed.as_slice()).map_err(|e| damaged(e.to_string()))?;
        serde_json::from_slice(&plain).map_err(|e| damaged(e.to_string()))
    }

    /// Writes a manifest; call only after everything it references is stored.
    pub async fn save_snapshot(&self, snapshot: &Snapshot) -> Result<Id> {
        let json = serde_json::to_vec(snapshot)
            .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        let compressed = zstd::bulk::compress(&json, 3)
            .map_err(|e| Error::new(ErrorKind::Internal, e.to_string()))?;
        let id = Id::random();
        self.storage
            .write(
                &paths::snapshot(&id),
                Bytes::from(self.key.seal(&compressed)),
            )
            .await?;
        Ok(id)
    }
}

/// Why a target has no usable key slot: damaged slots, a repository without its
/// `keys/`, or nothing at all (context `found = nothing`, which callers that know the
/// target held a repository turn into "missing: is the share mounted?"). Only an empty
/// target is sent to `repo init`.
async fn no_key_slots(storage: &dyn Storage, damaged: usize) -> Error {
    if damaged > 0 {
        return Error::new(
            ErrorKind::Integrity,
            format!(
                "the repository's key slots are damaged ({damaged} unreadable under keys/): do not run `repo init` here. Put keys/ back from a copy of this target, or restore from another target"
            ),
        )
        .with("target", storage.name());
    }
    let has_content = matches!(storage.size(paths::CONFIG).await, Ok(Some(_)))
        || storage
            .list(paths::SNAPSHOTS)
            .await
            .is_ok_and(|v| !v.is_empty());
    if has_content {
        return Error::new(
            ErrorKind::Integrity,
            "this target holds a repository whose keys/ folder is missing: do not run `repo init` here. Put keys/ back from a copy of this target, or restore from another target",
        )
        .with("target", storage.name());
    }
    Error::new(
        ErrorKind::Config,
        "no repository on this target: it is empty. If it is a share, is it mounted? For a new target, `pacsbak repo init` creates the repository",
    )
    .with("target", storage.name())
    .with("found", "nothing")
}

/// The index of `packs` where a chunk held both by a healthy pack and by one a read
/// found damaged is read from the healthy one.
pub(crate) fn index_preferring_healthy(
    packs: &[pack::IndexedPack],
    suspects: &std::collections::HashSet<Id>,
) -> Index {
    let (damaged, healthy): (Vec<_>, Vec<_>) = packs.iter().partition(|p| suspects.contains(&p.id));
    Index::of_packs(healthy.into_iter().chain(damaged))
}

fn check_passphrase(p: &str) -> Result<()> {
    if p.chars().count() < 8 {
        return Err(Error::new(
            ErrorKind::Config,
            "the repository passphrase must have at least 8 characters",
        ));
    }
    Ok(())
}

/// The key slots that parse, and how many objects under `keys/` did not.
async fn read_slots(storage: &dyn Storage) -> Result<(Vec<(Id, KeyFile)>, usize)> {
    let mut out = Vec::new();
    let mut damaged = 0;
    for obj in storage.list(paths::KEYS).await? {
        let Some(id) = paths::id_of(&obj.path) else {
            continue;
        };
        let bytes = storage.read(&obj.path).await?;
        match serde_json::from_slice::<KeyFile>(&bytes) {
            Ok(slot) => out.push((id, slot)),
            Err(e) => {
                damaged += 1;
                warn!(object = %obj.path, error = %e, "damaged key slot ignored");
            }
        }
    }
    Ok((out, damaged))
}

/// Tries every key slot; returns the master key and the slot that opened it.
async fn unlock(storage: &dyn Storage, passphrase: &str) -> Result<(MasterKey, Id)> {
    let (slots, damaged) = read_slots(storage).await?;
    if slots.is_empty() {
        return Err(no_key_slots(storage, damaged).await);
    }
    for (id, slot) in &slots {
        if let Some(key) = slot.unwrap_master(passphrase)? {
            return Ok((key, *id));
        }
    }
    Err(Error::new(
        ErrorKind::Auth,
        "wrong passphrase: it opens none of the repository's key slots; nothing was written",
    )
    .with("target", storage.name()))
}
#[cfg(test)]
mod vectors;

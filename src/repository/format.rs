//! The repository's layout and its pinned parameters (see docs/repository-format.md).

use serde::{Deserialize, Serialize};

use super::id::Id;

/// Format version written by this build; readers refuse newer ones.
pub const FORMAT_VERSION: u32 = 1;

/// Object paths inside a target.
pub mod paths {
    use super::Id;

    /// The sealed repository config.
    pub const CONFIG: &str = "config";
    /// Folder of key slots.
    pub const KEYS: &str = "keys/";
    /// Folder of packs (two-hex-digit fan-out).
    pub const DATA: &str = "data/";
    /// Folder of index files.
    pub const INDEX: &str = "index/";
    /// Folder of snapshot manifests.
    pub const SNAPSHOTS: &str = "snapshots/";
    /// Folder of verification records.
    pub const VERIFY: &str = "verify/";

    /// Folder of prune marks (packs condemned, awaiting their grace period).
    pub const PRUNE: &str = "prune/";

    /// Where pack `id` is stored.
    pub fn pack(id: &super::Id) -> String {
        let hex = id.to_hex();
        format!("{DATA}{}/{hex}", &hex[..2])
    }

    /// Where key slot `id` is stored.
    pub fn key(id: &Id) -> String {
        format!("{KEYS}{}", id.to_hex())
    }

    /// Where index file `id` is stored.
    pub fn index(id: &Id) -> String {
        format!("{INDEX}{}", id.to_hex())
    }

    /// Where snapshot `id` is stored.
    pub fn snapshot(id: &Id) -> String {
        format!("{SNAPSHOTS}{}", id.to_hex())
    }

    /// The id at the end of an object path, if it is one.
    pub fn id_of(path: &str) -> Option<Id> {
        path.rsplit('/').next()?.parse().ok()
    }
}

/// Chunker parameters, pinned at `repo init` so cut points never change under a
/// repository (fastcdc has changed them between versions before).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkerParams {
    /// Always "fastcdc-v2020" (crate fastcdc 3.x, normalization level 1).
    pub algorithm: ChunkerAlgorithm,
    /// Smallest chunk.
    pub min_size: u32,
    /// Target average chunk.
    pub avg_size: u32,
    /// Largest chunk.
    pub max_size: u32,
}

/// The content-defined chunking algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChunkerAlgorithm {
    /// FastCDC 2020 with a keyed gear table.
    #[serde(rename = "fastcdc-v2020")]
    FastCdc2020,
}

impl Default for ChunkerParams {
    /// 32 KiB average: database backups change in scattered 8 KiB pages, so
    /// smaller chunks send less each night; groups restore the compression ratio.
    fn default() -> Self {
        ChunkerParams {
            algorithm: ChunkerAlgorithm::FastCdc2020,
            min_size: 8 * 1024,
            avg_size: 32 * 1024,
            max_size: 128 * 1024,
        }
    }
}

/// The repository config, sealed under the master key at `config`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoConfig {
    /// Format version.
    pub version: u32,
    /// Random repository id.
    pub id: Id,
    /// Pinned chunker parameters.
    pub chunker: ChunkerParams,
    /// zstd level for groups.
    pub zstd_level: i32,
    /// New chunks are compressed together in groups of about this many bytes.
    pub group_size: u32,
    /// Packs are closed once they reach about this many bytes.
    pub pack_size: u32,
}

impl RepoConfig {
    /// Refuses parameters the format cannot hold or that would make objects unbounded.
    pub fn validate(&self) -> crate::error::Result<()> {
        let c = &self.chunker;
        // fastcdc's own bounds (it panics outside them) and the order of the three.
        let ok = (64..=1024 * 1024).contains(&c.min_size)
            && (256..=4 * 1024 * 1024).contains(&c.avg_size)
            && (1024..=16 * 1024 * 1024).contains(&c.max_size)
            && c.min_size <= c.avg_size
            && c.avg_size <= c.max_size
            && (1..=22).contains(&self.zstd_level)
            && self.group_size >= c.max_size
            && self.group_size <= 16 * 1024 * 1024
            && self.pack_size >= self.group_size
            && self.pack_size <= 512 * 1024 * 1024;
        if ok {
            Ok(())
        } else {
            Err(crate::error::Error::new(
                crate::error::ErrorKind::Config,
                format!("repository parameters out of range: {self:?}"),
            ))
        }
    }

    /// Benchmark tuning of a new repository (`repo init`'s hidden options): an
    /// average chunk size in KiB (minimum a quarter, maximum four times it), a zstd
    /// level, a group size in KiB. Checked like any configuration before use.
    pub fn tuned(
        mut self,
        avg_chunk_kib: Option<u32>,
        zstd_level: Option<i32>,
        group_kib: Option<u32>,
    ) -> crate::error::Result<Self> {
        if let Some(avg) = avg_chunk_kib {
            self.chunker.avg_size = avg.saturating_mul(1024);
            self.chunker.min_size = avg.saturating_mul(256);
            self.chunker.max_size = avg.saturating_mul(4096);
        }
        if let Some(l) = zstd_level {
            self.zstd_level = l;
        }
        if let Some(g) = group_kib {
            self.group_size = g.saturating_mul(1024);
        }
        self.validate()?;
        Ok(self)
    }

    /// The defaults for a new repository.
    pub fn new_default() -> Self {
        RepoConfig {
            version: FORMAT_VERSION,
            id: Id::random(),
            chunker: ChunkerParams::default(),
            zstd_level: 3,
            group_size: 4 * 1024 * 1024,
            pack_size: 16 * 1024 * 1024,
        }
    }
}

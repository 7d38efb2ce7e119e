//! Storage targets: where the repository's objects live.
//!
//! The repository talks to a [`Storage`]: whole-object writes (every object it
//! writes is size-bounded), whole or ranged reads, listing and deletion, with paths
//! relative to the target's root and `/` as separator. [`OpendalStorage`] implements
//! it for every OpenDAL service (S3, OSS, SFTP, WebDAV, and the in-memory service
//! tests use); [`LocalFolder`] for a local folder or NAS share, writing packs past
//! the page cache and reading through OpenDAL; wrappers implement the same trait around it
//! and compose: append-only guard → retries → bandwidth and connection limits →
//! the target's own storage (`LocalFolder`, or OpenDAL with per-call timeouts sized
//! to the configured bandwidth).

mod build;
pub mod check;
mod local;
mod opendal_storage;
mod retry;
pub mod seen;
mod throttle;

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;

pub(crate) use build::install_crypto_provider;
pub use build::{open_new_target, open_target};
pub use local::LocalFolder;
pub use opendal_storage::{OpendalStorage, WriteMode};
pub use retry::{AppendOnlyStorage, RetryStorage};
pub use throttle::{local_now, RateLimiter, ThrottledStorage};

use crate::error::Result;

/// An object found by [`Storage::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Path relative to the target root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// The operations the repository needs from a storage target.
#[async_trait]
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// The target's name, for messages.
    fn name(&self) -> &str;
    /// How many objects the backup pipeline should upload at once.
    fn upload_concurrency(&self) -> usize {
        1
    }
    /// Reads a whole object.
    async fn read(&self, path: &str) -> Result<Bytes>;
    /// Reads part of an object.
    async fn read_range(&self, path: &str, range: Range<u64>) -> Result<Bytes>;
    /// Writes a whole object (replacing any object of that name).
    async fn write(&self, path: &str, data: Bytes) -> Result<()>;
    /// Lists objects below `prefix` (a folder path ending in `/`), recursively.
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
    /// Deletes an object; deleting a missing object is not an error.
    async fn delete(&self, path: &str) -> Result<()>;
    /// The object's size, or `None` when it does not exist.
    async fn size(&self, path: &str) -> Result<Option<u64>>;
    /// When the target's own clock says `path` was last written (`None`: not found,
    /// or the service does not say). A second clock beside the machine's: a snapshot
    /// is dated by the machine, and a machine clock far ahead of its target's is
    /// found this way.
    async fn modified(&self, path: &str) -> Result<Option<std::time::SystemTime>> {
        let _ = path;
        Ok(None)
    }
}

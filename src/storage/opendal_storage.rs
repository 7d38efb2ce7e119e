//! [`Storage`] over an OpenDAL operator: one implementation for every service.

use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use opendal::Operator;
use tracing::warn;
use zeroize::Zeroizing;

use super::{ObjectInfo, Storage};
use crate::error::{Error, ErrorKind, Result};

/// How objects are written to a service.
#[derive(Debug, Clone, Default)]
pub struct WriteMode {
    /// Multipart uploads: (smallest part size, parts in flight). Objects up to the
    /// part size go in one request; larger ones in parts sized to fit the service's
    /// 10,000-part limit.
    pub multipart: Option<(u64, usize)>,
    /// Write under `.tmp/` and rename into place, for services where an interrupted
    /// write would leave a partial object under its final name (sftp, webdav).
    pub staged: bool,
    /// Packs uploaded at once by the backup pipeline.
    pub upload_concurrency: usize,
}

/// A storage target backed by an OpenDAL operator.
#[derive(Clone)]
pub struct OpendalStorage {
    name: String,
    op: Operator,
    mode: WriteMode,
    redact: Arc<Vec<Zeroizing<String>>>,
}

impl std::fmt::Debug for OpendalStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpendalStorage")
            .field("name", &self.name)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// Most parts a multipart upload may have (S3 and OSS).
const MAX_PARTS: u64 = 10_000;

/// The folder of a local-folder target where objects are written before they are
/// renamed into place.
pub(super) const LOCAL_TEMP_DIR: &str = ".tmp";

impl OpendalStorage {
    /// Wraps `op` under the target name `name`.
    pub fn new(name: impl Into<String>, op: Operator) -> Self {
        Self {
            name: name.into(),
            op,
            mode: WriteMode {
                upload_concurrency: 1,
                ..WriteMode::default()
            },
            redact: Arc::new(Vec::new()),
        }
    }

    /// Sets how objects are written.
    pub fn with_mode(mut self, mode: WriteMode) -> Self {
        self.mode = mode;
        self
    }

    /// Secret values scrubbed from every error message.
    pub fn with_redactions(mut self, secrets: Vec<Zeroizing<String>>) -> Self {
        self.redact = Arc::new(secrets);
        self
    }

    /// The part size for an object of `len` bytes, or `None` for one request.
    pub fn part_size_for(min_part: u64, len: u64) -> Option<u64> {
        if len <= min_part {
            return None;
        }
        let needed = len.div_ceil(MAX_PARTS);
        let mib = 1024 * 1024;
        Some(min_part.max(needed.div_ceil(mib) * mib))
    }

    fn err(&self, op: &str, path: &str, e: opendal::Error) -> Error {
        let mut err = map_err(&self.name, op, path, e);
        if !self.redact.is_empty() {
            let mut msg = err.message().to_string();
            for s in self.redact.iter() {
                msg = msg.replace(s.as_str(), "***");
            }
            err = err.with_message(msg);
        }
        err
    }

    async fn put(&self, path: &str, data: Bytes) -> opendal::Result<()> {
        let len = data.len() as u64;
        match self.mode.multipart {
            Some((min_part, concurrent)) => match Self::part_size_for(min_part, len) {
                Some(part) => {
                    let mut w = self
                        .op
                        .writer_with(path)
                        .chunk(part as usize)
                        .concurrent(concurrent.max(1))
                        .await?;
                    let res = match w.write(data).await {
                        Ok(()) => w.close().await.map(|_| ()),
                        Err(e) => Err(e),
                    };
                    if let Err(e) = res {
                        // Leave no incomplete multipart upload behind.
                        if let Err(abort) = w.abort().await {
                            warn!(target_name = %self.name, object = path, error = %abort, "could not abort the multipart upload");
                        }
                        return Err(e);
                    }
                    Ok(())
                }
                None => self.op.write(path, data).await.map(|_| ()),
            },
            None => self.op.write(path, data).await.map(|_| ()),
        }
    }

    /// A local folder (or mounted NAS share), created if missing; writes go to a
    /// temporary file first and are renamed into place, so a crash never leaves a
    /// half-written object under its final name.
    pub fn local_folder(name: impl Into<String>, root: &std::path::Path) -> Result<Self> {
        let name = name.into();
        // OpenDAL's fs service creates a missing root; a target's root must exist
        // (an unmounted share's mount point must not fill up with a new one).
        if !root.is_dir() {
            return Err(missing_folder(&name, root));
        }
        let root_s = root.to_string_lossy();
        let builder = opendal::services::Fs::default().root(&root_s);
        let op = Operator::new(builder).map_err(|e| map_err(&name, "open", "", e))?;
        Ok(Self::new(name, op))
    }

    /// An in-memory target, for tests.
    pub fn memory(name: impl Into<String>) -> Result<Self> {
        let name = name.into();
        let op = Operator::new(opendal::services::Memory::default())
            .map_err(|e| map_err(&name, "open", "", e))?;
        Ok(Self::new(name, op))
    }
}

/// The error for a local target whose folder is not there.
pub(crate) fn missing_folder(name: &str, root: &std::path::Path) -> Error {
    Error::new(
        ErrorKind::Storage,
        format!(
            "missing: the folder {} does not exist. If it is on a share, is the share mounted? Nothing was written (`pacsbak repo init` creates the folder of a new repository)",
            root.display()
        ),
    )
    .with("target", name)
    .with("found", "no folder")
}

/// Turns an OpenDAL error into ours, naming target, operation and path.
pub(crate) fn map_err(target: &str, op: &str, path: &str, e: opendal::Error) -> Error {
    let kind = match e.kind() {
        opendal::ErrorKind::PermissionDenied => ErrorKind::Auth,
        _ if e.is_temporary() => ErrorKind::StorageTransient,
        _ => ErrorKind::Storage,
    };
    let what = match e.kind() {
        opendal::ErrorKind::NotFound => "object not found".to_string(),
        _ => {
            let diag = super::check::diagnose(&e);
            let detail = e.to_string();
            match diag {
                Some(d) => format!("{}: {detail}", d.summary()),
                None => detail,
            }
        }
    };
    let mut err = Error::new(kind, format!("storage {op} failed: {what}")).with("target", target);
    if !path.is_empty() {
        err = err.with("object", path);
    }
    err
}

fn is_not_found(e: &opendal::Error) -> bool {
    e.kind() == opendal::ErrorKind::NotFound
}

#[async_trait]
impl Storage for OpendalStorage {
    fn name(&self) -> &str {
        &self.name
    }

    fn upload_concurrency(&self) -> usize {
        self.mode.upload_concurrency.max(1)
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        let buf = self
            .op
            .read(path)
            .await
            .map_err(|e| self.err("read", path, e))?;
        Ok(buf.to_bytes())
    }

    async fn read_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        let buf = self
            .op
            .read_with(path)
            .range(range)
            .await
            .map_err(|e| self.err("read", path, e))?;
        Ok(buf.to_bytes())
    }

    async fn write(&self, path: &str, data: Bytes) -> Result<()> {
        if !self.mode.staged {
            return self
                .put(path, data)
                .await
                .map_err(|e| self.err("write", path, e));
        }
        let len = data.len() as u64;
        let tmp = format!(
            ".tmp/{}.{:016x}",
            path.replace('/', "_"),
            rand::random::<u64>()
        );
        self.put(&tmp, data)
            .await
            .map_err(|e| self.err("write", path, e))?;
        if let Err(e) = self.op.rename(&tmp, path).await {
            // Content-addressed objects may already be there (another writer).
            let same = matches!(self.op.stat(path).await, Ok(m) if m.content_length() == len);
            let _ = self.op.delete(&tmp).await;
            if !same {
                return Err(self.err("rename", path, e));
            }
        }
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let entries = match self.op.list_with(prefix).recursive(true).await {
            Ok(v) => v,
            Err(e) if is_not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(self.err("list", prefix, e)),
        };
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            if entry.metadata().is_dir() || entry.path().starts_with(".tmp/") {
                continue;
            }
            let size = entry.metadata().content_length();
            out.push(ObjectInfo {
                path: entry.path().to_string(),
                size,
            });
        }
        Ok(out)
    }

    async fn delete(&self, path: &str) -> Result<()> {
        match self.op.delete(path).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(self.err("delete", path, e)),
        }
    }

    async fn size(&self, path: &str) -> Result<Option<u64>> {
        match self.op.stat(path).await {
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) if e.kind() == opendal::ErrorKind::PermissionDenied => {
                // A refused HEAD has no body, so S3 cannot say why: a wrong secret
                // would read as a missing permission. Ask again with a one-byte GET,
                // whose error names the cause (SignatureDoesNotMatch, AccessDenied...).
                match self.op.read_with(path).range(0..1).await {
                    Err(why) if super::check::diagnose(&why).is_some() => {
                        Err(self.err("stat", path, why))
                    }
                    _ => Err(self.err("stat", path, e)),
                }
            }
            Err(e) => Err(self.err("stat", path, e)),
        }
    }

    async fn modified(&self, path: &str) -> Result<Option<std::time::SystemTime>> {
        match self.op.stat(path).await {
            Ok(meta) => Ok(meta.last_modified().map(std::time::SystemTime::from)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(self.err("stat", path, e)),
        }
    }
}

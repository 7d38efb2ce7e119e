//! [`Storage`] over an OpenDAL operator: one implementation for every service.

use std::ops::Range;

use async_trait::async_trait;
use bytes::Bytes;
use opendal::Operator;

use super::{ObjectInfo, Storage};
use crate::error::{Error, ErrorKind, Result};

/// A storage target backed by an OpenDAL operator.
#[derive(Debug, Clone)]
pub struct OpendalStorage {
    name: String,
    op: Operator,
}

impl OpendalStorage {
    /// Wraps `op` under the target name `name`.
    pub fn new(name: impl Into<String>, op: Operator) -> Self {
        Self {
            name: name.into(),
            op,
        }
    }

    /// A local folder (or mounted NAS share), created if missing; writes go to a
    /// temporary file first and are renamed into place, so a crash never leaves a
    /// half-written object under its final name.
    pub fn local_folder(name: impl Into<String>, root: &std::path::Path) -> Result<Self> {
        let name = name.into();
        std::fs::create_dir_all(root).map_err(|e| Error::io(root, e).with("target", &name))?;
        let tmp = root.join(".tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e).with("target", &name))?;
        let root_s = root.to_string_lossy();
        let tmp_s = tmp.to_string_lossy();
        let builder = opendal::services::Fs::default()
            .root(&root_s)
            .atomic_write_dir(&tmp_s);
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

/// Turns an OpenDAL error into ours, naming target, operation and path.
pub(crate) fn map_err(target: &str, op: &str, path: &str, e: opendal::Error) -> Error {
    let kind = match e.kind() {
        opendal::ErrorKind::PermissionDenied => ErrorKind::Auth,
        _ if e.is_temporary() => ErrorKind::StorageTransient,
        _ => ErrorKind::Storage,
    };
    let what = match e.kind() {
        opendal::ErrorKind::NotFound => "object not found".to_string(),
        opendal::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    };
    let mut err = Error::new(kind, format!("storage {op} failed: {what}")).with("target", target);
    if !path.is_empty() {
        err = err.with("object", path);
    }
    err.with_source(e)
}

fn is_not_found(e: &opendal::Error) -> bool {
    e.kind() == opendal::ErrorKind::NotFound
}

#[async_trait]
impl Storage for OpendalStorage {
    fn name(&self) -> &str {
        &self.name
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        let buf = self
            .op
            .read(path)
            .await
            .map_err(|e| map_err(&self.name, "read", path, e))?;
        Ok(buf.to_bytes())
    }

    async fn read_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        let buf = self
            .op
            .read_with(path)
            .range(range)
            .await
            .map_err(|e| map_err(&self.name, "read", path, e))?;
        Ok(buf.to_bytes())
    }

    async fn write(&self, path: &str, data: Bytes) -> Result<()> {
        self.op
            .write(path, data)
            .await
            .map_err(|e| map_err(&self.name, "write", path, e))?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let entries = match self.op.list_with(prefix).recursive(true).await {
            Ok(v) => v,
            Err(e) if is_not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(map_err(&self.name, "list", prefix, e)),
        };
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            if entry.metadata().is_dir() {
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
            Err(e) => Err(map_err(&self.name, "delete", path, e)),
        }
    }

    async fn size(&self, path: &str) -> Result<Option<u64>> {
        match self.op.stat(path).await {
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(map_err(&self.name, "stat", path, e)),
        }
    }
}

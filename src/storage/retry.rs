//! Retries with exponential back-off and jitter, decided in one place from
//! [`Error::is_retryable`](crate::Error::is_retryable): a flaky hospital uplink
//! drops calls that succeed when tried again; a refused credential never will.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tracing::warn;

use super::{ObjectInfo, Storage};
use crate::error::Result;

/// Longest single back-off.
const MAX_DELAY: Duration = Duration::from_secs(60);

/// A [`Storage`] wrapper that retries transient failures.
#[derive(Debug)]
pub struct RetryStorage {
    inner: Arc<dyn Storage>,
    retries: u32,
    base: Duration,
}

impl RetryStorage {
    /// Retries each call up to `retries` more times, first after about `base`.
    pub fn new(inner: Arc<dyn Storage>, retries: u32, base: Duration) -> Self {
        Self {
            inner,
            retries,
            base,
        }
    }

    /// The delay before retry `attempt` (1-based): base·2^(attempt-1), times a
    /// random factor in [0.5, 1.5) so many clients do not retry in step.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << (attempt - 1).min(16));
        let jitter = 0.5 + rand::random::<f64>();
        exp.mul_f64(jitter).min(MAX_DELAY)
    }

    async fn run<T, F, Fut>(&self, op: &str, path: &str, mut f: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if e.is_retryable() && attempt < self.retries => {
                    attempt += 1;
                    let d = self.delay(attempt);
                    warn!(target_name = self.inner.name(), op, object = path, attempt, delay_ms = d.as_millis() as u64, error = %e, "storage call failed; retrying");
                    tokio::time::sleep(d).await;
                }
                Err(e) if attempt > 0 => return Err(e.with("attempts", attempt + 1)),
                Err(e) => return Err(e),
            }
        }
    }
}

#[async_trait]
impl Storage for RetryStorage {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn upload_concurrency(&self) -> usize {
        self.inner.upload_concurrency()
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        self.run("read", path, || self.inner.read(path)).await
    }

    async fn read_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        self.run("read", path, || self.inner.read_range(path, range.clone()))
            .await
    }

    async fn write(&self, path: &str, data: Bytes) -> Result<()> {
        self.run("write", path, || self.inner.write(path, data.clone()))
            .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.run("list", prefix, || self.inner.list(prefix)).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        self.run("delete", path, || self.inner.delete(path)).await
    }

    async fn size(&self, path: &str) -> Result<Option<u64>> {
        self.run("stat", path, || self.inner.size(path)).await
    }

    async fn modified(&self, path: &str) -> Result<Option<std::time::SystemTime>> {
        self.run("stat", path, || self.inner.modified(path)).await
    }
}

/// A [`Storage`] wrapper for credentials that cannot delete: deletions are refused
/// here, clearly, instead of failing half-way at the server.
#[derive(Debug)]
pub struct AppendOnlyStorage {
    inner: Arc<dyn Storage>,
}

impl AppendOnlyStorage {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Storage>) -> Self {
        Self { inner }
    }
}

#[async_trait]
impl Storage for AppendOnlyStorage {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn upload_concurrency(&self) -> usize {
        self.inner.upload_concurrency()
    }
    async fn read(&self, path: &str) -> Result<Bytes> {
        self.inner.read(path).await
    }
    async fn read_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        self.inner.read_range(path, range).await
    }
    async fn write(&self, path: &str, data: Bytes) -> Result<()> {
        self.inner.write(path, data).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, path: &str) -> Result<()> {
        Err(crate::Error::new(
            crate::ErrorKind::Refused,
            "this target is append-only (append_only = true): deleting is done by the maintenance host with other credentials",
        )
        .with("target", self.inner.name())
        .with("object", path))
    }
    async fn size(&self, path: &str) -> Result<Option<u64>> {
        self.inner.size(path).await
    }

    async fn modified(&self, path: &str) -> Result<Option<std::time::SystemTime>> {
        self.inner.modified(path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, ErrorKind};
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn retries_transient_not_permanent() {
        let inner: Arc<dyn Storage> =
            Arc::new(crate::storage::OpendalStorage::memory("m").unwrap());
        let r = RetryStorage::new(inner, 3, Duration::from_millis(100));
        let n = AtomicU32::new(0);
        let v = r
            .run("x", "p", || async {
                if n.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(Error::new(ErrorKind::StorageTransient, "flaky"))
                } else {
                    Ok(7)
                }
            })
            .await
            .unwrap();
        assert_eq!((v, n.load(Ordering::SeqCst)), (7, 3));
        n.store(0, Ordering::SeqCst);
        let e = r
            .run::<(), _, _>("x", "p", || async {
                n.fetch_add(1, Ordering::SeqCst);
                Err(Error::new(ErrorKind::Auth, "denied"))
            })
            .await
            .unwrap_err();
        assert_eq!((e.kind(), n.load(Ordering::SeqCst)), (ErrorKind::Auth, 1));
        for a in 1..=5 {
            let d = r.delay(a);
            let nominal = 100u64 << (a - 1);
            assert!(
                d.as_millis() as u64 >= nominal / 2 && (d.as_millis() as u64) < nominal * 3 / 2 + 1
            );
        }
    }
}

//! Bandwidth and connection limits per target: the hospital uplink is shared with
//! clinical traffic, so a target may be held to, say, 20 MB/s during the day and run
//! free at night, with a bounded number of calls in flight.
//!
//! The limiter is built on tokio's clock (so tests can pause time): every transfer
//! reserves `bytes / rate` seconds of link time after the previous reservation and
//! waits until its slot has passed, so no burst ever exceeds the limit and idle time
//! is not banked.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;

use super::{ObjectInfo, Storage};
use crate::config::BandwidthSchedule;
use crate::error::{Error, ErrorKind, Result};

/// The local wall-clock time now, in the hospital's zone ([`crate::clock`]), which
/// bandwidth windows are written in.
pub fn local_now() -> time::PrimitiveDateTime {
    crate::clock::current().local_now()
}

/// Minutes after local midnight now.
fn local_minute() -> u16 {
    let t = local_now();
    t.hour() as u16 * 60 + t.minute() as u16
}

/// Paces transfers to the schedule's current limit.
#[derive(Debug)]
pub struct RateLimiter {
    schedule: BandwidthSchedule,
    next_free: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A limiter following `schedule`.
    pub fn new(schedule: BandwidthSchedule) -> Self {
        Self {
            schedule,
            next_free: Mutex::new(None),
        }
    }

    /// Waits until `bytes` may be sent (or have been received) under the current limit.
    pub async fn acquire(&self, bytes: u64) {
        self.acquire_at(bytes, local_minute()).await
    }

    /// [`Self::acquire`] at a given minute of the day (tests).
    pub async fn acquire_at(&self, bytes: u64, minute: u16) {
        let Some(rate) = self.schedule.limit_at(minute) else {
            return;
        };
        let until = {
            let mut next = self.next_free.lock().await;
            let now = Instant::now();
            let start = match *next {
                Some(n) if n > now => n,
                _ => now,
            };
            let end = start + Duration::from_secs_f64(bytes as f64 / rate as f64);
            *next = Some(end);
            end
        };
        tokio::time::sleep_until(until).await;
    }
}

/// A [`Storage`] wrapper holding a target to its bandwidth schedule and connection limit.
#[derive(Debug)]
pub struct ThrottledStorage {
    inner: Arc<dyn Storage>,
    limiter: Option<RateLimiter>,
    connections: Arc<Semaphore>,
    max_connections: usize,
}

impl ThrottledStorage {
    /// Wraps `inner`; `schedule` may be unlimited (then only connections are limited).
    pub fn new(inner: Arc<dyn Storage>, schedule: BandwidthSchedule, connections: usize) -> Self {
        let connections = connections.max(1);
        Self {
            inner,
            limiter: (!schedule.is_unlimited()).then(|| RateLimiter::new(schedule)),
            connections: Arc::new(Semaphore::new(connections)),
            max_connections: connections,
        }
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>> {
        self.connections
            .acquire()
            .await
            .map_err(|_| Error::new(ErrorKind::Internal, "connection limiter closed"))
    }

    async fn pace(&self, bytes: u64) {
        if let Some(l) = &self.limiter {
            l.acquire(bytes).await;
        }
    }
}

#[async_trait]
impl Storage for ThrottledStorage {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn upload_concurrency(&self) -> usize {
        self.max_connections
            .min(self.inner.upload_concurrency().max(1))
            .max(1)
    }

    async fn read(&self, path: &str) -> Result<Bytes> {
        let _p = self.permit().await?;
        let b = self.inner.read(path).await?;
        self.pace(b.len() as u64).await;
        Ok(b)
    }

    async fn read_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        let _p = self.permit().await?;
        let b = self.inner.read_range(path, range).await?;
        self.pace(b.len() as u64).await;
        Ok(b)
    }

    async fn write(&self, path: &str, data: Bytes) -> Result<()> {
        self.pace(data.len() as u64).await;
        let _p = self.permit().await?;
        self.inner.write(path, data).await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let _p = self.permit().await?;
        self.inner.list(prefix).await
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let _p = self.permit().await?;
        self.inner.delete(path).await
    }

    async fn size(&self, path: &str) -> Result<Option<u64>> {
        let _p = self.permit().await?;
        self.inner.size(path).await
    }

    async fn modified(&self, path: &str) -> Result<Option<std::time::SystemTime>> {
        let _p = self.permit().await?;
        self.inner.modified(path).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BandwidthWindow;

    #[test]
    fn windows_and_midnight() {
        let s = BandwidthSchedule::new(vec![
            BandwidthWindow {
                from: 450,
                to: 1140,
                limit: Some(20_000_000),
            },
            BandwidthWindow {
                from: 1320,
                to: 60,
                limit: Some(1),
            },
        ]);
        assert_eq!(s.limit_at(449), None);
        assert_eq!(s.limit_at(450), Some(20_000_000));
        assert_eq!(s.limit_at(1139), Some(20_000_000));
        assert_eq!(s.limit_at(1140), None);
        assert_eq!(s.limit_at(1400), Some(1));
        assert_eq!(s.limit_at(30), Some(1));
    }

    /// 20 MB/s held within 10% over 30 s of (paused) tokio time, through the wrapper.
    #[tokio::test(start_paused = true)]
    async fn limit_holds_over_30_seconds() {
        let inner: Arc<dyn Storage> =
            Arc::new(crate::storage::OpendalStorage::memory("sink").unwrap());
        let t = ThrottledStorage::new(inner, BandwidthSchedule::constant(20_000_000), 4);
        let start = Instant::now();
        let mut sent = 0u64;
        let part = Bytes::from(vec![0u8; 1 << 20]);
        let mut i = 0;
        while start.elapsed() < Duration::from_secs(30) {
            t.write(&format!("o/{i}"), part.clone()).await.unwrap();
            sent += part.len() as u64;
            i += 1;
        }
        let rate = sent as f64 / start.elapsed().as_secs_f64();
        assert!((rate - 20e6).abs() / 20e6 < 0.10, "rate {rate}");
    }

    /// Four concurrent writers share one limit.
    #[tokio::test(start_paused = true)]
    async fn concurrent_writers_share_the_limit() {
        let inner: Arc<dyn Storage> =
            Arc::new(crate::storage::OpendalStorage::memory("sink").unwrap());
        let t = Arc::new(ThrottledStorage::new(
            inner,
            BandwidthSchedule::constant(10_000_000),
            4,
        ));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for w in 0..4 {
            let t = t.clone();
            tasks.push(tokio::spawn(async move {
                let mut sent = 0u64;
                let mut i = 0;
                while Instant::now().duration_since(start) < Duration::from_secs(30) {
                    t.write(&format!("{w}/{i}"), Bytes::from(vec![1u8; 512 * 1024]))
                        .await
                        .unwrap();
                    sent += 512 * 1024;
                    i += 1;
                }
                sent
            }));
        }
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap();
        }
        let rate = total as f64 / start.elapsed().as_secs_f64();
        assert!((rate - 10e6).abs() / 10e6 < 0.10, "rate {rate}");
    }
}

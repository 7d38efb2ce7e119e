//! Builds a target's storage stack from its validated [`TargetConfig`]: the OpenDAL
//! service with per-call timeouts, then the throttle, retry and append-only wrappers.

use std::sync::{Arc, Once};
use std::time::Duration;

use opendal::layers::TimeoutLayer;
use opendal::Operator;

use super::{
    AppendOnlyStorage, LocalFolder, OpendalStorage, RetryStorage, Storage, ThrottledStorage,
    WriteMode,
};
use crate::config::{Addressing, ServiceKind, TargetConfig};
use crate::error::{Error, ErrorKind, Result};

/// Largest object the repository writes in one call (a pack with its last group).
const LARGEST_OBJECT: u64 = 24 * 1024 * 1024;

static CRYPTO: Once = Once::new();

/// TLS for HTTPS targets uses rustls with the ring provider, and OpenDAL's HTTP
/// services need their reqwest transport installed: both once per process.
pub(crate) fn install_crypto_provider() {
    CRYPTO.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        opendal_http_transport_reqwest::install_default();
    });
}

/// The per-IO-call timeout: an object body at the slowest expected bandwidth, twice
/// over, plus the plain call timeout. OpenDAL's 10 s default would kill every large
/// part on a slow hospital uplink.
pub fn io_timeout(t: &TargetConfig) -> Duration {
    let biggest = LARGEST_OBJECT.max(t.limits.part_size);
    t.limits.timeout + Duration::from_secs_f64(2.0 * biggest as f64 / t.limits.min_bandwidth as f64)
}

/// Opens the target's storage stack (no network I/O until the first call). A local
/// folder must exist: an unmounted share is reported, never filled with a new folder.
pub fn open_target(t: &TargetConfig) -> Result<Arc<dyn Storage>> {
    open_stack(t, false)
}

/// Like [`open_target`], creating a local folder that does not exist yet: for
/// `repo init` and the sandbox, which make a new repository there.
pub fn open_new_target(t: &TargetConfig) -> Result<Arc<dyn Storage>> {
    open_stack(t, true)
}

fn open_stack(t: &TargetConfig, create: bool) -> Result<Arc<dyn Storage>> {
    install_crypto_provider();
    let name = t.name.as_str();
    let conf = |msg: &str| Error::new(ErrorKind::Config, msg.to_string()).with("target", name);
    let open_err = |e: opendal::Error| super::opendal_storage::map_err(name, "open", "", e);
    let root = t
        .root
        .as_ref()
        .map(|r| r.to_string_lossy().replace('\\', "/"))
        .unwrap_or_else(|| "/".to_string());
    let conns = t.limits.connections;
    let (base, secrets): (OpendalStorage, Vec<_>) = match t.service {
        ServiceKind::Fs => {
            let r = t
                .root
                .as_deref()
                .ok_or_else(|| conf("fs target without root"))?;
            let local = if create {
                LocalFolder::create(name, r)?
            } else {
                LocalFolder::open(name, r)?
            }
            .with_upload_concurrency(conns.min(2));
            // Append-only means pacsbak deletes nothing there, not even its own leftovers.
            if !t.append_only {
                local.remove_crash_leftovers();
            }
            return Ok(layered(Arc::new(local), t));
        }
        ServiceKind::S3 => {
            let c = t.credentials()?;
            let mut b = opendal::services::S3::default()
                .root(&root)
                .bucket(t.bucket.as_deref().unwrap_or_default())
                .endpoint(t.endpoint.as_deref().unwrap_or_default())
                .region(t.region.as_deref().unwrap_or("us-east-1"))
                .disable_config_load()
                .disable_ec2_metadata();
            if let (Some(k), Some(s)) = (&c.access_key_id, &c.secret_access_key) {
                b = b.access_key_id(k).secret_access_key(s);
            }
            if t.addressing == Addressing::VirtualHost {
                b = b.enable_virtual_host_style();
            }
            if let Some(alg) = &t.checksum_algorithm {
                b = b.checksum_algorithm(alg);
            }
            let op = Operator::new(b).map_err(open_err)?;
            (multipart(name, op, t), c.secrets())
        }
        ServiceKind::Oss => {
            let c = t.credentials()?;
            let mut b = opendal::services::Oss::default()
                .root(&root)
                .bucket(t.bucket.as_deref().unwrap_or_default())
                .endpoint(t.endpoint.as_deref().unwrap_or_default());
            if let (Some(k), Some(s)) = (&c.access_key_id, &c.secret_access_key) {
                b = b.access_key_id(k).access_key_secret(s);
            }
            let op = Operator::new(b).map_err(open_err)?;
            (multipart(name, op, t), c.secrets())
        }
        ServiceKind::Sftp => (sftp(t, conns)?, Vec::new()),
        ServiceKind::Webdav => {
            let c = t.credentials()?;
            let mut b = opendal::services::Webdav::default()
                .endpoint(t.endpoint.as_deref().unwrap_or_default())
                .root(&root);
            if let Some(u) = &t.user {
                b = b.username(u);
            }
            if let Some(p) = &c.password {
                b = b.password(p);
            }
            let op = Operator::new(b).map_err(open_err)?;
            let s = OpendalStorage::new(name, timeouts(op, t)).with_mode(WriteMode {
                staged: true,
                upload_concurrency: conns,
                ..WriteMode::default()
            });
            (s, c.secrets())
        }
    };
    Ok(layered(Arc::new(base.with_redactions(secrets)), t))
}

/// Wraps a target's own storage in the layers every target gets.
fn layered(base: Arc<dyn Storage>, t: &TargetConfig) -> Arc<dyn Storage> {
    let conns = t.limits.connections;
    let throttled: Arc<dyn Storage> = Arc::new(ThrottledStorage::new(
        base,
        t.limits.bandwidth.clone(),
        conns,
    ));
    let retried: Arc<dyn Storage> = Arc::new(RetryStorage::new(
        throttled,
        t.limits.retries,
        t.limits.retry_base,
    ));
    if t.append_only {
        Arc::new(AppendOnlyStorage::new(retried))
    } else {
        retried
    }
}

fn timeouts(op: Operator, t: &TargetConfig) -> Operator {
    op.layer(
        TimeoutLayer::new()
            .with_timeout(t.limits.timeout)
            .with_io_timeout(io_timeout(t)),
    )
}

fn multipart(name: &str, op: Operator, t: &TargetConfig) -> OpendalStorage {
    OpendalStorage::new(name, timeouts(op, t)).with_mode(WriteMode {
        multipart: Some((t.limits.part_size, t.limits.connections.clamp(1, 4))),
        staged: false,
        upload_concurrency: t.limits.connections,
    })
}

#[cfg(unix)]
fn sftp(t: &TargetConfig, conns: usize) -> Result<OpendalStorage> {
    let name = t.name.as_str();
    let conf = |msg: String| Error::new(ErrorKind::Config, msg).with("target", name);
    let key = t
        .key_file
        .as_ref()
        .ok_or_else(|| conf("sftp target without key_file".into()))?;
    if !key.is_file() {
        return Err(conf(format!(
            "sftp key_file {} does not exist",
            key.display()
        )));
    }
    let root = t
        .root
        .as_ref()
        .map(|r| r.to_string_lossy().replace('\\', "/"))
        .unwrap_or_else(|| "/".to_string());
    let mut b = opendal::services::Sftp::default()
        .endpoint(t.endpoint.as_deref().unwrap_or_default())
        .root(&root)
        .key(&key.to_string_lossy())
        .known_hosts_strategy(t.known_hosts.as_deref().unwrap_or("strict"));
    if let Some(u) = &t.user {
        b = b.user(u);
    }
    let op = Operator::new(b).map_err(|e| super::opendal_storage::map_err(name, "open", "", e))?;
    Ok(
        OpendalStorage::new(name, timeouts(op, t)).with_mode(WriteMode {
            staged: true,
            upload_concurrency: conns,
            ..WriteMode::default()
        }),
    )
}

#[cfg(not(unix))]
fn sftp(t: &TargetConfig, _conns: usize) -> Result<OpendalStorage> {
    Err(Error::new(
        ErrorKind::Config,
        "sftp targets do not work on Windows: OpenDAL's sftp service drives the system ssh binary through a Unix control socket. Use an s3, webdav or fs (mounted share) target from this host, or run pacsbak copy to the sftp target from a Linux host",
    )
    .with("target", &t.name))
}

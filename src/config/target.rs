//! Storage target files (`storage-targets/NAME.toml`): which OpenDAL service, where,
//! which credentials (by reference only) and how to behave on a slow shared link.
//!
//! Loading validates without touching the network or reading any secret; secrets
//! are resolved by [`TargetConfig::credentials`] when the target is opened, from
//! environment variables or a secrets file the target file names.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};

/// The OpenDAL services pacsbak supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceKind {
    /// A local folder or a mounted NAS share.
    Fs,
    /// S3 and S3-compatible stores (MinIO, Ceph RGW, Aliyun OSS's S3 endpoint).
    S3,
    /// Aliyun OSS through its own API.
    Oss,
    /// An SFTP server (drives the system `ssh` binary: Unix hosts only).
    Sftp,
    /// A WebDAV share.
    Webdav,
}

/// How an S3 bucket is addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Addressing {
    /// `https://endpoint/bucket/key` (MinIO, Ceph, moto).
    #[default]
    Path,
    /// `https://bucket.endpoint/key` (AWS, Aliyun OSS).
    VirtualHost,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    service: ServiceKind,
    #[serde(default)]
    description: String,
    root: Option<String>,
    endpoint: Option<String>,
    bucket: Option<String>,
    region: Option<String>,
    addressing: Option<Addressing>,
    checksum_algorithm: Option<String>,
    user: Option<String>,
    key_file: Option<String>,
    known_hosts: Option<String>,
    access_key_id_env: Option<String>,
    secret_access_key_env: Option<String>,
    password_env: Option<String>,
    secrets_file: Option<String>,
    #[serde(default)]
    append_only: bool,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    retention: Option<crate::retention::Rules>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    connections: Option<usize>,
    part_size: Option<String>,
    min_bandwidth: Option<String>,
    timeout_secs: Option<u64>,
    retries: Option<u32>,
    retry_base_ms: Option<u64>,
    #[serde(default)]
    bandwidth: Vec<WindowFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowFile {
    from: String,
    to: String,
    limit: String,
}

/// Where a credential comes from (never the value itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CredentialRefs {
    /// Environment variable holding the access key id (s3, oss).
    pub access_key_id_env: Option<String>,
    /// Environment variable holding the secret access key (s3, oss).
    pub secret_access_key_env: Option<String>,
    /// Environment variable holding the password (webdav).
    pub password_env: Option<String>,
    /// A `key=value` file (mode 600) with `access_key_id`, `secret_access_key`, `password`.
    pub secrets_file: Option<PathBuf>,
}

/// Credentials resolved at open time; wiped from memory when dropped.
#[derive(Default)]
pub struct Credentials {
    /// Access key id (s3, oss).
    pub access_key_id: Option<Zeroizing<String>>,
    /// Secret access key (s3, oss).
    pub secret_access_key: Option<Zeroizing<String>>,
    /// Password (webdav).
    pub password: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(redacted)")
    }
}

impl Credentials {
    /// Every secret value, for scrubbing error text.
    pub fn secrets(&self) -> Vec<Zeroizing<String>> {
        [&self.secret_access_key, &self.password, &self.access_key_id]
            .into_iter()
            .flatten()
            .filter(|s| s.len() >= 4)
            .cloned()
            .collect()
    }
}

/// Transfer behaviour of a target on a slow, shared link.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Concurrent calls (and pack uploads) at most.
    pub connections: usize,
    /// Multipart part size (s3, oss); objects up to this size go in one request.
    pub part_size: u64,
    /// The slowest the link is expected to be, bytes/s: sizes per-call timeouts.
    pub min_bandwidth: u64,
    /// Timeout for calls that move no object body (stat, list, delete).
    pub timeout: Duration,
    /// Attempts after the first for a call that failed transiently.
    pub retries: u32,
    /// First back-off delay; doubles per attempt, with jitter.
    pub retry_base: Duration,
    /// Bandwidth limit by time of day.
    pub bandwidth: BandwidthSchedule,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            connections: 4,
            part_size: 16 * 1024 * 1024,
            min_bandwidth: 1_000_000,
            timeout: Duration::from_secs(60),
            retries: 5,
            retry_base: Duration::from_millis(500),
            bandwidth: BandwidthSchedule::default(),
        }
    }
}

/// A validated storage target.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// Name (the file stem).
    pub name: String,
    /// The file it came from.
    pub file: PathBuf,
    /// Service.
    pub service: ServiceKind,
    /// Free text for reports.
    pub description: String,
    /// Root folder (fs, resolved against the config folder) or prefix on the server.
    pub root: Option<PathBuf>,
    /// Server: URL (s3, oss, webdav) or `ssh://[user@]host[:port]` (sftp).
    pub endpoint: Option<String>,
    /// Bucket (s3, oss).
    pub bucket: Option<String>,
    /// Region (s3).
    pub region: Option<String>,
    /// Bucket addressing (s3).
    pub addressing: Addressing,
    /// S3 checksum algorithm (`crc32c`), needed by Object Lock buckets.
    pub checksum_algorithm: Option<String>,
    /// User name (sftp, webdav).
    pub user: Option<String>,
    /// Private key file (sftp; key authentication only).
    pub key_file: Option<PathBuf>,
    /// sftp host-key policy: `strict` (default), `accept`, `add`.
    pub known_hosts: Option<String>,
    /// Where the credentials come from.
    pub credentials: CredentialRefs,
    /// Whether the credentials cannot delete: deletions are refused up front.
    pub append_only: bool,
    /// What this target keeps besides the policies' rules (`[retention]`): a
    /// target may keep longer, never shorter.
    pub retention: Option<crate::retention::Rules>,
    /// Transfer behaviour.
    pub limits: Limits,
}

fn key_err(path: &Path, key: &str, msg: String) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("{}: key `{key}`: {msg}", path.display()),
    )
    .with("file", path.display())
    .with("key", key)
}

impl TargetConfig {
    /// Loads `path`; relative roots are relative to `config_dir`.
    pub fn load(path: &Path, config_dir: &Path) -> Result<TargetConfig> {
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let raw: TargetFile = super::parse_file(path)?;
        let service = raw.service;
        let missing = |key: &str| {
            Error::new(
                ErrorKind::Config,
                format!(
                    "{}: key `{key}` is required for service {}",
                    path.display(),
                    service_name(service)
                ),
            )
            .with("file", path.display())
            .with("key", key)
        };
        let not_for = |key: &str, present: bool| -> Result<()> {
            if present {
                Err(key_err(
                    path,
                    key,
                    format!("not used by service {}", service_name(service)),
                ))
            } else {
                Ok(())
            }
        };
        let root = match service {
            ServiceKind::Fs => {
                let r = raw.root.as_deref().ok_or_else(|| missing("root"))?;
                if super::is_filesystem_root(r) {
                    return Err(key_err(
                        path,
                        "root",
                        format!(
                            "{r:?} is the root of a drive: give the repository a folder of its own"
                        ),
                    ));
                }
                Some(resolve_root(r, config_dir))
            }
            _ => raw.root.as_deref().map(PathBuf::from),
        };
        match service {
            ServiceKind::Fs => {
                not_for("endpoint", raw.endpoint.is_some())?;
                not_for("bucket", raw.bucket.is_some())?;
            }
            ServiceKind::S3 | ServiceKind::Oss => {
                raw.bucket.as_ref().ok_or_else(|| missing("bucket"))?;
                raw.endpoint.as_ref().ok_or_else(|| missing("endpoint"))?;
                not_for("key_file", raw.key_file.is_some())?;
            }
            ServiceKind::Sftp => {
                raw.endpoint.as_ref().ok_or_else(|| missing("endpoint"))?;
                raw.key_file.as_ref().ok_or_else(|| missing("key_file"))?;
                not_for("bucket", raw.bucket.is_some())?;
                not_for("password_env", raw.password_env.is_some())?;
            }
            ServiceKind::Webdav => {
                raw.endpoint.as_ref().ok_or_else(|| missing("endpoint"))?;
                not_for("bucket", raw.bucket.is_some())?;
            }
        }
        if service != ServiceKind::S3 {
            not_for("region", raw.region.is_some())?;
            not_for("addressing", raw.addressing.is_some())?;
            not_for("checksum_algorithm", raw.checksum_algorithm.is_some())?;
        }
        if let Some(k) = &raw.known_hosts {
            if !matches!(k.as_str(), "strict" | "accept" | "add") {
                return Err(key_err(
                    path,
                    "known_hosts",
                    format!("{k:?}: use strict, accept or add"),
                ));
            }
        }
        let limits = parse_limits(path, &raw.limits)?;
        Ok(TargetConfig {
            name,
            file: path.to_path_buf(),
            service,
            description: raw.description,
            root,
            endpoint: raw.endpoint,
            bucket: raw.bucket,
            region: raw.region,
            addressing: raw.addressing.unwrap_or_default(),
            checksum_algorithm: raw.checksum_algorithm,
            user: raw.user,
            key_file: raw.key_file.map(|k| resolve_root(&k, config_dir)),
            known_hosts: raw.known_hosts,
            credentials: CredentialRefs {
                access_key_id_env: raw.access_key_id_env,
                secret_access_key_env: raw.secret_access_key_env,
                password_env: raw.password_env,
                secrets_file: raw.secrets_file.map(|f| resolve_root(&f, config_dir)),
            },
            append_only: raw.append_only,
            retention: raw.retention,
            limits,
        })
    }

    /// Resolves the credentials from the environment and the secrets file.
    pub fn credentials(&self) -> Result<Credentials> {
        let refs = &self.credentials;
        let file = match &refs.secrets_file {
            Some(f) => {
                Some(super::secrets::read_secret_map(f).map_err(|e| e.with("target", &self.name))?)
            }
            None => None,
        };
        let from_env = |var: &Option<String>| -> Result<Option<Zeroizing<String>>> {
            match var {
                None => Ok(None),
                Some(v) => match std::env::var(v) {
                    Ok(s) if !s.is_empty() => Ok(Some(Zeroizing::new(s))),
                    _ => Err(Error::new(
                        ErrorKind::Config,
                        format!("environment variable {v} is not set (named in the target file)"),
                    )
                    .with("target", &self.name)
                    .with("file", self.file.display())),
                },
            }
        };
        let from_file = |key: &str| file.as_ref().and_then(|m| m.get(key).cloned());
        let creds = Credentials {
            access_key_id: from_env(&refs.access_key_id_env)?
                .or_else(|| from_file("access_key_id")),
            secret_access_key: from_env(&refs.secret_access_key_env)?
                .or_else(|| from_file("secret_access_key")),
            password: from_env(&refs.password_env)?.or_else(|| from_file("password")),
        };
        if matches!(self.service, ServiceKind::S3 | ServiceKind::Oss)
            && (creds.access_key_id.is_none() || creds.secret_access_key.is_none())
        {
            return Err(Error::new(
                ErrorKind::Config,
                "no credentials: name access_key_id_env and secret_access_key_env, or a secrets_file with access_key_id= and secret_access_key= lines",
            )
            .with("target", &self.name)
            .with("file", self.file.display()));
        }
        Ok(creds)
    }
}

fn service_name(s: ServiceKind) -> &'static str {
    match s {
        ServiceKind::Fs => "fs",
        ServiceKind::S3 => "s3",
        ServiceKind::Oss => "oss",
        ServiceKind::Sftp => "sftp",
        ServiceKind::Webdav => "webdav",
    }
}

fn parse_limits(path: &Path, raw: &LimitsFile) -> Result<Limits> {
    let mut l = Limits::default();
    if let Some(c) = raw.connections {
        if c == 0 || c > 64 {
            return Err(key_err(path, "connections", format!("{c}: use 1 to 64")));
        }
        l.connections = c;
    }
    if let Some(p) = &raw.part_size {
        let v = parse_size(p).ok_or_else(|| {
            key_err(
                path,
                "part_size",
                format!("{p:?} is not a size like \"16MiB\""),
            )
        })?;
        if !(5 * 1024 * 1024..=5 * 1024 * 1024 * 1024).contains(&v) {
            return Err(key_err(path, "part_size", format!("{p}: use 5MiB to 5GiB")));
        }
        l.part_size = v;
    }
    if let Some(b) = &raw.min_bandwidth {
        l.min_bandwidth = parse_rate(b).filter(|v| *v > 0).ok_or_else(|| {
            key_err(
                path,
                "min_bandwidth",
                format!("{b:?} is not a rate like \"1MB/s\""),
            )
        })?;
    }
    if let Some(t) = raw.timeout_secs {
        if t == 0 {
            return Err(key_err(path, "timeout_secs", "must be at least 1".into()));
        }
        l.timeout = Duration::from_secs(t);
    }
    if let Some(r) = raw.retries {
        l.retries = r.min(20);
    }
    if let Some(ms) = raw.retry_base_ms {
        l.retry_base = Duration::from_millis(ms.max(1));
    }
    let mut windows = Vec::new();
    for w in &raw.bandwidth {
        let from = parse_hhmm(&w.from).ok_or_else(|| {
            key_err(
                path,
                "from",
                format!("{:?} is not a time like \"07:30\"", w.from),
            )
        })?;
        let to = parse_hhmm(&w.to).ok_or_else(|| {
            key_err(
                path,
                "to",
                format!("{:?} is not a time like \"19:00\"", w.to),
            )
        })?;
        let limit = if w.limit.trim() == "unlimited" {
            None
        } else {
            Some(parse_rate(&w.limit).filter(|v| *v > 0).ok_or_else(|| {
                key_err(
                    path,
                    "limit",
                    format!(
                        "{:?} is not a rate like \"20MB/s\" or \"unlimited\"",
                        w.limit
                    ),
                )
            })?)
        };
        windows.push(BandwidthWindow { from, to, limit });
    }
    l.bandwidth = BandwidthSchedule::new(windows);
    Ok(l)
}

/// `"16MiB"`, `"5 MB"`, `"1048576"` → bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((n * mult) as u64)
}

/// `"20MB/s"`, `"100Mbit/s"` → bytes per second.
pub fn parse_rate(s: &str) -> Option<u64> {
    let s = s.trim();
    let lower = s.to_ascii_lowercase();
    if let Some(bits) = lower.strip_suffix("bit/s") {
        let bytes = parse_size(&format!("{bits}b"))?;
        return Some(bytes / 8);
    }
    parse_size(lower.strip_suffix("/s")?)
}

/// `"07:30"` → minutes after midnight.
fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h <= 24 && m < 60 && h * 60 + m <= 24 * 60).then_some(h * 60 + m)
}

/// Windows drive (`E:\repo`) and UNC (`\\nas\backup`) roots are absolute on any OS.
fn resolve_root(root: &str, config_dir: &Path) -> PathBuf {
    let is_windows_abs = root.starts_with("\\\\")
        || (root.len() >= 3
            && root.as_bytes()[1] == b':'
            && (root.as_bytes()[2] == b'\\' || root.as_bytes()[2] == b'/'));
    let p = PathBuf::from(root);
    if p.is_absolute() || is_windows_abs {
        p
    } else {
        config_dir.join(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_rates_and_times() {
        assert_eq!(parse_size("16MiB"), Some(16 << 20));
        assert_eq!(parse_size("5 MB"), Some(5_000_000));
        assert_eq!(parse_rate("20MB/s"), Some(20_000_000));
        assert_eq!(parse_rate("100Mbit/s"), Some(12_500_000));
        assert_eq!(parse_rate("20MB"), None);
        assert_eq!(parse_hhmm("07:30"), Some(450));
        assert_eq!(parse_hhmm("24:00"), Some(1440));
        assert_eq!(parse_hhmm("25:00"), None);
    }

    fn load(text: &str) -> Result<TargetConfig> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(&p, text).unwrap();
        TargetConfig::load(&p, dir.path())
    }

    #[test]
    fn s3_target_and_refusals() {
        let t = load(
            "service = \"s3\"\nendpoint = \"http://127.0.0.1:9\"\nbucket = \"b\"\nregion = \"r\"\naccess_key_id_env = \"K\"\nsecret_access_key_env = \"S\"\n[limits]\nconnections = 2\n[[limits.bandwidth]]\nfrom = \"07:30\"\nto = \"19:00\"\nlimit = \"20MB/s\"\n",
        )
        .unwrap();
        assert_eq!(t.service, ServiceKind::S3);
        assert_eq!(t.limits.connections, 2);
        assert_eq!(t.limits.bandwidth.limit_at(8 * 60), Some(20_000_000));
        assert_eq!(t.limits.bandwidth.limit_at(20 * 60), None);
        let e = load("service = \"s3\"\nendpoint = \"x\"\n").unwrap_err();
        assert_eq!(e.context("key"), Some("bucket"));
        let e = load(
            "service = \"s3\"\nendpoint = \"x\"\nbucket = \"b\"\nsecret_access_key = \"hunter2\"\n",
        )
        .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(e.context("line"), Some("4"));
        let e = load("service = \"sftp\"\nendpoint = \"ssh://h\"\n").unwrap_err();
        assert_eq!(e.context("key"), Some("key_file"));
        let e =
            load("service = \"fs\"\nroot = \"r\"\n[limits]\npart_size = \"1MiB\"\n").unwrap_err();
        assert_eq!(e.context("key"), Some("part_size"));
    }
}

/// One time-of-day window of a bandwidth schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BandwidthWindow {
    /// Start, minutes after local midnight.
    pub from: u16,
    /// End (exclusive), minutes after local midnight; before `from` wraps midnight.
    pub to: u16,
    /// Bytes per second; `None` is unlimited.
    pub limit: Option<u64>,
}

/// Bandwidth limits by time of day; outside every window the link is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BandwidthSchedule {
    windows: Vec<BandwidthWindow>,
}

impl BandwidthSchedule {
    /// A schedule from windows; the first window that covers a minute wins.
    pub fn new(windows: Vec<BandwidthWindow>) -> Self {
        Self { windows }
    }

    /// The same limit all day.
    pub fn constant(bytes_per_sec: u64) -> Self {
        Self::new(vec![BandwidthWindow {
            from: 0,
            to: 24 * 60,
            limit: Some(bytes_per_sec),
        }])
    }

    /// Whether any window limits anything.
    pub fn is_unlimited(&self) -> bool {
        self.windows.iter().all(|w| w.limit.is_none())
    }

    /// The limit at `minute` after local midnight.
    pub fn limit_at(&self, minute: u16) -> Option<u64> {
        self.windows
            .iter()
            .find(|w| {
                if w.from <= w.to {
                    (w.from..w.to).contains(&minute)
                } else {
                    minute >= w.from || minute < w.to
                }
            })
            .and_then(|w| w.limit)
    }
}

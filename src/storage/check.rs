//! `target check`: reach, authenticate, write, read back and delete a probe object,
//! timing each step, and say in plain words what is wrong when a step fails.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;
use tracing::info_span;
use tracing::Instrument;

use super::Storage;

/// What a failed call most likely means, for the engineer on call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Diagnosis {
    /// The host name does not resolve.
    Dns,
    /// Nothing listens at that address and port.
    Refused,
    /// The call did not finish in time.
    Timeout,
    /// TLS failed: certificate, or HTTPS to a plain HTTP port.
    Tls,
    /// The credentials were refused.
    Auth,
    /// The credentials are valid but lack a permission.
    Permission,
    /// The bucket does not exist.
    BucketMissing,
    /// The server's SSH host key is unknown or changed.
    HostKey,
}

impl Diagnosis {
    /// One line saying what is wrong and where to look.
    pub fn summary(self) -> &'static str {
        match self {
            Diagnosis::Dns => "DNS: the host name does not resolve (check endpoint and the DNS server)",
            Diagnosis::Refused => "connection refused: nothing listens at that address and port (server down, wrong port, firewall)",
            Diagnosis::Timeout => "timed out: the server or the link is too slow or drops packets",
            Diagnosis::Tls => "TLS failed: certificate not trusted or expired, or https to a plain-http port",
            Diagnosis::Auth => "authentication failed: the access key, secret, password or SSH key was refused",
            Diagnosis::Permission => "permission denied: the credentials work but may not do this",
            Diagnosis::BucketMissing => "the bucket does not exist (create it, or fix `bucket`)",
            Diagnosis::HostKey => "SSH host key not trusted: add it to known_hosts, or set known_hosts = \"add\"",
        }
    }
}

/// Classifies an OpenDAL error from its kind and its text (service codes, OS errors).
pub fn diagnose(e: &opendal::Error) -> Option<Diagnosis> {
    let text = format!("{e:?}");
    let has = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    if has(&[
        "NoSuchBucket",
        "bucket does not exist",
        "The specified bucket",
    ]) {
        Some(Diagnosis::BucketMissing)
    } else if has(&[
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidClientTokenId",
        "Permission denied (publickey",
        "401 Unauthorized",
        "status: 401",
        "Unauthorized",
    ]) {
        Some(Diagnosis::Auth)
    } else if has(&["Host key verification failed", "REMOTE HOST IDENTIFICATION"]) {
        Some(Diagnosis::HostKey)
    } else if has(&[
        "dns error",
        "failed to lookup address",
        "Could not resolve hostname",
        "Name or service not known",
        "nodename nor servname",
    ]) {
        Some(Diagnosis::Dns)
    } else if has(&[
        "Connection refused",
        "connection refused",
        "ConnectionRefused",
    ]) {
        Some(Diagnosis::Refused)
    } else if has(&[
        "certificate",
        "InvalidCertificate",
        "tls handshake",
        "TLS",
        "HandshakeFailure",
        "InvalidContentType",
        "CorruptMessage",
    ]) {
        Some(Diagnosis::Tls)
    } else if has(&["timed out", "timeout", "Timeout"]) {
        Some(Diagnosis::Timeout)
    } else if e.kind() == opendal::ErrorKind::PermissionDenied
        || has(&["AccessDenied", "403 Forbidden"])
    {
        Some(Diagnosis::Permission)
    } else {
        None
    }
}

/// One step of a check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckStep {
    /// `list`, `write`, `read`, `delete`.
    pub step: String,
    /// Whether it worked.
    pub ok: bool,
    /// Milliseconds taken.
    pub ms: f64,
    /// The error, already free of secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The result of `target check`.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// Target name.
    pub target: String,
    /// Every step tried, in order.
    pub steps: Vec<CheckStep>,
    /// Round-trip latency of a small call (list), milliseconds.
    pub latency_ms: Option<f64>,
    /// Upload throughput of the probe object, bytes/s.
    pub upload_bytes_per_sec: Option<f64>,
    /// Download throughput of the probe object, bytes/s.
    pub download_bytes_per_sec: Option<f64>,
    /// The first failure in plain words, or `None` when all is well.
    pub diagnosis: Option<String>,
    /// Whether every step worked.
    pub ok: bool,
}

/// Size of the probe object: enough to measure throughput on a WAN link.
pub const PROBE_SIZE: usize = 4 * 1024 * 1024;

/// Runs the check against `storage`.
pub async fn check_target(
    storage: Arc<dyn Storage>,
    append_only: bool,
    held_before: Option<super::seen::Seen>,
) -> CheckReport {
    let name = storage.name().to_string();
    let span = info_span!("target_check", target = %name);
    async move {
        let mut r = CheckReport {
            target: name,
            steps: Vec::new(),
            latency_ms: None,
            upload_bytes_per_sec: None,
            download_bytes_per_sec: None,
            diagnosis: None,
            ok: false,
        };
        // At the top: no folder is left behind on a local target.
        let probe = format!("pacsbak-probe-{:016x}", rand::random::<u64>());
        let data = Bytes::from(
            (0..PROBE_SIZE)
                .map(|i| (i as u32).wrapping_mul(2_654_435_761) as u8)
                .collect::<Vec<u8>>(),
        );
        let fail = |r: &mut CheckReport, step: &str, ms: f64, e: crate::Error| {
            if r.diagnosis.is_none() {
                r.diagnosis = Some(e.message().to_string());
            }
            r.steps.push(CheckStep {
                step: step.into(),
                ok: false,
                ms,
                error: Some(e.to_string()),
            });
        };
        let t = Instant::now();
        match storage.list("keys/").await {
            Ok(keys) => {
                let ms = t.elapsed().as_secs_f64() * 1e3;
                r.latency_ms = Some(ms);
                r.steps.push(CheckStep {
                    step: "list".into(),
                    ok: true,
                    ms,
                    error: None,
                });
                // A target that held a repository and now shows none is an unmounted
                // share or a wrong bucket: say so and write nothing there.
                if let (true, Some(held)) = (keys.is_empty(), &held_before) {
                    let e = crate::Error::new(
                        crate::ErrorKind::Storage,
                        format!(
                            "missing: this target held repository {} (last opened here {}) and now shows none. Is the share mounted? Nothing was written",
                            held.repository.get(..8).unwrap_or(&held.repository),
                            held.seen
                        ),
                    );
                    fail(&mut r, "repository", 0.0, e);
                    return r;
                }
            }
            Err(e) => {
                fail(&mut r, "list", t.elapsed().as_secs_f64() * 1e3, e);
                return r;
            }
        }
        let t = Instant::now();
        if let Err(e) = storage.write(&probe, data.clone()).await {
            fail(&mut r, "write", t.elapsed().as_secs_f64() * 1e3, e);
            return r;
        }
        let s = t.elapsed().as_secs_f64();
        r.upload_bytes_per_sec = Some(PROBE_SIZE as f64 / s);
        r.steps.push(CheckStep {
            step: "write".into(),
            ok: true,
            ms: s * 1e3,
            error: None,
        });
        let t = Instant::now();
        match storage.read(&probe).await {
            Ok(back) if back == data => {
                let s = t.elapsed().as_secs_f64();
                r.download_bytes_per_sec = Some(PROBE_SIZE as f64 / s);
                r.steps.push(CheckStep {
                    step: "read".into(),
                    ok: true,
                    ms: s * 1e3,
                    error: None,
                });
            }
            Ok(_) => {
                let e = crate::Error::new(
                    crate::ErrorKind::Integrity,
                    "the probe object read back differs from what was written",
                );
                fail(&mut r, "read", t.elapsed().as_secs_f64() * 1e3, e);
                return r;
            }
            Err(e) => {
                fail(&mut r, "read", t.elapsed().as_secs_f64() * 1e3, e);
                return r;
            }
        }
        let t = Instant::now();
        if append_only {
            r.steps.push(CheckStep {
                step: "delete".into(),
                ok: true,
                ms: 0.0,
                error: Some("skipped: append-only target (the probe object stays)".into()),
            });
        } else if let Err(e) = storage.delete(&probe).await {
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if e.kind() == crate::ErrorKind::Auth {
                // List, write and read worked with these credentials: they may not delete.
                r.diagnosis = Some(format!(
                    "{}; these credentials may write but not delete: if that is intended, set append_only = true in the target's file (the probe object stays)",
                    e.message()
                ));
            }
            fail(&mut r, "delete", ms, e);
            return r;
        } else {
            r.steps.push(CheckStep {
                step: "delete".into(),
                ok: true,
                ms: t.elapsed().as_secs_f64() * 1e3,
                error: None,
            });
        }
        r.ok = true;
        r
    }
    .instrument(span)
    .await
}

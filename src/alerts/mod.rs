//! Alerts: telling a person at once when something needs them.
//!
//! Failures go out at once, warnings and repeated failures wait for the daily
//! digest (docs/decisions/0010). Channels: a generic JSON webhook, WeCom and
//! DingTalk group robots (what Chinese hospitals use), e-mail over SMTP. A message
//! that cannot be sent is retried and logged and never stops the daemon. Secrets
//! (robot keys, the SMTP password) come from the environment or a secrets file.

mod channels;

use std::time::Duration;

use serde::Serialize;
use tracing::{info, warn};

pub use channels::{dingtalk_sign, Channel};

use crate::config::ConfigDir;
use crate::error::{ErrorRecord, Result};

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// A job failed: someone must look now.
    Failure,
    /// A failed job succeeded again.
    Recovered,
    /// The daily digest: warnings, repeated failures, or all good.
    Digest,
    /// `alert test`.
    Test,
}

impl Severity {
    /// As shown in a message's first line.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Failure => "FAILED",
            Severity::Recovered => "RECOVERED",
            Severity::Digest => "DIGEST",
            Severity::Test => "TEST",
        }
    }
}

/// One message to every channel.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    /// Always "pacsbak" (DingTalk robots with a keyword filter need one word they know).
    pub source: &'static str,
    /// How urgent.
    pub severity: Severity,
    /// One line.
    pub title: String,
    /// The whole message, plain text.
    pub text: String,
    /// The machine pacsbak runs on.
    pub host: String,
    /// When (RFC 3339, UTC).
    pub time: String,
    /// The scheduled job it is about.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// Each failure: kind, message, server, database, SQL Server error number.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<ErrorRecord>,
}

impl Alert {
    /// An alert made now on this machine.
    pub fn new(severity: Severity, title: String, text: String) -> Alert {
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Alert {
            source: "pacsbak",
            severity,
            title,
            text,
            host: crate::repository::hostname(),
            time,
            job: None,
            failures: Vec::new(),
        }
    }

    /// The title and text as one plain message (robots, e-mail body).
    pub fn plain(&self) -> String {
        format!(
            "[pacsbak {}] {}\n{}\n(host {}, {})",
            self.severity.label(),
            self.title,
            self.text,
            self.host,
            self.time
        )
    }
}

/// What became of one channel's delivery.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// The channel's name.
    pub channel: String,
    /// Its kind (`webhook`, `wecom`, `dingtalk`, `email`).
    pub kind: &'static str,
    /// Delivered (the receiver said so).
    pub ok: bool,
    /// Attempts made.
    pub attempts: u32,
    /// Why the last attempt failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Every configured channel, secrets resolved.
pub struct Alerter {
    channels: Vec<Channel>,
    http: reqwest::Client,
    /// Attempts per channel and message.
    attempts: u32,
    /// Wait before the second attempt; doubled after.
    backoff: Duration,
}

impl Alerter {
    /// The channels of `[alerts]`. A secret named but absent is an error now, at
    /// start or reload, not at the first failure.
    pub fn from_config(cfg: &ConfigDir) -> Result<Alerter> {
        crate::storage::install_crypto_provider();
        let channels = channels::from_config(cfg)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .map_err(|e| {
                crate::Error::new(
                    crate::ErrorKind::Internal,
                    format!("cannot build the HTTP client for alerts: {e}"),
                )
            })?;
        Ok(Alerter {
            channels,
            http,
            attempts: 3,
            backoff: Duration::from_secs(2),
        })
    }

    /// Whether there is anyone to tell.
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// Sends `alert` to every channel, each tried up to three times; never fails.
    pub async fn send(&self, alert: &Alert) -> Vec<Delivery> {
        let mut out = Vec::new();
        for ch in &self.channels {
            let mut wait = self.backoff;
            let mut last_error = None;
            let mut attempts = 0;
            for attempt in 1..=self.attempts {
                attempts = attempt;
                match ch.send(&self.http, alert).await {
                    Ok(()) => {
                        last_error = None;
                        break;
                    }
                    Err(e) => {
                        warn!(channel = ch.name(), attempt, error = %e, "alert not delivered");
                        last_error = Some(e);
                        if attempt < self.attempts {
                            tokio::time::sleep(wait).await;
                            wait *= 2;
                        }
                    }
                }
            }
            if last_error.is_none() {
                info!(channel = ch.name(), title = %alert.title, "alert delivered");
            }
            out.push(Delivery {
                channel: ch.name().to_string(),
                kind: ch.kind(),
                ok: last_error.is_none(),
                attempts,
                error: last_error,
            });
        }
        out
    }
}

//! `[daemon]`, `[alerts]` and `[log]` in pacsbak.toml: what the daemon runs besides
//! the policies' own schedules, whom it tells, and where it writes its log.

use std::path::PathBuf;

use serde::Deserialize;

use crate::policy::Cron;

/// `[daemon]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DaemonSection {
    /// Jobs running at once, across policies (a policy's own full and log may run
    /// side by side; see docs/decisions/0010).
    #[serde(default = "default_parallel")]
    pub max_parallel: usize,
    /// Further attempts of a failed job.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    #[serde(default = "default_retry_after")]
    pub retry_after_seconds: u64,
    /// A job still running after this long is stopped (its BACKUP killed).
    #[serde(default = "default_timeout")]
    pub timeout_minutes: u64,
    /// The same for log backups, which must not crowd out the next one.
    #[serde(default = "default_log_timeout")]
    pub log_timeout_minutes: u64,
    /// How often the configuration files are checked for changes (SIGHUP: at once).
    #[serde(default = "default_reload_check")]
    pub reload_check_seconds: u64,
    /// Copies from one target to others.
    #[serde(default)]
    pub copy: Vec<CopySchedule>,
    /// The nightly read-back of a slice of each target's data.
    pub verify: Option<VerifySchedule>,
    /// Retention, prune, the local folder's cleanup and its audit, per policy.
    #[serde(default)]
    pub retention: Option<RetentionSchedule>,
}

/// `[daemon.retention]`: for each policy with `[retention]`, the rules applied on its
/// targets (append-only ones are left to the maintenance host), prune, the local
/// folder's cleanup (`[local_cleanup]`) and the audit of the maintenance plan's
/// cleanup. Findings and failures alert like any job's.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSchedule {
    /// When.
    pub schedule: Cron,
    /// Prune's grace period: longer than any backup runs.
    #[serde(default = "default_grace")]
    pub grace_hours: u32,
    /// Prune repacks packs at least this percent unused.
    #[serde(default = "default_repack")]
    pub repack_unused_percent: u8,
    /// Also audit the maintenance plan's cleanup (needs the SQL Server).
    #[serde(default = "default_audit")]
    pub audit: bool,
}

fn default_grace() -> u32 {
    24
}
fn default_repack() -> u8 {
    10
}
fn default_audit() -> bool {
    true
}

impl Default for DaemonSection {
    fn default() -> DaemonSection {
        DaemonSection {
            max_parallel: default_parallel(),
            retries: default_retries(),
            retry_after_seconds: default_retry_after(),
            timeout_minutes: default_timeout(),
            log_timeout_minutes: default_log_timeout(),
            reload_check_seconds: default_reload_check(),
            copy: Vec::new(),
            verify: None,
            retention: None,
        }
    }
}

fn default_parallel() -> usize {
    2
}
fn default_retries() -> u32 {
    2
}
fn default_retry_after() -> u64 {
    60
}
fn default_timeout() -> u64 {
    12 * 60
}
fn default_log_timeout() -> u64 {
    30
}
fn default_reload_check() -> u64 {
    10
}

/// `[[daemon.copy]]`: `pacsbak copy --from FROM --to TO...` on a schedule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopySchedule {
    /// Source target.
    pub from: String,
    /// Destination targets.
    pub to: Vec<String>,
    /// When.
    pub schedule: Cron,
}

/// `[daemon.verify]`: each night a share of every target's packs is read back,
/// least recently verified first, so that all data is read within
/// `read_all_within_days`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySchedule {
    /// When.
    pub schedule: Cron,
    /// Every pack is read back at least once in this many days (28: every month).
    #[serde(default = "default_read_all")]
    pub read_all_within_days: u32,
    /// Targets to verify (empty: every target).
    #[serde(default)]
    pub targets: Vec<String>,
}

fn default_read_all() -> u32 {
    28
}

impl VerifySchedule {
    /// The share of packs (percent) one run reads.
    pub fn percent_per_run(&self) -> f64 {
        (100.0 / f64::from(self.read_all_within_days.max(1))).min(100.0)
    }
}

/// `[alerts]`: failures at once, warnings in a daily digest.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsSection {
    /// When the digest (warnings, repeated failures) is sent.
    pub digest: Option<Cron>,
    /// Send the digest also when nothing went wrong ("all good").
    #[serde(default)]
    pub all_good: bool,
    /// Generic JSON webhooks.
    #[serde(default)]
    pub webhook: Vec<WebhookChannel>,
    /// WeCom (企业微信) group robots.
    #[serde(default)]
    pub wecom: Vec<RobotChannel>,
    /// DingTalk (钉钉) group robots.
    #[serde(default)]
    pub dingtalk: Vec<RobotChannel>,
    /// E-mail over SMTP.
    #[serde(default)]
    pub email: Vec<EmailChannel>,
}

impl AlertsSection {
    /// Whether any channel is configured.
    pub fn any(&self) -> bool {
        !(self.webhook.is_empty()
            && self.wecom.is_empty()
            && self.dingtalk.is_empty()
            && self.email.is_empty())
    }
}

/// A generic JSON webhook: the alert as JSON, POSTed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookChannel {
    /// Name in logs and `alert test`.
    pub name: String,
    /// The URL, when it holds no secret.
    pub url: Option<String>,
    /// Environment variable holding the URL (when it embeds a token).
    pub url_env: Option<String>,
}

/// A WeCom or DingTalk group robot. Its key (WeCom) or access token (DingTalk) and
/// DingTalk's signing secret are secrets: from the environment or a secrets file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobotChannel {
    /// Name in logs and `alert test`.
    pub name: String,
    /// The robot endpoint (default: the vendor's public one).
    pub url: Option<String>,
    /// Environment variable holding the robot's key (WeCom) or access token (DingTalk).
    pub key_env: Option<String>,
    /// Environment variable holding DingTalk's signing secret (robots with "加签").
    pub secret_env: Option<String>,
    /// A `key=value` secrets file (mode 600) with `key` and `secret`.
    pub secrets_file: Option<PathBuf>,
    /// Mobile numbers to @-mention.
    #[serde(default)]
    pub mention: Vec<String>,
}

/// How an SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// TLS from the first byte (port 465).
    Tls,
    /// STARTTLS, required (port 587).
    Starttls,
    /// None: only for a relay on this machine or the tests' local server.
    None,
}

/// E-mail over SMTP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailChannel {
    /// Name in logs and `alert test`.
    pub name: String,
    /// SMTP server.
    pub server: String,
    /// Port (default by `tls`: 465, 587, 25).
    pub port: Option<u16>,
    /// Protection of the connection.
    #[serde(default = "default_tls")]
    pub tls: SmtpTls,
    /// Login name, when the server wants one.
    pub username: Option<String>,
    /// Environment variable holding the SMTP password.
    pub password_env: Option<String>,
    /// A `key=value` secrets file (mode 600) with `password`.
    pub secrets_file: Option<PathBuf>,
    /// Sender address.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
}

fn default_tls() -> SmtpTls {
    SmtpTls::Starttls
}

/// Format of the log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (for log collectors).
    #[default]
    Json,
    /// Plain text lines, no colour codes.
    Text,
}

/// `[log]`: the log file an operator keeps.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// The file; relative to the config folder. Without it, logs go to stderr only.
    pub path: Option<PathBuf>,
    /// Lines or JSON.
    #[serde(default)]
    pub format: LogFormat,
    /// Size at which the file is rotated (MiB).
    #[serde(default = "default_log_mib")]
    pub max_size_mib: u64,
    /// Rotated files kept (`pacsbak.log.1` ... `.N`); older ones are removed.
    #[serde(default = "default_log_keep")]
    pub keep_files: u32,
    /// Level (`info`, `debug`...); RUST_LOG overrides.
    pub level: Option<String>,
}

fn default_log_mib() -> u64 {
    50
}
fn default_log_keep() -> u32 {
    10
}

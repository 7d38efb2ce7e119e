//! `pacsbak sandbox --daemon`: the sandbox left running, so a newcomer watches the
//! whole thing live: the daemon on second-scale schedules (logs every 10 s, a diff
//! every minute, a full every 5), alerts to a webhook receiver it starts on
//! loopback, and the status as jobs run.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::ConfigDir;
use crate::error::{Error, ErrorKind, Result};
use crate::journal::{EntryKind, Journal, JournalFilter};
use crate::policy::Policy;
use crate::scheduler::{run_daemon, DaemonOptions};

/// Something worth a line on the console.
#[derive(Debug, Clone, Serialize)]
pub enum LiveEvent {
    /// A job ended (job, status).
    JobEnded(String, String),
    /// The webhook receiver got an alert (its first line).
    Alert(String),
    /// The status of each database: (database, restorable to, age in minutes, RPO met).
    Status(Vec<(String, Option<String>, Option<i64>, bool)>),
}

/// What the live sandbox did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LiveReport {
    /// The live configuration folder.
    pub config: String,
    /// Jobs that ended, and how many of them ok.
    pub jobs: usize,
    /// Of those, the ones that succeeded.
    pub jobs_ok: usize,
    /// Alerts the receiver got.
    pub alerts: usize,
    /// Every database within its RPO at the end.
    pub ok: bool,
}

/// Writes `<dir>/live`: the sandbox's policy on second-scale schedules, the same
/// repository and simulator, alerts to `webhook`.
fn prepare_live(dir: &Path, webhook: &str) -> Result<PathBuf> {
    let live = dir.join("live");
    for sub in ["policies", "storage-targets"] {
        std::fs::create_dir_all(live.join(sub)).map_err(|e| Error::io(&live, e))?;
    }
    let write = |p: PathBuf, text: String| std::fs::write(&p, text).map_err(|e| Error::io(&p, e));
    let policy = std::fs::read_to_string(dir.join("policies/sandbox.toml"))
        .map_err(|e| Error::io(dir.join("policies/sandbox.toml"), e))?;
    let policy = policy
        .replace(
            "embedded_simulator = \"simulator\"",
            "embedded_simulator = \"../simulator\"",
        )
        .replace("full = \"0 1 * * SUN\"", "full = \"0 */5 * * * *\"")
        .replace("diff = \"0 1 * * MON-SAT\"", "diff = \"30 * * * * *\"")
        .replace("log = \"*/15 * * * *\"", "log = \"*/10 * * * * *\"")
        .replace("path = \"pacs-server\"", "path = \"../pacs-server\"")
        .replace("schedule = \"30 2 * * *\"", "schedule = \"45 */2 * * * *\"")
        .replace("path = \"workstations/", "path = \"../workstations/")
        .replace(
            "schedule = \"0 13 * * MON-FRI\"",
            "schedule = \"15 */3 * * * *\"",
        );
    write(
        live.join("policies/sandbox.toml"),
        format!(
            "# The sandbox policy on second-scale schedules (cron with seconds first).\n{policy}"
        ),
    )?;
    write(
        live.join("storage-targets/offsite.toml"),
        "service = \"fs\"\nroot = \"../repository\"\n".into(),
    )?;
    write(
        live.join("pacsbak.toml"),
        format!(
            "# `pacsbak sandbox --daemon`: the sandbox's repository and simulator, run by the daemon.\n\
             [repository]\npassword_file = \"../repository.pass\"\n\
             [daemon]\nmax_parallel = 2\nretries = 1\nretry_after_seconds = 5\n\
             [daemon.verify]\nschedule = \"50 * * * * *\"\nread_all_within_days = 10\n\
             [alerts]\ndigest = \"*/30 * * * * *\"\nall_good = true\n\
             [[alerts.webhook]]\nname = \"sandbox-receiver\"\nurl = \"{webhook}\"\n"
        ),
    )?;
    Ok(live)
}

/// A webhook receiver on loopback; each alert's title goes to `tx`.
async fn receiver(tx: tokio::sync::mpsc::UnboundedSender<String>) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot listen on loopback: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::new(ErrorKind::Io, e.to_string()))?;
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                // The daemon closes nothing early: read until the JSON body parses.
                while let Ok(n) = sock.read(&mut chunk).await {
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let body = buf
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .map(|i| &buf[i + 4..]);
                    if let Some(v) =
                        body.and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                    {
                        let line = format!(
                            "{} {}",
                            v["severity"].as_str().unwrap_or("?"),
                            v["title"].as_str().unwrap_or("")
                        );
                        let _ = tx.send(line);
                        break;
                    }
                }
                let _ = sock
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    Ok(format!("http://{addr}/alerts"))
}

/// Runs the sandbox's daemon until `stop` (Ctrl-C) or for `run_for`; `on_event`
/// gets what happens. The sandbox must have run once (`prepare` and its first jobs).
pub async fn run(
    dir: &Path,
    run_for: Option<Duration>,
    stop: CancellationToken,
    on_event: impl Fn(&LiveEvent),
) -> Result<LiveReport> {
    let dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    let (alert_tx, mut alert_rx) = tokio::sync::mpsc::unbounded_channel();
    let webhook = receiver(alert_tx).await?;
    let live = prepare_live(&dir, &webhook)?;
    let cfg = ConfigDir::load(&live)?;
    let policy = Policy::find(&live, "sandbox")?;
    let clock = Clock::system(cfg.main.time_zone.as_deref())?;
    let shutdown = stop.child_token();
    let daemon = tokio::spawn(run_daemon(DaemonOptions {
        config_dir: live.clone(),
        metrics: None,
        clock: clock.clone(),
        shutdown: shutdown.clone(),
        reload: Arc::new(Notify::new()),
    }));
    let mut report = LiveReport {
        config: live.display().to_string(),
        ..LiveReport::default()
    };
    let started = tokio::time::Instant::now();
    let mut seen = 0i64;
    let mut last_status = None;
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    let journal_path = cfg.journal_path();
    loop {
        if run_for.is_some_and(|d| started.elapsed() >= d) {
            shutdown.cancel();
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(a) = alert_rx.recv() => {
                report.alerts += 1;
                on_event(&LiveEvent::Alert(a));
            }
            _ = tick.tick() => {
                if let Ok(j) = Journal::open(&journal_path) {
                    for e in j.list(&JournalFilter::default()).unwrap_or_default() {
                        if e.seq > seen && e.kind == EntryKind::JobEnd {
                            report.jobs += 1;
                            let status = e.status.clone().unwrap_or_default();
                            if status == "ok" {
                                report.jobs_ok += 1;
                            }
                            on_event(&LiveEvent::JobEnded(e.job.clone(), status));
                        }
                        seen = seen.max(e.seq);
                    }
                }
                if let Some(s) = status_line(&cfg, &policy, &clock).await {
                    report.ok = s.iter().all(|d| d.3);
                    if last_status.as_ref() != Some(&s) {
                        on_event(&LiveEvent::Status(s.clone()));
                        last_status = Some(s);
                    }
                }
            }
        }
    }
    match daemon.await {
        Ok(r) => r?,
        Err(e) => {
            return Err(Error::new(
                ErrorKind::Internal,
                format!("the daemon task failed: {e}"),
            ))
        }
    }
    while let Ok(a) = alert_rx.try_recv() {
        report.alerts += 1;
        on_event(&LiveEvent::Alert(a));
    }
    Ok(report)
}

async fn status_line(
    cfg: &ConfigDir,
    policy: &Policy,
    clock: &Clock,
) -> Option<Vec<(String, Option<String>, Option<i64>, bool)>> {
    let targets = super::open_targets(cfg, policy).await.ok()?;
    let report = super::status::run(policy, &targets, None, clock)
        .await
        .ok()?;
    Some(
        report
            .databases
            .iter()
            .map(|d| {
                (
                    d.database.clone(),
                    d.restorable_to.clone(),
                    d.age_minutes,
                    d.rpo_met,
                )
            })
            .collect(),
    )
}

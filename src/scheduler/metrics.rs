//! Prometheus metrics of the daemon (`--metrics 127.0.0.1:PORT`, GET /metrics):
//! per job the last result, its end and duration; per database the last good
//! backup and the bytes it wrote; the RPO of each database.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{JobSpec, JobWhat};
use crate::error::{Error, Result};
use crate::outcome::Outcome;

#[derive(Debug, Clone, Default)]
struct JobMetric {
    ok: bool,
    end_unix: i64,
    seconds: f64,
    runs: u64,
    failures: u64,
}

#[derive(Debug, Clone, Default)]
struct DatabaseMetric {
    last_good_unix: i64,
    bytes: u64,
    rpo_minutes: Option<u64>,
}

/// What the daemon has seen, as gauges and counters.
#[derive(Debug, Default)]
pub struct Metrics {
    jobs: Mutex<BTreeMap<String, JobMetric>>,
    databases: Mutex<BTreeMap<(String, String), DatabaseMetric>>,
}

impl Metrics {
    /// Records a job's end.
    pub fn job_ended(&self, spec: &JobSpec, ok: bool, seconds: f64, outcome: &Outcome) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        {
            let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            let m = jobs.entry(spec.key.clone()).or_default();
            m.ok = ok;
            m.end_unix = now;
            m.seconds = seconds;
            m.runs += 1;
            if !ok {
                m.failures += 1;
            }
        }
        if let (JobWhat::BackupDb { policy, .. }, Outcome::BackupDb(run)) = (&spec.what, outcome) {
            let mut dbs = self.databases.lock().unwrap_or_else(|p| p.into_inner());
            for r in &run.results {
                let m = dbs
                    .entry((policy.name.clone(), r.database.clone()))
                    .or_default();
                m.rpo_minutes = policy.rpo(&r.database);
                if r.ok {
                    m.last_good_unix = now;
                    m.bytes = r.size;
                }
            }
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut out = String::new();
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let dbs = self
            .databases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let esc = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(out, "# HELP pacsbak_job_last_success 1 when the job's last run succeeded.\n# TYPE pacsbak_job_last_success gauge");
        for (k, m) in &jobs {
            let _ = writeln!(
                out,
                "pacsbak_job_last_success{{job=\"{}\"}} {}",
                esc(k),
                u8::from(m.ok)
            );
        }
        let _ = writeln!(out, "# HELP pacsbak_job_last_end_timestamp_seconds When the job's last run ended.\n# TYPE pacsbak_job_last_end_timestamp_seconds gauge");
        for (k, m) in &jobs {
            let _ = writeln!(
                out,
                "pacsbak_job_last_end_timestamp_seconds{{job=\"{}\"}} {}",
                esc(k),
                m.end_unix
            );
        }
        let _ = writeln!(out, "# HELP pacsbak_job_last_duration_seconds How long the job's last run took.\n# TYPE pacsbak_job_last_duration_seconds gauge");
        for (k, m) in &jobs {
            let _ = writeln!(
                out,
                "pacsbak_job_last_duration_seconds{{job=\"{}\"}} {:.3}",
                esc(k),
                m.seconds
            );
        }
        let _ = writeln!(out, "# HELP pacsbak_job_runs_total Runs since the daemon started.\n# TYPE pacsbak_job_runs_total counter");
        for (k, m) in &jobs {
            let _ = writeln!(
                out,
                "pacsbak_job_runs_total{{job=\"{}\"}} {}",
                esc(k),
                m.runs
            );
        }
        let _ = writeln!(out, "# HELP pacsbak_job_failures_total Failed runs since the daemon started.\n# TYPE pacsbak_job_failures_total counter");
        for (k, m) in &jobs {
            let _ = writeln!(
                out,
                "pacsbak_job_failures_total{{job=\"{}\"}} {}",
                esc(k),
                m.failures
            );
        }
        let _ = writeln!(out, "# HELP pacsbak_database_backup_age_seconds Age of the newest backup of the database this daemon took and proved offsite.\n# TYPE pacsbak_database_backup_age_seconds gauge");
        for ((p, d), m) in dbs.iter().filter(|(_, m)| m.last_good_unix > 0) {
            let _ = writeln!(
                out,
                "pacsbak_database_backup_age_seconds{{policy=\"{}\",database=\"{}\"}} {}",
                esc(p),
                esc(d),
                now - m.last_good_unix
            );
        }
        let _ = writeln!(out, "# HELP pacsbak_database_rpo_seconds The database's RPO.\n# TYPE pacsbak_database_rpo_seconds gauge");
        for ((p, d), m) in &dbs {
            if let Some(r) = m.rpo_minutes {
                let _ = writeln!(
                    out,
                    "pacsbak_database_rpo_seconds{{policy=\"{}\",database=\"{}\"}} {}",
                    esc(p),
                    esc(d),
                    r * 60
                );
            }
        }
        let _ = writeln!(out, "# HELP pacsbak_database_backup_bytes Size of the database's newest good backup.\n# TYPE pacsbak_database_backup_bytes gauge");
        for ((p, d), m) in dbs.iter().filter(|(_, m)| m.last_good_unix > 0) {
            let _ = writeln!(
                out,
                "pacsbak_database_backup_bytes{{policy=\"{}\",database=\"{}\"}} {}",
                esc(p),
                esc(d),
                m.bytes
            );
        }
        out
    }
}

/// Serves `metrics` on `addr` until `shutdown`. Binding fails loudly at start.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        Error::new(
            crate::ErrorKind::Config,
            format!("cannot serve metrics on {addr}: {e}"),
        )
    })?;
    info!(%addr, "metrics served at /metrics");
    tokio::spawn(async move {
        loop {
            let (mut sock, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                a = listener.accept() => match a {
                    Ok(a) => a,
                    Err(e) => { warn!(error = %e, "metrics: accept failed"); continue; }
                },
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let (status, body) = if request.starts_with("GET /metrics") {
                    ("200 OK", metrics.render())
                } else {
                    ("404 Not Found", "try /metrics\n".to_string())
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    Ok(())
}

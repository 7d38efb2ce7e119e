//! `pacsbak daemon`: every scheduled job on time, never two conflicting ones at
//! once, missed runs caught up once, failures retried and alerted once, a clean
//! stop within seconds, configuration reloaded only when it is valid.
//!
//! One loop owns the state (what is pending, running, failing) and the journal;
//! jobs run as tasks and report back over a channel. The journal gets each job's
//! start before it runs and its end when it is over, so a crash loses at most the
//! jobs in flight, whose starts stand without ends.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, warn, Instrument};

use super::metrics::Metrics;
use super::run::{run_job, JobContext, JobResult};
use super::{config_files, JobSpec, JobWhat, Loaded};
use crate::alerts::{Alert, Alerter, Severity};
use crate::clock::{Clock, Instant as WallInstant};
use crate::error::{Error, ErrorKind, ErrorRecord, Result};
use crate::jobs::locks::LockGuard;
use crate::journal::{EntryKind, Journal, NewEntry, Who};
use crate::outcome::{JobFailure, Outcome};
use crate::records::BackupKind;

/// How long a stop waits for jobs to end (their BACKUPs killed) before abandoning them.
const STOP_GRACE: Duration = Duration::from_secs(7);
/// Longest sleep of the loop: a clock set forward is noticed within this.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// How far back a missed run is looked for.
const CATCH_UP_HORIZON: time::Duration = time::Duration::days(35);

/// How the daemon is started.
pub struct DaemonOptions {
    /// The configuration folder.
    pub config_dir: PathBuf,
    /// Serve Prometheus metrics here.
    pub metrics: Option<std::net::SocketAddr>,
    /// The clock schedules are read by.
    pub clock: Clock,
    /// Stops the daemon (SIGTERM, Ctrl-C, the Windows service's stop).
    pub shutdown: CancellationToken,
    /// Reloads the configuration now (SIGHUP).
    pub reload: Arc<Notify>,
}

/// A job waiting to start.
struct Pending {
    spec: JobSpec,
    attempt: u32,
    not_before: OffsetDateTime,
    why: &'static str,
}

/// A job running.
struct Running {
    spec: JobSpec,
    job_id: String,
    attempt: u32,
    started: Instant,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

/// A job over.
struct Done {
    job_id: String,
    result: JobResult,
}

/// The daemon's state, owned by its loop.
struct Daemon {
    opts: DaemonOptions,
    loaded: Loaded,
    alerter: Arc<Alerter>,
    journal: Journal,
    who: Who,
    next: HashMap<String, OffsetDateTime>,
    /// Locks held by running jobs (and by a log backup turning into a full), and
    /// the embedded simulator.
    jobs: JobContext,
    pending: Vec<Pending>,
    running: HashMap<String, Running>,
    /// Jobs whose failure has been alerted, with the failures since.
    failing: BTreeMap<String, u32>,
    /// What the next digest says.
    digest: Vec<String>,
    digest_next: Option<OffsetDateTime>,
    /// The file hashes of a configuration refused, not tried again until they change.
    refused: Option<BTreeMap<String, String>>,
    done_tx: mpsc::UnboundedSender<Done>,
    alert_tx: mpsc::UnboundedSender<(Alert, Vec<crate::alerts::Delivery>)>,
    metrics: Arc<Metrics>,
}

/// Runs the daemon until `opts.shutdown` fires. Fails only when the configuration
/// cannot be loaded at start.
pub async fn run_daemon(opts: DaemonOptions) -> Result<()> {
    let loaded = Loaded::load(&opts.config_dir)?;
    let alerter = Arc::new(Alerter::from_config(&loaded.cfg)?);
    let journal = Journal::open(&loaded.cfg.journal_path())?.with_clock(opts.clock.clone());
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let (alert_tx, mut alert_rx) = mpsc::unbounded_channel();
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = opts.metrics {
        super::metrics::serve(addr, metrics.clone(), opts.shutdown.clone()).await?;
    }
    let mut d = Daemon {
        who: Who::this_process(None),
        loaded,
        alerter,
        journal,
        next: HashMap::new(),
        jobs: JobContext::default(),
        pending: Vec::new(),
        running: HashMap::new(),
        failing: BTreeMap::new(),
        digest: Vec::new(),
        digest_next: None,
        refused: None,
        done_tx,
        alert_tx,
        metrics,
        opts,
    };
    d.started();
    let reload_every = Duration::from_secs(d.loaded.cfg.main.daemon.reload_check_seconds.max(1));
    let mut reload_tick = tokio::time::interval(reload_every);
    reload_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shutdown = d.opts.shutdown.clone();
    let reload = d.opts.reload.clone();
    let mut daily = tokio::time::interval_at(
        tokio::time::Instant::now() + Duration::from_secs(24 * 3600),
        Duration::from_secs(24 * 3600),
    );
    loop {
        d.fire_due();
        d.start_ready();
        d.send_digest_if_due();
        let nap = d.until_next_event();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(done) = done_rx.recv() => d.finished(done),
            Some((alert, deliveries)) = alert_rx.recv() => d.journal_alert(&alert, &deliveries),
            _ = reload.notified() => d.reload("SIGHUP"),
            _ = reload_tick.tick() => d.reload_if_changed(),
            _ = daily.tick() => d.prune_journal(),
            _ = tokio::time::sleep(nap) => {}
        }
    }
    d.stop(&mut done_rx).await;
    // Alerts already on their way get their last seconds; nothing waits longer.
    while let Ok(Some((alert, deliveries))) =
        tokio::time::timeout(Duration::from_millis(200), alert_rx.recv()).await
    {
        d.journal_alert(&alert, &deliveries);
    }
    Ok(())
}

impl Daemon {
    fn now(&self) -> OffsetDateTime {
        self.opts.clock.now()
    }

    /// Journals the start, plans the first firings and the runs missed while stopped.
    /// Removes journal entries past `[journal] keep_days` (never under 180 days).
    fn prune_journal(&mut self) {
        let keep = self
            .loaded
            .cfg
            .main
            .journal
            .keep_days
            .unwrap_or(crate::journal::MIN_KEEP_DAYS);
        if let Err(e) = self.journal.prune(keep, &self.who) {
            warn!(error = %e, "old journal entries could not be removed");
        }
    }

    fn started(&mut self) {
        self.prune_journal();
        let jobs: Vec<_> = self
            .loaded
            .jobs
            .iter()
            .map(|j| json!({"job": j.key, "schedule": j.schedule.as_str()}))
            .collect();
        self.write(
            EntryKind::DaemonStart,
            "daemon",
            Some("ok"),
            Some(json!({"files": self.loaded.files, "jobs": jobs, "time_zone": self.opts.clock.zone_name()})),
        );
        info!(jobs = self.loaded.jobs.len(), "daemon started");
        let now = self.now();
        self.plan_firings(now, &HashMap::new());
        self.catch_up(now);
        self.digest_next = self.next_digest(now);
    }

    /// When the digest is next sent, by `[alerts] digest`.
    fn next_digest(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let digest = self.loaded.cfg.main.alerts.digest.as_ref()?;
        digest.next_instant_after(now, &self.opts.clock)
    }

    /// The next firing of every job, keeping those of jobs whose schedule is unchanged.
    fn plan_firings(
        &mut self,
        now: OffsetDateTime,
        keep: &HashMap<String, (String, OffsetDateTime)>,
    ) {
        self.next.clear();
        for j in &self.loaded.jobs {
            let t = match keep.get(&j.key) {
                Some((schedule, t)) if schedule == j.schedule.as_str() => Some(*t),
                _ => j.schedule.next_instant_after(now, &self.opts.clock),
            };
            if let Some(t) = t {
                self.next.insert(j.key.clone(), t);
            }
        }
    }

    /// Runs missed while the daemon was stopped: each job whose schedule fired after
    /// its last start in the journal runs once now; of a policy's full and diff only
    /// the newest missed one. Logs run at once, never once per missed firing.
    fn catch_up(&mut self, now: OffsetDateTime) {
        let wall = self.opts.clock.local(now);
        let mut best: BTreeMap<String, (OffsetDateTime, JobSpec)> = BTreeMap::new();
        for j in &self.loaded.jobs {
            let Some(fired_wall) = j.schedule.last_at_or_before(wall, CATCH_UP_HORIZON) else {
                continue;
            };
            let fired = match self.opts.clock.instant_of(fired_wall) {
                WallInstant::Unique(t) | WallInstant::Skipped(t) | WallInstant::Twice(t, _) => t,
            };
            let last = match self.journal.last_start(
                &j.journal_job(),
                j.journal_policy().as_deref(),
                j.journal_detail().as_deref(),
            ) {
                Ok(Some(e)) => e,
                // Never run by the daemon: nothing was missed.
                Ok(None) => continue,
                Err(e) => {
                    warn!(error = %e, "the journal cannot be read: missed runs are not caught up");
                    return;
                }
            };
            // A run cut short (stopped, killed, a reboot) did not happen either.
            let interrupted = !matches!(
                self.journal.end_of(&last.job_id),
                Ok(Some(end)) if end.status.as_deref() == Some("ok")
            );
            let started =
                OffsetDateTime::parse(&last.time, &time::format_description::well_known::Rfc3339);
            if interrupted || started.is_ok_and(|l| fired > l) {
                let group = j.catch_up_group();
                if best.get(&group).is_none_or(|(t, _)| fired > *t) {
                    best.insert(group, (fired, j.clone()));
                }
            }
        }
        for (_, (fired, spec)) in best {
            info!(job = %spec.key, missed = %fired, "catching up a run missed while the daemon was stopped");
            self.queue(spec, now, "catch-up");
        }
    }

    /// Whether a run of job `key` is running or waiting to.
    fn busy(&self, key: &str) -> bool {
        self.running.values().any(|r| r.spec.key == key)
            || self.pending.iter().any(|p| p.spec.key == key)
    }

    /// Queues a first attempt of `spec`.
    fn queue(&mut self, spec: JobSpec, now: OffsetDateTime, why: &'static str) {
        self.pending.push(Pending {
            spec,
            attempt: 0,
            not_before: now,
            why,
        });
    }

    /// Queues every job whose firing time has come.
    fn fire_due(&mut self) {
        let now = self.now();
        let due: Vec<JobSpec> = self
            .loaded
            .jobs
            .iter()
            .filter(|j| self.next.get(&j.key).is_some_and(|t| *t <= now))
            .cloned()
            .collect();
        for spec in due {
            let next = spec.schedule.next_instant_after(now, &self.opts.clock);
            match next {
                Some(t) => self.next.insert(spec.key.clone(), t),
                None => self.next.remove(&spec.key),
            };
            if self.busy(&spec.key) {
                warn!(job = %spec.key, "its previous run has not finished: this firing is skipped");
                self.note(format!(
                    "{}: a firing was skipped because the previous run was still going",
                    spec.key
                ));
                continue;
            }
            self.queue(spec, now, "schedule");
        }
    }

    /// Starts the pending jobs whose locks are free, up to `max_parallel` (log
    /// backups are not counted: a long full must not hold them back).
    fn start_ready(&mut self) {
        let now = self.now();
        let max = self.loaded.cfg.main.daemon.max_parallel;
        let mut i = 0;
        while i < self.pending.len() {
            let p = &self.pending[i];
            let is_log = matches!(
                p.spec.what,
                JobWhat::BackupDb {
                    kind: BackupKind::Log,
                    ..
                }
            );
            let counted = self
                .running
                .values()
                .filter(|r| {
                    !matches!(
                        r.spec.what,
                        JobWhat::BackupDb {
                            kind: BackupKind::Log,
                            ..
                        }
                    )
                })
                .count();
            let ready = p.not_before <= now
                && (is_log || counted < max)
                && !self.running.values().any(|r| r.spec.key == p.spec.key);
            let guard = if ready {
                self.jobs.locks.try_acquire(&p.spec.locks())
            } else {
                None
            };
            match guard {
                Some(guard) => {
                    let p = self.pending.remove(i);
                    self.start(p, guard);
                }
                None => i += 1,
            }
        }
    }

    fn start(&mut self, p: Pending, guard: LockGuard) {
        let job_id = format!("{:016x}", rand::random::<u64>());
        let mut who = self.who.clone();
        who.command_line = format!(
            "pacsbak daemon: {} ({})",
            p.spec.key,
            p.spec.schedule.as_str()
        );
        who.reason = Some(match p.attempt {
            0 => p.why.to_string(),
            n => format!("retry {n}"),
        });
        self.append(NewEntry {
            kind: EntryKind::JobStart,
            job_id: job_id.clone(),
            job: p.spec.journal_job(),
            policy: p.spec.journal_policy(),
            database: p.spec.journal_detail(),
            status: None,
            who,
            outcome: None,
        });
        info!(job = %p.spec.key, attempt = p.attempt, why = p.why, "job started");
        let cancel = self.opts.shutdown.child_token();
        let spec = p.spec.clone();
        let cfg = self.loaded.cfg.clone();
        let tx = self.done_tx.clone();
        let id = job_id.clone();
        let token = cancel.clone();
        let ctx = self.jobs.clone();
        let span = info_span!("job", job = %spec.key, job_id = %job_id);
        let task = tokio::spawn(
            async move {
                let result = run_with_timeout(&spec, &cfg, token, &ctx).await;
                // The locks are free before the loop hears the job is over.
                drop(guard);
                let _ = tx.send(Done { job_id: id, result });
            }
            .instrument(span),
        );
        self.running.insert(
            job_id.clone(),
            Running {
                spec: p.spec,
                job_id,
                attempt: p.attempt,
                started: Instant::now(),
                cancel,
                task,
            },
        );
    }

    /// A job is over: journal, metrics, retry, alert.
    fn finished(&mut self, done: Done) {
        let Some(r) = self.running.remove(&done.job_id) else {
            return;
        };
        let seconds = r.started.elapsed().as_secs_f64();
        let result = done.result;
        self.end_entry(&r, &result);
        self.metrics
            .job_ended(&r.spec, result.ok, seconds, &result.outcome);
        let key = r.spec.key.clone();
        if result.ok {
            info!(job = %key, seconds, "job ended ok");
            if self.failing.remove(&key).is_some() {
                let alert = Alert::new(
                    Severity::Recovered,
                    format!("{key} succeeded again"),
                    format!("{key} ran successfully after failing."),
                );
                self.send_alert(alert);
            }
            return;
        }
        warn!(job = %key, seconds, failures = result.failures.len(), "job failed");
        if self.opts.shutdown.is_cancelled() {
            return;
        }
        let d = &self.loaded.cfg.main.daemon;
        let now = self.now();
        // Not retried: a configuration error (it will fail the same way), a job
        // stopped or past its time-out (it would only run as long again), a
        // statement whose KILL was refused (it may still be writing).
        let retryable = result.failures.iter().all(|f| {
            !matches!(f.kind, ErrorKind::Config | ErrorKind::Cancelled)
                && !f
                    .context
                    .iter()
                    .any(|(k, _)| k == "still running" || k == "needs")
        });
        // A log backup with no full to base it on: the policy's full runs now, once
        // (unless it is running already); the log follows it at its next firing.
        if needs_full(&result) {
            if let Some(full) = self.full_job_of(&r.spec) {
                let busy = self.busy(&full.key);
                self.note(format!(
                    "{key}: no full backup to base it on; the full backup {} {}",
                    full.key,
                    if busy { "is on its way" } else { "was started" }
                ));
                if !busy {
                    self.queue(full, now, "chain start");
                }
                return;
            }
        }
        if r.attempt < d.retries && retryable {
            let wait = d.retry_after_seconds.saturating_mul(1 << r.attempt.min(16));
            let at = now + time::Duration::seconds(wait as i64);
            // A retry after the next regular run would only duplicate it.
            if self.next.get(&key).is_none_or(|n| at < *n) {
                info!(job = %key, attempt = r.attempt + 1, wait, "job will be retried");
                self.pending.push(Pending {
                    spec: r.spec,
                    attempt: r.attempt + 1,
                    not_before: at,
                    why: "retry",
                });
                return;
            }
        }
        let count = {
            let c = self.failing.entry(key.clone()).or_insert(0);
            *c += 1;
            *c
        };
        if count == 1 {
            let mut alert = Alert::new(
                Severity::Failure,
                format!("{key} failed"),
                failure_text(&r.spec, &result.failures),
            );
            alert.job = Some(key);
            alert.failures = result.failures;
            self.send_alert(alert);
        } else {
            self.note(format!(
                "{key}: failed again ({} times since the alert): {}",
                count,
                result
                    .failures
                    .first()
                    .map(|f| f.to_string())
                    .unwrap_or_default()
            ));
        }
    }

    /// The full backup job of `spec`'s policy, if it has one.
    fn full_job_of(&self, spec: &JobSpec) -> Option<JobSpec> {
        let JobWhat::BackupDb { policy, .. } = &spec.what else {
            return None;
        };
        self.loaded
            .jobs
            .iter()
            .find(|j| {
                matches!(&j.what, JobWhat::BackupDb { policy: p, kind: BackupKind::Full } if p.name == policy.name)
            })
            .cloned()
    }

    fn end_entry(&mut self, r: &Running, result: &JobResult) {
        let outcome = serde_json::to_value(&result.outcome).ok();
        self.append(NewEntry {
            kind: EntryKind::JobEnd,
            job_id: r.job_id.clone(),
            job: r.spec.journal_job(),
            policy: r.spec.journal_policy(),
            database: r.spec.journal_detail(),
            status: Some(if result.ok { "ok" } else { "failed" }.into()),
            who: self.who.clone(),
            outcome,
        });
    }

    /// Sends in the background; the loop journals the deliveries when they are known.
    fn send_alert(&self, alert: Alert) {
        if self.alerter.is_empty() {
            warn!(title = %alert.title, "no alert channel is configured: nobody is told");
            return;
        }
        let alerter = self.alerter.clone();
        let tx = self.alert_tx.clone();
        tokio::spawn(async move {
            let deliveries = alerter.send(&alert).await;
            let _ = tx.send((alert, deliveries));
        });
    }

    fn journal_alert(&mut self, alert: &Alert, deliveries: &[crate::alerts::Delivery]) {
        let ok = deliveries.iter().all(|d| d.ok);
        if !ok {
            error!(title = %alert.title, "an alert could not be delivered to every channel");
        }
        self.write(
            EntryKind::Alert,
            "alert",
            Some(if ok { "ok" } else { "failed" }),
            Some(json!({"alert": alert, "deliveries": deliveries})),
        );
    }

    fn note(&mut self, line: String) {
        // Without a digest schedule nobody reads these: keep the newest few.
        if self.digest.len() >= 200 {
            self.digest.remove(0);
        }
        self.digest.push(line);
    }

    fn send_digest_if_due(&mut self) {
        let now = self.now();
        let Some(at) = self.digest_next else { return };
        if at > now {
            return;
        }
        self.digest_next = self.next_digest(now);
        let alerts = &self.loaded.cfg.main.alerts;
        let mut lines = std::mem::take(&mut self.digest);
        for (k, n) in &self.failing {
            lines.push(format!(
                "{k}: still failing ({n} failed runs since its alert)"
            ));
        }
        if lines.is_empty() && !alerts.all_good {
            return;
        }
        let title = if lines.is_empty() {
            "all good: every scheduled job succeeded".to_string()
        } else {
            format!("{} things to look at", lines.len())
        };
        let text = if lines.is_empty() {
            "No failure and no warning since the last digest.".to_string()
        } else {
            lines.join("\n")
        };
        self.send_alert(Alert::new(Severity::Digest, title, text));
    }

    /// How long the loop may sleep: until the next firing, retry or digest.
    fn until_next_event(&self) -> Duration {
        let now = self.now();
        let soonest = self
            .next
            .values()
            .copied()
            // A job due but waiting for a lock or a slot is woken by the end of the
            // job holding it (the done channel), not by a timer.
            .chain(
                self.pending
                    .iter()
                    .map(|p| p.not_before)
                    .filter(|t| *t > now),
            )
            .chain(self.digest_next)
            .min();
        match soonest {
            Some(t) if t <= now => Duration::from_millis(0),
            Some(t) => Duration::try_from(t - now)
                .unwrap_or(MAX_SLEEP)
                .min(MAX_SLEEP),
            None => MAX_SLEEP,
        }
    }

    fn reload_if_changed(&mut self) {
        match config_files(&self.opts.config_dir) {
            Ok(files) if files != self.loaded.files && Some(&files) != self.refused.as_ref() => {
                self.reload("configuration files changed")
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "cannot read the configuration files to look for changes"),
        }
    }

    /// Loads the configuration again; takes it only when all of it is valid.
    fn reload(&mut self, why: &str) {
        let loaded = Loaded::load(&self.opts.config_dir)
            .and_then(|l| Alerter::from_config(&l.cfg).map(|a| (l, a)));
        match loaded {
            Ok((new, alerter)) => {
                let change = new.change_since(&self.loaded.files);
                let keep: HashMap<String, (String, OffsetDateTime)> = self
                    .loaded
                    .jobs
                    .iter()
                    .filter_map(|j| {
                        self.next
                            .get(&j.key)
                            .map(|t| (j.key.clone(), (j.schedule.as_str().to_string(), *t)))
                    })
                    .collect();
                self.loaded = new;
                self.alerter = Arc::new(alerter);
                self.refused = None;
                let now = self.now();
                self.plan_firings(now, &keep);
                // Queued runs take their job's new definition; a job gone is dropped.
                let jobs = &self.loaded.jobs;
                self.pending
                    .retain_mut(|p| match jobs.iter().find(|j| j.key == p.spec.key) {
                        Some(j) => {
                            p.spec = j.clone();
                            true
                        }
                        None => false,
                    });
                self.failing.retain(|k, _| jobs.iter().any(|j| &j.key == k));
                self.digest_next = self.next_digest(now);
                info!(why, changed = ?change, jobs = self.loaded.jobs.len(), "configuration reloaded");
                let jobs: Vec<_> = self.loaded.jobs.iter().map(|j| j.key.clone()).collect();
                self.write(
                    EntryKind::DaemonReload,
                    "daemon",
                    Some("ok"),
                    Some(json!({"why": why, "change": change, "files": self.loaded.files, "jobs": jobs})),
                );
            }
            Err(e) => {
                error!(error = %e, "the changed configuration is invalid: it is refused and the running one is kept");
                self.refused = config_files(&self.opts.config_dir).ok();
                self.write(
                    EntryKind::DaemonReload,
                    "daemon",
                    Some("refused"),
                    Some(json!({"why": why, "error": e.record()})),
                );
                let mut alert = Alert::new(
                    Severity::Failure,
                    "configuration change refused".into(),
                    format!(
                        "The changed configuration is invalid, so the daemon keeps running the previous one: {}",
                        e.record()
                    ),
                );
                alert.failures = vec![e.record()];
                self.send_alert(alert);
            }
        }
    }

    /// Stops: every running job cancelled (BACKUPs killed), a few seconds for them
    /// to end, then the rest abandoned; all journaled.
    async fn stop(&mut self, done_rx: &mut mpsc::UnboundedReceiver<Done>) {
        info!(running = self.running.len(), "daemon stopping");
        for r in self.running.values() {
            r.cancel.cancel();
        }
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        while !self.running.is_empty() {
            match tokio::time::timeout_at(deadline, done_rx.recv()).await {
                Ok(Some(done)) => self.finished(done),
                _ => break,
            }
        }
        let abandoned: Vec<Running> = self.running.drain().map(|(_, r)| r).collect();
        for r in &abandoned {
            r.task.abort();
            let e = Error::new(
                ErrorKind::Cancelled,
                "abandoned when the daemon stopped: nothing of it was recorded as stored; it runs again at its next schedule",
            );
            let result = JobResult {
                ok: false,
                outcome: Outcome::Failed(JobFailure {
                    command: r.spec.journal_job(),
                    ok: false,
                    error: e.record(),
                }),
                failures: vec![e.record()],
            };
            self.end_entry(r, &result);
        }
        let names: Vec<&str> = abandoned.iter().map(|r| r.spec.key.as_str()).collect();
        self.write(
            EntryKind::DaemonStop,
            "daemon",
            Some("ok"),
            Some(json!({"abandoned": names, "pending": self.pending.len()})),
        );
        info!("daemon stopped");
    }

    fn write(
        &mut self,
        kind: EntryKind,
        job: &str,
        status: Option<&str>,
        outcome: Option<serde_json::Value>,
    ) {
        self.append(NewEntry {
            kind,
            job_id: format!("{:016x}", rand::random::<u64>()),
            job: job.to_string(),
            policy: None,
            database: None,
            status: status.map(str::to_string),
            who: self.who.clone(),
            outcome,
        });
    }

    /// A journal that cannot be written does not stop the daemon (the backups matter
    /// more than their log line); it is said loudly.
    fn append(&mut self, entry: NewEntry) {
        if let Err(e) = self.journal.append(entry) {
            error!(error = %e, "the journal cannot be written: this entry is lost");
        }
    }
}

/// Runs `spec`, stopping it at its time-out (its BACKUP killed).
async fn run_with_timeout(
    spec: &JobSpec,
    cfg: &crate::config::ConfigDir,
    cancel: CancellationToken,
    ctx: &JobContext,
) -> JobResult {
    let run = run_job(spec, cfg, cancel.clone(), ctx);
    tokio::pin!(run);
    match tokio::time::timeout(spec.timeout, &mut run).await {
        Ok(r) => r,
        Err(_) => {
            cancel.cancel();
            let over = Error::new(
                ErrorKind::Cancelled,
                format!(
                    "ran past its time-out of {} minutes and was stopped",
                    spec.timeout.as_secs() / 60
                ),
            )
            .record();
            match tokio::time::timeout(STOP_GRACE, &mut run).await {
                Ok(mut r) => {
                    r.ok = false;
                    r.failures.insert(0, over);
                    r
                }
                Err(_) => JobResult {
                    ok: false,
                    outcome: Outcome::Failed(JobFailure {
                        command: spec.journal_job(),
                        ok: false,
                        error: over.clone(),
                    }),
                    failures: vec![over],
                },
            }
        }
    }
}

/// Whether a backup failed for want of a full to base it on.
fn needs_full(result: &JobResult) -> bool {
    result
        .failures
        .iter()
        .any(|f| f.context.iter().any(|(k, v)| k == "needs" && v == "full"))
}

/// The body of a failure alert: each failure with its server, database and SQL
/// Server error number, and what to do.
fn failure_text(spec: &JobSpec, failures: &[ErrorRecord]) -> String {
    let mut lines = vec![format!(
        "Scheduled job {} ({}) failed after its retries.",
        spec.key,
        spec.schedule.as_str()
    )];
    for f in failures {
        let mut l = format!("- {f}");
        if let Some(n) = f.sql_error {
            l.push_str(&format!(" [SQL Server error {n}]"));
        }
        lines.push(l);
    }
    lines.push("Run `pacsbak status` on the backup server; `pacsbak journal --job <job>` shows the history.".into());
    lines.join("\n")
}

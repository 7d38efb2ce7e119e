//! `pacsbak daemon` (issue 15) against the simulator, with second-scale schedules
//! (cron's six-field form): each due job runs once; log backups keep running beside
//! a long full and two fulls never overlap; a missed run is caught up once; SIGTERM
//! during a BACKUP ends the process within 10 s with the session killed and the
//! repository verifying; an invalid reload is refused while the old schedules run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::TestConfig;
use crate::simulator_support as sim;
use crate::sqlserver_jobs::sim_env;

/// A daemon process on a config folder.
pub(crate) struct Daemon {
    child: Child,
}

impl Daemon {
    pub(crate) fn start(cfg: &TestConfig, extra_env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with(cfg, extra_env, None)
    }

    /// Started under `faketime` at `at` (an absolute time, "2026-12-01 02:59:55").
    pub(crate) fn start_with(
        cfg: &TestConfig,
        extra_env: &[(&str, &str)],
        at: Option<&str>,
    ) -> Daemon {
        let mut cmd = match at {
            Some(t) => {
                let mut c = Command::new("faketime");
                c.arg(format!("@{t}")).arg(env!("CARGO_BIN_EXE_pacsbak"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_pacsbak")),
        };
        cmd.arg("--config")
            .arg(cfg.config())
            .arg("daemon")
            .env_remove("PACSBAK_CONFIG")
            .env("PACSBAK_CACHE_DIR", cfg.path("cache"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(cfg.path("daemon.log")).unwrap());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Daemon {
            child: cmd.spawn().expect("start the daemon"),
        }
    }

    /// SIGTERM; the exit status and how long the stop took.
    pub(crate) fn terminate(mut self) -> (std::process::ExitStatus, Duration) {
        let started = Instant::now();
        signal(self.child.id(), "TERM");
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, started.elapsed());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the daemon did not stop within 30 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub(crate) fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} {pid}");
}

/// Every journal entry.
pub(crate) fn journal(cfg: &TestConfig) -> Vec<Value> {
    let out = cfg.ok(&["--json", "journal"]);
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// Polls the journal until `done` holds, for at most `limit`.
pub(crate) fn wait_for(
    cfg: &TestConfig,
    limit: Duration,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let j = journal(cfg);
        if done(&j) {
            return j;
        }
        if started.elapsed() > limit {
            let log = std::fs::read_to_string(cfg.path("daemon.log")).unwrap_or_default();
            panic!("waited {limit:?} for {what}; journal:\n{j:#?}\ndaemon log:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn kind(e: &Value) -> &str {
    e["kind"].as_str().unwrap_or("")
}

fn time_of(e: &Value) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(
        e["time"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
}

/// Each job run as (job, start, end, status) from the journal, by job id.
pub(crate) fn runs(
    j: &[Value],
) -> Vec<(
    String,
    time::OffsetDateTime,
    Option<time::OffsetDateTime>,
    Option<String>,
)> {
    let mut by_id: BTreeMap<
        String,
        (
            String,
            time::OffsetDateTime,
            Option<time::OffsetDateTime>,
            Option<String>,
        ),
    > = BTreeMap::new();
    for e in j {
        let id = e["job_id"].as_str().unwrap().to_string();
        match kind(e) {
            "job-start" => {
                assert!(
                    by_id
                        .insert(
                            id,
                            (
                                e["job"].as_str().unwrap().to_string(),
                                time_of(e),
                                None,
                                None
                            )
                        )
                        .is_none(),
                    "a job started twice under one id: {e}"
                );
            }
            "job-end" => {
                let r = by_id
                    .get_mut(&id)
                    .unwrap_or_else(|| panic!("an end without a start: {e}"));
                assert!(r.2.is_none(), "a job ended twice: {e}");
                r.2 = Some(time_of(e));
                r.3 = e["status"].as_str().map(str::to_string);
            }
            _ => {}
        }
    }
    let mut v: Vec<_> = by_id.into_values().collect();
    v.sort_by_key(|r| r.1);
    v
}

fn append(path: &Path, text: &str) {
    let mut s = std::fs::read_to_string(path).unwrap();
    s.push_str(text);
    std::fs::write(path, s).unwrap();
}

/// The test policy's schedules replaced by `schedule`.
fn set_schedule(cfg: &TestConfig, schedule: &str) {
    let p = cfg.config().join("policies/t.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    let start = text.find("[schedule]\n").unwrap() + "[schedule]\n".len();
    let end = text.find("[backup]").unwrap();
    let new = format!("{}{schedule}\n{}", &text[..start], &text[end..]);
    std::fs::write(&p, new).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_run_beside_a_long_full_and_fulls_never_overlap() {
    let (s, env) = sim_env("full = \"*/8 * * * * *\"\nlog = \"*/3 * * * * *\"").await;
    let cfg = &env.cfg;
    append(
        &cfg.config().join("pacsbak.toml"),
        "[daemon]\nretries = 0\n",
    );
    // A chain already there, so the daemon's log backups are small.
    for kind in ["full", "log"] {
        cfg.ok(&["backup", "db", "--policy", "t", "--type", kind]);
    }
    let mut c = sim::connect(s.addr).await;
    // A full takes longer than its 8-second interval.
    sim::exec(&mut c, "SIMCTL FAULT slow_backup 1200000").await;
    let d = Daemon::start(cfg, &[]);
    let j = wait_for(cfg, Duration::from_secs(90), "two fulls ended", |j| {
        runs(j)
            .iter()
            .filter(|r| r.0 == "backup-full" && r.2.is_some())
            .count()
            >= 2
    });
    let (status, took) = d.terminate();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(10), "stop took {took:?}");
    let j = {
        let _ = j;
        journal(cfg)
    };
    let all = runs(&j);
    let fulls: Vec<_> = all.iter().filter(|r| r.0 == "backup-full").collect();
    let logs: Vec<_> = all.iter().filter(|r| r.0 == "backup-log").collect();
    // Two fulls never overlap.
    for w in fulls.windows(2) {
        let end = w[0].2.expect("the first full ended");
        assert!(w[1].1 >= end, "fulls overlap: {fulls:#?}");
    }
    let first = fulls[0];
    let first_end = first.2.unwrap();
    assert!(
        first_end - first.1 > time::Duration::seconds(8),
        "the full was not slower than its schedule: {first:?}"
    );
    // Logs ran, and succeeded, while the full was running: the RPO holds.
    let beside: Vec<_> = logs
        .iter()
        .filter(|l| l.1 > first.1 && l.2.is_some_and(|e| e < first_end))
        .collect();
    assert!(
        beside.len() >= 2 && beside.iter().all(|l| l.3.as_deref() == Some("ok")),
        "logs beside the full: {beside:#?}\nall: {all:#?}"
    );
    // Each firing ran once: no two log starts within one 3-second slot.
    let slots: BTreeSet<i64> = logs.iter().map(|l| l.1.unix_timestamp() / 3).collect();
    assert_eq!(slots.len(), logs.len(), "a log firing ran twice: {logs:#?}");
    let fulls_ok = fulls
        .iter()
        .filter(|f| f.3.as_deref() == Some("ok"))
        .count();
    assert!(fulls_ok >= 2, "{fulls:#?}");
    // The journal is intact, with the daemon's start and stop.
    assert!(j.iter().any(|e| kind(e) == "daemon-start"));
    assert!(j.iter().any(|e| kind(e) == "daemon-stop"));
    let (code, out, err) = cfg.run(&["journal", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
}

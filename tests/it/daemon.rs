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

const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

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
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pacsbak"));
        // libfaketime preloaded into the daemon itself (the `faketime` wrapper would
        // take the signals meant for it), starting at `at` and running on from there.
        if let Some(t) = at {
            cmd.env("LD_PRELOAD", FAKETIME_LIB)
                .env("FAKETIME", format!("@{t}"))
                .env("FAKETIME_DONT_RESET", "1");
        }
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

/// The session running a BACKUP on the simulator, once one is.
async fn backup_session(c: &mut sim::Conn, limit: Duration) -> i64 {
    let started = Instant::now();
    loop {
        let rows = sim::rows(
            c,
            "SELECT session_id FROM sys.dm_exec_requests WHERE command = 'BACKUP DATABASE'",
        )
        .await;
        if let Some(r) = rows.first() {
            return pacsbak::sqlserver::conn::int(r, 0usize).unwrap();
        }
        assert!(
            started.elapsed() < limit,
            "no BACKUP started within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_backup_kills_its_session_and_stops_within_10_s() {
    let (s, env) = sim_env("full = \"*/2 * * * * *\"").await;
    let cfg = &env.cfg;
    let mut c = sim::connect(s.addr).await;
    sim::exec(&mut c, "SIMCTL FAULT slow_backup 3000000").await;
    let d = Daemon::start(cfg, &[]);
    let spid = backup_session(&mut c, Duration::from_secs(30)).await;
    let (status, took) = d.terminate();
    assert!(status.success(), "{status:?}");
    assert!(took < Duration::from_secs(10), "the stop took {took:?}");
    // The simulator shows the session gone: KILLed, not left writing (a KILL ends
    // the session once the BACKUP's writer has stopped, as SQL Server's does).
    let j = journal(cfg);
    let started = Instant::now();
    loop {
        let rows = sim::rows(
            &mut c,
            &format!("SELECT COUNT(*) FROM sys.dm_exec_sessions WHERE session_id = {spid}"),
        )
        .await;
        if pacsbak::sqlserver::conn::int(&rows[0], 0usize).unwrap() == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "session {spid} is still there; journal: {j:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let end = j
        .iter()
        .find(|e| kind(e) == "job-end" && e["job"] == "backup-full")
        .unwrap_or_else(|| panic!("no end of the full: {j:#?}"));
    assert_eq!(end["status"], "failed", "{end}");
    let text = end["outcome"].to_string();
    assert!(
        text.contains(&format!("killed (session {spid})")) && text.contains("cancelled"),
        "{text}"
    );
    assert!(j.iter().any(|e| kind(e) == "daemon-stop"), "{j:#?}");
    // Nothing half-written: the repository verifies, no partial backup file is left.
    let (code, out, err) = cfg.run(&["verify"]);
    assert_eq!(code, 0, "{out}{err}");
    let left: Vec<_> = crate::common::files_under(&s.dir.path().join("backups"))
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "bak"))
        .collect();
    assert!(left.is_empty(), "a partial backup file was left: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_missed_while_stopped_is_caught_up_once() {
    if !Path::new(FAKETIME_LIB).is_file() {
        println!(
            "skipped: a_run_missed_while_stopped_is_caught_up_once: faketime is not installed"
        );
        return;
    }
    let (_s, env) = sim_env("full = \"0 3 * * *\"\nlog = \"*/15 * * * *\"").await;
    let cfg = &env.cfg;
    // 03:00 comes a few seconds after the daemon starts: the full and a log run.
    let d = Daemon::start_with(cfg, &[], Some("2026-11-30 02:59:57"));
    wait_for(
        cfg,
        Duration::from_secs(60),
        "the 03:00 full and log",
        |j| {
            let r = runs(j);
            ["backup-full", "backup-log"]
                .iter()
                .all(|k| r.iter().any(|x| x.0 == *k && x.2.is_some()))
        },
    );
    let (status, _) = d.terminate();
    assert!(
        status.success(),
        "{status:?}: {}",
        std::fs::read_to_string(cfg.path("daemon.log")).unwrap_or_default()
    );
    let before = runs(&journal(cfg)).len();
    // Two days later: two fulls and nearly two hundred logs were missed.
    let d = Daemon::start_with(cfg, &[], Some("2026-12-02 10:00:05"));
    let j = wait_for(cfg, Duration::from_secs(60), "the catch-up", |j| {
        runs(j)
            .iter()
            .skip(before)
            .filter(|r| r.2.is_some())
            .count()
            >= 3
    });
    let (status, _) = d.terminate();
    assert!(status.success());
    let j = {
        let _ = j;
        journal(cfg)
    };
    let catch_ups: Vec<&Value> = j
        .iter()
        .filter(|e| kind(e) == "job-start" && e["who"]["reason"] == "catch-up")
        .collect();
    let mut jobs: Vec<&str> = catch_ups
        .iter()
        .map(|e| e["job"].as_str().unwrap())
        .collect();
    jobs.sort();
    // Once each: the full, the log (not one per missed quarter hour), and the
    // workstation folder whose 03:00 weekday schedule fired meanwhile.
    assert_eq!(
        jobs,
        ["backup-folders", "backup-full", "backup-log"],
        "{catch_ups:#?}"
    );
    let after = &runs(&j)[before..];
    assert!(
        after.iter().all(|r| r.3.as_deref() == Some("ok")),
        "{after:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_reload_is_refused_and_the_old_schedules_keep_running() {
    let (_s, env) = sim_env("log = \"0 0 1 1 *\"").await;
    let cfg = &env.cfg;
    cfg.ok(&["backup", "db", "--policy", "t", "--type", "full"]);
    append(
        &cfg.config().join("pacsbak.toml"),
        "[daemon]\nreload_check_seconds = 1\n",
    );
    set_schedule(cfg, "log = \"*/2 * * * * *\"");
    let d = Daemon::start(cfg, &[]);
    wait_for(cfg, Duration::from_secs(30), "a log backup", |j| {
        runs(j).iter().any(|r| r.0 == "backup-log" && r.2.is_some())
    });
    // A broken schedule: refused, naming the file, line and key.
    set_schedule(cfg, "log = \"*/2 * * * * *\"\ndiff = \"61 * * * *\"");
    let j = wait_for(cfg, Duration::from_secs(30), "the refusal", |j| {
        j.iter()
            .any(|e| kind(e) == "daemon-reload" && e["status"] == "refused")
    });
    let refusal = j
        .iter()
        .find(|e| kind(e) == "daemon-reload")
        .unwrap()
        .to_string();
    assert!(
        refusal.contains("t.toml")
            && refusal.contains("schedule.diff")
            && refusal.contains("minute"),
        "{refusal}"
    );
    let refused_at = j.len();
    // The old schedules keep running.
    wait_for(
        cfg,
        Duration::from_secs(30),
        "logs after the refusal",
        |j| {
            runs(&j[refused_at.min(j.len())..])
                .iter()
                .filter(|r| r.0 == "backup-log" && r.3.as_deref() == Some("ok"))
                .count()
                >= 2
        },
    );
    // A valid change, on SIGHUP: taken, with what changed.
    set_schedule(cfg, "log = \"*/2 * * * * *\"\ndiff = \"0 0 1 1 *\"");
    signal(d.pid(), "HUP");
    let j = wait_for(cfg, Duration::from_secs(30), "the reload", |j| {
        j.iter()
            .any(|e| kind(e) == "daemon-reload" && e["status"] == "ok")
    });
    let ok = j
        .iter()
        .find(|e| kind(e) == "daemon-reload" && e["status"] == "ok")
        .unwrap();
    assert!(
        ok["outcome"]["change"]["changed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "policies/t.toml"),
        "{ok}"
    );
    assert!(
        ok["outcome"]["jobs"].to_string().contains("backup-diff/t"),
        "{ok}"
    );
    let (status, _) = d.terminate();
    assert!(status.success());
}

/// Empty repositories to verify, `n` of them: cheap jobs, many per second.
fn add_verify_targets(cfg: &TestConfig, n: usize) -> Vec<String> {
    let names: Vec<String> = (1..=n).map(|i| format!("v{i:02}")).collect();
    for name in &names {
        std::fs::write(
            cfg.config().join(format!("storage-targets/{name}.toml")),
            format!("service = \"fs\"\nroot = \"../{name}\"\n"),
        )
        .unwrap();
        cfg.ok(&["repo", "init", "--target", name]);
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_jobs_through_kill_9_lose_nothing_but_the_step_in_flight() {
    use rand::{Rng, SeedableRng};
    let (_s, env) = sim_env("full = \"0 0 1 1 *\"\nlog = \"* * * * * *\"").await;
    let cfg = &env.cfg;
    cfg.ok(&["backup", "db", "--policy", "t", "--type", "full"]);
    let targets = add_verify_targets(cfg, 20);
    append(
        &cfg.config().join("pacsbak.toml"),
        &format!(
            "[daemon]\nmax_parallel = 24\nretries = 0\n[daemon.verify]\nschedule = \"* * * * * *\"\ntargets = {targets:?}\n"
        ),
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(15);
    let mut kills = 0;
    let mut starts = 0;
    loop {
        let d = Daemon::start(cfg, &[]);
        starts += 1;
        let started = Instant::now();
        // Killed at a random point: between jobs, in the middle of some, while
        // writing the journal.
        let life = Duration::from_millis(rng.gen_range(300..3000));
        while started.elapsed() < life {
            std::thread::sleep(Duration::from_millis(20));
        }
        d.kill9();
        kills += 1;
        let db = rusqlite::Connection::open(cfg.config().join("journal.sqlite3")).unwrap();
        let jobs: i64 = db
            .query_row(
                "SELECT COUNT(*) FROM entries WHERE kind = 'job-start'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        if jobs >= 1000 {
            break;
        }
        assert!(starts < 200, "too slow: {jobs} jobs after {starts} starts");
    }
    println!(
        "{} jobs, {starts} starts, {kills} kills",
        runs(&journal(cfg)).len()
    );
    // A last clean run, which catches up what the kill interrupted.
    let d = Daemon::start(cfg, &[]);
    wait_for(cfg, Duration::from_secs(30), "a clean run", |j| {
        j.iter()
            .rev()
            .take(40)
            .any(|e| e["kind"] == "job-end" && e["job"] == "backup-log")
    });
    let (status, _) = d.terminate();
    assert!(status.success());

    let j = journal(cfg);
    let (code, out, err) = cfg.run(&["journal", "verify"]);
    assert_eq!(code, 0, "journal verify after {kills} kills: {out}{err}");
    // Nothing recorded twice, no end without its start (runs() checks both).
    let all = runs(&j);
    assert!(all.len() >= 1000, "{}", all.len());
    let daemon_starts = j.iter().filter(|e| e["kind"] == "daemon-start").count();
    assert_eq!(daemon_starts, starts + 1);
    // What is lost is only what was in flight at a kill: at most the jobs that
    // can run at once, per kill.
    let open: Vec<_> = all.iter().filter(|r| r.2.is_none()).collect();
    assert!(
        open.len() <= kills * 22,
        "{} starts without an end after {kills} kills",
        open.len()
    );
    // The repository is the truth and agrees: every log backup the journal says
    // was stored is there (in-flight ones may be too), and status is green.
    let ok_logs = all
        .iter()
        .filter(|r| r.0 == "backup-log" && r.3.as_deref() == Some("ok"))
        .count();
    let open_logs = open.iter().filter(|r| r.0 == "backup-log").count();
    let snaps: Value =
        serde_json::from_str(&cfg.ok(&["--json", "snapshots", "--target", "local"])).unwrap();
    let log_snaps = snaps["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s.to_string().contains("type:log"))
        .count();
    assert!(
        log_snaps >= ok_logs && log_snaps <= ok_logs + open_logs + 1,
        "{log_snaps} log snapshots, journal: {ok_logs} stored, {open_logs} in flight at kills"
    );
    let (code, out, err) = cfg.run(&["--json", "status", "--policy", "t"]);
    assert_eq!(code, 0, "{out}{err}");
    let st: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(st["policies"][0]["databases"][0]["rpo_met"], true, "{st}");
    let (code, out, err) = cfg.run(&["verify", "--target", "local"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn the_systemd_unit_starts_the_daemon_as_documented() {
    let unit = std::fs::read_to_string(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/pacsbak.service"),
    )
    .unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in the unit"))
            .to_string()
    };
    // ExecStart is a command line pacsbak accepts.
    let exec = value("ExecStart");
    let args: Vec<&str> = exec.split_whitespace().collect();
    assert!(args[0].ends_with("/pacsbak"), "{exec}");
    use clap::Parser;
    let cli = pacsbak::cli::Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{exec}: {e}"));
    assert_eq!(cli.command.name(), "daemon");
    assert_eq!(value("KillSignal"), "SIGTERM");
    assert!(value("ExecReload").contains("-HUP"));
    assert!(value("Environment").starts_with("PACSBAK_CONFIG="));
    // Secrets come from a file systemd reads, never from the unit itself.
    assert!(!unit.to_lowercase().contains("pacsbak_password="));
}

#[test]
fn the_live_sandbox_runs_jobs_and_sends_alerts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sandbox");
    let out = Command::new(env!("CARGO_BIN_EXE_pacsbak"))
        .args(["--json", "sandbox", "--daemon", "--for", "32", "--dir"])
        .arg(&dir)
        .env_remove("PACSBAK_CONFIG")
        .env("PACSBAK_CACHE_DIR", tmp.path().join("cache"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_str(&text).unwrap();
    assert!(r["jobs"].as_u64().unwrap() >= 3, "{r}");
    assert_eq!(r["jobs"], r["jobs_ok"], "{r}");
    // The digest fires every 30 seconds: at least one reached the receiver.
    assert!(r["alerts"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["ok"], true, "{r}");
}

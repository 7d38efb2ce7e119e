//! DR drills (issue 17), against two simulators over TCP: the production instance
//! whose backups go to the repository, and a second one as the staging instance.
//! A passing drill restores the chain from the repository, checks it and drops it;
//! each failure (a log missing offsite, DBCC CHECKDB, a probe, the RTO, too little
//! disk, the production instance) fails loudly and leaves nothing behind; a killed
//! drill's database is dropped by the next cleanup, and nothing else is.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pacsbak::config::ConfigDir;
use pacsbak::drills::{self, DrillOptions, DrillRecord, PhaseName, RestoreTest};
use pacsbak::jobs::db_backup::{self, DbBackupOptions};
use pacsbak::records::BackupKind;

use crate::daemon::{runs, wait_for, Daemon};
use crate::simulator_support::{self as sim, Sim};
use crate::sqlserver_jobs::{private_file, setup, sim_ado, Env};

/// The production simulator with a chain in the repository (full, diff, two logs),
/// and an empty staging simulator.
struct DrillEnv {
    prod: Sim,
    staging: Sim,
    env: Env,
    /// Rows of dbo.Study on production after the last backup.
    studies: i64,
}

fn backup(kind: BackupKind) -> DbBackupOptions {
    DbBackupOptions {
        kind: Some(kind),
        ..DbBackupOptions::default()
    }
}

async fn scalar(c: &mut sim::Conn, sql: &str) -> i64 {
    let r = sim::rows(c, sql).await;
    pacsbak::sqlserver::conn::int(&r[0], 0usize).unwrap()
}

async fn drill_env() -> DrillEnv {
    let prod = sim::start(false).await;
    let backups = prod.dir.path().join("backups");
    // Schedules that never fire during a test (the daemon test adds a drill's).
    let mut env = setup(&sim_ado(prod.addr), &backups, "full = \"0 1 1 1 *\"").await;
    // Rows counted with each full and differential, for the `within_percent` probe.
    let policy_file = env.cfg.config().join("policies/t.toml");
    let text = std::fs::read_to_string(&policy_file).unwrap();
    std::fs::write(
        &policy_file,
        text.replace(
            "stall_minutes = 1\n",
            "stall_minutes = 1\ncount_rows = [\"dbo.Study\"]\n",
        ),
    )
    .unwrap();
    env.policy = pacsbak::policy::Policy::find(&env.cfg.config(), "t").unwrap();
    let staging = sim::start(true).await;
    private_file(
        &env.cfg.config().join("staging.conn"),
        &sim_ado(staging.addr),
    );
    private_file(&env.cfg.config().join("prod.conn"), &sim_ado(prod.addr));
    let mut c = sim::connect(prod.addr).await;
    for kind in [
        BackupKind::Full,
        BackupKind::Diff,
        BackupKind::Log,
        BackupKind::Log,
    ] {
        sim::exec(&mut c, "SIMCTL ADVANCE HOURS = 1, IMAGES = 20").await;
        let r = db_backup::run(&env.policy, &env.instance, &env.targets, &backup(kind))
            .await
            .unwrap();
        assert!(r.ok, "{kind}: {r:#?}");
        if kind != BackupKind::Log {
            let rec = &r.results[0].record.as_ref().unwrap();
            assert!(rec.row_counts.contains_key("dbo.Study"), "{rec:?}");
            assert!(!rec.database_files.is_empty(), "{rec:?}");
        }
    }
    let studies = scalar(&mut c, "SELECT COUNT(*) FROM [PACS].dbo.Study").await;
    DrillEnv {
        prod,
        staging,
        env,
        studies,
    }
}

impl DrillEnv {
    fn cfg(&self) -> ConfigDir {
        ConfigDir::load(&self.env.cfg.config()).unwrap()
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.staging.dir.path().join(name)
    }

    /// Writes `restore-tests/NAME.toml`: the passing drill, with `replace` pairs
    /// applied to its text.
    fn restore_test(&self, name: &str, replace: &[(&str, &str)]) -> RestoreTest {
        let mut text = format!(
            "description = \"test drill\"\n\
             [source]\npolicy = \"t\"\ndatabase = \"PACS\"\ntarget = \"local\"\npoint = \"latest\"\n\
             [staging]\nname = \"STAGING\"\nconnection_string_file = \"staging.conn\"\nencryption = \"off\"\n\
             fetch_folder_server = '{}'\ndata_folder = '{}'\nlargest_restore = \"1GiB\"\n\
             [checks]\ncheckdb = true\nrto = \"1h\"\n\
             [[checks.probe]]\nname = \"studies\"\nsql = \"SELECT COUNT(*) FROM dbo.Study\"\nat_least = 1\n\
             [[checks.probe]]\nname = \"count near the source\"\ncount_table = \"dbo.Study\"\nwithin_percent = 25\n\
             [[checks.probe]]\nname = \"newest study\"\nsql = \"SELECT MAX(StudyDate) FROM dbo.Study\"\nnot_older_than = \"rpo\"\n",
            self.dir("fetch").display(),
            self.dir("data").display(),
        );
        for (from, to) in replace {
            assert!(text.contains(from), "{from} not in the restore test");
            text = text.replace(from, to);
        }
        // SQL Server creates no folders for MOVE: the staging server has them.
        std::fs::create_dir_all(self.dir("data")).unwrap();
        let dir = self.env.cfg.config().join("restore-tests");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
        RestoreTest::find(&self.cfg(), name).unwrap()
    }

    async fn drill(&self, name: &str, replace: &[(&str, &str)]) -> DrillRecord {
        let test = self.restore_test(name, replace);
        drills::run(&self.cfg(), &test, &DrillOptions::default()).await
    }

    async fn staging_databases(&self) -> Vec<String> {
        let mut c = sim::connect(self.staging.addr).await;
        sim::rows(
            &mut c,
            "SELECT name FROM sys.databases WHERE database_id > 4",
        )
        .await
        .iter()
        .map(|r| pacsbak::sqlserver::conn::text(r, 0usize).unwrap())
        .collect()
    }

    fn marks(&self) -> Vec<drills::marks::DrillMark> {
        drills::marks::DrillMark::load_all(&drills::marks::marks_dir(&self.cfg().journal_path()))
            .unwrap()
    }

    /// A failed drill: not ok, said why, nothing left on staging or in the marks.
    async fn assert_failed_clean(&self, rec: &DrillRecord, words: &str) {
        assert!(!rec.ok, "{rec:#?}");
        assert!(!rec.failures().is_empty(), "{rec:#?}");
        let said = serde_json::to_string(rec).unwrap();
        assert!(said.contains(words), "{words:?} not in {said}");
        assert!(
            self.staging_databases().await.is_empty(),
            "left on staging: {:?}",
            self.staging_databases().await
        );
        assert!(self.marks().is_empty(), "{:?}", self.marks());
    }
}

fn phase(rec: &DrillRecord, p: PhaseName) -> Option<&drills::Phase> {
    rec.phases.iter().find(|x| x.phase == p)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_restores_the_offsite_chain_checks_it_and_drops_it() {
    let d = drill_env().await;
    let rec = d.drill("monthly", &[]).await;
    assert!(rec.ok, "{rec:#?}");
    let kinds: Vec<&str> = rec.chain.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, ["full", "diff", "log", "log"], "{rec:#?}");
    for p in [
        PhaseName::Plan,
        PhaseName::Space,
        PhaseName::Fetch,
        PhaseName::Restore,
        PhaseName::Recovery,
        PhaseName::Checks,
        PhaseName::Cleanup,
    ] {
        assert!(phase(&rec, p).is_some_and(|x| x.ok), "{p:?}: {rec:#?}");
    }
    let names: Vec<&str> = rec.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "DBCC CHECKDB",
            "studies",
            "count near the source",
            "newest study",
            "RTO"
        ]
    );
    // The restored count is the production count at the last log (the diff's
    // record holds fewer: within 25% in this small database).
    let studies = rec.checks.iter().find(|c| c.name == "studies").unwrap();
    assert_eq!(studies.actual, d.studies.to_string(), "{rec:#?}");
    assert!(rec.fetched_bytes > 0 && rec.throughput.is_some_and(|t| t > 0.0));
    assert!(rec.dropped && !rec.kept && !rec.on_production);
    assert!(
        rec.drill_database.starts_with("PACS_drill_2"),
        "{}",
        rec.drill_database
    );
    assert!(d.staging_databases().await.is_empty());
    assert!(d.marks().is_empty());
    assert!(!d.dir("fetch").join(&rec.drill_database).exists());
    // The production database is untouched.
    let mut c = sim::connect(d.prod.addr).await;
    assert_eq!(
        scalar(&mut c, "SELECT COUNT(*) FROM [PACS].dbo.Study").await,
        d.studies
    );
    // The HTML report a manager reads.
    let mut rec = rec;
    let cfg = d.cfg();
    let page = drills::save_report(&cfg, &mut rec, None).unwrap();
    let html = std::fs::read_to_string(&page).unwrap();
    for words in [
        "PASS",
        "DBCC CHECKDB",
        "fetch",
        "recovery",
        "RTO",
        "PACS_drill_",
    ] {
        assert!(html.contains(words), "{words} not in the report");
    }
    // A random point inside the window restores too, and says which.
    let random = d
        .drill("random", &[("point = \"latest\"", "point = \"random\"")])
        .await;
    assert!(random.ok, "{random:#?}");
    assert!(random.point.starts_with("random: 20"), "{}", random.point);
    // The estimate uses the measured throughput.
    let policy = pacsbak::policy::Policy::find(&cfg.dir, "t").unwrap();
    let est = drills::estimate::estimate(&cfg, &policy, &[rec.clone()])
        .await
        .unwrap();
    let pacs = &est.targets[0].databases[0];
    assert!(
        est.ok && pacs.seconds.is_some() && pacs.chain_files == 4,
        "{est:#?}"
    );
    assert_eq!(pacs.within_rto, Some(true), "{est:#?}");
    let none = drills::estimate::estimate(&cfg, &policy, &[])
        .await
        .unwrap();
    assert!(
        !none.ok && none.targets[0].databases[0].note.is_some(),
        "{none:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_db_fetch_writes_the_chain_in_order_and_its_t_sql_restores_it() {
    let d = drill_env().await;
    let to = d.dir("by-hand");
    let data = d.dir("by-hand-data");
    std::fs::create_dir_all(&data).unwrap();
    let out = d.env.cfg.ok(&[
        "--json",
        "restore",
        "db",
        "fetch",
        "--database",
        "PACS",
        "--to",
        to.to_str().unwrap(),
        "--move-data",
        data.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let files = v["files"].as_array().unwrap();
    let kinds: Vec<&str> = files.iter().map(|f| f["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["full", "diff", "log", "log"]);
    for (i, f) in files.iter().enumerate() {
        let p = PathBuf::from(f["path"].as_str().unwrap());
        assert!(
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&format!("{:02}-", i + 1)),
            "{p:?}"
        );
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            f["size"].as_u64().unwrap()
        );
    }
    // The printed T-SQL, run as it is on the staging server, restores the database.
    let mut c = sim::connect(d.staging.addr).await;
    for stmt in v["tsql"].as_array().unwrap() {
        let stmt = stmt.as_str().unwrap();
        if !stmt.starts_with("--") {
            sim::exec(&mut c, stmt).await;
        }
    }
    assert_eq!(
        scalar(&mut c, "SELECT COUNT(*) FROM [PACS].dbo.Study").await,
        d.studies
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_drills_fail_loudly_and_leave_nothing_behind() {
    let d = drill_env().await;
    let mut st = sim::connect(d.staging.addr).await;

    // DBCC CHECKDB finds the page the staging disk damaged.
    sim::exec(&mut st, "SIMCTL FAULT corrupt_restore").await;
    let rec = d.drill("corrupt", &[]).await;
    sim::exec(&mut st, "SIMCTL CLEAR").await;
    let checkdb = &rec.checks[0];
    assert!(!checkdb.ok, "{rec:#?}");
    assert_eq!(
        checkdb.error.as_ref().and_then(|e| e.sql_error),
        Some(8928),
        "{checkdb:?}"
    );
    assert!(rec.dropped, "{rec:#?}");
    d.assert_failed_clean(&rec, "could not be processed").await;

    // A probe whose expectation fails.
    let rec = d
        .drill("probe", &[("at_least = 1\n", "at_least = 1000000000\n")])
        .await;
    let p = rec.checks.iter().find(|c| c.name == "studies").unwrap();
    assert!(!p.ok && p.expected == "at least 1000000000", "{p:?}");
    d.assert_failed_clean(&rec, "at least 1000000000").await;

    // Over the RTO: every RESTORE takes 600 ms on a slow staging server.
    sim::exec(&mut st, "SIMCTL FAULT slow_restore 600").await;
    let rec = d.drill("rto", &[("rto = \"1h\"", "rto = \"1s\"")]).await;
    sim::exec(&mut st, "SIMCTL CLEAR").await;
    let rto = rec.checks.iter().find(|c| c.kind == "rto").unwrap();
    assert!(!rto.ok && rec.restore_seconds > 1.0, "{rec:#?}");
    d.assert_failed_clean(&rec, "within 1s").await;

    // Too large for the staging disk: refused from the recorded file sizes,
    // before anything is fetched.
    let rec = d
        .drill(
            "small-disk",
            &[("largest_restore = \"1GiB\"", "largest_restore = \"64KiB\"")],
        )
        .await;
    assert!(phase(&rec, PhaseName::Fetch).is_none(), "{rec:#?}");
    assert_eq!(
        rec.error.as_ref().unwrap().kind,
        pacsbak::ErrorKind::Refused
    );
    d.assert_failed_clean(&rec, "staging.largest_restore").await;
    // ... and from the server's free space (xp_fixeddrives).
    sim::exec(&mut st, "SIMCTL FAULT disk_free_mb 0").await;
    let rec = d.drill("full-disk", &[]).await;
    sim::exec(&mut st, "SIMCTL CLEAR").await;
    assert!(phase(&rec, PhaseName::Fetch).is_none(), "{rec:#?}");
    d.assert_failed_clean(&rec, "free for").await;

    // The production instance as staging: refused unless the restore test says so.
    let rec = d
        .drill("on-prod", &[("\"staging.conn\"", "\"prod.conn\"")])
        .await;
    assert!(
        rec.on_production && phase(&rec, PhaseName::Fetch).is_none(),
        "{rec:#?}"
    );
    d.assert_failed_clean(&rec, "production = true").await;
    let allowed = d
        .drill(
            "on-prod-allowed",
            &[("\"staging.conn\"", "\"prod.conn\"\nproduction = true")],
        )
        .await;
    assert!(
        allowed.ok && allowed.on_production && allowed.dropped,
        "{allowed:#?}"
    );
    let mut pc = sim::connect(d.prod.addr).await;
    assert_eq!(
        scalar(
            &mut pc,
            "SELECT COUNT(*) FROM sys.databases WHERE name LIKE 'PACS_drill%'"
        )
        .await,
        0
    );

    // A log missing offsite: the gap is named before anything is fetched.
    let repo = &d.env.targets[0].repo;
    let mut logs: Vec<_> = repo
        .snapshots()
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.snapshot.tags.iter().any(|t| t == "type:log"))
        .collect();
    logs.sort_by_key(|s| s.snapshot.time);
    assert_eq!(
        logs.len(),
        2,
        "{:?}",
        logs.iter().map(|s| &s.snapshot.tags).collect::<Vec<_>>()
    );
    repo.forget(&[logs[0].id]).await.unwrap();
    let rec = d.drill("gap", &[]).await;
    assert!(
        phase(&rec, PhaseName::Plan).is_some_and(|p| !p.ok),
        "{rec:#?}"
    );
    assert!(phase(&rec, PhaseName::Fetch).is_none());
    d.assert_failed_clean(&rec, "broken").await;
    let plan = phase(&rec, PhaseName::Plan).unwrap();
    assert!(
        plan.detail.contains("LSN") || plan.detail.contains("gap"),
        "{plan:?}"
    );
}

fn kill9(pid: u32) {
    let ok = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_drill_is_cleaned_up_and_nothing_else_is_touched() {
    let d = drill_env().await;
    let test = d.restore_test("killed", &[]);
    let mut st = sim::connect(d.staging.addr).await;
    // A database of the drill's name that no drill created is refused and kept.
    let today = test.database_name(&{
        let t = pacsbak::clock::Clock::system(None).unwrap().local_now();
        format!("{:04}{:02}{:02}", t.year(), u8::from(t.month()), t.day())
    });
    sim::exec(&mut st, &format!("CREATE DATABASE [{today}]")).await;
    let rec = drills::run(&d.cfg(), &test, &DrillOptions::default()).await;
    assert!(
        !rec.ok
            && rec
                .error
                .as_ref()
                .unwrap()
                .message
                .contains("no drill created it"),
        "{rec:#?}"
    );
    assert_eq!(d.staging_databases().await, std::slice::from_ref(&today));
    sim::exec(&mut st, &format!("DROP DATABASE [{today}]")).await;

    // The drill killed in the middle of its RESTORE sequence.
    sim::exec(&mut st, "SIMCTL FAULT slow_restore 2000").await;
    let mut child = d.env.cfg.cmd(&["drill", "run", "killed"]).spawn().unwrap();
    let started = std::time::Instant::now();
    while !d.staging_databases().await.contains(&today) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the drill never restored"
        );
        assert!(child.try_wait().unwrap().is_none(), "the drill ended early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    kill9(child.id());
    child.wait().unwrap();
    sim::exec(&mut st, "SIMCTL CLEAR").await;
    assert_eq!(d.marks().len(), 1, "the killed drill's mark");
    // Someone else's database beside it, named like a drill's.
    sim::exec(&mut st, "CREATE DATABASE [PACS_drill_19990101]").await;
    // Listed as a leftover: `drill list` is not ok while one is there.
    let (code, listed, _) = d.env.cfg.run(&["--json", "drill", "list"]);
    assert_eq!(code, 1, "{listed}");
    assert!(listed.contains(&today), "{listed}");
    let cleaned = d.env.cfg.ok(&["--json", "drill", "cleanup"]);
    let v: serde_json::Value = serde_json::from_str(&cleaned).unwrap();
    assert_eq!(v["cleaned"][0]["dropped"], true, "{v}");
    assert_eq!(d.staging_databases().await, ["PACS_drill_19990101"]);
    assert!(d.marks().is_empty());
    // The next drill runs as usual beside it.
    let rec = drills::run(&d.cfg(), &test, &DrillOptions::default()).await;
    assert!(rec.ok, "{rec:#?}");
    assert_eq!(d.staging_databases().await, ["PACS_drill_19990101"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_drills_on_schedule_and_a_failed_one_alerts() {
    let d = drill_env().await;
    let scheduled = (
        "description = \"test drill\"\n",
        "description = \"test drill\"\nschedule = \"*/3 * * * * *\"\n",
    );
    // One fails a probe after restoring, one is refused before fetching.
    d.restore_test(
        "nightly",
        &[scheduled, ("at_least = 1\n", "at_least = 1000000000\n")],
    );
    d.restore_test(
        "nightly-small-disk",
        &[
            scheduled,
            ("largest_restore = \"1GiB\"", "largest_restore = \"64KiB\""),
        ],
    );
    let (port, got) = crate::alerts::receiver().await;
    let toml = d.env.cfg.config().join("pacsbak.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text.push_str(&format!(
        "[daemon]\nretries = 0\n[[alerts.webhook]]\nname = \"monitoring\"\nurl = \"http://127.0.0.1:{port}/hook\"\n"
    ));
    std::fs::write(&toml, text).unwrap();
    let daemon = Daemon::start(&d.env.cfg, &[]);
    let j = wait_for(
        &d.env.cfg,
        Duration::from_secs(90),
        "both failed drills and their alerts",
        |j| {
            let alerts: Vec<String> = j
                .iter()
                .filter(|e| e["kind"] == "alert")
                .map(|e| e.to_string())
                .collect();
            runs(j)
                .iter()
                .any(|r| r.0 == "drill" && r.3.as_deref() == Some("failed"))
                && alerts.iter().any(|a| a.contains("studies"))
                && alerts.iter().any(|a| a.contains("largest_restore"))
        },
    );
    daemon.terminate();
    assert!(
        runs(&j)
            .iter()
            .all(|r| r.0 != "drill" || r.3.as_deref() != Some("ok")),
        "no failing drill reported as a pass"
    );
    let sent = got.lock().unwrap().clone();
    assert!(
        sent.iter()
            .any(|(path, body)| path == "/hook" && body.to_string().contains("drill")),
        "{sent:?}"
    );
    let end = j
        .iter()
        .find(|e| e["kind"] == "job-end" && e["outcome"]["drill"] == "nightly")
        .unwrap();
    assert_eq!(end["outcome"]["checks"][1]["ok"], false, "{end}");
    assert!(
        end["outcome"]["report_file"]
            .as_str()
            .is_some_and(|f| Path::new(f).exists()),
        "{end}"
    );
    assert!(d.staging_databases().await.is_empty());
}

#[test]
fn restore_test_errors_name_the_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let base = "[source]\npolicy = \"p\"\ndatabase = \"PACS\"\n\
                [staging]\nname = \"S\"\nconnection_string_env = \"X\"\n\
                fetch_folder_server = '/f'\ndata_folder = '/d'\nlargest_restore = \"1GiB\"\n";
    let cases = [
        (
            base.replace("largest_restore = \"1GiB\"", "largest_restore = \"lots\""),
            "staging.largest_restore",
        ),
        (format!("{base}[checks]\nrto = \"4 hours\"\n"), "checks.rto"),
        (
            base.replace(
                "database = \"PACS\"\n",
                "database = \"PACS\"\npoint = \"yesterday\"\n",
            ),
            "source.point",
        ),
        (
            format!("{base}database = \"PACS_copy\"\n"),
            "staging.database",
        ),
        (format!("{base}password = \"x\"\n"), "password"),
        (
            format!(
                "{base}[[checks.probe]]\nname = \"n\"\nsql = \"SELECT 1\"\nwithin_percent = 5\n"
            ),
            "checks.probe[0].within_percent",
        ),
    ];
    for (text, key) in cases {
        let p = dir.path().join("t.toml");
        std::fs::write(&p, &text).unwrap();
        let e = RestoreTest::load(&p, dir.path()).unwrap_err();
        assert!(e.to_string().contains("t.toml"), "{e}");
        assert!(e.to_string().contains(key), "{key}: {e}");
    }
    // The shipped example loads.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("restore-tests/pacs-monthly.toml");
    let t = RestoreTest::load(&example, Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    assert_eq!(t.database_name("20261125"), "PACS_drill_20261125");
    assert_eq!(t.probes.len(), 3);
    assert_eq!(t.point, drills::DrillPoint::Random);
}

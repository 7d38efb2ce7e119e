//! SQL Server backups end to end (issue 6), against the simulator over TCP started
//! by the tests: a simulated week of fulls, diffs and logs with PACS work between
//! them and a manual copy-only backup in the middle, restored to a random point in
//! time from the repository alone; every injected fault ends in a clear failure
//! with no snapshot and nothing offsite deleted; the sandbox runs and continues.
//! `mssql_*` tests run against a real SQL Server when PACSBAK_TEST_MSSQL is set.

use std::collections::BTreeSet;
use std::path::Path;

use pacsbak::config::ConfigDir;
use pacsbak::jobs::db_backup::{self, DbBackupOptions};
use pacsbak::jobs::{manual, open_targets, restore_db, Target};
use pacsbak::outcome::Status;
use pacsbak::policy::Policy;
use pacsbak::records::BackupKind;
use pacsbak::repository::Repository;
use pacsbak::sqlserver::Instance;
use rand::Rng;

use crate::common::{TestConfig, PASSPHRASE};
use crate::simulator_support::{self as sim, PW};

pub(crate) struct Env {
    pub cfg: TestConfig,
    pub policy: Policy,
    pub instance: Instance,
    pub targets: Vec<Target>,
}

impl Env {
    fn repo(&self) -> &Repository {
        &self.targets[0].repo
    }
}

pub(crate) fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// A config folder with a policy whose instance is reached through `ado`.
pub(crate) async fn setup(ado: &str, backup_dir: &Path, schedule: &str) -> Env {
    let cfg = TestConfig::new();
    let c = cfg.config();
    private_file(&c.join("repo.pass"), PASSPHRASE);
    private_file(&c.join("sql.conn"), ado);
    std::fs::write(
        c.join("pacsbak.toml"),
        "[repository]\npassword_file = \"repo.pass\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(c.join("policies")).unwrap();
    std::fs::create_dir_all(backup_dir).unwrap();
    std::fs::create_dir_all(cfg.path("programs/server")).unwrap();
    std::fs::write(cfg.path("programs/server/pacs.ini"), "x=1\n").unwrap();
    std::fs::write(
        c.join("policies/t.toml"),
        format!(
            "[instance]\nname = \"SIM\"\nconnection_string_file = \"sql.conn\"\nencryption = \"off\"\n\
             [databases]\ninclude = [\"PACS\"]\n[schedule]\n{schedule}\n[backup]\nserver_folder = '{}'\nstall_minutes = 1\n\
             [offsite]\ntargets = [\"local\"]\n[rpo]\ndefault_minutes = 240\n\
             [[folders]]\nname = \"pacs-server\"\nrole = \"server\"\npath = '{}'\nschedule = \"0 2 * * *\"\n\
             [[folders]]\nname = \"reg-1\"\nrole = \"workstation\"\npath = '{}'\nschedule = \"0 3 * * 1-5\"\n",
            backup_dir.display(),
            cfg.path("programs/server").display(),
            cfg.path("programs/switched-off").display(),
        ),
    )
    .unwrap();
    let dir = ConfigDir::load(&c).unwrap();
    let storage = pacsbak::storage::open_new_target(dir.target(Some("local")).unwrap()).unwrap();
    Repository::init(storage, PASSPHRASE).await.unwrap();
    let policy = Policy::find(&c, "t").unwrap();
    let targets = open_targets(&dir, &policy).await.unwrap().open;
    let instance = Instance::open(&policy.instance_spec().unwrap())
        .await
        .unwrap();
    Env {
        cfg,
        policy,
        instance,
        targets,
    }
}

pub(crate) fn sim_ado(addr: std::net::SocketAddr) -> String {
    format!(
        "Server=tcp:127.0.0.1,{};User Id=sa;Password={PW};encrypt=DANGER_PLAINTEXT",
        addr.port()
    )
}

async fn counts(c: &mut sim::Conn, db: &str) -> [i64; 3] {
    let mut out = [0; 3];
    for (i, t) in ["Patient", "Study", "Image"].iter().enumerate() {
        let r = sim::rows(c, &format!("SELECT COUNT(*) FROM [{db}].dbo.{t}")).await;
        out[i] = pacsbak::sqlserver::conn::int(&r[0], 0usize).unwrap();
    }
    out
}

async fn now(c: &mut sim::Conn) -> time::PrimitiveDateTime {
    let r = sim::rows(c, "SELECT GETDATE()").await;
    pacsbak::sqlserver::conn::datetime(&r[0], 0usize).unwrap()
}

/// `backup folders` of the test policy, unpinned, no extra tags.
async fn folders(
    env: &Env,
    filter: &pacsbak::jobs::folders::FolderFilter,
) -> pacsbak::jobs::folders::FoldersRun {
    pacsbak::jobs::folders::run(
        &env.policy,
        &env.targets,
        filter,
        false,
        &[],
        &Default::default(),
    )
    .await
}

fn opts(kind: BackupKind) -> DbBackupOptions {
    DbBackupOptions {
        kind: Some(kind),
        ..DbBackupOptions::default()
    }
}

/// Every file under the repository folder (nothing may ever disappear).
fn repo_files(dir: &Path) -> BTreeSet<String> {
    crate::common::tree_contents(dir).into_keys().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_week_restores_to_a_random_point_in_time() {
    let s = sim::start(false).await;
    let backups = s.dir.path().join("backups");
    let env = setup(
        &sim_ado(s.addr),
        &backups,
        "full = \"0 0 * * SUN\"\ndiff = \"0 0 * * MON-SAT\"\nlog = \"0 */4 * * *\"",
    )
    .await;
    let mut c = sim::connect(s.addr).await;
    // (time after the work, row counts then)
    let mut history: Vec<(time::PrimitiveDateTime, [i64; 3])> = Vec::new();
    let first = db_backup::run(
        &env.policy,
        &env.instance,
        &env.targets,
        &opts(BackupKind::Full),
    )
    .await
    .unwrap();
    assert!(first.ok, "{first:#?}");
    let mut prev = now(&mut c).await;
    let (mut fulls, mut diffs, mut logs) = (1, 0, 0);
    for step in 0..42 {
        sim::exec(&mut c, "SIMCTL ADVANCE HOURS = 4, IMAGES = 30").await;
        let t = now(&mut c).await;
        history.push((t, counts(&mut c, "PACS").await));
        // What the policy's schedules make due between the last step and now.
        let due = [BackupKind::Full, BackupKind::Diff, BackupKind::Log]
            .into_iter()
            .find(|k| {
                env.policy.schedules[k]
                    .last_at_or_before(t, time::Duration::hours(4))
                    .is_some_and(|f| f > prev)
            })
            .unwrap_or(BackupKind::Log);
        prev = t;
        let r = db_backup::run(&env.policy, &env.instance, &env.targets, &opts(due))
            .await
            .unwrap();
        assert!(r.ok, "step {step} {due}: {r:#?}");
        assert_eq!(r.results[0].kind, due, "{:?}", r.results[0].notes);
        match due {
            BackupKind::Full => fulls += 1,
            BackupKind::Diff => diffs += 1,
            BackupKind::Log => logs += 1,
        }
        if step == 20 {
            let m = manual::run(
                &env.policy,
                &env.instance,
                &env.targets,
                "mid-week upgrade",
                None,
            )
            .await
            .unwrap();
            assert!(m.ok, "{m:#?}");
            assert!(m.databases.results[0]
                .record
                .as_ref()
                .is_some_and(|r| r.copy_only && r.pinned));
            assert!(m.restorable.iter().any(|l| l.contains("database PACS")));
            // Every program folder: the workstation (switched off here) is missed.
            let folders: Vec<(&str, Status)> = m
                .folders
                .results
                .iter()
                .map(|r| (r.name.as_str(), r.status))
                .collect();
            assert_eq!(
                folders,
                [("pacs-server", Status::Ok), ("reg-1", Status::Missed)]
            );
        }
    }
    // The last step must end on a log so every point before it is covered.
    let last = db_backup::run(
        &env.policy,
        &env.instance,
        &env.targets,
        &opts(BackupKind::Log),
    )
    .await
    .unwrap();
    assert!(last.ok);
    assert!(
        fulls >= 2 && diffs >= 5 && logs >= 30,
        "{fulls} {diffs} {logs}"
    );

    // A random point between two workloads (not before the first).
    let i = rand::thread_rng().gen_range(0..history.len() - 1);
    let (t, expected) = history[i];
    let at = pacsbak::bakfile::MtfDate::from_datetime(t + time::Duration::minutes(30));
    let plan = restore_db::plan_from_repository(env.repo(), "PACS", Some(at))
        .await
        .unwrap();
    assert!(plan.ok, "{plan:#?}");
    assert!(plan.steps.last().unwrap().stop_at.is_some() || plan.steps.len() == 1);
    let drill = s.dir.path().join("drill");
    std::fs::create_dir_all(&drill).unwrap();
    let o = restore_db::RestoreDbOptions {
        database: "PACS".into(),
        at: Some(at),
        as_name: "PACS_drill".into(),
        move_data: drill.display().to_string(),
        move_log: drill.display().to_string(),
        replace: false,
        cancel: Default::default(),
        keep_staging: false,
    };
    let r = restore_db::run(&env.policy, &env.instance, env.repo(), &o)
        .await
        .unwrap_or_else(|e| panic!("restore to {at}: {e}\n{plan:#?}"));
    assert!(r.ok);
    assert!(r.statements.iter().any(|s| s.contains("MOVE")));
    let got = counts(&mut c, "PACS_drill").await;
    assert_eq!(got, expected, "row counts at {at} (step {i})");
}

async fn fault_env() -> (sim::Sim, Env, sim::Conn) {
    let (s, env) = sim_env("full = \"0 0 * * SUN\"").await;
    let c = sim::connect(s.addr).await;
    (s, env, c)
}

/// A simulator and a test policy on it (`setup`) with these schedules, its backup
/// folder `backups` in the simulator's folder.
pub(crate) async fn sim_env(schedule: &str) -> (sim::Sim, Env) {
    let s = sim::start(false).await;
    let backups = s.dir.path().join("backups");
    let env = setup(&sim_ado(s.addr), &backups, schedule).await;
    (s, env)
}

/// Runs a backup under `fault` and checks it failed clearly with `number`, stored
/// nothing and removed nothing offsite.
async fn assert_fault(
    env: &Env,
    c: &mut sim::Conn,
    fault: &str,
    kind: BackupKind,
    number: Option<u32>,
    words: &str,
) {
    let before_snaps = env.repo().snapshots().await.unwrap().len();
    let before_files = repo_files(&env.cfg.repo());
    sim::exec(c, &format!("SIMCTL FAULT {fault}")).await;
    let r = db_backup::run(&env.policy, &env.instance, &env.targets, &opts(kind))
        .await
        .unwrap();
    sim::exec(c, "SIMCTL CLEAR").await;
    let d = &r.results[0];
    assert!(!r.ok && !d.ok, "{fault}: {r:#?}");
    let err = d.error.clone().unwrap().to_string();
    assert!(
        err.contains("server: SIM") && err.contains("database: PACS"),
        "{fault}: {err}"
    );
    assert!(
        err.to_lowercase().contains(&words.to_lowercase()),
        "{fault}: {err}"
    );
    if let Some(n) = number {
        assert_eq!(
            d.error.as_ref().and_then(|e| e.sql_error),
            Some(n),
            "{fault}: {err}"
        );
    }
    assert_eq!(
        env.repo().snapshots().await.unwrap().len(),
        before_snaps,
        "{fault}: a snapshot was stored"
    );
    assert!(
        repo_files(&env.cfg.repo()).is_superset(&before_files),
        "{fault}: something offsite was deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_injected_fault_fails_clearly_and_stores_nothing() {
    let (s, mut env, mut c) = fault_env().await;
    let ok = db_backup::run(
        &env.policy,
        &env.instance,
        &env.targets,
        &opts(BackupKind::Full),
    )
    .await
    .unwrap();
    assert!(ok.ok, "{ok:#?}");
    assert_fault(
        &env,
        &mut c,
        "disk_full AT 50",
        BackupKind::Full,
        Some(3202),
        "not enough space",
    )
    .await;
    let prefix = s.dir.path().join("backups").display().to_string();
    assert_fault(
        &env,
        &mut c,
        &format!("unreachable_path N'{prefix}'"),
        BackupKind::Diff,
        Some(3201),
        "network path",
    )
    .await;
    assert_fault(
        &env,
        &mut c,
        "damage_after_write",
        BackupKind::Full,
        Some(3183),
        "VERIFYONLY",
    )
    .await;
    assert_fault(
        &env,
        &mut c,
        "damage_after_write",
        BackupKind::Log,
        Some(3189),
        "VERIFYONLY",
    )
    .await;
    assert_fault(
        &env,
        &mut c,
        "drop_connection AT 40",
        BackupKind::Full,
        None,
        "connection",
    )
    .await;
    // A backup that stops moving is abandoned by the stall detector.
    env.policy.stall = std::time::Duration::from_secs(2);
    sim::exec(&mut c, "SIMCTL FAULT slow_backup 20000").await;
    let before = env.repo().snapshots().await.unwrap().len();
    sim::exec(&mut c, "SIMCTL FAULT pause_backup AT 30").await;
    let r = db_backup::run(
        &env.policy,
        &env.instance,
        &env.targets,
        &opts(BackupKind::Full),
    )
    .await
    .unwrap();
    sim::exec(&mut c, "SIMCTL RESUME").await;
    sim::exec(&mut c, "SIMCTL CLEAR").await;
    let err = r.results[0]
        .error
        .as_ref()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(!r.ok && err.contains("stalled"), "{r:#?}");
    assert_eq!(env.repo().snapshots().await.unwrap().len(), before);
    // Pre-flight: SIMPLE recovery refuses log backups before any BACKUP runs.
    sim::exec(&mut c, "ALTER DATABASE [PACS] SET RECOVERY SIMPLE").await;
    let r = db_backup::run(
        &env.policy,
        &env.instance,
        &env.targets,
        &opts(BackupKind::Log),
    )
    .await
    .unwrap();
    assert!(
        !r.ok
            && r.results[0]
                .error
                .as_ref()
                .is_some_and(|e| e.message.contains("SIMPLE")),
        "{r:#?}"
    );
    // And a database that does not exist is named.
    let mut o = opts(BackupKind::Full);
    o.database = Some("Nope]".into());
    let r = db_backup::run(&env.policy, &env.instance, &env.targets, &o)
        .await
        .unwrap();
    assert!(
        !r.ok
            && r.results[0]
                .error
                .as_ref()
                .is_some_and(|e| e.message.contains("does not exist"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_diff_without_a_base_takes_a_full_and_says_so() {
    let (_s, env, _c) = fault_env().await;
    let r = db_backup::run(
        &env.policy,
        &env.instance,
        &env.targets,
        &opts(BackupKind::Diff),
    )
    .await
    .unwrap();
    assert!(r.ok, "{r:#?}");
    assert_eq!(r.results[0].kind, BackupKind::Full);
    assert!(r.results[0].notes.iter().any(|n| n.contains("took a full")));
    let m = r.results[0].record.clone().unwrap();
    assert_eq!((m.database.as_str(), m.kind), ("PACS", BackupKind::Full));
    assert!(m.first_lsn.is_some() && m.last_lsn.is_some() && m.checkpoint_lsn.is_some());
    assert!(m.backup_start.is_some() && m.backup_finish.is_some());
    assert!(m.server_version.is_some() && m.size > 0 && m.files.len() == 1);
    assert!(m.has_backup_checksums);
    let snaps = env.repo().snapshots().await.unwrap();
    assert!(snaps[0].snapshot.entries[0].blake3.is_some());
    // The manifest holds exactly that record.
    assert_eq!(
        pacsbak::records::BackupRecord::from_snapshot(&snaps[0].snapshot).unwrap(),
        m
    );
    // Folders: the switched-off workstation is missed, not a failure.
    use pacsbak::jobs::folders::FolderFilter;
    let f = folders(&env, &FolderFilter::default()).await;
    assert!(f.ok, "{f:#?}");
    assert_eq!(
        f.results
            .iter()
            .filter(|r| r.status == Status::Missed)
            .count(),
        1
    );
    // By schedule: the server folder was copied after its last 02:00 firing, so it
    // is not due now; the workstation never got a copy, so it stays due (and missed).
    let status = |f: &pacsbak::jobs::folders::FoldersRun, name: &str| {
        f.results.iter().find(|r| r.name == name).map(|r| r.status)
    };
    // Judged against the copy's own time, not the clock: just before the first 02:00
    // after it, and at that firing.
    let copied = env
        .repo()
        .snapshots()
        .await
        .unwrap()
        .iter()
        .filter(|s| s.snapshot.tags.iter().any(|t| t == "folder:pacs-server"))
        .map(|s| s.snapshot.time)
        .max()
        .unwrap();
    let zone = pacsbak::clock::current().zone_name().to_string();
    let clock = |at| pacsbak::clock::Clock::manual(at, &zone).unwrap();
    let firing = env.policy.folders[0]
        .schedule
        .as_ref()
        .unwrap()
        .next_instant_after(copied, &clock(copied))
        .unwrap();
    let due = |at| FolderFilter {
        due: Some(clock(at)),
        ..Default::default()
    };
    let f = folders(&env, &due(firing - time::Duration::minutes(1))).await;
    assert_eq!(status(&f, "pacs-server"), Some(Status::NotDue), "{f:#?}");
    let server = f.results.iter().find(|r| r.name == "pacs-server").unwrap();
    assert!(
        server
            .next_due
            .as_deref()
            .is_some_and(|t| t.ends_with(" 02:00")),
        "{server:#?}"
    );
    assert!(server.last_good_age_hours.is_some());
    assert_eq!(status(&f, "reg-1"), Some(Status::Missed));
    // Once that 02:00 firing has come, due again.
    let f = folders(&env, &due(firing)).await;
    assert_eq!(status(&f, "pacs-server"), Some(Status::Ok), "{f:#?}");
    // By name: only the folder asked for.
    let only = FolderFilter {
        names: vec!["reg-1".into()],
        ..Default::default()
    };
    let f = folders(&env, &only).await;
    assert_eq!(f.results.len(), 1);
    // Check: findings with severities and actions.
    let ck = pacsbak::jobs::check::run(&env.policy, &env.instance, Some(env.repo()))
        .await
        .unwrap();
    assert!(ck.findings.iter().any(|f| f.area == "rpo"), "{ck:#?}");
    assert!(ck.findings.iter().all(|f| !f.action.is_empty()));
}

#[test]
fn sandbox_runs_in_a_fresh_folder_and_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sb");
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pacsbak"))
            .args(["sandbox", "--dir"])
            .arg(&dir)
            .env_remove("PACSBAK_PASSWORD")
            .env_remove("PACSBAK_CONFIG")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let first = run();
    assert!(
        first.contains("(new)") && first.contains("verdict: OK"),
        "{first}"
    );
    assert!(first.contains("MISSED"));
    // The DR drill into the second simulator passed, and its report is there.
    assert!(first.contains("drill sandbox-drill: PASS"), "{first}");
    assert!(first.contains("check PASS \"DBCC CHECKDB\""), "{first}");
    let report = first
        .lines()
        .find_map(|l| l.trim().strip_prefix("drill report"))
        .map(|f| std::path::PathBuf::from(f.trim()))
        .unwrap();
    assert!(std::fs::read_to_string(report).unwrap().contains("PASS"));
    let second = run();
    assert!(second.contains("continued"), "{second}");
    assert!(second.contains("drill sandbox-drill: PASS"), "{second}");
    // The folder is a config folder for every other command.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pacsbak"))
        .arg("--config")
        .arg(&dir)
        .args(["--json", "restore", "db", "plan", "--database", "PACS"])
        .env_remove("PACSBAK_PASSWORD")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], serde_json::json!(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mssql_backup_verify_and_plan_from_the_repository() {
    let Ok(ado) = std::env::var("PACSBAK_TEST_MSSQL") else {
        println!("skipped: mssql_backup_verify_and_plan_from_the_repository: PACSBAK_TEST_MSSQL is not set (an ADO connection string; PACSBAK_TEST_MSSQL_FOLDER a folder both the server and this host see)");
        return;
    };
    let folder = std::env::var("PACSBAK_TEST_MSSQL_FOLDER")
        .unwrap_or_else(|_| "/var/opt/mssql/backup".into());
    let env = setup(&ado, Path::new(&folder), "full = \"0 0 * * SUN\"").await;
    for kind in [BackupKind::Full, BackupKind::Diff, BackupKind::Log] {
        let r = db_backup::run(&env.policy, &env.instance, &env.targets, &opts(kind))
            .await
            .unwrap();
        assert!(r.ok, "{kind}: {r:#?}");
    }
    let plan = restore_db::plan_from_repository(env.repo(), "PACS", None)
        .await
        .unwrap();
    assert!(plan.ok && plan.steps.len() >= 2, "{plan:#?}");
}

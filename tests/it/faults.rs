//! Faults from outside the test suite (issue 14): each test reproduces one as the
//! reliability engineer found it and shows what pacsbak says and does now.

use pacsbak::jobs::db_backup::{self, DbBackupOptions};
use pacsbak::records::BackupKind;

use crate::common::{files_under, TestConfig};
use crate::json_outcomes::{has_faketime, pacsbak as pacsbak_json, pacsbak_with_clock};
use crate::simulator_support as sim;
use crate::sqlserver_jobs::{setup, sim_ado, sim_env};

fn full() -> DbBackupOptions {
    DbBackupOptions {
        kind: Some(BackupKind::Full),
        ..DbBackupOptions::default()
    }
}

/// Fault 8: the stall detector's KILL is refused. The report says so, with the error
/// number and the session that still runs, instead of "it was killed"; when KILL is
/// allowed the session is really gone afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_kill_is_reported_as_it_is() {
    let (s, mut env) = sim_env("full = \"0 0 * * SUN\"").await;
    env.policy.stall = std::time::Duration::from_secs(2);
    let mut c = sim::connect(s.addr).await;
    let backup_requests =
        "SELECT COUNT(*) FROM sys.dm_exec_requests WHERE command = 'BACKUP DATABASE'";

    sim::exec(&mut c, "SIMCTL FAULT slow_backup 20000").await;
    sim::exec(&mut c, "SIMCTL FAULT pause_backup AT 30").await;
    sim::exec(&mut c, "SIMCTL FAULT kill_denied").await;
    let r = db_backup::run(&env.policy, &env.instance, &env.targets, &full())
        .await
        .unwrap();
    let e = r.results[0].error.clone().expect("a stalled backup fails");
    assert!(!r.ok, "{r:#?}");
    assert!(
        e.message.contains("KILL")
            && e.message.contains("failed")
            && !e.message.contains("it was killed"),
        "{e}"
    );
    assert_eq!(e.sql_error, Some(6102), "{e}");
    // The BACKUP is still there, as the report says; the engineer's own KILL ends it.
    let rows = sim::rows(&mut c, &backup_requests.replace("COUNT(*)", "session_id")).await;
    assert_eq!(rows.len(), 1);
    let session = pacsbak::sqlserver::conn::int(&rows[0], 0usize).unwrap();
    sim::exec(&mut c, "SIMCTL FAULT kill_denied OFF").await;
    sim::exec(&mut c, &format!("KILL {session}")).await;
    wait_until_no_backup_runs(&mut c, backup_requests).await;

    // The same stall with KILL allowed: killed, and gone.
    let r = db_backup::run(&env.policy, &env.instance, &env.targets, &full())
        .await
        .unwrap();
    let e = r.results[0].error.clone().expect("a stalled backup fails");
    assert!(e.message.contains("it was killed"), "{e}");
    wait_until_no_backup_runs(&mut c, backup_requests).await;
    sim::exec(&mut c, "SIMCTL CLEAR").await;
}

/// Waits (up to 5 s) for sys.dm_exec_requests to show no BACKUP: a killed session
/// leaves it as its connection closes, a moment after KILL returns.
async fn wait_until_no_backup_runs(c: &mut sim::Conn, count_sql: &str) {
    for _ in 0..100 {
        let rows = sim::rows(c, count_sql).await;
        if pacsbak::sqlserver::conn::int(&rows[0], 0usize) == Some(0) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("a killed BACKUP still runs");
}

fn write_tree(dir: &std::path::Path, files: &[(&str, &[u8])]) {
    for (name, data) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

fn entries_of(dir: &std::path::Path) -> Vec<String> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Fault 7: the NAS is not mounted (its mount point an empty local folder, or gone).
/// pacsbak says the target is missing and writes nothing there; it never sends the
/// engineer to `repo init`. A damaged key slot is said to be damaged.
#[test]
fn an_unmounted_share_is_missing_and_nothing_is_written_there() {
    let t = TestConfig::new();
    let src = t.path("src");
    write_tree(&src, &[("a.dcm", b"image")]);
    let src = src.to_str().unwrap();
    t.ok(&["repo", "init"]);
    t.ok(&["backup", "files", src]);

    // Unmounted: the mount point is an empty folder.
    std::fs::remove_dir_all(t.repo()).unwrap();
    std::fs::create_dir(t.repo()).unwrap();
    let (code, out, err) = t.run(&["backup", "files", src]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("missing") && err.contains("held repository"),
        "{err}"
    );
    assert!(!err.contains("creates the repository"), "{err}");
    let (code, out, err) = t.run(&["target", "check", "local"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("NOT usable") && out.contains("mounted"),
        "{out}"
    );
    assert_eq!(
        entries_of(&t.repo()),
        Vec::<String>::new(),
        "nothing written"
    );

    // The mount point itself gone: missing, and not created.
    std::fs::remove_dir(t.repo()).unwrap();
    let (code, _, err) = t.run(&["backup", "files", src]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("does not exist") && err.contains("mounted"),
        "{err}"
    );
    let (code, _, err) = t.run(&["target", "check", "local"]);
    assert_eq!(code, 2, "{err}");
    assert!(!t.repo().exists(), "the missing folder was created");

    // A damaged key slot is damage, not an empty target.
    let t = TestConfig::new();
    t.ok(&["repo", "init"]);
    for k in entries_of(&t.repo().join("keys")) {
        std::fs::write(t.repo().join("keys").join(k), b"{ not json").unwrap();
    }
    let (code, _, err) = t.run(&["backup", "files", src]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("key slots are damaged") && err.contains("do not run `repo init`"),
        "{err}"
    );
}

/// Fault 2: a configured folder that is a link is followed (its files are backed up
/// and the link recorded); a folder with no files is a failure, not an empty success.
#[test]
fn a_linked_folder_is_followed_and_an_empty_one_fails() {
    let t = TestConfig::new();
    t.ok(&["repo", "init"]);
    let real = t.path("pacs-server");
    write_tree(
        &real,
        &[("bin/pacs.exe", b"MZ..."), ("pacs.ini", b"port=104\n")],
    );
    let link = t.path("pacs-server-link");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let out = t.ok(&["--json", "backup", "files", link.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["summary"]["files"], 2, "{v}");
    let snaps: serde_json::Value = serde_json::from_str(&t.ok(&["--json", "snapshots"])).unwrap();
    assert_eq!(snaps["snapshots"][0]["files"], 2, "{snaps}");
    let restored = t.path("restored");
    t.ok(&[
        "restore",
        "files",
        "latest",
        "--to",
        restored.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(restored.join("pacs-server-link/pacs.ini")).unwrap(),
        b"port=104\n"
    );

    // An empty folder (an unmounted drive, a wrong path) stores nothing and says so.
    let empty = t.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, _, err) = t.run(&["backup", "files", empty.to_str().unwrap()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no files under"), "{err}");
    let snaps: serde_json::Value = serde_json::from_str(&t.ok(&["--json", "snapshots"])).unwrap();
    assert_eq!(snaps["snapshots"].as_array().unwrap().len(), 1, "{snaps}");
}

/// Fault 3: one flipped byte in one manifest. It is listed as damaged (exit 1), and
/// every other snapshot still lists, restores and backs up.
#[test]
fn a_damaged_manifest_is_reported_and_skipped() {
    let t = TestConfig::new();
    t.ok(&["repo", "init"]);
    let src = t.path("src");
    write_tree(&src, &[("a.txt", b"first")]);
    t.ok(&["backup", "files", src.to_str().unwrap()]);
    let first = entries_of(&t.repo().join("snapshots"));
    write_tree(&src, &[("a.txt", b"second")]);
    t.ok(&["backup", "files", src.to_str().unwrap()]);
    // Flip one byte in the second manifest.
    let second = entries_of(&t.repo().join("snapshots"))
        .into_iter()
        .find(|n| !first.contains(n))
        .unwrap();
    let path = t.repo().join("snapshots").join(&second);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();

    let (code, out, err) = t.run(&["snapshots"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(
        out.contains("DAMAGED MANIFEST") && out.contains(&second[..8]),
        "{out}"
    );
    let (code, out, _) = t.run(&["--json", "snapshots"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["damaged"][0]["error"]["kind"], "integrity", "{v}");
    assert_eq!(v["snapshots"].as_array().unwrap().len(), 1, "{v}");
    // latest is the newest readable one; backups go on.
    let restored = t.path("restored");
    t.ok(&[
        "restore",
        "files",
        "latest",
        "--to",
        restored.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(restored.join("src/a.txt")).unwrap(), b"first");
    t.ok(&["backup", "files", src.to_str().unwrap()]);
    let (code, out, _) = t.run(&["verify"]);
    assert_eq!(code, 1, "verify names the damaged manifest: {out}");
}

/// Fault 9: careless or hostile values are refused at load, naming the file, line and
/// key (not the value), and a folder that is a link to the root of the disk is refused
/// when the job runs.
#[test]
fn careless_values_are_refused_with_the_key_named() {
    let dir = tempfile::tempdir().unwrap();
    let base = |backup: &str, rest: &str| {
        format!(
            "[instance]\nname = \"X\"\nembedded_simulator = \"sim\"\nencryption = \"off\"\n\
             [schedule]\nfull = \"0 1 * * 0\"\n[backup]\n{backup}\n{rest}"
        )
    };
    let cases = [
        (
            base("server_folder = 'E:\\B'", "[databases]\ninclude = []\n"),
            "databases.include",
        ),
        (
            base("server_folder = 'E:\\B'\nstall_minutes = 0", ""),
            "backup.stall_minutes",
        ),
        (
            base(
                "server_folder = 'E:\\B'",
                "[rpo]\ndefault_minutes = 9223372036854775807\n",
            ),
            "rpo.default_minutes",
        ),
        (
            base("server_folder = 'E:\\B'", "[rpo.databases]\nPACS = 0\n"),
            "rpo.databases.PACS",
        ),
        (base("server_folder = 'C:\\'", ""), "backup.server_folder"),
        (base("server_folder = '/'", ""), "backup.server_folder"),
        (
            base(
                "server_folder = 'E:\\B'",
                "[[folders]]\nname = \"all\"\npath = \"/\"\n",
            ),
            "folders[0].path",
        ),
        (
            base("server_folder = 'E:\\B'\nstripes = 99999999999", ""),
            "backup.stripes",
        ),
    ];
    for (text, key) in cases {
        let file = dir.path().join("p.toml");
        std::fs::write(&file, &text).unwrap();
        let e = pacsbak::policy::Policy::load(&file, dir.path()).unwrap_err();
        assert_eq!(e.context("key"), Some(key), "{e}\n{text}");
        assert!(e.to_string().contains(&format!("key `{key}`")), "{e}");
        assert!(e.context("line").is_some(), "{e}");
    }
    // A target whose root is the root of the disk.
    let t = TestConfig::new();
    std::fs::write(
        t.config().join("storage-targets/local.toml"),
        "service = \"fs\"\nroot = \"/\"\n",
    )
    .unwrap();
    let (code, _, err) = t.run(&["snapshots"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("key `root`") || err.contains("root of a drive"),
        "{err}"
    );
}

/// Fault 9, at run time: a server_folder that is a link to `/` is refused before SQL
/// Server is asked to write anything, naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_folder_linked_to_the_root_is_refused() {
    let s = sim::start(false).await;
    let backups = s.dir.path().join("backups-link");
    #[cfg(unix)]
    std::os::unix::fs::symlink("/", &backups).unwrap();
    let env = setup(&sim_ado(s.addr), &backups, "full = \"0 0 * * SUN\"").await;
    let r = db_backup::run(&env.policy, &env.instance, &env.targets, &full())
        .await
        .unwrap();
    let e = r.results[0].error.clone().expect("refused");
    assert!(e.message.contains("root of a drive"), "{e}");
    assert!(
        e.context
            .iter()
            .any(|(k, v)| k == "key" && v == "backup.server_folder"),
        "{e}"
    );
    assert!(
        !std::fs::read_dir("/").unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("PACS_")),
        "a backup file was written into /"
    );
}

/// Faults 12 and 10: the first target unreachable (its share not mounted) no longer
/// stops the backup: it goes to the second, the run fails naming the first, and
/// nothing appears in the empty mount point. Two backups of one database at once
/// choose different file names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_unreachable_target_does_not_stop_the_others() {
    let (_sim, env) = sim_env("full = \"0 0 * * SUN\"").await;
    let cfg = env.cfg.config();
    add_second_target(&cfg);
    let (code, j, err) = pacsbak_json(&cfg, &["repo", "init", "--target", "second"]).await;
    assert_eq!(code, 0, "{j}\n{err}");

    // Two at once: both succeed, with different files.
    let (a, b) = tokio::join!(
        pacsbak_json(&cfg, &["backup", "db", "--policy", "t", "--type", "full"]),
        pacsbak_json(&cfg, &["backup", "db", "--policy", "t", "--type", "full"]),
    );
    assert_eq!((a.0, b.0), (0, 0), "{}\n{}\n{}\n{}", a.1, a.2, b.1, b.2);
    let (fa, fb) = (&a.1["results"][0]["files"], &b.1["results"][0]["files"]);
    assert_ne!(fa, fb, "two runs chose the same backup file");

    // The first target's share unmounted: its mount point is gone.
    let local = env.cfg.repo();
    std::fs::rename(&local, env.cfg.path("repo-away")).unwrap();
    let (code, j, err) =
        pacsbak_json(&cfg, &["backup", "db", "--policy", "t", "--type", "full"]).await;
    assert_eq!(code, 1, "{j}\n{err}");
    let offsite = j["results"][0]["offsite"].as_array().unwrap();
    let by = |name: &str| offsite.iter().find(|o| o["target"] == name).unwrap();
    assert_eq!(by("second")["verified"], true, "{j}");
    assert_eq!(by("local")["verified"], false, "{j}");
    assert!(
        by("local")["error"]["message"]
            .as_str()
            .unwrap()
            .contains("missing"),
        "{j}"
    );
    assert!(
        !local.exists(),
        "the unmounted share's mount point was filled"
    );
}

/// Fault 13: routine confusions. `latest` in `diff OLD latest` is the newest of OLD's
/// own source, and `--kind`/`--tag` narrow what `latest` and `snapshots` mean; `copy`
/// to a target the policy also backs up to recognises the same backups; a restore onto
/// an existing database is refused before anything is fetched; staging is cleaned;
/// `backup manual` takes the workstations' folders too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_copy_restore_and_manual_do_what_an_engineer_means() {
    let (s, env) = sim_env("full = \"0 0 * * SUN\"").await;
    let backups = env.policy.local_folder.clone();
    let cfg = env.cfg.config();
    let run = |args: &'static [&'static str]| pacsbak_json(&cfg, args);

    let (code, j, err) = run(&["backup", "folders", "--policy", "t"]).await;
    assert_eq!(code, 0, "{j}\n{err}");
    let (code, j, err) = run(&["backup", "db", "--policy", "t", "--type", "full"]).await;
    assert_eq!(code, 0, "{j}\n{err}");
    std::fs::write(env.cfg.path("programs/server/pacs.ini"), "x=2\n").unwrap();
    let (code, j, err) = run(&["backup", "folders", "--policy", "t"]).await;
    assert_eq!(code, 0, "{j}\n{err}");
    let (code, j, err) = run(&["backup", "db", "--policy", "t", "--type", "log"]).await;
    assert_eq!(code, 0, "{j}\n{err}");

    // snapshots --kind/--tag.
    let (_, all, _) = run(&["snapshots"]).await;
    let (_, fulls, _) = run(&["snapshots", "--kind", "sql-backup", "--tag", "type:full"]).await;
    let fulls = fulls["snapshots"].as_array().unwrap().clone();
    assert_eq!(fulls.len(), 1, "{fulls:?}");
    let folders: Vec<serde_json::Value> = all["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            s["tags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t == "folder:pacs-server")
        })
        .cloned()
        .collect();
    assert_eq!(folders.len(), 2);
    // diff OLD latest: the newest of the same folder, not the log backup taken last.
    let old = folders[0]["id"].as_str().unwrap().to_string();
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_pacsbak"));
    let out = c
        .arg("--config")
        .arg(&cfg)
        .args(["--json", "diff", &old, "latest"])
        .output()
        .await
        .unwrap();
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(d["new"], folders[1]["id"], "{d}");
    assert_eq!(d["changed"], 1, "{d}");

    // A restore onto the existing database without --replace: refused first.
    let drill = s.dir.path().join("drill");
    std::fs::create_dir_all(&drill).unwrap();
    let drill_s = drill.to_str().unwrap().to_string();
    let restore = |as_name: &str| {
        vec![
            "restore".to_string(),
            "db".into(),
            "run".into(),
            "--policy".into(),
            "t".into(),
            "--database".into(),
            "PACS".into(),
            "--as".into(),
            as_name.into(),
            "--move-data".into(),
            drill_s.clone(),
            "--move-log".into(),
            drill_s.clone(),
        ]
    };
    let args = restore("PACS");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, j, err) = pacsbak_json(&cfg, &args).await;
    assert_eq!(code, 2, "{j}\n{err}");
    assert_eq!(j["error"]["kind"], "refused", "{j}");
    assert!(
        j["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was fetched"),
        "{j}"
    );
    let staging = backups.join("restore-staging");
    assert_eq!(
        entries_of(&staging),
        Vec::<String>::new(),
        "files were staged"
    );
    // A restore under a new name works and leaves no staged copies behind.
    let args = restore("PACS_r");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, j, err) = pacsbak_json(&cfg, &args).await;
    assert_eq!(code, 0, "{j}\n{err}");
    assert_eq!(j["staging_removed"], true, "{j}");
    assert_eq!(
        entries_of(&staging),
        Vec::<String>::new(),
        "staging left behind"
    );

    // backup manual: the workstation folder too (switched off here: missed).
    let (code, j, err) = run(&["backup", "manual", "--policy", "t", "--reason", "upgrade"]).await;
    assert_eq!(code, 0, "{j}\n{err}");
    let names: Vec<(&str, &str)> = j["folders"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(names, [("pacs-server", "ok"), ("reg-1", "missed")], "{j}");

    // A second target the policy also backs up to: copy recognises the twins.
    add_second_target(&cfg);
    let (code, j, err) = run(&["repo", "init", "--target", "second"]).await;
    assert_eq!(code, 0, "{j}\n{err}");
    let (code, j, err) = run(&["backup", "db", "--policy", "t", "--type", "full"]).await;
    assert_eq!(code, 0, "{j}\n{err}");
    let (code, j, err) = run(&["backup", "folders", "--policy", "t"]).await;
    assert_eq!(code, 0, "{j}\n{err}");
    let (_, before, _) = run(&["snapshots", "--target", "local"]).await;
    let (code, j, err) = run(&["copy", "--from", "local", "--to", "second"]).await;
    assert_eq!(code, 0, "{j}\n{err}");
    let (_, after, _) = run(&["snapshots", "--target", "second"]).await;
    assert_eq!(
        after["snapshots"].as_array().unwrap().len(),
        before["snapshots"].as_array().unwrap().len(),
        "every backup once on the second target, twins recognised: {j}"
    );
    let (code, j, err) = run(&[
        "restore",
        "db",
        "plan",
        "--database",
        "PACS",
        "--target",
        "second",
    ])
    .await;
    assert_eq!(code, 0, "{j}\n{err}");
    // No backup twice: every file name appears once among the plan's steps and skips.
    let mut names: Vec<String> = j["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap().to_string())
        .chain(j["steps"].as_array().unwrap().iter().flat_map(|s| {
            s["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap().to_string())
        }))
        .map(|src| src.split_once(':').unwrap().1.to_string())
        .collect();
    let all = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), all, "a backup listed twice: {j}");
}

fn flip_byte(path: &std::path::Path) {
    let mut b = std::fs::read(path).unwrap();
    let i = b.len() / 3;
    b[i] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

/// Fault 4: a pack verify found damaged is no dedup target: backing up the same file
/// again stores its data anew, and that snapshot restores byte-identical.
#[test]
fn a_damaged_pack_heals_with_the_next_backup() {
    let t = TestConfig::new();
    t.ok(&["repo", "init"]);
    let src = t.path("db");
    std::fs::create_dir_all(&src).unwrap();
    let data = crate::common::pseudo_random(3 * 1024 * 1024, 7);
    std::fs::write(src.join("PACS_full.bak"), &data).unwrap();
    let src_s = src.to_str().unwrap();
    t.ok(&["backup", "files", src_s]);
    for pack in files_under(&t.repo().join("data")) {
        flip_byte(&pack);
    }
    let (code, out, _) = t.run(&["verify", "--read-data"]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&t.ok(&["--json", "backup", "files", src_s])).unwrap();
    assert!(
        v["summary"]["new_chunks"].as_u64().unwrap() > 0,
        "stored nothing new: {v}"
    );
    let restored = t.path("restored");
    t.ok(&[
        "restore",
        "files",
        "latest",
        "--to",
        restored.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(restored.join("db/PACS_full.bak")).unwrap(),
        data
    );
}

/// Fault 4, restore plans: a full whose pack verify found damaged (repository) or
/// that `inspect --check` calls DAMAGED (`--from-folder`) is skipped with the reason,
/// and the plan falls back to the older full.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_plans_skip_backups_known_to_be_damaged() {
    let (s, env) = sim_env("full = \"0 0 * * SUN\"").await;
    let backups = env.policy.local_folder.clone();
    let cfg = env.cfg.config();
    let mut c = sim::connect(s.addr).await;
    let (code, first, err) =
        pacsbak_json(&cfg, &["backup", "db", "--policy", "t", "--type", "full"]).await;
    assert_eq!(code, 0, "{first}\n{err}");
    let first_file = first["results"][0]["files"][0]
        .as_str()
        .unwrap()
        .to_string();
    sim::exec(&mut c, "SIMCTL ADVANCE HOURS = 2, IMAGES = 50").await;
    let packs_before = files_under(&env.cfg.repo().join("data"));
    let (code, j, err) =
        pacsbak_json(&cfg, &["backup", "db", "--policy", "t", "--type", "full"]).await;
    assert_eq!(code, 0, "{j}\n{err}");
    let second_file = j["results"][0]["files"][0].as_str().unwrap().to_string();
    for p in files_under(&env.cfg.repo().join("data")) {
        if !packs_before.contains(&p) {
            flip_byte(&p);
        }
    }
    let (code, j, err) = pacsbak_json(&cfg, &["verify", "--read-data"]).await;
    assert_eq!(code, 1, "{j}\n{err}");
    let (code, plan, err) =
        pacsbak_json(&cfg, &["restore", "db", "plan", "--database", "PACS"]).await;
    assert_eq!(code, 0, "{plan}\n{err}");
    assert!(
        plan.to_string().contains("found damaged by verify"),
        "{plan}"
    );
    let first_name = std::path::Path::new(&first_file)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    assert!(
        plan["steps"][0]["files"][0]
            .as_str()
            .unwrap()
            .ends_with(&first_name),
        "{plan}"
    );

    // The same from the folder: the newer full damaged on disk.
    flip_byte(std::path::Path::new(&second_file));
    let folder = backups.to_str().unwrap();
    let (code, plan, err) = pacsbak_json(
        &cfg,
        &[
            "restore",
            "db",
            "plan",
            "--from-folder",
            folder,
            "--database",
            "PACS",
        ],
    )
    .await;
    assert_eq!(code, 0, "{plan}\n{err}");
    assert!(plan.to_string().contains("DAMAGED"), "{plan}");
    assert_eq!(plan["steps"][0]["files"][0], first_file.as_str(), "{plan}");
}

/// Fault 5: a file that keeps changing while it is read (a .bak still being written)
/// is never stored as if the part read were the whole: the backup fails naming it.
/// Once it stops changing it is stored and restores byte-identical.
#[cfg(unix)]
#[test]
fn a_file_that_changes_while_read_is_not_stored() {
    let t = TestConfig::new();
    t.ok(&["repo", "init"]);
    let src = t.path("db");
    std::fs::create_dir_all(&src).unwrap();
    let file = src.join("PACS_full.bak");
    std::fs::write(&file, crate::common::pseudo_random(32 * 1024 * 1024, 3)).unwrap();
    // A writer that keeps rewriting the file's first block in place: its size stays,
    // its modification time moves, as with a .bak SQL Server is still writing.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, file) = (stop.clone(), file.clone());
        std::thread::spawn(move || {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
            let mut n: u8 = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n = n.wrapping_add(1);
                f.write_all_at(&[n; 512], 0).unwrap();
            }
        })
    };
    let (code, out, err) = t.run(&["backup", "files", src.to_str().unwrap()]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
    assert_ne!(code, 0, "{out}\n{err}");
    assert!(
        format!("{out}{err}").contains("changed while it was read"),
        "{out}\n{err}"
    );
    let snaps: serde_json::Value = serde_json::from_str(&t.ok(&["--json", "snapshots"])).unwrap();
    assert_eq!(snaps["snapshots"].as_array().unwrap().len(), 0, "{snaps}");

    t.ok(&["backup", "files", src.to_str().unwrap()]);
    let restored = t.path("restored");
    t.ok(&[
        "restore",
        "files",
        "latest",
        "--to",
        restored.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read(restored.join("db/PACS_full.bak")).unwrap(),
        std::fs::read(&file).unwrap()
    );
}

/// Fault 11: a log backup taken outside pacsbak (by hand, another tool) between two
/// runs is found at the next run: stored when its file can be read, so the chain in
/// the repository stays whole; reported as a broken chain, loudly, when it cannot,
/// until the next full. `check` judges the RPO by what the repository can restore.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_outside_pacsbak_is_stored_or_breaks_the_chain_loudly() {
    let (s, env) = sim_env("full = \"0 0 * * SUN\"\nlog = \"*/15 * * * *\"").await;
    let backups = env.policy.local_folder.clone();
    let cfg = env.cfg.config();
    let mut c = sim::connect(s.addr).await;
    let (code, j, err) =
        pacsbak_json(&cfg, &["backup", "db", "--policy", "t", "--type", "full"]).await;
    assert_eq!(code, 0, "{j}\n{err}");

    // By hand, into the backup folder: found and stored.
    sim::exec(&mut c, "SIMCTL ADVANCE MINUTES = 10, IMAGES = 5").await;
    let by_hand = backups.join("by-hand.trn");
    sim::exec(
        &mut c,
        &format!(
            "BACKUP LOG [PACS] TO DISK = N'{}' WITH CHECKSUM",
            by_hand.display()
        ),
    )
    .await;
    sim::exec(&mut c, "SIMCTL ADVANCE MINUTES = 10, IMAGES = 5").await;
    let (code, j, err) =
        pacsbak_json(&cfg, &["backup", "db", "--policy", "t", "--type", "log"]).await;
    assert_eq!(code, 0, "{j}\n{err}");
    assert!(j.to_string().contains("did not take"), "{j}");
    let (code, plan, err) =
        pacsbak_json(&cfg, &["restore", "db", "plan", "--database", "PACS"]).await;
    assert_eq!(code, 0, "{plan}\n{err}");
    assert_eq!(plan["ok"], true, "{plan}");
    assert!(plan.to_string().contains("by-hand.trn"), "{plan}");

    // Elsewhere, and the file gone: the chain is broken, said at every run.
    let elsewhere = s.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let lost = elsewhere.join("lost.trn");
    sim::exec(
        &mut c,
        &format!(
            "BACKUP LOG [PACS] TO DISK = N'{}' WITH CHECKSUM",
            lost.display()
        ),
    )
    .await;
    std::fs::remove_file(&lost).unwrap();
    sim::exec(&mut c, "SIMCTL ADVANCE MINUTES = 10, IMAGES = 5").await;
    for _ in 0..2 {
        let (code, j, err) =
            pacsbak_json(&cfg, &["backup", "db", "--policy", "t", "--type", "log"]).await;
        assert_eq!(code, 1, "{j}\n{err}");
        let e = &j["results"][0]["error"];
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("restore chain broken"),
            "{j}"
        );
        assert!(e["message"].as_str().unwrap().contains("lost.trn"), "{j}");
    }
    let (code, ck, err) = pacsbak_json(&cfg, &["check", "--policy", "t"]).await;
    assert_eq!(code, 2, "{ck}\n{err}");
    let rpo = ck["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["area"] == "rpo")
        .unwrap();
    assert_eq!(rpo["severity"], "critical", "{ck}");
    assert!(
        rpo["finding"].as_str().unwrap().contains("repository"),
        "{ck}"
    );
    // A new full heals it.
    let (code, j, err) =
        pacsbak_json(&cfg, &["backup", "db", "--policy", "t", "--type", "full"]).await;
    assert_eq!(code, 0, "{j}\n{err}");
    sim::exec(&mut c, "SIMCTL ADVANCE MINUTES = 10, IMAGES = 5").await;
    let (code, j, err) =
        pacsbak_json(&cfg, &["backup", "db", "--policy", "t", "--type", "log"]).await;
    assert_eq!(code, 0, "{j}\n{err}");
}

/// Fault 1: a run under a clock a year fast. The backup fails saying so (the target's
/// clock disagrees); its snapshot never becomes `latest`, folders stay due by the good
/// copies, `snapshots` and `check` name it; and a process with a clock two days fast
/// does not take a running writer's temporary file for a leftover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_a_year_fast_is_found_and_never_makes_latest() {
    if !has_faketime() {
        println!("skipped: a_clock_a_year_fast_is_found_and_never_makes_latest: faketime (Debian faketime) is not installed");
        return;
    }
    let (_sim, env) = sim_env("full = \"0 0 * * SUN\"").await;
    let cfg = env.cfg.config();
    let (code, j, err) = pacsbak_json(&cfg, &["backup", "folders", "--policy", "t"]).await;
    assert_eq!(code, 0, "{j}\n{err}");

    std::fs::write(env.cfg.path("programs/server/pacs.ini"), "x=9\n").unwrap();
    let (code, j, _) =
        pacsbak_with_clock(&cfg, Some("+365d"), &["backup", "folders", "--policy", "t"]).await;
    assert_eq!(code, 1, "{j}");
    let e = &j["results"][0]["error"];
    assert_eq!(e["kind"], "clock", "{j}");
    assert!(e["message"].as_str().unwrap().contains("ahead"), "{j}");

    // latest is the good copy; the folder is judged by it.
    let restored = env.cfg.path("restored");
    let (code, j, err) = pacsbak_json(
        &cfg,
        &[
            "restore",
            "files",
            "latest",
            "--tag",
            "folder:pacs-server",
            "--to",
            restored.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(code, 0, "{j}\n{err}");
    let ini = files_under(&restored)
        .into_iter()
        .find(|p| p.ends_with("pacs.ini"))
        .unwrap();
    assert_eq!(std::fs::read(ini).unwrap(), b"x=1\n");
    let (_, j, _) = pacsbak_json(&cfg, &["backup", "folders", "--policy", "t", "--due"]).await;
    let server = j["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pacs-server")
        .unwrap();
    assert!(
        server["last_good_age_hours"].as_f64().unwrap_or(0.0) >= 0.0,
        "{j}"
    );
    let (code, j, _) = pacsbak_json(&cfg, &["snapshots"]).await;
    assert_eq!(code, 1, "{j}");
    let future: Vec<&serde_json::Value> = j["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["future_dated"] == true)
        .collect();
    assert_eq!(future.len(), 1, "{j}");
    let id = &future[0]["id"].as_str().unwrap()[..8];
    let (code, ck, _) = pacsbak_json(&cfg, &["check", "--policy", "t"]).await;
    assert_eq!(code, 2, "{ck}");
    assert!(
        ck["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["area"] == "clock" && f["finding"].as_str().unwrap().contains(id)),
        "{ck}"
    );

    // status names it too.
    let (code, st, _) = pacsbak_json(&cfg, &["status"]).await;
    assert_eq!(code, 1, "{st}");
    assert!(
        st["policies"][0]["problems"].to_string().contains(id),
        "{st}"
    );

    // A writer's fresh temporary survives a process whose clock is two days fast.
    let tmp = env.cfg.repo().join(".tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let running = tmp.join("data_ab_pack.00112233aabbccdd");
    std::fs::write(&running, b"being written").unwrap();
    pacsbak_with_clock(&cfg, Some("+2d"), &["snapshots"]).await;
    assert!(running.exists(), "a running writer's temporary was removed");
}

/// A second local target `second` (`../second`), added to the test policy's targets.
pub(crate) fn add_second_target(cfg: &std::path::Path) {
    std::fs::write(
        cfg.join("storage-targets/second.toml"),
        "service = \"fs\"\nroot = \"../second\"\n",
    )
    .unwrap();
    let policy = cfg.join("policies/t.toml");
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(
        &policy,
        text.replace("targets = [\"local\"]", "targets = [\"local\", \"second\"]"),
    )
    .unwrap();
}

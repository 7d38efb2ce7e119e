//! Every job's `--json` is its typed outcome, failures included: a script or the
//! journal reads the error's kind and, when SQL Server failed it, the error number,
//! without parsing text (issue 12).

use std::path::Path;

use serde_json::Value;

use crate::simulator_support as sim;
use crate::sqlserver_jobs::sim_env;

/// `pacsbak --config CFG --json ARGS` off the async runtime (the simulator runs on
/// it); (exit code, stdout as JSON, stderr).
pub(crate) async fn pacsbak(cfg: &Path, args: &[&str]) -> (i32, Value, String) {
    pacsbak_with_clock(cfg, None, args).await
}

/// Whether `faketime` (Debian faketime, which the test command installs) is here.
pub(crate) fn has_faketime() -> bool {
    std::process::Command::new("faketime")
        .arg("--version")
        .output()
        .is_ok()
}

/// Like [`pacsbak`], under `faketime -f OFFSET` (`+365d`): a process whose clock
/// is wrong.
pub(crate) async fn pacsbak_with_clock(
    cfg: &Path,
    offset: Option<&str>,
    args: &[&str],
) -> (i32, Value, String) {
    let mut c = match offset {
        Some(o) => {
            let mut c = tokio::process::Command::new("faketime");
            c.args(["-f", o, env!("CARGO_BIN_EXE_pacsbak")]);
            c
        }
        None => tokio::process::Command::new(env!("CARGO_BIN_EXE_pacsbak")),
    };
    c.arg("--config").arg(cfg).arg("--json").args(args);
    c.env_remove("PACSBAK_PASSWORD")
        .env_remove("PACSBAK_CONFIG");
    let out = c.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("pacsbak {args:?}: stdout is not JSON ({e}):\n{stdout}\n{stderr}")
    });
    (out.status.code().unwrap_or(-1), json, stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_jobs_failure_is_json_with_its_kind_and_sql_server_error_number() {
    let (s, env) = sim_env("full = \"0 0 * * SUN\"").await;
    let backups = env.policy.local_folder.clone();
    let cfg = env.cfg.config();
    let mut c = sim::connect(s.addr).await;

    // backup db: the backup folder unreachable, SQL Server error 3201.
    sim::exec(
        &mut c,
        &format!("SIMCTL FAULT unreachable_path N'{}'", backups.display()),
    )
    .await;
    let (code, j, err) = pacsbak(&cfg, &["backup", "db", "--policy", "t", "--type", "full"]).await;
    sim::exec(&mut c, "SIMCTL CLEAR").await;
    assert_eq!(code, 1, "{j}\n{err}");
    assert_eq!(j["job"], "backup-db");
    let e = &j["results"][0]["error"];
    assert_eq!(j["results"][0]["status"], "failed", "{j}");
    assert_eq!(
        (e["kind"].as_str(), e["sql_error"].as_u64()),
        (Some("sql-server"), Some(3201)),
        "{j}"
    );
    // Said once on stderr: no tiberius ERROR lines, no colour codes in a file.
    assert!(!err.contains("\u{1b}["), "{err}");
    assert!(!err.contains("tiberius"), "{err}");

    // backup manual: the file damaged after writing, VERIFYONLY's 3183.
    sim::exec(&mut c, "SIMCTL FAULT damage_after_write").await;
    let (code, j, err) = pacsbak(
        &cfg,
        &["backup", "manual", "--policy", "t", "--reason", "upgrade"],
    )
    .await;
    sim::exec(&mut c, "SIMCTL CLEAR").await;
    assert_eq!(code, 1, "{j}\n{err}");
    assert_eq!(j["job"], "backup-manual");
    let e = &j["databases"]["results"][0]["error"];
    assert_eq!(
        (e["kind"].as_str(), e["sql_error"].as_u64()),
        (Some("integrity"), Some(3183)),
        "{j}"
    );
    let context: Vec<(String, String)> = serde_json::from_value(e["context"].clone()).unwrap();
    let keys: Vec<&str> = context.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys.iter().filter(|k| **k == "server").count(), 1, "{e}");
    assert_eq!(keys.iter().filter(|k| **k == "database").count(), 1, "{e}");

    // A good full, so that restores have a chain.
    let (code, j, err) = pacsbak(&cfg, &["backup", "db", "--policy", "t", "--type", "full"]).await;
    assert_eq!(code, 0, "{j}\n{err}");
    assert_eq!(j["results"][0]["status"], "ok");
    assert_eq!(j["results"][0]["record"]["type"], "full", "{j}");

    // restore db run into a data folder that does not exist: SQL Server refuses
    // with 5133 (directory lookup failed), then 3156.
    let drill = s.dir.path().join("drill");
    let drill = drill.to_str().unwrap();
    let (code, j, err) = pacsbak(
        &cfg,
        &[
            "restore",
            "db",
            "run",
            "--policy",
            "t",
            "--database",
            "PACS",
            "--as",
            "PACS_json",
            "--move-data",
            drill,
            "--move-log",
            drill,
        ],
    )
    .await;
    assert_eq!(code, 2, "{j}\n{err}");
    assert_eq!(
        (j["job"].as_str(), j["command"].as_str()),
        (Some("failed"), Some("restore")),
        "{j}"
    );
    assert_eq!(
        (
            j["error"]["kind"].as_str(),
            j["error"]["sql_error"].as_u64()
        ),
        (Some("sql-server"), Some(5133)),
        "{j}"
    );

    // backup folders: the server's program folder gone is a failure, kind io.
    std::fs::remove_dir_all(env.cfg.path("programs/server")).unwrap();
    let (code, j, err) = pacsbak(&cfg, &["backup", "folders", "--policy", "t"]).await;
    assert_eq!(code, 1, "{j}\n{err}");
    let server = j["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pacs-server")
        .unwrap();
    assert_eq!(
        (server["status"].as_str(), server["error"]["kind"].as_str()),
        (Some("failed"), Some("io")),
        "{j}"
    );

    // copy: a destination that does not exist is named, kind config, the run fails.
    let (code, j, err) = pacsbak(&cfg, &["copy", "--from", "local", "--to", "nowhere"]).await;
    assert_eq!(code, 1, "{j}\n{err}");
    assert_eq!(j["targets"][0]["status"], "failed");
    assert_eq!(j["targets"][0]["error"]["kind"], "config", "{j}");

    // verify: a pack damaged on the target, the outcome says so and exits 1.
    let pack = first_pack(&env.cfg.repo());
    let mut bytes = std::fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&pack, bytes).unwrap();
    let (code, j, err) = pacsbak(&cfg, &["verify", "--read-data"]).await;
    assert_eq!(code, 1, "{j}\n{err}");
    assert_eq!(
        (j["job"].as_str(), j["ok"].as_bool()),
        (Some("verify"), Some(false)),
        "{j}"
    );
    assert!(!j["damaged_packs"].as_array().unwrap().is_empty());

    // check: the instance unreachable, a failure of kind sql-server, exit 2.
    drop(c);
    drop(s);
    let (code, j, err) = pacsbak(&cfg, &["check", "--policy", "t"]).await;
    assert_eq!(code, 2, "{j}\n{err}");
    assert_eq!(
        (j["command"].as_str(), j["error"]["kind"].as_str()),
        (Some("check"), Some("sql-server")),
        "{j}"
    );
    assert!(
        !err.contains("error:"),
        "with --json the failure is on stdout only: {err}"
    );
}

fn first_pack(repo: &Path) -> std::path::PathBuf {
    let mut stack = vec![repo.join("data")];
    while let Some(d) = stack.pop() {
        let mut items: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        items.sort();
        for p in items {
            if p.is_dir() {
                stack.push(p);
            } else {
                return p;
            }
        }
    }
    panic!("no pack under {}", repo.display());
}

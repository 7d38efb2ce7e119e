//! The Windows binary, run under Wine (issue 18): what an engineer does on the
//! PACS's Windows servers, with Windows paths, names and attributes. Needs
//! `PACSBAK_WINE_EXE` (pacsbak.exe, with scripts/windows/bcryptprimitives.dll beside
//! it) and `wine`; scripts/test.sh builds both and runs `cargo test --test it wine::`
//! with them. Without them each test says "skipped". Every restore is compared byte
//! for byte with what was backed up, on the Linux side.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{tree_contents, PASSPHRASE};
use crate::simulator_support as sim;

/// The Windows binary and a Wine prefix of this test's own.
struct Wine {
    exe: PathBuf,
    prefix: tempfile::TempDir,
    work: tempfile::TempDir,
}

fn wine(test: &str) -> Option<Wine> {
    let Some(exe) = std::env::var_os("PACSBAK_WINE_EXE").map(PathBuf::from) else {
        println!("skipped: {test}: PACSBAK_WINE_EXE is not set (scripts/test.sh sets it after building pacsbak.exe)");
        return None;
    };
    assert!(
        exe.is_file(),
        "PACSBAK_WINE_EXE={} is not a file",
        exe.display()
    );
    let w = Wine {
        exe,
        prefix: tempfile::tempdir().unwrap(),
        work: tempfile::tempdir().unwrap(),
    };
    Some(w)
}

/// `Z:\...`: how a Windows program under Wine names a Linux path.
fn win(p: &Path) -> String {
    format!("Z:{}", p.display()).replace('/', "\\")
}

impl Wine {
    fn path(&self, rel: &str) -> PathBuf {
        self.work.path().join(rel)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = self.program(&self.exe);
        c.args(args)
            // The DLL beside the .exe, not a builtin of that name.
            .env("WINEDLLOVERRIDES", "bcryptprimitives=n;mscoree,mshtml=")
            .env("PACSBAK_PASSWORD", PASSPHRASE)
            .env_remove("PACSBAK_CONFIG");
        c
    }

    /// Runs pacsbak.exe; (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.command(args).output().expect("run wine");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// Another Windows program, in this prefix.
    fn program(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("wine");
        c.arg(program)
            .env("WINEPREFIX", self.prefix())
            .env("WINEDEBUG", "-all");
        c
    }

    /// `attrib ARGS` in this prefix; its output.
    fn attrib(&self, args: &[&str]) -> String {
        let out = self
            .program("cmd")
            .args(["/c", "attrib"])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "attrib {args:?}");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// The Wine prefix: the run's own (`PACSBAK_WINEPREFIX`, made fresh by
    /// scripts/test.sh), else this test's.
    fn prefix(&self) -> PathBuf {
        std::env::var_os("PACSBAK_WINEPREFIX")
            .map(PathBuf::from)
            .unwrap_or_else(|| self.prefix.path().to_path_buf())
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "pacsbak.exe {args:?}:\n{out}\n{err}");
        out
    }

    /// The Windows tree of [`windows_tree`] at `PACS Server`, and a repository made
    /// by pacsbak.exe: (config folder, tree), as Windows names them.
    fn tree_and_repository(&self) -> (String, PathBuf) {
        let cfg = self.config();
        let tree = self.path("PACS Server");
        windows_tree(&tree);
        self.ok(&["--config", &cfg, "repo", "init", "--target", "local"]);
        (cfg, tree)
    }

    /// A configuration folder whose one target is a local folder named by its
    /// drive path.
    fn config(&self) -> String {
        let c = self.path("config");
        std::fs::create_dir_all(c.join("storage-targets")).unwrap();
        std::fs::write(c.join("pacsbak.toml"), "").unwrap();
        std::fs::write(
            c.join("storage-targets/local.toml"),
            format!("service = \"fs\"\nroot = '{}'\n", win(&self.path("repo"))),
        )
        .unwrap();
        win(&c)
    }
}

/// Names a PACS folder has on a Chinese Windows: Chinese, spaces, a path over
/// 260 characters, a read-only file.
fn windows_tree(root: &Path) {
    let write = |rel: &str, bytes: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
    };
    write(
        "影像服务/配置 文件/服务器设置.ini",
        "端口=104\nAE=PACS\n".as_bytes(),
    );
    write(
        "Program Files/PACS Viewer/viewer.exe",
        &crate::common::pseudo_random(300_000, 1),
    );
    write(
        "Program Files/PACS Viewer/plug ins/dicom codec.dll",
        &crate::common::pseudo_random(70_000, 2),
    );
    let deep: String = (0..6)
        .map(|i| format!("level {i} of a deeply nested vendor folder"))
        .collect::<Vec<_>>()
        .join("/");
    let long = format!("{deep}/a file whose whole path is longer than MAX_PATH.txt");
    assert!(win(&root.join(&long)).chars().count() > 260);
    write(&long, b"long path\n");
    write("readonly.cfg", b"do not change\n");
    let ro = root.join("readonly.cfg");
    let mut perms = std::fs::metadata(&ro).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&ro, perms).unwrap();
    write("empty.log", b"");
}

#[test]
fn wine_backs_up_and_restores_windows_names_byte_for_byte() {
    let Some(w) = wine("wine_backs_up_and_restores_windows_names_byte_for_byte") else {
        return;
    };
    let (cfg, tree) = w.tree_and_repository();
    // Hidden, as Windows marks it (Wine keeps the attribute in an extended attribute).
    let hidden = tree.join("隐藏.dat");
    std::fs::write(&hidden, b"hidden\n").unwrap();
    w.attrib(&["+h", &win(&hidden)]);
    let out = w.ok(&["--config", &cfg, "--json", "backup", "files", &win(&tree)]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["summary"]["files"].as_u64().unwrap() >= 7, "{v}");
    let restored = w.path("restored");
    w.ok(&[
        "--config",
        &cfg,
        "restore",
        "files",
        "latest",
        "--to",
        &win(&restored),
    ]);
    // Byte for byte, every name as it was (the snapshot holds the folder's path).
    let want = tree_contents(&tree);
    let got = tree_contents(&restored);
    let got: std::collections::BTreeMap<String, Vec<u8>> = got
        .into_iter()
        .filter_map(|(k, v)| {
            let i = k.find("PACS Server/")?;
            let rel = &k[i + "PACS Server/".len()..];
            (!rel.is_empty()).then(|| (rel.to_string(), v))
        })
        .collect();
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    assert!(want == got, "restored bytes differ");
    let restored_ro = crate::common::files_under(&restored)
        .into_iter()
        .find(|p| p.ends_with("readonly.cfg"))
        .unwrap();
    assert!(
        std::fs::metadata(&restored_ro)
            .unwrap()
            .permissions()
            .readonly(),
        "read-only not restored"
    );
    // The attributes as Windows shows them after the restore.
    let find = |name: &str| {
        crate::common::files_under(&restored)
            .into_iter()
            .find(|p| p.ends_with(name))
            .unwrap()
    };
    let flags = |p: &Path| w.attrib(&[&win(p)]).chars().take(12).collect::<String>();
    assert!(
        flags(&find("隐藏.dat")).contains('H'),
        "hidden not restored"
    );
    assert!(
        flags(&find("readonly.cfg")).contains('R'),
        "read-only not restored"
    );
    assert!(!flags(&find("empty.log")).contains('H'));
    let out = w.ok(&["--config", &cfg, "--json", "verify", "--read-data"]);
    assert!(out.contains("\"ok\": true"), "{out}");
}

#[test]
fn wine_inspects_the_real_backups() {
    let Some(w) = wine("wine_inspects_the_real_backups") else {
        return;
    };
    let Some(baks) = crate::common::require_shared_baks("wine_inspects_the_real_backups") else {
        return;
    };
    let mut files: Vec<PathBuf> = crate::common::files_under(&baks)
        .into_iter()
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("bak") || e.eq_ignore_ascii_case("trn"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut args = vec!["--json".to_string(), "inspect".into(), "--check".into()];
    args.extend(files.iter().map(|p| win(p)));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = w.run(&args);
    // The same answer as the Linux binary's, exit code included.
    let linux = Command::new(env!("CARGO_BIN_EXE_pacsbak"))
        .args(["--json", "inspect", "--check"])
        .args(&files)
        .output()
        .unwrap();
    assert_eq!(Some(code), linux.status.code(), "{err}");
    let a: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    let b: serde_json::Value = serde_json::from_slice(&linux.stdout).unwrap();
    let strip = |v: &serde_json::Value| -> Vec<serde_json::Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let mut f = f.clone();
                f["file"].as_object_mut().unwrap().remove("path");
                f
            })
            .collect()
    };
    assert_eq!(strip(&a), strip(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wine_backs_up_a_database_from_the_simulator_to_a_windows_folder() {
    let Some(w) = wine("wine_backs_up_a_database_from_the_simulator_to_a_windows_folder") else {
        return;
    };
    let s = sim::start(false).await;
    let cfg = w.config();
    let c = w.path("config");
    let backups = w.path("SQL Backup");
    std::fs::create_dir_all(&backups).unwrap();
    std::fs::create_dir_all(c.join("policies")).unwrap();
    // SQL Server (the simulator, on Linux) writes to its folder; pacsbak.exe reads
    // the same folder by its Windows path.
    std::fs::write(
        c.join("policies/pacs.toml"),
        format!(
            "[instance]\nname = 'SIM'\nconnection_string_env = \"PACSBAK_SQL\"\nencryption = \"off\"\n\
             [databases]\ninclude = [\"PACS\"]\n\
             [backup]\nserver_folder = '{}'\nlocal_folder = '{}'\n\
             [offsite]\ntargets = [\"local\"]\n",
            backups.display(),
            win(&backups)
        ),
    )
    .unwrap();
    w.ok(&["--config", &cfg, "repo", "init", "--target", "local"]);
    let ado = crate::sqlserver_jobs::sim_ado(s.addr);
    let run = |args: &[&str]| {
        let out = w.command(args).env("PACSBAK_SQL", &ado).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let backup = |kind: &str| {
        let (code, out, err) = tokio::task::block_in_place(|| {
            run(&[
                "--config", &cfg, "--json", "backup", "db", "--policy", "pacs", "--type", kind,
            ])
        });
        assert_eq!(code, 0, "backup {kind}:\n{out}\n{err}");
    };
    backup("full");
    backup("log");
    let (code, out, err) = tokio::task::block_in_place(|| {
        run(&[
            "--config",
            &cfg,
            "--json",
            "restore",
            "db",
            "plan",
            "--database",
            "PACS",
        ])
    });
    assert_eq!(code, 0, "{out}\n{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["ok"], true, "{plan}");
    assert_eq!(plan["steps"].as_array().unwrap().len(), 2, "{plan}");
    // The files as the Windows binary stored them equal those SQL Server wrote.
    let restored = w.path("files");
    let (code, out, err) = tokio::task::block_in_place(|| {
        run(&[
            "--config",
            &cfg,
            "restore",
            "files",
            "latest",
            "--to",
            &win(&restored),
        ])
    });
    assert_eq!(code, 0, "{out}\n{err}");
    let wrote = tree_contents(&backups);
    let back = tree_contents(&restored);
    let log = wrote
        .iter()
        .find(|(k, _)| k.ends_with(".trn"))
        .expect("the log backup file");
    assert!(
        back.iter()
            .any(|(k, v)| k.ends_with(log.0.rsplit('/').next().unwrap()) && v == log.1),
        "the restored log differs from the one SQL Server wrote"
    );
}

#[test]
fn wine_names_a_file_a_running_program_holds_and_fails_the_backup() {
    let Some(w) = wine("wine_names_a_file_a_running_program_holds_and_fails_the_backup") else {
        return;
    };
    let (cfg, tree) = w.tree_and_repository();
    let held = tree.join("影像服务/pacs.mdf");
    std::fs::write(&held, b"the PACS service's open database file").unwrap();
    // A running PACS service holds the file open with no sharing.
    let holder = w.exe.with_file_name("holdfile.exe");
    let mut child = w
        .program(&holder)
        .arg(win(&held))
        .arg("60")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "held");
    let (code, out, err) = w.run(&["--config", &cfg, "--json", "backup", "files", &win(&tree)]);
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        code, 1,
        "a file not backed up is not a success:\n{out}\n{err}"
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let errors = v["summary"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{v}");
    let said = errors[0].as_str().unwrap();
    assert!(
        said.contains("pacs.mdf") && said.contains("NOT backed up"),
        "{said}"
    );
    // Everything else was stored.
    assert_eq!(v["summary"]["files"], 6, "{v}");
}

#[test]
fn wine_refuses_a_secrets_file_others_can_read_and_keeps_secrets_with_dpapi() {
    let Some(w) = wine("wine_refuses_a_secrets_file_others_can_read_and_keeps_secrets_with_dpapi")
    else {
        return;
    };
    use std::os::unix::fs::PermissionsExt;
    let cfg = w.config();
    let c = w.path("config");
    // Wine presents a file's DACL from its Unix mode: 0644 lets Everyone read.
    std::fs::write(
        c.join("pacsbak.toml"),
        "[repository]\npassword_file = \"repo.pass\"\n",
    )
    .unwrap();
    let pass = c.join("repo.pass");
    std::fs::write(&pass, "from-the-file\n").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, out, err) = w.run(&["--config", &cfg, "repo", "init", "--target", "local"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("repo.pass") && err.contains("Everyone") && err.contains("icacls"),
        "{err}"
    );
    assert!(!w.path("repo").join("config").exists(), "nothing written");
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    w.ok(&["--config", &cfg, "repo", "init", "--target", "local"]);

    // The passphrase kept with DPAPI instead: written from standard input, never
    // in the file as text, and it opens the repository.
    std::fs::remove_dir_all(w.path("repo")).unwrap();
    std::fs::write(
        c.join("pacsbak.toml"),
        "[repository]\npassword_dpapi = \"repository\"\n",
    )
    .unwrap();
    let mut child = w
        .command(&["--config", &cfg, "secret", "set", "repository"])
        .env_remove("PACSBAK_PASSWORD")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"kept-by-dpapi-42\n").unwrap();
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let blob = std::fs::read(c.join("secrets/repository.dpapi")).unwrap();
    assert!(!blob
        .windows(b"kept-by-dpapi".len())
        .any(|x| x == b"kept-by-dpapi"));
    let out = w
        .command(&["--config", &cfg, "repo", "init", "--target", "local"])
        .env_remove("PACSBAK_PASSWORD")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The Linux binary opens it with that passphrase: DPAPI gave back the secret.
    let linux = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(linux.path().join("storage-targets")).unwrap();
    std::fs::write(linux.path().join("pacsbak.toml"), "").unwrap();
    std::fs::write(
        linux.path().join("storage-targets/local.toml"),
        format!("service = \"fs\"\nroot = '{}'\n", w.path("repo").display()),
    )
    .unwrap();
    let opened = Command::new(env!("CARGO_BIN_EXE_pacsbak"))
        .args(["--config"])
        .arg(linux.path())
        .arg("snapshots")
        .env("PACSBAK_PASSWORD", "kept-by-dpapi-42")
        .env_remove("PACSBAK_CONFIG")
        .output()
        .unwrap();
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
}

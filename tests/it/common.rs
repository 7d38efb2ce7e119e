//! Shared setup for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The folder of real SQL Server backups, if this checkout sits beside `shared/`.
pub fn shared_baks() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/baks");
    dir.join("expected.json").is_file().then_some(dir)
}

/// Prints the standard skip line and returns `None` when the real backups are absent.
pub fn require_shared_baks(test: &str) -> Option<PathBuf> {
    let dir = shared_baks();
    if dir.is_none() {
        println!("skipped: {test}: ../shared/baks/ is not present");
    }
    dir
}

/// The passphrase every test repository uses.
pub const PASSPHRASE: &str = "correct horse battery staple";

/// A config folder with one local-folder target named `local`, in a temp dir.
pub struct TestConfig {
    /// Holds everything; removed on drop.
    pub tmp: tempfile::TempDir,
}

impl TestConfig {
    /// A config folder whose target `local` is `<tmp>/repo`.
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let cfg = tmp.path().join("config");
        std::fs::create_dir_all(cfg.join("storage-targets")).unwrap();
        std::fs::write(cfg.join("pacsbak.toml"), "[repository]\n").unwrap();
        std::fs::write(
            cfg.join("storage-targets/local.toml"),
            "service = \"fs\"\nroot = \"../repo\"\n",
        )
        .unwrap();
        TestConfig { tmp }
    }

    /// The config folder.
    pub fn config(&self) -> PathBuf {
        self.tmp.path().join("config")
    }

    /// The repository folder.
    pub fn repo(&self) -> PathBuf {
        self.tmp.path().join("repo")
    }

    /// A path inside the temp dir.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// `pacsbak --config <cfg> ARGS` with the passphrase in the environment.
    pub fn cmd(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_pacsbak"));
        c.arg("--config").arg(self.config()).args(args);
        c.env("PACSBAK_PASSWORD", PASSPHRASE)
            .env_remove("PACSBAK_CONFIG");
        c
    }

    /// Runs a command and returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd(args).output().expect("run pacsbak");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    }

    /// Runs a command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "pacsbak {args:?} failed:\n{out}\n{err}");
        out
    }
}

/// Deterministic pseudo-random bytes (xorshift), for test data.
pub fn pseudo_random(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        out.extend_from_slice(&s.to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Every file under `dir` (relative path → bytes), links as `-> target`.
pub fn tree_contents(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    fn walk(
        base: &std::path::Path,
        p: &std::path::Path,
        out: &mut std::collections::BTreeMap<String, Vec<u8>>,
    ) {
        let mut items: Vec<_> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        items.sort();
        for item in items {
            let rel = item
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .to_string();
            let m = std::fs::symlink_metadata(&item).unwrap();
            if m.file_type().is_symlink() {
                let t = std::fs::read_link(&item).unwrap();
                out.insert(rel, format!("-> {}", t.display()).into_bytes());
            } else if m.is_dir() {
                out.insert(format!("{rel}/"), Vec::new());
                walk(base, &item, out);
            } else {
                out.insert(rel, std::fs::read(&item).unwrap());
            }
        }
    }
    walk(dir, dir, &mut out);
    out
}

/// Every file below `dir`, sorted (none when it does not exist).
pub fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

//! The configuration folder: `pacsbak.toml`, `storage-targets/*.toml`,
//! `policies/*.toml`, `restore-tests/*.toml`.
//!
//! Loading validates everything without touching the network (ripgrep's rule:
//! parse first, act second). Unknown keys, wrong types and missing files are errors
//! that name the file, line and key. Secrets never live in these files: a key that
//! looks like one is refused with directions to the environment or a secrets file.

pub mod acl;
mod daemon;
pub mod dpapi;
mod secrets;
mod target;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

pub use daemon::{
    AlertsSection, CopySchedule, DaemonSection, EmailChannel, LogFormat, LogSection,
    RetentionSchedule, RobotChannel, SmtpTls, VerifySchedule, WebhookChannel,
};
pub use secrets::{read_secret_file, read_secret_map, repository_passphrase, Passphrase};
pub use target::{
    parse_rate, parse_size, Addressing, BandwidthSchedule, BandwidthWindow, CredentialRefs,
    Credentials, Limits, ServiceKind, TargetConfig,
};

use crate::error::{Error, ErrorKind, Result};

/// Name of the main file in the configuration folder.
pub const MAIN_FILE: &str = "pacsbak.toml";

/// `pacsbak.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MainConfig {
    /// Repository access.
    #[serde(default)]
    pub repository: RepositorySection,
    /// The hospital's time zone, an IANA name (`Asia/Shanghai`): schedules and
    /// bandwidth windows are read in it. Default: the machine's zone.
    pub time_zone: Option<String>,
    /// The journal of jobs (the audit trail).
    #[serde(default)]
    pub journal: JournalSection,
    /// What the daemon runs besides the policies' schedules.
    #[serde(default)]
    pub daemon: DaemonSection,
    /// Whom the daemon tells.
    #[serde(default)]
    pub alerts: AlertsSection,
    /// The log file.
    #[serde(default)]
    pub log: LogSection,
}

/// `[journal]` in `pacsbak.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournalSection {
    /// The SQLite file; relative to the config folder. Default `journal.sqlite3` there.
    pub path: Option<PathBuf>,
    /// Days entries are kept; at least 180 (six months, the Cybersecurity Law's
    /// minimum), which is also the default.
    pub keep_days: Option<u32>,
}

impl ConfigDir {
    /// Where the journal is.
    pub fn journal_path(&self) -> PathBuf {
        match &self.main.journal.path {
            Some(p) if p.is_absolute() => p.clone(),
            Some(p) => self.dir.join(p),
            None => self.dir.join("journal.sqlite3"),
        }
    }
}

/// `[repository]` in `pacsbak.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositorySection {
    /// File holding the repository passphrase (takes precedence over `PACSBAK_PASSWORD`);
    /// must not be readable by group or others. Relative to the config folder.
    pub password_file: Option<PathBuf>,
    /// A DPAPI secret (`secrets/NAME.dpapi`, written by `pacsbak secret set NAME`)
    /// holding the passphrase: Windows only.
    pub password_dpapi: Option<String>,
    /// Target used when a command is given no `--target` and there are several.
    pub default_target: Option<String>,
}

/// A loaded configuration folder.
#[derive(Debug, Clone)]
pub struct ConfigDir {
    /// The folder.
    pub dir: PathBuf,
    /// `pacsbak.toml`.
    pub main: MainConfig,
    /// Storage targets by name (the file stem).
    pub targets: BTreeMap<String, TargetConfig>,
}

impl ConfigDir {
    /// Loads and validates the folder.
    pub fn load(dir: &Path) -> Result<ConfigDir> {
        let main_path = dir.join(MAIN_FILE);
        if !main_path.is_file() {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{} not found: pass --config with the folder that holds it (or set PACSBAK_CONFIG)",
                    main_path.display()
                ),
            )
            .with("file", main_path.display()));
        }
        let main: MainConfig = parse_file(&main_path)?;
        // Refused here, naming the file, rather than at the first schedule.
        crate::clock::Clock::system(main.time_zone.as_deref())
            .map_err(|e| e.with("file", main_path.display()))?;
        if let Some(days) = main.journal.keep_days {
            if days < crate::journal::MIN_KEEP_DAYS {
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "{}: key `journal.keep_days`: {days} is too short: the journal is the audit trail and is kept at least {} days (six months)",
                        main_path.display(),
                        crate::journal::MIN_KEEP_DAYS
                    ),
                )
                .with("file", main_path.display())
                .with("key", "journal.keep_days"));
            }
        }
        let mut targets = BTreeMap::new();
        for path in toml_files(&dir.join("storage-targets"))? {
            let t = TargetConfig::load(&path, dir)?;
            targets.insert(t.name.clone(), t);
        }
        check_daemon_section(&main_path, &main, &targets)?;
        Ok(ConfigDir {
            dir: dir.to_path_buf(),
            main,
            targets,
        })
    }

    /// The target named `name`, or the only (or default) one when `name` is `None`.
    pub fn target(&self, name: Option<&str>) -> Result<&TargetConfig> {
        let known = || self.targets.keys().cloned().collect::<Vec<_>>().join(", ");
        let name = match name.or(self.main.repository.default_target.as_deref()) {
            Some(n) => n,
            None => match self.targets.len() {
                1 => {
                    return self
                        .targets
                        .values()
                        .next()
                        .ok_or_else(|| Error::new(ErrorKind::Internal, "target vanished"))
                }
                0 => {
                    return Err(Error::new(
                        ErrorKind::Config,
                        format!(
                            "no storage targets: add a file to {}",
                            self.dir.join("storage-targets").display()
                        ),
                    ))
                }
                _ => {
                    return Err(Error::new(
                        ErrorKind::Config,
                        format!(
                            "several storage targets ({}): say which with --target",
                            known()
                        ),
                    ))
                }
            },
        };
        self.targets.get(name).ok_or_else(|| {
            Error::new(
                ErrorKind::Config,
                format!("no storage target named {name:?} (known: {})", known()),
            )
        })
    }
}

/// `[daemon]` names targets that exist and runs at least one job at a time.
fn check_daemon_section(
    path: &Path,
    main: &MainConfig,
    targets: &BTreeMap<String, TargetConfig>,
) -> Result<()> {
    let refuse = |key: &str, msg: String| {
        Error::new(
            ErrorKind::Config,
            format!("{}: key `{key}`: {msg}", path.display()),
        )
        .with("file", path.display())
        .with("key", key)
    };
    let d = &main.daemon;
    if d.max_parallel == 0 {
        return Err(refuse("daemon.max_parallel", "must be at least 1".into()));
    }
    if let Some(r) = &d.retention {
        // The daemon stops every job at its time-out: a grace period at least that
        // long means no backup it runs can still need a pack a sweep deletes.
        if u64::from(r.grace_hours) * 60 < d.timeout_minutes {
            return Err(refuse(
                "daemon.retention.grace_hours",
                format!(
                    "{} hours is shorter than daemon.timeout_minutes ({} minutes): prune could delete packs a backup still running needs; make it at least {} hours",
                    r.grace_hours,
                    d.timeout_minutes,
                    d.timeout_minutes.div_ceil(60)
                ),
            ));
        }
        if !(1..=100).contains(&r.repack_unused_percent) {
            return Err(refuse(
                "daemon.retention.repack_unused_percent",
                format!("{} is out of range: 1 to 100", r.repack_unused_percent),
            ));
        }
    }
    let known = || targets.keys().cloned().collect::<Vec<_>>().join(", ");
    let named = d
        .copy
        .iter()
        .flat_map(|c| {
            std::iter::once(&c.from)
                .chain(&c.to)
                .map(|t| ("daemon.copy", t))
        })
        .chain(
            d.verify
                .iter()
                .flat_map(|v| v.targets.iter().map(|t| ("daemon.verify.targets", t))),
        );
    for (key, t) in named {
        if !targets.contains_key(t) {
            return Err(refuse(
                key,
                format!("no storage target named {t:?} (known: {})", known()),
            ));
        }
    }
    Ok(())
}

/// The `*.toml` files of a folder, sorted; a missing folder has none.
pub fn toml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    files_with_extension(dir, "toml")
}

/// The `*.EXT` files of a folder, sorted; a missing folder has none.
pub fn files_with_extension(dir: &Path, ext: &str) -> Result<Vec<PathBuf>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    let mut out = Vec::new();
    for item in rd {
        let p = item.map_err(|e| Error::io(dir, e))?.path();
        if p.extension().is_some_and(|x| x == ext) && p.is_file() {
            out.push(p);
        }
    }
    out.sort();
    Ok(out)
}

/// Keys that would hold a secret; refused in any TOML file.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passphrase",
    "secret",
    "secret_access_key",
    "access_key_secret",
    "private_key",
    "token",
];

/// Reads and deserializes a TOML file, with errors naming file, line and key.
pub fn parse_file<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::new(
            ErrorKind::Config,
            format!("cannot read {}: {e}", path.display()),
        )
        .with("file", path.display())
    })?;
    parse_str(path, &text)
}

/// Deserializes TOML text read from `path`.
pub fn parse_str<T: DeserializeOwned>(path: &Path, text: &str) -> Result<T> {
    for (i, line) in text.lines().enumerate() {
        let key = line
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        if line.contains('=') && SECRET_KEYS.contains(&key.to_ascii_lowercase().as_str()) {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{}:{}: key `{key}`: secrets are never read from TOML; put it in an environment variable or a secrets file and name that instead",
                    path.display(),
                    i + 1
                ),
            )
            .with("file", path.display())
            .with("line", i + 1)
            .with("key", key));
        }
    }
    toml::from_str(text).map_err(|e| toml_error(path, text, &e))
}

fn toml_error(path: &Path, text: &str, e: &toml::de::Error) -> Error {
    let (line, col) = match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before
                .rsplit('\n')
                .next()
                .map(|l| l.chars().count() + 1)
                .unwrap_or(1);
            (line, col)
        }
        None => (0, 0),
    };
    let msg = e.message().trim().to_string();
    let key = e.span().and_then(|s| key_at(text, s));
    let mut err = Error::new(
        ErrorKind::Config,
        match &key {
            Some(k) => format!("{}:{line}:{col}: key `{k}`: {msg}", path.display()),
            None => format!("{}:{line}:{col}: {msg}", path.display()),
        },
    )
    .with("file", path.display())
    .with("line", line);
    if let Some(k) = key {
        err = err.with("key", k);
    }
    err
}

/// The dotted name of the key an error span points into: the key of a `key = value`
/// line when the span is its value (an out-of-range number), the span's own text when
/// it is a key (an unknown field), prefixed with the table it sits in.
fn key_at(text: &str, span: std::ops::Range<usize>) -> Option<String> {
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line = &text[line_start..line_end];
    let key = match line.find('=') {
        Some(eq) if start >= line_start + eq => line[..eq].trim(),
        _ => text.get(span.clone())?.trim(),
    }
    .trim_matches('"');
    if key.is_empty() || key.len() >= 80 || key.contains('\n') || key.starts_with('[') {
        return None;
    }
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(['[', ']']).trim().to_string());
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

/// Whether `path` names the root of a file system (`/`, `C:\`, `\\`): a folder
/// pacsbak must never walk, write backups into, or keep a repository in.
pub fn is_filesystem_root(path: &str) -> bool {
    let trimmed = path.trim().trim_end_matches(['/', '\\']);
    trimmed.is_empty()
        || (trimmed.len() == 2
            && trimmed.as_bytes()[1] == b':'
            && trimmed.as_bytes()[0].is_ascii_alphabetic())
}

/// Like [`is_filesystem_root`], after following links: a folder that is a link to `/`
/// is `/`. A path that cannot be resolved is not called a root (its own error follows).
pub fn resolves_to_filesystem_root(path: &Path) -> bool {
    use std::path::{Component, Prefix};
    let Ok(real) = std::fs::canonicalize(path) else {
        return false;
    };
    let mut parts = real.components();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Component::RootDir), None, _) => true,
        // `C:\` (as `\\?\C:\`), but not a share `\\nas\backup`, whose top has no parent either.
        (Some(Component::Prefix(p)), Some(Component::RootDir), None) => {
            matches!(p.kind(), Prefix::Disk(_) | Prefix::VerbatimDisk(_))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: u32,
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = parse_str::<T>(Path::new("x.toml"), "a = 1\nbogus = 2\n").unwrap_err();
        assert!(e.to_string().contains("x.toml:2:1"), "{e}");
        assert_eq!(e.context("key"), Some("bogus"));
        let e = parse_str::<T>(Path::new("x.toml"), "a = \"one\"\n").unwrap_err();
        assert!(e.to_string().contains("x.toml:1:"), "{e}");
        // A value out of range: the key is named, not the value.
        assert_eq!(e.context("key"), Some("a"), "{e}");
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Outer {
            backup: Inner,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Inner {
            stripes: u16,
        }
        let e = parse_str::<Outer>(Path::new("p.toml"), "[backup]\nstripes = 99999999999\n")
            .unwrap_err();
        assert_eq!(e.context("key"), Some("backup.stripes"), "{e}");
        assert!(e.to_string().contains("key `backup.stripes`"), "{e}");
        assert!(is_filesystem_root("/") && is_filesystem_root("C:\\") && is_filesystem_root("d:"));
        assert!(!is_filesystem_root("/srv/backup") && !is_filesystem_root("E:\\SQLBackup"));
        let e = parse_str::<T>(Path::new("x.toml"), "a = 1\npassword = \"hunter2\"\n").unwrap_err();
        assert!(e.to_string().contains("x.toml:2"), "{e}");
        assert!(!e.to_string().contains("hunter2"));
    }
}

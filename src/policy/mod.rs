//! Backup policies (`policies/NAME.toml` in the configuration folder): which SQL
//! Server instance, which databases, which backup types on which schedules, where
//! the backup files go (as SQL Server sees the folder and as pacsbak sees it), which
//! storage targets take the offsite copy, the RPO per database, and the program
//! folders of the PACS server and its workstations with their own schedules.
//!
//! Loading validates everything without I/O: unknown keys, wrong types and bad
//! cron expressions are errors naming the file, line and key. The connection string
//! is never in the TOML: it comes from an environment variable or a secrets file
//! the policy names.

pub mod cron;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

pub use cron::Cron;

use crate::config::read_secret_file;
use crate::error::{Error, ErrorKind, Result};
use crate::records::BackupKind;
use crate::sqlserver::{Encryption, Endpoint, InstanceSpec};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    description: String,
    instance: InstanceSection,
    #[serde(default)]
    databases: DatabasesSection,
    #[serde(default)]
    schedule: ScheduleSection,
    backup: BackupSection,
    #[serde(default)]
    offsite: OffsiteSection,
    #[serde(default)]
    rpo: RpoSection,
    #[serde(default)]
    folders: Vec<FolderSection>,
    #[serde(default)]
    retention: Option<crate::retention::Rules>,
    #[serde(default)]
    local_cleanup: Option<LocalCleanupSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalCleanupSection {
    after: crate::retention::Age,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InstanceSection {
    name: String,
    connection_string_env: Option<String>,
    connection_string_file: Option<PathBuf>,
    connection_string_dpapi: Option<String>,
    embedded_simulator: Option<PathBuf>,
    #[serde(default = "default_encryption")]
    encryption: Encryption,
}

fn default_encryption() -> Encryption {
    Encryption::Required
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DatabasesSection {
    #[serde(default)]
    include: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    exclude: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleSection {
    full: Option<Spanned<String>>,
    diff: Option<Spanned<String>>,
    log: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackupSection {
    server_folder: Spanned<String>,
    local_folder: Option<PathBuf>,
    #[serde(default = "default_file_name")]
    file_name: String,
    #[serde(default = "yes")]
    checksum: Spanned<bool>,
    #[serde(default)]
    compression: bool,
    #[serde(default = "one")]
    stripes: u16,
    #[serde(default = "default_stall")]
    stall_minutes: Spanned<u64>,
    #[serde(default)]
    staging_folder_server: Option<String>,
    #[serde(default)]
    staging_folder_local: Option<PathBuf>,
    #[serde(default)]
    count_rows: Vec<String>,
}

fn yes() -> Spanned<bool> {
    Spanned::new(0..0, true)
}
fn one() -> u16 {
    1
}
fn default_stall() -> Spanned<u64> {
    Spanned::new(0..0, 15)
}
fn default_file_name() -> String {
    "{database}_{type}_{timestamp}".into()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OffsiteSection {
    #[serde(default)]
    targets: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RpoSection {
    default_minutes: Option<Spanned<u64>>,
    #[serde(default)]
    databases: BTreeMap<String, Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FolderSection {
    name: String,
    #[serde(default = "server_role")]
    role: FolderRole,
    path: Spanned<PathBuf>,
    schedule: Option<Spanned<String>>,
}

fn server_role() -> FolderRole {
    FolderRole::Server
}

/// Whose program folder it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FolderRole {
    /// The PACS server (part of a manual pre-upgrade backup).
    Server,
    /// A registration/queue or diagnostic workstation (may be switched off).
    Workstation,
}

impl FolderRole {
    /// `server` or `workstation`, as tags and JSON spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            FolderRole::Server => "server",
            FolderRole::Workstation => "workstation",
        }
    }
}

/// A program folder to snapshot.
#[derive(Debug, Clone)]
pub struct ProgramFolder {
    /// Name in reports and snapshot tags.
    pub name: String,
    /// Server or workstation.
    pub role: FolderRole,
    /// Local path or UNC share, as pacsbak reaches it.
    pub path: PathBuf,
    /// When to back it up.
    pub schedule: Option<Cron>,
}

/// Where the connection string comes from.
#[derive(Debug, Clone)]
pub enum ConnectionSource {
    /// An environment variable.
    Env(String),
    /// A secrets file (first line).
    File(PathBuf),
    /// A DPAPI secret in the configuration folder (folder, name): Windows only.
    Dpapi(PathBuf, String),
    /// The bundled simulator, state in this folder (the sandbox).
    Embedded(PathBuf),
}

impl ConnectionSource {
    /// Reads the connection string now; `file` is the TOML file that names the
    /// source, for the error when it is not there.
    pub fn endpoint(&self, instance: &str, file: &Path) -> Result<Endpoint> {
        Ok(match self {
            ConnectionSource::Env(var) => match std::env::var(var) {
                Ok(v) if !v.trim().is_empty() => Endpoint::Ado(zeroize::Zeroizing::new(v)),
                _ => {
                    return Err(Error::new(
                        ErrorKind::Config,
                        format!(
                            "the connection string of instance {instance} is read from the environment variable {var}, which is not set"
                        ),
                    )
                    .with("file", file.display())
                    .with("variable", var))
                }
            },
            ConnectionSource::File(f) => Endpoint::Ado(read_secret_file(f)?),
            ConnectionSource::Dpapi(dir, name) => Endpoint::Ado(crate::config::dpapi::load(dir, name)?),
            ConnectionSource::Embedded(root) => Endpoint::Embedded(root.clone()),
        })
    }
}

/// Which databases a policy covers.
#[derive(Debug, Clone)]
pub enum DatabaseSelection {
    /// These names.
    Names(Vec<String>),
    /// Every user database except these.
    AllUser {
        /// Excluded names.
        exclude: Vec<String>,
    },
}

/// A loaded, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Name (the file stem).
    pub name: String,
    /// The file.
    pub file: PathBuf,
    /// Free text.
    pub description: String,
    /// The instance's name in reports.
    pub instance_name: String,
    /// Where its connection string comes from (read only when connecting).
    pub connection: ConnectionSource,
    /// Link encryption.
    pub encryption: Encryption,
    /// Databases.
    pub databases: DatabaseSelection,
    /// Schedules per backup type.
    pub schedules: BTreeMap<BackupKind, Cron>,
    /// The backup folder as SQL Server sees it.
    pub server_folder: String,
    /// The same folder as pacsbak sees it (a share, or the same path locally).
    pub local_folder: PathBuf,
    /// Where restores stage their files: (as SQL Server sees it, as pacsbak sees it).
    pub staging: (String, PathBuf),
    /// File name pattern without extension: `{database}`, `{type}`, `{timestamp}`, `{stripe}`.
    pub file_name: String,
    /// WITH COMPRESSION.
    pub compression: bool,
    /// Files per backup.
    pub stripes: u16,
    /// No progress for this long: the statement is abandoned.
    pub stall: std::time::Duration,
    /// Tables (`dbo.Study`) whose rows are counted at each full and differential
    /// backup and kept in its record, for drills to compare the restore with.
    pub count_rows: Vec<String>,
    /// Storage targets for the offsite copy (empty: the default target).
    pub targets: Vec<String>,
    /// RPO in minutes for databases not listed.
    pub rpo_default_minutes: Option<u64>,
    /// RPO in minutes per database.
    pub rpo_minutes: BTreeMap<String, u64>,
    /// Program folders.
    pub folders: Vec<ProgramFolder>,
    /// What every target keeps (`[retention]`); `None`: nothing is ever removed.
    pub retention: Option<crate::retention::Rules>,
    /// `[local_cleanup] after`: backup files older than this are deleted from the
    /// local backup folder once proven on every offsite target. `None`: pacsbak
    /// deletes nothing there (the maintenance plan's cleanup does, and the audit
    /// watches it).
    pub local_cleanup_after: Option<crate::retention::Age>,
}

/// The longest `backup.stall_minutes`: a day without progress is a stuck BACKUP.
const MAX_STALL_MINUTES: u64 = 24 * 60;
/// The longest RPO: a year (longer is a typing error, and overflows time arithmetic).
const MAX_RPO_MINUTES: u64 = 366 * 24 * 60;

/// A configuration error at `span` of `text` (the file `path`): file, line and key.
pub(crate) fn at_span(
    path: &Path,
    text: &str,
    span: std::ops::Range<usize>,
    key: &str,
    msg: String,
) -> Error {
    let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
    Error::new(
        ErrorKind::Config,
        format!("{}:{line}: key `{key}`: {msg}", path.display()),
    )
    .with("file", path.display())
    .with("line", line)
    .with("key", key)
}

/// `p` relative to the configuration folder `base`, unless it is absolute or a share.
pub(crate) fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() || p.to_string_lossy().starts_with("\\\\") {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Joins a file name onto a folder as SQL Server sees it (Windows or POSIX style).
pub fn server_join(folder: &str, name: &str) -> String {
    let sep = if folder.contains('\\') || !folder.contains('/') && folder.contains(':') {
        '\\'
    } else {
        '/'
    };
    format!("{}{sep}{name}", folder.trim_end_matches(['\\', '/']))
}

impl Policy {
    /// Where pacsbak reads a file SQL Server wrote to `server_path`: under the backup
    /// folder, the same name in `local_folder`; elsewhere the path as it is.
    pub fn local_path_of(&self, server_path: &str) -> PathBuf {
        let folder = self.server_folder.trim_end_matches(['\\', '/']);
        let windows = folder.contains('\\') || folder.contains(':');
        let head = server_path.get(..folder.len());
        let rest = server_path.get(folder.len()..).unwrap_or_default();
        let same_folder = head.is_some_and(|h| {
            if windows {
                h.eq_ignore_ascii_case(folder)
            } else {
                h == folder
            }
        });
        if !same_folder || !rest.starts_with(['\\', '/']) {
            return PathBuf::from(server_path);
        }
        rest.split(['\\', '/'])
            .filter(|p| !p.is_empty())
            .fold(self.local_folder.clone(), |acc, part| acc.join(part))
    }

    /// The target a restore reads from: the one asked for, else the policy's
    /// first (where its nightly copies are proven first), else the default target.
    pub fn restore_target<'a>(&'a self, asked: Option<&'a str>) -> Option<&'a str> {
        asked.or(self.targets.first().map(String::as_str))
    }

    /// Refuses folder names the policy does not have, naming the ones it has.
    pub fn check_folder_names(&self, names: &[String]) -> Result<()> {
        match names
            .iter()
            .find(|n| !self.folders.iter().any(|f| &f.name == *n))
        {
            None => Ok(()),
            Some(unknown) => {
                let known: Vec<&str> = self.folders.iter().map(|f| f.name.as_str()).collect();
                Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "policy {} has no folder named {unknown:?}; its folders: {}",
                        self.name,
                        known.join(", ")
                    ),
                )
                .with("policy", &self.name))
            }
        }
    }

    /// Finds `spec` (a file, or a name under `config_dir/policies/`) and loads it.
    pub fn find(config_dir: &Path, spec: &str) -> Result<Policy> {
        let as_path = PathBuf::from(spec);
        let path = if as_path.is_file() {
            as_path
        } else {
            let p = config_dir.join("policies").join(format!("{spec}.toml"));
            if !p.is_file() {
                let known: Vec<String> = crate::config::toml_files(&config_dir.join("policies"))?
                    .iter()
                    .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().to_string()))
                    .collect();
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "no policy {spec:?}: not a file, and no {} (known: {})",
                        p.display(),
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
            p
        };
        Self::load(&path, config_dir)
    }

    /// Loads and validates one policy file; relative paths are relative to `config_dir`.
    pub fn load(path: &Path, config_dir: &Path) -> Result<Policy> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("cannot read {}: {e}", path.display()),
            )
            .with("file", path.display())
        })?;
        let raw: PolicyFile = crate::config::parse_str(path, &text)?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let cron = |s: &Spanned<String>, key: &str| -> Result<Cron> {
            Cron::parse(s.get_ref()).map_err(|m| at_span(path, &text, s.span(), key, m))
        };
        let mut schedules = BTreeMap::new();
        for (kind, s) in [
            (BackupKind::Full, &raw.schedule.full),
            (BackupKind::Diff, &raw.schedule.diff),
            (BackupKind::Log, &raw.schedule.log),
        ] {
            if let Some(s) = s {
                schedules.insert(kind, cron(s, &format!("schedule.{kind}"))?);
            }
        }
        if !*raw.backup.checksum.get_ref() {
            return Err(at_span(
                path,
                &text,
                raw.backup.checksum.span(),
                "backup.checksum",
                "CHECKSUM is always on: a backup without checksums cannot be verified; remove the key".into(),
            ));
        }
        if raw.backup.stripes == 0 || raw.backup.stripes > 64 {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{}: key `backup.stripes`: 1 to 64 files per backup",
                    path.display()
                ),
            )
            .with("file", path.display())
            .with("key", "backup.stripes"));
        }
        let bounded =
            |v: &Spanned<u64>, key: &str, range: std::ops::RangeInclusive<u64>, what: &str| {
                if range.contains(v.get_ref()) {
                    Ok(*v.get_ref())
                } else {
                    Err(at_span(
                        path,
                        &text,
                        v.span(),
                        key,
                        format!(
                            "{} is out of range: {what} is {} to {} minutes",
                            v.get_ref(),
                            range.start(),
                            range.end()
                        ),
                    ))
                }
            };
        let stall_minutes = bounded(
            &raw.backup.stall_minutes,
            "backup.stall_minutes",
            1..=MAX_STALL_MINUTES,
            "the time a BACKUP may show no progress before it is stopped",
        )?;
        let rpo_default_minutes = raw
            .rpo
            .default_minutes
            .as_ref()
            .map(|v| bounded(v, "rpo.default_minutes", 1..=MAX_RPO_MINUTES, "an RPO"))
            .transpose()?;
        let mut rpo_minutes = BTreeMap::new();
        for (db, v) in &raw.rpo.databases {
            let key = format!("rpo.databases.{db}");
            rpo_minutes.insert(db.clone(), bounded(v, &key, 1..=MAX_RPO_MINUTES, "an RPO")?);
        }
        if crate::config::is_filesystem_root(raw.backup.server_folder.get_ref()) {
            return Err(at_span(
                path,
                &text,
                raw.backup.server_folder.span(),
                "backup.server_folder",
                format!(
                    "{:?} is the root of a drive: give SQL Server a folder of its own for backup files",
                    raw.backup.server_folder.get_ref()
                ),
            ));
        }
        for (i, f) in raw.folders.iter().enumerate() {
            if crate::config::is_filesystem_root(&f.path.get_ref().to_string_lossy()) {
                return Err(at_span(
                    path,
                    &text,
                    f.path.span(),
                    &format!("folders[{i}].path"),
                    format!(
                        "{:?} is the root of a drive: name the PACS program folder itself",
                        f.path.get_ref()
                    ),
                ));
            }
        }
        if !raw.backup.file_name.contains("{timestamp}") {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{}: key `backup.file_name`: {:?} has no {{timestamp}}: every backup needs a name of its own",
                    path.display(),
                    raw.backup.file_name
                ),
            )
            .with("file", path.display())
            .with("key", "backup.file_name"));
        }
        if let Some(include) = &raw.databases.include {
            if include.get_ref().is_empty() {
                return Err(at_span(
                    path,
                    &text,
                    include.span(),
                    "databases.include",
                    "an empty list selects no database: list the databases, or write [\"*\"] for every user database".into(),
                ));
            }
        }
        let inst = &raw.instance;
        let sources = [
            inst.connection_string_env.is_some(),
            inst.connection_string_file.is_some(),
            inst.connection_string_dpapi.is_some(),
            inst.embedded_simulator.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if sources != 1 {
            return Err(Error::new(
                ErrorKind::Config,
                format!(
                    "{}: [instance] needs exactly one of connection_string_env, connection_string_file, connection_string_dpapi, embedded_simulator",
                    path.display()
                ),
            )
            .with("file", path.display())
            .with("key", "instance"));
        }
        let connection = if let Some(var) = &inst.connection_string_env {
            ConnectionSource::Env(var.clone())
        } else if let Some(f) = &inst.connection_string_file {
            ConnectionSource::File(resolve(config_dir, f))
        } else if let Some(name) = &inst.connection_string_dpapi {
            ConnectionSource::Dpapi(config_dir.to_path_buf(), name.clone())
        } else {
            ConnectionSource::Embedded(resolve(
                config_dir,
                inst.embedded_simulator
                    .as_deref()
                    .unwrap_or(Path::new("simulator")),
            ))
        };
        let include = raw
            .databases
            .include
            .as_ref()
            .map(|i| i.get_ref().clone())
            .unwrap_or_default();
        let databases = if include.is_empty() || include.iter().any(|d| d == "*") {
            DatabaseSelection::AllUser {
                exclude: raw.databases.exclude.clone(),
            }
        } else {
            DatabaseSelection::Names(include)
        };
        let mut folders = Vec::new();
        for (i, f) in raw.folders.iter().enumerate() {
            folders.push(ProgramFolder {
                name: f.name.clone(),
                role: f.role,
                path: resolve(config_dir, f.path.get_ref()),
                schedule: f
                    .schedule
                    .as_ref()
                    .map(|s| cron(s, &format!("folders[{i}].schedule")))
                    .transpose()?,
            });
        }
        let local_folder = raw
            .backup
            .local_folder
            .as_ref()
            .map(|p| resolve(config_dir, p))
            .unwrap_or_else(|| PathBuf::from(raw.backup.server_folder.get_ref()));
        let staging = (
            raw.backup.staging_folder_server.clone().unwrap_or_else(|| {
                server_join(raw.backup.server_folder.get_ref(), "restore-staging")
            }),
            raw.backup
                .staging_folder_local
                .as_ref()
                .map(|p| resolve(config_dir, p))
                .unwrap_or_else(|| local_folder.join("restore-staging")),
        );
        Ok(Policy {
            name,
            file: path.to_path_buf(),
            description: raw.description,
            instance_name: inst.name.clone(),
            connection,
            encryption: inst.encryption,
            databases,
            schedules,
            server_folder: raw.backup.server_folder.get_ref().clone(),
            local_folder,
            staging,
            file_name: raw.backup.file_name.clone(),
            compression: raw.backup.compression,
            stripes: raw.backup.stripes,
            stall: std::time::Duration::from_secs(stall_minutes * 60),
            count_rows: raw.backup.count_rows.clone(),
            targets: raw.offsite.targets,
            rpo_default_minutes,
            rpo_minutes,
            folders,
            retention: raw.retention,
            local_cleanup_after: raw.local_cleanup.map(|c| c.after),
        })
    }

    /// The instance to connect to; reads the connection string now.
    pub fn instance_spec(&self) -> Result<InstanceSpec> {
        Ok(InstanceSpec {
            name: self.instance_name.clone(),
            endpoint: self.connection.endpoint(&self.instance_name, &self.file)?,
            encryption: self.encryption,
        })
    }

    /// The RPO of `database` in minutes.
    pub fn rpo(&self, database: &str) -> Option<u64> {
        self.rpo_minutes
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(database))
            .map(|(_, v)| *v)
            .or(self.rpo_default_minutes)
    }

    /// The backup type due at `now` by the schedules: the type whose latest firing
    /// (within 8 days) is the most recent; on a tie full beats diff beats log.
    pub fn due_kind(&self, now: time::PrimitiveDateTime) -> Option<BackupKind> {
        let mut best: Option<(time::PrimitiveDateTime, BackupKind)> = None;
        for kind in [BackupKind::Full, BackupKind::Diff, BackupKind::Log] {
            if let Some(c) = self.schedules.get(&kind) {
                if let Some(t) = c.last_at_or_before(now, time::Duration::days(8)) {
                    if best.is_none_or(|(bt, _)| t > bt) {
                        best = Some((t, kind));
                    }
                }
            }
        }
        best.map(|(_, k)| k)
    }

    /// File names (one per stripe) for a backup: (as SQL Server sees them, as pacsbak does).
    pub fn backup_files(
        &self,
        database: &str,
        kind: BackupKind,
        stamp: &str,
        extra: &str,
    ) -> Vec<(String, PathBuf)> {
        let safe: String = database
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        (1..=self.stripes)
            .map(|i| {
                let mut n = self
                    .file_name
                    .replace("{database}", &safe)
                    .replace("{type}", &format!("{}{extra}", kind.as_str()))
                    .replace("{timestamp}", stamp)
                    .replace("{stripe}", &i.to_string());
                if self.stripes > 1 && !self.file_name.contains("{stripe}") {
                    n.push_str(&format!("_{i}of{}", self.stripes));
                }
                n.push('.');
                n.push_str(kind.extension());
                (
                    server_join(&self.server_folder, &n),
                    self.local_folder.join(&n),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Policy> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.toml");
        std::fs::write(&p, text).unwrap();
        Policy::load(&p, dir.path())
    }

    const OK: &str = "[instance]\nname = \"X\"\nembedded_simulator = \"sim\"\nencryption = \"off\"\n[schedule]\nfull = \"0 1 * * 0\"\nlog = \"*/15 * * * *\"\n[backup]\nserver_folder = 'E:\\B'\n";

    #[test]
    fn bad_cron_and_unknown_keys_name_file_line_key() {
        assert!(load(OK).is_ok());
        let e = load(&OK.replace("*/15 * * * *", "*/15 * *")).unwrap_err();
        assert!(e.to_string().contains("t.toml:7"), "{e}");
        assert_eq!(e.context("key"), Some("schedule.log"));
        let e = load(&format!("{OK}bogus = 1\n")).unwrap_err();
        assert!(e.to_string().contains("t.toml:10"), "{e}");
        let e = load(&format!("{OK}checksum = false\n")).unwrap_err();
        assert!(e.to_string().contains("CHECKSUM"), "{e}");
    }

    #[test]
    fn shipped_examples_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        for name in ["pacs", "small-site"] {
            let p = Policy::find(dir, name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!p.schedules.is_empty() && !p.folders.is_empty(), "{name}");
        }
        let p = Policy::find(dir, "pacs").unwrap();
        assert_eq!(p.rpo("pacs"), Some(15));
        assert_eq!(p.rpo("other"), Some(60));
        assert!(matches!(p.databases, DatabaseSelection::AllUser { .. }));
        assert_eq!(p.retention.as_ref().map(|r| r.keep_daily), Some(14));
        assert!(p.local_cleanup_after.is_none());
        let small = Policy::find(dir, "small-site").unwrap();
        assert_eq!(
            small.local_cleanup_after.map(|a| a.to_string()).as_deref(),
            Some("2d")
        );
    }

    #[test]
    fn a_bad_retention_age_names_the_file_line_and_key() {
        let e = load(&format!(
            "{OK}[retention]\nkeep_daily = 3\nkeep_within = \"7 days\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("t.toml") && e.contains("keep_within") && e.contains("unit"),
            "{e}"
        );
    }

    #[test]
    fn server_paths_map_to_the_local_folder() {
        let p = load(OK).unwrap();
        assert_eq!(
            p.local_path_of("e:\\b\\PACS_log.trn"),
            p.local_folder.join("PACS_log.trn")
        );
        assert_eq!(
            p.local_path_of("F:\\other\\x.trn"),
            PathBuf::from("F:\\other\\x.trn")
        );
    }

    #[test]
    fn file_names_and_due_kind() {
        let p = load(OK).unwrap();
        let f = p.backup_files("PA CS", BackupKind::Full, "20261125_010000", "");
        assert_eq!(f[0].0, "E:\\B\\PA_CS_full_20261125_010000.bak");
        let sun = time::macros::datetime!(2026-11-29 01:00);
        assert_eq!(p.due_kind(sun), Some(BackupKind::Full));
        assert_eq!(
            p.due_kind(sun + time::Duration::minutes(20)),
            Some(BackupKind::Log)
        );
    }
}

//! `restore-tests/NAME.toml`: what a drill restores (policy, database, the target
//! it reads, the point), where (the staging instance, its folders, the largest
//! restore its disk takes), what proves it (DBCC CHECKDB, probes, the RTO) and
//! when the daemon runs it. Validated on load, errors naming file, line and key.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::config::{parse_size, ConfigDir};
use crate::error::{Error, ErrorKind, Result};
use crate::policy::{resolve, ConnectionSource, Cron, Policy};
use crate::retention::Age;
use crate::sqlserver::{Encryption, InstanceSpec};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreTestFile {
    #[serde(default)]
    description: String,
    schedule: Option<Spanned<String>>,
    source: SourceSection,
    staging: StagingSection,
    #[serde(default)]
    checks: ChecksSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceSection {
    policy: String,
    database: String,
    target: Option<String>,
    #[serde(default = "latest")]
    point: Spanned<String>,
}

fn latest() -> Spanned<String> {
    Spanned::new(0..0, "latest".into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StagingSection {
    name: String,
    connection_string_env: Option<String>,
    connection_string_file: Option<PathBuf>,
    connection_string_dpapi: Option<String>,
    embedded_simulator: Option<PathBuf>,
    #[serde(default = "required")]
    encryption: Encryption,
    #[serde(default)]
    production: bool,
    #[serde(default = "default_database")]
    database: Spanned<String>,
    fetch_folder_server: String,
    fetch_folder_local: Option<PathBuf>,
    data_folder: String,
    log_folder: Option<String>,
    largest_restore: Spanned<String>,
    #[serde(default)]
    keep: bool,
}

fn required() -> Encryption {
    Encryption::Required
}

fn default_database() -> Spanned<String> {
    Spanned::new(0..0, "{database}_drill_{date}".into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChecksSection {
    #[serde(default = "yes")]
    checkdb: bool,
    rto: Option<Age>,
    #[serde(default)]
    probe: Vec<ProbeSection>,
}

fn yes() -> bool {
    true
}

/// No `[checks]` section: DBCC CHECKDB still runs (a drill proves something).
impl Default for ChecksSection {
    fn default() -> Self {
        ChecksSection {
            checkdb: true,
            rto: None,
            probe: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeSection {
    name: String,
    sql: Option<String>,
    count_table: Option<String>,
    at_least: Option<f64>,
    at_most: Option<f64>,
    within_percent: Option<f64>,
    not_older_than: Option<String>,
}

/// The point a drill restores to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrillPoint {
    /// The newest point the offsite copy reaches.
    Latest,
    /// A point drawn at random between the oldest restorable full and the newest log:
    /// over many drills, the whole retention window is exercised.
    Random,
    /// This time, server local time.
    At(crate::bakfile::MtfDate),
}

/// What a probe expects of its single value.
#[derive(Debug, Clone, PartialEq)]
pub enum Expectation {
    /// A number at least this.
    AtLeast(f64),
    /// A number at most this.
    AtMost(f64),
    /// Between both.
    Between(f64, f64),
    /// Rows of the table within this percentage of the count the backup record holds.
    WithinPercentOfSource(f64),
    /// A date no older than this before the restored point.
    NotOlderThan(Age),
    /// A date no older than the policy's RPO of the database before the restored point.
    NotOlderThanRpo,
}

/// One SQL probe run in the restored database.
#[derive(Debug, Clone)]
pub struct Probe {
    /// Name in the report.
    pub name: String,
    /// The query; its first column of its first row is the value.
    pub sql: String,
    /// The table counted, for a comparison with the backup record.
    pub count_table: Option<String>,
    /// What the value must be.
    pub expect: Expectation,
}

/// A loaded, validated restore test.
#[derive(Debug, Clone)]
pub struct RestoreTest {
    /// Name (the file stem).
    pub name: String,
    /// The file.
    pub file: PathBuf,
    /// Free text.
    pub description: String,
    /// When the daemon runs it.
    pub schedule: Option<Cron>,
    /// The policy whose backups are restored.
    pub policy: String,
    /// The database restored.
    pub database: String,
    /// The target read (default: the policy's first target).
    pub target: Option<String>,
    /// The point restored to.
    pub point: DrillPoint,
    /// The staging instance's name in reports.
    pub staging_name: String,
    /// Where its connection string comes from (read only when connecting).
    pub staging_connection: ConnectionSource,
    /// Link encryption to it.
    pub staging_encryption: Encryption,
    /// The staging instance is the production one, and that is allowed.
    pub production: bool,
    /// Name pattern of the drill database: `{database}` and `{date}` (yyyymmdd).
    pub database_pattern: String,
    /// Where the fetched backup files go, as the staging server reads them.
    pub fetch_folder_server: String,
    /// The same folder as pacsbak writes it.
    pub fetch_folder_local: PathBuf,
    /// Data files' folder on the staging server.
    pub data_folder: String,
    /// Log files' folder on the staging server.
    pub log_folder: String,
    /// The largest restore (all data and log files) the staging disk takes, bytes.
    pub largest_restore: u64,
    /// Keep the drill database afterwards (default: dropped).
    pub keep: bool,
    /// Run DBCC CHECKDB.
    pub checkdb: bool,
    /// The recovery time objective the drill's total time is held to.
    pub rto: Option<Age>,
    /// SQL probes.
    pub probes: Vec<Probe>,
}

impl RestoreTest {
    /// Every restore test of the configuration folder, sorted by name.
    pub fn load_all(cfg: &ConfigDir) -> Result<Vec<RestoreTest>> {
        crate::config::toml_files(&cfg.dir.join("restore-tests"))?
            .iter()
            .map(|p| RestoreTest::load(p, &cfg.dir).and_then(|t| t.check_target(cfg)))
            .collect()
    }

    /// The restore test called `name` (or the file `name`).
    pub fn find(cfg: &ConfigDir, name: &str) -> Result<RestoreTest> {
        let as_path = PathBuf::from(name);
        if as_path.is_file() {
            return RestoreTest::load(&as_path, &cfg.dir)?.check_target(cfg);
        }
        let p = cfg.dir.join("restore-tests").join(format!("{name}.toml"));
        if p.is_file() {
            return RestoreTest::load(&p, &cfg.dir)?.check_target(cfg);
        }
        let known: Vec<String> = RestoreTest::load_all(cfg)
            .map(|all| all.into_iter().map(|t| t.name).collect())
            .unwrap_or_default();
        Err(Error::new(
            ErrorKind::Config,
            format!(
                "no restore test {name:?}: no {} (known: {})",
                p.display(),
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            ),
        ))
    }

    /// Loads one file; relative paths are relative to `config_dir`.
    pub fn load(path: &Path, config_dir: &Path) -> Result<RestoreTest> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let raw: RestoreTestFile = crate::config::parse_str(path, &text)?;
        let at = |span: std::ops::Range<usize>, key: &str, msg: String| {
            crate::policy::at_span(path, &text, span, key, msg)
        };
        let plain = |key: &str, msg: String| {
            Error::new(
                ErrorKind::Config,
                format!("{}: key `{key}`: {msg}", path.display()),
            )
            .with("file", path.display())
            .with("key", key)
        };
        let schedule = raw
            .schedule
            .as_ref()
            .map(|s| Cron::parse(s.get_ref()).map_err(|m| at(s.span(), "schedule", m)))
            .transpose()?;
        let point = match raw.source.point.get_ref().trim() {
            "latest" => DrillPoint::Latest,
            "random" => DrillPoint::Random,
            t => DrillPoint::At(crate::bakfile::MtfDate::parse_text(t).ok_or_else(|| {
                at(
                    raw.source.point.span(),
                    "source.point",
                    format!("{t:?}: write \"latest\", \"random\" or a time such as \"2026-11-25 03:00:00\""),
                )
            })?),
        };
        let st = &raw.staging;
        let connection = match (
            &st.connection_string_env,
            &st.connection_string_file,
            &st.connection_string_dpapi,
            &st.embedded_simulator,
        ) {
            (Some(var), None, None, None) => ConnectionSource::Env(var.clone()),
            (None, Some(f), None, None) => ConnectionSource::File(resolve(config_dir, f)),
            (None, None, Some(n), None) => {
                ConnectionSource::Dpapi(config_dir.to_path_buf(), n.clone())
            }
            // The sandbox's second simulator, for training.
            (None, None, None, Some(root)) => ConnectionSource::Embedded(resolve(config_dir, root)),
            _ => {
                return Err(plain(
                    "staging",
                    "needs exactly one of connection_string_env, connection_string_file, connection_string_dpapi, embedded_simulator".into(),
                ))
            }
        };
        let pattern = st.database.get_ref().clone();
        if !pattern.contains("{date}") {
            return Err(at(
                st.database.span(),
                "staging.database",
                format!("{pattern:?} has no {{date}}: a drill database is named by its day, so it is never a real database's name"),
            ));
        }
        if crate::config::is_filesystem_root(&st.fetch_folder_server) {
            return Err(plain(
                "staging.fetch_folder_server",
                "is the root of a drive: give the drill a folder of its own".into(),
            ));
        }
        let largest_restore = parse_size(st.largest_restore.get_ref()).ok_or_else(|| {
            at(
                st.largest_restore.span(),
                "staging.largest_restore",
                format!(
                    "{:?} is not a size: write it as 500GiB, 2TB or 800MiB",
                    st.largest_restore.get_ref()
                ),
            )
        })?;
        let mut probes = Vec::new();
        for (i, p) in raw.checks.probe.iter().enumerate() {
            let key = format!("checks.probe[{i}]");
            let sql = match (&p.sql, &p.count_table) {
                (Some(q), None) => q.clone(),
                (None, Some(t)) => format!(
                    "SELECT COUNT_BIG(*) FROM {}",
                    crate::sqlserver::catalog::table_name(t)
                ),
                _ => {
                    return Err(plain(
                        &key,
                        format!("probe {:?} needs exactly one of sql, count_table", p.name),
                    ))
                }
            };
            let expect = match (p.at_least, p.at_most, p.within_percent, &p.not_older_than) {
                (Some(a), None, None, None) => Expectation::AtLeast(a),
                (None, Some(b), None, None) => Expectation::AtMost(b),
                (Some(a), Some(b), None, None) => Expectation::Between(a, b),
                (None, None, Some(pct), None) if p.count_table.is_some() => {
                    Expectation::WithinPercentOfSource(pct)
                }
                (None, None, Some(_), None) => {
                    return Err(plain(
                        &format!("{key}.within_percent"),
                        "compares with the row count in the backup record: name the table with count_table (and list it in the policy's [backup] count_rows)".into(),
                    ))
                }
                (None, None, None, Some(d)) if d == "rpo" => Expectation::NotOlderThanRpo,
                (None, None, None, Some(d)) => Expectation::NotOlderThan(
                    Age::parse(d).map_err(|m| plain(&format!("{key}.not_older_than"), m))?,
                ),
                _ => {
                    return Err(plain(
                        &key,
                        format!(
                            "probe {:?} needs one expectation: at_least and/or at_most, within_percent, or not_older_than",
                            p.name
                        ),
                    ))
                }
            };
            probes.push(Probe {
                name: p.name.clone(),
                sql,
                count_table: p.count_table.clone(),
                expect,
            });
        }
        Ok(RestoreTest {
            name: path
                .file_stem()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or_default(),
            file: path.to_path_buf(),
            description: raw.description,
            schedule,
            policy: raw.source.policy,
            database: raw.source.database,
            target: raw.source.target,
            point,
            staging_name: st.name.clone(),
            staging_connection: connection,
            staging_encryption: st.encryption,
            production: st.production,
            database_pattern: pattern,
            fetch_folder_local: st
                .fetch_folder_local
                .as_ref()
                .map(|p| resolve(config_dir, p))
                .unwrap_or_else(|| PathBuf::from(&st.fetch_folder_server)),
            fetch_folder_server: st.fetch_folder_server.clone(),
            log_folder: st
                .log_folder
                .clone()
                .unwrap_or_else(|| st.data_folder.clone()),
            data_folder: st.data_folder.clone(),
            largest_restore,
            keep: st.keep,
            checkdb: raw.checks.checkdb,
            rto: raw.checks.rto,
            probes,
        })
    }

    /// Refuses a `source.target` the configuration does not have.
    fn check_target(self, cfg: &ConfigDir) -> Result<RestoreTest> {
        if let Some(t) = &self.target {
            if !cfg.targets.contains_key(t) {
                let known: Vec<&str> = cfg.targets.keys().map(String::as_str).collect();
                return Err(Error::new(
                    ErrorKind::Config,
                    format!(
                        "{}: key `source.target`: no storage target named {t:?} (known: {})",
                        self.file.display(),
                        known.join(", ")
                    ),
                )
                .with("file", self.file.display())
                .with("key", "source.target"));
            }
        }
        Ok(self)
    }

    /// The staging instance; reads its connection string now.
    pub fn staging_spec(&self) -> Result<InstanceSpec> {
        Ok(InstanceSpec {
            name: self.staging_name.clone(),
            endpoint: self
                .staging_connection
                .endpoint(&self.staging_name, &self.file)?,
            encryption: self.staging_encryption,
        })
    }

    /// The policy it restores, loaded.
    pub fn load_policy(&self, cfg: &ConfigDir) -> Result<Policy> {
        Policy::find(&cfg.dir, &self.policy).map_err(|e| e.with("restore_test", &self.name))
    }

    /// The drill database's name on `date` (yyyymmdd).
    pub fn database_name(&self, date: &str) -> String {
        self.database_pattern
            .replace("{database}", &self.database)
            .replace("{date}", date)
    }
}

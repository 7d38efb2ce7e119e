//! `pacsbak sandbox`: pacsbak end to end on the bundled simulator, in one folder.
//!
//! The folder becomes a configuration folder (`--config DIR` works for every other
//! command): pacsbak.toml with a passphrase file, a local-folder storage target, a
//! policy whose instance is the embedded simulator (started in-process on a
//! loopback port by whichever command needs it, over the same TDS path as a real
//! server), a PACS server program folder and two workstations (one switched off).
//! A run takes the nightly plan once (full on the first run, then differential and
//! log with simulated PACS work in between, program folders, offsite, read back),
//! a manual pre-upgrade backup, plans a restore from the repository alone, and
//! runs a DR drill into a second embedded simulator (the staging instance).
//! Running it again on the same folder continues from the state it left.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use tracing::{info_span, Instrument};

use super::db_backup::{self, DbBackupOptions, DbBackupRun};
use super::folders::{self, FoldersRun};
use super::manual::{self, ManualRun};
use super::{restore_db, Progress, Target};
use crate::bakfile::RestorePlan;
use crate::config::{read_secret_file, ConfigDir};
use crate::error::{Error, ErrorKind, Result};
use crate::policy::Policy;
use crate::records::BackupKind;
use crate::repository::Repository;
use crate::sqlserver::Instance;

/// What a sandbox run did.
#[derive(Debug, Clone, Serialize)]
pub struct SandboxReport {
    /// The folder (also the configuration folder).
    pub dir: String,
    /// Whether this run created it.
    pub first_run: bool,
    /// Nightly database backups, in order.
    pub nightly: Vec<DbBackupRun>,
    /// Program folders.
    pub folders: FoldersRun,
    /// The manual pre-upgrade backup.
    pub manual: ManualRun,
    /// The restore plan from the repository alone.
    pub plan: RestorePlan,
    /// The DR drill (restore-tests/sandbox-drill.toml).
    pub drill: crate::drills::DrillRecord,
    /// Snapshots in the repository now.
    pub snapshots: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Everything worked.
    pub ok: bool,
}

fn write(path: &Path, text: &str) -> Result<()> {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).map_err(|e| Error::io(p, e))?;
    }
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

fn toml_str(p: &Path) -> String {
    format!("'{}'", p.display())
}

/// Creates the folder's configuration when it is not there yet; returns whether it did.
pub fn prepare(dir: &Path) -> Result<bool> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let dir = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
    // Where the suggested `restore db run` puts the drill database's files.
    let drill = dir.join("drill");
    std::fs::create_dir_all(&drill).map_err(|e| Error::io(&drill, e))?;
    // Folders made before drills existed get the drill too.
    let drill_test = dir.join("restore-tests/sandbox-drill.toml");
    if !drill_test.is_file() {
        write(&drill_test, &sandbox_drill(&dir))?;
    }
    if dir.join("pacsbak.toml").is_file() {
        return Ok(false);
    }
    use rand::Rng;
    let pass: String = rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let pass_file = dir.join("repository.pass");
    write(&pass_file, &format!("{pass}\n"))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pass_file, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io(&pass_file, e))?;
    }
    write(
        &dir.join("storage-targets/offsite.toml"),
        "# The sandbox's offsite repository: a local folder (in production, a NAS or S3).\nservice = \"fs\"\ndescription = \"sandbox repository\"\nroot = \"repository\"\n",
    )?;
    let backups = dir.join("backups");
    std::fs::create_dir_all(&backups).map_err(|e| Error::io(&backups, e))?;
    let server = dir.join("pacs-server");
    write(
        &server.join("config/pacs.ini"),
        "[archive]\nroot=\\\\pacs\\store\nvendor=Sandbox PACS 7.2\n",
    )?;
    write(&server.join("bin/version.txt"), "7.2.0\n")?;
    write(
        &dir.join("workstations/diagnostic-1/viewer.ini"),
        "[viewer]\nlayout=2x2\n",
    )?;
    let policy = format!(
        r#"# The sandbox policy: the PACS database of the embedded simulator, the nightly plan
# of a PACS site, a local-folder repository. See policies/pacs.toml for a real one.
description = "pacsbak sandbox"

[instance]
name = 'SANDBOX\PACSSIM'
# The bundled SQL Server simulator, state in this folder, started in-process on a
# loopback port by whichever command needs it. A real instance names
# connection_string_env or connection_string_file instead.
embedded_simulator = "simulator"
encryption = "off"

[databases]
include = ["PACS"]

[schedule]
full = "0 1 * * SUN"
diff = "0 1 * * MON-SAT"
log = "*/15 * * * *"

[backup]
server_folder = {backups}
compression = true
stall_minutes = 2
count_rows = ["dbo.Study"]

[offsite]
targets = ["offsite"]

[rpo]
default_minutes = 1440
[rpo.databases]
PACS = 60

[[folders]]
name = "pacs-server"
role = "server"
path = "pacs-server"
schedule = "30 2 * * *"

[[folders]]
name = "diagnostic-1"
role = "workstation"
path = "workstations/diagnostic-1"
schedule = "0 13 * * MON-FRI"

[[folders]]
name = "registration-1"
role = "workstation"
# Switched off: reported as missed, never a failure of the run.
path = "workstations/registration-1-offline"
schedule = "0 13 * * MON-FRI"
"#,
        backups = toml_str(&backups)
    );
    write(&dir.join("policies/sandbox.toml"), &policy)?;
    write(
        &dir.join("pacsbak.toml"),
        "# The sandbox's configuration folder: use it with `pacsbak --config THIS_FOLDER ...`.\n[repository]\n# Generated for the sandbox; never commit a real passphrase anywhere.\npassword_file = \"repository.pass\"\ndefault_target = \"offsite\"\n",
    )?;
    Ok(true)
}

/// The sandbox's restore test: the PACS database from the repository into a second
/// embedded simulator standing in for the staging server.
fn sandbox_drill(dir: &Path) -> String {
    let drill = dir.join("drill");
    format!(
        r#"# The sandbox's DR drill (see restore-tests/pacs-monthly.toml for a real one):
# PACS from the offsite repository into a second simulator, the staging server.
description = "sandbox DR drill"

[source]
policy = "sandbox"
database = "PACS"
target = "offsite"
point = "latest"

[staging]
name = 'SANDBOX\STAGING'
# A second bundled simulator, state in this folder. A real staging server names
# connection_string_env, connection_string_file or connection_string_dpapi.
embedded_simulator = "staging-simulator"
encryption = "off"
fetch_folder_server = {fetch}
data_folder = {data}
largest_restore = "10GiB"

[checks]
checkdb = true
rto = "10min"

[[checks.probe]]
name = "studies are there"
sql = "SELECT COUNT(*) FROM dbo.Study"
at_least = 1

[[checks.probe]]
name = "study count matches the source"
count_table = "dbo.Study"
within_percent = 25

[[checks.probe]]
name = "newest study within the RPO"
sql = "SELECT MAX(StudyDate) FROM dbo.Study"
not_older_than = "rpo"
"#,
        fetch = toml_str(&drill.join("fetch")),
        data = toml_str(&drill.join("data")),
    )
}

/// Runs the sandbox in `dir`.
pub async fn run(dir: &Path, progress: Option<Progress>) -> Result<SandboxReport> {
    let span = info_span!("job", job = "sandbox", dir = %dir.display());
    async {
        let started = Instant::now();
        let first_run = prepare(dir)?;
        let dir: PathBuf = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        let cfg = ConfigDir::load(&dir)?;
        let policy = Policy::find(&dir, "sandbox")?;
        let pass = read_secret_file(&dir.join("repository.pass"))?;
        let t = cfg.target(Some("offsite"))?;
        let storage = crate::storage::open_new_target(t)?;
        let repo = match Repository::open(storage.clone(), &pass).await {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::Config => Repository::init(storage, &pass).await?,
            Err(e) => return Err(e),
        };
        let targets = vec![Target {
            name: t.name.clone(),
            repo: repo.clone(),
        }];
        let instance = Instance::open(&policy.instance_spec()?).await?;
        let mut sql = instance.connect().await?;
        let opts = |kind| DbBackupOptions {
            kind: Some(kind),
            progress: progress.clone(),
            ..DbBackupOptions::default()
        };
        let mut nightly = Vec::new();
        let has_full = crate::sqlserver::catalog::has_full_base(&mut sql, "PACS").await?;
        // A day of PACS work, then the nightly plan.
        sql.exec("SIMCTL ADVANCE HOURS = 20, IMAGES = 400").await?;
        if first_run || !has_full {
            nightly
                .push(db_backup::run(&policy, &instance, &targets, &opts(BackupKind::Full)).await?);
            sql.exec("SIMCTL ADVANCE HOURS = 4, IMAGES = 200").await?;
        }
        nightly.push(db_backup::run(&policy, &instance, &targets, &opts(BackupKind::Diff)).await?);
        sql.exec("SIMCTL ADVANCE MINUTES = 15, IMAGES = 40").await?;
        nightly.push(db_backup::run(&policy, &instance, &targets, &opts(BackupKind::Log)).await?);
        let folders = folders::run(
            &policy,
            &targets,
            &folders::FolderFilter::default(),
            false,
            &[],
            &Default::default(),
        )
        .await;
        sql.exec("SIMCTL ADVANCE MINUTES = 10, IMAGES = 20").await?;
        let manual = manual::run(
            &policy,
            &instance,
            &targets,
            "sandbox: before the PACS 7.3 upgrade",
            progress.clone(),
        )
        .await?;
        let plan = restore_db::plan_from_repository(&repo, "PACS", None).await?;
        let test = crate::drills::RestoreTest::find(&cfg, "sandbox-drill")?;
        std::fs::create_dir_all(dir.join("drill/data")).map_err(|e| Error::io(&dir, e))?;
        let mut drill = crate::drills::run(&cfg, &test, &Default::default()).await;
        crate::drills::save_report(&cfg, &mut drill, None)?;
        let snapshots = repo.snapshots().await?.len();
        let ok = nightly.iter().all(|n| n.ok) && folders.ok && manual.ok && plan.ok && drill.ok;
        Ok(SandboxReport {
            dir: dir.display().to_string(),
            first_run,
            nightly,
            folders,
            manual,
            plan,
            drill,
            snapshots,
            seconds: started.elapsed().as_secs_f64(),
            ok,
        })
    }
    .instrument(span)
    .await
}

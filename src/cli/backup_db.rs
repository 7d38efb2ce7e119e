//! `backup db`, `backup folders`, `backup manual`: the policy jobs of src/jobs/,
//! rendered by src/render/.

use std::process::ExitCode;

use super::context::{finish, load_policy, runtime, terminal_progress};
use super::GlobalArgs;
use crate::jobs::db_backup::{self, DbBackupOptions};
use crate::jobs::folders;
use crate::jobs::{manual, open_targets};
use crate::outcome::Outcome;
use crate::records::BackupKind;
use crate::sqlserver::Instance;

/// `backup db`.
pub fn run_db(
    global: &GlobalArgs,
    policy: &str,
    kind: Option<BackupKind>,
    database: Option<String>,
) -> anyhow::Result<ExitCode> {
    let (cfg, policy) = load_policy(global, policy)?;
    let rt = runtime()?;
    rt.block_on(async {
        let targets = open_targets(&cfg, &policy).await?;
        let instance = Instance::open(&policy.instance_spec()?).await?;
        let opts = DbBackupOptions {
            kind,
            database,
            progress: terminal_progress(global.json),
            ..DbBackupOptions::default()
        };
        let mut r = db_backup::run(&policy, &instance, &targets.open, &opts).await?;
        r.note_unreachable(&targets.unreachable);
        finish(&Outcome::BackupDb(r), global.json)
    })
}

/// `backup folders`.
pub fn run_folders(
    global: &GlobalArgs,
    policy: &str,
    names: Vec<String>,
    due: bool,
) -> anyhow::Result<ExitCode> {
    let (cfg, policy) = load_policy(global, policy)?;
    policy.check_folder_names(&names)?;
    let filter = folders::FolderFilter {
        names,
        due: due.then(crate::clock::current),
    };
    let rt = runtime()?;
    rt.block_on(async {
        let r = folders::run_for_policy(&cfg, &policy, &filter).await?;
        finish(&Outcome::BackupFolders(r), global.json)
    })
}

/// `backup manual`.
pub fn run_manual(global: &GlobalArgs, policy: &str, reason: &str) -> anyhow::Result<ExitCode> {
    let (cfg, policy) = load_policy(global, policy)?;
    let rt = runtime()?;
    rt.block_on(async {
        let targets = open_targets(&cfg, &policy).await?;
        let instance = Instance::open(&policy.instance_spec()?).await?;
        let mut r = manual::run(
            &policy,
            &instance,
            &targets.open,
            reason,
            terminal_progress(global.json),
        )
        .await?;
        r.note_unreachable(&targets.unreachable);
        finish(&Outcome::BackupManual(r), global.json)
    })
}

//! What every repository command needs: the config folder, a runtime, the repository.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::GlobalArgs;
use crate::config::{repository_passphrase, ConfigDir, Passphrase};
use crate::repository::Repository;
use crate::storage::Storage;

/// The configuration folder named by `--config`, `PACSBAK_CONFIG` or the current folder.
pub fn config_dir(global: &GlobalArgs) -> PathBuf {
    global.config.clone().unwrap_or_else(|| PathBuf::from("."))
}

/// Loads the configuration folder.
pub fn load_config(global: &GlobalArgs) -> anyhow::Result<ConfigDir> {
    let dir = config_dir(global);
    let cfg = ConfigDir::load(&dir)?;
    crate::clock::install(crate::clock::Clock::system(cfg.main.time_zone.as_deref())?);
    Ok(cfg)
}

/// A multi-threaded runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The storage of `--target` (or the only target) and the passphrase; `new` creates
/// a local folder that does not exist yet (for `repo init`).
pub fn target_and_passphrase(
    global: &GlobalArgs,
    target: Option<&str>,
    new: bool,
) -> anyhow::Result<(Arc<dyn Storage>, Passphrase)> {
    let cfg = load_config(global)?;
    let t = cfg.target(target)?;
    let storage = if new {
        crate::storage::open_new_target(t)?
    } else {
        crate::storage::open_target(t)?
    };
    let pass = repository_passphrase(&cfg.main, &cfg.dir)?;
    Ok((storage, pass))
}

/// Opens the repository on `--target`.
pub async fn open_repository(
    global: &GlobalArgs,
    target: Option<&str>,
) -> anyhow::Result<Repository> {
    let cfg = load_config(global)?;
    let t = cfg.target(target)?;
    let pass = repository_passphrase(&cfg.main, &cfg.dir)?;
    crate::jobs::open_repository(t, &pass)
        .await
        .with_context(|| format!("cannot open the repository on target {:?}", t.name))
}

/// Prints `value` as pretty JSON on stdout.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    crate::render::write_json(&mut std::io::stdout().lock(), value)?;
    Ok(())
}

/// The exit code of a command whose report says whether everything was done: 0, or
/// 1 (something found damaged or not done), as for [`crate::outcome::Outcome`].
pub fn done(ok: bool) -> ExitCode {
    ExitCode::from(if ok { 0 } else { 1 })
}

/// Prints a job's outcome (text, or JSON with `--json`) and gives its exit code.
pub fn finish(outcome: &crate::outcome::Outcome, json: bool) -> anyhow::Result<ExitCode> {
    super::journal::keep_outcome(outcome);
    crate::render::print(outcome, json)?;
    Ok(ExitCode::from(outcome.exit_code()))
}

/// The configuration folder and the policy named by `--policy`.
pub fn load_policy(
    global: &GlobalArgs,
    policy: &str,
) -> anyhow::Result<(ConfigDir, crate::policy::Policy)> {
    let cfg = load_config(global)?;
    let p = crate::policy::Policy::find(&cfg.dir, policy)?;
    Ok((cfg, p))
}

/// A progress display on stderr when it is a terminal (and not with `--json`).
pub fn terminal_progress(json: bool) -> Option<crate::jobs::Progress> {
    use std::io::IsTerminal;
    if json || !std::io::stderr().is_terminal() {
        return None;
    }
    Some(std::sync::Arc::new(|what: &str, pct: f64| {
        let width = 30usize;
        let filled = ((pct / 100.0) * width as f64).round() as usize;
        eprint!(
            "\r  {what:<24} [{}{}] {pct:>3.0}%",
            "#".repeat(filled.min(width)),
            " ".repeat(width - filled.min(width))
        );
        if pct >= 100.0 {
            eprintln!();
        }
    }))
}

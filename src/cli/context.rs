//! What every repository command needs: the config folder, a runtime, the repository.

use std::path::PathBuf;
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
    Ok(ConfigDir::load(&dir)?)
}

/// A multi-threaded runtime for one command.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The storage of `--target` (or the only target) and the passphrase.
pub fn target_and_passphrase(
    global: &GlobalArgs,
    target: Option<&str>,
) -> anyhow::Result<(Arc<dyn Storage>, Passphrase)> {
    let cfg = load_config(global)?;
    let t = cfg.target(target)?;
    let storage = t.open()?;
    let pass = repository_passphrase(&cfg.main, &cfg.dir)?;
    Ok((storage, pass))
}

/// Opens the repository on `--target`.
pub async fn open_repository(
    global: &GlobalArgs,
    target: Option<&str>,
) -> anyhow::Result<Repository> {
    let (storage, pass) = target_and_passphrase(global, target)?;
    let name = storage.name().to_string();
    Repository::open(storage, &pass)
        .await
        .with_context(|| format!("cannot open the repository on target {name:?}"))
}

/// Prints `value` as pretty JSON.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Human-readable byte counts.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
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

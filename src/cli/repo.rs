//! `pacsbak repo init` and `pacsbak repo key add|list|remove`.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::context::{open_repository, print_json, runtime, target_and_passphrase};
use super::GlobalArgs;
use crate::config::read_secret_file;
use crate::repository::{RepoConfig, Repository};

/// Repository administration.
#[derive(Debug, Args)]
pub struct RepoArgs {
    #[command(subcommand)]
    command: RepoCommand,
}

#[derive(Debug, Subcommand)]
enum RepoCommand {
    /// Create a new repository on a storage target.
    Init {
        /// Storage target (optional when there is only one).
        #[arg(long)]
        target: Option<String>,
        /// Share the keys and parameters of the repository on this target, so
        /// `pacsbak copy` can move packs to the new one without re-encrypting.
        #[arg(long)]
        copy_keys_from: Option<String>,
        /// Tuning for benchmarks: average chunk size in KiB (min = avg/4, max = avg*4).
        #[arg(long, hide = true)]
        avg_chunk_kib: Option<u32>,
        /// Tuning for benchmarks: zstd level.
        #[arg(long, hide = true)]
        zstd_level: Option<i32>,
        /// Tuning for benchmarks: group size in KiB.
        #[arg(long, hide = true)]
        group_kib: Option<u32>,
    },
    /// Manage the passphrases (key slots) that open the repository.
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Add a passphrase, read from PACSBAK_NEW_PASSWORD or --new-password-file.
    Add {
        /// Storage target.
        #[arg(long)]
        target: Option<String>,
        /// File holding the new passphrase (mode 600).
        #[arg(long)]
        new_password_file: Option<std::path::PathBuf>,
        /// Who or what the slot is for.
        #[arg(long, default_value = "")]
        label: String,
    },
    /// List key slots.
    List {
        /// Storage target.
        #[arg(long)]
        target: Option<String>,
    },
    /// Remove a key slot by id (prefix).
    Remove {
        /// Storage target.
        #[arg(long)]
        target: Option<String>,
        /// Slot id or unique prefix.
        id: String,
    },
}

/// Runs `repo ...`.
pub fn run(global: &GlobalArgs, args: RepoArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    rt.block_on(async {
        match args.command {
            RepoCommand::Init { target, copy_keys_from: Some(from), .. } => {
                let (storage, pass) = target_and_passphrase(global, target.as_deref(), true)?;
                let name = storage.name().to_string();
                let src = open_repository(global, Some(&from)).await?;
                let repo = Repository::init_copy_of(storage, &pass, &src)
                    .await
                    .with_context(|| format!("cannot create a repository on target {name:?}"))?;
                if global.json {
                    print_json(&serde_json::json!({"target": name, "repository": repo.config().id.to_hex(), "keys_from": from}))?;
                } else {
                    println!("created repository {} on target {name}, sharing the keys of {from}", repo.config().id.short());
                }
            }
            RepoCommand::Init { target, copy_keys_from: None, avg_chunk_kib, zstd_level, group_kib } => {
                let (storage, pass) = target_and_passphrase(global, target.as_deref(), true)?;
                let name = storage.name().to_string();
                let config = RepoConfig::new_default().tuned(avg_chunk_kib, zstd_level, group_kib)?;
                let repo = Repository::init_with(storage, &pass, config)
                    .await
                    .with_context(|| format!("cannot create a repository on target {name:?}"))?;
                if global.json {
                    print_json(&serde_json::json!({"target": name, "repository": repo.config().id.to_hex()}))?;
                } else {
                    println!("created repository {} on target {name}", repo.config().id.short());
                    println!("keep the passphrase safe: without it the backups cannot be read");
                }
            }
            RepoCommand::Key { command } => match command {
                KeyCommand::Add { target, new_password_file, label } => {
                    let repo = open_repository(global, target.as_deref()).await?;
                    let new = match new_password_file {
                        Some(f) => read_secret_file(&f)?,
                        None => zeroize::Zeroizing::new(std::env::var("PACSBAK_NEW_PASSWORD").map_err(|_| {
                            anyhow::anyhow!("give the new passphrase in PACSBAK_NEW_PASSWORD or --new-password-file")
                        })?),
                    };
                    let id = repo.add_key(&new, &label).await?;
                    if global.json {
                        print_json(&serde_json::json!({"added": id.to_hex()}))?;
                    } else {
                        println!("added key slot {}", id.short());
                    }
                }
                KeyCommand::List { target } => {
                    let (_, pass) = target_and_passphrase(global, target.as_deref(), false)?;
                    let repo = open_repository(global, target.as_deref()).await?;
                    let keys = repo.list_keys(&pass).await?;
                    if global.json {
                        print_json(&keys)?;
                    } else {
                        println!("{:<10} {:<8} {:<20} {:<25} label", "id", "current", "host", "created");
                        for k in keys {
                            println!(
                                "{:<10} {:<8} {:<20} {:<25} {}",
                                k.id.short(),
                                if k.current { "*" } else { "" },
                                k.hostname,
                                k.created.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                                k.label
                            );
                        }
                    }
                }
                KeyCommand::Remove { target, id } => {
                    let (_, pass) = target_and_passphrase(global, target.as_deref(), false)?;
                    let repo = open_repository(global, target.as_deref()).await?;
                    let removed = repo.remove_key(&pass, &id).await?;
                    if global.json {
                        print_json(&serde_json::json!({"removed": removed.to_hex()}))?;
                    } else {
                        println!("removed key slot {}", removed.short());
                    }
                }
            },
        }
        Ok(ExitCode::SUCCESS)
    })
}

//! `pacsbak secret set NAME`: a secret (the repository passphrase, a connection
//! string) stored with Windows DPAPI in the configuration folder's `secrets/`,
//! read from standard input so it never appears in a command line or history.

use std::io::BufRead;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::context::config_dir;
use super::GlobalArgs;

/// Options of `secret`.
#[derive(Debug, Args)]
pub struct SecretArgs {
    #[command(subcommand)]
    command: SecretCommand,
}

#[derive(Debug, Subcommand)]
enum SecretCommand {
    /// Store a secret read from standard input (its first line), protected by DPAPI
    /// for the account running this command (run it as the service account), or
    /// for the machine with --machine. Name it in the configuration with
    /// `password_dpapi` or `connection_string_dpapi`.
    Set {
        /// The secret's name: letters, digits, - and _.
        name: String,
        /// Any account of this machine may read it (default: only this account).
        #[arg(long)]
        machine: bool,
    },
}

/// Runs `secret`.
pub fn run(global: &GlobalArgs, args: SecretArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        SecretCommand::Set { name, machine } => {
            let mut line = zeroize::Zeroizing::new(String::new());
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the secret from standard input")?;
            // Windows PowerShell may lead piped text with a byte-order mark.
            let secret = line
                .trim_start_matches('\u{feff}')
                .trim_end_matches(['\r', '\n']);
            if secret.is_empty() {
                anyhow::bail!("no secret on standard input: pipe it in, e.g. `Get-Content pass.txt | pacsbak secret set {name}`, then delete the file");
            }
            let path = crate::config::dpapi::store(&config_dir(global), &name, secret, machine)?;
            if global.json {
                super::context::print_json(
                    &serde_json::json!({"secret": name, "file": path, "machine": machine}),
                )?;
            } else {
                println!("secret {name} stored in {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

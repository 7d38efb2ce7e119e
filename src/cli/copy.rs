//! `pacsbak copy --from A --to B [--to C]`: snapshots B lacks, only what B lacks.
//!
//! Each destination is copied on its own: one that is down is reported as a failure
//! (exit 1) while the others still get their copy.

use std::process::ExitCode;

use clap::Args;

use super::context::{finish, load_config, runtime};
use super::GlobalArgs;
use crate::outcome::Outcome;

/// Copy snapshots between targets.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// Source target.
    #[arg(long)]
    from: String,
    /// Destination target(s). One created with `repo init --copy-keys-from SOURCE`
    /// receives packs as they are; one with keys of its own gets every chunk
    /// decrypted and sealed anew (slower; must open with the same passphrase).
    #[arg(long, required = true)]
    to: Vec<String>,
}

/// Runs `copy`.
pub fn run(global: &GlobalArgs, args: CopyArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(global)?;
    let rt = runtime()?;
    rt.block_on(async {
        let run = crate::jobs::copy::run(&cfg, &args.from, &args.to).await?;
        finish(&Outcome::Copy(run), global.json)
    })
}

//! `pacsbak copy --from A --to B [--to C]`: snapshots B lacks, only what B lacks.
//!
//! Each destination is copied on its own: one that is down is reported as a failure
//! (exit 1) while the others still get their copy.

use std::process::ExitCode;

use clap::Args;

use super::context::{finish, open_repository, runtime};
use super::GlobalArgs;
use crate::outcome::{CopyRun, CopyTarget, Outcome, Status};

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
    let rt = runtime()?;
    rt.block_on(async {
        let src = open_repository(global, Some(&args.from)).await?;
        let mut targets = Vec::new();
        for to in &args.to {
            let copied = match open_repository(global, Some(to)).await {
                Ok(dest) => src.copy_to(&dest).await.map_err(anyhow::Error::from),
                Err(e) => Err(e),
            };
            targets.push(match copied {
                Ok(r) => CopyTarget {
                    target: to.clone(),
                    status: Status::Ok,
                    ok: true,
                    report: Some(r),
                    error: None,
                },
                Err(e) => CopyTarget {
                    target: to.clone(),
                    status: Status::Failed,
                    ok: false,
                    report: None,
                    error: Some(super::error_record(&e)),
                },
            });
        }
        let failed = targets.iter().filter(|t| !t.ok).count();
        let outcome = Outcome::Copy(CopyRun {
            from: args.from.clone(),
            targets,
            failed,
            ok: failed == 0,
        });
        finish(&outcome, global.json)
    })
}

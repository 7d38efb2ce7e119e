//! `pacsbak copy --from A --to B [--to C]`: snapshots B lacks, only what B lacks.
//!
//! Each destination is copied on its own: one that is down is reported as a failure
//! (exit 1) while the others still get their copy.

use std::process::ExitCode;

use clap::Args;

use super::context::{human_bytes, open_repository, print_json, runtime};
use super::GlobalArgs;

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
        let mut results = Vec::new();
        let mut failed = 0;
        for to in &args.to {
            let outcome = match open_repository(global, Some(to)).await {
                Ok(dest) => src.copy_to(&dest).await.map_err(anyhow::Error::from),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(r) => {
                    if !global.json {
                        println!(
                            "{} -> {}{}: {} snapshots copied ({} already there), {} packs, {} sent",
                            r.from,
                            r.to,
                            if r.reencrypted {
                                " (other keys: re-encrypted)"
                            } else {
                                ""
                            },
                            r.copied.len(),
                            r.already_present,
                            r.packs_sent,
                            human_bytes(r.bytes_sent)
                        );
                    }
                    results.push(serde_json::json!({"target": to, "ok": true, "report": r}));
                }
                Err(e) => {
                    failed += 1;
                    if !global.json {
                        eprintln!("{} -> {to}: FAILED: {e:#}", args.from);
                    }
                    results.push(
                        serde_json::json!({"target": to, "ok": false, "error": format!("{e:#}")}),
                    );
                }
            }
        }
        if global.json {
            print_json(
                &serde_json::json!({"from": args.from, "targets": results, "failed": failed}),
            )?;
        }
        Ok(if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        })
    })
}

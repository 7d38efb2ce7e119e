//! `pacsbak target check NAME` and `pacsbak target list`.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::context::{load_config, print_json, runtime};
use super::GlobalArgs;
use crate::render::human_bytes;
use crate::storage::check::check_target;

/// Storage targets.
#[derive(Debug, Args)]
pub struct TargetArgs {
    #[command(subcommand)]
    command: TargetCommand,
}

#[derive(Debug, Subcommand)]
enum TargetCommand {
    /// Reach, authenticate, write/read/delete a probe object; latency and throughput.
    Check {
        /// Target name (the file stem under storage-targets/).
        name: String,
    },
}

/// Runs `target ...`.
pub fn run(global: &GlobalArgs, args: TargetArgs) -> anyhow::Result<ExitCode> {
    let TargetCommand::Check { name } = args.command;
    let cfg = load_config(global)?;
    let t = cfg.target(Some(&name))?;
    let rt = runtime()?;
    rt.block_on(async {
        let held = crate::storage::seen::held_before(t);
        let storage = crate::storage::open_target(t)?;
        let r = check_target(storage, t.append_only, held).await;
        if global.json {
            print_json(&r)?;
        } else {
            println!(
                "target {} ({:?}{})",
                r.target,
                t.service,
                if t.description.is_empty() {
                    String::new()
                } else {
                    format!(", {}", t.description)
                }
            );
            for s in &r.steps {
                let status = if s.ok { "ok" } else { "FAILED" };
                println!("  {:<7} {:<7} {:>9.1} ms", s.step, status, s.ms);
                if let Some(e) = &s.error {
                    println!("          {e}");
                }
            }
            if let Some(l) = r.latency_ms {
                println!("  latency {l:.1} ms");
            }
            if let (Some(u), Some(d)) = (r.upload_bytes_per_sec, r.download_bytes_per_sec) {
                println!(
                    "  upload {}/s, download {}/s (4 MiB probe)",
                    human_bytes(u as u64),
                    human_bytes(d as u64)
                );
            }
            match &r.diagnosis {
                None => println!("target {} is usable", r.target),
                Some(d) => println!("target {} is NOT usable: {d}", r.target),
            }
        }
        Ok(super::context::done(r.ok))
    })
}

//! `pacsbak sandbox [--dir DIR]`: see src/jobs/sandbox.rs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::context::{print_json, runtime, terminal_progress};
use super::GlobalArgs;
use crate::outcome::PlanOutcome;
use crate::render;

/// Arguments of `sandbox`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// The sandbox folder (created, or continued when it exists).
    #[arg(long, default_value = "pacsbak-sandbox")]
    pub dir: PathBuf,
    /// Keep running: the daemon on second-scale schedules, alerts to a local webhook
    /// receiver, the status as jobs run (Ctrl-C stops it).
    #[arg(long)]
    pub daemon: bool,
    /// With --daemon: stop after this many seconds.
    #[arg(long = "for", value_name = "SECONDS", requires = "daemon")]
    pub run_for: Option<u64>,
}

/// Runs the sandbox.
pub fn run(global: &GlobalArgs, a: SandboxArgs) -> anyhow::Result<ExitCode> {
    let rt = runtime()?;
    if a.daemon {
        return live(global, &a, &rt);
    }
    let r = rt.block_on(crate::jobs::sandbox::run(
        &a.dir,
        terminal_progress(global.json),
    ))?;
    if global.json {
        print_json(&r)?;
        return Ok(super::context::done(r.ok));
    }
    let d = &r.dir;
    println!(
        "pacsbak sandbox in {d} ({})\n",
        if r.first_run {
            "new"
        } else {
            "continued from its last run"
        }
    );
    println!("1. The nightly plan on the simulated PACS database (BACKUP WITH CHECKSUM, RESTORE VERIFYONLY, offsite, read back):");
    let mut out = std::io::stdout().lock();
    for n in &r.nightly {
        render::db_run(&mut out, n)?;
    }
    println!("\n2. Program folders (a switched-off workstation is missed, not a failure):");
    render::folders_run(&mut out, &r.folders)?;
    println!("\n3. Manual pre-upgrade backup (COPY_ONLY, pinned):");
    for l in &r.manual.restorable {
        println!("  {l}");
    }
    println!("\n4. Restore plan for PACS from the repository alone (as if msdb were gone):");
    render::plan(
        &mut out,
        &PlanOutcome {
            from: "the repository".into(),
            plan: r.plan.clone(),
        },
    )?;
    drop(out);
    println!(
        "\n5. DR drill: PACS from the repository into a second simulator (the staging server):"
    );
    render::print(&crate::outcome::Outcome::Drill(r.drill.clone()), false)?;
    println!("\nWhere everything is:");
    println!("  configuration   {d}  (pacsbak.toml, policies/sandbox.toml, storage-targets/offsite.toml)");
    println!("  repository      {d}/repository  ({} snapshots, encrypted; passphrase in {d}/repository.pass)", r.snapshots);
    println!("  backup files    {d}/backups  (as SQL Server wrote them)");
    println!("  simulator       {d}/simulator  (the embedded SQL Server's state; staging-simulator: the drill's)");
    if let Some(f) = &r.drill.report_file {
        println!("  drill report    {f}");
    }
    println!("\nTry next:");
    println!("  pacsbak --config {d} snapshots");
    println!("  pacsbak --config {d} check --policy sandbox");
    println!("  pacsbak --config {d} backup db --policy sandbox --type log");
    println!("  pacsbak --config {d} restore db plan --database PACS");
    println!("  pacsbak --config {d} drill run sandbox-drill");
    println!("  pacsbak --config {d} drill estimate --policy sandbox");
    println!("  pacsbak sandbox --dir {d}     (again: continues with the next day)");
    println!(
        "\n{} in {:.1} s",
        if r.ok {
            "Done"
        } else {
            "FINISHED WITH FAILURES"
        },
        r.seconds
    );
    Ok(super::context::done(r.ok))
}

/// `sandbox --daemon`: the first run when the folder is new, then the daemon live.
fn live(
    global: &GlobalArgs,
    a: &SandboxArgs,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<ExitCode> {
    use crate::jobs::sandbox_live::{self, LiveEvent};
    if !a.dir.join("pacsbak.toml").is_file() {
        rt.block_on(crate::jobs::sandbox::run(&a.dir, None))?;
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let json = global.json;
    let report = rt.block_on(async {
        let on_ctrl_c = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_ctrl_c.cancel();
            }
        });
        if !json {
            println!(
                "pacsbak sandbox, live: the daemon runs the sandbox policy every few seconds (Ctrl-C stops it)\n  configuration {}/live\n",
                a.dir.display()
            );
        }
        sandbox_live::run(
            &a.dir,
            a.run_for.map(std::time::Duration::from_secs),
            stop.clone(),
            |e| {
                if json {
                    return;
                }
                match e {
                    LiveEvent::JobEnded(job, status) => println!("  job    {job:<16} {status}"),
                    LiveEvent::Alert(a) => println!("  alert  {a}"),
                    LiveEvent::Status(dbs) => {
                        for (db, to, age, met) in dbs {
                            println!(
                                "  status {db}: restorable to {} ({} min old) {}",
                                to.as_deref().unwrap_or("-"),
                                age.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
                                if *met { "within RPO" } else { "RPO MISSED" }
                            );
                        }
                    }
                }
            },
        )
        .await
    })?;
    if json {
        print_json(&report)?;
    } else {
        println!(
            "\n{} jobs ({} ok), {} alerts received; {}",
            report.jobs,
            report.jobs_ok,
            report.alerts,
            if report.ok {
                "every database within its RPO"
            } else {
                "NOT every database is within its RPO"
            }
        );
    }
    Ok(super::context::done(
        report.ok && report.jobs == report.jobs_ok,
    ))
}

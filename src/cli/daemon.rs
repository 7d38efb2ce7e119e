//! `pacsbak daemon`: runs the schedules in the foreground until stopped
//! (src/scheduler/). SIGTERM and Ctrl-C stop it cleanly; SIGHUP reloads.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::context::{config_dir, load_config, runtime};
use super::GlobalArgs;
use crate::scheduler::{run_daemon, DaemonOptions};

/// Options of `daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
}

/// Runs the daemon until a stop signal.
pub fn run(global: &GlobalArgs, args: DaemonArgs) -> anyhow::Result<ExitCode> {
    let cfg = load_config(global)?;
    let clock = crate::clock::Clock::system(cfg.main.time_zone.as_deref())?;
    let shutdown = CancellationToken::new();
    let reload = Arc::new(Notify::new());
    let rt = runtime()?;
    let result = rt.block_on(async {
        listen_for_signals(shutdown.clone(), reload.clone())?;
        run_daemon(DaemonOptions {
            config_dir: config_dir(global),
            metrics: args.metrics,
            clock,
            shutdown,
            reload,
        })
        .await?;
        Ok(ExitCode::SUCCESS)
    });
    // Blocking work of an abandoned job (a pack being hashed) must not hold the
    // process past its promised stop.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

/// SIGTERM, SIGINT (Ctrl-C): stop. SIGHUP: reload.
#[cfg(unix)]
fn listen_for_signals(shutdown: CancellationToken, reload: Arc<Notify>) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = term.recv() => { tracing::info!("SIGTERM: stopping"); shutdown.cancel(); }
                _ = int.recv() => { tracing::info!("SIGINT: stopping"); shutdown.cancel(); }
                _ = hup.recv() => { tracing::info!("SIGHUP: reloading the configuration"); reload.notify_one(); }
            }
        }
    });
    Ok(())
}

/// Ctrl-C, Ctrl-Break, closing the console: stop (the service's stop comes through
/// `pacsbak service`).
#[cfg(windows)]
fn listen_for_signals(shutdown: CancellationToken, _reload: Arc<Notify>) -> anyhow::Result<()> {
    let mut ctrl_c = tokio::signal::windows::ctrl_c()?;
    let mut brk = tokio::signal::windows::ctrl_break()?;
    let mut close = tokio::signal::windows::ctrl_close()?;
    tokio::spawn(async move {
        tokio::select! {
            _ = ctrl_c.recv() => {}
            _ = brk.recv() => {}
            _ = close.recv() => {}
        }
        tracing::info!("stop requested");
        shutdown.cancel();
    });
    Ok(())
}

//! `pacsbak service install | uninstall`: the daemon as a Windows service, with the
//! account and recovery options a Windows administrator expects (automatic start,
//! restart after a failure, a description). `service run` is what the service
//! manager starts. On Linux the daemon runs under systemd
//! (examples/pacsbak.service).

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::GlobalArgs;

/// Options of `service`.
#[derive(Debug, Args)]
pub struct ServiceArgs {
    #[command(subcommand)]
    command: ServiceCommand,
}

#[derive(Debug, Subcommand)]
enum ServiceCommand {
    /// Register the daemon as the Windows service `pacsbak` (automatic start,
    /// restarted 1 minute after a failure).
    Install {
        /// The account it runs as: a virtual account (`NT SERVICE\pacsbak`, the
        /// default), a group managed service account (`DOMAIN\pacsbak$`), or a domain
        /// user with rights on the backup share. A user's password is read from
        /// PACSBAK_SERVICE_PASSWORD, never from the command line.
        #[arg(long)]
        account: Option<String>,
        /// Serve Prometheus metrics at this address.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
    },
    /// Stop and remove the service.
    Uninstall,
    /// Run as the service (the service manager starts this; not for a console).
    #[command(hide = true)]
    Run {
        /// Serve Prometheus metrics at this address.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<std::net::SocketAddr>,
    },
}

/// The service's name.
#[cfg_attr(not(windows), allow(dead_code))]
const SERVICE_NAME: &str = "pacsbak";

/// Runs `service`.
pub fn run(global: &GlobalArgs, args: ServiceArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        ServiceCommand::Install { account, metrics } => {
            windows::install(global, account.as_deref(), metrics)
        }
        ServiceCommand::Uninstall => windows::uninstall(),
        ServiceCommand::Run { metrics } => windows::run(global, metrics),
    }
}

#[cfg(not(windows))]
mod windows {
    use super::*;

    fn not_here() -> anyhow::Result<ExitCode> {
        anyhow::bail!(
            "`pacsbak service` registers a Windows service; on Linux install examples/pacsbak.service as a systemd unit (docs/operations.md, \"Running unattended\")"
        )
    }

    pub(super) fn install(
        _: &GlobalArgs,
        _: Option<&str>,
        _: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<ExitCode> {
        not_here()
    }

    pub(super) fn uninstall() -> anyhow::Result<ExitCode> {
        not_here()
    }

    pub(super) fn run(_: &GlobalArgs, _: Option<std::net::SocketAddr>) -> anyhow::Result<ExitCode> {
        not_here()
    }
}

#[cfg(windows)]
mod windows {
    use std::ffi::OsString;
    use std::sync::{Arc, OnceLock};
    use std::time::Duration;

    use anyhow::Context;
    use tokio::sync::Notify;
    use tokio_util::sync::CancellationToken;
    use windows_service::service::{
        ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
        ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
        ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
    };
    use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
    use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
    use windows_service::{define_windows_service, service_dispatcher};

    use super::*;
    use crate::cli::context::{config_dir, load_config};

    pub(super) fn install(
        global: &GlobalArgs,
        account: Option<&str>,
        metrics: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<ExitCode> {
        // The configuration must load before a service is made to run it.
        load_config(global)?;
        let dir = config_dir(global)
            .canonicalize()
            .context("cannot resolve the configuration folder")?;
        let manager = ServiceManager::local_computer(
            None::<&str>,
            ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
        )
        .context("cannot open the service manager: run this as an Administrator")?;
        let mut launch = vec![
            OsString::from("--config"),
            dir.into_os_string(),
            OsString::from("service"),
            OsString::from("run"),
        ];
        if let Some(m) = metrics {
            launch.push("--metrics".into());
            launch.push(m.to_string().into());
        }
        let account = account.unwrap_or(r"NT SERVICE\pacsbak");
        let password = std::env::var_os("PACSBAK_SERVICE_PASSWORD");
        let info = ServiceInfo {
            name: SERVICE_NAME.into(),
            display_name: "pacsbak backup and DR".into(),
            service_type: ServiceType::OWN_PROCESS,
            start_type: ServiceStartType::AutoStart,
            error_control: ServiceErrorControl::Normal,
            executable_path: std::env::current_exe()?,
            launch_arguments: launch,
            dependencies: vec![],
            account_name: Some(account.into()),
            account_password: password,
        };
        let service = manager
            .create_service(&info, ServiceAccess::CHANGE_CONFIG | ServiceAccess::START)
            .context("cannot create the service (does it exist already? `pacsbak service uninstall` first)")?;
        service.set_description(
            "SQL Server and PACS program backups, offsite, verified; scheduled by pacsbak's daemon",
        )?;
        let restart = ServiceAction {
            action_type: ServiceActionType::Restart,
            delay: Duration::from_secs(60),
        };
        let recovery = service
            .update_failure_actions(ServiceFailureActions {
                reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(24 * 3600)),
                reboot_msg: None,
                command: None,
                actions: Some(vec![restart.clone(), restart.clone(), restart]),
            })
            .and_then(|()| service.set_failure_actions_on_non_crash_failures(true));
        // The service exists now; a manager that takes no recovery options (Wine's
        // answers 124, ERROR_INVALID_LEVEL) leaves it without automatic restart:
        // said loudly, with what to do, and not an install failure.
        if let Err(e) = recovery {
            eprintln!(
                "WARNING: the service's recovery options (restart after a failure) could not be set: {e}. Set them in services.msc: Recovery, \"Restart the Service\" for every failure"
            );
        }
        println!(
            "service {SERVICE_NAME} installed, running as {account}; start it with `sc start {SERVICE_NAME}`"
        );
        Ok(ExitCode::SUCCESS)
    }

    pub(super) fn uninstall() -> anyhow::Result<ExitCode> {
        let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)
            .context("cannot open the service manager: run this as an Administrator")?;
        let service = manager
            .open_service(
                SERVICE_NAME,
                ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
            )
            .context("cannot open the service (is it installed?)")?;
        if service.query_status()?.current_state != ServiceState::Stopped {
            service.stop()?;
        }
        service.delete()?;
        println!("service {SERVICE_NAME} removed");
        Ok(ExitCode::SUCCESS)
    }

    /// What the service's main function needs, set before the dispatcher starts.
    struct Start {
        config_dir: std::path::PathBuf,
        metrics: Option<std::net::SocketAddr>,
    }

    static START: OnceLock<Start> = OnceLock::new();

    define_windows_service!(ffi_service_main, service_main);

    pub(super) fn run(
        global: &GlobalArgs,
        metrics: Option<std::net::SocketAddr>,
    ) -> anyhow::Result<ExitCode> {
        let _ = START.set(Start {
            config_dir: config_dir(global),
            metrics,
        });
        service_dispatcher::start(SERVICE_NAME, ffi_service_main)
            .context("cannot connect to the service manager (`service run` is for the service manager; use `pacsbak daemon` in a console)")?;
        Ok(ExitCode::SUCCESS)
    }

    fn service_main(_args: Vec<OsString>) {
        if let Err(e) = run_service() {
            tracing::error!(error = %format!("{e:#}"), "the service stopped on an error");
        }
    }

    fn run_service() -> anyhow::Result<()> {
        let start = START
            .get()
            .context("service started without its settings")?;
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let status =
            service_control_handler::register(SERVICE_NAME, move |control| match control {
                ServiceControl::Stop | ServiceControl::Shutdown | ServiceControl::Preshutdown => {
                    stop.cancel();
                    ServiceControlHandlerResult::NoError
                }
                ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
                _ => ServiceControlHandlerResult::NotImplemented,
            })?;
        let report = |state: ServiceState, exit: u32, wait: Duration| {
            let _ = status.set_service_status(ServiceStatus {
                service_type: ServiceType::OWN_PROCESS,
                current_state: state,
                controls_accepted: if state == ServiceState::Running {
                    ServiceControlAccept::STOP | ServiceControlAccept::SHUTDOWN
                } else {
                    ServiceControlAccept::empty()
                },
                exit_code: ServiceExitCode::Win32(exit),
                checkpoint: 0,
                wait_hint: wait,
                process_id: None,
            });
        };
        report(ServiceState::Running, 0, Duration::default());
        let result = (|| {
            let cfg = crate::config::ConfigDir::load(&start.config_dir)?;
            let clock = crate::clock::Clock::system(cfg.main.time_zone.as_deref())?;
            let rt = crate::cli::context::runtime()?;
            rt.block_on(crate::scheduler::run_daemon(
                crate::scheduler::DaemonOptions {
                    config_dir: start.config_dir.clone(),
                    metrics: start.metrics,
                    clock,
                    shutdown,
                    reload: Arc::new(Notify::new()),
                },
            ))?;
            Ok::<_, anyhow::Error>(())
        })();
        // ERROR_SERVICE_SPECIFIC_ERROR lets the recovery options restart it.
        report(
            ServiceState::Stopped,
            if result.is_ok() { 0 } else { 1066 },
            Duration::default(),
        );
        result
    }
}

//! The simulator's TCP server: accepts connections, bounds their number with a
//! semaphore, gives each a session id, and stops when the `shutdown` future
//! completes (a broadcast tells the sessions to end).

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::TcpListener;
use tokio::sync::{broadcast, Notify, Semaphore};

use super::engine::Instance;
use crate::{Error, ErrorKind};

/// The environment variable holding the `sa` password.
pub const SA_PASSWORD_ENV: &str = "PACSBAK_SIM_SA_PASSWORD";

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Folder holding the instance state, database files and msdb.
    pub root: PathBuf,
    /// Do not create the sample PACS database on an empty root.
    pub empty: bool,
    /// SQL logins: name and password (`sa` at least).
    pub logins: Vec<(String, String)>,
}

impl SimConfig {
    /// A configuration whose `sa` password comes from `PACSBAK_SIM_SA_PASSWORD`;
    /// refuses when it is unset or empty.
    pub fn from_env(root: PathBuf, empty: bool) -> Result<SimConfig, Error> {
        let pw = std::env::var(SA_PASSWORD_ENV).unwrap_or_default();
        if pw.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                format!("the simulator needs the sa password in {SA_PASSWORD_ENV}"),
            )
            .with("variable", SA_PASSWORD_ENV));
        }
        Ok(SimConfig {
            root,
            empty,
            logins: vec![("sa".into(), pw)],
        })
    }
}

/// State shared by all sessions.
pub struct Shared {
    inst: Mutex<Instance>,
    /// Logins by lower-case name.
    pub logins: HashMap<String, String>,
    /// Woken by `SIMCTL RESUME` (a paused backup continues).
    pub resume: Notify,
    /// Tells sessions the server stops.
    pub shutdown: broadcast::Sender<()>,
    /// How `KILL` reaches each connected session.
    pub kill_switches: Mutex<HashMap<u16, KillSwitch>>,
    next_spid: AtomicU16,
}

/// What `KILL n` pulls for session n: it cancels the statement running there (as an
/// ATTENTION would, so a BACKUP removes its partial file) and closes the connection.
#[derive(Clone)]
pub struct KillSwitch {
    /// The session's cancel flag, the one an ATTENTION sets.
    pub cancel: Arc<tokio::sync::watch::Sender<bool>>,
    /// Set once: the session is to end.
    pub killed: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Shared {
    /// Locks the instance. Never hold the guard across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, Instance> {
        self.inst.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The kill switches of connected sessions.
    pub fn kill_switches(&self) -> MutexGuard<'_, HashMap<u16, KillSwitch>> {
        self.kill_switches.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A simulator instance, opened and ready to serve.
pub struct Simulator {
    shared: Arc<Shared>,
}

impl Simulator {
    /// Opens (or creates) the instance under `config.root`.
    pub fn open(config: SimConfig) -> Result<Simulator, Error> {
        if !config
            .logins
            .iter()
            .any(|(n, p)| n.eq_ignore_ascii_case("sa") && !p.is_empty())
        {
            return Err(Error::new(
                ErrorKind::Config,
                format!("the simulator needs an sa password ({SA_PASSWORD_ENV})"),
            ));
        }
        let inst = Instance::open(&config.root, config.empty)?;
        let (shutdown, _) = broadcast::channel(1);
        Ok(Simulator {
            shared: Arc::new(Shared {
                inst: Mutex::new(inst),
                logins: config
                    .logins
                    .into_iter()
                    .map(|(n, p)| (n.to_ascii_lowercase(), p))
                    .collect(),
                resume: Notify::new(),
                shutdown,
                kill_switches: Mutex::new(HashMap::new()),
                next_spid: AtomicU16::new(51),
            }),
        })
    }

    /// Serves connections on `listener` until `shutdown` completes.
    pub async fn run(self, listener: TcpListener, shutdown: impl Future) -> Result<(), Error> {
        let limit = Arc::new(Semaphore::new(256));
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = &mut shutdown => break,
            };
            let (stream, _) = match accepted {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "simulator: accept failed");
                    continue;
                }
            };
            let Ok(permit) = limit.clone().acquire_owned().await else {
                break;
            };
            let spid = self.next_spid();
            let shared = self.shared.clone();
            tokio::spawn(async move {
                super::session::serve(shared, stream, spid).await;
                drop(permit);
            });
        }
        let _ = self.shared.shutdown.send(());
        Ok(())
    }

    fn next_spid(&self) -> u16 {
        let s = self.shared.next_spid.fetch_add(1, Ordering::Relaxed);
        if s > 32000 {
            self.shared.next_spid.store(51, Ordering::Relaxed);
        }
        s
    }
}

/// Opens the instance and serves on `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    config: SimConfig,
    shutdown: impl Future,
) -> Result<(), Error> {
    Simulator::open(config)?.run(listener, shutdown).await
}

//! Shared setup for the simulator tests: a simulator on port 0 in a temp folder,
//! tiberius connections to it, and helpers that run a statement and return its rows,
//! its first error number, or every error number it sent (tiberius reports only the
//! first; the others are read from its tracing events).

use std::sync::{Arc, Mutex};

use std::net::SocketAddr;

use pacsbak::simulator::{SimConfig, Simulator};
use tiberius::{AuthMethod, Client, Config, EncryptionLevel};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

pub const PW: &str = "Sim-Passw0rd!";

pub struct Sim {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub async fn start(empty: bool) -> Sim {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimConfig {
        root: dir.path().join("root"),
        empty,
        logins: vec![("sa".into(), PW.into())],
    };
    let sim = Simulator::open(cfg).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(sim.run(listener, async move {
        let _ = rx.await;
    }));
    Sim {
        addr,
        dir,
        _stop: tx,
    }
}

pub async fn connect(addr: SocketAddr) -> Client<Compat<TcpStream>> {
    let mut c = Config::new();
    c.host("127.0.0.1");
    c.port(addr.port());
    c.authentication(AuthMethod::sql_server("sa", PW));
    c.encryption(EncryptionLevel::NotSupported);
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    Client::connect(c, tcp.compat_write()).await.unwrap()
}

pub async fn rows(c: &mut Client<Compat<TcpStream>>, sql: &str) -> Vec<tiberius::Row> {
    c.simple_query(sql)
        .await
        .unwrap()
        .into_first_result()
        .await
        .unwrap()
}

pub async fn sql_err(c: &mut Client<Compat<TcpStream>>, sql: &str) -> u32 {
    match c.simple_query(sql).await {
        Ok(s) => match s.into_results().await {
            Ok(_) => panic!("expected an error from {sql}"),
            Err(tiberius::error::Error::Server(e)) => e.code(),
            Err(e) => panic!("{e}"),
        },
        Err(tiberius::error::Error::Server(e)) => e.code(),
        Err(e) => panic!("{e}"),
    }
}

/// Client over TCP, as the helpers take it.
pub type Conn = Client<Compat<TcpStream>>;

/// Runs a batch that must succeed, discarding its results.
pub async fn exec(c: &mut Conn, sql: &str) {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_results()
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Records the number and text of every ERROR token tiberius decodes (its
/// `tiberius` tracing events at level ERROR carry `code` and `message`).
#[derive(Clone, Default)]
struct ErrorTokens(Arc<Mutex<Vec<(u32, String)>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ErrorTokens {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        if *meta.level() != tracing::Level::ERROR || !meta.target().starts_with("tiberius") {
            return;
        }
        #[derive(Default)]
        struct Fields(Option<u32>, String);
        impl tracing::field::Visit for Fields {
            fn record_u64(&mut self, f: &tracing::field::Field, v: u64) {
                if f.name() == "code" {
                    self.0 = u32::try_from(v).ok();
                }
            }
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                if f.name() == "message" {
                    self.1 = format!("{v:?}");
                }
            }
        }
        let mut f = Fields::default();
        event.record(&mut f);
        if let Some(code) = f.0 {
            self.0.lock().unwrap().push((code, f.1));
        }
    }
}

/// Runs a batch that must fail and returns every error (number, message) the server
/// sent for it, in order. The tokens are captured on this thread: call it from a
/// current-thread `#[tokio::test]`.
pub async fn sql_errors(c: &mut Conn, sql: &str) -> Vec<(u32, String)> {
    use tracing_subscriber::layer::SubscriberExt;
    let seen = ErrorTokens::default();
    let subscriber = tracing_subscriber::registry().with(seen.clone());
    let failed = {
        let _guard = tracing::subscriber::set_default(subscriber);
        match c.simple_query(sql).await {
            Ok(s) => s.into_results().await.is_err(),
            Err(_) => true,
        }
    };
    assert!(failed, "expected an error from {sql}");
    let got = seen.0.lock().unwrap().clone();
    got
}

/// The error numbers of [`sql_errors`].
pub async fn sql_error_numbers(c: &mut Conn, sql: &str) -> Vec<u32> {
    sql_errors(c, sql)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

/// Asserts the connection still answers.
pub async fn assert_usable(c: &mut Conn) {
    let r = rows(c, "SELECT 42").await;
    assert_eq!(r[0].get::<i32, _>(0), Some(42));
}

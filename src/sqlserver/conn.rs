//! Connections: where an instance is (an ADO connection string, or the embedded
//! simulator of the sandbox), how the link is encrypted, and a small client over
//! tiberius that maps server errors to [`Error`]s carrying the server, the SQL
//! Server error number and its message.
//!
//! tiberius 0.13 returns the *first* ERROR token of a batch. For BACKUP and RESTORE
//! that is the cause (3201, 3202, 3183...), the message SQL Server sends before the
//! 3013 trailer, which is what the engineer needs; the trailer and any later errors
//! are only in tiberius' DEBUG/ERROR tracing events (see docs/decisions/).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tiberius::{AuthMethod, Client, ColumnData, Config, EncryptionLevel, Row};
use tokio::net::TcpStream;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};
use tracing::{debug, warn};
use zeroize::Zeroizing;

use crate::error::{Error, ErrorKind, Result};

/// How the link to SQL Server is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encryption {
    /// No TLS at all (ADO `encrypt=DANGER_PLAINTEXT`): logins and data cross the
    /// network readable. Only for the simulator or a loopback/isolated link.
    Off,
    /// TLS required (the default): TLS 1.2 or later with the system's TLS library.
    Required,
    /// TLS, accepting a server that speaks only TLS 1.0 (SQL Server 2008/2012 without
    /// the TLS 1.2 updates). TLS 1.0 is broken cryptography: traffic may be read by
    /// someone on the path. On Linux the system OpenSSL refuses TLS 1.0 unless
    /// `OPENSSL_CONF` points at a file lowering `MinProtocol` and `SECLEVEL`, and that
    /// file then weakens every OpenSSL connection of this process. Patch the server.
    LegacyTls10,
}

impl Encryption {
    fn level(self) -> EncryptionLevel {
        match self {
            Encryption::Off => EncryptionLevel::NotSupported,
            Encryption::Required | Encryption::LegacyTls10 => EncryptionLevel::Required,
        }
    }
}

/// Where an instance is.
#[derive(Clone)]
pub enum Endpoint {
    /// An ADO connection string (read from the environment or a secrets file; never
    /// logged, never in an error).
    Ado(Zeroizing<String>),
    /// The bundled simulator, started in-process on a loopback port, state in this folder.
    Embedded(PathBuf),
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Ado(_) => f.write_str("Ado(<connection string>)"),
            Endpoint::Embedded(p) => write!(f, "Embedded({})", p.display()),
        }
    }
}

/// What a policy says about an instance.
#[derive(Debug, Clone)]
pub struct InstanceSpec {
    /// Name in reports and manifests (e.g. `PACSDB01\PACS`).
    pub name: String,
    /// Where it is.
    pub endpoint: Endpoint,
    /// Link encryption.
    pub encryption: Encryption,
}

/// An instance ready to connect to; for the embedded simulator, it runs while this
/// value lives.
pub struct Instance {
    /// Name in reports.
    pub name: String,
    config: Config,
    addr: Option<SocketAddr>,
    /// The embedded simulator's state folder, which identifies it across runs.
    sim_root: Option<PathBuf>,
    _sim: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("name", &self.name)
            .finish()
    }
}

/// A TCP tiberius client.
pub type TdsClient = Client<Compat<TcpStream>>;

impl Instance {
    /// Resolves `spec`; starts the embedded simulator when that is the endpoint.
    /// Needs a tokio runtime.
    pub async fn open(spec: &InstanceSpec) -> Result<Instance> {
        match &spec.endpoint {
            Endpoint::Ado(s) => {
                let mut config = Config::from_ado_string(s).map_err(|e| {
                    // tiberius' message may quote the string: keep only its kind.
                    debug!(error = %e, "ADO connection string refused");
                    Error::new(
                        ErrorKind::Config,
                        "the ADO connection string cannot be parsed (see `Server=tcp:host,port;User Id=...;Password=...`)",
                    )
                    .with("server", &spec.name)
                })?;
                config.encryption(spec.encryption.level());
                // BACKUP and RESTORE send nothing for long stretches: no command
                // timeout, our own stall detector instead (sqlserver::backup).
                config.command_timeout(None);
                config.handshake_timeout(Some(Duration::from_secs(30)));
                config.application_name("pacsbak");
                if spec.encryption == Encryption::Off {
                    warn!(server = %spec.name, "encryption = \"off\": the login and all data cross the network in plaintext");
                }
                if spec.encryption == Encryption::LegacyTls10
                    && cfg!(unix)
                    && std::env::var_os("OPENSSL_CONF").is_none()
                {
                    warn!(server = %spec.name, "encryption = \"legacy-tls10\" without OPENSSL_CONF: the system OpenSSL will probably refuse TLS 1.0 (docs/operations.md)");
                }
                Ok(Instance {
                    name: spec.name.clone(),
                    config,
                    addr: None,
                    sim_root: None,
                    _sim: None,
                })
            }
            Endpoint::Embedded(root) => Self::embedded(&spec.name, root).await,
        }
    }

    async fn embedded(name: &str, root: &std::path::Path) -> Result<Instance> {
        use rand::Rng;
        let pw: String = rand::thread_rng()
            .sample_iter(rand::distributions::Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        let sim = crate::simulator::Simulator::open(crate::simulator::SimConfig {
            root: root.to_path_buf(),
            empty: false,
            logins: vec![("sa".into(), pw.clone())],
        })?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::new(ErrorKind::Io, format!("cannot listen on loopback: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::new(ErrorKind::Io, e.to_string()))?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(sim.run(listener, async move {
            let _ = rx.await;
        }));
        let mut config = Config::new();
        config.host("127.0.0.1");
        config.port(addr.port());
        config.authentication(AuthMethod::sql_server("sa", &pw));
        config.encryption(EncryptionLevel::NotSupported);
        config.command_timeout(None);
        config.application_name("pacsbak");
        debug!(%addr, root = %root.display(), "embedded simulator started");
        Ok(Instance {
            name: name.to_string(),
            config,
            addr: Some(addr),
            sim_root: Some(root.to_path_buf()),
            _sim: Some(tx),
        })
    }

    /// The loopback address of the embedded simulator, if that is what this is.
    pub fn embedded_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    /// Where the instance listens, `host:port` with the host in lower case and
    /// `localhost` as `127.0.0.1`: two connection strings naming the same server
    /// give the same address. The embedded simulator, on a new port each start, is
    /// `embedded:FOLDER`.
    pub fn address(&self) -> String {
        if let Some(root) = &self.sim_root {
            return format!("embedded:{}", root.display());
        }
        let addr = self.config.get_addr().to_ascii_lowercase();
        match addr.strip_prefix("localhost:") {
            Some(port) => format!("127.0.0.1:{port}"),
            None => addr,
        }
    }

    /// A new connection.
    pub async fn connect(&self) -> Result<Sql> {
        let addr = self.config.get_addr();
        let fail = |what: String| {
            Error::new(
                ErrorKind::SqlServer,
                format!("cannot connect to SQL Server: {what}"),
            )
            .with("server", &self.name)
        };
        let tcp = TcpStream::connect(&addr)
            .await
            .map_err(|e| fail(format!("{addr}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let client = Client::connect(self.config.clone(), tcp.compat_write())
            .await
            .map_err(|e| match e {
                tiberius::error::Error::Server(t) => server_error(&self.name, &t),
                e => fail(e.to_string()),
            })?;
        Ok(Sql {
            client,
            server: self.name.clone(),
        })
    }
}

/// An error from a server ERROR token.
pub fn server_error(server: &str, t: &tiberius::error::TokenError) -> Error {
    Error::new(
        ErrorKind::SqlServer,
        format!("SQL Server error {}: {}", t.code(), t.message()),
    )
    .with("server", server)
    .with_sql_error(t.code())
}

/// One connection.
pub struct Sql {
    client: TdsClient,
    /// Instance name, for errors.
    pub server: String,
}

impl Sql {
    fn map(&self, e: tiberius::error::Error) -> Error {
        match e {
            tiberius::error::Error::Server(t) => server_error(&self.server, &t),
            e => Error::new(
                ErrorKind::SqlServer,
                format!("connection to SQL Server failed: {e}"),
            )
            .with("server", &self.server),
        }
    }

    /// Runs a batch; returns its first result set.
    pub async fn rows(&mut self, sql: &str) -> Result<Vec<Row>> {
        let r = match self.client.simple_query(sql).await {
            Ok(s) => s.into_first_result().await,
            Err(e) => Err(e),
        };
        r.map_err(|e| self.map(e))
    }

    /// Runs a batch, draining every result.
    pub async fn exec(&mut self, sql: &str) -> Result<()> {
        let r = match self.client.simple_query(sql).await {
            Ok(s) => s.into_results().await.map(|_| ()),
            Err(e) => Err(e),
        };
        r.map_err(|e| self.map(e))
    }

    /// This connection's session id.
    pub async fn spid(&mut self) -> Result<i64> {
        let rows = self.rows("SELECT @@SPID").await?;
        rows.first()
            .and_then(|r| int(r, 0))
            .ok_or_else(|| Error::new(ErrorKind::SqlServer, "@@SPID returned nothing"))
    }
}

fn cell(row: &Row, col: impl ColIdx) -> Option<&ColumnData<'static>> {
    let i = col.index(row)?;
    row.cells().nth(i).map(|(_, d)| d)
}

/// A column by position or name.
pub trait ColIdx {
    /// Its position in `row`.
    fn index(&self, row: &Row) -> Option<usize>;
}
impl ColIdx for usize {
    fn index(&self, _: &Row) -> Option<usize> {
        Some(*self)
    }
}
impl ColIdx for &str {
    fn index(&self, row: &Row) -> Option<usize> {
        row.columns()
            .iter()
            .position(|c| c.name().eq_ignore_ascii_case(self))
    }
}

/// An integer column of any width (also numeric and bit).
pub fn int(row: &Row, col: impl ColIdx) -> Option<i64> {
    match cell(row, col)? {
        ColumnData::U8(v) => v.map(i64::from),
        ColumnData::I16(v) => v.map(i64::from),
        ColumnData::I32(v) => v.map(i64::from),
        ColumnData::I64(v) => *v,
        ColumnData::Bit(v) => v.map(i64::from),
        ColumnData::Numeric(v) => v.and_then(|n| i64::try_from(n.int_part()).ok()),
        ColumnData::F32(v) => v.map(|f| f as i64),
        ColumnData::F64(v) => v.map(|f| f as i64),
        ColumnData::String(Some(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A numeric(25,0) (LSN) column.
pub fn big(row: &Row, col: impl ColIdx) -> Option<u128> {
    match cell(row, col)? {
        ColumnData::Numeric(v) => v.and_then(|n| u128::try_from(n.int_part()).ok()),
        ColumnData::String(Some(s)) => s.trim().parse().ok(),
        ColumnData::I64(v) => v.and_then(|n| u128::try_from(n).ok()),
        ColumnData::I32(v) => v.and_then(|n| u128::try_from(n).ok()),
        _ => None,
    }
}

/// A real/float column.
pub fn float(row: &Row, col: impl ColIdx) -> Option<f64> {
    let i = col.index(row)?;
    match cell(row, i)? {
        ColumnData::F32(v) => v.map(f64::from),
        ColumnData::F64(v) => *v,
        _ => int(row, i).map(|v| v as f64),
    }
}

/// A bit column.
pub fn bit(row: &Row, col: impl ColIdx) -> Option<bool> {
    int(row, col).map(|v| v != 0)
}

/// A string column.
pub fn text(row: &Row, col: impl ColIdx) -> Option<String> {
    match cell(row, col)? {
        ColumnData::String(v) => v.as_ref().map(|s| s.to_string()),
        ColumnData::Guid(v) => v.map(|g| g.to_string()),
        _ => None,
    }
}

/// A binary column (varbinary, image).
pub fn bytes(row: &Row, col: impl ColIdx) -> Option<Vec<u8>> {
    match cell(row, col)? {
        ColumnData::Binary(v) => v.as_ref().map(|b| b.to_vec()),
        _ => None,
    }
}

/// A datetime column.
pub fn datetime(row: &Row, col: impl ColIdx) -> Option<time::PrimitiveDateTime> {
    let i = col.index(row)?;
    row.try_get::<time::PrimitiveDateTime, usize>(i)
        .ok()
        .flatten()
        .or_else(|| {
            row.try_get::<time::OffsetDateTime, usize>(i)
                .ok()
                .flatten()
                .map(|o| time::PrimitiveDateTime::new(o.date(), o.time()))
        })
        .or_else(|| text(row, i).and_then(|s| parse_datetime_text(&s)))
}

/// `YYYY-MM-DD HH:MM:SS[.fff]` (an expression's value sent as text).
pub fn parse_datetime_text(s: &str) -> Option<time::PrimitiveDateTime> {
    let s = s.trim().replace('T', " ");
    let main = s.split('.').next().unwrap_or("");
    crate::bakfile::MtfDate::parse_text(main).and_then(|d| d.to_datetime())
}

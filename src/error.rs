//! The error policy of pacsbak.
//!
//! - Library code returns [`Error`]: one public type carrying a [`ErrorKind`] (what
//!   went wrong, so callers can branch on it), a message written for the engineer
//!   who has to act on it, and context (file, line, key, target, server, database,
//!   SQL Server error number) as key/value pairs.
//! - Internal modules may have small local error enums; they convert into [`Error`]
//!   at the module boundary, adding context rather than wrapping again.
//! - Whether a retry can help is decided here, once, from the kind
//!   ([`Error::is_retryable`]); callers never guess from message text.
//! - Secrets never enter an error: messages name the variable or file a secret came
//!   from, never its value.
//! - `anyhow` is used only at the command-line edge, to add what the user was doing.

use std::fmt;

/// What kind of failure this is; decides the exit code and whether to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// A configuration file, option or argument is wrong: fix the input.
    Config,
    /// A passphrase or credential was refused.
    Auth,
    /// The storage target failed (network, permission, missing object).
    Storage,
    /// A transient storage failure that a retry may cure.
    StorageTransient,
    /// Data read back does not match what was written: corruption or tampering.
    Integrity,
    /// The repository layout or format is not what this version understands.
    Format,
    /// Local file system I/O failed.
    Io,
    /// SQL Server (or the simulator) returned an error.
    SqlServer,
    /// The operation was refused to protect data (overwrite, path escape, last backup).
    Refused,
    /// Clocks disagree: this machine's, SQL Server's or a target's is off, so times
    /// pacsbak writes or judges by (snapshot dates, RPO ages) would be wrong.
    Clock,
    /// The job was stopped before it finished: the daemon is stopping, or the job ran
    /// past its time-out. What it started was ended (a BACKUP's session killed).
    Cancelled,
    /// Something that should be impossible happened: a bug.
    Internal,
}

impl ErrorKind {
    /// The process exit code for a command that stopped with this error: 1 when
    /// what it read was found damaged (the engineer must look at the data), 2 when
    /// the command could not run (input, access, reach, or a refusal to protect
    /// data). The one place exit codes of errors come from.
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Integrity => 1,
            _ => 2,
        }
    }

    /// The kind's name as JSON and the journal spell it (`sql-server`, `storage`...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Config => "config",
            ErrorKind::Auth => "auth",
            ErrorKind::Storage => "storage",
            ErrorKind::StorageTransient => "storage-transient",
            ErrorKind::Integrity => "integrity",
            ErrorKind::Format => "format",
            ErrorKind::Io => "io",
            ErrorKind::SqlServer => "sql-server",
            ErrorKind::Refused => "refused",
            ErrorKind::Clock => "clock",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The one public error type of the library.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    context: Vec<(&'static str, String)>,
    sql_error: Option<u32>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with a message for the user.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            context: Vec::new(),
            sql_error: None,
            source: None,
        }
    }

    /// Records SQL Server's error number (kept as a number, for outcomes and alerts).
    pub fn with_sql_error(mut self, number: u32) -> Self {
        self.sql_error = Some(number);
        self
    }

    /// Adds a key/value pair of context (`file`, `target`, `database`...). A key
    /// already present keeps its first (innermost) value, so an error passed up
    /// through several layers names the server or database once.
    pub fn with(mut self, key: &'static str, value: impl fmt::Display) -> Self {
        if self.context.iter().all(|(k, _)| *k != key) {
            self.context.push((key, value.to_string()));
        }
        self
    }

    /// Replaces the message (used to scrub secrets out of service error text).
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    /// Attaches the lower-level cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without context.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Context value for `key`, if present.
    pub fn context(&self, key: &str) -> Option<&str> {
        self.context
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The SQL Server error number, when SQL Server (or the simulator) failed it.
    pub fn sql_error(&self) -> Option<u32> {
        self.sql_error
    }

    /// The structured form of this error, for outcomes, JSON and the journal.
    pub fn record(&self) -> ErrorRecord {
        ErrorRecord {
            kind: self.kind,
            message: self.message.clone(),
            context: self
                .context
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            sql_error: self.sql_error,
        }
    }

    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::StorageTransient)
    }

    /// Shorthand for an I/O error on a local path.
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        let path = path.as_ref();
        Error::new(ErrorKind::Io, format!("{}: {source}", path.display())).with_source(source)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.record().fmt(f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// An error as data: what job outcomes, `--json` and the journal carry. Built from
/// an [`Error`] with [`Error::record`], so it says exactly what the error said.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorRecord {
    /// What kind of failure: decides the exit code and whether a retry may help.
    pub kind: ErrorKind,
    /// The message for the engineer, without context.
    pub message: String,
    /// Where: file, line, key, target, server, database... in the order added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context: Vec<(String, String)>,
    /// SQL Server's error number, when SQL Server failed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sql_error: Option<u32>,
}

impl ErrorRecord {
    /// A record made here, not from an [`Error`] (a failure found by a job itself).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            context: Vec::new(),
            sql_error: None,
        }
    }
}

impl From<&Error> for ErrorRecord {
    fn from(e: &Error) -> Self {
        e.record()
    }
}

impl From<Error> for ErrorRecord {
    fn from(e: Error) -> Self {
        e.record()
    }
}

impl fmt::Display for ErrorRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        let mut pairs: Vec<(&str, String)> = self
            .context
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        if let Some(n) = self.sql_error {
            pairs.push(("sql_error", n.to_string()));
        }
        if !pairs.is_empty() {
            f.write_str(" (")?;
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{k}: {v}")?;
            }
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Result with the library's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

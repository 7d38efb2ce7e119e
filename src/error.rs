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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Something that should be impossible happened: a bug.
    Internal,
}

/// The one public error type of the library.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    context: Vec<(&'static str, String)>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with a message for the user.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            context: Vec::new(),
            source: None,
        }
    }

    /// Adds a key/value pair of context (`file`, `target`, `database`...).
    pub fn with(mut self, key: &'static str, value: impl fmt::Display) -> Self {
        self.context.push((key, value.to_string()));
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
        f.write_str(&self.message)?;
        if !self.context.is_empty() {
            f.write_str(" (")?;
            for (i, (k, v)) in self.context.iter().enumerate() {
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

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Result with the library's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

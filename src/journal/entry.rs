//! One journal entry, and the hash that chains it to the one before.

use serde::{Deserialize, Serialize};

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// A job began (who, what, the command line).
    JobStart,
    /// A job ended, with its typed outcome.
    JobEnd,
    /// Old entries were removed (what and up to where).
    Pruned,
    /// The daemon started, with the hashes of the configuration files it loaded.
    DaemonStart,
    /// The daemon reloaded its configuration (or refused a change): what changed.
    DaemonReload,
    /// The daemon stopped, and what it stopped.
    DaemonStop,
    /// An alert was sent (or could not be).
    Alert,
}

impl EntryKind {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::JobStart => "job-start",
            EntryKind::JobEnd => "job-end",
            EntryKind::Pruned => "pruned",
            EntryKind::DaemonStart => "daemon-start",
            EntryKind::DaemonReload => "daemon-reload",
            EntryKind::DaemonStop => "daemon-stop",
            EntryKind::Alert => "alert",
        }
    }

    fn parse(s: &str) -> Option<EntryKind> {
        [
            EntryKind::JobStart,
            EntryKind::JobEnd,
            EntryKind::Pruned,
            EntryKind::DaemonStart,
            EntryKind::DaemonReload,
            EntryKind::DaemonStop,
            EntryKind::Alert,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// Who started a job: the audit trail's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Who {
    /// The operating-system account.
    pub user: String,
    /// The machine.
    pub host: String,
    /// The command line as given (arguments never hold secrets: those come from the
    /// environment or secrets files).
    pub command_line: String,
    /// Why, when the command was given a reason (`backup manual --reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Who {
    /// This process: its user, host and command line.
    pub fn this_process(reason: Option<String>) -> Who {
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("USERNAME"))
            .unwrap_or_default();
        Who {
            user,
            host: crate::repository::hostname(),
            command_line: std::env::args().collect::<Vec<_>>().join(" "),
            reason,
        }
    }
}

/// An entry to append.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// What it records.
    pub kind: EntryKind,
    /// Ties a job's start to its end.
    pub job_id: String,
    /// The command (`backup`, `restore`, `verify`...).
    pub job: String,
    /// The policy, when the job has one.
    pub policy: Option<String>,
    /// The database, when the job is about one.
    pub database: Option<String>,
    /// `ok`, `failed`... for an end.
    pub status: Option<String>,
    /// Who started it.
    pub who: Who,
    /// The job's typed outcome (as its `--json` prints it), or details.
    pub outcome: Option<serde_json::Value>,
}

/// A stored entry.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When it was written (RFC 3339, UTC).
    pub time: String,
    /// What it records.
    pub kind: EntryKind,
    /// Ties a job's start to its end.
    pub job_id: String,
    /// The command.
    pub job: String,
    /// The policy.
    pub policy: Option<String>,
    /// The database.
    pub database: Option<String>,
    /// The end's status.
    pub status: Option<String>,
    /// Who started it.
    pub who: Who,
    /// The typed outcome, or details.
    pub outcome: Option<serde_json::Value>,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
    #[serde(skip)]
    who_text: String,
    #[serde(skip)]
    outcome_text: Option<String>,
}

impl NewEntry {
    /// The entry at `seq` after the entry whose hash is `prev_hash`, written `time`.
    pub(super) fn chain(self, seq: i64, prev_hash: String, time: String) -> Entry {
        let who_text = serde_json::to_string(&self.who).unwrap_or_default();
        let outcome_text = self.outcome.as_ref().map(|o| o.to_string());
        let mut e = Entry {
            seq,
            time,
            kind: self.kind,
            job_id: self.job_id,
            job: self.job,
            policy: self.policy,
            database: self.database,
            status: self.status,
            who: self.who,
            outcome: self.outcome,
            prev_hash,
            hash: String::new(),
            who_text,
            outcome_text,
        };
        e.hash = e.computed_hash();
        e
    }
}

impl Entry {
    /// The hash of this entry's fields as stored, with its predecessor's hash.
    pub fn computed_hash(&self) -> String {
        hash_fields(&StoredFields {
            seq: self.seq,
            time: &self.time,
            kind: self.kind.as_str(),
            job_id: &self.job_id,
            job: &self.job,
            policy: self.policy.as_deref(),
            database: self.database.as_deref(),
            status: self.status.as_deref(),
            who: &self.who_text,
            outcome: self.outcome_text.as_deref(),
            prev_hash: &self.prev_hash,
        })
    }

    pub(super) fn who_json(&self) -> &str {
        &self.who_text
    }

    pub(super) fn outcome_json(&self) -> Option<&str> {
        self.outcome_text.as_deref()
    }

    /// Reads a row; a kind this build does not know reads as a changed entry.
    pub(super) fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
        let kind_text: String = r.get(2)?;
        let who_text: String = r.get(8)?;
        let outcome_text: Option<String> = r.get(9)?;
        Ok(Entry {
            seq: r.get(0)?,
            time: r.get(1)?,
            kind: EntryKind::parse(&kind_text).unwrap_or(EntryKind::JobEnd),
            job_id: r.get(3)?,
            job: r.get(4)?,
            policy: r.get(5)?,
            database: r.get(6)?,
            status: r.get(7)?,
            who: serde_json::from_str(&who_text).unwrap_or_default(),
            outcome: outcome_text
                .as_deref()
                .and_then(|t| serde_json::from_str(t).ok()),
            prev_hash: r.get(10)?,
            hash: r.get(11)?,
            who_text,
            outcome_text,
        })
    }
}

/// An entry's fields as stored, borrowed (the chain check reads a year of entries
/// without allocating each one).
pub(super) struct StoredFields<'a> {
    pub seq: i64,
    pub time: &'a str,
    pub kind: &'a str,
    pub job_id: &'a str,
    pub job: &'a str,
    pub policy: Option<&'a str>,
    pub database: Option<&'a str>,
    pub status: Option<&'a str>,
    pub who: &'a str,
    pub outcome: Option<&'a str>,
    pub prev_hash: &'a str,
}

/// blake3 over the fields, each length-prefixed (an absent one as NUL).
pub(super) fn hash_fields(f: &StoredFields<'_>) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"pacsbak journal entry v1");
    let seq = f.seq.to_string();
    let fields: [&str; 11] = [
        &seq,
        f.time,
        f.kind,
        f.job_id,
        f.job,
        f.policy.unwrap_or("\u{0}"),
        f.database.unwrap_or("\u{0}"),
        f.status.unwrap_or("\u{0}"),
        f.who,
        f.outcome.unwrap_or("\u{0}"),
        f.prev_hash,
    ];
    for field in fields {
        h.update(&(field.len() as u64).to_le_bytes());
        h.update(field.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

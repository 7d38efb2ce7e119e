//! The journal: who ran which job, when, and what came of it, in an embedded SQLite
//! database beside the configuration. The audit trail China's level-3 rules ask for
//! (GB/T 22239-2019 8.1.4.3; logs kept at least six months, Cybersecurity Law art. 21)
//! and what the status command and the reports read.
//!
//! Every entry carries the hash of the one before it and its own (blake3 over its
//! fields), so `journal verify` finds an entry edited or deleted afterwards and names
//! it. Each entry is its own transaction in WAL mode with `synchronous = FULL`: a
//! crash loses at most the job in flight, whose start is recorded without an end.
//! The repository stays the truth; the journal is what happened.

mod entry;

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

pub use entry::{Entry, EntryKind, NewEntry, Who};

use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};

/// The hash before the first entry.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

const INSERT: &str = "INSERT INTO entries (seq, time, kind, job_id, job, policy, database, status, who, outcome, prev_hash, hash)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

/// Entries are kept at least this long (the Cybersecurity Law's six months).
pub const MIN_KEEP_DAYS: u32 = 180;

/// An open journal.
pub struct Journal {
    conn: Connection,
    path: PathBuf,
    clock: Clock,
}

/// Which entries `list` returns.
#[derive(Debug, Clone, Default)]
pub struct JournalFilter {
    /// Only entries at or after this time (RFC 3339, or a prefix of one such as
    /// `2026-12-01`: compared as text, which RFC 3339 in UTC sorts correctly).
    pub since: Option<String>,
    /// Only this job (`backup`, `restore`...).
    pub job: Option<String>,
    /// Only entries about this database.
    pub database: Option<String>,
}

/// What `journal verify` found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct JournalCheck {
    /// The journal file.
    pub path: String,
    /// Entries checked.
    pub entries: u64,
    /// Each entry found edited, each gap where entries were deleted.
    pub problems: Vec<String>,
    /// No problem found.
    pub ok: bool,
}

impl Journal {
    /// Opens (creating) the journal at `path`.
    pub fn open(path: &Path) -> Result<Journal> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let conn = Connection::open(path).map_err(|e| sqlite(path, e))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 10000;
             CREATE TABLE IF NOT EXISTS entries (
                 seq INTEGER PRIMARY KEY,
                 time TEXT NOT NULL,
                 kind TEXT NOT NULL,
                 job_id TEXT NOT NULL,
                 job TEXT NOT NULL,
                 policy TEXT,
                 database TEXT,
                 status TEXT,
                 who TEXT NOT NULL,
                 outcome TEXT,
                 prev_hash TEXT NOT NULL,
                 hash TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS entries_time ON entries(time);
             CREATE INDEX IF NOT EXISTS entries_job ON entries(job, kind, seq);
             CREATE INDEX IF NOT EXISTS entries_job_id ON entries(job_id);
             CREATE TABLE IF NOT EXISTS anchor (
                 id INTEGER PRIMARY KEY CHECK (id = 1),
                 seq INTEGER NOT NULL,
                 hash TEXT NOT NULL
             );",
        )
        .map_err(|e| sqlite(path, e))?;
        Ok(Journal {
            conn,
            path: path.to_path_buf(),
            clock: crate::clock::current(),
        })
    }

    /// Dates entries by `clock` instead of the process's (tests).
    pub fn with_clock(mut self, clock: Clock) -> Journal {
        self.clock = clock;
        self
    }

    fn now_text(&self) -> String {
        self.clock
            .now()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `new`, chained to the last entry; returns it as stored.
    pub fn append(&mut self, new: NewEntry) -> Result<Entry> {
        self.append_all(vec![new])?
            .ok_or_else(|| Error::new(ErrorKind::Internal, "journal: nothing appended"))
    }

    /// Appends `entries` in one transaction (one disk flush for all of them): the
    /// steps of a job finished together, or a benchmark's year of history. Returns
    /// the last one as stored.
    pub fn append_all(&mut self, entries: Vec<NewEntry>) -> Result<Option<Entry>> {
        let path = self.path.clone();
        let now = self.now_text();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| sqlite(&path, e))?;
        let last: Option<(i64, String)> = tx
            .query_row(
                "SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| sqlite(&path, e))?;
        let (mut seq, mut hash) = match last {
            Some(l) => l,
            None => anchor(&tx).map_err(|e| sqlite(&path, e))?,
        };
        let mut written = None;
        {
            let mut insert = tx.prepare(INSERT).map_err(|e| sqlite(&path, e))?;
            for new in entries {
                seq += 1;
                let e = new.chain(seq, hash, now.clone());
                insert
                    .execute(params![
                        e.seq,
                        e.time,
                        e.kind.as_str(),
                        e.job_id,
                        e.job,
                        e.policy,
                        e.database,
                        e.status,
                        e.who_json(),
                        e.outcome_json(),
                        e.prev_hash,
                        e.hash
                    ])
                    .map_err(|e| sqlite(&path, e))?;
                hash = e.hash.clone();
                written = Some(e);
            }
        }
        tx.commit().map_err(|e| sqlite(&path, e))?;
        Ok(written)
    }

    /// Entries `filter` selects, oldest first.
    pub fn list(&self, filter: &JournalFilter) -> Result<Vec<Entry>> {
        let mut clauses = Vec::new();
        let mut values: Vec<&dyn rusqlite::ToSql> = Vec::new();
        if let Some(s) = &filter.since {
            clauses.push("time >= ?");
            values.push(s);
        }
        if let Some(j) = &filter.job {
            clauses.push("job = ?");
            values.push(j);
        }
        if let Some(d) = &filter.database {
            clauses.push("database = ? COLLATE NOCASE");
            values.push(d);
        }
        let filter_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let mut out = Vec::new();
        self.each(&format!("{filter_sql} ORDER BY seq"), &values, |e| {
            out.push(e)
        })?;
        Ok(out)
    }

    /// The newest end of `job` (the last verify, the last backup...): one indexed
    /// read whatever the journal's size.
    pub fn last_end(&self, job: &str) -> Result<Option<Entry>> {
        let mut last = None;
        self.each(
            "WHERE job = ? AND kind = 'job-end' ORDER BY seq DESC LIMIT 1",
            &[&job],
            |e| last = Some(e),
        )?;
        Ok(last)
    }

    /// The newest start of a scheduled job (its job, policy and database as the
    /// daemon writes them): when it last ran, to find a run missed while the daemon
    /// was stopped.
    pub fn last_start(
        &self,
        job: &str,
        policy: Option<&str>,
        database: Option<&str>,
    ) -> Result<Option<Entry>> {
        let mut last = None;
        self.each(
            "WHERE job = ? AND kind = 'job-start' AND policy IS ? AND database IS ? ORDER BY seq DESC LIMIT 1",
            &[&job, &policy, &database],
            |e| last = Some(e),
        )?;
        Ok(last)
    }

    /// The end of the job started as `job_id`, if it ended.
    pub fn end_of(&self, job_id: &str) -> Result<Option<Entry>> {
        let mut end = None;
        self.each(
            "WHERE job_id = ? AND kind = 'job-end' ORDER BY seq DESC LIMIT 1",
            &[&job_id],
            |e| end = Some(e),
        )?;
        Ok(end)
    }

    /// Checks the chain: every entry's hash over its fields, every link to the one
    /// before, no gap in the sequence, the first entry linked to the anchor that
    /// pruning left.
    pub fn verify(&self) -> Result<JournalCheck> {
        let (mut prev_seq, mut prev_hash) =
            anchor(&self.conn).map_err(|e| sqlite(&self.path, e))?;
        let mut problems = Vec::new();
        let mut entries = 0;
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, time, kind, job_id, job, policy, database, status, who, outcome, prev_hash, hash
                 FROM entries ORDER BY seq",
            )
            .map_err(|e| sqlite(&self.path, e))?;
        let mut rows = stmt.query([]).map_err(|e| sqlite(&self.path, e))?;
        while let Some(r) = rows.next().map_err(|e| sqlite(&self.path, e))? {
            let seq: i64 = r.get(0).map_err(|e| sqlite(&self.path, e))?;
            // Borrowed from the row; a value that is not text reads as changed.
            let s = |i: usize| match r.get_ref(i) {
                Ok(rusqlite::types::ValueRef::Text(t)) => std::str::from_utf8(t).ok(),
                _ => None,
            };
            entries += 1;
            let stored_prev = s(10).unwrap_or_default();
            if seq != prev_seq + 1 {
                problems.push(format!(
                    "entries {} to {} are missing: deleted after they were written",
                    prev_seq + 1,
                    seq - 1
                ));
            } else if stored_prev != prev_hash {
                problems.push(format!(
                    "entry {seq} does not follow entry {prev_seq}: the chain was rewritten there"
                ));
            }
            let computed = entry::hash_fields(&entry::StoredFields {
                seq,
                time: s(1).unwrap_or_default(),
                kind: s(2).unwrap_or_default(),
                job_id: s(3).unwrap_or_default(),
                job: s(4).unwrap_or_default(),
                policy: s(5),
                database: s(6),
                status: s(7),
                who: s(8).unwrap_or_default(),
                outcome: s(9),
                prev_hash: stored_prev,
            });
            let stored = s(11).unwrap_or_default();
            if computed != stored {
                problems.push(format!(
                    "entry {seq} ({} {} at {}) was changed after it was written",
                    s(2).unwrap_or_default(),
                    s(4).unwrap_or_default(),
                    s(1).unwrap_or_default()
                ));
            }
            prev_seq = seq;
            prev_hash = stored.to_string();
        }
        Ok(JournalCheck {
            path: self.path.display().to_string(),
            entries,
            ok: problems.is_empty(),
            problems,
        })
    }

    /// Removes entries older than `keep_days` (never less than [`MIN_KEEP_DAYS`]),
    /// keeping the chain checkable: the hash of the last removed entry becomes the
    /// anchor, and the removal is itself an entry. Returns how many were removed.
    pub fn prune(&mut self, keep_days: u32, who: &Who) -> Result<u64> {
        let keep_days = keep_days.max(MIN_KEEP_DAYS);
        let cutoff = (self.clock.now() - time::Duration::days(i64::from(keep_days)))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|e| sqlite(&path, e))?;
        let last_old: Option<(i64, String)> = tx
            .query_row(
                "SELECT seq, hash FROM entries WHERE time < ?1 ORDER BY seq DESC LIMIT 1",
                [&cutoff],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| sqlite(&path, e))?;
        let Some((seq, hash)) = last_old else {
            return Ok(0);
        };
        let removed = tx
            .execute("DELETE FROM entries WHERE seq <= ?1", [seq])
            .map_err(|e| sqlite(&path, e))?;
        tx.execute(
            "INSERT INTO anchor (id, seq, hash) VALUES (1, ?1, ?2)
             ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
            params![seq, hash],
        )
        .map_err(|e| sqlite(&path, e))?;
        tx.commit().map_err(|e| sqlite(&path, e))?;
        self.append(NewEntry {
            kind: EntryKind::Pruned,
            job_id: String::new(),
            job: "journal".into(),
            policy: None,
            database: None,
            status: None,
            who: who.clone(),
            outcome: Some(serde_json::json!({
                "removed": removed, "up_to_seq": seq, "up_to_hash": hash,
                "older_than": cutoff, "keep_days": keep_days,
            })),
        })?;
        Ok(removed as u64)
    }

    /// Calls `f` with each entry `rest` (a WHERE/ORDER clause) selects.
    fn each(
        &self,
        rest: &str,
        values: &[&dyn rusqlite::ToSql],
        mut f: impl FnMut(Entry),
    ) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT seq, time, kind, job_id, job, policy, database, status, who, outcome, prev_hash, hash
                 FROM entries {rest}"
            ))
            .map_err(|e| sqlite(&self.path, e))?;
        let rows = stmt
            .query_map(values, Entry::from_row)
            .map_err(|e| sqlite(&self.path, e))?;
        for row in rows {
            f(row.map_err(|e| sqlite(&self.path, e))?);
        }
        Ok(())
    }
}

/// The sequence number and hash the first remaining entry follows.
fn anchor(conn: &Connection) -> rusqlite::Result<(i64, String)> {
    Ok(conn
        .query_row("SELECT seq, hash FROM anchor WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?
        .unwrap_or((0, GENESIS.to_string())))
}

fn sqlite(path: &Path, e: rusqlite::Error) -> Error {
    Error::new(ErrorKind::Io, format!("journal: {e}")).with("file", path.display())
}

#[cfg(test)]
mod tests;

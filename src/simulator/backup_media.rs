//! The one place where the simulator reads and writes backup files, in SQL Server's
//! own format: every file is written by [`crate::bakfile`]'s MTF writer and read back
//! through its reader ([`bakfile::inspect`]) and checker ([`bakfile::check`]), exactly
//! as `pacsbak inspect --check` reads real backups. So RESTORE HEADERONLY,
//! FILELISTONLY and VERIFYONLY answer for real SQL Server backups too.
//!
//! What the simulator puts inside the MTF container is its own: the data stream
//! (MQDA) carries the simulated database's 8 KiB pages (SQL Server's page header
//! layout and page checksums, rows as text), and the log stream (MQTL) carries
//! [`LOG_MAGIC`], then the simulator's description of the set (GUIDs, recovery model,
//! sizes: what the MTF records the reader knows do not hold) and the log records, both
//! as JSON. Whatever the MTF records hold (type, names, LSNs, dates, versions, files,
//! checksum flag, striping) is taken from the reader, never from that JSON.
//!
//! WITH COMPRESSION into a new file: SQL Server's `MSSQLBAK` container of XPRESS
//! records, with the zero padding after the last data record that real servers write
//! (docs/bakfile.md). Appended to an existing file, a set is written as plain MTF.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::engine::pages::{Page, PAGE_SIZE};
use super::engine::state::LogRecord;
use crate::bakfile::{
    self, BackupHeader, BackupSet, BackupType, FileListEntry, Lsn, MtfDate, SetDescription,
};

/// Starts the simulator's payload in the log stream.
pub const LOG_MAGIC: &[u8; 16] = b"PACSSIM-MQTL v2\n";

/// A database file described in a backup set (FILELISTONLY).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileEntry {
    /// Logical name.
    pub logical: String,
    /// Physical path when backed up.
    pub physical: String,
    /// "D" or "L".
    pub kind: String,
    /// file_id.
    pub file_id: i64,
    /// Size in bytes.
    pub size: i64,
}

/// What HEADERONLY and FILELISTONLY show about one backup set of the simulator.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SetHeader {
    /// 1 database, 2 log, 5 differential.
    pub backup_type: i64,
    /// BackupName.
    pub name: String,
    /// BackupDescription.
    pub description: String,
    /// Position in the media (FILE = n).
    pub position: i64,
    /// DatabaseName.
    pub database_name: String,
    /// Server name.
    pub server_name: String,
    /// Machine name.
    pub machine_name: String,
    /// User name.
    pub user_name: String,
    /// database_guid (BindingID).
    pub database_guid: String,
    /// Recovery fork GUID.
    pub fork_guid: String,
    /// BackupSetGUID.
    pub backup_set_guid: String,
    /// The media set's GUID (msdb backupmediaset.media_uuid; the MTF RAID stream).
    pub family_guid: String,
    /// Number of media families (striped files).
    pub family_count: i64,
    /// This file's family number, from 1.
    pub family_sequence: i64,
    /// Creation date, unix seconds.
    pub creation_date: i64,
    /// Start, unix seconds.
    pub start: i64,
    /// Finish, unix seconds.
    pub finish: i64,
    /// FirstLSN.
    pub first_lsn: i64,
    /// LastLSN.
    pub last_lsn: i64,
    /// CheckpointLSN.
    pub checkpoint_lsn: i64,
    /// DatabaseBackupLSN.
    pub database_backup_lsn: i64,
    /// DifferentialBaseLSN (0 when none).
    pub diff_base_lsn: i64,
    /// DifferentialBaseGUID.
    pub diff_base_guid: String,
    /// BackupSize in bytes (after writing: the bytes of this family's set).
    pub backup_size: i64,
    /// CompressedBackupSize in bytes (the file's bytes).
    pub compressed_size: i64,
    /// WITH COMPRESSION (the file is an `MSSQLBAK` container).
    pub compressed: bool,
    /// WITH CHECKSUM.
    pub has_checksums: bool,
    /// COPY_ONLY.
    pub copy_only: bool,
    /// FULL, SIMPLE, BULK-LOGGED.
    pub recovery_model: String,
    /// Files of the database.
    pub files: Vec<FileEntry>,
    /// Pages in the data file when backed up.
    pub total_pages: u32,
}

/// The contents of a backup set.
#[derive(Debug, Clone, Default)]
pub struct SetPayload {
    /// Data pages by page id (shared with the data file they were taken from: a
    /// backup's point-in-time copy costs no page copy).
    pub pages: Vec<(u32, Arc<Page>)>,
    /// Log records.
    pub log: Vec<LogRecord>,
}

/// One backup set on a device, as the bakfile reader reports it, with the
/// simulator's own description when the simulator wrote it.
#[derive(Debug, Clone)]
pub struct SetInfo {
    /// HEADERONLY's values held by the MTF records.
    pub header: BackupHeader,
    /// FILELISTONLY's values held by the MTF records.
    pub files: Vec<FileListEntry>,
    /// The simulator's description (`None` for a backup SQL Server wrote).
    pub sim: Option<SetHeader>,
    /// Size of the file holding the set.
    pub file_size: u64,
}

/// Why a backup file could not be used; each maps to a SQL Server error.
#[derive(Debug)]
pub enum MediaError {
    /// The file cannot be opened or created (3201).
    Open(std::io::Error),
    /// Writing failed (3202).
    Write(std::io::Error),
    /// Not a backup file, truncated, or its MTF structure is damaged (3241).
    Malformed(String),
    /// A page of the set fails its checksum (3183).
    PageError {
        /// `file:page`.
        page: String,
        /// The set's database.
        database: String,
        /// Where, for the log.
        detail: String,
    },
    /// The backup checksum (CSUM) or the simulator's payload does not match (3189).
    Damaged(String),
    /// No backup set at this position (3206... shown as "file ID n").
    NoSet(i64),
    /// A set SQL Server wrote: its pages are not the simulator's (3203 on restore).
    Foreign,
}

fn malformed(e: impl std::fmt::Display) -> MediaError {
    MediaError::Malformed(e.to_string())
}

fn unix_to_mtf(secs: i64) -> MtfDate {
    let t =
        time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    MtfDate::from_datetime(time::PrimitiveDateTime::new(t.date(), t.time()))
}

fn mtf_to_unix(d: Option<MtfDate>) -> Option<i64> {
    Some(d?.to_datetime()?.assume_utc().unix_timestamp())
}

fn lsn_i64(l: Option<Lsn>) -> i64 {
    l.and_then(|l| i64::try_from(l.0).ok()).unwrap_or(0)
}

fn lsn_of(v: i64) -> Lsn {
    Lsn(u128::try_from(v.max(0)).unwrap_or(0))
}

/// The GUID text form to the mixed-endian bytes MTF and SQL Server store.
fn guid_bytes(s: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let hexs: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    if let Ok(b) = hex::decode(hexs) {
        if b.len() == 16 {
            out[0..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
            out[4..6].copy_from_slice(&[b[5], b[4]]);
            out[6..8].copy_from_slice(&[b[7], b[6]]);
            out[8..16].copy_from_slice(&b[8..16]);
        }
    }
    out
}

/// The MTF description of the simulator's set.
fn description(h: &SetHeader) -> SetDescription {
    let kind = match h.backup_type {
        2 => BackupType::LOG,
        5 => BackupType::DIFF,
        _ => BackupType::FULL,
    };
    let mut d = SetDescription::new(&h.database_name, kind);
    d.server_name = h.server_name.clone();
    d.machine_name = h.machine_name.clone();
    d.user_name = h.user_name.clone();
    d.backup_name = h.name.clone();
    d.backup_description = h.description.clone();
    d.position = u16::try_from(h.position).unwrap_or(u16::MAX);
    d.first_lsn = lsn_of(h.first_lsn);
    d.last_lsn = lsn_of(h.last_lsn);
    d.checkpoint_lsn = lsn_of(h.checkpoint_lsn);
    d.database_backup_lsn = (h.database_backup_lsn != 0).then(|| lsn_of(h.database_backup_lsn));
    d.backup_start_date = unix_to_mtf(h.start);
    d.database_creation_date = unix_to_mtf(h.creation_date);
    // What the simulator reports as its version (@@VERSION, SERVERPROPERTY).
    d.software_version = (15, 0, 4355);
    d.database_version = 904;
    d.compatibility_level = 150;
    d.sort_order = 52;
    d.with_checksum = h.has_checksums;
    d.fill_page_checksums = true;
    d.files = h
        .files
        .iter()
        .map(|f| {
            let log = f.kind == "L";
            FileListEntry {
                logical_name: f.logical.clone(),
                physical_name: f.physical.clone(),
                file_type: if log { 'L' } else { 'D' },
                file_group_name: (!log).then(|| "PRIMARY".to_string()),
                file_id: u32::try_from(f.file_id).unwrap_or(1),
                file_group_id: u32::from(!log),
            }
        })
        .collect();
    d.family_count = u16::try_from(h.family_count.max(1)).unwrap_or(1);
    d.family_sequence = u16::try_from(h.family_sequence.max(1)).unwrap_or(1);
    d.media_set_id = guid_bytes(&h.family_guid);
    d
}

/// The log stream's contents: magic, the set description, the log records.
fn encode_log(h: &SetHeader, log: &[LogRecord]) -> Vec<u8> {
    let hb = serde_json::to_vec(h).unwrap_or_default();
    let lb = serde_json::to_vec(log).unwrap_or_default();
    let mut out = Vec::with_capacity(24 + hb.len() + lb.len());
    out.extend_from_slice(LOG_MAGIC);
    out.extend_from_slice(&(hb.len() as u32).to_le_bytes());
    out.extend_from_slice(&hb);
    out.extend_from_slice(&(lb.len() as u32).to_le_bytes());
    out.extend_from_slice(&lb);
    out
}

/// Parses the log stream; `None` when it is not the simulator's.
fn decode_log(b: &[u8]) -> Option<Result<(SetHeader, Vec<LogRecord>), MediaError>> {
    if !b.starts_with(LOG_MAGIC) {
        return None;
    }
    let bad = || MediaError::Damaged("the simulator's payload in the log stream".into());
    let take = |pos: usize, n: usize| b.get(pos..pos.checked_add(n)?);
    let parse = || -> Result<(SetHeader, Vec<LogRecord>), MediaError> {
        let len = |pos| -> Result<usize, MediaError> {
            let v = take(pos, 4).ok_or_else(bad)?;
            Ok(u32::from_le_bytes([v[0], v[1], v[2], v[3]]) as usize)
        };
        let hl = len(16)?;
        let h = serde_json::from_slice(take(20, hl).ok_or_else(bad)?).map_err(|_| bad())?;
        let ll = len(20 + hl)?;
        let log = serde_json::from_slice(take(24 + hl, ll).ok_or_else(bad)?).map_err(|_| bad())?;
        Ok((h, log))
    };
    Some(parse())
}

/// A file writer that stops with "disk full" after `limit` bytes (the fault).
struct Limited<W> {
    inner: W,
    left: Option<usize>,
    full: bool,
}

impl<W: Write> Write for Limited<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match self.left {
            Some(0) => {
                self.full = true;
                return Err(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    "There is not enough space on the disk.",
                ));
            }
            Some(left) => buf.len().min(left),
            None => buf.len(),
        };
        let n = self.inner.write(&buf[..n])?;
        if let Some(left) = self.left.as_mut() {
            *left -= n;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Pages handed to the bakfile writer as it asks for them, each encoded (header,
/// rows, page checksum) only then: the set is streamed to the file, never held in
/// memory. `before_page` runs before each page; when it says no, the pages end early
/// and the writer fails (the backup was stopped).
struct Encoded<'a> {
    pages: std::slice::Iter<'a, (u32, Arc<Page>)>,
    before_page: &'a mut dyn FnMut() -> bool,
    stopped: bool,
}

impl Iterator for Encoded<'_> {
    type Item = Vec<u8>;
    fn next(&mut self) -> Option<Vec<u8>> {
        if self.stopped {
            return None;
        }
        let (id, page) = self.pages.next()?;
        if !(self.before_page)() {
            self.stopped = true;
            return None;
        }
        Some(page.encode(*id))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.pages.size_hint()
    }
}

impl ExactSizeIterator for Encoded<'_> {}

/// Writes one family of a backup set through the bakfile writer; `init` overwrites
/// existing sets, otherwise the set is appended at the next position (set in
/// `header`, with the bytes written). `fail_after` simulates a full disk after that
/// many bytes of the file. `before_page` runs before each data page is written (the
/// backup's progress and pace); when it returns false the write stops with an
/// `Interrupted` error and the file is left as it is for the caller to remove.
pub fn write_set(
    path: &Path,
    header: &mut SetHeader,
    payload: &SetPayload,
    init: bool,
    fail_after: Option<usize>,
    before_page: &mut dyn FnMut() -> bool,
) -> Result<u64, MediaError> {
    let append_at = if init || !path.exists() {
        None
    } else {
        let f = bakfile::inspect(path).map_err(malformed)?;
        if !f.is_sound() {
            return Err(MediaError::Malformed(
                f.damage.first().map(|d| d.what.clone()).unwrap_or_default(),
            ));
        }
        header.position = f.sets.len() as i64 + 1;
        Some(f.size)
    };
    if append_at.is_none() {
        header.position = 1;
    }
    let mut pages = Encoded {
        pages: payload.pages.iter(),
        before_page,
        stopped: false,
    };
    let log = encode_log(header, &payload.log);
    let desc = description(header);
    let file = match append_at {
        None => std::fs::File::create(path),
        Some(_) => std::fs::OpenOptions::new().append(true).open(path),
    }
    .map_err(MediaError::Open)?;
    let mut out = Limited {
        inner: std::io::BufWriter::with_capacity(1 << 20, file),
        left: fail_after.map(|n| n.saturating_sub(append_at.unwrap_or(0) as usize)),
        full: false,
    };
    let written = match append_at {
        None if header.compressed => {
            bakfile::writer::write_backup_compressed(&mut out, &desc, &mut pages, &log)
        }
        None => bakfile::write_backup(&mut out, &desc, &mut pages, &log),
        Some(at) => bakfile::append_backup(&mut out, &desc, &mut pages, &log, at),
    };
    if pages.stopped {
        return Err(MediaError::Write(std::io::Error::new(
            std::io::ErrorKind::Interrupted,
            "the backup was stopped",
        )));
    }
    let full = out.full;
    let file = out
        .inner
        .into_inner()
        .map_err(|e| MediaError::Write(e.into_error()));
    let written = match written {
        Ok(n) => n,
        Err(_) if full => {
            let _ = file.map(|f| f.sync_all());
            return Err(MediaError::Write(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                "There is not enough space on the disk.",
            )));
        }
        Err(e) => return Err(MediaError::Write(std::io::Error::other(e.to_string()))),
    };
    file?.sync_all().map_err(MediaError::Write)?;
    header.backup_size = written as i64;
    header.compressed_size = written as i64;
    Ok(written)
}

/// The `damage_after_write` fault: flips one byte in the middle of the data stream
/// (a page) of the file's last set, or of its log stream for a log backup. One byte,
/// because SQL Server's XOR checksums cannot see some multi-byte patterns (the same
/// bits flipped twice in one sector): this damage is always detectable, as a page
/// error (3183) or, for a log, a backup checksum error (3189, WITH CHECKSUM only).
pub fn damage(path: &Path) {
    let Ok(f) = bakfile::inspect(path) else {
        return;
    };
    let Some(s) = f.sets.last().and_then(|set| {
        set.streams
            .iter()
            .find(|s| s.kind == "MQDA")
            .or_else(|| set.streams.first())
    }) else {
        return;
    };
    let at = s.data_offset + 2 + (s.length.saturating_sub(2)) / 2 + 100;
    let flip = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)?;
        let mut b = [0u8; 1];
        f.seek(SeekFrom::Start(at))?;
        f.read_exact(&mut b)?;
        b[0] ^= 0x5A;
        f.seek(SeekFrom::Start(at))?;
        f.write_all(&b)
    };
    let _ = flip();
}

/// `len` bytes at logical `offset`: the file's own bytes for plain MTF, the
/// decompressed stream for an `MSSQLBAK` container (stream offsets are logical).
fn read_range(path: &Path, plain: bool, offset: u64, len: u64) -> Result<Vec<u8>, MediaError> {
    let file = std::fs::File::open(path).map_err(MediaError::Open)?;
    let source = bakfile::source::FileSource::new(file).map_err(MediaError::Open)?;
    let mut b = vec![0u8; usize::try_from(len).map_err(|_| malformed("stream too long"))?];
    let n = if plain {
        let mut s = source;
        bakfile::source::read_full(&mut s, offset, &mut b)
    } else {
        let mut c = bakfile::container::Container::new(source);
        bakfile::source::read_full(&mut c, offset, &mut b)
    }
    .map_err(MediaError::Open)?;
    if (n as u64) < len {
        return Err(malformed("file ends inside a stream"));
    }
    Ok(b)
}

/// The payload bytes of the set's first stream of `kind` (after the 2-byte pad).
fn stream_bytes(
    path: &Path,
    plain: bool,
    set: &BackupSet,
    kind: &str,
) -> Result<Option<Vec<u8>>, MediaError> {
    match set.streams.iter().find(|s| s.kind == kind) {
        Some(s) if s.length >= 2 => {
            read_range(path, plain, s.data_offset + 2, s.length - 2).map(Some)
        }
        _ => Ok(None),
    }
}

fn sim_header(
    path: &Path,
    set: &BackupSet,
    media: &bakfile::MediaInfo,
    plain: bool,
) -> Result<Option<(SetHeader, Vec<LogRecord>)>, MediaError> {
    let Some(bytes) = stream_bytes(path, plain, set, "MQTL")? else {
        return Ok(None);
    };
    let Some(parsed) = decode_log(&bytes) else {
        return Ok(None);
    };
    let (mut h, log) = parsed?;
    let r = &set.header;
    h.backup_type = i64::from(r.backup_type);
    h.name = r.backup_name.clone();
    h.description = r.backup_description.clone();
    h.position = i64::from(r.position);
    h.database_name = r.database_name.clone();
    h.server_name = r.server_name.clone();
    h.machine_name = r.machine_name.clone();
    h.user_name = r.user_name.clone();
    h.first_lsn = lsn_i64(r.first_lsn);
    h.last_lsn = lsn_i64(r.last_lsn);
    h.checkpoint_lsn = lsn_i64(r.checkpoint_lsn);
    h.database_backup_lsn = lsn_i64(r.database_backup_lsn);
    h.start = mtf_to_unix(r.backup_start_date).unwrap_or(h.start);
    h.creation_date = mtf_to_unix(r.database_creation_date).unwrap_or(h.creation_date);
    h.has_checksums = r.has_backup_checksums;
    h.family_count = i64::from(media.family_count.max(1));
    h.family_sequence = i64::from(media.family_sequence.max(1));
    if let Some(id) = &media.media_set_id {
        h.family_guid = id.clone();
    }
    // BackupSize: the bytes of the set's data and log streams.
    h.backup_size = set
        .streams
        .iter()
        .map(|s| s.length.saturating_sub(2) as i64)
        .sum();
    h.compressed_size = h.backup_size;
    let sizes: Vec<(i64, i64)> = h.files.iter().map(|f| (f.file_id, f.size)).collect();
    h.files = set
        .files
        .iter()
        .map(|f| FileEntry {
            logical: f.logical_name.clone(),
            physical: f.physical_name.clone(),
            kind: f.file_type.to_string(),
            file_id: i64::from(f.file_id),
            size: sizes
                .iter()
                .find(|(id, _)| *id == i64::from(f.file_id))
                .map(|s| s.1)
                .unwrap_or(0),
        })
        .collect();
    Ok(Some((h, log)))
}

/// The backup sets of a file (RESTORE HEADERONLY), read by the bakfile reader.
pub fn read_headers(path: &Path) -> Result<Vec<SetInfo>, MediaError> {
    let f = match bakfile::inspect(path) {
        Ok(f) => f,
        Err(e) if e.kind() == crate::ErrorKind::Io => {
            return Err(MediaError::Open(std::io::Error::new(
                if path.exists() {
                    std::io::ErrorKind::PermissionDenied
                } else {
                    std::io::ErrorKind::NotFound
                },
                e.to_string(),
            )))
        }
        Err(e) => return Err(malformed(e)),
    };
    // HEADERONLY lists what it can read; a set that is not even described is not one.
    if f.sets.is_empty() {
        return Err(MediaError::Malformed(
            f.damage.first().map(|d| d.what.clone()).unwrap_or_default(),
        ));
    }
    let plain = f.container == bakfile::ContainerKind::Mtf;
    let mut out = Vec::new();
    for s in &f.sets {
        let sim = sim_header(path, s, &f.media, plain).ok().flatten();
        out.push(SetInfo {
            header: s.header.clone(),
            files: s.files.clone(),
            sim: sim.map(|x| x.0),
            file_size: f.size,
        });
    }
    Ok(out)
}

/// Runs the bakfile checker over the file and turns the damage that concerns set
/// `position` into SQL Server's error: structure 3241, a page 3183, a CSUM 3189.
fn check_file(path: &Path, position: i64) -> Result<bakfile::CheckReport, MediaError> {
    let report = match bakfile::check(path) {
        Ok(r) => r,
        Err(e) if e.kind() == crate::ErrorKind::Io && !path.exists() => {
            return Err(MediaError::Open(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                e.to_string(),
            )))
        }
        Err(e) => return Err(malformed(e)),
    };
    let Some(set) = report
        .file
        .sets
        .iter()
        .find(|s| i64::from(s.header.position) == position)
    else {
        if report.file.sets.is_empty() || !report.file.damage.is_empty() {
            return Err(MediaError::Malformed(
                report
                    .file
                    .damage
                    .first()
                    .map(|d| d.what.clone())
                    .unwrap_or_default(),
            ));
        }
        return Err(MediaError::NoSet(position));
    };
    let suffix = format!(" of set {position}");
    let mine: Vec<&bakfile::Damage> = report
        .damage
        .iter()
        .filter(|d| d.stream.as_deref().is_none_or(|s| s.ends_with(&suffix)))
        .collect();
    if let Some(d) = mine.iter().find(|d| d.stream.is_none()) {
        return Err(MediaError::Malformed(d.what.clone()));
    }
    if !set.complete {
        return Err(malformed("the backup set ends before its ESET block"));
    }
    if let Some(d) = mine.iter().find(|d| d.page_id.is_some()) {
        return Err(MediaError::PageError {
            page: d.page_id.clone().unwrap_or_default(),
            database: set.header.database_name.clone(),
            detail: format!("{} ({})", d.what, d.stream.clone().unwrap_or_default()),
        });
    }
    if let Some(d) = mine.first() {
        return Err(MediaError::Damaged(format!(
            "{} ({})",
            d.what,
            d.stream.clone().unwrap_or_default()
        )));
    }
    Ok(report)
}

/// Checks a set as RESTORE VERIFYONLY does, with the bakfile checker (the same as
/// `pacsbak inspect --check`): MTF structure, page checksums, backup checksums.
pub fn verify(path: &Path, position: i64) -> Result<SetInfo, MediaError> {
    let report = check_file(path, position)?;
    let set = report
        .file
        .sets
        .iter()
        .find(|s| i64::from(s.header.position) == position)
        .ok_or(MediaError::NoSet(position))?;
    let plain = report.file.container == bakfile::ContainerKind::Mtf;
    let sim = sim_header(path, set, &report.file.media, plain)?;
    Ok(SetInfo {
        header: set.header.clone(),
        files: set.files.clone(),
        sim: sim.map(|x| x.0),
        file_size: report.file.size,
    })
}

fn read_family(path: &Path, position: i64) -> Result<(SetHeader, SetPayload), MediaError> {
    let report = check_file(path, position)?;
    let file = &report.file;
    let set = file
        .sets
        .iter()
        .find(|s| i64::from(s.header.position) == position)
        .ok_or(MediaError::NoSet(position))?;
    let plain = file.container == bakfile::ContainerKind::Mtf;
    let (h, log) = sim_header(path, set, &file.media, plain)?.ok_or(MediaError::Foreign)?;
    let mut pages = Vec::new();
    if let Some(data) = stream_bytes(path, plain, set, "MQDA")? {
        for p in data.chunks(PAGE_SIZE) {
            let (_, id) = bakfile::checksum::page_id(p);
            let page = Page::decode(p).map_err(|e| MediaError::PageError {
                page: format!("1:{id}"),
                database: h.database_name.clone(),
                detail: e,
            })?;
            pages.push((id, Arc::new(page)));
        }
    }
    Ok((h, SetPayload { pages, log }))
}

/// Reads a whole backup set from all its families (RESTORE DATABASE/LOG), each
/// checked first as VERIFYONLY checks it.
pub fn read_set(paths: &[&Path], position: i64) -> Result<(SetHeader, SetPayload), MediaError> {
    let mut header: Option<SetHeader> = None;
    let mut payload = SetPayload::default();
    for p in paths {
        let (h, mut pl) = read_family(p, position)?;
        payload.pages.append(&mut pl.pages);
        payload.log.append(&mut pl.log);
        if let Some(first) = &header {
            if first.backup_set_guid != h.backup_set_guid {
                return Err(malformed("the files are not families of one backup set"));
            }
        }
        header.get_or_insert(h);
    }
    payload.pages.sort_by_key(|(id, _)| *id);
    header
        .map(|h| (h, payload))
        .ok_or_else(|| malformed("no device"))
}

//! The one place where the simulator reads and writes backup files.
//!
//! PROVISIONAL: until the `bakfile` module (MTF writer and reader) lands in this
//! branch, backup files use a simple container of the simulator's own: a magic line,
//! then one record per backup set `{u32 header length, JSON header, u64 payload
//! length, payload, 32-byte BLAKE3 of header and payload}`. The payload carries the
//! data pages (8 KiB, with SQL Server page checksums) and the log records. Only
//! [`write_set`], [`read_headers`], [`read_set`] and [`verify`] are used by the rest
//! of the simulator, so switching to the real format touches this file alone.

use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::engine::pages::{Page, PAGE_SIZE};
use super::engine::state::LogRecord;

const MAGIC: &[u8; 16] = b"PACSSIM-BAK v1\n\0";

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

/// What HEADERONLY and FILELISTONLY show about one backup set.
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
    /// FamilyGUID (the media set).
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
    /// BackupSize in bytes.
    pub backup_size: i64,
    /// CompressedBackupSize in bytes.
    pub compressed_size: i64,
    /// WITH COMPRESSION.
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
    /// Data pages by page id.
    pub pages: Vec<(u32, Page)>,
    /// Log records.
    pub log: Vec<LogRecord>,
}

/// Why a backup file could not be used; each maps to a SQL Server error.
#[derive(Debug)]
pub enum MediaError {
    /// The file cannot be opened or created (3201).
    Open(std::io::Error),
    /// Writing failed (3202).
    Write(std::io::Error),
    /// Not a backup file, or truncated (3241).
    Malformed,
    /// A checksum does not match (3189).
    Damaged(String),
    /// No backup set at this position (3206... shown as "file ID n").
    NoSet(i64),
}

fn encode_payload(p: &SetPayload) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(p.pages.len() as u32).to_le_bytes());
    for (id, page) in &p.pages {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&page.encode(*id));
    }
    let log = serde_json::to_vec(&p.log).unwrap_or_default();
    out.extend_from_slice(&(log.len() as u32).to_le_bytes());
    out.extend_from_slice(&log);
    out
}

fn decode_payload(b: &[u8]) -> Result<SetPayload, MediaError> {
    let take = |pos: usize, n: usize| b.get(pos..pos + n).ok_or(MediaError::Malformed);
    let n = u32::from_le_bytes(take(0, 4)?.try_into().map_err(|_| MediaError::Malformed)?) as usize;
    let mut pos = 4;
    let mut pages = Vec::with_capacity(n);
    for _ in 0..n {
        let id = u32::from_le_bytes(
            take(pos, 4)?
                .try_into()
                .map_err(|_| MediaError::Malformed)?,
        );
        let page = Page::decode(take(pos + 4, PAGE_SIZE)?)
            .map_err(|e| MediaError::Damaged(format!("page (1:{id}): {e}")))?;
        pages.push((id, page));
        pos += 4 + PAGE_SIZE;
    }
    let ln = u32::from_le_bytes(
        take(pos, 4)?
            .try_into()
            .map_err(|_| MediaError::Malformed)?,
    ) as usize;
    let log = serde_json::from_slice(take(pos + 4, ln)?).map_err(|_| MediaError::Malformed)?;
    Ok(SetPayload { pages, log })
}

struct RawSet {
    header: SetHeader,
    payload: Vec<u8>,
    intact: bool,
}

fn read_raw(path: &Path) -> Result<Vec<RawSet>, MediaError> {
    let mut f = std::fs::File::open(path).map_err(MediaError::Open)?;
    let mut b = Vec::new();
    f.read_to_end(&mut b).map_err(MediaError::Open)?;
    if b.len() < MAGIC.len() || &b[..MAGIC.len()] != MAGIC {
        return Err(MediaError::Malformed);
    }
    let mut pos = MAGIC.len();
    let mut sets = Vec::new();
    while pos < b.len() {
        let get = |p: usize, n: usize| b.get(p..p + n).ok_or(MediaError::Malformed);
        let hl = u32::from_le_bytes(get(pos, 4)?.try_into().map_err(|_| MediaError::Malformed)?)
            as usize;
        let hb = get(pos + 4, hl)?;
        let header: SetHeader = serde_json::from_slice(hb).map_err(|_| MediaError::Malformed)?;
        let pl = u64::from_le_bytes(
            get(pos + 4 + hl, 8)?
                .try_into()
                .map_err(|_| MediaError::Malformed)?,
        ) as usize;
        let payload = get(pos + 12 + hl, pl)?.to_vec();
        let sum = get(pos + 12 + hl + pl, 32)?;
        let mut h = blake3::Hasher::new();
        h.update(hb);
        h.update(&payload);
        let intact = h.finalize().as_bytes() == sum;
        sets.push(RawSet {
            header,
            payload,
            intact,
        });
        pos += 12 + hl + pl + 32;
    }
    Ok(sets)
}

/// Writes one family of a backup set; `init` overwrites existing sets, otherwise the
/// set is appended at the next position (which is returned, with the bytes written).
/// `fail_after` simulates a full disk after that many payload bytes.
pub fn write_set(
    path: &Path,
    header: &mut SetHeader,
    payload: &SetPayload,
    init: bool,
    fail_after: Option<usize>,
) -> Result<u64, MediaError> {
    let existing = if init || !path.exists() {
        Vec::new()
    } else {
        read_raw(path)?
    };
    header.position = existing.len() as i64 + 1;
    let mut body = encode_payload(payload);
    header.backup_size = body.len() as i64;
    if header.compressed {
        body = zstd::encode_all(&body[..], 3).map_err(MediaError::Write)?;
    }
    header.compressed_size = body.len() as i64;
    let hb = serde_json::to_vec(header).map_err(|e| MediaError::Write(std::io::Error::other(e)))?;
    let mut h = blake3::Hasher::new();
    h.update(&hb);
    h.update(&body);
    let mut out = Vec::new();
    if existing.is_empty() {
        out.extend_from_slice(MAGIC);
    }
    out.extend_from_slice(&(hb.len() as u32).to_le_bytes());
    out.extend_from_slice(&hb);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(h.finalize().as_bytes());
    let mut f = if existing.is_empty() {
        std::fs::File::create(path).map_err(MediaError::Open)?
    } else {
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(MediaError::Open)?
    };
    if let Some(limit) = fail_after {
        let cut = limit.min(out.len());
        f.write_all(&out[..cut]).map_err(MediaError::Write)?;
        return Err(MediaError::Write(std::io::Error::new(
            std::io::ErrorKind::StorageFull,
            "There is not enough space on the disk.",
        )));
    }
    f.write_all(&out).map_err(MediaError::Write)?;
    f.sync_all().map_err(MediaError::Write)?;
    Ok(out.len() as u64)
}

/// The headers of every backup set in a file (RESTORE HEADERONLY).
pub fn read_headers(path: &Path) -> Result<Vec<SetHeader>, MediaError> {
    Ok(read_raw(path)?.into_iter().map(|s| s.header).collect())
}

/// Checks a set's checksums and pages (RESTORE VERIFYONLY).
pub fn verify(path: &Path, position: i64) -> Result<SetHeader, MediaError> {
    let (h, _) = read_family(path, position)?;
    Ok(h)
}

fn read_family(path: &Path, position: i64) -> Result<(SetHeader, SetPayload), MediaError> {
    let sets = read_raw(path)?;
    let raw = sets
        .into_iter()
        .find(|s| s.header.position == position)
        .ok_or(MediaError::NoSet(position))?;
    if !raw.intact {
        return Err(MediaError::Damaged("backup set checksum mismatch".into()));
    }
    let body = if raw.header.compressed {
        zstd::decode_all(&raw.payload[..])
            .map_err(|_| MediaError::Damaged("compressed data".into()))?
    } else {
        raw.payload
    };
    Ok((raw.header, decode_payload(&body)?))
}

/// Reads a whole backup set from all its families (RESTORE DATABASE/LOG).
pub fn read_set(paths: &[&Path], position: i64) -> Result<(SetHeader, SetPayload), MediaError> {
    let mut header = None;
    let mut payload = SetPayload::default();
    for p in paths {
        let (h, mut pl) = read_family(p, position)?;
        payload.pages.append(&mut pl.pages);
        payload.log.append(&mut pl.log);
        header.get_or_insert(h);
    }
    payload.pages.sort_by_key(|(id, _)| *id);
    header.map(|h| (h, payload)).ok_or(MediaError::Malformed)
}

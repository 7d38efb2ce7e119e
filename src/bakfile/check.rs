//! Offline RESTORE VERIFYONLY WITH CHECKSUM: proves a backup file restorable where
//! no SQL Server runs, as far as its own checksums allow.
//!
//! On top of what [`inspect`](super::reader::inspect) proves (every block and stream
//! header checksum, the set complete up to ESET, stream lengths inside the file),
//! this reads every data (MQDA) and log (MQTL) stream once, front to back, and
//! verifies its 2-byte pad, its backup checksum (CSUM) and the page checksum of
//! every page that carries one. Both checksums are folded from the same per-sector
//! XORs, so each byte is touched once. Damaged places are named by stream, page id
//! and offset; what no checksum covers is listed in [`BLIND_SPOTS`].

use std::path::Path;

use serde::Serialize;

use super::checksum::{
    page_checksum_from_xors, page_has_checksum, page_id, sector_xors, StreamChecksum, PAGE, SECTOR,
};
use super::mtf::le;
use super::reader::{self, BackupFile, Damage, DataStream};
use super::source::{read_full, ReadAt};
use crate::error::Result;

/// Bytes read per step: a whole number of pages, large enough for sequential I/O.
const CHUNK: usize = 4 << 20;

/// What no checksum in the file covers; printed with every verdict.
pub const BLIND_SPOTS: &[&str] = &[
    "MQCI (the SCIN/SFGI/SFIN records), SPAD/APAD padding and OTCP/TSMP data carry no checksum",
    "block fields after the 52-byte common header (backup set name, dates) carry no checksum",
    "the XOR/rotate checksums miss the same bit flipped twice in one sector and swapped aligned page pairs",
    "a page whose checksum flag is cleared drops out of the page check (the CSUM still covers it where present)",
    "backups taken without CHECKSUM have no CSUM: only pages written with PAGE_VERIFY CHECKSUM are verified",
    "logical consistency of the database is not checked (that is DBCC CHECKDB after a restore drill)",
];

/// The verdict of `inspect --check` on one file.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// What `inspect` read: headers, sets and structural damage.
    pub file: BackupFile,
    /// Data and log streams read.
    pub streams_checked: u64,
    /// CSUM values that matched.
    pub csums_verified: u64,
    /// Pages whose checksum matched.
    pub pages_verified: u64,
    /// Pages read that carry no checksum (torn-page protection or none).
    pub pages_without_checksum: u64,
    /// Stream bytes read.
    pub bytes_read: u64,
    /// Every damaged place, structural ones first.
    pub damage: Vec<Damage>,
    /// [`BLIND_SPOTS`], carried so every JSON verdict states them.
    pub blind_spots: Vec<&'static str>,
    /// No damage found and every set complete.
    pub ok: bool,
}

/// Verifies the backup at `path`.
pub fn check(path: &Path) -> Result<CheckReport> {
    let file = reader::inspect(path)?;
    let (mut opened, _) = reader::open(path)?;
    let mut report = check_source(opened.source(), file);
    for d in &mut report.damage {
        if d.file_offset.is_none() {
            if let Some(off) = d.offset {
                d.file_offset = opened.file_offset_of(off);
            }
        }
    }
    Ok(report)
}

/// Verifies the streams of an inspected file read from `src`.
pub fn check_source(src: &mut dyn ReadAt, file: BackupFile) -> CheckReport {
    let mut r = CheckReport {
        damage: file.damage.clone(),
        file,
        streams_checked: 0,
        csums_verified: 0,
        pages_verified: 0,
        pages_without_checksum: 0,
        bytes_read: 0,
        blind_spots: BLIND_SPOTS.to_vec(),
        ok: false,
    };
    let mut buf = Vec::new();
    let mut xors = Vec::new();
    let sets: Vec<(u16, bool, Vec<DataStream>)> = r
        .file
        .sets
        .iter()
        .map(|s| {
            (
                s.header.position,
                s.header.has_backup_checksums,
                s.streams.clone(),
            )
        })
        .collect();
    for (position, with_checksum, streams) in sets {
        let mut counts = std::collections::HashMap::new();
        for s in &streams {
            let n = counts.entry(s.kind.clone()).or_insert(0u32);
            *n += 1;
            let name = format!("{} #{} of set {}", s.kind, n, position);
            if with_checksum && !s.expects_csum {
                r.damage.push(named(
                    "set was taken WITH CHECKSUM but this stream is not marked for a CSUM",
                    &name,
                    s.header_offset,
                ));
            }
            check_stream(src, s, &name, &mut r, &mut buf, &mut xors);
        }
    }
    r.ok = r.damage.is_empty() && r.file.is_sound();
    r
}

fn named(what: impl Into<String>, stream: &str, offset: u64) -> Damage {
    Damage {
        what: what.into(),
        stream: Some(stream.to_string()),
        page_id: None,
        offset: Some(offset),
        file_offset: None,
    }
}

fn check_stream(
    src: &mut dyn ReadAt,
    s: &DataStream,
    name: &str,
    r: &mut CheckReport,
    buf: &mut Vec<u8>,
    xors: &mut Vec<u32>,
) {
    r.streams_checked += 1;
    if s.length < 2 {
        r.damage.push(named(
            format!("stream of {} bytes, shorter than its 2-byte pad", s.length),
            name,
            s.header_offset,
        ));
        return;
    }
    let mut pad = [0u8; 2];
    if read_full(src, s.data_offset, &mut pad).unwrap_or(0) < 2 {
        r.damage.push(named(
            "file ends at the start of the stream",
            name,
            s.data_offset,
        ));
        return;
    }
    if pad != [0, 0] {
        r.damage.push(named(
            "the stream's 2-byte pad is not zero",
            name,
            s.data_offset,
        ));
    }
    let payload = s.length - 2;
    if payload % SECTOR as u64 != 0 {
        r.damage.push(named(
            format!("stream payload of {payload} bytes is not a whole number of 512-byte sectors"),
            name,
            s.header_offset,
        ));
    }
    let is_data = s.kind == "MQDA";
    let mut csum = StreamChecksum::default();
    let mut done: u64 = 0;
    let start = s.data_offset + 2;
    while done < payload {
        let want = (payload - done).min(CHUNK as u64) as usize;
        buf.resize(want, 0);
        let n = match read_full(src, start + done, &mut buf[..]) {
            Ok(n) => n,
            Err(e) => {
                r.damage
                    .push(named(format!("read failed: {e}"), name, start + done));
                return;
            }
        };
        r.bytes_read += n as u64;
        if n < want {
            r.damage.push(named(
                format!(
                    "file ends {} bytes into a {payload}-byte stream: truncated",
                    done + n as u64
                ),
                name,
                start + done + n as u64,
            ));
            return;
        }
        let whole = want - want % SECTOR;
        xors.clear();
        sector_xors(&buf[..whole], xors);
        for x in xors.iter() {
            csum.push(*x);
        }
        if is_data {
            let per_page = PAGE / SECTOR;
            for (i, page) in buf[..whole].chunks_exact(PAGE).enumerate() {
                if !page_has_checksum(page) {
                    if super::checksum::is_page(page) {
                        r.pages_without_checksum += 1;
                    }
                    continue;
                }
                let stored = le::u32(page, 0x3C);
                let computed =
                    page_checksum_from_xors(&xors[i * per_page..(i + 1) * per_page], stored);
                if computed == stored {
                    r.pages_verified += 1;
                } else {
                    let (file_id, page_no) = page_id(page);
                    let mut d = named(
                        format!("page checksum mismatch: stored 0x{stored:08x}, computed 0x{computed:08x}"),
                        name,
                        start + done + (i * PAGE) as u64,
                    );
                    d.page_id = Some(format!("{file_id}:{page_no}"));
                    r.damage.push(d);
                }
            }
        }
        done += want as u64;
    }
    match (s.expects_csum, s.csum) {
        (_, Some(stored)) if stored == csum.value() => r.csums_verified += 1,
        (_, Some(stored)) => r.damage.push(named(
            format!(
                "backup checksum (CSUM) mismatch: stored 0x{stored:08x}, computed 0x{:08x}; the damage is somewhere in this stream's {payload} bytes",
                csum.value()
            ),
            name,
            s.data_offset,
        )),
        (true, None) => r.damage.push(named("CSUM stream missing after a stream marked for one", name, s.header_offset)),
        (false, None) => {}
    }
}

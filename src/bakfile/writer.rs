//! Writes SQL Server native backups (MTF with SQL Server's records, plain or in the
//! `MSSQLBAK` compressed container), for the simulator and for tests.
//!
//! The output follows the block order real files have: `TAPE, SFMB, SSET, VOLB,
//! MSCI{MQCI}, MSDA{APAD, MQDA, CSUM, empty MQDA}, MSTL{APAD, MQTL, CSUM}, SFMB,
//! ESET, SFMB`, blocks on 512-byte boundaries, stream payloads on 512-byte
//! boundaries after their 2-byte pad, CSUM streams when CHECKSUM is asked. Whatever
//! it writes reads back through [`inspect`](super::reader::inspect) and passes
//! `--check`. It streams: pages come from an iterator and are written as they come,
//! so a large database needs no more memory than one page (one 64 KiB chunk when
//! compressing).
//!
//! Compressed, the same MTF stream goes into the container as SQL Server lays it
//! out: the header up to 0x1E0, then XPRESS-Huffman records of at most 64 KiB,
//! each SFMB stored raw on a 512-byte boundary. Before the SFMB that opens a set's
//! trailer (`SFMB, ESET, SFMB`) comes zero padding from the end of the last data
//! record to the next 4 KiB boundary of the file, the layout of the 2014/2016
//! backups in issue 13; the other raw blocks are reached with a padding record.

use std::io::Write;

use super::checksum::{fill_page_checksum, sector_xor, StreamChecksum, PAGE, SECTOR};
use super::container::{FIRST_RECORD, MAGIC, PAD_UNIT};
use super::header::{BackupType, FileListEntry, Lsn};
use super::mtf::{BlockHeader, MtfDate, StrRef, StreamHeader, Tag};
use super::records::{SCIN_FLAG_ALWAYS, SCIN_FLAG_CHECKSUM, SCIN_FLAG_DIFFERENTIAL};
use super::xpress;
use crate::error::Result;
use crate::{Error, ErrorKind};

const BLOCK: u64 = 512;

/// Everything about a backup set that is not data: what HEADERONLY and FILELISTONLY
/// will report for the written file.
#[derive(Debug, Clone, PartialEq)]
pub struct SetDescription {
    /// Full, differential or log: SCIN's letter and flags, SSET's attributes, and
    /// whether an MSDA with pages is written (not for logs).
    pub backup_type: BackupType,
    /// SCIN's database name (DatabaseName).
    pub database_name: String,
    /// SCIN's server\instance name (ServerName).
    pub server_name: String,
    /// VOLB's machine name (MachineName).
    pub machine_name: String,
    /// SSET's user name (UserName).
    pub user_name: String,
    /// SSET's set name (BackupName).
    pub backup_name: String,
    /// SSET's description (BackupDescription).
    pub backup_description: String,
    /// SSET's data set number (Position): 1, or the next one when appending.
    pub position: u16,
    /// SCIN's FirstLSN.
    pub first_lsn: Lsn,
    /// SCIN's LastLSN.
    pub last_lsn: Lsn,
    /// SCIN's CheckpointLSN.
    pub checkpoint_lsn: Lsn,
    /// SCIN's DatabaseBackupLSN; `None` writes zero, read back as null.
    pub database_backup_lsn: Option<Lsn>,
    /// SCIN's BackupStartDate, also the date of the TAPE, SSET and VOLB blocks.
    pub backup_start_date: MtfDate,
    /// SCIN's DatabaseCreationDate.
    pub database_creation_date: MtfDate,
    /// (major, minor, build), e.g. (16, 0, 1000).
    pub software_version: (u8, u8, u16),
    /// SCIN's DatabaseVersion (957 is SQL Server 2022's).
    pub database_version: u16,
    /// SCIN's CompatibilityLevel.
    pub compatibility_level: u8,
    /// SCIN's SortOrder.
    pub sort_order: u8,
    /// SCIN's UnicodeLocaleId.
    pub unicode_locale_id: u32,
    /// SCIN's UnicodeComparisonStyle.
    pub unicode_comparison_style: u32,
    /// WITH CHECKSUM: CSUM streams and the SCIN flag.
    pub with_checksum: bool,
    /// Compute the page checksum of every page whose header asks for one.
    pub fill_page_checksums: bool,
    /// The FILELISTONLY rows: one SFIN each, one SFGI per named filegroup; files
    /// of type 'L' are written in group 0.
    pub files: Vec<FileListEntry>,
    /// Striping: how many files the set spans and which one this is (1-based).
    pub family_count: u16,
    /// This file's family number, 1-based (RAID stream u16 at 24).
    pub family_sequence: u16,
    /// The media set GUID as its 16 stored bytes (RAID stream; the first 4 are
    /// also TAPE's media family id).
    pub media_set_id: [u8; 16],
}

impl SetDescription {
    /// A description with SQL Server 2022 defaults for `database`.
    pub fn new(database: &str, backup_type: BackupType) -> Self {
        Self {
            backup_type,
            database_name: database.to_string(),
            server_name: "SIMULATOR".into(),
            machine_name: "SIMULATOR".into(),
            user_name: "pacsbak".into(),
            backup_name: String::new(),
            backup_description: String::new(),
            position: 1,
            first_lsn: Lsn(0),
            last_lsn: Lsn(0),
            checkpoint_lsn: Lsn(0),
            database_backup_lsn: None,
            backup_start_date: MtfDate::default(),
            database_creation_date: MtfDate::default(),
            software_version: (16, 0, 1000),
            database_version: 957,
            compatibility_level: 160,
            sort_order: 0,
            unicode_locale_id: 1033,
            unicode_comparison_style: 196_609,
            with_checksum: true,
            fill_page_checksums: true,
            files: vec![
                FileListEntry {
                    logical_name: database.to_string(),
                    physical_name: format!("D:\\Data\\{database}.mdf"),
                    file_type: 'D',
                    file_group_name: Some("PRIMARY".into()),
                    file_id: 1,
                    file_group_id: 1,
                },
                FileListEntry {
                    logical_name: format!("{database}_log"),
                    physical_name: format!("L:\\Log\\{database}_log.ldf"),
                    file_type: 'L',
                    file_group_name: None,
                    file_id: 2,
                    file_group_id: 0,
                },
            ],
            family_count: 1,
            family_sequence: 1,
            media_set_id: [0x42; 16],
        }
    }
}

/// An alias kept for callers that think in database files.
pub type DataFile = FileListEntry;

fn write_all<W: Write>(w: &mut W, b: &[u8]) -> Result<()> {
    w.write_all(b)
        .map_err(|e| Error::new(ErrorKind::Io, format!("writing backup: {e}")).with_source(e))
}

/// The decoded size of a compressed record: one Huffman block, as SQL Server's
/// data chunks (64 KiB extents) are.
const CHUNK: usize = xpress::MAX_BLOCK;

/// How the compressed container reaches the 512-byte boundary a raw SFMB needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gap {
    /// A 0x24 padding record (after the TAPE chunk and after the ESET chunk).
    Record,
    /// Bare zeros to the next 4 KiB boundary: after a set's last data record,
    /// before its trailer.
    Zeros,
}

/// The `MSSQLBAK` side of the writer: MTF bytes in, container records out.
struct Packer {
    /// Bytes of the file written so far.
    file_pos: u64,
    /// MTF bytes waiting to fill a chunk.
    chunk: Vec<u8>,
    /// The MTF bytes arriving now belong to a block stored raw.
    raw: bool,
    /// The last record written was a compressed data record.
    after_data: bool,
    packed: Vec<u8>,
}

impl Packer {
    /// Writes the container header: the magic, the two version words every
    /// compressed file has, zeros up to the first record.
    fn start<W: Write>(w: &mut W) -> Result<Self> {
        let mut head = vec![0u8; FIRST_RECORD as usize];
        head[..8].copy_from_slice(MAGIC);
        head[8..12].copy_from_slice(&2u32.to_le_bytes());
        head[12..16].copy_from_slice(&3u32.to_le_bytes());
        write_all(w, &head)?;
        Ok(Self {
            file_pos: FIRST_RECORD,
            chunk: Vec::with_capacity(CHUNK),
            raw: false,
            after_data: false,
            packed: Vec::new(),
        })
    }

    fn data<W: Write>(&mut self, w: &mut W, mut b: &[u8]) -> Result<()> {
        while !b.is_empty() {
            let take = (CHUNK - self.chunk.len()).min(b.len());
            self.chunk.extend_from_slice(&b[..take]);
            b = &b[take..];
            if self.chunk.len() == CHUNK {
                self.flush(w)?;
            }
        }
        Ok(())
    }

    fn raw<W: Write>(&mut self, w: &mut W, b: &[u8]) -> Result<()> {
        write_all(w, b)?;
        self.file_pos += b.len() as u64;
        Ok(())
    }

    /// Writes what the chunk holds as compressed records.
    fn flush<W: Write>(&mut self, w: &mut W) -> Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::take(&mut self.chunk);
        let done = self.record(w, &chunk);
        self.chunk = chunk;
        self.chunk.clear();
        done
    }

    /// One 0x21 record. The stored size is a u16, which an incompressible 64 KiB
    /// (about 73 KiB packed) overflows; such a chunk is written as two halves.
    fn record<W: Write>(&mut self, w: &mut W, data: &[u8]) -> Result<()> {
        if data.is_empty() || data.len() % SECTOR != 0 {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "compressed chunk of {} bytes (not whole sectors)",
                    data.len()
                ),
            ));
        }
        self.packed.clear();
        xpress::compress(data, &mut self.packed)
            .map_err(|e| Error::new(ErrorKind::Internal, format!("compressing backup: {e}")))?;
        let (Ok(size), Ok(sectors)) = (
            u16::try_from(self.packed.len()),
            u8::try_from(data.len() / SECTOR),
        ) else {
            let half = (data.len() / 2).div_ceil(SECTOR) * SECTOR;
            if half == 0 || half >= data.len() {
                return Err(Error::new(
                    ErrorKind::Internal,
                    "a 512-byte chunk does not fit a compressed record",
                ));
            }
            self.record(w, &data[..half])?;
            return self.record(w, &data[half..]);
        };
        let mut head = [0u8; 28];
        head[0] = 0x21;
        head[1] = sectors;
        head[2..4].copy_from_slice(&size.to_le_bytes());
        write_all(w, &head)?;
        write_all(w, &self.packed)?;
        self.file_pos += (head.len() + self.packed.len()) as u64;
        self.after_data = true;
        Ok(())
    }

    /// Brings the file to where the next raw block goes. Zero padding only ever
    /// follows a data record (the reader takes zeros anywhere else for damage).
    fn gap<W: Write>(&mut self, w: &mut W, gap: Gap) -> Result<()> {
        if gap == Gap::Zeros && self.after_data {
            let pad = (PAD_UNIT - self.file_pos % PAD_UNIT) % PAD_UNIT;
            self.zeros(w, pad)?;
        } else {
            let mut pad = (BLOCK - self.file_pos % BLOCK) % BLOCK;
            if pad > 0 {
                if pad < 24 {
                    pad += BLOCK;
                }
                let size = u16::try_from(pad - 24)
                    .map_err(|_| Error::new(ErrorKind::Internal, "padding record too long"))?;
                let mut head = [0u8; 24];
                head[0] = 0x24;
                head[2..4].copy_from_slice(&size.to_le_bytes());
                self.raw(w, &head)?;
                self.zeros(w, u64::from(size))?;
            }
        }
        self.after_data = false;
        Ok(())
    }

    fn zeros<W: Write>(&mut self, w: &mut W, mut n: u64) -> Result<()> {
        let z = [0u8; 4096];
        while n > 0 {
            let k = n.min(z.len() as u64) as usize;
            self.raw(w, &z[..k])?;
            n -= k as u64;
        }
        Ok(())
    }
}

struct Out<W: Write> {
    w: W,
    pos: u64,
    control: u32,
    /// Set when writing the compressed container.
    packer: Option<Packer>,
}

impl<W: Write> Out<W> {
    fn put(&mut self, b: &[u8]) -> Result<()> {
        match &mut self.packer {
            None => write_all(&mut self.w, b)?,
            Some(p) if p.raw => p.raw(&mut self.w, b)?,
            Some(p) => p.data(&mut self.w, b)?,
        }
        self.pos += b.len() as u64;
        Ok(())
    }

    fn zeros(&mut self, mut n: u64) -> Result<()> {
        let z = [0u8; 4096];
        while n > 0 {
            let k = n.min(z.len() as u64) as usize;
            self.put(&z[..k])?;
            n -= k as u64;
        }
        Ok(())
    }

    fn align4(&mut self) -> Result<()> {
        let pad = (4 - self.pos % 4) % 4;
        self.zeros(pad)
    }

    /// Block header plus its fixed area (`fixed` holds bytes 52.. of the block).
    fn block(&mut self, kind: Tag, attributes: u32, fixed: &[u8]) -> Result<()> {
        let first = (52 + fixed.len() + 3) & !3;
        let h = BlockHeader {
            kind,
            attributes,
            first_event: u16::try_from(first)
                .map_err(|_| Error::new(ErrorKind::Internal, "block fixed area too large"))?,
            os_id: 14,
            os_version: 1,
            displayable_size: 0,
            format_logical_address: self.pos / BLOCK,
            control_block_id: self.control,
            os_data: StrRef::default(),
            string_type: 2,
            checksum: 0,
        };
        self.control += 1;
        self.put(&h.encode())?;
        self.put(fixed)?;
        self.zeros((first - 52 - fixed.len()) as u64)
    }

    fn stream_header(&mut self, id: Tag, media_attributes: u16, length: u64) -> Result<()> {
        self.align4()?;
        let h = StreamHeader {
            id,
            fs_attributes: 0,
            media_attributes,
            length,
            encryption: 0,
            compression: 0,
            checksum: 0,
        };
        self.put(&h.encode())
    }

    fn stream(&mut self, id: Tag, media_attributes: u16, data: &[u8]) -> Result<()> {
        self.stream_header(id, media_attributes, data.len() as u64)?;
        self.put(data)
    }

    /// SPAD up to the next 512-byte boundary: ends the block.
    fn spad(&mut self) -> Result<()> {
        self.spad_to(0)
    }

    /// SPAD up to `at` (or the next 512-byte boundary when `at` is already passed).
    fn spad_to(&mut self, at: u64) -> Result<()> {
        self.align4()?;
        let after = self.pos + 22;
        let end = if at >= after {
            at
        } else {
            after.div_ceil(BLOCK) * BLOCK
        };
        self.stream_header(Tag::SPAD, 0, end - after)?;
        self.zeros(end - after)
    }

    /// APAD so the next stream's payload (after header and 2-byte pad) is aligned.
    fn apad(&mut self) -> Result<()> {
        self.align4()?;
        let after = self.pos + 22;
        // Next header at X with X + 24 on a 512 boundary, X 4-aligned, X >= after.
        let mut x = (after + 24).div_ceil(BLOCK) * BLOCK - 24;
        if x < after {
            x += BLOCK;
        }
        self.stream_header(Tag::APAD, 0x80, x - after)?;
        self.zeros(x - after)
    }

    /// An SFMB block; in the compressed container it is stored raw, reached
    /// through `gap`.
    fn sfmb(&mut self, gap: Gap) -> Result<()> {
        if let Some(p) = &mut self.packer {
            p.flush(&mut self.w)?;
            p.gap(&mut self.w, gap)?;
            p.raw = true;
        }
        self.block(Tag::SFMB, 0x8000_0000, &[0u8; 512 - 52])?;
        if let Some(p) = &mut self.packer {
            p.raw = false;
        }
        Ok(())
    }
}

/// Fixed area builder: fields at block offsets, strings appended after them.
struct Fixed {
    bytes: Vec<u8>,
    base: usize,
    strings_at: usize,
}

impl Fixed {
    fn new(base: usize, strings_at: usize) -> Self {
        Self {
            bytes: vec![0u8; strings_at - base],
            base,
            strings_at,
        }
    }
    fn set(&mut self, at: usize, v: &[u8]) {
        let i = at - self.base;
        self.bytes[i..i + v.len()].copy_from_slice(v);
    }
    fn string(&mut self, at: usize, s: &str) {
        let utf16: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let off = self.base + self.bytes.len();
        let size = (utf16.len().min(u16::MAX as usize)) as u16;
        self.set(at, &size.to_le_bytes());
        self.set(at + 2, &(off.min(u16::MAX as usize) as u16).to_le_bytes());
        self.bytes.extend_from_slice(&utf16[..size as usize]);
        debug_assert!(off >= self.strings_at);
    }
}

/// A record of MQCI: tag, size, fixed fields, strings with offsets from its start.
fn record(
    tag: &[u8; 4],
    fixed_len: usize,
    fields: &[(usize, &[u8])],
    strings: &[(usize, &str)],
) -> Vec<u8> {
    let mut r = vec![0u8; fixed_len];
    r[0..4].copy_from_slice(tag);
    for (at, v) in fields {
        r[*at..*at + v.len()].copy_from_slice(v);
    }
    for (at, s) in strings {
        let utf16: Vec<u8> = s.encode_utf16().flat_map(u16::to_le_bytes).collect();
        let size = utf16.len().min(u16::MAX as usize) as u16;
        let off = r.len() as u16;
        r[*at..*at + 2].copy_from_slice(&size.to_le_bytes());
        r[*at + 2..*at + 4].copy_from_slice(&off.to_le_bytes());
        r.extend_from_slice(&utf16[..size as usize]);
    }
    while r.len() % 4 != 0 {
        r.push(0);
    }
    let len = r.len() as u32;
    r[4..8].copy_from_slice(&len.to_le_bytes());
    r
}

fn mqci(d: &SetDescription) -> Vec<u8> {
    let mut flags = SCIN_FLAG_ALWAYS;
    if d.with_checksum {
        flags |= SCIN_FLAG_CHECKSUM;
    }
    if d.backup_type == BackupType::DIFF {
        flags |= SCIN_FLAG_DIFFERENTIAL;
    }
    let letter = [d.backup_type.letter() as u8];
    let (major, minor, build) = d.software_version;
    let first = d.first_lsn.encode();
    let last = d.last_lsn.encode();
    let ckpt = d.checkpoint_lsn.encode();
    let dbl = d.database_backup_lsn.unwrap_or_default().encode();
    let created = d.database_creation_date.encode();
    let started = d.backup_start_date.encode();
    let mut out = record(
        b"SCIN",
        0x80,
        &[
            (0x08, &flags.to_le_bytes()),
            (0x18, &build.to_le_bytes()),
            (0x1A, &[minor, major]),
            (0x20, &first),
            (0x2A, &last),
            (0x34, &ckpt),
            (0x3E, &dbl),
            (0x48, &created),
            (0x4D, &started),
            (0x57, &letter),
            (0x58, &[d.sort_order]),
            (0x5B, &[d.compatibility_level]),
            (0x5E, &d.database_version.to_le_bytes()),
            (0x74, &d.unicode_locale_id.to_le_bytes()),
            (0x78, &d.unicode_comparison_style.to_le_bytes()),
        ],
        &[(0x68, &d.database_name), (0x6C, &d.server_name)],
    );
    let mut groups: Vec<(u32, String)> = Vec::new();
    for f in &d.files {
        if let Some(n) = &f.file_group_name {
            if f.file_group_id != 0 && !groups.iter().any(|(id, _)| *id == f.file_group_id) {
                groups.push((f.file_group_id, n.clone()));
            }
        }
    }
    for (id, name) in &groups {
        out.extend(record(
            b"SFGI",
            0x30,
            &[(0x0C, &id.to_le_bytes())],
            &[(0x10, name)],
        ));
    }
    for f in &d.files {
        let group = if f.file_type == 'L' {
            0
        } else {
            f.file_group_id.max(1)
        };
        out.extend(record(
            b"SFIN",
            0x40,
            &[
                (0x14, &f.file_id.to_le_bytes()),
                (0x24, &group.to_le_bytes()),
            ],
            &[(0x30, &f.logical_name), (0x34, &f.physical_name)],
        ));
    }
    out
}

/// Writes one backup set to `out`: the description, the data pages (8 KiB each;
/// their checksums filled in when asked) and the log bytes (padded to whole
/// sectors). Full and differential backups get a data stream, logs do not.
/// Returns the number of bytes written.
pub fn write_backup<W, I, P>(out: W, desc: &SetDescription, pages: I, log: &[u8]) -> Result<u64>
where
    W: Write,
    I: IntoIterator<Item = P>,
    I::IntoIter: ExactSizeIterator,
    P: AsRef<[u8]>,
{
    write_set(out, desc, pages, log, None, false)
}

/// Writes one backup set as `BACKUP ... WITH COMPRESSION` does: the MTF stream of
/// [`write_backup`] inside the `MSSQLBAK` container, with the zero-padded tail
/// SQL Server 2014 and 2016 write (see the module notes). Returns the number of
/// bytes written. Appending a set to a compressed file is not supported.
pub fn write_backup_compressed<W, I, P>(
    out: W,
    desc: &SetDescription,
    pages: I,
    log: &[u8],
) -> Result<u64>
where
    W: Write,
    I: IntoIterator<Item = P>,
    I::IntoIter: ExactSizeIterator,
    P: AsRef<[u8]>,
{
    write_set(out, desc, pages, log, None, true)
}

/// Writes one more backup set for a file that already holds `at` bytes of backup
/// (`BACKUP ... WITH NOINIT`): no media header (the file's TAPE block stays the only
/// one), block addresses counted from `at`. `at` must be the end of the file, which
/// the writer always leaves on a 512-byte boundary after an SFMB. Returns the bytes
/// written (not counting the `at` already there).
pub fn append_backup<W, I, P>(
    out: W,
    desc: &SetDescription,
    pages: I,
    log: &[u8],
    at: u64,
) -> Result<u64>
where
    W: Write,
    I: IntoIterator<Item = P>,
    I::IntoIter: ExactSizeIterator,
    P: AsRef<[u8]>,
{
    if at % BLOCK != 0 {
        return Err(Error::new(
            ErrorKind::Format,
            format!("cannot append a backup set at offset {at}: not on a 512-byte boundary"),
        ));
    }
    write_set(out, desc, pages, log, Some(at), false).map(|end| end - at)
}

fn write_set<W, I, P>(
    out: W,
    desc: &SetDescription,
    pages: I,
    log: &[u8],
    append_at: Option<u64>,
    compressed: bool,
) -> Result<u64>
where
    W: Write,
    I: IntoIterator<Item = P>,
    I::IntoIter: ExactSizeIterator,
    P: AsRef<[u8]>,
{
    let mut w = out;
    let packer = if compressed {
        Some(Packer::start(&mut w)?)
    } else {
        None
    };
    let mut o = Out {
        w,
        pos: append_at.unwrap_or(0),
        control: 0,
        packer,
    };
    let pages = pages.into_iter();
    let npages = pages.len() as u64;

    if append_at.is_none() {
        media_header(&mut o, desc)?;
    }
    set_blocks(&mut o, desc, pages, npages, log)?;
    let end = match &mut o.packer {
        Some(p) => {
            p.flush(&mut o.w)?;
            p.file_pos
        }
        None => o.pos,
    };
    o.w.flush()
        .map_err(|e| Error::new(ErrorKind::Io, format!("writing backup: {e}")).with_source(e))?;
    Ok(end)
}

/// TAPE: media header with the RAID stream (media set id, family count/sequence),
/// then the SFMB that ends it.
fn media_header<W: Write>(o: &mut Out<W>, desc: &SetDescription) -> Result<()> {
    let mut f = Fixed::new(52, 96);
    f.set(
        52,
        &u32::from_le_bytes([
            desc.media_set_id[0],
            desc.media_set_id[1],
            desc.media_set_id[2],
            desc.media_set_id[3],
        ])
        .to_le_bytes(),
    );
    f.set(60, &1u16.to_le_bytes());
    f.set(64, &3u16.to_le_bytes());
    f.string(80, "Microsoft SQL Server");
    f.set(84, &1024u16.to_le_bytes());
    f.set(86, &0x1200u16.to_le_bytes());
    f.set(88, &desc.backup_start_date.encode());
    f.set(93, &[1]);
    o.block(Tag::TAPE, 0x0003_0000, &f.bytes)?;
    let mut raid = [0u8; 32];
    raid[..16].copy_from_slice(&desc.media_set_id);
    raid[16..20].copy_from_slice(&0xf000_00adu32.to_le_bytes());
    raid[20..22].copy_from_slice(&1u16.to_le_bytes());
    raid[22..24].copy_from_slice(&desc.family_count.max(1).to_le_bytes());
    raid[24..26].copy_from_slice(&desc.family_sequence.max(1).to_le_bytes());
    raid[30..32].copy_from_slice(&1u16.to_le_bytes());
    o.stream(Tag::RAID, 0, &raid)?;
    o.spad_to(1024)?;
    o.sfmb(Gap::Record)
}

fn set_blocks<W, P>(
    o: &mut Out<W>,
    desc: &SetDescription,
    pages: impl Iterator<Item = P>,
    npages: u64,
    log: &[u8],
) -> Result<()>
where
    W: Write,
    P: AsRef<[u8]>,
{
    // SSET: the set's name, user, position and software version.
    let mut f = Fixed::new(52, 100);
    let attrs: u32 = if desc.backup_type == BackupType::DIFF {
        0x8
    } else {
        0x4
    };
    f.set(52, &attrs.to_le_bytes());
    f.set(60, &0x1200u16.to_le_bytes());
    f.set(62, &desc.position.to_le_bytes());
    f.string(64, &desc.backup_name);
    f.string(68, &desc.backup_description);
    f.string(76, &desc.user_name);
    f.set(88, &desc.backup_start_date.encode());
    f.set(93, &[desc.software_version.0, desc.software_version.1]);
    f.set(96, &[0]);
    o.block(Tag::SSET, 0, &f.bytes)?;
    o.spad()?;

    // VOLB: the machine name.
    let mut f = Fixed::new(52, 76);
    f.string(64, &desc.machine_name);
    f.set(68, &desc.backup_start_date.encode());
    o.block(Tag::VOLB, 0, &f.bytes)?;
    o.spad()?;

    // MSCI: the SQL Server records.
    let catalog = mqci(desc);
    o.block(Tag::MSCI, 0, &[0u8; 4])?;
    o.stream(Tag::MQCI, 0, &catalog)?;
    o.spad()?;

    let csum_attr = if desc.with_checksum {
        StreamHeader::HAS_CSUM
    } else {
        0
    };
    if desc.backup_type != BackupType::LOG {
        o.block(Tag::MSDA, 0, &[0u8; 8])?;
        o.apad()?;
        o.stream_header(Tag::MQDA, 0x2 | csum_attr, 2 + npages * PAGE as u64)?;
        o.put(&[0, 0])?;
        let mut csum = StreamChecksum::default();
        let mut page = vec![0u8; PAGE];
        let mut written = 0u64;
        for p in pages {
            let p = p.as_ref();
            if p.len() != PAGE {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!("page of {} bytes (pages are 8192)", p.len()),
                ));
            }
            if written == npages {
                return Err(Error::new(
                    ErrorKind::Internal,
                    "more pages than the iterator announced",
                ));
            }
            page.copy_from_slice(p);
            if desc.fill_page_checksums {
                fill_page_checksum(&mut page);
            }
            for s in page.chunks_exact(SECTOR) {
                csum.push(sector_xor(s));
            }
            o.put(&page)?;
            written += 1;
        }
        if written != npages {
            return Err(Error::new(
                ErrorKind::Internal,
                "fewer pages than the iterator announced",
            ));
        }
        if desc.with_checksum {
            o.stream(Tag::CSUM, 0, &csum.value().to_le_bytes())?;
        }
        o.stream_header(Tag::MQDA, 0x6, 0)?;
        o.spad()?;
    }

    o.block(Tag::MSTL, 0, &[0u8; 8])?;
    if !log.is_empty() {
        let padded = (log.len() as u64).div_ceil(SECTOR as u64) * SECTOR as u64;
        o.apad()?;
        o.stream_header(Tag::MQTL, csum_attr, 2 + padded)?;
        o.put(&[0, 0])?;
        o.put(log)?;
        o.zeros(padded - log.len() as u64)?;
        if desc.with_checksum {
            let mut csum = StreamChecksum::default();
            let mut full = log.chunks_exact(SECTOR);
            for s in full.by_ref() {
                csum.push(sector_xor(s));
            }
            let rest = full.remainder();
            if !rest.is_empty() {
                let mut last = [0u8; SECTOR];
                last[..rest.len()].copy_from_slice(rest);
                csum.push(sector_xor(&last));
            }
            o.stream(Tag::CSUM, 0, &csum.value().to_le_bytes())?;
        }
    }
    o.spad()?;

    // The trailer: in the compressed container the last data record is followed
    // by zeros to the next 4 KiB boundary, then these three blocks.
    o.sfmb(Gap::Zeros)?;
    o.block(Tag::ESET, 0, &[0u8; 36])?;
    o.spad()?;
    o.sfmb(Gap::Record)
}

impl SetDescription {
    /// The description of a set read from a file, so it can be written again
    /// (round trips, and the simulator copying a real backup's shape).
    pub fn from_set(set: &super::reader::BackupSet, media: &super::reader::MediaInfo) -> Self {
        let h = &set.header;
        let mut media_set_id = [0u8; 16];
        if let Some(id) = &media.media_set_id {
            let hexs: String = id.chars().filter(|c| c.is_ascii_hexdigit()).collect();
            if let Ok(b) = hex::decode(hexs) {
                if b.len() == 16 {
                    // Back from the GUID text form to its mixed-endian bytes.
                    media_set_id[0..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
                    media_set_id[4..6].copy_from_slice(&[b[5], b[4]]);
                    media_set_id[6..8].copy_from_slice(&[b[7], b[6]]);
                    media_set_id[8..16].copy_from_slice(&b[8..16]);
                }
            }
        }
        Self {
            backup_type: set.kind.unwrap_or(BackupType::FULL),
            database_name: h.database_name.clone(),
            server_name: h.server_name.clone(),
            machine_name: h.machine_name.clone(),
            user_name: h.user_name.clone(),
            backup_name: h.backup_name.clone(),
            backup_description: h.backup_description.clone(),
            position: h.position,
            first_lsn: h.first_lsn.unwrap_or_default(),
            last_lsn: h.last_lsn.unwrap_or_default(),
            checkpoint_lsn: h.checkpoint_lsn.unwrap_or_default(),
            database_backup_lsn: h.database_backup_lsn,
            backup_start_date: h.backup_start_date.unwrap_or_default(),
            database_creation_date: h.database_creation_date.unwrap_or_default(),
            software_version: (
                h.software_version_major,
                h.software_version_minor,
                h.software_version_build,
            ),
            database_version: h.database_version,
            compatibility_level: h.compatibility_level,
            sort_order: h.sort_order,
            unicode_locale_id: h.unicode_locale_id,
            unicode_comparison_style: h.unicode_comparison_style,
            with_checksum: h.has_backup_checksums,
            fill_page_checksums: false,
            files: set.files.clone(),
            family_count: media.family_count.max(1),
            family_sequence: media.family_sequence.max(1),
            media_set_id,
        }
    }
}

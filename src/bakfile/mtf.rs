//! Microsoft Tape Format: block (DBLK) and stream headers, their checksums, MTF
//! dates and strings, and a walker that hops from block to block.
//!
//! SQL Server's `.bak`/`.trn` files are MTF. The walker reads only the 52-byte block
//! headers, the fixed areas before the first stream, and the 22-byte stream headers,
//! seeking over stream data by its length: this is what makes inspecting a 10 GiB
//! file cost a few dozen small reads. Every size taken from the file is checked
//! against a bound before it is used.

use std::fmt;

use serde::{Serialize, Serializer};

use super::source::{read_full, ReadAt};
use crate::{Error, ErrorKind};

/// Length of the common block header.
pub const BLOCK_HEADER_LEN: usize = 52;
/// Length of a stream header.
pub const STREAM_HEADER_LEN: usize = 22;
/// Most streams accepted in one block; real files have under ten.
pub const MAX_STREAMS_PER_BLOCK: usize = 65_536;

/// Little-endian field helpers over a byte slice; out-of-range reads give zero, so
/// parsing damaged bytes never panics (the checksums say whether to trust them).
pub(crate) mod le {
    /// u16 at `at`, or 0 past the end.
    pub fn u16(b: &[u8], at: usize) -> u16 {
        b.get(at..at + 2)
            .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
    }
    /// u32 at `at`, or 0 past the end.
    pub fn u32(b: &[u8], at: usize) -> u32 {
        b.get(at..at + 4)
            .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    /// u64 at `at`, or 0 past the end.
    pub fn u64(b: &[u8], at: usize) -> u64 {
        b.get(at..at + 8).map_or(0, |s| {
            let mut a = [0u8; 8];
            a.copy_from_slice(s);
            u64::from_le_bytes(a)
        })
    }
    /// u8 at `at`, or 0 past the end.
    pub fn u8(b: &[u8], at: usize) -> u8 {
        b.get(at).copied().unwrap_or(0)
    }
}

/// XOR of the little-endian u16 words of `bytes`: the MTF header checksum.
pub fn xor16(bytes: &[u8]) -> u16 {
    bytes
        .chunks_exact(2)
        .fold(0u16, |a, w| a ^ u16::from_le_bytes([w[0], w[1]]))
}

/// A four-letter MTF type tag (`TAPE`, `SSET`, `MQDA`...).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tag(pub [u8; 4]);

impl Tag {
    /// MTF_TAPE: the media header block that opens the file (media name, software
    /// name and vendor, password algorithm) with the RAID stream.
    pub const TAPE: Tag = Tag(*b"TAPE");
    /// MTF_SFMB, the soft filemark: follows TAPE and brackets each set's ESET.
    pub const SFMB: Tag = Tag(*b"SFMB");
    /// MTF_SSET: starts a backup set (name, description, user, Position, software
    /// version).
    pub const SSET: Tag = Tag(*b"SSET");
    /// MTF_VOLB: the volume block; SQL Server puts the machine name in it.
    pub const VOLB: Tag = Tag(*b"VOLB");
    /// SQL Server's block holding the MQCI stream.
    pub const MSCI: Tag = Tag(*b"MSCI");
    /// SQL Server's block holding the data pages (MQDA); absent from log backups.
    pub const MSDA: Tag = Tag(*b"MSDA");
    /// SQL Server's block holding the transaction log (MQTL).
    pub const MSTL: Tag = Tag(*b"MSTL");
    /// SQL Server's block seen near the end of a set (a trailing copy of the MQCI
    /// information); not read.
    pub const MSLS: Tag = Tag(*b"MSLS");
    /// MTF_ESET: ends a backup set; a set that does not reach it is truncated.
    pub const ESET: Tag = Tag(*b"ESET");
    /// MTF stream padding to the next block boundary; it ends a block's streams.
    pub const SPAD: Tag = Tag(*b"SPAD");
    /// Padding stream placed so the next stream's payload (after its header and
    /// 2-byte pad) starts on a 512-byte boundary.
    pub const APAD: Tag = Tag(*b"APAD");
    /// SQL Server's stream of catalog records: SCIN, SFGI, SFIN (see `records`).
    pub const MQCI: Tag = Tag(*b"MQCI");
    /// SQL Server's stream of 8 KiB database pages, after a 2-byte zero pad; an
    /// empty one closes MSDA.
    pub const MQDA: Tag = Tag(*b"MQDA");
    /// SQL Server's stream of transaction log bytes, after a 2-byte zero pad.
    pub const MQTL: Tag = Tag(*b"MQTL");
    /// Stream whose data is the u32 backup checksum of the preceding MQDA/MQTL
    /// (sets taken WITH CHECKSUM).
    pub const CSUM: Tag = Tag(*b"CSUM");
    /// Stream of the TAPE block: media set GUID, family count and family sequence.
    pub const RAID: Tag = Tag(*b"RAID");
    /// Stream of the ESET block; not read, covered by no checksum.
    pub const OTCP: Tag = Tag(*b"OTCP");
    /// Stream of the ESET block; not read, covered by no checksum.
    pub const TSMP: Tag = Tag(*b"TSMP");

    /// Whether the tag looks like an MTF type: four upper-case letters or digits.
    pub fn is_plausible(&self) -> bool {
        self.0
            .iter()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            if b.is_ascii_graphic() {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The common 52-byte header of every MTF block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHeader {
    /// Block type, the 4 ASCII bytes at offset 0.
    pub kind: Tag,
    /// MTF block attributes, u32 at offset 4; not interpreted by the reader.
    pub attributes: u32,
    /// Distance from the block start to its first stream.
    pub first_event: u16,
    /// MTF OS id, byte 10; carried, not interpreted.
    pub os_id: u8,
    /// MTF OS version, byte 11; carried, not interpreted.
    pub os_version: u8,
    /// MTF displayable size, u64 at offset 12; carried, not interpreted.
    pub displayable_size: u64,
    /// MTF format logical address of the block, u64 at offset 20; not checked.
    pub format_logical_address: u64,
    /// MTF control block id, u32 at offset 36; not checked.
    pub control_block_id: u32,
    /// The OS-specific data, `{size, offset}` at offset 44.
    pub os_data: StrRef,
    /// 1 ANSI, 2 UTF-16.
    pub string_type: u8,
    /// u16 at offset 50: XOR of the 25 preceding u16 words.
    pub checksum: u16,
}

impl BlockHeader {
    /// Parses a header; `None` when the type is not plausible or the checksum fails.
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() < BLOCK_HEADER_LEN {
            return None;
        }
        let kind = Tag([b[0], b[1], b[2], b[3]]);
        let checksum = le::u16(b, 50);
        if !kind.is_plausible() || xor16(&b[..50]) != checksum {
            return None;
        }
        Some(Self {
            kind,
            attributes: le::u32(b, 4),
            first_event: le::u16(b, 8),
            os_id: b[10],
            os_version: b[11],
            displayable_size: le::u64(b, 12),
            format_logical_address: le::u64(b, 20),
            control_block_id: le::u32(b, 36),
            os_data: StrRef::at(b, 44),
            string_type: b[48],
            checksum,
        })
    }

    /// The 52 bytes of this header with its checksum computed.
    pub fn encode(&self) -> [u8; BLOCK_HEADER_LEN] {
        let mut b = [0u8; BLOCK_HEADER_LEN];
        b[0..4].copy_from_slice(&self.kind.0);
        b[4..8].copy_from_slice(&self.attributes.to_le_bytes());
        b[8..10].copy_from_slice(&self.first_event.to_le_bytes());
        b[10] = self.os_id;
        b[11] = self.os_version;
        b[12..20].copy_from_slice(&self.displayable_size.to_le_bytes());
        b[20..28].copy_from_slice(&self.format_logical_address.to_le_bytes());
        b[36..40].copy_from_slice(&self.control_block_id.to_le_bytes());
        b[44..46].copy_from_slice(&self.os_data.size.to_le_bytes());
        b[46..48].copy_from_slice(&self.os_data.offset.to_le_bytes());
        b[48] = self.string_type;
        let c = xor16(&b[..50]);
        b[50..52].copy_from_slice(&c.to_le_bytes());
        b
    }
}

/// The 22-byte header in front of every stream's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamHeader {
    /// Stream type, the 4 ASCII bytes at offset 0 (`MQDA`, `SPAD`...).
    pub id: Tag,
    /// File-system attributes, u16 at offset 4; not interpreted.
    pub fs_attributes: u16,
    /// Bit 0x100: a CSUM stream follows in the same block.
    pub media_attributes: u16,
    /// Data bytes after the header, u64 at offset 8; the next stream starts on
    /// the following 4-byte boundary.
    pub length: u64,
    /// Encryption algorithm, u16 at offset 16; not interpreted (the writer puts 0).
    pub encryption: u16,
    /// Compression algorithm, u16 at offset 18; not interpreted (the writer puts 0).
    pub compression: u16,
    /// u16 at offset 20: XOR of the first 10 u16 words.
    pub checksum: u16,
}

impl StreamHeader {
    /// Media-format attribute bit: a CSUM stream follows this one.
    pub const HAS_CSUM: u16 = 0x0100;

    /// Parses a header; `None` when the id is not plausible or the checksum fails.
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.len() < STREAM_HEADER_LEN {
            return None;
        }
        let id = Tag([b[0], b[1], b[2], b[3]]);
        let checksum = le::u16(b, 20);
        if !id.is_plausible() || xor16(&b[..20]) != checksum {
            return None;
        }
        Some(Self {
            id,
            fs_attributes: le::u16(b, 4),
            media_attributes: le::u16(b, 6),
            length: le::u64(b, 8),
            encryption: le::u16(b, 16),
            compression: le::u16(b, 18),
            checksum,
        })
    }

    /// The 22 bytes of this header with its checksum computed.
    pub fn encode(&self) -> [u8; STREAM_HEADER_LEN] {
        let mut b = [0u8; STREAM_HEADER_LEN];
        b[0..4].copy_from_slice(&self.id.0);
        b[4..6].copy_from_slice(&self.fs_attributes.to_le_bytes());
        b[6..8].copy_from_slice(&self.media_attributes.to_le_bytes());
        b[8..16].copy_from_slice(&self.length.to_le_bytes());
        b[16..18].copy_from_slice(&self.encryption.to_le_bytes());
        b[18..20].copy_from_slice(&self.compression.to_le_bytes());
        let c = xor16(&b[..20]);
        b[20..22].copy_from_slice(&c.to_le_bytes());
        b
    }
}

/// An MTF `{size u16, offset u16}` reference to a string inside a block or record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StrRef {
    /// Length of the string in bytes (not characters).
    pub size: u16,
    /// Where the string starts, from the start of the block or record.
    pub offset: u16,
}

impl StrRef {
    /// The reference stored at `at` in `b`.
    pub fn at(b: &[u8], at: usize) -> Self {
        Self {
            size: le::u16(b, at),
            offset: le::u16(b, at + 2),
        }
    }

    /// The string it points to in `b`, decoded as UTF-16 (`utf16`) or Latin-1;
    /// empty when it points outside `b`.
    pub fn read(&self, b: &[u8], utf16: bool) -> String {
        let start = self.offset as usize;
        let Some(bytes) = b.get(start..start + self.size as usize) else {
            return String::new();
        };
        let s = if utf16 {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|w| u16::from_le_bytes([w[0], w[1]]))
                .collect();
            String::from_utf16_lossy(&units)
        } else {
            bytes.iter().map(|&c| c as char).collect()
        };
        s.trim_end_matches('\0').to_string()
    }
}

/// MTF_DATE_TIME: five bytes packing year (14 bits), month, day, hour, minute, second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MtfDate {
    /// Full year, 14 bits.
    pub year: u16,
    /// Month, 1-12 in a valid date (checked only by `to_datetime`).
    pub month: u8,
    /// Day of the month, 1-31 in a valid date.
    pub day: u8,
    /// Hour, 0-23.
    pub hour: u8,
    /// Minute, 0-59.
    pub minute: u8,
    /// Second, 0-59.
    pub second: u8,
}

impl MtfDate {
    /// Decodes the five bytes at `at`; `None` for an all-zero (absent) date.
    pub fn parse(b: &[u8], at: usize) -> Option<Self> {
        let v = b.get(at..at + 5)?;
        if v.iter().all(|&x| x == 0) {
            return None;
        }
        Some(Self {
            year: (u16::from(v[0]) << 6) | u16::from(v[1] >> 2),
            month: ((v[1] & 3) << 2) | (v[2] >> 6),
            day: (v[2] >> 1) & 0x1f,
            hour: ((v[2] & 1) << 4) | (v[3] >> 4),
            minute: ((v[3] & 0xf) << 2) | (v[4] >> 6),
            second: v[4] & 0x3f,
        })
    }

    /// The five packed bytes.
    pub fn encode(&self) -> [u8; 5] {
        let y = self.year & 0x3fff;
        [
            (y >> 6) as u8,
            (((y & 0x3f) as u8) << 2) | ((self.month >> 2) & 3),
            ((self.month & 3) << 6) | ((self.day & 0x1f) << 1) | ((self.hour >> 4) & 1),
            ((self.hour & 0xf) << 4) | ((self.minute >> 2) & 0xf),
            ((self.minute & 3) << 6) | (self.second & 0x3f),
        ]
    }

    /// As a calendar date-time, when the fields form a valid one.
    pub fn to_datetime(&self) -> Option<time::PrimitiveDateTime> {
        let month = time::Month::try_from(self.month).ok()?;
        let date = time::Date::from_calendar_date(i32::from(self.year), month, self.day).ok()?;
        let t = time::Time::from_hms(self.hour, self.minute, self.second).ok()?;
        Some(time::PrimitiveDateTime::new(date, t))
    }

    /// Parses a point in time as given on the command line or in a drill file
    /// (`2026-11-25 03:00[:00]`, `T` accepted), in server local time.
    pub fn parse_text(s: &str) -> Option<Self> {
        let s = s.trim().replace('T', " ");
        let fmt =
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
        let fmt_min = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]");
        time::PrimitiveDateTime::parse(&s, fmt)
            .or_else(|_| time::PrimitiveDateTime::parse(&s, fmt_min))
            .ok()
            .map(Self::from_datetime)
    }

    /// From a calendar date-time (years past 16383 are clamped).
    pub fn from_datetime(dt: time::PrimitiveDateTime) -> Self {
        Self {
            year: dt.year().clamp(0, 0x3fff) as u16,
            month: u8::from(dt.month()),
            day: dt.day(),
            hour: dt.hour(),
            minute: dt.minute(),
            second: dt.second(),
        }
    }
}

impl fmt::Display for MtfDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

impl Serialize for MtfDate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Read back from `YYYY-MM-DD HH:MM:SS` (what [`Serialize`] writes).
impl<'de> serde::Deserialize<'de> for MtfDate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        MtfDate::parse_text(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a date and time")))
    }
}

/// A stream found in a block: where its header and data are.
#[derive(Debug, Clone)]
pub struct Stream {
    /// Where the stream header starts (in the decompressed MTF stream for
    /// compressed files).
    pub offset: u64,
    /// Its parsed 22-byte header.
    pub header: StreamHeader,
    /// Where its data starts, right after the header.
    pub data_offset: u64,
}

/// A block: its header, the fixed area up to the first stream, and its streams.
#[derive(Debug, Clone)]
pub struct Block {
    /// Where the block starts (in the decompressed MTF stream for compressed files).
    pub offset: u64,
    /// Its common 52-byte header.
    pub header: BlockHeader,
    /// The bytes from the block start to the first stream (strings live here).
    pub fixed: Vec<u8>,
    /// Its streams in order; the last is SPAD when the block ends with one (SFMB
    /// has none).
    pub streams: Vec<Stream>,
}

/// A structural error found while walking, with the offset where it was found.
pub(crate) fn format_error(msg: impl Into<String>, offset: u64) -> Error {
    Error::new(ErrorKind::Format, msg).with("offset", offset)
}

fn io_error(e: std::io::Error, offset: u64) -> Error {
    Error::new(ErrorKind::Io, format!("read failed: {e}"))
        .with("offset", offset)
        .with_source(e)
}

/// Walks the blocks of an MTF byte stream from `start`.
pub struct Walker<'a, R: ReadAt + ?Sized> {
    src: &'a mut R,
    pos: u64,
}

impl<'a, R: ReadAt + ?Sized> Walker<'a, R> {
    /// A walker starting at offset `start` (0 for a whole file).
    pub fn new(src: &'a mut R, start: u64) -> Self {
        Self { src, pos: start }
    }

    /// The source being walked, to read stream data in between blocks.
    pub fn source(&mut self) -> &mut R {
        self.src
    }

    /// Where the next block is expected.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next block, `None` at a clean end of data, or the structural error that
    /// stops the walk (truncation, bad checksum, implausible size).
    pub fn next_block(&mut self) -> Result<Option<Block>, Error> {
        let off = self.pos;
        let mut hdr = [0u8; BLOCK_HEADER_LEN];
        let n = read_full(self.src, off, &mut hdr).map_err(|e| io_error(e, off))?;
        if n == 0 {
            return Ok(None);
        }
        if n < BLOCK_HEADER_LEN {
            return Err(format_error(
                format!("file ends inside a block header ({n} of 52 bytes)"),
                off,
            ));
        }
        let Some(header) = BlockHeader::parse(&hdr) else {
            let tag = Tag([hdr[0], hdr[1], hdr[2], hdr[3]]);
            let what = if hdr.iter().all(|&b| b == 0) {
                "zero-filled bytes where an MTF block header belongs".to_string()
            } else if tag.is_plausible() {
                format!("block header checksum mismatch on {tag} block")
            } else {
                format!("no MTF block header here (found {tag})")
            };
            return Err(format_error(what, off));
        };
        let first = u64::from(header.first_event);
        if first < BLOCK_HEADER_LEN as u64 {
            return Err(format_error(
                format!(
                    "{} block: first stream offset {first} is inside the header",
                    header.kind
                ),
                off,
            ));
        }
        // first_event is a u16, so the fixed area is bounded by 64 KiB.
        let mut fixed = vec![0u8; first as usize];
        let n = read_full(self.src, off, &mut fixed).map_err(|e| io_error(e, off))?;
        if n < fixed.len() {
            return Err(format_error(
                format!("file ends inside the {} block", header.kind),
                off + n as u64,
            ));
        }
        let mut block = Block {
            offset: off,
            header,
            fixed,
            streams: Vec::new(),
        };
        let mut p = off + first;
        if block.header.kind == Tag::SFMB {
            self.pos = p;
            return Ok(Some(block));
        }
        loop {
            let mut sh = [0u8; STREAM_HEADER_LEN];
            let n = read_full(self.src, p, &mut sh).map_err(|e| io_error(e, p))?;
            if n < STREAM_HEADER_LEN {
                return Err(format_error(
                    format!("file ends inside the {} block's streams", block.header.kind),
                    p,
                ));
            }
            let Some(stream) = StreamHeader::parse(&sh) else {
                // Not a stream: the block may end here without an SPAD.
                let mut bh = [0u8; BLOCK_HEADER_LEN];
                let n = read_full(self.src, p, &mut bh).map_err(|e| io_error(e, p))?;
                if n == BLOCK_HEADER_LEN && BlockHeader::parse(&bh).is_some() {
                    self.pos = p;
                    return Ok(Some(block));
                }
                let tag = Tag([sh[0], sh[1], sh[2], sh[3]]);
                let what = if tag.is_plausible() {
                    format!(
                        "stream header checksum mismatch on {tag} stream in {} block",
                        block.header.kind
                    )
                } else {
                    format!(
                        "no stream header here in {} block (found {tag})",
                        block.header.kind
                    )
                };
                return Err(format_error(what, p));
            };
            let data = p + STREAM_HEADER_LEN as u64;
            let end = data
                .checked_add(stream.length)
                .and_then(|e| e.checked_add(3))
                .map(|e| e & !3)
                .ok_or_else(|| {
                    format_error(
                        format!("{} stream length {} overflows", stream.id, stream.length),
                        p,
                    )
                })?;
            if let Some(len) = self.src.size_hint() {
                if data.saturating_add(stream.length) > len {
                    return Err(format_error(
                        format!(
                            "{} stream claims {} bytes but the file ends {} bytes after its start: truncated or damaged",
                            stream.id,
                            stream.length,
                            len.saturating_sub(data)
                        ),
                        p,
                    ));
                }
            }
            if block.streams.len() >= MAX_STREAMS_PER_BLOCK {
                return Err(format_error(
                    format!(
                        "more than {MAX_STREAMS_PER_BLOCK} streams in one {} block",
                        block.header.kind
                    ),
                    p,
                ));
            }
            let is_pad = stream.id == Tag::SPAD;
            block.streams.push(Stream {
                offset: p,
                header: stream,
                data_offset: data,
            });
            p = end;
            if is_pad {
                self.pos = p;
                return Ok(Some(block));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_round_trips() {
        let d = MtfDate {
            year: 2017,
            month: 5,
            day: 18,
            hour: 4,
            minute: 17,
            second: 42,
        };
        assert_eq!(MtfDate::parse(&d.encode(), 0), Some(d));
        assert_eq!(d.to_string(), "2017-05-18 04:17:42");
    }

    #[test]
    fn headers_round_trip() {
        let s = StreamHeader {
            id: Tag::MQDA,
            fs_attributes: 0,
            media_attributes: 0x102,
            length: 12345,
            encryption: 0,
            compression: 0,
            checksum: 0,
        };
        let parsed = StreamHeader::parse(&s.encode()).expect("valid");
        assert_eq!(parsed.length, 12345);
    }
}

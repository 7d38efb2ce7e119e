//! The `MSSQLBAK` container of `WITH COMPRESSION` backups, read as the MTF byte
//! stream it holds.
//!
//! Layout, worked out on the compressed backups in ../shared/baks (2014, 2016): a
//! header, then from offset 0x1E0 a chain of records. A record starting with 0x21
//! has a 28-byte header (byte 1: decoded size in 512-byte sectors; u16 at 2: stored
//! size) followed by an XPRESS-Huffman chunk; 0x24 is padding (24-byte header plus
//! its u16 size); 0x2C seals a run and the next record starts on the next 512-byte
//! boundary; an MTF block stored raw (`SFMB`) sits on a 512-byte boundary. The
//! decoded chunks and raw blocks, concatenated, are the same MTF stream an
//! uncompressed backup holds, so the same walker reads both.
//!
//! The record index is built lazily as the walker asks for later offsets; a read
//! decodes only the chunk that holds it. Inspecting walks record headers without
//! decoding data chunks.

use std::io;

use super::mtf::{BlockHeader, BLOCK_HEADER_LEN};
use super::source::{read_full, ReadAt};
use super::xpress;

/// The eight bytes a compressed backup starts with.
pub const MAGIC: &[u8; 8] = b"MSSQLBAK";
/// Where the first record starts (every compressed file seen).
pub const FIRST_RECORD: u64 = 0x1E0;
const RECORD_HEADER: u64 = 28;
const PAD_HEADER: u64 = 24;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Raw,
    Xpress,
}

#[derive(Debug, Clone, Copy)]
struct Record {
    kind: Kind,
    file_offset: u64,
    stored: u64,
    logical: u64,
    len: u64,
}

/// The decompressed MTF view of an `MSSQLBAK` file.
pub struct Container<R: ReadAt> {
    inner: R,
    file_len: u64,
    records: Vec<Record>,
    next: u64,
    logical_end: u64,
    done: bool,
    failure: Option<String>,
    cache: Option<(usize, Vec<u8>)>,
    chunks_decoded: u64,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

impl<R: ReadAt> Container<R> {
    /// Wraps a source that starts with [`MAGIC`].
    pub fn new(inner: R) -> Self {
        let file_len = inner.size_hint().unwrap_or(u64::MAX);
        Self {
            inner,
            file_len,
            records: Vec::new(),
            next: FIRST_RECORD,
            logical_end: 0,
            done: false,
            failure: None,
            cache: None,
            chunks_decoded: 0,
        }
    }

    /// How many chunks were decompressed so far (inspect should need only a few).
    pub fn chunks_decoded(&self) -> u64 {
        self.chunks_decoded
    }

    /// The file offset of the record holding logical offset `off`, for naming
    /// damaged places in terms of the file.
    pub fn file_offset_of(&self, off: u64) -> Option<u64> {
        self.find(off).map(|i| self.records[i].file_offset)
    }

    fn find(&self, off: u64) -> Option<usize> {
        let i = self.records.partition_point(|r| r.logical + r.len <= off);
        (i < self.records.len() && self.records[i].logical <= off).then_some(i)
    }

    /// Walks one more record header; false at the end of the chain.
    fn extend(&mut self) -> io::Result<bool> {
        if self.done {
            if let Some(f) = &self.failure {
                return Err(invalid(f.clone()));
            }
            return Ok(false);
        }
        match self.step() {
            Ok(more) => {
                if !more {
                    self.done = true;
                }
                Ok(more)
            }
            Err(e) => {
                self.done = true;
                self.failure = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn step(&mut self) -> io::Result<bool> {
        loop {
            let h = self.next;
            if h >= self.file_len {
                return Ok(false);
            }
            let mut hdr = [0u8; BLOCK_HEADER_LEN];
            let n = read_full(&mut self.inner, h, &mut hdr)?;
            if n == 0 {
                return Ok(false);
            }
            if let Some(block) = (n == BLOCK_HEADER_LEN)
                .then(|| BlockHeader::parse(&hdr))
                .flatten()
            {
                let len = u64::from(block.first_event).max(512);
                self.push(Kind::Raw, h, len, len)?;
                self.next = h + len;
                return Ok(true);
            }
            if (n as u64) < RECORD_HEADER.min(self.file_len - h) || n < 4 {
                return Err(invalid(format!(
                    "compressed container ends inside a record header at file offset {h}"
                )));
            }
            let size = u64::from(u16::from_le_bytes([hdr[2], hdr[3]]));
            match hdr[0] {
                0x21 => {
                    let out = u64::from(hdr[1]) * 512;
                    if out == 0 {
                        return Err(invalid(format!(
                            "compressed record at file offset {h} decodes to 0 bytes"
                        )));
                    }
                    let data = h + RECORD_HEADER;
                    if data + size > self.file_len {
                        return Err(invalid(format!(
                            "compressed record at file offset {h} claims {size} bytes beyond the end of the file: truncated"
                        )));
                    }
                    self.push(Kind::Xpress, data, size, out)?;
                    self.next = data + size;
                    return Ok(true);
                }
                0x24 => self.next = h + PAD_HEADER + size,
                0x2C => self.next = (h / 512 + 1) * 512,
                other => {
                    return Err(invalid(format!(
                    "unknown record type 0x{other:02x} in compressed container at file offset {h}"
                )))
                }
            }
        }
    }

    fn push(&mut self, kind: Kind, file_offset: u64, stored: u64, len: u64) -> io::Result<()> {
        self.records.push(Record {
            kind,
            file_offset,
            stored,
            logical: self.logical_end,
            len,
        });
        self.logical_end += len;
        Ok(())
    }

    fn chunk(&mut self, i: usize) -> io::Result<&[u8]> {
        let hit = matches!(&self.cache, Some((c, _)) if *c == i);
        if !hit {
            let r = self.records[i];
            let mut stored = vec![0u8; r.stored as usize];
            let n = read_full(&mut self.inner, r.file_offset, &mut stored)?;
            if n < stored.len() {
                return Err(invalid(format!(
                    "compressed record at file offset {} is cut short",
                    r.file_offset
                )));
            }
            let mut buf = self.cache.take().map(|(_, b)| b).unwrap_or_default();
            match r.kind {
                Kind::Raw => buf = stored,
                Kind::Xpress => {
                    xpress::decompress(&stored, &mut buf, r.len as usize).map_err(|e| {
                        invalid(format!(
                            "compressed chunk at file offset {} does not decode: {e}",
                            r.file_offset
                        ))
                    })?;
                    self.chunks_decoded += 1;
                }
            }
            self.cache = Some((i, buf));
        }
        match &self.cache {
            Some((_, b)) => Ok(b),
            None => Err(invalid("chunk cache empty".into())),
        }
    }
}

impl<R: ReadAt> ReadAt for Container<R> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        while self.logical_end <= offset {
            if !self.extend()? {
                return Ok(0);
            }
        }
        let Some(i) = self.find(offset) else {
            return Ok(0);
        };
        let start = self.records[i].logical;
        let chunk = self.chunk(i)?;
        let at = (offset - start) as usize;
        let n = buf.len().min(chunk.len().saturating_sub(at));
        buf[..n].copy_from_slice(&chunk[at..at + n]);
        Ok(n)
    }

    fn size_hint(&self) -> Option<u64> {
        None
    }
}

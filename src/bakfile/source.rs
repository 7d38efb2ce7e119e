//! Random access to the bytes of a backup, whatever holds them.
//!
//! The MTF walker seeks from block to block and stream to stream instead of reading
//! a file front to back; this trait is the one thing it needs. A plain file, a byte
//! slice (tests, fuzzing) and the decompressed view of an `MSSQLBAK` container all
//! implement it.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};

/// Positioned reads over a backup's (logical) bytes.
pub trait ReadAt {
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at the end of the data.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// The length of the data when it is known without reading it all.
    fn size_hint(&self) -> Option<u64>;
}

/// Reads until `buf` is full or the data ends; returns how much was read.
pub fn read_full<R: ReadAt + ?Sized>(
    src: &mut R,
    offset: u64,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let n = src.read_at(offset + done as u64, &mut buf[done..])?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(done)
}

/// A local file.
#[derive(Debug)]
pub struct FileSource {
    file: File,
    len: u64,
    pos: u64,
}

impl FileSource {
    /// Wraps an open file.
    pub fn new(file: File) -> io::Result<Self> {
        let len = file.metadata()?.len();
        Ok(Self {
            file,
            len,
            pos: u64::MAX,
        })
    }
}

impl ReadAt for FileSource {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        if self.pos != offset {
            self.file.seek(SeekFrom::Start(offset))?;
        }
        let n = self.file.read(buf)?;
        self.pos = offset + n as u64;
        Ok(n)
    }

    fn size_hint(&self) -> Option<u64> {
        Some(self.len)
    }
}

/// Bytes in memory.
impl ReadAt for &[u8] {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        let Some(rest) = self.get(start..) else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }

    fn size_hint(&self) -> Option<u64> {
        Some(self.len() as u64)
    }
}

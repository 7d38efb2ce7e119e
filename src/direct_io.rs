//! Writing large files sequentially past the page cache.
//!
//! Packs written by a backup and files written by a restore are hundreds of
//! megabytes that nobody reads again soon. Copied into the page cache they cost as
//! much system time as the rest of the I/O together (docs/benchmarks.md), push the
//! database files out of the cache, and a read-back would be served from memory
//! instead of from the disk it is meant to prove. On Linux [`DirectWriter`] opens the
//! file with `O_DIRECT` and hands aligned blocks to a writer thread, so the disk works
//! while the caller produces the next block; the last block is padded and the file cut
//! back to its length. Where `O_DIRECT` is refused (tmpfs, some network mounts) or on
//! other systems it is an ordinary buffered writer.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

/// Alignment `O_DIRECT` asks of buffer, offset and length (covers 512-byte and 4 KiB
/// sector devices).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const ALIGN: usize = 4096;
/// Size of each block handed to the writer thread.
const BLOCK: usize = 4 * 1024 * 1024;
/// Blocks per file: one being filled, the others queued or being written.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
const BLOCKS: usize = 3;

/// A file being written from start to end; call [`DirectWriter::finish`] to complete it.
pub struct DirectWriter {
    inner: Inner,
}

enum Inner {
    Buffered(BufWriter<File>),
    #[cfg(target_os = "linux")]
    Direct(linux::Direct),
}

impl DirectWriter {
    /// Creates `path`, which must not exist.
    pub fn create_new(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        #[cfg(target_os = "linux")]
        let file = match linux::Direct::try_from_file(file)? {
            Ok(d) => {
                return Ok(Self {
                    inner: Inner::Direct(d),
                })
            }
            Err(file) => file,
        };
        Ok(Self {
            inner: Inner::Buffered(BufWriter::with_capacity(BLOCK, file)),
        })
    }

    /// Writes everything still buffered, cuts the file to the length written and,
    /// when `sync`, flushes it to the disk.
    pub fn finish(self, sync: bool) -> std::io::Result<()> {
        match self.inner {
            Inner::Buffered(w) => {
                let file = w.into_inner().map_err(|e| e.into_error())?;
                if sync {
                    file.sync_all()?;
                }
                Ok(())
            }
            #[cfg(target_os = "linux")]
            Inner::Direct(d) => d.finish(sync),
        }
    }
}

impl Write for DirectWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.inner {
            Inner::Buffered(w) => w.write(buf),
            #[cfg(target_os = "linux")]
            Inner::Direct(d) => d.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.inner {
            Inner::Buffered(w) => w.flush(),
            // Blocks go out as they fill; a partial one can only be written at the end.
            #[cfg(target_os = "linux")]
            Inner::Direct(_) => Ok(()),
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::fs::File;
    use std::os::unix::fs::FileExt;
    use std::sync::Arc;
    use std::thread::JoinHandle;

    use crossbeam_channel::{bounded, Receiver, Sender};

    use super::{ALIGN, BLOCK, BLOCKS};

    /// A block-sized buffer whose usable part starts on an `ALIGN` boundary.
    struct Aligned {
        buf: Vec<u8>,
        start: usize,
    }

    impl Aligned {
        fn new() -> Self {
            let buf = vec![0u8; BLOCK + ALIGN];
            let start = buf.as_ptr().align_offset(ALIGN);
            Self { buf, start }
        }

        fn block(&mut self) -> &mut [u8] {
            &mut self.buf[self.start..self.start + BLOCK]
        }
    }

    /// A block to write: buffer, bytes to write (a multiple of `ALIGN`), file offset.
    type Job = (Aligned, usize, u64);

    pub(super) struct Direct {
        file: Arc<File>,
        current: Aligned,
        filled: usize,
        /// File offset of `current`'s first byte.
        offset: u64,
        spare: Vec<Aligned>,
        jobs: Option<Sender<Job>>,
        done: Receiver<std::io::Result<Aligned>>,
        in_flight: usize,
        writer: Option<JoinHandle<()>>,
    }

    impl Direct {
        /// Turns direct I/O on for `file`; gives the file back where the file system
        /// refuses it. (Asking at `open` would leave the file created on refusal.)
        pub(super) fn try_from_file(file: File) -> std::io::Result<Result<Self, File>> {
            if set_direct(&file, true).is_err() {
                return Ok(Err(file));
            }
            let file = Arc::new(file);
            let (jobs, job_rx) = bounded::<Job>(BLOCKS);
            let (done_tx, done) = bounded(BLOCKS);
            let f = file.clone();
            let writer = std::thread::Builder::new()
                .name("direct-write".into())
                .spawn(move || {
                    for (mut buf, len, offset) in job_rx {
                        let block = &buf.block()[..len];
                        let res = match f.write_all_at(block, offset) {
                            // Some file systems accept O_DIRECT at open and refuse the
                            // write: the same block, buffered, is as good.
                            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                                set_direct(&f, false).and_then(|()| f.write_all_at(block, offset))
                            }
                            other => other,
                        }
                        .map(|()| buf);
                        if done_tx.send(res).is_err() {
                            return;
                        }
                    }
                })?;
            Ok(Ok(Self {
                file,
                current: Aligned::new(),
                filled: 0,
                offset: 0,
                spare: Vec::new(),
                jobs: Some(jobs),
                done,
                in_flight: 0,
                writer: Some(writer),
            }))
        }

        pub(super) fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            let n = data.len().min(BLOCK - self.filled);
            self.current.block()[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            if self.filled == BLOCK {
                self.send(BLOCK)?;
            }
            Ok(n)
        }

        /// Hands `current` (its first `len` bytes) to the writer and takes a free buffer.
        fn send(&mut self, len: usize) -> std::io::Result<()> {
            let next = match self.spare.pop() {
                Some(b) => b,
                None if self.in_flight + 1 < BLOCKS => Aligned::new(),
                None => self.wait_one()?,
            };
            let full = std::mem::replace(&mut self.current, next);
            let jobs = self.jobs.as_ref().ok_or_else(stopped)?;
            jobs.send((full, len, self.offset)).map_err(|_| stopped())?;
            self.in_flight += 1;
            self.offset += self.filled as u64;
            self.filled = 0;
            Ok(())
        }

        fn wait_one(&mut self) -> std::io::Result<Aligned> {
            let res = self.done.recv().map_err(|_| stopped())?;
            self.in_flight -= 1;
            res
        }

        pub(super) fn finish(mut self, sync: bool) -> std::io::Result<()> {
            let length = self.offset + self.filled as u64;
            if self.filled > 0 {
                let padded = self.filled.next_multiple_of(ALIGN);
                let filled = self.filled;
                self.current.block()[filled..padded].fill(0);
                self.send(padded)?;
            }
            while self.in_flight > 0 {
                let buf = self.wait_one()?;
                self.spare.push(buf);
            }
            self.jobs = None;
            if let Some(w) = self.writer.take() {
                w.join().map_err(|_| stopped())?;
            }
            self.file.set_len(length)?;
            if sync {
                self.file.sync_all()?;
            }
            Ok(())
        }
    }

    impl Drop for Direct {
        fn drop(&mut self) {
            self.jobs = None;
            if let Some(w) = self.writer.take() {
                let _ = w.join();
            }
        }
    }

    /// Sets or clears `O_DIRECT` on an open file.
    fn set_direct(file: &File, on: bool) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        // SAFETY: F_GETFL/F_SETFL on a descriptor this `File` owns and keeps open.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let wanted = if on {
            flags | libc::O_DIRECT
        } else {
            flags & !libc::O_DIRECT
        };
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, wanted) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    fn stopped() -> std::io::Error {
        std::io::Error::other("the direct-write thread stopped")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_of_any_length_come_out_exact() {
        let dir = tempfile::tempdir().unwrap();
        let lengths = [
            0usize,
            1,
            ALIGN - 1,
            ALIGN,
            ALIGN + 1,
            BLOCK,
            BLOCK + 4097,
            BLOCKS * BLOCK + 5,
        ];
        for len in lengths {
            let data: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let path = dir.path().join(format!("f{len}"));
            let mut w = DirectWriter::create_new(&path).unwrap();
            // Odd-sized writes, as a restore delivers chunks.
            for piece in data.chunks(65_537) {
                w.write_all(piece).unwrap();
            }
            w.finish(len % 2 == 0).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), data, "length {len}");
        }
        assert!(DirectWriter::create_new(&dir.path().join("f1")).is_err());
    }
}

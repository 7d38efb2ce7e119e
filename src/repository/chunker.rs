//! Content-defined chunking of a byte stream with pinned, keyed FastCDC parameters.
//!
//! Reads the source in large blocks and cuts them in place, so no chunk is copied
//! before it is known to be new. A cut is accepted only when at least `max_size`
//! bytes follow the chunk's start in the buffer (or the stream has ended): FastCDC
//! decides cuts from the bytes after a chunk's start alone, so cut points are the
//! same as if the whole stream were in memory.

use std::io::Read;

use crossbeam_channel::bounded;
use fastcdc::v2020::{FastCDC, Normalization};

use super::format::ChunkerParams;

/// Size of the read buffer.
const BUFFER: usize = 8 * 1024 * 1024;
/// Read buffers the background cutter may have at once: one being filled and cut,
/// one queued in the channel, one with the consumer.
const BUFFERS: usize = 3;

/// Where chunking runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cutting {
    /// On the calling thread, with one buffer: for small files, where a thread would
    /// cost more than it saves.
    Inline,
    /// Reading and cutting on a thread of their own, a buffer ahead of `on_chunk`: for
    /// large files, where the caller's hashing would otherwise wait for the cutting.
    Background,
}

/// Cuts everything `reader` yields into chunks, calling `on_chunk` for each in
/// order. The chunks cover the stream exactly, so a whole-file hash can be fed from
/// them while each is still in cache.
pub fn chunk_stream<R: Read + Send, E: From<std::io::Error>>(
    mut reader: R,
    params: &ChunkerParams,
    seed: u64,
    cutting: Cutting,
    mut on_chunk: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let size = BUFFER.max(2 * params.max_size as usize);
    let mut buf = vec![0u8; size];
    let mut cut = Cut::default();
    let mut cuts = Vec::new();
    if cutting == Cutting::Inline {
        loop {
            let consumed = cut.fill_and_cut(&mut reader, &mut buf, params, seed, &mut cuts)?;
            for &(at, len) in &cuts {
                on_chunk(&buf[at..at + len])?;
            }
            if cut.eof {
                return Ok(());
            }
            buf.copy_within(consumed..cut.filled, 0);
            cut.filled -= consumed;
        }
    }
    let (full_tx, full_rx) = bounded::<(Vec<u8>, Vec<(usize, usize)>)>(1);
    let (free_tx, free_rx) = bounded::<Vec<u8>>(BUFFERS);
    std::thread::scope(|scope| {
        let cutter = scope.spawn(move || -> std::io::Result<()> {
            let mut allocated = 1;
            loop {
                let mut cuts = Vec::new();
                let consumed = cut.fill_and_cut(&mut reader, &mut buf, params, seed, &mut cuts)?;
                if cuts.is_empty() && cut.eof {
                    return Ok(());
                }
                let mut next = match free_rx.try_recv() {
                    Ok(b) => b,
                    Err(_) if allocated < BUFFERS => {
                        allocated += 1;
                        vec![0u8; size]
                    }
                    Err(_) => match free_rx.recv() {
                        Ok(b) => b,
                        // The consumer stopped; it reports why.
                        Err(_) => return Ok(()),
                    },
                };
                let rest = cut.filled - consumed;
                next[..rest].copy_from_slice(&buf[consumed..cut.filled]);
                cut.filled = rest;
                let done = std::mem::replace(&mut buf, next);
                if full_tx.send((done, cuts)).is_err() || cut.eof {
                    return Ok(());
                }
            }
        });
        let consumed = (|| {
            for (data, cuts) in full_rx.iter() {
                for &(at, len) in &cuts {
                    on_chunk(&data[at..at + len])?;
                }
                let _ = free_tx.try_send(data);
            }
            Ok::<(), E>(())
        })();
        drop(full_rx);
        drop(free_tx);
        let read = cutter
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the chunking thread panicked")));
        consumed?;
        read.map_err(E::from)
    })
}

/// The state of cutting a stream buffer by buffer.
#[derive(Default)]
struct Cut {
    /// Bytes of the buffer holding stream data.
    filled: usize,
    eof: bool,
}

impl Cut {
    /// Tops `buf` up from `reader` and puts the chunks that can be cut into `cuts`
    /// as (offset, length); returns how many bytes they cover. A cut is accepted only
    /// when at least `max_size` bytes follow the chunk's start (or the stream ended).
    fn fill_and_cut<R: Read>(
        &mut self,
        reader: &mut R,
        buf: &mut [u8],
        params: &ChunkerParams,
        seed: u64,
        cuts: &mut Vec<(usize, usize)>,
    ) -> std::io::Result<usize> {
        cuts.clear();
        while !self.eof && self.filled < buf.len() {
            match reader.read(&mut buf[self.filled..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.filled == 0 {
            return Ok(0);
        }
        let max = params.max_size as usize;
        let mut consumed = 0usize;
        let cdc = FastCDC::with_level_and_seed(
            &buf[..self.filled],
            params.min_size,
            params.avg_size,
            params.max_size,
            Normalization::Level1,
            seed,
        );
        for c in cdc {
            if !self.eof && c.offset + max > self.filled {
                break;
            }
            cuts.push((c.offset, c.length));
            consumed = c.offset + c.length;
        }
        Ok(consumed)
    }
}

/// Cuts an in-memory buffer (for tests and test vectors).
#[cfg(test)]
pub fn chunk_lengths(data: &[u8], params: &ChunkerParams, seed: u64) -> Vec<usize> {
    let mut out = Vec::new();
    let _ = chunk_stream::<_, std::io::Error>(data, params, seed, Cutting::Inline, |c| {
        out.push(c.len());
        Ok(())
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(n: usize, mut s: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect()
    }

    #[test]
    fn streaming_cuts_equal_whole_buffer_cuts() {
        let p = ChunkerParams::default();
        let data = pseudo_random(20 * 1024 * 1024 + 12345, 99);
        let whole: Vec<usize> = FastCDC::with_level_and_seed(
            &data,
            p.min_size,
            p.avg_size,
            p.max_size,
            Normalization::Level1,
            7,
        )
        .map(|c| c.length)
        .collect();
        // A reader that returns odd-sized pieces.
        struct Odd<'a>(&'a [u8]);
        impl Read for Odd<'_> {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(b.len()).min(777_777);
                b[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        for cutting in [Cutting::Inline, Cutting::Background] {
            let mut streamed = Vec::new();
            let mut bytes = Vec::new();
            chunk_stream::<_, std::io::Error>(Odd(&data), &p, 7, cutting, |c| {
                streamed.push(c.len());
                bytes.extend_from_slice(c);
                Ok(())
            })
            .unwrap();
            assert_eq!(whole, streamed, "{cutting:?}");
            assert!(bytes == data, "{cutting:?}: the chunks are not the stream");
        }
    }

    #[test]
    fn empty_stream_has_no_chunks() {
        assert!(chunk_lengths(&[], &ChunkerParams::default(), 1).is_empty());
        let mut n = 0;
        chunk_stream::<_, std::io::Error>(
            &[][..],
            &ChunkerParams::default(),
            1,
            Cutting::Background,
            |_| {
                n += 1;
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn a_failing_consumer_or_reader_stops_the_cutter() {
        let p = ChunkerParams::default();
        let data = pseudo_random(40 * 1024 * 1024, 5);
        let mut seen = 0;
        let err = chunk_stream::<_, std::io::Error>(&data[..], &p, 7, Cutting::Background, |_| {
            seen += 1;
            if seen == 3 {
                return Err(std::io::Error::other("consumer gave up"));
            }
            Ok(())
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "consumer gave up");
        struct Broken(usize);
        impl Read for Broken {
            fn read(&mut self, b: &mut [u8]) -> std::io::Result<usize> {
                if self.0 == 0 {
                    return Err(std::io::Error::other("disk error"));
                }
                self.0 -= 1;
                b.fill(1);
                Ok(b.len().min(1 << 20))
            }
        }
        let err =
            chunk_stream::<_, std::io::Error>(Broken(20), &p, 7, Cutting::Background, |_| Ok(()))
                .unwrap_err();
        assert_eq!(err.to_string(), "disk error");
    }
}

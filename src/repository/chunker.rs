//! Content-defined chunking of a byte stream with pinned, keyed FastCDC parameters.
//!
//! Reads the source in large blocks and cuts them in place, so no chunk is copied
//! before it is known to be new. A cut is accepted only when at least `max_size`
//! bytes follow the chunk's start in the buffer (or the stream has ended): FastCDC
//! decides cuts from the bytes after a chunk's start alone, so cut points are the
//! same as if the whole stream were in memory.

use std::io::Read;

use crossbeam_channel::bounded;

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
    reader: R,
    params: &ChunkerParams,
    seed: u64,
    cutting: Cutting,
    mut on_chunk: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let gear = Gear::new(params, seed);
    let cut = |c: &mut Cut, r: &mut R, buf: &mut [u8], cuts: &mut Vec<(usize, usize)>| {
        c.fill(r, buf)?;
        let mut at = 0;
        while let Some(len) = c.next_cut(&gear, buf, at) {
            cuts.push((at, len));
            at += len;
        }
        Ok(at)
    };
    let consume = |data: &[u8], cuts: &[(usize, usize)]| {
        for &(at, len) in cuts {
            on_chunk(&data[at..at + len])?;
        }
        Ok(())
    };
    match cutting {
        Cutting::Inline => cut_inline(reader, params, cut, consume),
        Cutting::Background => cut_in_background(reader, params, cut, consume),
    }
}

/// Runs `cut` over buffer after buffer of `reader` on this thread, handing each
/// buffer's cuts to `consume`.
pub(super) fn cut_inline<R: Read, T, E: From<std::io::Error>>(
    mut reader: R,
    params: &ChunkerParams,
    mut cut: impl FnMut(&mut Cut, &mut R, &mut [u8], &mut Vec<T>) -> std::io::Result<usize>,
    mut consume: impl FnMut(&[u8], &[T]) -> Result<(), E>,
) -> Result<(), E> {
    let mut buf = vec![0u8; buffer_size(params)];
    let mut state = Cut::default();
    let mut cuts = Vec::new();
    loop {
        cuts.clear();
        let consumed = cut(&mut state, &mut reader, &mut buf, &mut cuts)?;
        consume(&buf, &cuts)?;
        if state.eof {
            return Ok(());
        }
        buf.copy_within(consumed..state.filled, 0);
        state.filled -= consumed;
    }
}

/// Runs `cut` over buffer after buffer of `reader` on a thread of its own, a buffer
/// ahead of `consume`, which runs on this thread.
pub(super) fn cut_in_background<R: Read + Send, T: Send, E: From<std::io::Error>>(
    mut reader: R,
    params: &ChunkerParams,
    mut cut: impl FnMut(&mut Cut, &mut R, &mut [u8], &mut Vec<T>) -> std::io::Result<usize> + Send,
    mut consume: impl FnMut(&[u8], &[T]) -> Result<(), E>,
) -> Result<(), E> {
    let size = buffer_size(params);
    let (full_tx, full_rx) = bounded::<(Vec<u8>, Vec<T>)>(1);
    let (free_tx, free_rx) = bounded::<Vec<u8>>(BUFFERS);
    std::thread::scope(|scope| {
        let cutter = scope.spawn(move || -> std::io::Result<()> {
            let mut buf = vec![0u8; size];
            let mut state = Cut::default();
            let mut allocated = 1;
            loop {
                let mut cuts = Vec::new();
                let consumed = cut(&mut state, &mut reader, &mut buf, &mut cuts)?;
                if cuts.is_empty() && state.eof {
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
                let rest = state.filled - consumed;
                next[..rest].copy_from_slice(&buf[consumed..state.filled]);
                state.filled = rest;
                let done = std::mem::replace(&mut buf, next);
                if full_tx.send((done, cuts)).is_err() || state.eof {
                    return Ok(());
                }
            }
        });
        let consumed = (|| {
            for (data, cuts) in full_rx.iter() {
                consume(&data, &cuts)?;
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

fn buffer_size(params: &ChunkerParams) -> usize {
    BUFFER.max(2 * params.max_size as usize)
}

/// The state of cutting a stream buffer by buffer.
#[derive(Default)]
pub(super) struct Cut {
    /// Bytes of the buffer holding stream data.
    pub(super) filled: usize,
    /// Whether the stream has ended (the buffer holds its last bytes).
    pub(super) eof: bool,
}

impl Cut {
    /// Tops `buf` up from `reader`.
    pub(super) fn fill<R: Read>(&mut self, reader: &mut R, buf: &mut [u8]) -> std::io::Result<()> {
        while !self.eof && self.filled < buf.len() {
            match reader.read(&mut buf[self.filled..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether a chunk starting at `at` can be decided now: FastCDC decides from
    /// at most `max_size` bytes after a chunk's start, so a cut is final when that
    /// many follow in the buffer or the stream has ended.
    pub(super) fn decidable(&self, gear: &Gear, at: usize) -> bool {
        at < self.filled && (self.eof || self.filled - at >= gear.max)
    }

    /// The length of the chunk starting at `at`, if it can be decided now.
    pub(super) fn next_cut(&self, gear: &Gear, buf: &[u8], at: usize) -> Option<usize> {
        self.decidable(gear, at)
            .then(|| gear.cut(&buf[at..self.filled]))
    }
}

/// FastCDC 2020 with the repository's parameters and keyed gear table, called one
/// cut at a time (the same cuts as `fastcdc::v2020::FastCDC`, which the tests check).
pub(super) struct Gear {
    min: usize,
    avg: usize,
    pub(super) max: usize,
    mask_s: u64,
    mask_l: u64,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
}

impl Gear {
    pub(super) fn new(params: &ChunkerParams, seed: u64) -> Gear {
        use fastcdc::v2020::{get_gear_with_seed, logarithm2, MASKS};
        let bits = logarithm2(params.avg_size);
        // Normalization level 1, as the repository format pins.
        let (gear, gear_ls) = get_gear_with_seed(seed);
        Gear {
            min: params.min_size as usize,
            avg: params.avg_size as usize,
            max: params.max_size as usize,
            mask_s: MASKS[(bits + 1) as usize],
            mask_l: MASKS[(bits - 1) as usize],
            gear,
            gear_ls,
        }
    }

    /// The length of the chunk that starts `data` (which holds the rest of the
    /// stream, or at least `max` bytes of it).
    pub(super) fn cut(&self, data: &[u8]) -> usize {
        fastcdc::v2020::cut_gear(
            data,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear,
            &self.gear_ls,
        )
        .1
    }

    /// Whether FastCDC, cutting a chunk that starts `data` (at least `max` bytes of
    /// stream), cuts it at exactly `len`, given that the same `len` bytes were cut
    /// there before with at least `max` bytes following. Equal bytes keep every
    /// earlier decision the same (none cut), and a cut at `len` is decided by the
    /// gear hash of the 64 bytes up to and including `data[len]`, the first byte
    /// after the chunk: only that decision is recomputed here.
    pub(super) fn cuts_at(&self, data: &[u8], len: usize) -> bool {
        if len == self.max {
            return true;
        }
        if len < self.min || len >= data.len() || len > self.max {
            return false;
        }
        // `cut_gear` rolls two bytes per step from `min / 2`; a byte's part of the
        // hash is shifted out after 64 bits, so 32 steps back is exact.
        let last = len / 2;
        let first = (self.min / 2).max(last.saturating_sub(32));
        let mut hash = 0u64;
        for index in first..=last {
            let mask = if index < self.avg / 2 {
                self.mask_s
            } else {
                self.mask_l
            };
            let a = index * 2;
            hash = (hash << 2).wrapping_add(self.gear_ls[data[a] as usize]);
            if a == len {
                return hash & (mask << 1) == 0;
            }
            hash = hash.wrapping_add(self.gear[data[a + 1] as usize]);
            if a + 1 == len {
                return hash & mask == 0;
            }
        }
        false
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

/// Reproducible noise (xorshift) for the chunking tests.
#[cfg(test)]
pub fn pseudo_random(n: usize, mut s: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastcdc::v2020::{FastCDC, Normalization};

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

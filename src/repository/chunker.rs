//! Content-defined chunking of a byte stream with pinned, keyed FastCDC parameters.
//!
//! Reads the source in large blocks and cuts them in place, so no chunk is copied
//! before it is known to be new. A cut is accepted only when at least `max_size`
//! bytes follow the chunk's start in the buffer (or the stream has ended): FastCDC
//! decides cuts from the bytes after a chunk's start alone, so cut points are the
//! same as if the whole stream were in memory.

use std::io::Read;

use fastcdc::v2020::{FastCDC, Normalization};

use super::format::ChunkerParams;

/// Size of the read buffer.
const BUFFER: usize = 8 * 1024 * 1024;

/// Cuts everything `reader` yields into chunks, calling `on_chunk` for each in
/// order. The chunks cover the stream exactly, so a whole-file hash can be fed from
/// them while each is still in cache.
pub fn chunk_stream<R: Read, E: From<std::io::Error>>(
    mut reader: R,
    params: &ChunkerParams,
    seed: u64,
    mut on_chunk: impl FnMut(&[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let max = params.max_size as usize;
    let mut buf = vec![0u8; BUFFER.max(2 * max)];
    let mut filled = 0usize;
    let mut eof = false;
    loop {
        while !eof && filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => eof = true,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(E::from(e)),
            }
        }
        if filled == 0 {
            return Ok(());
        }
        let mut consumed = 0usize;
        let cdc = FastCDC::with_level_and_seed(
            &buf[..filled],
            params.min_size,
            params.avg_size,
            params.max_size,
            Normalization::Level1,
            seed,
        );
        for c in cdc {
            if !eof && c.offset + max > filled {
                break;
            }
            on_chunk(&buf[c.offset..c.offset + c.length])?;
            consumed = c.offset + c.length;
        }
        if eof {
            return Ok(());
        }
        buf.copy_within(consumed..filled, 0);
        filled -= consumed;
    }
}

/// Cuts an in-memory buffer (for tests and test vectors).
#[cfg(test)]
pub fn chunk_lengths(data: &[u8], params: &ChunkerParams, seed: u64) -> Vec<usize> {
    let mut out = Vec::new();
    let _ = chunk_stream::<_, std::io::Error>(data, params, seed, |c| {
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
        let mut streamed = Vec::new();
        chunk_stream::<_, std::io::Error>(Odd(&data), &p, 7, |c| {
            streamed.push(c.len());
            Ok(())
        })
        .unwrap();
        assert_eq!(whole, streamed);
        assert_eq!(streamed.iter().sum::<usize>(), data.len());
    }

    #[test]
    fn empty_stream_has_no_chunks() {
        assert!(chunk_lengths(&[], &ChunkerParams::default(), 1).is_empty());
    }
}

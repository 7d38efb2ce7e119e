//! Microsoft's "LZ77+Huffman" compression (MS-XCA section 2.1/2.2), which SQL
//! Server uses inside `WITH COMPRESSION` backups: a decoder, and an encoder so the
//! writer can produce compressed backups for the simulator and the tests.
//!
//! Written here rather than taken from a crate: it is small, and owning it means
//! every length and offset read from the input is checked against an output bound
//! given by the caller, so a damaged chunk ends in an error, not a panic, a loop or
//! a large allocation. Each Huffman block carries a 256-byte table of 4-bit code
//! lengths for 512 symbols, then a bitstream read in 16-bit little-endian units.

/// Why a chunk would not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XpressError(pub String);

impl std::fmt::Display for XpressError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

const TABLE_BITS: u32 = 15;

fn err(msg: impl Into<String>) -> XpressError {
    XpressError(msg.into())
}

/// Canonical Huffman decode table: entry = symbol << 4 | length (0 = invalid code).
fn build_table(lengths: &[u8], table: &mut Vec<u16>) -> Result<(), XpressError> {
    table.clear();
    table.resize(1 << TABLE_BITS, 0);
    let mut code: u32 = 0;
    let mut next = 0usize;
    for len in 1..=TABLE_BITS {
        for sym in 0..512usize {
            let l = if sym % 2 == 0 {
                lengths[sym / 2] & 0x0f
            } else {
                lengths[sym / 2] >> 4
            };
            if u32::from(l) != len {
                continue;
            }
            let span = 1usize << (TABLE_BITS - len);
            let start = (code as usize) << (TABLE_BITS - len);
            if start + span > table.len() || start < next {
                return Err(err("Huffman table is over-subscribed"));
            }
            table[start..start + span].fill(((sym as u16) << 4) | len as u16);
            next = start + span;
            code += 1;
        }
        code <<= 1;
    }
    if next == 0 {
        return Err(err("Huffman table is empty"));
    }
    Ok(())
}

/// Decodes `input` into `out` (cleared first), which must come to exactly
/// `expected` bytes; nothing beyond `expected` is ever allocated.
pub fn decompress(input: &[u8], out: &mut Vec<u8>, expected: usize) -> Result<(), XpressError> {
    out.clear();
    out.reserve(expected);
    let mut table = Vec::new();
    let r16 = |p: usize| -> u32 {
        match input.get(p..p + 2) {
            Some(s) => u32::from(u16::from_le_bytes([s[0], s[1]])),
            None => 0,
        }
    };
    let mut pos = 0usize;
    while out.len() < expected {
        let Some(lengths) = input.get(pos..pos + 256) else {
            return Err(err(format!(
                "input ends at {} bytes with {} of {expected} bytes decoded",
                input.len(),
                out.len()
            )));
        };
        build_table(lengths, &mut table)?;
        pos += 256;
        let mut bits: u32 = (r16(pos) << 16) | r16(pos + 2);
        pos += 4;
        let mut extra: i32 = 16;
        let block_end = out.len() + 65536;
        while out.len() < block_end && out.len() < expected {
            let entry = table[(bits >> (32 - TABLE_BITS)) as usize];
            let len = u32::from(entry & 0x0f);
            if len == 0 {
                return Err(err(format!("invalid Huffman code at input byte {pos}")));
            }
            let sym = usize::from(entry >> 4);
            bits <<= len;
            extra -= len as i32;
            if extra < 0 {
                bits |= r16(pos) << (-extra) as u32;
                extra += 16;
                pos += 2;
            }
            if sym < 256 {
                out.push(sym as u8);
                continue;
            }
            if sym == 256 && pos >= input.len() {
                break;
            }
            let sym = sym - 256;
            let mut match_len = sym & 15;
            let offset_bits = (sym >> 4) as u32;
            if match_len == 15 {
                let b = *input
                    .get(pos)
                    .ok_or_else(|| err("input ends inside a match length"))?;
                pos += 1;
                match_len = usize::from(b);
                if match_len == 255 {
                    let mut l = r16(pos) as usize;
                    pos += 2;
                    if l == 0 {
                        let s = input
                            .get(pos..pos + 4)
                            .ok_or_else(|| err("input ends inside a match length"))?;
                        l = u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize;
                        pos += 4;
                    }
                    if l < 15 {
                        return Err(err("invalid long match length"));
                    }
                    match_len = l - 15;
                }
                match_len += 15;
            }
            match_len += 3;
            let offset = if offset_bits == 0 {
                1
            } else {
                ((bits >> (32 - offset_bits)) as usize) + (1usize << offset_bits)
            };
            bits = if offset_bits == 0 {
                bits
            } else {
                bits << offset_bits
            };
            extra -= offset_bits as i32;
            if extra < 0 {
                bits |= r16(pos) << (-extra) as u32;
                extra += 16;
                pos += 2;
            }
            if offset > out.len() {
                return Err(err(format!(
                    "match reaches {offset} bytes back with only {} decoded",
                    out.len()
                )));
            }
            if out.len() + match_len > expected {
                return Err(err(format!("match runs past the {expected}-byte output")));
            }
            let start = out.len() - offset;
            for i in 0..match_len {
                let b = out[start + i];
                out.push(b);
            }
        }
        if pos >= input.len() {
            break;
        }
    }
    if out.len() != expected {
        return Err(err(format!(
            "decoded {} bytes, expected {expected}",
            out.len()
        )));
    }
    Ok(())
}

/// The most one [`compress`] call encodes: one Huffman block's output.
pub const MAX_BLOCK: usize = 65536;

const MIN_MATCH: usize = 3;
const MAX_OFFSET: usize = 65535;
const MAX_CODE_LEN: u32 = 15;
const EOF_SYMBOL: usize = 256;
const HASH_BITS: u32 = 15;
/// Candidates tried per position: enough for the long runs pages hold, bounded so
/// a pathological input costs at most this many comparisons per byte.
const MAX_CHAIN: usize = 32;

#[derive(Debug, Clone, Copy)]
enum Token {
    Literal(u8),
    Match { len: usize, offset: usize },
}

impl Token {
    fn symbol(self) -> usize {
        match self {
            Self::Literal(b) => usize::from(b),
            Self::Match { len, offset } => {
                let offset_bits = offset.ilog2() as usize;
                256 + (offset_bits << 4) + (len - MIN_MATCH).min(15)
            }
        }
    }
}

/// Greedy LZ77 over one block with hash chains. A match of 3 at offset 1 would be
/// symbol 256, which a decoder takes for the end of the stream when it comes with
/// the last input word, so such matches are written as literals.
fn tokenize(input: &[u8]) -> Vec<Token> {
    let hash = |i: usize| -> usize {
        let v = u32::from(input[i]) | u32::from(input[i + 1]) << 8 | u32::from(input[i + 2]) << 16;
        (v.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize
    };
    let mut head = vec![usize::MAX; 1 << HASH_BITS];
    let mut prev = vec![usize::MAX; input.len()];
    let insert = |i: usize, head: &mut [usize], prev: &mut [usize]| {
        if i + MIN_MATCH <= input.len() {
            let h = hash(i);
            prev[i] = head[h];
            head[h] = i;
        }
    };
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < input.len() {
        let mut best = (0usize, 0usize);
        if i + MIN_MATCH <= input.len() {
            let limit = input.len() - i;
            let mut cand = head[hash(i)];
            let mut tries = 0;
            while cand != usize::MAX && tries < MAX_CHAIN && i - cand <= MAX_OFFSET {
                let len = input[cand..]
                    .iter()
                    .zip(&input[i..])
                    .take(limit)
                    .take_while(|(a, b)| a == b)
                    .count();
                if len > best.0 {
                    best = (len, i - cand);
                    if len == limit {
                        break;
                    }
                }
                cand = prev[cand];
                tries += 1;
            }
        }
        let (len, offset) = best;
        if len >= MIN_MATCH && !(len == MIN_MATCH && offset == 1) {
            tokens.push(Token::Match { len, offset });
            for j in i..i + len {
                insert(j, &mut head, &mut prev);
            }
            i += len;
        } else {
            tokens.push(Token::Literal(input[i]));
            insert(i, &mut head, &mut prev);
            i += 1;
        }
    }
    tokens
}

/// Code lengths of a Huffman code over `freq`, none longer than 15 bits: when the
/// tree is too deep the counts are halved (keeping every used symbol) and the code
/// rebuilt, which ends at worst with all counts equal (10 bits for 512 symbols).
fn code_lengths(freq: &[u64; 512]) -> [u8; 512] {
    let mut f = *freq;
    loop {
        let lengths = huffman_lengths(&f);
        if lengths.iter().all(|&l| u32::from(l) <= MAX_CODE_LEN) {
            return lengths;
        }
        for x in f.iter_mut().filter(|x| **x > 0) {
            *x = (*x >> 1) | 1;
        }
    }
}

fn huffman_lengths(freq: &[u64; 512]) -> [u8; 512] {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let mut lengths = [0u8; 512];
    // Nodes: leaves are symbols; parents[i] is the node i was merged into.
    let mut parents: Vec<usize> = Vec::new();
    let mut leaf_node = [usize::MAX; 512];
    let mut heap = BinaryHeap::new();
    for (sym, &f) in freq.iter().enumerate() {
        if f > 0 {
            leaf_node[sym] = parents.len();
            heap.push(Reverse((f, parents.len())));
            parents.push(usize::MAX);
        }
    }
    if parents.len() == 1 {
        // One symbol still needs a one-bit code.
        if let Some(sym) = freq.iter().position(|&f| f > 0) {
            lengths[sym] = 1;
        }
        return lengths;
    }
    while heap.len() > 1 {
        let (Some(Reverse((fa, a))), Some(Reverse((fb, b)))) = (heap.pop(), heap.pop()) else {
            break;
        };
        let node = parents.len();
        parents.push(usize::MAX);
        parents[a] = node;
        parents[b] = node;
        heap.push(Reverse((fa + fb, node)));
    }
    for (sym, &leaf) in leaf_node.iter().enumerate() {
        if leaf == usize::MAX {
            continue;
        }
        let mut depth = 0u32;
        let mut n = leaf;
        while parents[n] != usize::MAX {
            n = parents[n];
            depth += 1;
        }
        lengths[sym] = depth.min(u32::from(u8::MAX)) as u8;
    }
    lengths
}

/// The canonical codes for `lengths`, assigned in the order the decoder's table
/// expects: shorter codes first, equal lengths by symbol.
fn canonical_codes(lengths: &[u8; 512]) -> [u16; 512] {
    let mut codes = [0u16; 512];
    let mut code: u32 = 0;
    for len in 1..=MAX_CODE_LEN {
        for sym in 0..512 {
            if u32::from(lengths[sym]) == len {
                codes[sym] = code as u16;
                code += 1;
            }
        }
        code <<= 1;
    }
    codes
}

/// The bitstream as the decoder reads it: 16-bit words, most significant bit first,
/// interleaved with the bytes of long match lengths. The decoder holds two words
/// ahead and reads a long length's bytes where its input stands at that moment, so
/// each word gets its place in the output the first time the decoder would read
/// it; words are filled in at the end.
struct BitWriter<'a> {
    out: &'a mut Vec<u8>,
    slots: Vec<usize>,
    words: Vec<u16>,
    acc: u32,
    pending: u32,
    total: u64,
}

impl<'a> BitWriter<'a> {
    fn new(out: &'a mut Vec<u8>) -> Self {
        Self {
            out,
            slots: Vec::new(),
            words: Vec::new(),
            acc: 0,
            pending: 0,
            total: 0,
        }
    }

    fn bits(&mut self, value: u32, len: u32) {
        if len == 0 {
            return;
        }
        self.acc = (self.acc << len) | (value & ((1 << len) - 1));
        self.pending += len;
        self.total += u64::from(len);
        while self.pending >= 16 {
            self.pending -= 16;
            self.words.push((self.acc >> self.pending) as u16);
            self.acc &= (1 << self.pending) - 1;
        }
    }

    /// Words the decoder has read once `total` bits are consumed: two to start,
    /// then one more whenever fewer than 16 unread bits remain.
    fn words_read(&self) -> usize {
        (self.total.div_ceil(16) as usize + 1).max(2)
    }

    fn place_words(&mut self) {
        while self.slots.len() < self.words_read() {
            self.slots.push(self.out.len());
            self.out.extend_from_slice(&[0, 0]);
        }
    }

    fn bytes(&mut self, b: &[u8]) {
        self.place_words();
        self.out.extend_from_slice(b);
    }

    fn finish(mut self) {
        if self.pending > 0 {
            self.words.push((self.acc << (16 - self.pending)) as u16);
            self.pending = 0;
        }
        self.place_words();
        for (word, &at) in self.words.iter().zip(&self.slots) {
            self.out[at..at + 2].copy_from_slice(&word.to_le_bytes());
        }
    }
}

/// Encodes `input` (at most [`MAX_BLOCK`] bytes: one Huffman block) and appends
/// it to `out`, ending with the end-of-stream symbol as SQL Server's chunks do.
/// [`decompress`] with `expected = input.len()` gives `input` back.
pub fn compress(input: &[u8], out: &mut Vec<u8>) -> Result<(), XpressError> {
    if input.len() > MAX_BLOCK {
        return Err(err(format!(
            "{} bytes do not fit one {MAX_BLOCK}-byte block",
            input.len()
        )));
    }
    let tokens = tokenize(input);
    let mut freq = [0u64; 512];
    for t in &tokens {
        freq[t.symbol()] += 1;
    }
    freq[EOF_SYMBOL] += 1;
    let lengths = code_lengths(&freq);
    let codes = canonical_codes(&lengths);
    for pair in lengths.chunks_exact(2) {
        out.push(pair[0] | (pair[1] << 4));
    }
    let mut w = BitWriter::new(out);
    let put = |w: &mut BitWriter, sym: usize| {
        w.bits(u32::from(codes[sym]), u32::from(lengths[sym]));
    };
    for t in tokens {
        put(&mut w, t.symbol());
        if let Token::Match { len, offset } = t {
            let extra = len - MIN_MATCH;
            if extra >= 15 {
                if extra - 15 < 255 {
                    w.bytes(&[(extra - 15) as u8]);
                } else if let Ok(short) = u16::try_from(extra) {
                    w.bytes(&[255]);
                    w.bytes(&short.to_le_bytes());
                } else {
                    w.bytes(&[255, 0, 0]);
                    w.bytes(&(extra as u32).to_le_bytes());
                }
            }
            let offset_bits = offset.ilog2();
            w.bits((offset - (1 << offset_bits)) as u32, offset_bits);
        }
    }
    put(&mut w, EOF_SYMBOL);
    w.finish();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(input: &[u8]) -> usize {
        let mut packed = Vec::new();
        compress(input, &mut packed).expect("compress");
        let mut back = Vec::new();
        decompress(&packed, &mut back, input.len()).expect("decompress");
        assert_eq!(back, input);
        packed.len()
    }

    fn noise(n: usize, mut seed: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect()
    }

    #[test]
    fn compressed_blocks_decode_to_their_input() {
        assert!(round_trip(&[0u8; MAX_BLOCK]) < 600);
        // Incompressible: about 9 bits a byte, under the record's u16 size at 32 KiB.
        assert!(round_trip(&noise(32768, 7)) < 40_000);
        round_trip(&noise(MAX_BLOCK, 8));
        round_trip(&[]);
        round_trip(&[5]);
        round_trip(&[5, 5, 5, 5]);
        round_trip(b"abcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabcabc");
        // Matches of every length class (short, one extra byte, a u16) at every
        // offset width, between stretches of noise.
        let mut mixed = Vec::new();
        let mut seed = 1u64;
        while mixed.len() < MAX_BLOCK - 2000 {
            seed += 1;
            let lit = noise((seed % 40) as usize, seed);
            mixed.extend_from_slice(&lit);
            let back = ((seed * 7919) as usize % mixed.len().max(1)).max(1);
            let len = [3usize, 4, 17, 18, 100, 272, 273, 1000][(seed % 8) as usize];
            let start = mixed.len() - back;
            for k in 0..len {
                let b = mixed[start + k];
                mixed.push(b);
            }
        }
        round_trip(&mixed);
        // Pages: headers, rows and zero runs.
        let mut pages = vec![0u8; MAX_BLOCK];
        for (i, p) in pages.chunks_mut(8192).enumerate() {
            p[..96].copy_from_slice(&noise(96, i as u64));
            p[96..2000].copy_from_slice(&noise(1904, 99)[..]);
        }
        assert!(round_trip(&pages) < 12_000);
        assert!(compress(&[0u8; MAX_BLOCK + 1], &mut Vec::new()).is_err());
    }

    #[test]
    fn code_lengths_stay_within_fifteen_bits() {
        // Fibonacci counts make the deepest possible Huffman tree.
        let mut freq = [0u64; 512];
        let (mut a, mut b) = (1u64, 1u64);
        for f in freq.iter_mut().take(40) {
            *f = a;
            (a, b) = (b, a + b);
        }
        let lengths = code_lengths(&freq);
        assert!(lengths.iter().all(|&l| l <= 15));
        let kraft: f64 = lengths
            .iter()
            .filter(|&&l| l > 0)
            .map(|&l| 2f64.powi(-i32::from(l)))
            .sum();
        assert!((kraft - 1.0).abs() < 1e-9, "{kraft}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        for seed in 0..200u32 {
            let input: Vec<u8> = (0..600u32)
                .map(|i| (i.wrapping_mul(2654435761).wrapping_add(seed * 7919) >> 13) as u8)
                .collect();
            let _ = decompress(&input, &mut out, 65536);
            assert!(out.len() <= 65536);
        }
        assert!(decompress(&[], &mut out, 10).is_err());
    }
}

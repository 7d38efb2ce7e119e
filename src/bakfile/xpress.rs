//! A decoder for Microsoft's "LZ77+Huffman" compression (MS-XCA section 2.1/2.2),
//! which SQL Server uses inside `WITH COMPRESSION` backups.
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

#[cfg(test)]
mod tests {
    use super::*;

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

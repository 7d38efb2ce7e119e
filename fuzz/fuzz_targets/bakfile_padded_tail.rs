//! cargo-fuzz target over the tail of a compressed backup: the last data records,
//! the zero padding to the next 4 KiB boundary and the trailer (issue 13). Random
//! bytes never get through a valid XPRESS chunk to reach that code, so this target
//! starts from a file the writer produced and lets the input cut, flip and splice
//! only its last 8 KiB. Any panic, hang or runaway allocation is a bug.
//! Run with `cargo +nightly fuzz run bakfile_padded_tail`.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pacsbak::bakfile::{self, writer::write_backup_compressed, BackupType, SetDescription};

const TAIL: usize = 8192;

fn base() -> &'static [u8] {
    static FILE: OnceLock<Vec<u8>> = OnceLock::new();
    FILE.get_or_init(|| {
        let desc = SetDescription::new("PACS", BackupType::FULL);
        let pages: Vec<Vec<u8>> = (0..24u32)
            .map(|i| {
                let mut p = vec![0u8; 8192];
                p[0] = 1;
                p[1] = 1;
                p[0x20..0x24].copy_from_slice(&i.to_le_bytes());
                for (j, b) in p[0x60..0x460].iter_mut().enumerate() {
                    *b = (j as u32).wrapping_mul(i + 3) as u8;
                }
                p
            })
            .collect();
        let mut out = Vec::new();
        // A failure here is a writer bug the fuzzer should report, not skip.
        write_backup_compressed(&mut out, &desc, pages.iter(), &[0x33u8; 2000])
            .expect("the writer writes the base file");
        out
    })
}

fuzz_target!(|data: &[u8]| {
    let mut d = base().to_vec();
    let tail = d.len().saturating_sub(TAIL);
    // Each 4 input bytes: an operation, a position in the tail, a value.
    for op in data.chunks_exact(4).take(16) {
        let span = d.len().saturating_sub(tail).max(1);
        let at = tail + usize::from(u16::from_le_bytes([op[1], op[2]])) % span;
        match op[0] % 4 {
            0 | 1 if at < d.len() => d[at] ^= op[3] | 1,
            2 => d.truncate(at),
            3 => {
                let at = at.min(d.len());
                let n = usize::from(op[3]) * 4;
                d.splice(at..at, std::iter::repeat(op[3]).take(n));
            }
            _ => {}
        }
    }
    let _ = bakfile::inspect_bytes(&d);
    let _ = bakfile::check_bytes(&d);
});

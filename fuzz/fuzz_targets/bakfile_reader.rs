//! cargo-fuzz target over the backup-file reader: inspect and check arbitrary bytes
//! (plain MTF and MSSQLBAK). Any panic, hang or runaway allocation is a bug.
//! Run with `cargo +nightly fuzz run bakfile_reader` (seed it with ../shared/baks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = pacsbak::bakfile::inspect_bytes(data);
    let _ = pacsbak::bakfile::check_bytes(data);
});

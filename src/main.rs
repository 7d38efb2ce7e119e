//! The `pacsbak` binary: parse arguments, set up logging, hand over to the library.
//!
//! Everything that does work lives in the library; this file only turns its errors
//! into messages and exit codes.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = pacsbak::cli::Cli::parse();
    pacsbak::cli::init_tracing(&cli);
    pacsbak::cli::main(cli)
}

/// Restore cycles through group buffers of a few MiB (sealed, opened, decompressed).
/// glibc maps each afresh and unmaps it when freed, so every one is faulted in page
/// by page again (50,000-110,000 minor faults restoring 1 GiB, against 34,000 with
/// these settings, and 0.3-0.4 s less system time). Buffers below 8 MiB come from
/// the heap, and up to 64 MiB freed at its top stays there; 16 MiB packs are still
/// mapped on their own, so peak memory does not grow (docs/benchmarks.md).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters; it is called before any other
    // thread exists, and a refused value leaves glibc's defaults in place.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

//! Benchmark of the backup-file reader: `inspect` on a 10 GiB backup (must not read
//! the data streams: under a second) and `--check` throughput on one core (at
//! least 1 GB/s). Writes the test file with the crate's writer and deletes it.
//!
//! `cargo run --release --example bakfile_bench [-- SIZE_GIB [DIR]]`

use std::time::Instant;

use pacsbak::bakfile::{self, BackupType, SetDescription};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let gib: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let dir = args
        .get(2)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let path = dir.join("pacsbak-bench.bak");
    let pages = gib * (1 << 30) / 8192;

    let mut desc = SetDescription::new("PACS", BackupType::FULL);
    desc.first_lsn = "41000000010000001".parse()?;
    desc.last_lsn = "41000000012000001".parse()?;
    desc.checkpoint_lsn = desc.first_lsn;
    let mut template = vec![0u8; 8192];
    template[0] = 1;
    template[1] = 1;
    template[4..6].copy_from_slice(&0x0200u16.to_le_bytes());
    template[0x24..0x26].copy_from_slice(&1u16.to_le_bytes());
    for (i, b) in template[0x60..].iter_mut().enumerate() {
        *b = (i * 31 % 251) as u8;
    }
    let iter = (0..pages).map(|i| {
        let mut p = template.clone();
        p[0x20..0x24].copy_from_slice(&(i as u32).to_le_bytes());
        p
    });
    let started = Instant::now();
    let file = std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(&path)?);
    let written =
        bakfile::write_backup(file, &desc, ExactIter(iter, pages as usize), &[0u8; 65536])?;
    let write_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let f = bakfile::inspect(&path)?;
    let inspect_s = started.elapsed().as_secs_f64();
    assert!(f.is_sound());

    let started = Instant::now();
    let r = bakfile::check(&path)?;
    let check_s = started.elapsed().as_secs_f64();
    assert!(r.ok, "{:?}", r.damage);
    std::fs::remove_file(&path)?;

    let gb = written as f64 / 1e9;
    println!("| measure | file | time | rate |");
    println!("|---|---|---|---|");
    println!(
        "| write (writer, page checksums + CSUM) | {gb:.2} GB | {write_s:.2} s | {:.2} GB/s |",
        gb / write_s
    );
    println!(
        "| inspect (headers only) | {gb:.2} GB | {:.1} ms | - |",
        inspect_s * 1e3
    );
    println!(
        "| check ({} pages, {} CSUMs) | {gb:.2} GB | {check_s:.2} s | {:.2} GB/s |",
        r.pages_verified,
        r.csums_verified,
        r.bytes_read as f64 / 1e9 / check_s
    );
    Ok(())
}

/// An iterator with a known length, as the writer needs it.
struct ExactIter<I>(I, usize);

impl<I: Iterator> Iterator for ExactIter<I> {
    type Item = I::Item;
    fn next(&mut self) -> Option<Self::Item> {
        let v = self.0.next();
        if v.is_some() {
            self.1 -= 1;
        }
        v
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.1, Some(self.1))
    }
}

impl<I: Iterator> ExactSizeIterator for ExactIter<I> {}

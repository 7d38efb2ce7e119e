//! Issue 13: compressed backups whose last data record is followed by zeros up to
//! the next 4 KiB boundary, then the trailer. Written by the writer, and rebuilt
//! from the real 2014 and 2016 files in ../shared/baks/ (their seal record swapped
//! for that padding), they must check and plan; cut inside the padding or the
//! trailer, they must be DAMAGED.

use std::path::Path;

use pacsbak::bakfile::{self, writer::write_backup_compressed, BackupType, SetDescription};

use crate::common::require_shared_baks;

const PAD_UNIT: usize = 4096;

fn pages(n: u32, seed: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut p = vec![0u8; 8192];
            p[0] = 1;
            p[1] = 1;
            p[4..6].copy_from_slice(&0x0200u16.to_le_bytes());
            p[0x20..0x24].copy_from_slice(&i.to_le_bytes());
            p[0x24..0x26].copy_from_slice(&1u16.to_le_bytes());
            let rows = 600 + (i * 97 + seed) as usize % 3000;
            for (j, b) in p[0x60..0x60 + rows].iter_mut().enumerate() {
                *b = (j as u32 ^ seed)
                    .wrapping_mul(i + 7)
                    .rotate_left(j as u32 % 11) as u8;
            }
            p
        })
        .collect()
}

fn desc(kind: BackupType, first: &str, last: &str) -> SetDescription {
    let mut d = SetDescription::new("PACS", kind);
    d.first_lsn = first.parse().expect("lsn");
    d.last_lsn = last.parse().expect("lsn");
    d.checkpoint_lsn = d.first_lsn;
    d
}

/// The container's records as (kind, file offset, end), walked the way the issue
/// describes the files; zero padding shows as `'0'`.
fn records(b: &[u8]) -> Vec<(char, usize, usize)> {
    let mut out = Vec::new();
    let mut h = 0x1E0;
    while h < b.len() {
        let size = usize::from(u16::from_le_bytes([b[h + 2], b[h + 3]]));
        let (kind, end) = match b[h] {
            b'S' => ('S', h + 512),
            0x21 => ('D', h + 28 + size),
            0x24 => ('P', h + 24 + size),
            0x00 => ('0', (h / PAD_UNIT + 1) * PAD_UNIT),
            other => panic!("record type {other:#x} at {h}"),
        };
        out.push((kind, h, end));
        h = end;
    }
    out
}

/// Where the zero padding lies, asserting the layout SQL Server writes: after the
/// last data record, zeros to the next 4 KiB boundary, then SFMB, ESET's chunk,
/// a padding record and the closing SFMB.
fn padding(b: &[u8]) -> (usize, usize) {
    let r = records(b);
    let kinds: String = r.iter().map(|x| x.0).collect();
    assert!(kinds.ends_with("D0SDPS"), "{kinds}");
    let (_, start, end) = r[r.len() - 5];
    assert!(b[start..end].iter().all(|&x| x == 0));
    assert_eq!(end % PAD_UNIT, 0);
    assert!(start % PAD_UNIT != 0);
    (start, end)
}

/// A full and a log backup of one chain, compressed, in a folder.
fn written_chain(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let mut full_desc = desc(BackupType::FULL, "41000000010000001", "41000000012000001");
    full_desc.backup_start_date =
        bakfile::MtfDate::parse_text("2026-11-25 01:00:00").expect("date");
    let mut full = Vec::new();
    write_backup_compressed(&mut full, &full_desc, pages(40, 3).iter(), &[0x11u8; 5000])
        .expect("write full");
    let mut log_desc = desc(BackupType::LOG, "41000000012000001", "41000000020000001");
    log_desc.backup_start_date = bakfile::MtfDate::parse_text("2026-11-25 02:00:00").expect("date");
    let log_bytes: Vec<u8> = (0..40_000u32).map(|i| (i * 7 / 5) as u8).collect();
    let mut log = Vec::new();
    write_backup_compressed(&mut log, &log_desc, Vec::<Vec<u8>>::new(), &log_bytes)
        .expect("write log");
    std::fs::write(dir.join("PACS_FULL.bak"), &full).expect("write");
    std::fs::write(dir.join("PACS_LOG.trn"), &log).expect("write");
    (full, log)
}

#[test]
fn bakfile_written_compressed_backup_with_padded_tail_checks_and_plans() {
    let t = tempfile::tempdir().expect("tempdir");
    let (full, log) = written_chain(t.path());
    for (name, bytes) in [("PACS_FULL.bak", &full), ("PACS_LOG.trn", &log)] {
        assert!(bytes.starts_with(b"MSSQLBAK"), "{name}");
        let (start, end) = padding(bytes);
        assert!(end - start < PAD_UNIT, "{name}");
        let r = bakfile::check(&t.path().join(name)).expect("check");
        assert!(r.ok, "{name}: {:?}", r.damage);
        assert!(r.file.sets[0].header.compressed, "{name}");
        assert_eq!(
            r.csums_verified,
            1 + u64::from(name.ends_with(".bak")),
            "{name}"
        );
    }
    let r = bakfile::check(&t.path().join("PACS_FULL.bak")).expect("check");
    assert_eq!(r.pages_verified, 40);
    let (descs, _) = bakfile::plan::describe_folder(t.path()).expect("describe");
    let p = bakfile::plan(&descs, &bakfile::PlanRequest::default());
    assert!(p.ok, "{:?}", p.problems);
    let files: Vec<String> = p
        .steps
        .iter()
        .flat_map(|s| s.files.iter())
        .map(|f| {
            Path::new(f)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string()
        })
        .collect();
    assert_eq!(files, ["PACS_FULL.bak", "PACS_LOG.trn"]);
}

/// Every cut from the start of the padding to the last byte: DAMAGED by inspect,
/// and by check (the library behind `inspect --check`) on a sample, through a
/// file on disk for a few.
fn every_cut_is_damaged(bytes: &[u8], start: usize, what: &str) {
    let t = tempfile::tempdir().expect("tempdir");
    let cuts = (start..bytes.len()).collect::<Vec<_>>();
    for &cut in &cuts {
        let f = bakfile::inspect_bytes(&bytes[..cut]).expect("inspect");
        assert!(
            !f.is_sound(),
            "{what}: cut at {cut} of {} passed",
            bytes.len()
        );
        if cut % 97 == 0 || cut == start || cut + 1 == bytes.len() {
            let r = bakfile::check_bytes(&bytes[..cut]).expect("check");
            assert!(!r.ok, "{what}: cut at {cut} passed check");
        }
    }
    for cut in [
        start + 1,
        bytes.len() - 600,
        bytes.len() - 512,
        bytes.len() - 1,
    ] {
        let path = t.path().join("cut.bak");
        std::fs::write(&path, &bytes[..cut]).expect("write");
        let r = bakfile::check(&path).expect("check");
        assert!(
            !r.ok && !r.damage.is_empty(),
            "{what}: cut at {cut} passed check"
        );
    }
}

#[test]
fn bakfile_written_compressed_backup_cut_in_padding_or_trailer_is_damaged() {
    let t = tempfile::tempdir().expect("tempdir");
    let (full, log) = written_chain(t.path());
    for (what, bytes) in [("full", &full), ("log", &log)] {
        let (start, _) = padding(bytes);
        every_cut_is_damaged(bytes, start, what);
        // A byte set inside the padding is damage too, named by its file offset.
        let mut d = bytes.clone();
        d[start + 1] = 0x40;
        let r = bakfile::check_bytes(&d).expect("check");
        assert!(!r.ok, "{what}");
        assert!(
            r.damage.iter().any(|x| x.what.contains("non-zero byte")),
            "{what}: {:?}",
            r.damage
        );
    }
}

/// A real compressed backup with its seal record (0x2C, to the next 512-byte
/// boundary) replaced by zeros to the next 4 KiB boundary, the trailer moved after
/// them: the layout of the files in issue 13, on real SQL Server bytes.
fn repadded(bytes: &[u8]) -> (Vec<u8>, usize) {
    let mut h = 0x1E0;
    let seal = loop {
        let size = usize::from(u16::from_le_bytes([bytes[h + 2], bytes[h + 3]]));
        h = match bytes[h] {
            b'S' => h + 512,
            0x21 => h + 28 + size,
            0x24 => h + 24 + size,
            0x2C => break h,
            other => panic!("record type {other:#x} at {h}"),
        };
    };
    let trailer = (seal / 512 + 1) * 512;
    assert_eq!(&bytes[trailer..trailer + 4], b"SFMB");
    let mut out = bytes[..seal].to_vec();
    out.resize((seal / PAD_UNIT + 1) * PAD_UNIT, 0);
    out.extend_from_slice(&bytes[trailer..]);
    (out, seal)
}

#[test]
fn bakfile_real_compressed_backups_with_a_padded_tail_read_as_before() {
    let Some(dir) =
        require_shared_baks("bakfile_real_compressed_backups_with_a_padded_tail_read_as_before")
    else {
        return;
    };
    for prefix in ["18", "19"] {
        let path = std::fs::read_dir(&dir)
            .expect("baks")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
            })
            .expect("file");
        let bytes = std::fs::read(&path).expect("read");
        let original = bakfile::check_bytes(&bytes).expect("check");
        assert!(original.ok, "{prefix}: {:?}", original.damage);
        let (padded, start) = repadded(&bytes);
        let r = bakfile::check_bytes(&padded).expect("check");
        assert!(r.ok, "{prefix}: {:?}", r.damage);
        assert_eq!(
            r.file.sets[0].header, original.file.sets[0].header,
            "{prefix}"
        );
        assert_eq!(
            (
                r.streams_checked,
                r.csums_verified,
                r.pages_verified,
                r.bytes_read
            ),
            (
                original.streams_checked,
                original.csums_verified,
                original.pages_verified,
                original.bytes_read
            ),
            "{prefix}"
        );
        let t = tempfile::tempdir().expect("tempdir");
        std::fs::write(t.path().join("padded.bak"), &padded).expect("write");
        let (descs, _) = bakfile::plan::describe_folder(t.path()).expect("describe");
        let p = bakfile::plan(&descs, &bakfile::PlanRequest::default());
        assert!(p.ok && p.steps.len() == 1, "{prefix}: {:?}", p.problems);
        every_cut_is_damaged(&padded, start, prefix);
    }
}

/// The fuzz smoke test's mutations, aimed at the padded tail of a written file:
/// never a panic or a hang, and a changed byte in the padding is always found.
#[test]
fn bakfile_padded_tail_mutations_give_a_verdict() {
    let t = tempfile::tempdir().expect("tempdir");
    let (full, _) = written_chain(t.path());
    let (start, end) = padding(&full);
    let tail = start - 64;
    let mut seed = 0x51_7cc1_b727_220au64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for i in 0..1500 {
        let mut d = full.clone();
        let mut in_padding = false;
        for _ in 0..(1 + rnd() % 4) {
            let span = (d.len() - tail) as u64;
            let at = tail + (rnd() % span) as usize;
            match rnd() % 4 {
                0 | 1 => {
                    d[at] ^= (rnd() % 255 + 1) as u8;
                    in_padding |= (start..end).contains(&at);
                }
                2 => d.truncate(at.max(tail)),
                _ => {
                    let junk: Vec<u8> = (0..rnd() % 600).map(|_| rnd() as u8).collect();
                    d.splice(at..at, junk);
                }
            }
        }
        let started = std::time::Instant::now();
        let r = bakfile::check_bytes(&d);
        assert!(started.elapsed().as_secs() < 5, "iteration {i}: too slow");
        if in_padding && d.len() == full.len() {
            assert!(
                !r.expect("check").ok,
                "iteration {i}: changed padding passed"
            );
        }
    }
}

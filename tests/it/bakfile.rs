//! Backup-file reader, checker, planner and writer against the real SQL Server
//! backups in ../shared/baks/ and damaged copies generated from them.

use std::path::{Path, PathBuf};

use pacsbak::bakfile::{self, BackupFile};
use serde_json::Value;

use crate::common::require_shared_baks;

fn expected(dir: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join("expected.json")).expect("expected.json");
    let v: Value = serde_json::from_str(&text).expect("json");
    v["backups"].as_array().expect("backups").clone()
}

fn lsn(v: Option<pacsbak::bakfile::Lsn>) -> Value {
    v.map_or(Value::Null, |l| Value::String(l.to_string()))
}

fn check_fields(file: &BackupFile, e: &Value) {
    let name = e["file"].as_str().unwrap_or("?");
    assert!(file.is_sound(), "{name}: {:?}", file.damage);
    assert_eq!(file.sets.len(), 1, "{name}");
    let s = &file.sets[0];
    let h = &s.header;
    let kind = s.kind.expect("type").letter().to_string();
    let got: Vec<(&str, Value)> = vec![
        ("size", file.size.into()),
        ("container", file.container.name().into()),
        ("database_name", h.database_name.clone().into()),
        ("server_name", h.server_name.clone().into()),
        ("backup_type", kind.into()),
        ("software_version", h.software_version().into()),
        ("database_version", h.database_version.into()),
        ("compatibility_level", h.compatibility_level.into()),
        ("has_backup_checksums", h.has_backup_checksums.into()),
        ("first_lsn", lsn(h.first_lsn)),
        ("last_lsn", lsn(h.last_lsn)),
        ("checkpoint_lsn", lsn(h.checkpoint_lsn)),
        ("database_backup_lsn", lsn(h.database_backup_lsn)),
        (
            "backup_start_date",
            h.backup_start_date.map(|d| d.to_string()).into(),
        ),
        (
            "database_creation_date",
            h.database_creation_date.map(|d| d.to_string()).into(),
        ),
        ("unicode_locale_id", h.unicode_locale_id.into()),
        ("backup_set_name", h.backup_name.clone().into()),
        ("user_name", h.user_name.clone().into()),
        ("machine_name", h.machine_name.clone().into()),
        (
            "files",
            s.files
                .iter()
                .map(|f| f.logical_name.clone())
                .collect::<Vec<_>>()
                .into(),
        ),
        (
            "physical_names",
            s.files
                .iter()
                .map(|f| f.physical_name.clone())
                .collect::<Vec<_>>()
                .into(),
        ),
    ];
    let keys: Vec<&str> = got.iter().map(|(k, _)| *k).collect();
    for k in e.as_object().expect("object").keys() {
        assert!(
            ["file", "sha256", "source"].contains(&k.as_str()) || keys.contains(&k.as_str()),
            "{name}: field {k} of expected.json is not compared"
        );
    }
    for (k, v) in got {
        assert_eq!(&e[k], &v, "{name}: {k}");
    }
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    expected(dir)
        .iter()
        .map(|e| dir.join(e["file"].as_str().expect("file")))
        .collect()
}

#[test]
fn bakfile_every_expected_field_is_reproduced() {
    let Some(dir) = require_shared_baks("bakfile_every_expected_field_is_reproduced") else {
        return;
    };
    let list = expected(&dir);
    assert_eq!(list.len(), 14);
    for e in &list {
        let path = dir.join(e["file"].as_str().expect("file"));
        let file = bakfile::inspect(&path).expect("inspect");
        check_fields(&file, e);
    }
    let _ = all_files(&dir);
}

fn baks(test: &str) -> Option<PathBuf> {
    require_shared_baks(test)
}

fn read(dir: &Path, prefix: &str) -> (PathBuf, Vec<u8>) {
    let name = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .find(|n| n.starts_with(prefix))
        .expect("file");
    let p = dir.join(name);
    let b = std::fs::read(&p).expect("read");
    (p, b)
}

#[test]
fn bakfile_every_checksum_of_the_real_files_verifies() {
    let Some(dir) = baks("bakfile_every_checksum_of_the_real_files_verifies") else {
        return;
    };
    for path in all_files(&dir) {
        let r = bakfile::check(&path).expect("check");
        assert!(r.ok, "{}: {:?}", path.display(), r.damage);
    }
    let counts = [("03", 2, 159), ("04", 2, 28), ("05", 1, 0), ("17", 0, 422)];
    for (prefix, csums, pages) in counts {
        let (p, _) = read(&dir, prefix);
        let r = bakfile::check(&p).expect("check");
        assert_eq!(
            (r.csums_verified, r.pages_verified),
            (csums, pages),
            "{prefix}"
        );
    }
}

#[test]
fn bakfile_a_flipped_byte_in_any_page_or_log_stream_is_found_and_named() {
    let Some(dir) = baks("bakfile_a_flipped_byte_in_any_page_or_log_stream_is_found_and_named")
    else {
        return;
    };
    let mut flips = 0;
    for prefix in ["03", "04", "05"] {
        let (_, bytes) = read(&dir, prefix);
        let file = bakfile::inspect_bytes(&bytes).expect("inspect");
        for s in &file.sets[0].streams {
            let payload = s.data_offset + 2;
            let mut k = 0u64;
            let mut at = s.data_offset; // the pad first, then one byte per page
            while at < s.data_offset + s.length {
                let mut damaged = bytes.clone();
                damaged[at as usize] ^= 0x5a;
                let r = bakfile::check_bytes(&damaged).expect("check");
                assert!(!r.ok, "{prefix}: flip at {at} not found");
                let named = r
                    .damage
                    .iter()
                    .any(|d| d.stream.as_deref().is_some_and(|n| n.starts_with(&s.kind)));
                assert!(
                    named,
                    "{prefix}: flip at {at} not named by stream: {:?}",
                    r.damage
                );
                let page_start = at.saturating_sub(payload) / 8192 * 8192 + payload;
                let page = &bytes[page_start as usize..];
                if s.kind == "MQDA" && at >= payload && bakfile::checksum::is_page(page) {
                    let flags = u16::from_le_bytes([
                        bytes[page_start as usize + 4],
                        bytes[page_start as usize + 5],
                    ]);
                    if flags & 0x200 != 0 {
                        assert!(
                            r.damage
                                .iter()
                                .any(|d| d.page_id.is_some() && d.offset == Some(page_start)),
                            "{prefix}: page at {page_start} not named: {:?}",
                            r.damage
                        );
                    }
                }
                flips += 1;
                at = payload + k * 8192 + 0x60 + (k * 977) % 8000;
                k += 1;
            }
        }
    }
    assert!(flips > 200, "{flips}");
}

#[test]
fn bakfile_media_password_is_detected() {
    let Some(dir) = baks("bakfile_media_password_is_detected") else {
        return;
    };
    for path in all_files(&dir) {
        let f = bakfile::inspect(&path).expect("inspect");
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        assert_eq!(f.media.media_password, name.starts_with("08"), "{name}");
    }
}

/// A folder holding links to (or, off Unix, temporary copies of) the named files.
fn folder_of(files: &[PathBuf]) -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    for f in files {
        let to = t.path().join(f.file_name().expect("name"));
        #[cfg(unix)]
        std::os::unix::fs::symlink(f, &to).expect("symlink");
        #[cfg(not(unix))]
        std::fs::copy(f, &to).expect("copy");
    }
    t
}

fn plan_names(
    dir: &Path,
    database: Option<&str>,
    at: Option<&str>,
) -> (Vec<String>, bakfile::RestorePlan) {
    let (descs, _) = bakfile::plan::describe_folder(dir).expect("describe");
    let req = bakfile::PlanRequest {
        database: database.map(str::to_string),
        at: at.map(|a| pacsbak::bakfile::MtfDate::parse_text(a).expect("at")),
    };
    let p = bakfile::plan(&descs, &req);
    let names = p
        .steps
        .iter()
        .flat_map(|s| s.files.iter())
        .map(|f| {
            Path::new(f)
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()[..2]
                .to_string()
        })
        .collect();
    (names, p)
}

fn pick(dir: &Path, prefixes: &[&str]) -> Vec<PathBuf> {
    prefixes.iter().map(|p| read(dir, p).0).collect()
}

#[test]
fn bakfile_ft1_plans_as_full_diff_log_and_skips_the_empty_log() {
    let Some(dir) = baks("bakfile_ft1_plans_as_full_diff_log_and_skips_the_empty_log") else {
        return;
    };
    let ft1 = folder_of(&pick(&dir, &["03", "04", "05", "06"]));
    let (names, p) = plan_names(ft1.path(), None, None);
    assert_eq!(names, ["03", "04", "05"]);
    assert!(p.ok, "{:?}", p.problems);
    assert!(p
        .skipped
        .iter()
        .any(|s| s.source.contains("06_") && s.reason.contains("no log records")));
    // The whole folder, one database chosen: the same plan, the others named.
    let (names, p) = plan_names(&dir, Some("ft1"), None);
    assert_eq!(names, ["03", "04", "05"]);
    assert!(p
        .skipped
        .iter()
        .any(|s| s.reason.contains("another database: Northwind")));
    let (_, p) = plan_names(&dir, None, None);
    assert!(!p.ok && p.problems[0].contains("several databases"));
    // Point in time inside the log: STOPAT on it.
    let (names, p) = plan_names(ft1.path(), None, Some("2017-05-18 04:18:25"));
    assert_eq!(names, ["03", "04", "05"]);
    assert_eq!(
        p.steps[2].stop_at.map(|d| d.to_string()).as_deref(),
        Some("2017-05-18 04:18:25")
    );
    // Before the differential: full and log only.
    let (names, _) = plan_names(ft1.path(), None, Some("2017-05-18 04:18:00"));
    assert_eq!(names, ["03", "05"]);
}

#[test]
fn bakfile_doublediff_plans_as_full_then_newest_diff() {
    let Some(dir) = baks("bakfile_doublediff_plans_as_full_then_newest_diff") else {
        return;
    };
    let dd = folder_of(&pick(&dir, &["x3", "x4", "x5"]));
    let (names, p) = plan_names(dd.path(), None, None);
    assert_eq!(names, ["x3", "x5"]);
    assert!(p.ok);
}

#[test]
fn bakfile_broken_chains_are_reported_by_name() {
    let Some(dir) = baks("bakfile_broken_chains_are_reported_by_name") else {
        return;
    };
    // Log 05 missing: 06 cannot follow the differential.
    let gap = folder_of(&pick(&dir, &["03", "04", "06"]));
    let (names, p) = plan_names(gap.path(), None, None);
    assert_eq!(names, ["03", "04"]);
    assert!(
        !p.ok
            && p.problems
                .iter()
                .any(|x| x.contains("log chain broken") && x.contains("06_")),
        "{:?}",
        p.problems
    );
    // No full: nothing to start from.
    let nofull = folder_of(&pick(&dir, &["04", "05"]));
    let (_, p) = plan_names(nofull.path(), None, None);
    assert!(!p.ok && p.problems[0].contains("no complete full backup"));
    // A differential of another full.
    let foreign = folder_of(&pick(&dir, &["07"]));
    std::fs::copy(read(&dir, "04").0, foreign.path().join("foreign.bak")).expect("copy");
    let (_, p) = plan_names(foreign.path(), Some("ft1"), None);
    assert!(p.skipped.iter().any(|s| s.source.contains("foreign.bak") && s.reason.contains("base that is not here")), "{:?}", p.skipped);
}

/// Walks a file's block offsets through the public walker.
fn block_offsets(bytes: &[u8]) -> Vec<u64> {
    let mut src = bytes;
    let mut w = bakfile::mtf::Walker::new(&mut src, 0);
    let mut out = Vec::new();
    while let Ok(Some(b)) = w.next_block() {
        out.push(b.offset);
    }
    out
}

fn must_not_pass(bytes: &[u8], what: &str) {
    let started = std::time::Instant::now();
    let inspected = bakfile::inspect_bytes(bytes);
    let checked = bakfile::check_bytes(bytes);
    assert!(started.elapsed().as_secs() < 10, "{what}: too slow");
    if let Ok(f) = inspected {
        let r = checked.expect("check after inspect");
        assert!(!r.ok, "{what}: damaged input passed");
        assert!(!f.is_sound() || !r.damage.is_empty(), "{what}");
    }
}

#[test]
fn bakfile_damaged_inputs_give_a_verdict_never_a_panic() {
    let Some(dir) = baks("bakfile_damaged_inputs_give_a_verdict_never_a_panic") else {
        return;
    };
    for prefix in ["03", "05", "06", "18", "19"] {
        let (_, bytes) = read(&dir, prefix);
        let blocks = if bytes.starts_with(b"TAPE") {
            block_offsets(&bytes)
        } else {
            vec![]
        };
        // A flipped byte in every block header.
        for &b in &blocks {
            for at in [0u64, 8, 30, 50] {
                let mut d = bytes.clone();
                d[(b + at) as usize] ^= 0x01;
                must_not_pass(&d, &format!("{prefix}: flip in block header at {}", b + at));
            }
        }
        // A zero-filled 512-byte block at every block offset.
        for &b in &blocks {
            let mut d = bytes.clone();
            d[b as usize..b as usize + 512].fill(0);
            must_not_pass(&d, &format!("{prefix}: zeroed block at {b}"));
        }
        // Truncated at many offsets before the end of the last set.
        let eset = if bytes.starts_with(b"TAPE") {
            let f = bakfile::inspect_bytes(&bytes).expect("inspect");
            let last = blocks
                .iter()
                .rev()
                .find(|&&o| &bytes[o as usize..o as usize + 4] == b"ESET")
                .copied();
            assert!(f.is_sound());
            last.unwrap_or(bytes.len() as u64) as usize
        } else {
            // The compressed sets end with the ESET record 1536 bytes before the end.
            bytes.len() - 1536
        };
        let step = (eset / 150).max(1);
        for cut in (0..eset)
            .step_by(step)
            .chain([1, 3, 51, 52, 53, 1023, 1024, 1025, eset - 1])
        {
            must_not_pass(&bytes[..cut], &format!("{prefix}: cut at {cut}"));
        }
    }
    // Garbage behind a real prefix, and empty input.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for prefix in [
        &b"TAPE"[..],
        b"MSSQLBAK",
        b"MSSQLBAK\x02\x00\x00\x00\x03\x00\x00\x00",
    ] {
        for len in [0usize, 10, 52, 100, 600, 4096, 70_000] {
            let mut d = prefix.to_vec();
            for _ in 0..len {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                d.push(seed as u8);
            }
            must_not_pass(
                &d,
                &format!(
                    "garbage after {:?}, {len} bytes",
                    String::from_utf8_lossy(prefix)
                ),
            );
        }
    }
    assert!(bakfile::inspect_bytes(&[]).is_err());
    let empty = tempfile::NamedTempFile::new().expect("temp");
    let e = bakfile::inspect(empty.path()).expect_err("0-byte file");
    assert!(e.message().contains("0 bytes"), "{e}");
}

/// Rewrites a real uncompressed backup through the writer: same description, same
/// pages, same log bytes.
fn rewrite(bytes: &[u8]) -> (bakfile::BackupFile, Vec<u8>) {
    let f = bakfile::inspect_bytes(bytes).expect("inspect");
    let set = &f.sets[0];
    let desc = bakfile::SetDescription::from_set(set, &f.media);
    let payload = |kind: &str| -> Vec<u8> {
        set.streams
            .iter()
            .filter(|s| s.kind == kind)
            .flat_map(|s| {
                bytes[(s.data_offset + 2) as usize..(s.data_offset + s.length) as usize].to_vec()
            })
            .collect()
    };
    let data = payload("MQDA");
    let log = payload("MQTL");
    let pages: Vec<&[u8]> = data.chunks_exact(8192).collect();
    let mut out = Vec::new();
    bakfile::write_backup(&mut out, &desc, pages, &log).expect("write");
    (f, out)
}

#[test]
fn bakfile_written_sets_read_back_identically_and_pass_check() {
    let Some(dir) = baks("bakfile_written_sets_read_back_identically_and_pass_check") else {
        return;
    };
    for prefix in [
        "01", "03", "04", "05", "06", "07", "08", "16", "17", "x3", "x4", "x5",
    ] {
        let (_, bytes) = read(&dir, prefix);
        let (orig, written) = rewrite(&bytes);
        let back = bakfile::inspect_bytes(&written).expect("inspect written");
        assert!(back.is_sound(), "{prefix}: {:?}", back.damage);
        assert_eq!(back.sets[0].header, orig.sets[0].header, "{prefix}");
        assert_eq!(back.sets[0].files, orig.sets[0].files, "{prefix}");
        let r = bakfile::check_bytes(&written).expect("check");
        let o = bakfile::check_bytes(&bytes).expect("check");
        assert!(r.ok, "{prefix}: {:?}", r.damage);
        assert_eq!(
            (r.csums_verified, r.pages_verified),
            (o.csums_verified, o.pages_verified),
            "{prefix}"
        );
    }
}

#[test]
fn bakfile_writer_fills_page_checksums_and_flips_are_found() {
    let mut desc = bakfile::SetDescription::new("PACS", bakfile::BackupType::FULL);
    desc.first_lsn = "41000000010000001".parse().expect("lsn");
    desc.last_lsn = "41000000012000001".parse().expect("lsn");
    desc.checkpoint_lsn = desc.first_lsn;
    let pages: Vec<Vec<u8>> = (0..64u32)
        .map(|i| {
            let mut p = vec![0u8; 8192];
            p[0] = 1;
            p[1] = 1;
            p[4..6].copy_from_slice(&0x0200u16.to_le_bytes());
            p[0x20..0x24].copy_from_slice(&i.to_le_bytes());
            p[0x24..0x26].copy_from_slice(&1u16.to_le_bytes());
            for (j, b) in p[0x60..].iter_mut().enumerate() {
                *b = (j as u32).wrapping_mul(i + 7) as u8;
            }
            p
        })
        .collect();
    let log = vec![0xabu8; 3000];
    let mut out = Vec::new();
    bakfile::write_backup(&mut out, &desc, pages.iter(), &log).expect("write");
    let r = bakfile::check_bytes(&out).expect("check");
    assert!(r.ok, "{:?}", r.damage);
    assert_eq!((r.csums_verified, r.pages_verified), (2, 64));
    let h = &r.file.sets[0].header;
    assert_eq!(
        (
            h.database_name.as_str(),
            h.backup_type,
            h.has_backup_checksums
        ),
        ("PACS", 1, true)
    );
    let streams = r.file.sets[0].streams.clone();
    let page_at = streams[0].data_offset + 2 + 10 * 8192 + 500;
    let mut bad = out.clone();
    bad[page_at as usize] ^= 1;
    let r = bakfile::check_bytes(&bad).expect("check");
    assert!(
        r.damage
            .iter()
            .any(|d| d.page_id.as_deref() == Some("1:10")),
        "{:?}",
        r.damage
    );
}

#[test]
fn bakfile_chains_of_written_files_plan_as_the_real_ones() {
    let Some(dir) = baks("bakfile_chains_of_written_files_plan_as_the_real_ones") else {
        return;
    };
    for (set, want) in [
        (&["03", "04", "05", "06"][..], &["03", "04", "05"][..]),
        (&["x3", "x4", "x5"], &["x3", "x5"]),
    ] {
        let t = tempfile::tempdir().expect("tempdir");
        for prefix in set {
            let (p, bytes) = read(&dir, prefix);
            let (_, written) = rewrite(&bytes);
            let name = format!(
                "{}.written.bak",
                p.file_name().unwrap_or_default().to_string_lossy()
            );
            std::fs::write(t.path().join(name), written).expect("write");
        }
        let (names, p) = plan_names(t.path(), None, None);
        assert_eq!(names, want);
        assert!(p.ok, "{:?}", p.problems);
    }
}

#[test]
fn bakfile_cli_exit_codes() {
    let Some(dir) = baks("bakfile_cli_exit_codes") else {
        return;
    };
    let exe = env!("CARGO_BIN_EXE_pacsbak");
    let run = |args: &[&str]| {
        std::process::Command::new(exe)
            .args(args)
            .output()
            .expect("run pacsbak")
    };
    let (f03, bytes) = read(&dir, "03");
    let o = run(&["inspect", "--check", f03.to_str().expect("utf8")]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = run(&["inspect", "--json", f03.to_str().expect("utf8")]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v[0]["sets"][0]["header"]["DatabaseName"], "ft1");
    assert_eq!(v[0]["sets"][0]["header"]["FirstLSN"], "25000000011600037");
    let t = tempfile::tempdir().expect("tempdir");
    let bad = t.path().join("bad.bak");
    let mut b = bytes.clone();
    b[0x2000] ^= 0xff;
    std::fs::write(&bad, b).expect("write");
    let o = run(&["inspect", "--check", bad.to_str().expect("utf8")]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("DAMAGED"));
    let o = run(&[
        "inspect",
        t.path().join("missing.bak").to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&[
        "restore",
        "db",
        "plan",
        "--from-folder",
        dir.to_str().expect("utf8"),
        "--database",
        "doublediff",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let o = run(&[
        "restore",
        "db",
        "plan",
        "--from-folder",
        dir.to_str().expect("utf8"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let o = run(&[
        "restore",
        "db",
        "plan",
        "--from-folder",
        dir.to_str().expect("utf8"),
        "--at",
        "bogus",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

/// Stable-toolchain stand-in for cargo-fuzz: mutates the real files at random
/// (flipped bytes, cut ends, spliced garbage, overwritten size fields) and runs
/// inspect and check on each. Ignored by default; run with
/// `PACSBAK_FUZZ_ITERS=200000 cargo test --release --test it bakfile_fuzz_smoke -- --ignored`.
#[test]
#[ignore]
fn bakfile_fuzz_smoke() {
    let Some(dir) = baks("bakfile_fuzz_smoke") else {
        return;
    };
    let iters: u64 = std::env::var("PACSBAK_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    let files: Vec<Vec<u8>> = ["03", "04", "05", "06", "18", "19"]
        .iter()
        .map(|p| read(&dir, p).1)
        .collect();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let started = std::time::Instant::now();
    let mut damaged = 0u64;
    for i in 0..iters {
        let base = &files[(rnd() % files.len() as u64) as usize];
        let mut d = base.clone();
        for _ in 0..(1 + rnd() % 8) {
            let len = d.len() as u64;
            match rnd() % 5 {
                0 | 1 => {
                    let at = (rnd() % len) as usize;
                    d[at] ^= (rnd() % 255 + 1) as u8;
                }
                2 => {
                    // Overwrite a likely size field near a block or record start.
                    let at = ((rnd() % len) & !511) as usize + (rnd() % 64) as usize;
                    let v = rnd().to_le_bytes();
                    let n = (1 + rnd() % 8) as usize;
                    if at + n <= d.len() {
                        d[at..at + n].copy_from_slice(&v[..n]);
                    }
                }
                3 => {
                    let cut = (rnd() % len) as usize;
                    d.truncate(cut.max(1));
                }
                _ => {
                    let at = (rnd() % d.len() as u64) as usize;
                    let n = (rnd() % 2048) as usize;
                    let junk: Vec<u8> = (0..n).map(|_| rnd() as u8).collect();
                    d.splice(at..at, junk);
                }
            }
        }
        let t = std::time::Instant::now();
        let ok = bakfile::check_bytes(&d).map(|r| r.ok).unwrap_or(false);
        assert!(t.elapsed().as_secs() < 5, "iteration {i}: too slow");
        if !ok {
            damaged += 1;
        }
    }
    println!(
        "fuzz smoke: {iters} iterations in {:.1} s, {damaged} judged damaged",
        started.elapsed().as_secs_f64()
    );
}

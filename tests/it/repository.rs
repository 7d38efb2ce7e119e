//! The offsite repository: round trips, damage found and named, refusals, crashes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pacsbak::repository::{
    BackupOptions, Entry, EntryKind, ReadBack, ReadData, Repository, RestoreOptions, VerifyOptions,
};
use pacsbak::storage::{LocalFolder, Storage};
use pacsbak::ErrorKind;

use crate::common::{pseudo_random, tree_contents, TestConfig, PASSPHRASE};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The storage a `service = "fs"` target opens (packs written with direct I/O).
fn local(root: &Path) -> Arc<dyn Storage> {
    Arc::new(LocalFolder::create("local", root).unwrap())
}

/// A new repository in the test's local-folder target.
fn init_repo(rt: &tokio::runtime::Runtime, t: &TestConfig) -> Repository {
    rt.block_on(Repository::init(local(&t.repo()), PASSPHRASE))
        .unwrap()
}

/// `verify --read-data` of the whole repository.
fn read_all(rt: &tokio::runtime::Runtime, repo: &Repository) -> pacsbak::repository::VerifyReport {
    rt.block_on(repo.verify(&VerifyOptions {
        read_data: ReadData::All,
    }))
    .unwrap()
}

/// Writes a random tree: nested folders, Chinese names, empty files, links.
fn random_tree(dir: &Path, seed: u64, max_file: usize) {
    let names = [
        "影像",
        "报告 2026",
        "PACS.exe",
        "config.ini",
        "a",
        "Ω-dir",
        "x y",
    ];
    let mut s = seed;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    std::fs::create_dir_all(dir).unwrap();
    let mut folders = vec![dir.to_path_buf()];
    for i in 0..(8 + next() % 12) {
        let parent = folders[(next() % folders.len() as u64) as usize].clone();
        let name = format!("{}-{i}", names[(next() % names.len() as u64) as usize]);
        match next() % 6 {
            0 => {
                let d = parent.join(&name);
                std::fs::create_dir_all(&d).unwrap();
                folders.push(d);
            }
            1 => std::fs::write(parent.join(&name), b"").unwrap(),
            #[cfg(unix)]
            2 => {
                std::os::unix::fs::symlink(format!("../{name}-target"), parent.join(&name)).unwrap()
            }
            _ => {
                let size = match next() % 4 {
                    0 => (next() % 100) as usize,
                    1 => (next() % 200_000) as usize,
                    _ => (next() as usize) % max_file.max(1),
                };
                std::fs::write(parent.join(&name), pseudo_random(size, next())).unwrap();
            }
        }
    }
}

#[test]
fn random_trees_and_large_files_round_trip_byte_identical() {
    let rt = rt();
    let t = TestConfig::new();
    let repo = init_repo(&rt, &t);
    for seed in 1..=4u64 {
        let src = t.path(&format!("src{seed}"));
        random_tree(&src, seed * 7919, 3 * 1024 * 1024);
        let report = rt
            .block_on(repo.backup(std::slice::from_ref(&src), &BackupOptions::default()))
            .unwrap();
        assert!(
            report.summary.errors.is_empty(),
            "{:?}",
            report.summary.errors
        );
        let snap = rt
            .block_on(repo.find_snapshot(&report.snapshot_id.to_hex()))
            .unwrap();
        let out = t.path(&format!("out{seed}"));
        let r = rt
            .block_on(repo.restore(&snap, &out, &RestoreOptions::default()))
            .unwrap();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        let name = src.file_name().unwrap();
        assert_eq!(
            tree_contents(&src),
            tree_contents(&out.join(name)),
            "seed {seed}"
        );
    }
    // Single large files of awkward sizes, up to 64 MiB.
    let sizes = [
        0usize,
        1,
        8191,
        131_072,
        131_073,
        5_000_001,
        64 * 1024 * 1024,
    ];
    for (i, size) in sizes.iter().enumerate() {
        let f = t.path(&format!("big{i}.bak"));
        std::fs::write(&f, pseudo_random(*size, i as u64 + 11)).unwrap();
        let report = rt
            .block_on(repo.backup(std::slice::from_ref(&f), &BackupOptions::default()))
            .unwrap();
        let snap = rt
            .block_on(repo.find_snapshot(&report.snapshot_id.to_hex()))
            .unwrap();
        let entry = &snap.snapshot.entries[0];
        assert_eq!(entry.size, *size as u64);
        assert_eq!(
            entry.blake3.as_deref(),
            Some(blake3::hash(&std::fs::read(&f).unwrap()).to_hex().as_str())
        );
        let out = t.path(&format!("bigout{i}"));
        rt.block_on(repo.restore(&snap, &out, &RestoreOptions::default()))
            .unwrap();
        assert!(
            std::fs::read(out.join(format!("big{i}.bak"))).unwrap() == std::fs::read(&f).unwrap()
        );
    }
    let v = read_all(&rt, &repo);
    assert!(v.ok(), "{v:?}");
    assert_eq!(v.packs_read, v.packs);
}

/// A large file backed up again as the next version of its series is cut along
/// the cuts the last version left in the local cut cache: the snapshot is the same
/// as plain cutting gives (same chunk ids), most chunks are not cut again, and a
/// damaged cache only costs the speed.
#[test]
fn a_later_version_is_cut_along_the_previous_one_with_the_same_result() {
    let rt = rt();
    let t = TestConfig::new();
    let repo = init_repo(&rt, &t);
    let series = |name: &str| BackupOptions {
        series: Some(format!("test {name} {}", t.path("").display())),
        ..BackupOptions::default()
    };
    let f = t.path("PACS_FULL_1.bak");
    let mut data = pseudo_random(40 * 1024 * 1024, 3);
    std::fs::write(&f, &data).unwrap();
    let first = rt
        .block_on(repo.backup(std::slice::from_ref(&f), &series("db")))
        .unwrap();
    assert_eq!(first.predicted_chunks, 0, "nothing to follow yet");

    // Next week: a new name, pages changed, an extent inserted, growth.
    for page in [10usize, 900, 2500] {
        data[page * 8192..(page + 1) * 8192].copy_from_slice(&pseudo_random(8192, page as u64));
    }
    data.splice(20_000_000..20_000_000, pseudo_random(65_536, 4));
    data.extend_from_slice(&pseudo_random(1024 * 1024, 5));
    let g = t.path("PACS_FULL_2.bak");
    std::fs::write(&g, &data).unwrap();
    std::fs::remove_file(&f).unwrap();
    let followed = rt
        .block_on(repo.backup(std::slice::from_ref(&g), &series("db")))
        .unwrap();
    let plain = rt
        .block_on(repo.backup(std::slice::from_ref(&g), &BackupOptions::default()))
        .unwrap();
    assert_eq!(plain.predicted_chunks, 0);
    let chunks = (followed.summary.new_chunks, plain.summary.new_chunks);
    assert!(
        followed.predicted_chunks > 1000,
        "most of 40 MiB (about 1,300 chunks) is predicted: {}",
        followed.predicted_chunks
    );
    assert_eq!(
        chunks.1, 0,
        "plain cutting found every chunk already stored"
    );
    let entries = |id: &pacsbak::repository::Id| {
        let s = rt.block_on(repo.find_snapshot(&id.to_hex())).unwrap();
        s.snapshot
            .entries
            .into_iter()
            .map(|e| (e.path, e.size, e.blake3, e.chunks, e.chunk_lists))
            .collect::<Vec<_>>()
    };
    assert_eq!(entries(&followed.snapshot_id), entries(&plain.snapshot_id));

    // A damaged cache: the next backup cuts everything, with the same result.
    let dir = pacsbak::repository::cut_cache_dir()
        .unwrap()
        .join("cuts")
        .join(repo.config().id.to_hex());
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one series, one file: {files:?}");
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&files[0], bytes).unwrap();
    let after_damage = rt
        .block_on(repo.backup(std::slice::from_ref(&g), &series("db")))
        .unwrap();
    assert_eq!(after_damage.predicted_chunks, 0);
    assert_eq!(
        entries(&after_damage.snapshot_id),
        entries(&plain.snapshot_id)
    );
    let again = rt
        .block_on(repo.backup(std::slice::from_ref(&g), &series("db")))
        .unwrap();
    assert!(
        again.predicted_chunks > 1000,
        "the damaged cache was replaced"
    );

    let v = read_all(&rt, &repo);
    assert!(v.ok(), "{v:?}");
}

/// A native backup found unusable while it is being stored (RESTORE VERIFYONLY
/// failed) cancels the ingest: it stops with a refusal, writes no snapshot, and the
/// repository stays sound for the next backup.
#[test]
fn a_cancelled_ingest_stops_without_a_snapshot() {
    let rt = rt();
    let t = TestConfig::new();
    let repo = init_repo(&rt, &t);
    let f = t.path("PACS_FULL.bak");
    std::fs::write(&f, pseudo_random(20 * 1024 * 1024, 8)).unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    cancel.cancel();
    let opts = BackupOptions {
        cancel: Some(cancel),
        ..BackupOptions::default()
    };
    let err = rt
        .block_on(repo.ingest(std::slice::from_ref(&f), &opts))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    assert!(err.to_string().contains("unusable"), "{err}");
    assert!(rt.block_on(repo.snapshots()).unwrap().is_empty());
    let later = rt
        .block_on(repo.backup(std::slice::from_ref(&f), &BackupOptions::default()))
        .unwrap();
    assert_eq!(later.summary.files, 1);
    let v = read_all(&rt, &repo);
    assert!(v.ok(), "{v:?}");
}

#[cfg(unix)]
#[test]
fn permissions_times_and_links_survive() {
    use std::os::unix::fs::PermissionsExt;
    let rt = rt();
    let t = TestConfig::new();
    let src = t.path("prog");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::write(src.join("bin/start.sh"), b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        src.join("bin/start.sh"),
        std::fs::Permissions::from_mode(0o750),
    )
    .unwrap();
    let mtime = filetime::FileTime::from_unix_time(1_600_000_000, 123_456_789);
    filetime::set_file_mtime(src.join("bin/start.sh"), mtime).unwrap();
    std::os::unix::fs::symlink("bin/start.sh", src.join("start")).unwrap();
    let repo = init_repo(&rt, &t);
    let rep = rt
        .block_on(repo.backup(std::slice::from_ref(&src), &BackupOptions::default()))
        .unwrap();
    let snap = rt
        .block_on(repo.find_snapshot(&rep.snapshot_id.to_hex()))
        .unwrap();
    let out = t.path("out");
    rt.block_on(repo.restore(&snap, &out, &RestoreOptions::default()))
        .unwrap();
    let m = std::fs::metadata(out.join("prog/bin/start.sh")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o750);
    assert_eq!(filetime::FileTime::from_last_modification_time(&m), mtime);
    assert_eq!(
        std::fs::read_link(out.join("prog/start")).unwrap(),
        PathBuf::from("bin/start.sh")
    );
}

#[test]
fn restore_refuses_to_overwrite_unless_told() {
    let rt = rt();
    let t = TestConfig::new();
    let src = t.path("s");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"new").unwrap();
    let repo = init_repo(&rt, &t);
    let rep = rt
        .block_on(repo.backup(std::slice::from_ref(&src), &BackupOptions::default()))
        .unwrap();
    let snap = rt
        .block_on(repo.find_snapshot(&rep.snapshot_id.short()))
        .unwrap();
    let out = t.path("out");
    std::fs::create_dir_all(out.join("s")).unwrap();
    std::fs::write(out.join("s/f"), b"precious").unwrap();
    let err = rt
        .block_on(repo.restore(&snap, &out, &RestoreOptions::default()))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused);
    assert_eq!(std::fs::read(out.join("s/f")).unwrap(), b"precious");
    let opts = RestoreOptions {
        overwrite: true,
        ..Default::default()
    };
    rt.block_on(repo.restore(&snap, &out, &opts)).unwrap();
    assert_eq!(std::fs::read(out.join("s/f")).unwrap(), b"new");
    // --path restores one file only.
    let only = t.path("only");
    let opts = RestoreOptions {
        path: Some("s\\f".into()),
        ..Default::default()
    };
    let r = rt.block_on(repo.restore(&snap, &only, &opts)).unwrap();
    assert_eq!(r.files, 1);
}

#[test]
fn hostile_manifest_paths_cannot_write_outside_the_target() {
    let rt = rt();
    let t = TestConfig::new();
    let src = t.path("s");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"payload").unwrap();
    let repo = init_repo(&rt, &t);
    let rep = rt
        .block_on(repo.backup(std::slice::from_ref(&src), &BackupOptions::default()))
        .unwrap();
    let good = rt
        .block_on(repo.find_snapshot(&rep.snapshot_id.to_hex()))
        .unwrap();
    let file: Entry = good
        .snapshot
        .entries
        .iter()
        .find(|e| e.kind == EntryKind::File)
        .unwrap()
        .clone();
    let escape_dir = t.path("escaped");
    for bad in [
        "../escaped/f".to_string(),
        "s/../../escaped/f".to_string(),
        format!("{}/f", escape_dir.display()),
        "/tmp/pacsbak-escape-test".to_string(),
    ] {
        let mut forged = good.snapshot.clone();
        let mut e = file.clone();
        e.path = bad.clone();
        forged.entries = vec![e];
        let id = rt.block_on(repo.save_snapshot(&forged)).unwrap();
        let snap = rt.block_on(repo.find_snapshot(&id.to_hex())).unwrap();
        let out = t.path("out");
        let err = rt
            .block_on(repo.restore(&snap, &out, &RestoreOptions::default()))
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Refused, "{bad}: {err}");
    }
    assert!(!escape_dir.exists());
    assert!(!Path::new("/tmp/pacsbak-escape-test").exists());
}

/// Flips a byte in, truncates, or deletes one pack; verify must name it and the file.
#[test]
fn damaged_truncated_and_missing_packs_are_found_and_named() {
    let rt = rt();
    for damage in ["flip", "truncate", "delete"] {
        let t = TestConfig::new();
        let repo = init_repo(&rt, &t);
        let src = t.path("db");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("PACS_full.bak"), pseudo_random(3 * 1024 * 1024, 5)).unwrap();
        let rep = rt
            .block_on(repo.backup(std::slice::from_ref(&src), &BackupOptions::default()))
            .unwrap();
        let clean = read_all(&rt, &repo);
        assert!(clean.ok());
        let pack = crate::common::files_under(&t.repo().join("data"))[0].clone();
        match damage {
            "flip" => {
                let mut b = std::fs::read(&pack).unwrap();
                let i = b.len() / 3;
                b[i] ^= 0x40;
                std::fs::write(&pack, b).unwrap();
            }
            "truncate" => {
                let b = std::fs::read(&pack).unwrap();
                std::fs::write(&pack, &b[..b.len() - 100]).unwrap();
            }
            _ => std::fs::remove_file(&pack).unwrap(),
        }
        let v = read_all(&rt, &repo);
        assert!(!v.ok(), "{damage} not detected");
        assert_eq!(v.damaged_packs.len(), 1, "{damage}: {v:?}");
        let d = &v.damaged_packs[0];
        assert!(
            pack.to_string_lossy().ends_with(&d.pack),
            "{damage}: wrong pack named"
        );
        assert_eq!(d.snapshots, vec![rep.snapshot_id.short()], "{damage}");
        assert!(
            d.files.iter().any(|f| f.ends_with("db/PACS_full.bak")),
            "{damage}: {:?}",
            d.files
        );
        // The CLI says so too, with a failing exit code.
        let (code, out, _) = t.run(&["verify", "--read-data"]);
        assert_eq!(code, 1, "{out}");
        assert!(
            out.contains("DAMAGED") && out.contains("PACS_full.bak"),
            "{out}"
        );
        // A restore never produces wrong bytes: it fails, or (when only the pack's
        // trailer was cut and every group is intact) gives back the proven file.
        let snap = rt.block_on(repo.find_snapshot("latest")).unwrap();
        let out = t.path("out");
        let r = rt.block_on(repo.restore(&snap, &out, &RestoreOptions::default()));
        let restored = out.join("db/PACS_full.bak");
        if damage != "truncate" {
            assert!(
                r.is_err() || !r.unwrap().errors.is_empty(),
                "{damage}: restore reported success"
            );
            assert!(
                !restored.exists(),
                "{damage}: a damaged file was left under its real name"
            );
        } else if restored.exists() {
            assert!(
                std::fs::read(&restored).unwrap()
                    == std::fs::read(src.join("PACS_full.bak")).unwrap()
            );
        }
    }
}

/// The proof `backup db` runs after each backup reads back only the packs that backup
/// added and checks the others by listing: a nightly cost, not a whole-repository one.
/// A truncated or missing older pack is still caught; a flipped byte inside one is
/// left to `verify --read-data`, which finds it and records it, so that every later
/// proof that needs the pack reads it again until it reads clean.
#[test]
fn a_snapshot_proof_reads_back_its_own_packs_and_lists_the_rest() {
    let rt = rt();
    let t = TestConfig::new();
    let repo = init_repo(&rt, &t);
    let src = t.path("PACS_full.bak");
    let mut data = pseudo_random(12 * 1024 * 1024, 11);
    std::fs::write(&src, &data).unwrap();
    let first = rt
        .block_on(repo.backup(std::slice::from_ref(&src), &BackupOptions::default()))
        .unwrap();
    assert!(!first.packs_added.is_empty());
    // A week later: a few pages changed.
    for page in [3usize, 700, 1400] {
        data[page * 8192..page * 8192 + 8192].copy_from_slice(&pseudo_random(8192, page as u64));
    }
    std::fs::write(&src, &data).unwrap();
    let second = rt
        .block_on(repo.backup(std::slice::from_ref(&src), &BackupOptions::default()))
        .unwrap();
    let snap = rt
        .block_on(repo.find_snapshot(&second.snapshot_id.to_hex()))
        .unwrap();
    // The proof `backup db` runs after this backup.
    let nightly = || {
        rt.block_on(repo.verify_snapshot(&snap, ReadBack::Added(&second.packs_added)))
            .unwrap()
    };
    let proof = nightly();
    assert!(proof.ok(), "{proof:?}");
    assert_eq!(proof.packs_read, second.packs_added.len(), "{proof:?}");
    assert!(proof.packs_present >= first.packs_added.len(), "{proof:?}");
    assert_eq!(proof.packs, proof.packs_read + proof.packs_present);

    let old = crate::common::files_under(&t.repo().join("data"))
        .into_iter()
        .find(|p| {
            p.to_string_lossy()
                .ends_with(&first.packs_added[0].to_hex())
        })
        .unwrap();
    let original = std::fs::read(&old).unwrap();
    // A flipped byte in an older pack: the nightly proof does not read it...
    let mut flipped = original.clone();
    flipped[original.len() / 2] ^= 1;
    std::fs::write(&old, &flipped).unwrap();
    let proof = nightly();
    assert!(proof.ok(), "{proof:?}");
    // ...the scheduled read-back does.
    let full = read_all(&rt, &repo);
    assert!(!full.ok() && full.damaged_packs.len() == 1, "{full:?}");
    // ...and from then on every proof that needs the pack reads it again.
    let proof = nightly();
    assert!(!proof.ok(), "{proof:?}");
    assert_eq!(proof.damaged_packs[0].pack, first.packs_added[0].to_hex());
    // A truncated or missing older pack fails the nightly proof, named.
    std::fs::write(&old, &original[..original.len() - 10]).unwrap();
    let proof = nightly();
    assert!(!proof.ok(), "{proof:?}");
    assert!(
        proof.damaged_packs[0].problem.contains("truncated"),
        "{proof:?}"
    );
    assert_eq!(proof.damaged_packs[0].pack, first.packs_added[0].to_hex());
    std::fs::remove_file(&old).unwrap();
    let proof = nightly();
    assert!(
        !proof.ok() && proof.damaged_packs[0].problem.contains("missing"),
        "{proof:?}"
    );
    // Reading everything back (pinned backups) finds the flipped byte too.
    std::fs::write(&old, &flipped).unwrap();
    let proof = rt
        .block_on(repo.verify_snapshot(&snap, ReadBack::All))
        .unwrap();
    assert!(!proof.ok() && proof.packs_present == 0, "{proof:?}");
    // Repaired (the original bytes back), it is read once more, then trusted again.
    std::fs::write(&old, &original).unwrap();
    let proof = nightly();
    assert!(
        proof.ok() && proof.packs_read == second.packs_added.len() + 1,
        "{proof:?}"
    );
    let proof = nightly();
    assert!(
        proof.ok() && proof.packs_read == second.packs_added.len(),
        "{proof:?}"
    );
}

fn repo_fingerprint(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    crate::common::files_under(dir)
        .into_iter()
        .filter(|p| !p.to_string_lossy().contains("/.tmp/"))
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

#[test]
fn wrong_passphrase_is_refused_and_nothing_changes() {
    let t = TestConfig::new();
    t.ok(&["repo", "init"]);
    std::fs::create_dir_all(t.path("src")).unwrap();
    std::fs::write(t.path("src/a"), b"a").unwrap();
    t.ok(&["backup", "files", t.path("src").to_str().unwrap()]);
    let before = repo_fingerprint(&t.repo());
    for args in [
        vec!["backup", "files", t.path("src").to_str().unwrap()],
        vec!["repo", "key", "list"],
        vec!["snapshots"],
    ] {
        let out = t
            .cmd(&args)
            .env("PACSBAK_PASSWORD", "not the passphrase")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("wrong passphrase"), "{err}");
        assert!(!err.contains("not the passphrase"));
    }
    assert_eq!(before, repo_fingerprint(&t.repo()));
    // init on an existing repository changes nothing either.
    let (code, _, err) = t.run(&["repo", "init"]);
    assert_eq!(code, 2);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(before, repo_fingerprint(&t.repo()));
}

#[test]
fn key_slots_add_list_remove() {
    let t = TestConfig::new();
    t.ok(&["repo", "init"]);
    let out = t
        .cmd(&["repo", "key", "add", "--label", "engineer 2"])
        .env("PACSBAK_NEW_PASSWORD", "second passphrase")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = t.ok(&["--json", "repo", "key", "list"]);
    let keys: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 2);
    let first = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // The slot in use cannot be removed; with the second passphrase it can.
    let (code, _, err) = t.run(&["repo", "key", "remove", &first[..8]]);
    assert_eq!(code, 2, "{err}");
    let out = t
        .cmd(&["repo", "key", "remove", &first[..8]])
        .env("PACSBAK_PASSWORD", "second passphrase")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, _, err) = t.run(&["snapshots"]);
    assert_eq!(code, 2);
    assert!(err.contains("wrong passphrase"));
    let out = t
        .cmd(&["snapshots"])
        .env("PACSBAK_PASSWORD", "second passphrase")
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn workstation_copies_are_stored_once_and_diff_is_the_update_record() {
    let rt = rt();
    let t = TestConfig::new();
    let repo = init_repo(&rt, &t);
    let base = t.path("ws-template");
    random_tree(&base, 42, 2 * 1024 * 1024);
    let mut copies = Vec::new();
    for i in 0..10 {
        let c = t.path(&format!("ws{i:02}"));
        copy_tree(&base, &c);
        std::fs::write(c.join("station.ini"), format!("[station]\nname=WS{i:02}\n")).unwrap();
        copies.push(c);
    }
    let one = rt
        .block_on(repo.backup(&copies[..1], &BackupOptions::default()))
        .unwrap();
    let rest = rt
        .block_on(repo.backup(&copies[1..], &BackupOptions::default()))
        .unwrap();
    let grown = rest.summary.added_bytes as f64 / one.summary.added_bytes as f64;
    assert!(
        grown < 0.02,
        "nine more copies added {:.1}% of one copy",
        grown * 100.0
    );

    // An upgrade: one file changed, one added, one removed.
    let up = t.path("upgraded");
    copy_tree(&copies[0], &up);
    std::fs::write(up.join("station.ini"), "[station]\nname=WS00\nversion=2\n").unwrap();
    std::fs::write(up.join("new.dll"), b"MZ new").unwrap();
    let removed = crate::common::files_under(&up)
        .into_iter()
        .find(|p| {
            !p.ends_with("station.ini")
                && !p.ends_with("new.dll")
                && std::fs::symlink_metadata(p).unwrap().is_file()
        })
        .unwrap();
    std::fs::remove_file(&removed).unwrap();
    let after = rt
        .block_on(repo.backup(std::slice::from_ref(&up), &BackupOptions::default()))
        .unwrap();
    let out = t.ok(&[
        "--json",
        "diff",
        &one.snapshot_id.short(),
        &after.snapshot_id.short(),
    ]);
    let d: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["added"], 1, "{out}");
    assert_eq!(d["changed"], 1, "{out}");
    assert_eq!(d["removed"], 1, "{out}");
    let changed = d["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["change"] == "changed")
        .unwrap();
    assert!(changed["path"].as_str().unwrap().ends_with("station.ini"));
    assert_ne!(changed["old_blake3"], changed["new_blake3"]);
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.file_type().is_symlink() {
            #[cfg(unix)]
            std::os::unix::fs::symlink(std::fs::read_link(&p).unwrap(), &dest).unwrap();
        } else if m.is_dir() {
            copy_tree(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// kill -9 at several points of a backup: the repository verifies, the next backup
/// completes and reuses what was stored.
#[cfg(unix)]
#[test]
fn killed_backups_leave_a_verifiable_repository_that_the_next_backup_reuses() {
    let t = TestConfig::new();
    t.ok(&["repo", "init"]);
    let f = t.path("PACS_full.bak");
    std::fs::write(&f, pseudo_random(160 * 1024 * 1024, 77)).unwrap();
    let data = t.repo().join("data");
    for kill_after_packs in [1usize, 3, 6] {
        let mut child = t
            .cmd(&["backup", "files", f.to_str().unwrap()])
            .spawn()
            .unwrap();
        // Wait (by polling the repository, not by sleeping a fixed time) until the
        // backup has stored this many packs, then kill it.
        let mut killed = false;
        loop {
            let n = if data.exists() {
                crate::common::files_under(&data).len()
            } else {
                0
            };
            if n >= kill_after_packs {
                let _ = child.kill();
                killed = true;
            }
            if killed || child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::yield_now();
        }
        let _ = child.wait();
        let (code, out, err) = t.run(&["verify"]);
        assert_eq!(
            code, 0,
            "after kill at {kill_after_packs} packs:\n{out}\n{err}"
        );
    }
    let stored_before: u64 = crate::common::files_under(&data)
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let out = t.ok(&["--json", "backup", "files", f.to_str().unwrap()]);
    let rep: serde_json::Value = serde_json::from_str(&out).unwrap();
    let added = rep["summary"]["added_bytes"].as_u64().unwrap();
    assert!(stored_before > 0);
    assert!(
        added < 160 * 1024 * 1024 - stored_before / 2,
        "second backup re-sent data: added {added}, already stored {stored_before}"
    );
    let (code, out, _) = t.run(&["verify", "--read-data"]);
    assert_eq!(code, 0, "{out}");
    let restored = t.path("restored");
    t.ok(&[
        "restore",
        "files",
        "latest",
        "--to",
        restored.to_str().unwrap(),
    ]);
    assert!(std::fs::read(restored.join("PACS_full.bak")).unwrap() == std::fs::read(&f).unwrap());
}

#[test]
fn two_processes_backing_up_at_once_do_not_corrupt_the_repository() {
    let t = TestConfig::new();
    t.ok(&["repo", "init"]);
    let shared = pseudo_random(20 * 1024 * 1024, 3);
    for (i, name) in ["a", "b"].iter().enumerate() {
        let d = t.path(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("shared.bin"), &shared).unwrap();
        std::fs::write(
            d.join("own.bin"),
            pseudo_random(20 * 1024 * 1024, 100 + i as u64),
        )
        .unwrap();
    }
    let a = t
        .cmd(&["backup", "files", t.path("a").to_str().unwrap()])
        .spawn()
        .unwrap();
    let b = t
        .cmd(&["backup", "files", t.path("b").to_str().unwrap()])
        .spawn()
        .unwrap();
    assert!(a.wait_with_output().unwrap().status.success());
    assert!(b.wait_with_output().unwrap().status.success());
    let (code, out, _) = t.run(&["verify", "--read-data"]);
    assert_eq!(code, 0, "{out}");
    let snaps: serde_json::Value = serde_json::from_str(&t.ok(&["--json", "snapshots"])).unwrap();
    for s in snaps["snapshots"].as_array().unwrap() {
        let id = s["id"].as_str().unwrap();
        let out = t.path(&format!("r-{}", &id[..8]));
        t.ok(&["restore", "files", id, "--to", out.to_str().unwrap()]);
    }
}

#[test]
fn sampled_read_data_reads_least_recently_verified_packs_first() {
    let rt = rt();
    let t = TestConfig::new();
    let repo = init_repo(&rt, &t);
    let f = t.path("x.bak");
    std::fs::write(&f, pseudo_random(70 * 1024 * 1024, 9)).unwrap();
    rt.block_on(repo.backup(&[f], &BackupOptions::default()))
        .unwrap();
    let total = rt
        .block_on(repo.verify(&VerifyOptions {
            read_data: ReadData::None,
        }))
        .unwrap()
        .packs;
    assert!(total >= 4, "{total} packs");
    let mut seen = 0;
    for _ in 0..2 {
        let v = rt
            .block_on(repo.verify(&VerifyOptions {
                read_data: ReadData::Percent(50.0),
            }))
            .unwrap();
        assert!(v.ok());
        seen += v.packs_read;
    }
    // Two 50% runs cover every pack once.
    assert!(seen >= total, "{seen} of {total}");
    let slices: usize = (1..=3)
        .map(|n| {
            rt.block_on(repo.verify(&VerifyOptions {
                read_data: ReadData::Slice(n, 3),
            }))
            .unwrap()
            .packs_read
        })
        .sum();
    assert_eq!(slices, total);
}

#[test]
fn config_errors_name_file_line_and_key_and_secrets_stay_out_of_toml() {
    let t = TestConfig::new();
    let target = t.config().join("storage-targets/local.toml");
    std::fs::write(
        &target,
        "service = \"fs\"\nroot = \"../repo\"\nbukcet = \"x\"\n",
    )
    .unwrap();
    let (code, _, err) = t.run(&["repo", "init"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("local.toml:3:1") && err.contains("bukcet"),
        "{err}"
    );
    std::fs::write(
        &target,
        "service = \"fs\"\nroot = \"../repo\"\npassword = \"hunter2\"\n",
    )
    .unwrap();
    let (_, _, err) = t.run(&["repo", "init"]);
    assert!(
        err.contains("local.toml:3") && err.contains("password") && !err.contains("hunter2"),
        "{err}"
    );
    std::fs::write(&target, "service = \"ftp\"\n").unwrap();
    let (_, _, err) = t.run(&["repo", "init"]);
    assert!(err.contains("local.toml:1") && err.contains("ftp"), "{err}");
    std::fs::write(&target, "service = \"fs\"\nroot = \"../repo\"\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let pw = t.path("repo.pass");
        std::fs::write(&pw, "a passphrase from a file\n").unwrap();
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(
            t.config().join("pacsbak.toml"),
            format!("[repository]\npassword_file = {:?}\n", pw),
        )
        .unwrap();
        let out = t
            .cmd(&["repo", "init"])
            .env_remove("PACSBAK_PASSWORD")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("readable by group or others") && err.contains("repo.pass"),
            "{err}"
        );
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = t
            .cmd(&["repo", "init"])
            .env_remove("PACSBAK_PASSWORD")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The config's own file wins over a passphrase exported for another repository.
        let out = t
            .cmd(&["snapshots"])
            .env("PACSBAK_PASSWORD", "the production passphrase")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::remove_file(t.config().join("pacsbak.toml")).unwrap();
    let (_, _, err) = t.run(&["snapshots"]);
    assert!(err.contains("pacsbak.toml not found"), "{err}");
}

/// A snapshot taken on Windows (drive-letter source, Chinese names) restores on
/// Linux with its names intact, and backing the restored tree up again gives the
/// same manifest paths (Linux and back).
#[test]
fn windows_snapshot_names_survive_a_restore_on_linux_and_back() {
    let rt = rt();
    let t = TestConfig::new();
    let repo = init_repo(&rt, &t);
    // Take a real snapshot, then rewrite it as the Windows host would have written it.
    let src = t.path("Server");
    std::fs::create_dir_all(src.join("影像 模块")).unwrap();
    std::fs::write(src.join("影像 模块").join("报告模板.xml"), b"<t/>").unwrap();
    std::fs::write(src.join("PACS Server.exe"), b"MZ").unwrap();
    let rep = rt
        .block_on(repo.backup(std::slice::from_ref(&src), &BackupOptions::default()))
        .unwrap();
    let mut snap = rt
        .block_on(repo.find_snapshot(&rep.snapshot_id.to_hex()))
        .unwrap()
        .snapshot;
    snap.sources[0].path = r"D:\PACS\Server".to_string();
    snap.hostname = "PACS-APP01".into();
    for e in &mut snap.entries {
        e.mode = Some(0o666);
    }
    let win_paths: Vec<String> = snap.entries.iter().map(|e| e.path.clone()).collect();
    let id = rt.block_on(repo.save_snapshot(&snap)).unwrap();
    let win = rt.block_on(repo.find_snapshot(&id.to_hex())).unwrap();
    let out = t.path("linux-restore");
    let r = rt
        .block_on(repo.restore(&win, &out, &RestoreOptions::default()))
        .unwrap();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    assert_eq!(
        std::fs::read(out.join("Server/影像 模块/报告模板.xml")).unwrap(),
        b"<t/>"
    );
    let again = rt
        .block_on(repo.backup(&[out.join("Server")], &BackupOptions::default()))
        .unwrap();
    let back = rt
        .block_on(repo.find_snapshot(&again.snapshot_id.to_hex()))
        .unwrap();
    let back_paths: Vec<String> = back
        .snapshot
        .entries
        .iter()
        .map(|e| e.path.clone())
        .collect();
    assert_eq!(win_paths, back_paths);
    assert_eq!(again.summary.new_chunks, 0, "same content must dedup");
}

/// Issue 14, fault 6: a file whose name is near the 255-byte limit backs up, and
/// restores (its temporary name during the restore must fit too).
#[test]
fn a_file_name_near_the_length_limit_restores() {
    let rt = rt();
    let t = TestConfig::new();
    let src = t.path("prog");
    std::fs::create_dir_all(&src).unwrap();
    let name = format!("{}.ini", "配".repeat(78)); // 78 * 3 + 4 = 238 bytes
    assert!(name.len() > 235 && name.len() <= 255);
    std::fs::write(src.join(&name), b"[pacs]\nserver=sql01\n").unwrap();
    let repo = init_repo(&rt, &t);
    let rep = rt
        .block_on(repo.backup(std::slice::from_ref(&src), &BackupOptions::default()))
        .unwrap();
    assert!(rep.summary.errors.is_empty(), "{:?}", rep.summary.errors);
    let snap = rt
        .block_on(repo.find_snapshot(&rep.snapshot_id.to_hex()))
        .unwrap();
    let out = t.path("out");
    rt.block_on(repo.restore(&snap, &out, &RestoreOptions::default()))
        .unwrap();
    assert_eq!(
        std::fs::read(out.join("prog").join(&name)).unwrap(),
        b"[pacs]\nserver=sql01\n"
    );
    // Nothing temporary left beside it.
    let left: Vec<_> = std::fs::read_dir(out.join("prog")).unwrap().collect();
    assert_eq!(left.len(), 1);
}

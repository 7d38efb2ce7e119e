#!/usr/bin/env python3
"""Retention and prune benchmark (issue 16): a year of nightly backups, half removed.

365 daily versions of a 256 MiB gen_bak.py series (day N made from day N-1: 0.1% of
pages rewritten, no growth; BENCH_CHANGE_PCT), each backed up by pacsbak (`backup
files`) and by restic into repositories of their own. At gen_bak's default 1% restic
(1 MiB chunks) stores about half the file every day: a year would not fit the 35 GB
these machines have free. Then the same rule removes half (keep the last 183)
and the space is reclaimed: `pacsbak retention apply` + `pacsbak prune --grace 0h`
against `restic forget --keep-last 183 --prune`, same run. Prints time, peak memory
and repository size before and after, with ratios.

  BENCH_DIR=/tmp/pbench BENCH_DAYS=365 python3 scripts/bench_prune.py
"""
import importlib.util
import os
import random
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACSBAK = os.environ.get("PACSBAK_BIN", os.path.join(ROOT, "target", "release", "pacsbak"))
GEN = os.path.join(ROOT, "..", "shared", "bench", "gen_bak.py")
SIZE_MIB = float(os.environ.get("BENCH_SIZE_MIB", "256"))
DAYS = int(os.environ.get("BENCH_DAYS", "365"))
KEEP = DAYS // 2 + 1
SEED = 7
CHANGE_PCT = float(os.environ.get("BENCH_CHANGE_PCT", "0.1"))
PAGE = 8192


def load_gen():
    spec = importlib.util.spec_from_file_location("gen_bak", GEN)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(cmd, env, quiet=True):
    """Runs `cmd`; returns (wall seconds, peak RSS MiB) measured by wait4."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL if quiet else None,
                         stderr=subprocess.PIPE)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{err}")
    return wall, usage.ru_maxrss / 1024


def du(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(dirpath, f))
    return total


def main():
    gen = load_gen()
    work = os.environ.get("BENCH_DIR", "/tmp/pacsbak-bench-prune")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    cfg = os.path.join(work, "config")
    os.makedirs(os.path.join(cfg, "storage-targets"))
    with open(os.path.join(cfg, "pacsbak.toml"), "w") as f:
        f.write("[repository]\n")
    with open(os.path.join(cfg, "storage-targets", "local.toml"), "w") as f:
        f.write('service = "fs"\nroot = "../pacsbak-repo"\n')
    env = dict(os.environ, PACSBAK_PASSWORD="benchmark passphrase",
               RESTIC_PASSWORD="benchmark passphrase",
               RESTIC_REPOSITORY=os.path.join(work, "restic-repo"),
               PACSBAK_CACHE_DIR=os.path.join(work, "cache"),
               RESTIC_CACHE_DIR=os.path.join(work, "restic-cache"))
    pb = [PACSBAK, "--config", cfg]
    run(pb + ["repo", "init"], env)
    run(["restic", "init"], env)

    # Day 0, then each day from the day before: the pages gen_bak.py rewrites on
    # day d (version_of counts them) are written anew in place.
    bak = os.path.join(work, "PACS_full.bak")
    pages = int(SIZE_MIB * 1024 * 1024) // PAGE
    pool = gen.text_pool(SEED, 16 * 1024 * 1024)
    versions = [0] * pages
    with open(bak, "wb") as f:
        for p in range(pages):
            f.write(gen.page_bytes(SEED, p, 0, pool))
    import hashlib, struct
    backup_pb = backup_restic = 0.0
    for day in range(DAYS):
        if day:
            with open(bak, "r+b") as f:
                for p in range(pages):
                    h = hashlib.blake2b(struct.pack("<QQQ", SEED, p, day), digest_size=8).digest()
                    if int.from_bytes(h, "little") / 2**64 < CHANGE_PCT / 100.0:
                        versions[p] += 1
                        f.seek(p * PAGE)
                        f.write(gen.page_bytes(SEED, p, versions[p], pool))
        backup_pb += run(pb + ["backup", "files", bak], env)[0]
        backup_restic += run(["restic", "backup", "--quiet", bak], env)[0]
        if day % 30 == 0:
            print(f"day {day}: pacsbak {backup_pb:.0f} s, restic {backup_restic:.0f} s so far",
                  file=sys.stderr, flush=True)
    size_pb, size_restic = du(os.path.join(work, "pacsbak-repo")), du(env["RESTIC_REPOSITORY"])
    if os.environ.get("BENCH_KEEP_BEFORE"):
        # The repository before retention, to profile prune on it again.
        shutil.copytree(os.path.join(work, "pacsbak-repo"), os.path.join(work, "pacsbak-repo.before"))

    t_apply, m_apply = run(pb + ["retention", "apply", "--keep-last", str(KEEP)], env)
    t_prune, m_prune = run(pb + ["prune", "--grace", "0h"], env)
    t_restic, m_restic = run(["restic", "forget", "--keep-last", str(KEEP), "--prune"], env)
    after_pb, after_restic = du(os.path.join(work, "pacsbak-repo")), du(env["RESTIC_REPOSITORY"])
    t_check_pb, _ = run(pb + ["verify"], env)
    t_check_restic, _ = run(["restic", "check"], env)

    t_pb = t_apply + t_prune
    m_pb = max(m_apply, m_prune)
    mib = lambda b: f"{b / 2**20:.1f} MiB"
    print(f"\n{DAYS} daily versions of a {SIZE_MIB:.0f} MiB gen_bak series ({CHANGE_PCT}% of pages a day), keep the last {KEEP}\n")
    print("| measure | pacsbak | restic 0.14 | ratio |")
    print("|---|---|---|---|")
    print(f"| backups of the year (wall, sum) | {backup_pb:.0f} s | {backup_restic:.0f} s | {backup_pb / backup_restic:.2f}x |")
    print(f"| repository before | {mib(size_pb)} | {mib(size_restic)} | {size_pb / size_restic:.3f}x |")
    print(f"| remove half + reclaim (wall) | {t_pb:.1f} s (apply {t_apply:.1f} + prune {t_prune:.1f}) | {t_restic:.1f} s | {t_pb / t_restic:.2f}x |")
    print(f"| peak memory | {m_pb:.0f} MiB | {m_restic:.0f} MiB | {m_pb / m_restic:.2f}x |")
    print(f"| repository after | {mib(after_pb)} | {mib(after_restic)} | {after_pb / after_restic:.3f}x |")
    print(f"| structure check after (`verify` / `check`) | {t_check_pb:.1f} s | {t_check_restic:.1f} s | |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Repository benchmarks (issue 2), against the tools a user would pick instead, in one run.

Prints a markdown table (paste it into docs/benchmarks.md). Uses ../shared/bench/gen_bak.py
and gen_tree.py for data; restic and zstd must be on PATH (scripts/bench.sh installs them).

  BENCH_DIR=/tmp/pacsbak-bench BENCH_SIZE_MIB=1024 BENCH_BIG_GIB=10 scripts/bench.py
"""
import json, os, shutil, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "bench")
WORK = os.environ.get("BENCH_DIR", "/tmp/pacsbak-bench")
SIZE = int(os.environ.get("BENCH_SIZE_MIB", "1024"))
BIG = int(os.environ.get("BENCH_BIG_GIB", "10"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
PB = os.path.join(ROOT, "target", "release", "pacsbak")
PASS = "benchmark passphrase"
ENV = dict(os.environ, PACSBAK_PASSWORD=PASS, RESTIC_PASSWORD=PASS)
ENV.pop("PACSBAK_CONFIG", None)


def sh(cmd, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), check=True, env=ENV,
                          stdout=kw.pop("stdout", subprocess.DEVNULL), **kw)


def timed(cmd, setup=None, runs=RUNS):
    out = []
    for _ in range(runs):
        if setup:
            setup()
        t = time.perf_counter()
        sh(cmd)
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def du(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            p = os.path.join(d, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def pb_repo(name):
    cfg = os.path.join(WORK, name + "-cfg")
    repo = os.path.join(WORK, name)
    shutil.rmtree(cfg, ignore_errors=True)
    shutil.rmtree(repo, ignore_errors=True)
    os.makedirs(os.path.join(cfg, "storage-targets"))
    open(os.path.join(cfg, "pacsbak.toml"), "w").write("[repository]\n")
    open(os.path.join(cfg, "storage-targets", "local.toml"), "w").write(f'service = "fs"\nroot = "{repo}"\n')
    sh([PB, "--config", cfg, "repo", "init"])
    return cfg, repo


def restic_repo(name):
    repo = os.path.join(WORK, name)
    shutil.rmtree(repo, ignore_errors=True)
    sh(["restic", "-r", repo, "init", "-q"])
    return repo


def main():
    os.makedirs(WORK, exist_ok=True)
    day0, day1 = os.path.join(WORK, "day0.bak"), os.path.join(WORK, "day1.bak")
    if not os.path.exists(day0):
        sh([sys.executable, os.path.join(SHARED, "gen_bak.py"), "--size-mib", str(SIZE), "--seed", "7", "--day", "0", "--out", day0])
    if not os.path.exists(day1):
        sh([sys.executable, os.path.join(SHARED, "gen_bak.py"), "--size-mib", str(SIZE), "--seed", "7", "--day", "1",
            "--change-pct", "1", "--growth-pct", "0.5", "--out", day1])
    rows = []

    # Backup of day 0.
    t_zstd = timed(f"zstd -3 -T2 -q -c {day0} > /dev/null")
    state = {}
    def fresh_pb():
        state["cfg"], state["repo"] = pb_repo("pb")
    times = []
    for _ in range(RUNS):
        fresh_pb()
        t = time.perf_counter(); sh([PB, "--config", state["cfg"], "backup", "files", day0]); times.append(time.perf_counter() - t)
    t_pb = statistics.median(times)
    pb_size0 = du(state["repo"])
    times = []
    for _ in range(RUNS):
        rr = restic_repo("restic")
        t = time.perf_counter(); sh(["restic", "-r", rr, "backup", "-q", "--compression", "auto", day0]); times.append(time.perf_counter() - t)
    t_restic = statistics.median(times)
    restic_size0 = du(rr)
    rows.append(("backup day 0 (wall, median)", f"{t_pb:.2f} s", f"zstd -3 -T2 {t_zstd:.2f} s; restic {t_restic:.2f} s",
                 f"{t_pb / t_zstd:.2f}x zstd (target <= 1.15x); restic {t_restic / t_zstd:.2f}x"))
    rows.append(("repository size after day 0", f"{pb_size0 / 1e6:.1f} MB", f"restic {restic_size0 / 1e6:.1f} MB",
                 f"{pb_size0 / restic_size0:.3f}x restic (target <= 1.0)"))

    # Day 1 after day 0.
    sh([PB, "--config", state["cfg"], "backup", "files", day1])
    pb_add = du(state["repo"]) - pb_size0
    sh(["restic", "-r", rr, "backup", "-q", "--compression", "auto", day1])
    restic_add = du(rr) - restic_size0
    rows.append(("day 1 after day 0: bytes added", f"{pb_add / 1e6:.1f} MB", f"restic {restic_add / 1e6:.1f} MB",
                 f"{pb_add / restic_add:.3f}x restic (target <= 0.20)"))

    # Restore and verify of day 0.
    zst = os.path.join(WORK, "day0.bak.zst")
    sh(f"zstd -3 -T2 -q -f {day0} -o {zst}")
    unz = os.path.join(WORK, "day0.unzstd")
    # Both sides write a new file whose predecessor was removed beforehand
    # (restore refuses to overwrite), so both pay the same page-cache costs.
    t_unzstd = timed(f"zstd -d -q {zst} -o {unz}", setup=lambda: os.path.exists(unz) and os.remove(unz))
    os.remove(unz)
    out = os.path.join(WORK, "restore-out")
    snaps = json.loads(subprocess.run([PB, "--config", state["cfg"], "--json", "snapshots"], env=ENV, check=True,
                                      capture_output=True).stdout)
    first = snaps["snapshots"][0]["id"]
    t_restore = timed([PB, "--config", state["cfg"], "restore", "files", first, "--to", out],
                      setup=lambda: shutil.rmtree(out, ignore_errors=True))
    rout = os.path.join(WORK, "restic-out")
    t_rrestore = timed(["restic", "-r", rr, "restore", "-q", "latest", "--target", rout],
                       setup=lambda: shutil.rmtree(rout, ignore_errors=True))
    rows.append(("restore day 0 (wall, median)", f"{t_restore:.2f} s", f"zstd -d (to a file) {t_unzstd:.2f} s; restic {t_rrestore:.2f} s",
                 f"{t_restore / t_unzstd:.2f}x zstd -d (target <= 1.5x); restic {t_rrestore / t_unzstd:.2f}x"))
    t_verify = timed([PB, "--config", state["cfg"], "verify", "--read-data"])
    rows.append(("verify --read-data (day 0 + day 1 repo)", f"{t_verify:.2f} s", f"restore {t_restore:.2f} s",
                 f"{t_verify / t_restore:.2f}x restore (target <= 1.2x)"))
    shutil.rmtree(out, ignore_errors=True); shutil.rmtree(rout, ignore_errors=True); os.remove(zst)

    # 20 workstation copies.
    ws = os.path.join(WORK, "ws")
    if not os.path.exists(ws):
        sh([sys.executable, os.path.join(SHARED, "gen_tree.py"), "--out", ws, "--size-mib", "200", "--copies", "20"])
    cfg, repo = pb_repo("pb-ws")
    copies = sorted(os.listdir(ws))
    sh([PB, "--config", cfg, "backup", "files", os.path.join(ws, copies[0])])
    one = du(repo)
    sh([PB, "--config", cfg, "backup", "files"] + [os.path.join(ws, c) for c in copies[1:]])
    grow = (du(repo) - one) / one
    rr = restic_repo("restic-ws")
    sh(["restic", "-r", rr, "backup", "-q", os.path.join(ws, copies[0])])
    rone = du(rr)
    sh(["restic", "-r", rr, "backup", "-q"] + [os.path.join(ws, c) for c in copies[1:]])
    rgrow = (du(rr) - rone) / rone
    rows.append(("20 workstation copies: growth beyond one copy", f"{grow * 100:.2f}%", f"restic {rgrow * 100:.2f}%",
                 "target <= 1%"))

    # Peak memory on a big file.
    if BIG > 0:
        big = os.path.join(WORK, "big.bak")
        if not os.path.exists(big):
            sh([sys.executable, os.path.join(SHARED, "gen_bak.py"), "--size-mib", str(BIG * 1024), "--seed", "9", "--day", "0", "--out", big])
        cfg, repo = pb_repo("pb-big")
        r = subprocess.run(["/usr/bin/time", "-f", "%M %e", PB, "--config", cfg, "backup", "files", big], env=ENV,
                           check=True, capture_output=True, text=True)
        kb, secs = r.stderr.strip().splitlines()[-1].split()
        rows.append((f"peak RSS backing up a {BIG} GiB file", f"{int(kb) / 1024:.0f} MiB", f"{float(secs):.1f} s wall",
                     "target < 256 MiB"))
        shutil.rmtree(repo, ignore_errors=True)
        os.remove(big)

    print(f"| measure ({SIZE} MiB gen_bak day 0/1, {os.cpu_count()} cores) | pacsbak | others, same run | ratio |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()

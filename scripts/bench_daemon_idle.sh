#!/usr/bin/env bash
# The daemon at rest (issue 15): a policy of 20 databases (full weekly, diff nightly,
# log every 15 minutes), copies and a nightly verify configured, metrics served;
# sampled for SECONDS (default 600). Prints peak RSS and CPU as a share of one core,
# and how many jobs fired in the window (a log firing is a job, not idling: the
# script says so). Usage: scripts/bench_daemon_idle.sh [BINARY] [SECONDS]
set -euo pipefail
bin=${1:-target/release/pacsbak}
secs=${2:-600}
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/config/policies" "$work/config/storage-targets" "$work/repo" "$work/second" "$work/backups"
cat > "$work/config/pacsbak.toml" <<TOML
[repository]
[daemon]
[[daemon.copy]]
from = "local"
to = ["second"]
schedule = "0 6 * * *"
[daemon.verify]
schedule = "30 5 * * *"
TOML
printf 'service = "fs"\nroot = "../repo"\n' > "$work/config/storage-targets/local.toml"
printf 'service = "fs"\nroot = "../second"\n' > "$work/config/storage-targets/second.toml"
dbs=$(printf '"DB%02d",' $(seq 1 20)); dbs="[${dbs%,}]"
cat > "$work/config/policies/pacs.toml" <<TOML
[instance]
name = "BENCH"
connection_string_env = "PACSBAK_BENCH_CONN"
[databases]
include = $dbs
[schedule]
full = "0 1 * * SUN"
diff = "0 1 * * MON-SAT"
log = "*/15 * * * *"
[backup]
server_folder = '$work/backups'
[offsite]
targets = ["local", "second"]
[rpo]
default_minutes = 60
TOML
export PACSBAK_PASSWORD=bench-passphrase PACSBAK_CACHE_DIR="$work/cache"
# Named so the policy loads; nothing listens there (a job that fires fails fast).
export PACSBAK_BENCH_CONN="Server=tcp:127.0.0.1,9;User Id=sa;Password=unused;encrypt=DANGER_PLAINTEXT"
"$bin" --config "$work/config" repo init --target local >/dev/null
"$bin" --config "$work/config" repo init --target second >/dev/null
RUST_LOG=info "$bin" --config "$work/config" daemon --metrics 127.0.0.1:0 2>"$work/daemon.log" &
pid=$!
sleep 2
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
c0=$(cpu); t0=$(date +%s.%N); peak=0
end=$(( $(date +%s) + secs ))
while [ "$(date +%s)" -lt "$end" ]; do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  [ "$rss" -gt "$peak" ] && peak=$rss
  sleep 5
done
c1=$(cpu); t1=$(date +%s.%N)
jobs=$(grep -c "job started" "$work/daemon.log" || true)
kill -TERM "$pid"; wait "$pid" || true
awk -v c0="$c0" -v c1="$c1" -v t0="$t0" -v t1="$t1" -v hz="$ticks" -v peak="$peak" -v jobs="$jobs" -v secs="$secs" 'BEGIN {
  cpu = (c1 - c0) / hz; wall = t1 - t0;
  printf "| measure | value | target |\n|---|---|---|\n";
  printf "| idle window | %d s, 20 databases, %d jobs fired | no job |\n", secs, jobs;
  printf "| peak RSS | %.1f MiB | < 40 MiB |\n", peak / 1024;
  printf "| CPU | %.3f s = %.3f%% of one core | < 0.5%% |\n", cpu, 100 * cpu / wall;
}'

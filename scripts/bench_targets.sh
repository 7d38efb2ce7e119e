#!/usr/bin/env bash
# Upload of the 1 GiB day-0 gen_bak file to moto S3 and to sftp on loopback:
# pacsbak against `restic backup` and `rclone copy`, same file, same servers, same
# run. Installs restic, rclone and openssh-server from Debian when missing. Prints a
# Markdown table (docs/benchmarks.md, "Targets").
set -euo pipefail
cd "$(dirname "$0")/.."
GEN=${GEN_BAK:-$PWD/../shared/bench/gen_bak.py}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
need=()
command -v restic >/dev/null || need+=(restic)
command -v rclone >/dev/null || need+=(rclone)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
if [ ${#need[@]} -gt 0 ]; then as_root apt-get update -qq; as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null; fi
command -v moto_server >/dev/null || python3 -m pip install -q 'moto[server]'
[ -d /run/sshd ] || as_root mkdir -p /run/sshd
# This machine's CA-bundle variables break rclone 1.60 and are not needed on loopback.
unset AWS_CA_BUNDLE SSL_CERT_FILE SSL_CERT_DIR CURL_CA_BUNDLE REQUESTS_CA_BUNDLE AWS_PROFILE AWS_ENDPOINT_URL || true

cargo build --release -q
BIN=$PWD/target/release/pacsbak
W=$(mktemp -d /tmp/pacsbak-bench.XXXX)
cleanup() { kill ${MOTO:-} ${SSHD:-} 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
FILE=${BENCH_FILE:-$W/day0.bak}
[ -f "$FILE" ] || python3 "$GEN" --size-mib 1024 --seed 7 --day 0 --out "$FILE"

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
MP=$(port); moto_server -H 127.0.0.1 -p "$MP" >/dev/null 2>&1 & MOTO=$!
SP=$(port); mkdir -p "$W/ssh"; ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/host"; ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/client"
cp "$W/ssh/client.pub" "$W/ssh/authorized_keys"
cat > "$W/ssh/sshd_config" <<CONF
Port $SP
ListenAddress 127.0.0.1
HostKey $W/ssh/host
PidFile $W/ssh/pid
AuthorizedKeysFile $W/ssh/authorized_keys
PasswordAuthentication no
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
CONF
/usr/sbin/sshd -D -e -f "$W/ssh/sshd_config" 2>/dev/null & SSHD=$!
for p in $MP $SP; do for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null && break; sleep 0.1; done; done
USER_NAME=$(id -un)
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing-secret
for b in pacsbak restic rclone; do curl -s -X PUT "http://127.0.0.1:$MP/$b" >/dev/null; done
mkdir -p "$W/sftp/pacsbak" "$W/sftp/restic" "$W/sftp/rclone"
SSHOPTS="-i $W/ssh/client -p $SP -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o BatchMode=yes"

C=$W/config; mkdir -p "$C/storage-targets"; echo "[repository]" > "$C/pacsbak.toml"
printf 'access_key_id=testing\nsecret_access_key=testing-secret\n' > "$C/s3.secrets"; chmod 600 "$C/s3.secrets"
printf 'service = "s3"\nendpoint = "http://127.0.0.1:%s"\nbucket = "pacsbak"\nroot = "repo"\nsecrets_file = "s3.secrets"\n' "$MP" > "$C/storage-targets/s3.toml"
printf 'service = "sftp"\nendpoint = "ssh://%s@127.0.0.1:%s"\nroot = "%s/sftp/pacsbak"\nkey_file = "%s/ssh/client"\nknown_hosts = "accept"\n' "$USER_NAME" "$SP" "$W" "$W" > "$C/storage-targets/sftp.toml"
export PACSBAK_CONFIG=$C PACSBAK_PASSWORD=bench-passphrase RESTIC_PASSWORD=bench-passphrase
cd "$W"

t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>"$W/err" || { cat "$W/err"; return 1; }; e=$(date +%s.%N); echo "$e - $s" | bc; }
$BIN repo init --target s3 >/dev/null; $BIN repo init --target sftp >/dev/null
P_S3=$(t $BIN backup files --target s3 "$FILE")
P_SFTP=$(t $BIN backup files --target sftp "$FILE")
restic -r "s3:http://127.0.0.1:$MP/restic" init >/dev/null
R_S3=$(t restic -r "s3:http://127.0.0.1:$MP/restic" backup "$FILE")
restic -r "sftp:$USER_NAME@127.0.0.1:$W/sftp/restic" -o sftp.command="ssh $SSHOPTS $USER_NAME@127.0.0.1 -s sftp" init >/dev/null
R_SFTP=$(t restic -r "sftp:$USER_NAME@127.0.0.1:$W/sftp/restic" -o sftp.command="ssh $SSHOPTS $USER_NAME@127.0.0.1 -s sftp" backup "$FILE")
export RCLONE_CONFIG=$W/rclone.conf
printf '[s3]\ntype = s3\nprovider = Other\naccess_key_id = testing\nsecret_access_key = testing-secret\nendpoint = http://127.0.0.1:%s\n\n[sftp]\ntype = sftp\nhost = 127.0.0.1\nport = %s\nuser = %s\nkey_file = %s/ssh/client\n' "$MP" "$SP" "$USER_NAME" "$W" > "$RCLONE_CONFIG"
C_S3=$(t rclone copy "$FILE" s3:rclone/)
C_SFTP=$(t rclone copy "$FILE" "sftp:$W/sftp/rclone/")
size() { du -sb "$1" | cut -f1; }
echo "| target | pacsbak | restic backup | rclone copy |"
echo "|---|---|---|---|"
printf '| moto S3 (loopback) | %.1f s | %.1f s | %.1f s |\n' "$P_S3" "$R_S3" "$C_S3"
printf '| sftp (loopback sshd) | %.1f s | %.1f s | %.1f s |\n' "$P_SFTP" "$R_SFTP" "$C_SFTP"
echo "stored on sftp: pacsbak $(size "$W/sftp/pacsbak") B, restic $(size "$W/sftp/restic") B, rclone $(size "$W/sftp/rclone") B"

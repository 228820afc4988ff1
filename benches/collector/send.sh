#!/usr/bin/env bash
# End-to-end figure for the collector: `varde-collector send` of 500,000 synthetic syslog lines
# through parse, batch, the disk spool and Kafka (acks=all) on the development broker, once with
# fsync per batch and once without. Needs `deploy/dev/services.sh up` and a release build:
#   cargo build --release -p varde-collector && benches/collector/send.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/varde-collector
PORT=${VARDE_KAFKA_PORT:-19092}
ROWS=${ROWS:-5000}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

python3 - "$WORK/lines.log" <<'PY'
import random, sys
random.seed(7)
apps = ["sshd", "nginx", "kernel", "sudo", "CRON", "postfix/smtpd", "systemd"]
hosts = [f"{h}.{k}.kommune.no" for h in ["web01", "web02", "fw01", "dc01", "mail01"] for k in ["oslo", "bergen", "moss"]]
with open(sys.argv[1], "w") as f:
    for i in range(500000):
        app, h = random.choice(apps), random.choice(hosts)
        ip = f"10.{random.randint(0,255)}.{random.randint(0,255)}.{random.randint(1,254)}"
        if app == "sshd":
            msg = random.choice([f"Failed password for invalid user admin{random.randint(1,99)} from {ip} port {random.randint(1024,65535)} ssh2",
                                 f"Accepted publickey for drift from {ip} port {random.randint(1024,65535)} ssh2: ED25519 SHA256:{random.getrandbits(128):032x}"])
        elif app == "nginx":
            msg = f'{ip} - - "GET /innbygger/skjema/{random.randint(1,500)} HTTP/1.1" {random.choice([200,200,200,302,404,500])} {random.randint(200,90000)} "Mozilla/5.0 (Windows NT 10.0; Win64; x64)"'
        else:
            msg = f"session {random.randint(1,100000)} event {random.choice(['opened','closed','started','finished'])} for user u{random.randint(1,3000)} pid {random.randint(100,40000)}"
        f.write(f"<{random.randint(8,191)}>1 2026-11-23T12:{(i//60000)%60:02d}:{(i//1000)%60:02d}.{i%1000:03d}Z {h} {app} {random.randint(100,40000)} - - {msg}\n")
PY
ls -l "$WORK/lines.log"
for fsync in batch never; do
  prefix="bench-$fsync-$$."
  tansu topic create "${prefix}events.0301" --partitions 1 --broker "tcp://127.0.0.1:$PORT" >/dev/null
  cat > "$WORK/$fsync.toml" <<TOML
collector_id = "k0301-bench"
tenant = "0301"
state_dir = "$WORK/state-$fsync"
[kafka]
brokers = "127.0.0.1:$PORT"
topic_prefix = "$prefix"
[batch]
max_rows = $ROWS
[spool]
fsync = "$fsync"
TOML
  echo "== fsync=$fsync, max_rows=$ROWS"
  VARDE_LOG=error /usr/bin/time -f "wall %e s, max RSS %M KiB" \
    "$BIN" send --config "$WORK/$fsync.toml" "$WORK/lines.log" 2>&1
done

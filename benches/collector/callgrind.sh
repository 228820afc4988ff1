#!/usr/bin/env bash
# Instructions per line of varde-collector on its hot path, counted by callgrind: the same
# syslog/TCP → Kafka run as peers.sh (the same RFC 3164 lines sent by syslog-ng's loggen over one
# TCP connection, a fresh in-memory tansu, the collector's defaults but 5,000-row batches), with
# the collector under `valgrind --tool=callgrind`. Instruction counts are stable on a shared
# machine where CPU seconds are not; compare binaries with this, confirm with peers.sh.
#
#   benches/collector/callgrind.sh [N]        N lines (default 200000)
#
# Knobs: BIN (the collector; default target/release/varde-collector), OUT (callgrind's output
# file; default $W/callgrind.out), W (work directory, shared with peers.sh: the loggen build and
# the message file are taken from there, made by one peers.sh run), TANSU, KPORT, VD_PORT,
# VD_METRICS_PORT. Prints the total and the instructions per line; read the profile with
# `callgrind_annotate --inclusive=yes $OUT`.
#
# Under valgrind, sha2 takes its portable SHA-256 (valgrind hides the CPU's SHA instructions),
# so the envelope's hash weighs more here than natively. Only 127.0.0.1 is used; every wait is
# bounded; every process started here is stopped on exit.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
N=${1:-${N:-200000}}
W=${W:-/tmp/syslog-peers}
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/varde-collector}
OUT=${OUT:-$W/callgrind.out}
TANSU=${TANSU:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}
KPORT=${KPORT:-19395}
VD_PORT=${VD_PORT:-15517}
VD_METRICS_PORT=${VD_METRICS_PORT:-19465}
SN_ROOT=$W/root-syslog-ng
LOGGEN=$SN_ROOT/usr/bin/loggen
MSGS=$W/msgs-1000000.txt

die() { printf 'callgrind.sh: %s\n' "$*" >&2; exit 1; }
command -v valgrind > /dev/null || die "valgrind is not installed (apt-get install valgrind)"
[ -x "$BIN" ] || die "no collector at $BIN (cargo build --release --locked -p varde-collector)"
[ -x "$TANSU" ] || die "no tansu at $TANSU (deploy/dev/services.sh builds it)"
[ -x "$LOGGEN" ] && [ -r "$MSGS" ] || die "no loggen or message file under $W: run benches/collector/peers.sh once"
[ "$N" -le 1000000 ] || die "N is at most 1000000 (the message file's lines)"

RUN=$(mktemp -d "$W/callgrind.XXXXXX")
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cat > "$RUN/c.toml" <<EOF
# written by benches/collector/callgrind.sh
collector_id = "k0301-callgrind-01"
tenant = "0301"
state_dir = "$RUN/state"

[kafka]
brokers = "127.0.0.1:$KPORT"
topic_prefix = "callgrind."

[batch]
max_rows = 5000

[metrics]
listen = "127.0.0.1:$VD_METRICS_PORT"

[[sources]]
type = "syslog_tcp"
listen = "127.0.0.1:$VD_PORT"
EOF
mkdir -p "$RUN/state"
"$BIN" key new --config "$RUN/c.toml" > "$RUN/key.log" 2>&1 || die "key new failed: $(cat "$RUN/key.log")"

"$TANSU" broker --listener-url "tcp://127.0.0.1:$KPORT" --advertised-listener-url "tcp://127.0.0.1:$KPORT" \
  --storage-engine memory://tansu/ > "$RUN/tansu.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do ss -Hltn "sport = :$KPORT" | grep -q . && break; sleep 0.2; done
timeout 30 "$TANSU" topic create callgrind.events.0301 --partitions 3 --broker "tcp://127.0.0.1:$KPORT" \
  >> "$RUN/tansu.log" 2>&1 || die "cannot create the topic: $(tail -3 "$RUN/tansu.log")"

valgrind --tool=callgrind --callgrind-out-file="$OUT" "$BIN" run --config "$RUN/c.toml" > "$RUN/collector.log" 2>&1 &
CP=$!
PIDS+=($CP)
metric() {
  curl -s "127.0.0.1:$VD_METRICS_PORT/metrics" | awk '/^varde_collector_events_out_total\{kind="syslog"\}/{print $2}'
}
for _ in $(seq 1 120); do curl -s "127.0.0.1:$VD_METRICS_PORT/metrics" > /dev/null && break; sleep 1; done
env LD_LIBRARY_PATH="$SN_ROOT/usr/lib/syslog-ng" SYSLOGNG_PREFIX="$SN_ROOT/usr" "$LOGGEN" --inet --stream \
  --rate=100000000 --number="$N" --interval=3600 --read-file="$MSGS" --dont-parse 127.0.0.1 "$VD_PORT" \
  > "$RUN/sender.log" 2>&1 || die "loggen failed: $(tail -3 "$RUN/sender.log")"
out=0
for _ in $(seq 1 600); do
  out=$(metric); [ "${out:-0}" = "$N" ] && break; sleep 1
done
[ "${out:-0}" = "$N" ] || die "only ${out:-0} of $N events acknowledged by Kafka (see $RUN)"
kill -INT "$CP"
wait "$CP" 2>/dev/null
total=$(awk '/^summary:/{print $2}' "$OUT")
[ -n "$total" ] || die "no callgrind summary in $OUT"
rm -rf "$RUN"
echo "varde-collector $("$BIN" --version 2>/dev/null | awk '{print $2}'): $N lines, $total instructions, $((total / N)) per line ($OUT)"

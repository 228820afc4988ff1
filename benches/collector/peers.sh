#!/usr/bin/env bash
# varde-collector side by side with rsyslog + omkafka and syslog-ng + kafka-c: syslog over TCP
# into Kafka, same input, same kind of broker, same readings. One table at the end.
#
#   benches/collector/peers.sh [N]          N messages per run (default 1000000)
#
# 1. The peers are measured by the shared reference tool, unchanged:
#    $PEERS_DIR/run.sh (default /work/shared/tools/syslog-peers/run.sh). It installs rsyslog,
#    syslog-ng, loggen, librdkafka 2.12.1 and the counting consumer's venv under $W, generates
#    $W/msgs-N.txt (N RFC 3164 messages of 200 bytes) and prints its own table.
# 2. varde-collector (`run`, release build) is then measured the way run.sh measures a peer: a
#    fresh in-memory tansu broker, a fresh topic with $PARTITIONS partitions, the collector started
#    as $RUN_AS (nobody) with its config and state dir in the run dir, metadata settled for 2 s,
#    the same kcount.py consumer reading the topic while the load runs, the same message file
#    sent by the same loggen invocation over one TCP connection, CPU = utime+stime of the
#    process from /proc/PID/stat, peak RSS = VmHWM.
#    Differences, forced by what Varde sends: one Kafka message is an Arrow batch of up to
#    batch.max_rows events, so kcount.py counts batches, not events. Events are counted from the
#    collector's own /metrics (events acknowledged by Kafka, spool empty), and the wall time ends
#    when /metrics first shows all N events acknowledged and nothing left in the spool (polled
#    every 0.1 s). The peers' wall ends when kcount.py read the N-th message back.
#    The batch count in Kafka (kcount.py --mode verify after the collector stopped) is printed
#    next to the collector's batches_out_total, to compare.
# 3. RATE_RUNS (default 1) extra varde runs with loggen limited to RATE events/s (default 50000),
#    for the issue's "RSS at 50k events/s" (run.sh cannot limit the peers' rate).
#
# Runs are interleaved (INTERLEAVE=1): each round is run.sh with RUNS=1 (rsyslog, syslog-ng),
# then one varde run, so a change of machine load hits all three alike. INTERLEAVE=0 calls run.sh
# once with RUNS=$RUNS, then does the varde runs.
# Before each step the script waits until the 1-minute load average is below LOAD_MAX (polling
# every LOAD_POLL_S), for at most LOAD_WAIT_S in all; after that it measures anyway. The load
# average at the start and end of each step is printed next to its figures.
#
# Needs: a release build of the collector (BIN, default ${CARGO_TARGET_DIR:-target}/release/
#   varde-collector; built with `cargo build --release --locked -p varde-collector`), tansu
#   (TANSU), root for setpriv (else everything runs as the calling user), curl.
# Knobs: N RUNS W TANSU PARTITIONS IDLE_S MAX_S RUN_AS (as run.sh), BIN VARDE_REV KPORT VD_PORT
#   VD_METRICS_PORT VARDE_MAX_ROWS VARDE_FSYNC RATE (0: no rate-limited run) RATE_RUNS ONLY (all |
#   peers | varde; ONLY=varde RUNS=0 runs only the rate-limited runs) INTERLEAVE LOAD_MAX
#   LOAD_WAIT_S LOAD_POLL_S PEERS_DIR.
# Only 127.0.0.1 is used; every wait is bounded; everything written goes under $W; every process
# started here is stopped on exit.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PEERS_DIR=${PEERS_DIR:-/work/shared/tools/syslog-peers}
N=${1:-${N:-1000000}}
RUNS=${RUNS:-1}
W=${W:-/tmp/syslog-peers}
TANSU=${TANSU:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}
PARTITIONS=${PARTITIONS:-3}
IDLE_S=${IDLE_S:-30}
MAX_S=${MAX_S:-900}
RUN_AS=${RUN_AS:-nobody}
BIN=${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/varde-collector}
KPORT=${KPORT:-19094}
VD_PORT=${VD_PORT:-15516}
VD_METRICS_PORT=${VD_METRICS_PORT:-19464}
VARDE_MAX_ROWS=${VARDE_MAX_ROWS:-5000}
VARDE_FSYNC=${VARDE_FSYNC:-batch}
RATE=${RATE:-50000}
RATE_RUNS=${RATE_RUNS:-1}
ONLY=${ONLY:-all}
INTERLEAVE=${INTERLEAVE:-1}
LOAD_MAX=${LOAD_MAX:-1.5}
LOAD_WAIT_S=${LOAD_WAIT_S:-3600}
LOAD_POLL_S=${LOAD_POLL_S:-120}
TENANT=0301

RUN_SH=$PEERS_DIR/run.sh
KCOUNT=$PEERS_DIR/kcount.py
PY=$W/venv/bin/python
SN_ROOT=$W/root-syslog-ng
LOGGEN=$SN_ROOT/usr/bin/loggen

log() { printf '[%s] peers.sh: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup ---
MINE=()
is_mine() {  # PID is alive and still a child of this shell (not a reused PID)
  [ -r "/proc/$1/stat" ] && [ "$(awk '{sub(/^.*\) /, ""); print $2}' "/proc/$1/stat" 2>/dev/null)" = "$$" ]
}
is_zombie() { [ "$(awk '{sub(/^.*\) /, ""); print $1}' "/proc/$1/stat" 2>/dev/null)" = Z ]; }
halt() {  # halt PID [SIGNAL] [TIMEOUT_S]: signal, bounded wait, then KILL
  local p=$1 sig=${2:-TERM} t=${3:-30} i
  is_mine "$p" || return 0
  kill "-$sig" "$p" 2>/dev/null
  for i in $(seq 1 $((t * 5))); do
    { ! is_mine "$p" || is_zombie "$p"; } && break
    sleep 0.2
  done
  if is_mine "$p" && ! is_zombie "$p"; then
    log "pid $p still running ${t}s after $sig: KILL"; kill -KILL "$p" 2>/dev/null
  fi
  wait "$p" 2>/dev/null
  return 0
}
cleanup() {
  local p
  for p in "${MINE[@]}"; do halt "$p" TERM 10; done
  MINE=()
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_busy() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
free_port() {
  local p=$1
  while port_busy "$p"; do p=$((p + 1)); [ "$p" -gt $(($1 + 100)) ] && die "no free port near $1"; done
  echo "$p"
}
wait_port() {  # PORT TIMEOUT_S PID
  local i
  for i in $(seq 1 $(($2 * 5))); do
    port_busy "$1" && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}
ticks() { awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$1/stat"; }
status_kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
load1() { cut -d' ' -f1 /proc/loadavg; }
loads() { cut -d' ' -f1-3 /proc/loadavg; }

WAITED=0
wait_for_quiet() {  # wait until load1 < LOAD_MAX, LOAD_WAIT_S in all over the whole script
  local l
  while :; do
    l=$(load1)
    awk -v l="$l" -v m="$LOAD_MAX" 'BEGIN {exit !(l < m)}' && return 0
    if [ "$WAITED" -ge "$LOAD_WAIT_S" ]; then
      log "load average $l >= $LOAD_MAX; waited ${WAITED}s in all, measuring anyway"
      return 0
    fi
    log "load average $(loads) (1-minute >= $LOAD_MAX): waiting ${LOAD_POLL_S}s (${WAITED}s of ${LOAD_WAIT_S}s used)"
    sleep "$LOAD_POLL_S" & wait $!
    WAITED=$((WAITED + LOAD_POLL_S))
  done
}

# ------------------------------------------------------------------ peers ---
PEER_ROWS=()      # run.sh's row fields | load at start | load at end
PEER_DETAILS=()
run_peers() {  # run_peers RUNS_FOR_THIS_CALL
  local l0 l1 out rd
  wait_for_quiet
  l0=$(load1)
  out=$W/runs/peers-sh-runsh-$(date +%Y%m%d-%H%M%S).log
  log "run.sh N=$N RUNS=$1 (load $(loads))"
  N=$N RUNS=$1 W=$W TANSU=$TANSU PARTITIONS=$PARTITIONS IDLE_S=$IDLE_S MAX_S=$MAX_S RUN_AS=$RUN_AS \
    "$RUN_SH" "$N" > "$out.out" 2> "$out" &
  local pid=$!
  MINE+=("$pid")
  wait "$pid"
  local rc=$?
  l1=$(load1)
  cat "$out.out"
  rd=$(sed -n 's/^.*run dir \([^,]*\), N=.*$/\1/p' "$out" | tail -1)
  [ "$rc" = 0 ] && [ -n "$rd" ] && [ -f "$rd/rows.txt" ] || { tail -20 "$out" >&2; die "run.sh failed (rc $rc)"; }
  local r
  while IFS= read -r r; do [ -n "$r" ] && PEER_ROWS+=("$r|$l0|$l1"); done < "$rd/rows.txt"
  while IFS= read -r r; do PEER_DETAILS+=("$r"); done < <(grep '^detail:' "$rd/table.txt")
  PEER_VERSION_LINE=$(grep '^sender:' "$rd/table.txt" | tail -1)
}

# ------------------------------------------------------------------ varde ---
VARDE_ROWS=()
VARDE_DETAILS=()
VARDE_RUNDIR=
prepare_varde() {
  [ -x "$BIN" ] || die "no collector binary at $BIN (cargo build --release --locked -p varde-collector)"
  [ -x "$TANSU" ] || die "tansu not found at $TANSU"
  [ -x "$LOGGEN" ] && [ -x "$PY" ] || die "loggen or the kcount venv missing under $W: run.sh installs them (ONLY=peers or all first)"
  MSGS=$W/msgs-$N.txt
  [ -f "$MSGS" ] && [ "$(stat -c %s "$MSGS")" = $((N * 200)) ] || die "$MSGS missing: run.sh generates it (run the peers with this N first)"
  VARDE_RUNDIR=$W/runs/varde-$(date +%Y%m%d-%H%M%S)
  mkdir -p "$VARDE_RUNDIR/bin"
  chmod 755 "$W" "$W/runs" "$VARDE_RUNDIR" "$VARDE_RUNDIR/bin"
  # What is run and measured: a stripped copy (a package installs a stripped binary; the debug
  # sections are never mapped, so stripping changes no figure), readable by $RUN_AS.
  VBIN=$VARDE_RUNDIR/bin/varde-collector
  strip -o "$VBIN" "$BIN" || die "strip $BIN"
  chmod 755 "$VBIN"
  BIN_BYTES=$(stat -c %s "$BIN")
  STRIPPED_BYTES=$(stat -c %s "$VBIN")
  VARDE_VERSION="$("$VBIN" --version 2>/dev/null | awk '{print $2}') ${VARDE_REV:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)}"
  log "collector $BIN ($VARDE_VERSION), $BIN_BYTES bytes, stripped $STRIPPED_BYTES bytes; run dir $VARDE_RUNDIR"
}

metric_sum() {  # metric_sum FILE NAME: sum of all samples of NAME (any labels)
  awk -v n="$2" '$1 == n || index($1, n "{") == 1 {s += $NF; f = 1} END {if (f) printf "%.0f\n", s; else print ""}' "$1"
}

run_varde() {  # run_varde LABEL IDX RATE
  local label=$1 idx=$2 rate=$3
  local rd=$VARDE_RUNDIR/$label-$idx prefix="peers-varde-$idx-$label."
  local topic="${prefix}events.$TENANT" drop=()
  mkdir -p "$rd/state"
  if [ -n "$RUN_AS" ] && [ "$(id -u)" = 0 ]; then
    chown -R "$RUN_AS" "$rd"
    drop=(setpriv --reuid="$RUN_AS" --regid="$(id -gn "$RUN_AS")" --clear-groups)
  fi
  wait_for_quiet
  local l0
  l0=$(load1)

  local kport tpid
  kport=$(free_port "$KPORT")
  (cd "$rd" && exec "$TANSU" broker --listener-url "tcp://127.0.0.1:$kport" \
     --advertised-listener-url "tcp://127.0.0.1:$kport" --storage-engine memory://tansu/) \
     > "$rd/tansu.log" 2>&1 &
  tpid=$!
  MINE+=("$tpid")
  wait_port "$kport" 20 "$tpid" || die "tansu did not listen on $kport"
  timeout 30 "$TANSU" topic create "$topic" --partitions "$PARTITIONS" \
    --broker "tcp://127.0.0.1:$kport" >> "$rd/tansu.log" 2>&1 || die "topic create failed"

  local port mport
  port=$(free_port "$VD_PORT")
  mport=$(free_port "$VD_METRICS_PORT")
  [ "$mport" = "$port" ] && mport=$(free_port $((port + 1)))
  cat > "$rd/collector.toml" <<TOML
# written by benches/collector/peers.sh; batch, spool and Kafka settings are the defaults except
# those below
collector_id = "k$TENANT-bench-01"
tenant = "$TENANT"
state_dir = "$rd/state"

[kafka]
brokers = "127.0.0.1:$kport"
topic_prefix = "$prefix"

[batch]
max_rows = $VARDE_MAX_ROWS

[spool]
fsync = "$VARDE_FSYNC"

[metrics]
listen = "127.0.0.1:$mport"

[[sources]]
type = "syslog_tcp"
listen = "127.0.0.1:$port"
TOML
  chmod 644 "$rd/collector.toml"
  # Every envelope is signed with the collector's key (docs/collector.md): make one here, as the
  # user the collector runs as (a real one gets its key from `varde-collector enrol`).
  "${drop[@]}" "$VBIN" key new --config "$rd/collector.toml" > "$rd/key.log" 2>&1 \
    || { cat "$rd/key.log" >&2; die "varde-collector key new failed"; }
  local pid
  "${drop[@]}" env VARDE_LOG="${VARDE_LOG:-info}" "$VBIN" run --config "$rd/collector.toml" \
    > "$rd/collector.log" 2>&1 &
  pid=$!
  MINE+=("$pid")
  if ! wait_port "$port" 20 "$pid" || ! wait_port "$mport" 20 "$pid"; then
    tail -20 "$rd/collector.log" >&2
    VARDE_ROWS+=("varde-collector|$VARDE_VERSION|$N|-|-|-|-|did not start|$l0|$(load1)|$label|-|-")
    halt "$pid"; halt "$tpid"; return
  fi
  sleep 2   # as run.sh: let the Kafka client fetch metadata before the clock starts
  local idle_rss idle_hwm
  idle_rss=$(status_kb "$pid" VmRSS)
  idle_hwm=$(status_kb "$pid" VmHWM)
  log "varde-collector pid $pid ($label) port $port metrics $mport topic $topic broker 127.0.0.1:$kport idle RSS ${idle_rss} KiB"

  # The same consumer reads the topic during the load (its load on the machine is part of the
  # method). It counts Kafka messages (batches); its own stop conditions never trigger before the
  # collector is done, and it is interrupted once the readings are taken.
  rm -f "$rd/counter.ready"
  timeout $((MAX_S + 60)) "$PY" "$KCOUNT" --broker "127.0.0.1:$kport" --topic "$topic" \
    --mode stream --expect 0 --idle "$MAX_S" --max "$MAX_S" --ready-file "$rd/counter.ready" \
    > "$rd/counter.json" 2> "$rd/counter.err" &
  local cpid=$! i
  MINE+=("$cpid")
  for i in $(seq 1 150); do [ -f "$rd/counter.ready" ] && break; sleep 0.2; done
  [ -f "$rd/counter.ready" ] || die "counting consumer not ready"

  local cpu0 tcpu0 t0 t_sent= lrc=
  cpu0=$(ticks "$pid")
  tcpu0=$(ticks "$tpid")
  t0=$(date +%s.%N)
  timeout "$MAX_S" env LD_LIBRARY_PATH="$SN_ROOT/usr/lib/syslog-ng" SYSLOGNG_PREFIX="$SN_ROOT/usr" \
    "$LOGGEN" --inet --stream --rate="$rate" --number="$N" --interval="$MAX_S" \
    --read-file="$MSGS" --dont-parse 127.0.0.1 "$port" > "$rd/sender.log" 2>&1 &
  local lpid=$!
  MINE+=("$lpid")

  # Done = every event acknowledged by Kafka and the spool empty. Polled while loggen still
  # runs too (loggen lingers after its last message; the peers' clock does not wait for it).
  local m=$rd/metrics.txt out=0 recs=x last_out=-1 t_prog t_done=
  t_prog=$(date +%s)
  while :; do
    if [ -z "${t_sent:-}" ] && { ! kill -0 "$lpid" 2>/dev/null || is_zombie "$lpid"; }; then
      wait "$lpid"; lrc=$?; t_sent=$(date +%s.%N)
    fi
    if curl -s --max-time 2 "http://127.0.0.1:$mport/metrics" > "$m.tmp" 2>/dev/null; then
      mv "$m.tmp" "$m"
      out=$(metric_sum "$m" varde_collector_events_out_total)
      recs=$(metric_sum "$m" varde_collector_spool_records)
      if [ "${out:-0}" -ge "$N" ] && [ "$recs" = 0 ]; then t_done=$(date +%s.%N); break; fi
      [ "${out:-0}" != "$last_out" ] && { last_out=${out:-0}; t_prog=$(date +%s); }
    fi
    kill -0 "$pid" 2>/dev/null || { log "varde-collector (pid $pid) died during the run"; break; }
    [ $(($(date +%s) - t_prog)) -ge "$IDLE_S" ] && { log "no progress for ${IDLE_S}s: $out events acknowledged, $recs records spooled"; break; }
    awk -v a="$(date +%s.%N)" -v b="$t0" -v m="$MAX_S" 'BEGIN {exit !(a - b > m)}' && { log "MAX_S reached"; break; }
    sleep 0.1
  done
  if [ -z "${t_sent:-}" ]; then wait "$lpid"; lrc=$?; t_sent=$(date +%s.%N); fi
  local cpu1 hwm tcpu1 l1
  if kill -0 "$pid" 2>/dev/null; then
    cpu1=$(ticks "$pid"); hwm=$(status_kb "$pid" VmHWM)
    for t in /proc/"$pid"/task/*; do
      awk -v c="$(cat "$t/comm")" '{sub(/^.*\) /, ""); print $12, $13, c}' "$t/stat"
    done > "$rd/threads.txt" 2>/dev/null
  else
    cpu1=$cpu0; hwm=0
  fi
  tcpu1=$(ticks "$tpid" 2>/dev/null || echo "$tcpu0")
  l1=$(load1)
  halt "$cpid" TERM 10
  halt "$pid" TERM 30
  local vjson
  vjson=$(timeout 400 "$PY" "$KCOUNT" --broker "127.0.0.1:$kport" --topic "$topic" \
            --mode verify --max 300 2>> "$rd/counter.err")
  echo "$vjson" > "$rd/verify.json"
  halt "$tpid" TERM 20

  local row
  row=$(python3 - "$N" "$t0" "$t_sent" "${t_done:-}" "$cpu0" "$cpu1" "$(getconf CLK_TCK)" "$hwm" \
        "$m" "$vjson" "$lrc" "$tcpu0" "$tcpu1" "$idle_rss" "$idle_hwm" "$label" "$rate" <<'PYEOF'
import json, re, sys
(n, t0, t_sent, t_done, c0, c1, tck, hwm, mfile, vj, lrc, tc0, tc1, idle_rss, idle_hwm,
 label, rate) = sys.argv[1:]
n = int(n); t0 = float(t0); t_sent = float(t_sent); tck = int(tck)
metrics = {}
try:
    for line in open(mfile):
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.rsplit(None, 1)
        base = name.split("{")[0]
        metrics[base] = metrics.get(base, 0.0) + float(value)
except OSError:
    pass
g = lambda k: int(metrics.get("varde_collector_" + k, 0))
cpu = (int(c1) - int(c0)) / tck
out = g("events_out_total")
wall = "%.2f" % (float(t_done) - t0) if t_done else ">%.2f (only %d)" % (float(t_sent) - t0, out)
eps = "%.0f" % (n / cpu) if cpu > 0 else "-"
v = json.loads(vj) if vj.strip() else {}
print("|".join(["varde-collector", "", str(n), wall, "%.2f" % cpu, eps,
                "%.1f" % (int(hwm) / 1024), str(out)]))
print("detail: varde-collector (%s, loggen rate %s) sender rc=%s send_s=%.2f events_in=%d "
      "source_events=%d events_out=%d spool_records=%d parse_errors=%d kafka_errors=%d "
      "batches_out=%d kafka_messages=%s all_partitions_read=%s bytes_out=%d tansu_cpu_s=%.2f "
      "idle_rss_kib=%s idle_hwm_kib=%s"
      % (label, rate, lrc, t_sent - t0, g("events_in_total"), g("source_events_total"), out,
         g("spool_records"), g("parse_errors_total"), g("kafka_errors_total"),
         g("batches_out_total"), v.get("count"), v.get("all_eof"), g("bytes_out_total"),
         (int(tc1) - int(tc0)) / tck, idle_rss, idle_hwm))
PYEOF
)
  local fields
  fields=$(sed -n 1p <<< "$row" | awk -F'|' -v v="$VARDE_VERSION" 'BEGIN {OFS = "|"} {$2 = v; print}')
  VARDE_ROWS+=("$fields|$l0|$l1|$label|$idle_rss|$(sed -n 's/.*kafka_messages=\([^ ]*\).*/\1/p' <<< "$row")")
  VARDE_DETAILS+=("$(sed -n 2p <<< "$row")")
  log "$(sed -n 2p <<< "$row")"
  # the row in run.sh's layout
  printf '%-10s %-20s %9s %9s %8s %14s %13s %14s\n' "peer" "version" "events" "wall s" "CPU s" \
    "events/CPU-s" "peak RSS MB" "count in Kafka"
  awk -F'|' '{printf "%-10s %-20s %9s %9s %8s %14s %13s %14s\n", $1, $2, $3, $4, $5, $6, $7, $8}' <<< "$fields"
}

# ------------------------------------------------------------------- main ---
case $ONLY in all|peers|varde) ;; *) die "ONLY must be all, peers or varde" ;; esac
[ -x "$RUN_SH" ] || die "$RUN_SH not found"
mkdir -p "$W/runs"
DATE=$(date -u +%Y-%m-%dT%H:%MZ)
log "N=$N RUNS=$RUNS W=$W ONLY=$ONLY INTERLEAVE=$INTERLEAVE RATE=$RATE load $(loads)"
PEER_VERSION_LINE=
if [ "$ONLY" = varde ]; then
  prepare_varde
  for r in $(seq 1 "$RUNS"); do run_varde full "$r" 100000000; done
elif [ "$ONLY" = peers ] || [ "$INTERLEAVE" != 1 ]; then
  run_peers "$RUNS"
  if [ "$ONLY" = all ]; then
    prepare_varde
    for r in $(seq 1 "$RUNS"); do run_varde full "$r" 100000000; done
  fi
else
  for r in $(seq 1 "$RUNS"); do
    run_peers 1
    [ "$r" = 1 ] && prepare_varde
    run_varde full "$r" 100000000
  done
fi
if [ "$ONLY" != peers ] && [ "$RATE" != 0 ]; then
  for r in $(seq 1 "$RATE_RUNS"); do run_varde rate "$r" "$RATE"; done
fi

# ------------------------------------------------------------------ table ---
TABLE=$W/runs/peers-sh-$(date +%Y%m%d-%H%M%S).txt
{
  echo
  printf '%s\n' "${PEER_ROWS[@]/%/|full|-|-}" "${VARDE_ROWS[@]}" | grep . > "$TABLE.rows"
  python3 - "$TABLE.rows" "$RATE" <<'PYEOF'
import statistics, sys
rows = [l.rstrip("\n").split("|") for l in open(sys.argv[1]) if l.strip()]
rate_name = "varde-collector @%s/s" % sys.argv[2]
def num(x):
    try:
        return float(x)
    except ValueError:
        return None
fmt = "%-25s %-16s %9s %8s %9s %7s %10s %12s %8s %11s %10s"
print(fmt % ("program", "version", "events", "wall s", "events/s", "CPU s", "CPU s/1M", "events/CPU-s",
             "RSS MiB", "in Kafka", "load 1m"))
def line(name, ver, n, wall, cpu, rss, cnt, load):
    w, c = num(wall), num(cpu)
    eps = "%.0f" % (int(n) / w) if w else "-"
    per_m = "%.2f" % (c / int(n) * 1e6) if c else "-"
    epc = "%.0f" % (int(n) / c) if c else "-"
    print(fmt % (name, ver, n, wall, eps, cpu, per_m, epc, rss, cnt, load))
groups = []
for r in rows:
    name = r[0] if r[10] == "full" else rate_name
    key = (name, r[10])
    if key not in groups:
        groups.append(key)
    line(name, r[1], r[2], r[3], r[4], r[6], r[7], "%s-%s" % (r[8], r[9]))
summary = {}
for key in groups:
    rs = [r for r in rows if (r[0] if r[10] == "full" else rate_name, r[10]) == key]
    walls = [num(r[3]) for r in rs]; cpus = [num(r[4]) for r in rs]; rsss = [num(r[6]) for r in rs]
    if None in walls or None in cpus or None in rsss:
        continue
    w, c, m = statistics.median(walls), statistics.median(cpus), statistics.median(rsss)
    summary[key] = (int(rs[0][2]) / c, m, max(rsss), int(rs[0][2]) / w)
    if len(rs) > 1:
        line(key[0], "median of %d" % len(rs), rs[0][2], "%.2f" % w, "%.2f" % c, "%.1f" % m,
             ",".join(sorted(set(r[7] for r in rs))), "")
print()
peers = {k: v for k, v in summary.items() if not k[0].startswith("varde")}
vd = summary.get(("varde-collector", "full"))
vr = summary.get((rate_name, "rate"))
if peers and vd:
    best = max(peers.items(), key=lambda kv: kv[1][0])
    ratio = vd[0] / best[1][0]
    print("events per CPU-second, medians: varde-collector %.0f, better peer (%s) %.0f: %.2fx (goal >= 2x: %s)"
          % (vd[0], best[0][0], best[1][0], ratio, "met" if ratio >= 2 else "NOT met"))
if vr:
    print("peak RSS of varde-collector with loggen limited to %s/s: %.1f MiB = %.1f MB, events/s %.0f (goal <= 30 MB at 50k events/s: %s)"
          % (sys.argv[2], vr[2], vr[2] * 1.048576, vr[3], "met" if vr[2] * 1.048576 <= 30 else "NOT met"))
if vd:
    print("peak RSS of varde-collector at full speed: median %.1f MiB, max %.1f MiB" % (vd[1], vd[2]))
PYEOF
  echo
  echo "Counted: peers = Kafka messages read back by kcount.py (one per event; wall ends at the N-th);"
  echo "  varde-collector = events Kafka acknowledged per its /metrics (events_out_total, spool_records 0;"
  echo "  wall ends when /metrics first shows that, polled every 0.1 s); one Kafka message carries up to"
  echo "  $VARDE_MAX_ROWS events (an Arrow batch); kcount.py's message count and batches_out_total are in the details."
  echo "CPU s = utime+stime of the daemon's process during the run; RSS = VmHWM (peak) in MiB;"
  echo "  events/s = N / wall; load 1m = 1-minute load average at the start-end of the step (peers: of the run.sh call)."
  [ -n "$PEER_VERSION_LINE" ] && echo "peers: $PEER_VERSION_LINE"
  if [ -n "$VARDE_RUNDIR" ]; then
    echo "varde-collector: $VARDE_VERSION, librdkafka 2.12.1 (rdkafka-sys, static), defaults except batch.max_rows=$VARDE_MAX_ROWS spool.fsync=$VARDE_FSYNC;"
    echo "  binary $BIN_BYTES bytes, stripped $STRIPPED_BYTES bytes ($(awk -v b="$STRIPPED_BYTES" 'BEGIN {printf "%.1f", b / 1048576}') MiB);" \
         "idle RSS after start (VmRSS, before load): $(printf '%s\n' "${VARDE_ROWS[@]}" | awk -F'|' '{printf "%s%.1f", s, $12 / 1024; s = ", "}') MiB"
  fi
  echo "machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); date $DATE; N=$N, RUNS=$RUNS, INTERLEAVE=$INTERLEAVE"
  for d in "${PEER_DETAILS[@]}" "${VARDE_DETAILS[@]}"; do [ -n "$d" ] && echo "$d"; done
} | tee "$TABLE"
log "table written to $TABLE"

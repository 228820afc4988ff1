#!/usr/bin/env bash
# Varde development and CI services, on loopback only:
#   - ClickHouse from Debian's packages (clickhouse-server / clickhouse-client)
#   - tansu, a Kafka-protocol broker built from crates.io, with sqlite storage
#   - a local ClickHouse cluster for the cluster tests: ZooKeeper and 2 shards x 2 replicas of
#     the same clickhouse-server (deploy/dev/cluster.sh, which also starts other shapes)
# and, with `up` alone, what the tests need besides them: the Debian packages the build links
# against and the real syslog senders of the collector's tests (deploy/dev/peers.sh).
#
#   services.sh up     [clickhouse|kafka|cluster|tools]   install if missing, start, wait until ready
#   services.sh down   [clickhouse|kafka|cluster]   stop (data is kept)
#   services.sh status                      what runs, where, and its pid
#   services.sh reset                       stop everything and delete the data
#
# Idempotent: `up` on a running service only checks it; installs are skipped
# when the binaries are present. Ports come from deploy/dev/ports.env
# (environment overrides win). Data, logs and pid files live under
# $VARDE_DEV_DIR (default: <repo>/.dev), never in system locations.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

# ports.env sets defaults only for variables the caller did not set.
while IFS='=' read -r key value; do
  case "$key" in ''|\#*) continue ;; esac
  if [ -z "${!key:-}" ]; then export "$key=$value"; fi
done < "$HERE/ports.env"

DEV=${VARDE_DEV_DIR:-$ROOT/.dev}
RUN=$DEV/run
LOGS=$DEV/logs
CH_DATA=$DEV/data/clickhouse
CH_CONF=$DEV/conf/clickhouse
KAFKA_DATA=$DEV/data/tansu
TANSU_VERSION=0.6.0
TANSU_FEATURES=dynostore,libsql
TANSU_BIN=${TANSU_BIN:-$HOME/.cargo/bin/tansu}

log() { printf '[services] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

pid_alive() {
  local f=$1
  [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# alive_and NAME CHECK: CHECK passes, or fails the whole script at once if NAME's process died.
alive_and() {
  local name=$1 check=$2
  if ! pid_alive "$RUN/$name.pid"; then
    log "$name exited during start; last lines of its log:"
    tail -n 20 "$LOGS/$name"*.log >&2 || true
    die "$name failed to start"
  fi
  "$check"
}

wait_for() {
  local what=$1 seconds=$2
  shift 2
  local i
  for ((i = 0; i < seconds * 5; i++)); do
    if "$@"; then return 0; fi
    sleep 0.2
  done
  die "$what did not become ready within ${seconds}s (logs: $LOGS)"
}

# ----------------------------------------------------------------- tools ---
# Debian packages the build and the tests need: librdkafka's TLS/SASL and zlib, `logger` (the
# collector tests' syslog sender), curl (these scripts); then loggen and rsyslogd (peers.sh).
SYSTEM_PACKAGES="build-essential pkg-config zlib1g-dev libssl-dev bsdutils curl python3"

up_tools() {
  local missing=() pkg
  for pkg in $SYSTEM_PACKAGES; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  "$HERE/peers.sh" >/dev/null
  "$HERE/browser.sh" >/dev/null
  # The notification tests' SMTP server (a real one, with STARTTLS, implicit TLS and AUTH).
  python3 -c "import aiosmtpd" 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check "aiosmtpd==1.4.6"
  # The report tests' validators: OASIS's STIX validator and MISP's own library.
  python3 -c "import stix2validator, pymisp" 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check "stix2-validator==3.3.2" "pymisp==2.5.34.4"
  log "tools ready: Debian packages, loggen and rsyslogd (deploy/dev/peers.sh), Chromium, playwright-core and axe-core (deploy/dev/browser.sh), aiosmtpd, stix2-validator and pymisp (PyPI)"
}

# ------------------------------------------------------------ ClickHouse ---
install_clickhouse() {
  if command -v clickhouse-server >/dev/null && command -v clickhouse-client >/dev/null; then
    return 0
  fi
  log "installing clickhouse-server and clickhouse-client from Debian's packages"
  # The package's own service must not start on the system ports: policy-rc.d
  # is honoured by invoke-rc.d during the install.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
    apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
}

clickhouse_ready() {
  [ "$(curl -fsS "http://127.0.0.1:$VARDE_CLICKHOUSE_HTTP_PORT/ping" 2>/dev/null)" = "Ok." ]
}

up_clickhouse() {
  install_clickhouse
  if pid_alive "$RUN/clickhouse.pid" && clickhouse_ready; then
    log "clickhouse already running (http 127.0.0.1:$VARDE_CLICKHOUSE_HTTP_PORT)"
    return 0
  fi
  if port_open "$VARDE_CLICKHOUSE_HTTP_PORT"; then
    die "port $VARDE_CLICKHOUSE_HTTP_PORT is taken by another process; set VARDE_CLICKHOUSE_HTTP_PORT"
  fi
  mkdir -p "$CH_DATA/tmp" "$CH_DATA/user_files" "$CH_DATA/format_schemas" "$CH_CONF" "$LOGS" "$RUN"
  sed -e "s#@DATA@#$CH_DATA#g" -e "s#@LOGS@#$LOGS#g" -e "s#@CONF@#$CH_CONF#g" \
      -e "s#@HTTP_PORT@#$VARDE_CLICKHOUSE_HTTP_PORT#g" -e "s#@TCP_PORT@#$VARDE_CLICKHOUSE_TCP_PORT#g" \
      "$HERE/clickhouse-config.xml.tmpl" > "$CH_CONF/config.xml"
  cp "$HERE/clickhouse-users.xml" "$CH_CONF/users.xml"
  log "starting clickhouse (http 127.0.0.1:$VARDE_CLICKHOUSE_HTTP_PORT, native $VARDE_CLICKHOUSE_TCP_PORT)"
  (cd "$CH_DATA" || exit 1
   nohup clickhouse-server --config-file="$CH_CONF/config.xml" >"$LOGS/clickhouse.stdout.log" 2>&1 &
   echo $! >"$RUN/clickhouse.pid")
  wait_for clickhouse 60 alive_and clickhouse clickhouse_ready
  log "clickhouse ready: $(curl -fsS "http://127.0.0.1:$VARDE_CLICKHOUSE_HTTP_PORT/?query=SELECT%20version()")"
}

# ----------------------------------------------------------------- Kafka ---
install_tansu() {
  if [ -x "$TANSU_BIN" ] && "$TANSU_BIN" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
    return 0
  fi
  log "building tansu $TANSU_VERSION from crates.io (about 15 minutes on 2 cores; cached in ~/.cargo/bin afterwards)"
  cargo install "tansu@$TANSU_VERSION" --locked --features "$TANSU_FEATURES" >"${LOGS:-/tmp}/tansu-install.log" 2>&1 \
    || die "cargo install tansu failed; see ${LOGS:-/tmp}/tansu-install.log"
  TANSU_BIN=$HOME/.cargo/bin/tansu
}

kafka_ready() {
  port_open "$VARDE_KAFKA_PORT"
}

up_kafka() {
  mkdir -p "$LOGS" "$RUN" "$KAFKA_DATA"
  install_tansu
  if pid_alive "$RUN/kafka.pid" && kafka_ready; then
    log "kafka (tansu) already running (127.0.0.1:$VARDE_KAFKA_PORT)"
    return 0
  fi
  if port_open "$VARDE_KAFKA_PORT"; then
    die "port $VARDE_KAFKA_PORT is taken by another process; set VARDE_KAFKA_PORT"
  fi
  log "starting kafka (tansu $TANSU_VERSION, sqlite storage) on 127.0.0.1:$VARDE_KAFKA_PORT"
  # tansu resolves a sqlite:// path relative to its working directory, so it runs in its data
  # directory with a relative path.
  (cd "$KAFKA_DATA" || exit 1
   nohup "$TANSU_BIN" broker \
      --listener-url "tcp://127.0.0.1:$VARDE_KAFKA_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$VARDE_KAFKA_PORT" \
      --storage-engine "sqlite://tansu.db" \
      >>"$LOGS/kafka.log" 2>&1 &
   echo $! >"$RUN/kafka.pid")
  wait_for kafka 60 alive_and kafka kafka_ready
  log "kafka ready"
}

# ------------------------------------------------------------- lifecycle ---
stop_pidfile() {
  local name=$1 f=$RUN/$1.pid pid i
  if ! pid_alive "$f"; then
    rm -f "$f"
    log "$name not running"
    return 0
  fi
  pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop on TERM within 10s; killing"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
  log "$name stopped"
}

status() {
  local rc=0
  if pid_alive "$RUN/clickhouse.pid" && clickhouse_ready; then
    echo "clickhouse: running  pid $(cat "$RUN/clickhouse.pid")  http://127.0.0.1:$VARDE_CLICKHOUSE_HTTP_PORT  native 127.0.0.1:$VARDE_CLICKHOUSE_TCP_PORT  data $CH_DATA"
  else
    echo "clickhouse: stopped  (expected http 127.0.0.1:$VARDE_CLICKHOUSE_HTTP_PORT)"
    rc=1
  fi
  if pid_alive "$RUN/kafka.pid" && kafka_ready; then
    echo "kafka:      running  pid $(cat "$RUN/kafka.pid")  127.0.0.1:$VARDE_KAFKA_PORT (tansu $TANSU_VERSION)  data $KAFKA_DATA"
  else
    echo "kafka:      stopped  (expected 127.0.0.1:$VARDE_KAFKA_PORT)"
    rc=1
  fi
  VARDE_DEV_DIR=$DEV "$HERE/cluster.sh" status | sed 's/^/cluster: /' || rc=1
  return $rc
}

which_services() {
  case "${1:-all}" in
    all) echo "tools clickhouse kafka cluster" ;;
    clickhouse|kafka|cluster|tools) echo "$1" ;;
    *) die "unknown service '$1' (clickhouse, kafka, cluster, tools)" ;;
  esac
}

# ---------------------------------------------------------------- cluster ---
up_cluster() {
  VARDE_DEV_DIR=$DEV "$HERE/cluster.sh" up 2 2
}

cmd=${1:-}
case "$cmd" in
  up)
    for s in $(which_services "${2:-all}"); do "up_$s"; done
    ;;
  down)
    for s in $(which_services "${2:-all}"); do
      case "$s" in
        tools) ;;
        cluster) VARDE_DEV_DIR=$DEV "$HERE/cluster.sh" down ;;
        *) stop_pidfile "$s" ;;
      esac
    done
    ;;
  status)
    status
    ;;
  reset)
    for s in clickhouse kafka; do stop_pidfile "$s"; done
    VARDE_DEV_DIR=$DEV "$HERE/cluster.sh" reset
    rm -rf "$DEV/data"
    log "data under $DEV/data deleted"
    ;;
  env)
    # For scripts: the resolved ports, one KEY=value per line.
    echo "VARDE_CLICKHOUSE_HTTP_PORT=$VARDE_CLICKHOUSE_HTTP_PORT"
    echo "VARDE_CLICKHOUSE_TCP_PORT=$VARDE_CLICKHOUSE_TCP_PORT"
    echo "VARDE_KAFKA_PORT=$VARDE_KAFKA_PORT"
    ;;
  *)
    sed -n '2,17p' "$0" >&2
    exit 2
    ;;
esac

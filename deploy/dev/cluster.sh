#!/usr/bin/env bash
# A local ClickHouse cluster for Varde's cluster tests, on loopback only:
#   - ZooKeeper from Debian's `zookeeper` package (one server, standalone)
#   - SHARDS x REPLICAS ClickHouse servers from Debian's clickhouse-server, each with its own
#     ports, data and logs, in one cluster named `varde` (internal_replication: a write goes
#     to one replica of a shard and ReplicatedMergeTree copies it to the others)
#
#   cluster.sh up     [SHARDS REPLICAS]   install if missing, start, wait until ready (default 2 2)
#   cluster.sh down                       stop (data is kept)
#   cluster.sh status                     what runs, where
#   cluster.sh reset                      stop and delete the data
#   cluster.sh stop-node S R | start-node S R
#                                         stop or start one server (shard S, replica R, from 1)
#   cluster.sh env                        the nodes' ports, for scripts and tests
#
# Idempotent like services.sh: `up` on a running cluster of the same shape only checks it; a
# different shape is refused until `down`. Ports: ZooKeeper $VARDE_ZK_PORT (19181); node i
# (from 0, shard-major) HTTP 18200+i, native 19200+i, interserver 19300+i. Everything lives
# under $VARDE_DEV_DIR/cluster (default <repo>/.dev/cluster), never in system locations.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

# ports.env sets defaults only for variables the caller did not set.
while IFS='=' read -r key value; do
  case "$key" in ''|\#*) continue ;; esac
  if [ -z "${!key:-}" ]; then export "$key=$value"; fi
done < "$HERE/ports.env"

DEV=${VARDE_DEV_DIR:-$ROOT/.dev}
BASE=$DEV/cluster
ZK_PORT=${VARDE_ZK_PORT:-19181}
HTTP_BASE=${VARDE_CLUSTER_HTTP_BASE:-18200}
TCP_BASE=${VARDE_CLUSTER_TCP_BASE:-19200}
INTERSERVER_BASE=${VARDE_CLUSTER_INTERSERVER_BASE:-19300}
ZK_JAR=/usr/share/java/zookeeper.jar

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

pid_alive() {
  [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

wait_for() {
  local what=$1 seconds=$2 pidfile=$3
  shift 3
  local i
  for ((i = 0; i < seconds * 5; i++)); do
    if "$@"; then return 0; fi
    if ! pid_alive "$pidfile"; then
      log "$what exited during start; last lines of its logs:"
      tail -n 30 "$(dirname "$pidfile")"/*.log >&2 || true
      die "$what failed to start"
    fi
    sleep 0.2
  done
  die "$what did not become ready within ${seconds}s (logs: $(dirname "$pidfile"))"
}

stop_pid() {
  local name=$1 f=$2
  pid_alive "$f" || { rm -f "$f"; return 0; }
  local pid i
  pid=$(cat "$f")
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop on TERM within 10s; killing"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
  log "$name stopped"
}

install() {
  local missing=()
  command -v clickhouse-server >/dev/null || missing+=(clickhouse-server clickhouse-client)
  [ -f "$ZK_JAR" ] || missing+=(zookeeper)
  command -v java >/dev/null || missing+=(default-jre-headless)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    # RUNLEVEL=1: the packages' own services must not start on the system ports.
    as_root env DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# ------------------------------------------------------------- ZooKeeper ---
# Serving sessions, not only answering: `ruok` says imok before the server takes sessions, and a
# ClickHouse node that cannot open its session at start gives up loading its replicated tables.
zk_ready() {
  (exec 3<>"/dev/tcp/127.0.0.1/$ZK_PORT"; printf stat >&3; timeout 2 cat <&3) 2>/dev/null \
    | grep -q '^Mode: standalone'
}

up_zookeeper() {
  local dir=$BASE/zookeeper
  if pid_alive "$dir/zookeeper.pid" && zk_ready; then
    return 0
  fi
  port_open "$ZK_PORT" && die "port $ZK_PORT is taken by another process; set VARDE_ZK_PORT"
  mkdir -p "$dir/data"
  cat > "$dir/zoo.cfg" <<EOF
# Rendered by deploy/dev/cluster.sh.
tickTime=2000
dataDir=$dir/data
clientPort=$ZK_PORT
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,stat,mntr
EOF
  log "starting zookeeper (127.0.0.1:$ZK_PORT)"
  (cd "$dir" || exit 1
   nohup java -Xmx256m -cp "$ZK_JAR" org.apache.zookeeper.server.ZooKeeperServerMain \
     "$dir/zoo.cfg" > "$dir/zookeeper.log" 2>&1 &
   echo $! > "$dir/zookeeper.pid")
  wait_for zookeeper 60 "$dir/zookeeper.pid" zk_ready
}

# ------------------------------------------------------------ ClickHouse ---
node_dir() { echo "$BASE/ch-$1-$2"; }

# node_index S R: the node's index from 0, shard-major.
node_index() { echo $(( ($1 - 1) * REPLICAS + ($2 - 1) )); }

node_ready() {
  [ "$(curl -fsS "http://127.0.0.1:$1/ping" 2>/dev/null)" = "Ok." ]
}

remote_servers() {
  local s r i
  echo "    <remote_servers>"
  echo "        <varde>"
  for ((s = 1; s <= SHARDS; s++)); do
    echo "            <shard>"
    echo "                <internal_replication>true</internal_replication>"
    for ((r = 1; r <= REPLICAS; r++)); do
      i=$(node_index "$s" "$r")
      echo "                <replica><host>127.0.0.1</host><port>$((TCP_BASE + i))</port></replica>"
    done
    echo "            </shard>"
  done
  echo "        </varde>"
  echo "    </remote_servers>"
}

render_node() {
  local s=$1 r=$2 dir i
  dir=$(node_dir "$s" "$r")
  i=$(node_index "$s" "$r")
  mkdir -p "$dir/data/tmp" "$dir/data/user_files" "$dir/data/format_schemas"
  {
    cat <<EOF
<?xml version="1.0"?>
<!-- Varde's local cluster, shard $s replica $r. Rendered by deploy/dev/cluster.sh. -->
<yandex>
    <logger>
        <level>warning</level>
        <log>$dir/clickhouse-server.log</log>
        <errorlog>$dir/clickhouse-server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <http_port>$((HTTP_BASE + i))</http_port>
    <tcp_port>$((TCP_BASE + i))</tcp_port>
    <interserver_http_port>$((INTERSERVER_BASE + i))</interserver_http_port>
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <listen_host>127.0.0.1</listen_host>
    <max_connections>256</max_connections>
    <keep_alive_timeout>10</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mark_cache_size>67108864</mark_cache_size>
    <path>$dir/data/</path>
    <tmp_path>$dir/data/tmp/</tmp_path>
    <user_files_path>$dir/data/user_files/</user_files_path>
    <format_schema_path>$dir/data/format_schemas/</format_schema_path>
    <users_config>$dir/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
    <max_table_size_to_drop>0</max_table_size_to_drop>
    <max_partition_size_to_drop>0</max_partition_size_to_drop>
    <zookeeper>
        <node><host>127.0.0.1</host><port>$ZK_PORT</port></node>
        <session_timeout_ms>30000</session_timeout_ms>
    </zookeeper>
    <distributed_ddl>
        <path>/clickhouse/task_queue/ddl</path>
    </distributed_ddl>
    <macros>
        <cluster>varde</cluster>
        <shard>$s</shard>
        <replica>r$r</replica>
    </macros>
EOF
    remote_servers
    echo "</yandex>"
  } > "$dir/config.xml"
  cp "$HERE/clickhouse-users.xml" "$dir/users.xml"
}

up_node() {
  local s=$1 r=$2 dir i http
  dir=$(node_dir "$s" "$r")
  i=$(node_index "$s" "$r")
  http=$((HTTP_BASE + i))
  if pid_alive "$dir/clickhouse.pid" && node_ready "$http"; then
    return 0
  fi
  port_open "$http" && die "port $http is taken by another process; set VARDE_CLUSTER_HTTP_BASE"
  render_node "$s" "$r"
  log "starting clickhouse shard $s replica $r (http 127.0.0.1:$http, native $((TCP_BASE + i)))"
  (cd "$dir/data" || exit 1
   nohup clickhouse-server --config-file="$dir/config.xml" > "$dir/stdout.log" 2>&1 &
   echo $! > "$dir/clickhouse.pid")
}

# node_started S R: 0 once the node answers; 1 at once if its process has exited; 2 after 90 s.
node_started() {
  local dir http i
  dir=$(node_dir "$1" "$2")
  http=$((HTTP_BASE + $(node_index "$1" "$2")))
  for ((i = 0; i < 450; i++)); do
    node_ready "$http" && return 0
    pid_alive "$dir/clickhouse.pid" || return 1
    sleep 0.2
  done
  return 2
}

wait_node() {
  local s=$1 r=$2 dir attempt rc
  dir=$(node_dir "$s" "$r")
  # A node whose ZooKeeper session failed while it loaded its replicated tables exits; it is
  # started again (twice at most) before the script gives up.
  for attempt in 1 2 3; do
    rc=0
    node_started "$s" "$r" || rc=$?
    [ "$rc" -eq 0 ] && return 0
    [ "$rc" -eq 2 ] && die "clickhouse shard $s replica $r did not become ready within 90s (logs: $dir)"
    log "clickhouse shard $s replica $r exited during start (attempt $attempt); last lines of its log:"
    tail -n 5 "$dir/clickhouse-server.err.log" >&2 || true
    [ "$attempt" -lt 3 ] && { sleep 2; up_node "$s" "$r"; }
  done
  die "clickhouse shard $s replica $r failed to start (logs: $dir)"
}

read_shape() {
  if [ -f "$BASE/shape" ]; then read -r SHARDS REPLICAS < "$BASE/shape"; else SHARDS=0 REPLICAS=0; fi
}

any_node_alive() {
  local f
  for f in "$BASE"/ch-*/clickhouse.pid; do
    [ -e "$f" ] && pid_alive "$f" && return 0
  done
  return 1
}

up() {
  local want_s=${1:-2} want_r=${2:-2} s r
  [[ "$want_s" =~ ^[1-9]$ && "$want_r" =~ ^[1-9]$ ]] || die "shards and replicas: 1 to 9 each"
  read_shape
  if any_node_alive && [ "$SHARDS $REPLICAS" != "$want_s $want_r" ]; then
    die "a ${SHARDS}x${REPLICAS} cluster is running; cluster.sh down first"
  fi
  SHARDS=$want_s REPLICAS=$want_r
  install
  mkdir -p "$BASE"
  echo "$SHARDS $REPLICAS" > "$BASE/shape"
  up_zookeeper
  for ((s = 1; s <= SHARDS; s++)); do
    for ((r = 1; r <= REPLICAS; r++)); do up_node "$s" "$r"; done
  done
  for ((s = 1; s <= SHARDS; s++)); do
    for ((r = 1; r <= REPLICAS; r++)); do wait_node "$s" "$r"; done
  done
  log "cluster varde ready: $SHARDS shard(s) x $REPLICAS replica(s), clickhouse $(curl -fsS "http://127.0.0.1:$HTTP_BASE/?query=SELECT%20version()"), zookeeper 127.0.0.1:$ZK_PORT"
}

down() {
  local f
  for f in "$BASE"/ch-*/clickhouse.pid; do
    [ -e "$f" ] && stop_pid "clickhouse $(basename "$(dirname "$f")")" "$f"
  done
  stop_pid zookeeper "$BASE/zookeeper/zookeeper.pid"
}

status() {
  local s r i dir rc=0
  read_shape
  if pid_alive "$BASE/zookeeper/zookeeper.pid" && zk_ready; then
    echo "zookeeper: running  127.0.0.1:$ZK_PORT"
  else
    echo "zookeeper: stopped"; rc=1
  fi
  for ((s = 1; s <= SHARDS; s++)); do
    for ((r = 1; r <= REPLICAS; r++)); do
      i=$(node_index "$s" "$r"); dir=$(node_dir "$s" "$r")
      if pid_alive "$dir/clickhouse.pid" && node_ready $((HTTP_BASE + i)); then
        echo "shard $s replica $r: running  http 127.0.0.1:$((HTTP_BASE + i))  native $((TCP_BASE + i))"
      else
        echo "shard $s replica $r: stopped"; rc=1
      fi
    done
  done
  return $rc
}

env_out() {
  local s r i
  read_shape
  echo "VARDE_ZK_PORT=$ZK_PORT"
  echo "VARDE_CLUSTER_SHARDS=$SHARDS"
  echo "VARDE_CLUSTER_REPLICAS=$REPLICAS"
  for ((s = 1; s <= SHARDS; s++)); do
    for ((r = 1; r <= REPLICAS; r++)); do
      i=$(node_index "$s" "$r")
      echo "VARDE_CLUSTER_NODE_${s}_${r}=http://127.0.0.1:$((HTTP_BASE + i))"
    done
  done
}

cmd=${1:-}
case "$cmd" in
  up) up "${2:-2}" "${3:-2}" ;;
  down) down ;;
  status) status ;;
  reset) down; rm -rf "$BASE"; log "data under $BASE deleted" ;;
  stop-node)
    read_shape
    stop_pid "clickhouse shard $2 replica $3" "$(node_dir "$2" "$3")/clickhouse.pid"
    ;;
  start-node)
    read_shape
    up_node "$2" "$3"; wait_node "$2" "$3"
    ;;
  env) env_out ;;
  *) sed -n '2,18p' "$0" >&2; exit 2 ;;
esac

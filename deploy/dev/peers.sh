#!/usr/bin/env bash
# Real syslog senders for the collector's tests (collectors/tests/peers.rs): syslog-ng's
# `loggen` and `rsyslogd`, from Debian's own packages, without installing the daemons; and the
# packet and flow tools of the flow tests (collectors/tests/flows.rs): tcpdump, tshark, openssl,
# curl, softflowd, nfdump, dnsmasq (a resolver) and dig.
#
#   deploy/dev/peers.sh          install when missing, check, print the paths
#   eval "$(deploy/dev/peers.sh)"   ... and export VARDE_LOGGEN / VARDE_RSYSLOGD
#
# Why not `apt-get install rsyslog syslog-ng-core`: both packages Provide and Conflict with
# system-log-daemon, so apt cannot have both at once, and either would register and start a
# system service. Instead the two .debs are fetched with `apt-get download` into a cache
# directory, unpacked with `dpkg -x` into private roots there, and only their shared-library
# dependencies (the lib* entries of the packages' Depends) are apt-installed.
#
# Idempotent: when both roots are unpacked and every library resolves (ldd), a run only checks
# and prints. Everything lives under $VARDE_PEERS_DIR (default ~/.cache/varde-peers):
#   debs/        the downloaded .debs
#   rsyslog/     rsyslog unpacked:        usr/sbin/rsyslogd, usr/lib/<multiarch>/rsyslog/*.so
#   syslog-ng/   syslog-ng-core unpacked: usr/bin/loggen, usr/lib/syslog-ng/
#   rsyslog-kafka/  rsyslog-kafka unpacked; its omkafka.so is copied into rsyslog's modules
#   rsyslog-relp/   rsyslog-relp unpacked; its omrelp.so likewise
#   librdkafka-2.12.1/librdkafka.so.1   built from rdkafka-sys's source, for omkafka
#
# How to run them (the tests do this themselves):
#   loggen:   LD_LIBRARY_PATH=<root>/usr/lib/syslog-ng SYSLOGNG_PREFIX=<root>/usr <root>/usr/bin/loggen ...
#   rsyslogd: <root>/usr/sbin/rsyslogd -n -M <root>/usr/lib/<multiarch>/rsyslog -f <conf> -i <pidfile>
#             with global(workDirectory=...) in <conf>; -n keeps it in the foreground.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
DIR=${VARDE_PEERS_DIR:-$HOME/.cache/varde-peers}
DEBS=$DIR/debs
RS_ROOT=$DIR/rsyslog
RSK_ROOT=$DIR/rsyslog-kafka
RSR_ROOT=$DIR/rsyslog-relp
SN_ROOT=$DIR/syslog-ng
# librdkafka for omkafka: Debian 12's librdkafka1 2.0.2 cannot talk to the development broker
# (its ApiVersion v3 parsing bug, fixed in librdkafka 2.2.0), so omkafka runs with the 2.12.1
# that Varde itself links, built as a shared library from the rdkafka-sys source in cargo's
# registry (about 2 minutes, once) and put first on rsyslogd's LD_LIBRARY_PATH.
RDKAFKA_SYS=rdkafka-sys-4.10.0+2.12.1
LIBRDKAFKA=$DIR/librdkafka-2.12.1

log() { printf '[peers] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_update() {
  if [ $apt_updated = 0 ]; then
    log "apt-get update"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
    apt_updated=1
  fi
}

deb_of() { ls "$DEBS/${1}_"*.deb 2>/dev/null | sort | tail -n 1 || true; }

# fetch PACKAGE: its .deb into $DEBS, unless one is there already.
fetch() {
  local pkg=$1
  [ -n "$(deb_of "$pkg")" ] && return 0
  mkdir -p "$DEBS"
  log "apt-get download $pkg"
  # As root, apt warns that the download is unsandboxed (the _apt user cannot write here).
  (cd "$DEBS" && apt-get download -q "$pkg" 2>&1 | grep -v -i unsandboxed >&2) || true
  if [ -z "$(deb_of "$pkg")" ]; then  # stale package lists: update once and retry
    apt_update
    (cd "$DEBS" && apt-get download -q "$pkg" 2>&1 | grep -v -i unsandboxed >&2) || true
  fi
  [ -n "$(deb_of "$pkg")" ] || die "could not download $pkg"
}

# unpack PACKAGE ROOT MARKER: dpkg -x into ROOT unless ROOT/MARKER exists. Unpacks beside it
# first, so an interrupted run never leaves a root that looks complete.
unpack() {
  local pkg=$1 root=$2 marker=$3 deb
  [ -e "$root/$marker" ] && [ -f "$root/.varde-depends" ] && return 0
  fetch "$pkg"
  deb=$(deb_of "$pkg")
  log "unpacking $(basename "$deb") into $root"
  rm -rf "$root.tmp" "$root"
  mkdir -p "$root.tmp"
  dpkg -x "$deb" "$root.tmp"
  dpkg-deb -f "$deb" Depends > "$root.tmp/.varde-depends"
  printf '%s %s\n' "$pkg" "$(dpkg-deb -f "$deb" Version)" > "$root.tmp/.varde-version"
  [ -e "$root.tmp/$marker" ] || die "$deb has no $marker"
  mv "$root.tmp" "$root"
}

# The package names of the lib* dependencies in ROOT/.varde-depends (first alternative of each).
lib_depends() {
  tr ',' '\n' < "$1/.varde-depends" | sed -e 's/|.*//' -e 's/(.*)//' -e 's/[[:space:]]//g' \
    | grep -E '^(lib|zlib)' || true
}

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed'; }

unpack rsyslog "$RS_ROOT" usr/sbin/rsyslogd
unpack syslog-ng-core "$SN_ROOT" usr/bin/loggen
# rsyslog's Kafka output (omkafka), for the third-party shipper test: its module is copied
# into rsyslog's module directory below.
unpack rsyslog-kafka "$RSK_ROOT" usr/lib
# rsyslog's RELP output (omrelp, on Debian's librelp0), for the collector's RELP test.
unpack rsyslog-relp "$RSR_ROOT" usr/lib

missing=()
for p in $(lib_depends "$RS_ROOT") $(lib_depends "$SN_ROOT") $(lib_depends "$RSK_ROOT") $(lib_depends "$RSR_ROOT") make gcc tcpdump tshark openssl curl softflowd nfdump dnsmasq-base bind9-dnsutils; do
  installed "$p" || case " ${missing[*]-} " in *" $p "*) ;; *) missing+=("$p") ;; esac
done
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null; then
    apt_update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
  fi
fi

RSYSLOGD=$RS_ROOT/usr/sbin/rsyslogd
RS_MODULES=$(ls -d "$RS_ROOT"/usr/lib/*/rsyslog 2>/dev/null | head -n 1 || true)
[ -n "$RS_MODULES" ] && [ -f "$RS_MODULES/imtcp.so" ] || die "no rsyslog module directory in $RS_ROOT"
OMKAFKA=$(find "$RSK_ROOT" -name omkafka.so | head -n 1)
[ -n "$OMKAFKA" ] || die "no omkafka.so in $RSK_ROOT"
cp -f "$OMKAFKA" "$RS_MODULES/omkafka.so"
OMRELP=$(find "$RSR_ROOT" -name omrelp.so | head -n 1)
[ -n "$OMRELP" ] || die "no omrelp.so in $RSR_ROOT"
cp -f "$OMRELP" "$RS_MODULES/omrelp.so"

if [ ! -f "$LIBRDKAFKA/librdkafka.so.1" ]; then
  src=$(ls -d "$HOME"/.cargo/registry/src/*/"$RDKAFKA_SYS" 2>/dev/null | head -n 1 || true)
  if [ -z "$src" ]; then
    log "fetching $RDKAFKA_SYS's source with cargo fetch"
    (cd "$HERE/../.." && cargo fetch --locked >/dev/null 2>&1) || die "cargo fetch failed"
    src=$(ls -d "$HOME"/.cargo/registry/src/*/"$RDKAFKA_SYS" 2>/dev/null | head -n 1 || true)
  fi
  [ -n "$src" ] || die "$RDKAFKA_SYS not in cargo's registry"
  log "building librdkafka 2.12.1 (shared) from $src (about 2 minutes, once)"
  build=$DIR/build-librdkafka
  rm -rf "$build" && mkdir -p "$build" && cp -r "$src/librdkafka/." "$build/"
  (cd "$build" && ./configure --disable-ssl --disable-gssapi --disable-curl --disable-lz4-ext \
      >"$DIR/librdkafka-configure.log" 2>&1 \
    && make -C src -j"$(nproc)" librdkafka.so.1 >"$DIR/librdkafka-make.log" 2>&1) \
    || die "librdkafka build failed; see $DIR/librdkafka-*.log"
  mkdir -p "$LIBRDKAFKA.tmp"
  cp "$build/src/librdkafka.so.1" "$LIBRDKAFKA.tmp/"
  rm -rf "$LIBRDKAFKA" && mv "$LIBRDKAFKA.tmp" "$LIBRDKAFKA"
  rm -rf "$build"
fi

LOGGEN=$SN_ROOT/usr/bin/loggen
SN_LIBS=$SN_ROOT/usr/lib/syslog-ng
SN_LOGGEN_PLUGINS=$(ls -d "$SN_LIBS"/*/loggen 2>/dev/null | head -n 1 || true)
[ -n "$SN_LOGGEN_PLUGINS" ] || die "no loggen plugin directory under $SN_LIBS"

# Every shared library of what the tests run must resolve.
unresolved=$( {
  ldd "$RSYSLOGD" "$RS_MODULES"/{imtcp,imudp,lmnet,lmnetstrms,lmnsd_ptcp,lmtcpsrv,lmtcpclt}.so
  LD_LIBRARY_PATH=$LIBRDKAFKA ldd "$RS_MODULES/omkafka.so"
  ldd "$RS_MODULES/omrelp.so"
  LD_LIBRARY_PATH=$SN_LIBS ldd "$LOGGEN" "$SN_LOGGEN_PLUGINS"/*.so
} 2>&1 | grep -E 'not found|No such file' || true)
[ -z "$unresolved" ] || die "unresolved libraries (a missing Depends?):
$unresolved"

# And both must start.
"$RSYSLOGD" -v >/dev/null 2>&1 || die "$RSYSLOGD -v failed"
# (loggen has no --version; its --help lists the socket plugin's options once it loaded them)
LD_LIBRARY_PATH=$SN_LIBS SYSLOGNG_PREFIX=$SN_ROOT/usr "$LOGGEN" --help-all 2>&1 | grep -q -e '--inet' \
  || die "$LOGGEN does not start or finds no socket plugin (SYSLOGNG_PREFIX=$SN_ROOT/usr)"

log "ready: $(cat "$RS_ROOT/.varde-version"), $(cat "$RSK_ROOT/.varde-version"), $(cat "$RSR_ROOT/.varde-version"), $(cat "$SN_ROOT/.varde-version"), librdkafka 2.12.1 for omkafka"
cat <<EOF
export VARDE_LOGGEN=$LOGGEN
export VARDE_RSYSLOGD=$RSYSLOGD
export VARDE_RSYSLOG_LIBRDKAFKA=$LIBRDKAFKA
# loggen:   LD_LIBRARY_PATH=$SN_LIBS SYSLOGNG_PREFIX=$SN_ROOT/usr
# rsyslogd: -n -M $RS_MODULES -f <config> -i <pidfile>
EOF

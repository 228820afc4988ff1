#!/usr/bin/env bash
# Provides what the dashboard's browser tests (tests/browser.rs) drive: Debian's Chromium, Node.js
# and the npm packages tests/browser/package-lock.json pins (playwright-core, axe-core), installed
# under $VARDE_BROWSER_DIR (default ~/.cache/varde-browser). Idempotent: packages are installed
# only when missing, and `npm ci` runs again only when the lockfile changed. Prints the directory.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
DIR=${VARDE_BROWSER_DIR:-$HOME/.cache/varde-browser}

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
log() { echo "[browser] $*" >&2; }

missing=()
command -v chromium >/dev/null || missing+=(chromium)
# Node from Debian unless one is already there (a NodeSource install brings its own npm).
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$DIR"
lock="$ROOT/tests/browser/package-lock.json"
stamp="$DIR/installed.sha256"
want=$(sha256sum "$lock" | cut -d' ' -f1)
if [ ! -d "$DIR/node_modules" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing playwright-core and axe-core from npm (tests/browser/package-lock.json)"
  cp "$ROOT/tests/browser/package.json" "$lock" "$DIR/"
  (cd "$DIR" && npm ci --ignore-scripts --no-audit --no-fund --silent)
  echo "$want" > "$stamp"
fi
echo "$DIR"

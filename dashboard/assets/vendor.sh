#!/usr/bin/env bash
# Fetches the dashboard's styles from the npm registry, exactly the versions and tarballs that
# npm/package-lock.json pins (with their integrity hashes), and writes the files the dashboard
# binary embeds: designsystemet.css (components), theme.css (Digdir's brand theme), the MIT
# licence, and VENDORED (versions and SHA-256 of each file, checked by the dashboard's tests).
# Run it to upgrade; the build itself never touches the network.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/npm/package.json" "$here/npm/package-lock.json" "$work/"
(cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --silent)
css="$work/node_modules/@digdir/designsystemet-css"
theme="$work/node_modules/@digdir/designsystemet-theme"
cp "$css/dist/src/index.css" "$here/designsystemet.css"
cp "$theme/brand/digdir.css" "$here/theme.css"
cp "$css/LICENSE" "$here/LICENSE.designsystemet"
version() { node -p "require('$1/package.json').version"; }
{
  echo "# Written by vendor.sh from npm/package-lock.json; checked by the dashboard's tests."
  echo "@digdir/designsystemet-css $(version "$css")"
  echo "@digdir/designsystemet-theme $(version "$theme")"
  for f in designsystemet.css theme.css LICENSE.designsystemet; do
    echo "sha256 $(sha256sum "$here/$f" | cut -d' ' -f1) $f"
  done
} > "$here/VENDORED"
cat "$here/VENDORED"

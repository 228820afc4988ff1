#!/usr/bin/env bash
# Fetches the dashboard's styles from the npm registry, exactly the versions and tarballs that
# npm/package-lock.json pins (with their integrity hashes), and writes the files the dashboard
# binary embeds: designsystemet.css (components), theme.css (Digdir's brand theme), uplot.js and
# uplot.css (the charts), their MIT licences, and VENDORED (versions and SHA-256 of each file,
# checked by the dashboard's tests).
# Run it to upgrade; the build itself never touches the network.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$here/npm/package.json" "$here/npm/package-lock.json" "$work/"
(cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --silent)
css="$work/node_modules/@digdir/designsystemet-css"
theme="$work/node_modules/@digdir/designsystemet-theme"
uplot="$work/node_modules/uplot"
cp "$css/dist/src/index.css" "$here/designsystemet.css"
cp "$theme/brand/digdir.css" "$here/theme.css"
cp "$css/LICENSE" "$here/LICENSE.designsystemet"
cp "$uplot/dist/uPlot.iife.min.js" "$here/uplot.js"
cp "$uplot/dist/uPlot.min.css" "$here/uplot.css"
cp "$uplot/LICENSE" "$here/LICENSE.uplot"
version() { node -p "require('$1/package.json').version"; }
{
  echo "# Written by vendor.sh from npm/package-lock.json; checked by the dashboard's tests."
  echo "@digdir/designsystemet-css $(version "$css")"
  echo "@digdir/designsystemet-theme $(version "$theme")"
  echo "uplot $(version "$uplot")"
  for f in designsystemet.css theme.css LICENSE.designsystemet uplot.js uplot.css LICENSE.uplot; do
    echo "sha256 $(sha256sum "$here/$f" | cut -d' ' -f1) $f"
  done
} > "$here/VENDORED"
cat "$here/VENDORED"

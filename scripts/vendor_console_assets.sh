#!/usr/bin/env bash
# Vendor the console's charting library (uPlot, MIT) into the package at build time: `npm pack` fetches the
# pinned release from the npm registry (integrity-checked by npm), and its dist files are copied into
# operator/align_operator/console/static/vendor/ (gitignored; shipped in the wheel and the operator image).
# No CDN at run time: clusters are often air-gapped. Idempotent; set UPLOT_TGZ=path to use a local tarball.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=1.6.32
DEST=operator/align_operator/console/static/vendor
if [ -f "$DEST/uPlot.iife.min.js" ] && grep -q "\"version\": \"$VERSION\"" "$DEST/package.json" 2>/dev/null; then
  exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
if [ -n "${UPLOT_TGZ:-}" ]; then
  cp "$UPLOT_TGZ" "$tmp/uplot.tgz"
else
  command -v npm >/dev/null || { echo "vendor_console_assets.sh: npm is needed (apt-get install npm)" >&2; exit 1; }
  (cd "$tmp" && npm pack --silent "uplot@$VERSION" >/dev/null) && mv "$tmp"/uplot-*.tgz "$tmp/uplot.tgz"
fi
tar -xzf "$tmp/uplot.tgz" -C "$tmp"
mkdir -p "$DEST"
cp "$tmp/package/dist/uPlot.iife.min.js" "$tmp/package/dist/uPlot.min.css" "$tmp/package/LICENSE" \
   "$tmp/package/package.json" "$DEST/"
echo "vendored uPlot $VERSION into $DEST"

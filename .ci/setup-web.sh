#!/usr/bin/env bash
# Install the browser libraries the pages use, from the npm registry at pinned versions, and
# copy their dist files to web/static/vendor/ (gitignored), so pages never load a CDN:
# Chart.js (wallboard charts), Leaflet and leaflet.markercluster (maps). The npm folder is var/web-deps (gitignored).
# A no-op when the installed versions already match the pins below.
set -euo pipefail

CHARTJS=4.6.1
LEAFLET=1.9.4
MARKERCLUSTER=1.5.3   # leaflet.markercluster for Leaflet 1.x (2.x needs Leaflet 2)

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deps="$repo/var/web-deps"
vendor="$repo/web/static/vendor"
want="chart.js@$CHARTJS leaflet@$LEAFLET leaflet.markercluster@$MARKERCLUSTER"
stamp="$vendor/.versions"

if [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ] \
    && [ -f "$vendor/chart.umd.min.js" ] && [ -f "$vendor/leaflet/leaflet.js" ] \
    && [ -f "$vendor/markercluster/leaflet.markercluster.js" ]; then
    echo "setup-web: up to date ($want)"
    exit 0
fi

if ! command -v npm >/dev/null; then
    echo "setup-web: npm is missing (bash .ci/install-system.sh installs nodejs)" >&2
    exit 1
fi

mkdir -p "$deps"
[ -f "$deps/package.json" ] || echo '{"name": "hotline-web-deps", "private": true}' > "$deps/package.json"
echo "setup-web: npm install $want"
(cd "$deps" && npm install --no-audit --no-fund --save-exact --loglevel=error "chart.js@$CHARTJS" "leaflet@$LEAFLET" \
    "leaflet.markercluster@$MARKERCLUSTER")

rm -rf "$vendor"
mkdir -p "$vendor/leaflet"
chart_dist="$deps/node_modules/chart.js/dist"
if [ -f "$chart_dist/chart.umd.min.js" ]; then
    cp "$chart_dist/chart.umd.min.js" "$vendor/chart.umd.min.js"
else
    cp "$chart_dist/chart.umd.js" "$vendor/chart.umd.min.js"
fi
cp -r "$deps/node_modules/leaflet/dist/." "$vendor/leaflet/"
cp "$deps/node_modules/chart.js/LICENSE.md" "$vendor/chart.js.LICENSE.md"
cp "$deps/node_modules/leaflet/LICENSE" "$vendor/leaflet/LICENSE"
mkdir -p "$vendor/markercluster"
cp -r "$deps/node_modules/leaflet.markercluster/dist/." "$vendor/markercluster/"
cp "$deps/node_modules/leaflet.markercluster/MIT-LICENCE.txt" "$vendor/markercluster/" 2>/dev/null || true
echo "$want" > "$stamp"
echo "setup-web: installed $want into web/static/vendor/"

#!/usr/bin/env bash
# Peak RSS of `ocidb import` against the size of the layout it imports:
# generates synthetic layouts of growing size (`ocidb bench gen --layout`)
# and imports each into a fresh store under /usr/bin/time -v.
#   tools/import_rss.sh [BINARY] [MANIFESTS…]
# BINARY defaults to target/release/ocidb (built if missing); pass another
# build's binary to compare releases on the same layouts. redb's page cache
# (256 MiB by default) fills as the store grows; OCIDB_CACHE_MIB=16 shrinks
# it, so that what is left is the import's own memory. The generated
# layouts are sparse (manifests only), so the report's list of missing
# layer digests grows with them.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-target/release/ocidb}"
shift || true
sizes=("$@")
if [ ${#sizes[@]} -eq 0 ]; then sizes=(20000 100000); fi
if [ ! -x "$bin" ]; then cargo build --release >/dev/null; fi
work="${OCIDB_RSS_DIR:-$(mktemp -d)}"
printf '%-10s %14s %16s %14s\n' manifests layout_MiB manifest_MiB peak_RSS_MiB
for n in "${sizes[@]}"; do
    layout="$work/layout-$n"
    if [ ! -d "$layout" ]; then
        "$bin" --store "$work/gen-store-$n" bench gen --manifests "$n" --layout "$layout" >/dev/null 2>&1
    fi
    bytes=$(du -sb "$layout" | cut -f1)
    mbytes=$(find "$layout/blobs" -type f -size -4M -exec cat {} + 2>/dev/null | wc -c)
    rm -rf "$work/store-$n"
    rss=$( { /usr/bin/time -v "$bin" --store "$work/store-$n" import "$layout" --repo rss/test >/dev/null; } 2>&1 \
        | awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}')
    awk -v n="$n" -v b="$bytes" -v m="$mbytes" -v r="$rss" \
        'BEGIN { printf "%-10s %14.1f %16.1f %14.1f\n", n, b / 1048576, m / 1048576, r / 1024 }' 
done

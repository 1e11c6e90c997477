#!/usr/bin/env bash
# `ocidb import` of a synthetic layout (a directory, and a tar of it)
# against `ocidb bench gen` of the same content into a store (the engine's
# own batch ingest) and, with a
# binary built with `--features peers`, against the fair SQLite peer
# filled with the same content in the same batches (`bench gen --sqlite`,
# its inserts alone timed; import and gen are timed as whole processes).
# Interleaved over ROUNDS, each into a fresh store; with a second binary,
# its import too (a release before and after).
#   tools/import_speed.sh MANIFESTS ROUNDS BINARY [OTHER_BINARY]
set -euo pipefail
n=${1:-100000}
rounds=${2:-3}
bin=${3:-target/release/ocidb}
other=${4:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" --store "$work/g" bench gen --manifests "$n" --layout "$work/layout" >/dev/null 2>&1
# The same layout as an oci-archive, for the tar path.
(cd "$work/layout" && tar cf "$work/layout.tar" .)
ms() { local s; s=$(date +%s%N); "$@" >/dev/null 2>&1; echo $((($(date +%s%N) - s) / 1000000)); }
peer=""
if "$bin" bench gen --manifests 10 --sqlite "$work/probe.sqlite" >/dev/null 2>&1; then peer=yes; fi
for r in $(seq 1 "$rounds"); do
    rm -rf "$work/s"
    g=$(ms "$bin" --store "$work/s" bench gen --manifests "$n")
    rm -rf "$work/s"
    i=$(ms "$bin" --store "$work/s" import "$work/layout" --repo bench/x)
    line="round $r: bench gen ${g} ms, import ${i} ms (import ÷ gen rate $(awk "BEGIN { printf \"%.2f\", $g / $i }"))"
    rm -rf "$work/s"
    t=$(ms "$bin" --store "$work/s" import "$work/layout.tar" --repo bench/x)
    line="$line, tar import ${t} ms (÷ gen rate $(awk "BEGIN { printf \"%.2f\", $g / $t }"))"
    if [ -n "$peer" ]; then
        s=$("$bin" bench gen --manifests "$n" --sqlite "$work/peer.sqlite" 2>/dev/null |
            sed -n 's/.* in \([0-9.]*\) s of inserts.*/\1/p')
        rm -f "$work"/peer.sqlite*
        line="$line, fair SQLite peer's inserts ${s} s (import ÷ peer rate $(awk "BEGIN { printf \"%.2f\", $s * 1000 / $i }"))"
    fi
    if [ -n "$other" ]; then
        rm -rf "$work/s"
        o=$(ms "$other" --store "$work/s" import "$work/layout" --repo bench/x)
        rm -rf "$work/s"
        ot=$(ms "$other" --store "$work/s" import "$work/layout.tar" --repo bench/x)
        line="$line, other binary's import ${o} ms ($(awk "BEGIN { printf \"%.2f\", $o / $i }")× slower), its tar import ${ot} ms ($(awk "BEGIN { printf \"%.2f\", $ot / $t }")× slower)"
    fi
    echo "$line"
done

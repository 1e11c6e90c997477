#!/usr/bin/env bash
# What operating a store costs, on STORE (e.g. one made by
# `ocidb --store STORE bench gen --manifests 1000000`): offline `ocidb
# stats`; then, with `ocidb serve` holding the store, the same command
# through the store's socket (its output compared byte for byte), and
# `GET /metrics` (table lengths) and `GET /admin/v1/stats` (a pass over
# every record) against `GET /livez` (curl's own cost), 5 rounds each;
# the time from start to the listening line and the server's RSS.
#   tools/ops_costs.sh STORE [OCIDB_BINARY]
set -euo pipefail
STORE=$1
O=${2:-target/release/ocidb}
ms() { local s; s=$(date +%s%N); "$@" >/dev/null; echo $((($(date +%s%N) - s) / 1000000)); }
rounds() { for _ in 1 2 3 4 5; do ms "$@"; done | tr '\n' ' '; }
log=$(mktemp)
echo "offline stats ms: $(rounds "$O" --store "$STORE" stats)"
"$O" --store "$STORE" stats >"$log.offline"
start=$(date +%s%N)
"$O" --store "$STORE" serve --addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log" "$log.offline" "$log.online"' EXIT
until grep -q "admin listener" "$log"; do sleep 0.01; done
echo "start to listening ms: $((($(date +%s%N) - start) / 1000000))"
api=$(grep -o "serving .*http://[0-9.:]*" "$log" | sed 's/.*http:\/\///')
admin=$(grep -o "admin listener.*http://[0-9.:]*" "$log" | sed 's/.*http:\/\///')
sleep 3
echo "online stats ms (through the socket): $(rounds "$O" --store "$STORE" stats)"
"$O" --store "$STORE" stats >"$log.online"
cmp -s "$log.offline" "$log.online" && echo "stats output identical online and offline"
echo "GET /livez ms (baseline): $(rounds curl -sf "http://$api/livez")"
echo "GET /metrics ms: $(rounds curl -sf "http://$admin/metrics")"
echo "GET /admin/v1/stats ms: $(rounds curl -sf "http://$admin/admin/v1/stats")"
echo "server RSS KiB: $(ps -o rss= -p "$pid")"

#!/usr/bin/env bash
# Registry rows side by side: `ocidb serve` and Debian's docker-registry
# (distribution 2.8.2, filesystem storage with its recommended in-memory
# blob descriptor cache), each on a fresh directory on 127.0.0.1, under the
# same client load in one run (tools/experiments/registry_bench.rs).
# Usage: tools/registry_bench.sh   (needs `apt-get install docker-registry`)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v docker-registry >/dev/null || { echo "docker-registry is not installed (apt-get install docker-registry)" >&2; exit 1; }
cargo build --release --bin ocidb --example registry_bench
work=$(mktemp -d)
trap 'kill $ours $peer 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/peer
  cache:
    blobdescriptor: inmemory
  delete:
    enabled: true
http:
  addr: 127.0.0.1:5092
YML
docker-registry serve "$work/registry.yml" 2>"$work/peer.log" & peer=$!
target/release/ocidb --store "$work/ours" serve --addr 127.0.0.1:5091 2>"$work/ours.log" & ours=$!
sleep 2
target/release/examples/registry_bench http://127.0.0.1:5091 http://127.0.0.1:5092

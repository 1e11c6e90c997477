#!/usr/bin/env bash
# Simulated power cuts (tests/power_loss.rs): N cycles (default 5000), each
# losing all, none or a random subset of the writes since the last sync.
set -euo pipefail
cd "$(dirname "$0")/.."
OCIDB_POWER_CYCLES="${1:-5000}" cargo test --release --test power_loss -- --nocapture

#!/usr/bin/env bash
# Runs the model-based online-GC stress test (tests/gc_stress.rs) for
# SECONDS (default 3600) in a release build, and prints its counts.
#   tools/gc_stress.sh 3600 [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-3600}"
seed="${2:-}"
export OCIDB_STRESS_SECS="$secs"
if [ -n "$seed" ]; then export OCIDB_STRESS_SEED="$seed"; fi
cargo test --release --test gc_stress -- --nocapture --test-threads 1

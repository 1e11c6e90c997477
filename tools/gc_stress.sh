#!/usr/bin/env bash
# Runs the model-based online-GC stress test (tests/gc_stress.rs) for
# SECONDS (default 3600) in the stress profile (release speed with debug
# assertions and overflow checks on: redb's page-accounting asserts are
# compiled out of a plain release build), and prints its counts.
#   tools/gc_stress.sh 3600 [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-3600}"
seed="${2:-}"
export OCIDB_STRESS_SECS="$secs"
if [ -n "$seed" ]; then export OCIDB_STRESS_SEED="$seed"; fi
cargo test --profile stress --test gc_stress -- --nocapture --test-threads 1

#!/usr/bin/env bash
# The crash, power-loss, model and redb tests, then the online-GC stress
# test for SECONDS (default 600), in the stress profile: release speed with
# debug assertions and overflow checks on (a plain release build compiles
# out the checks that catch broken invariants, redb's page accounting
# among them). `cargo test` runs the same tests with debug assertions too,
# at dev-build speed and for shorter.
#   tools/stress.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-600}"
cargo test --profile stress --test crash --test power_loss --test model --test redb_read_guards
exec tools/gc_stress.sh "$secs"

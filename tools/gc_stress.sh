#!/usr/bin/env bash
# Runs the online-GC stress test (writers push and retag while GC loops with
# grace 0 and delete_untagged) for longer than CI does. Usage: tools/gc_stress.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
OCIDB_STRESS_SECS="${1:-300}" cargo test --release --test lifecycle stress -- --nocapture

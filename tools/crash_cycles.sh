#!/usr/bin/env bash
# Runs the kill -9 recovery test for many cycles (default 2000) in release mode.
# Usage: tools/crash_cycles.sh [CYCLES]
set -euo pipefail
cd "$(dirname "$0")/.."
OCIDB_CRASH_CYCLES="${1:-2000}" cargo test --release --test crash -- --nocapture

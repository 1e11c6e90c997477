#!/usr/bin/env bash
# Puts and gets a 4 GiB blob through the real binary and checks that peak RSS
# stays under 64 MiB (issue: large blobs). Needs about 4.5 GiB of free disk.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --test large_blob -- --ignored --nocapture

#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for SECONDS each (default 5; CI's smoke
# run), starting from the committed seed corpus in fuzz/corpus/<target>.
# New inputs go to fuzz/corpus-run/<target>, crashes to fuzz/artifacts/.
#
#   tools/fuzz.sh            # 5 s per target
#   tools/fuzz.sh 14400      # four hours per target
#   tools/fuzz.sh 60 layout_tar
#
# The targets are cargo-fuzz targets (`cargo fuzz run layout_tar` works
# where cargo-fuzz and a nightly toolchain are installed). This script needs
# neither: it builds them on stable rustc with the coverage instrumentation
# cargo-fuzz adds (no AddressSanitizer, which needs nightly); libFuzzer
# itself comes from the libfuzzer-sys crate.
set -euo pipefail
secs=${1:-5}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(digest_parse manifest_ingest layout_index layout_tar)
fi
cd "$(dirname "$0")/../fuzz"
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
 -Cllvm-args=-sanitizer-coverage-level=4 \
 -Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
 -Cllvm-args=-sanitizer-coverage-pc-table \
 -Cllvm-args=-sanitizer-coverage-trace-compares \
 -Cdebug-assertions -Coverflow-checks"
# An explicit --target keeps the instrumentation off build scripts (as
# cargo-fuzz does).
host=$(rustc -vV | sed -n 's/^host: //p')
cargo build --release --locked --bins --target "$host"
bin="target/$host/release"
for t in "${targets[@]}"; do
    mkdir -p "artifacts/$t" "corpus-run/$t"
    echo "== $t: ${secs}s"
    # rss_limit: a target that allocates without bound fails the run.
    status=0
    "$bin/$t" -max_total_time="$secs" -rss_limit_mb=1024 \
        -max_len=65536 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/" "corpus-run/$t" "corpus/$t" \
        >"artifacts/$t.log" 2>&1 || status=$?
    grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)" "artifacts/$t.log" || true
    if [ "$status" -ne 0 ]; then
        tail -40 "artifacts/$t.log" >&2
        echo "fuzz target $t failed (exit $status); reproduce with: fuzz/$bin/$t fuzz/artifacts/$t/<file>" >&2
        exit 1
    fi
done

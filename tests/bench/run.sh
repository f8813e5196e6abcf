#!/usr/bin/env bash
# Runs the benchmark (docs/benchmark.md): georeg against skopeo sync and
# against the secondary registry's own ingest limit, on real registries on
# loopback.
#
#   tests/bench/run.sh            full size, georeg built in release mode;
#                                 the report goes to tests/bench/RESULTS.md
#   tests/bench/run.sh --smoke    small corpora in the test build: checks
#                                 that the benchmark works (CI), in seconds
#
# Other arguments go to the benchmark: --only a,b,c,wan,workers,lag,ingest,fair,scale,reconcile,tags,relay runs
# some scenarios (the report is then only printed), --out FILE writes it there.
set -euo pipefail
cd "$(dirname "$0")/../.."

smoke=false
partial=false
for arg in "$@"; do
    case "$arg" in
        --smoke) smoke=true ;;
        --only | --out) partial=true ;;
    esac
done

if $smoke; then
    exec cargo test --locked --test bench -- "$@"
fi
out=()
$partial || out=(--out tests/bench/RESULTS.md)
exec cargo test --release --locked --test bench -- "$@" "${out[@]}"

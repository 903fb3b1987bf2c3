#!/usr/bin/env bash
# Pipeline benchmark: text submissions at a fixed rate through ingest -> embed -> moderate ->
# submission-ready on this machine, local providers, release build. Prints counts in/out and
# the latency from ingest's 202 to the ready message (see bench/loadgen/src/pipeline_bench.rs).
#
#   bench/pipeline.sh                 # 50 submissions/s for 60 s
#   BENCH_RATE=100 BENCH_DURATION=30 bench/pipeline.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dev/install-tools
# The debug binaries locate the release ones next to them.
cargo build --quiet --bins
cargo build --quiet --release --bin ingest --bin embed --bin moderate --bin pipeline-bench
exec "${CARGO_TARGET_DIR:-target}/release/pipeline-bench"

#!/usr/bin/env bash
# What the crate split bought ingest: a cold release build of `-p ingest` alone and its start
# time, before and after, measured in one run on this machine.
#
#   bench/ingest-build.sh [BEFORE]     BEFORE: a commit (default $BENCH_BEFORE or d30e556,
#                                      the last commit with one `shared` crate)
#
# For BEFORE and for HEAD (committed state; a dirty tree is not measured), each exported with
# `git archive` into a scratch directory:
#   1. `cargo fetch` (untimed: the network is not the build),
#   2. `cargo build --release --locked --offline -p ingest` into an empty target directory,
#      timed: wall time, crates compiled, binary size, and which heavy crates ingest links
#      (candle, tokenizers, opus, symphonia, rustrict, realfft, half),
#   3. start to /readyz 200, median of BENCH_RUNS (10) starts against one Postgres + Pub/Sub
#      emulator (bench/loadgen coldstart; the same servers for both binaries; the schema is
#      migrated once beforehand, as the migrations job does on Cloud Run).
# Then prints both side by side with the ratios. Run it on an otherwise idle machine: the two
# cold builds take all cores for several minutes each.
#
# Environment (all optional):
#   BENCH_BEFORE       the "before" commit                       (default d30e556)
#   BENCH_RUNS         starts per binary for the median           (default 10)
#   BENCH_KEEP         1: keep the scratch directory              (default: removed)
#   BENCH_REUSE        a scratch directory kept by an earlier run (BENCH_KEEP=1): its builds and
#                      figures are reused and only the start times are measured again
#   CARGO_TARGET_DIR   where loadgen is built (untimed)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
before_rev=${1:-${BENCH_BEFORE:-d30e556}}
runs=${BENCH_RUNS:-10}
heavy='candle-core|candle-nn|candle-transformers|tokenizers|opus|symphonia|rustrict|realfft|half'

log() { printf '%s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

git rev-parse --verify --quiet "$before_rev^{commit}" >/dev/null || die "no commit $before_rev"
after_rev=$(git rev-parse --short HEAD)
before_rev=$(git rev-parse --short "$before_rev")
[[ -z $(git status --porcelain -- . ':!target') ]] || log "note: uncommitted changes are not measured (HEAD is $after_rev)"

if [[ -n ${BENCH_REUSE:-} ]]; then
    work=$BENCH_REUSE
    [[ -x $work/before/target/release/ingest && -x $work/after/target/release/ingest ]] ||
        die "BENCH_REUSE=$work holds no earlier builds"
    export BENCH_KEEP=1
else
    work=$(mktemp -d -t radio24-build-bench.XXXXXX)
fi
servers_pid=''
cleanup() {
    local status=$?
    if [[ -n $servers_pid ]] && kill -0 "$servers_pid" 2>/dev/null; then
        kill -TERM "$servers_pid" 2>/dev/null || true
        wait "$servers_pid" 2>/dev/null || true
    fi
    if [[ ${BENCH_KEEP:-0} == 1 || $status != 0 ]]; then log "scratch kept in $work"; else rm -rf -- "$work"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Cold release builds
# ---------------------------------------------------------------------------------------------
declare -A secs crates bytes links stripped
measure_build() { # name rev
    local name=$1 rev=$2 src=$work/$1 t0 t1
    if [[ -f $work/$name.figures ]]; then # BENCH_REUSE
        read -r "secs[$name]" "crates[$name]" "bytes[$name]" <"$work/$name.figures"
        links[$name]=$(cat "$work/$name.links")
        log "[$name] reused: ${secs[$name]} s, ${crates[$name]} crates, ${bytes[$name]} bytes"
        return
    fi
    mkdir -p "$src"
    git archive "$rev" | tar -x -C "$src"
    log "[$name $rev] cargo fetch (untimed)..."
    (cd "$src" && cargo fetch --locked --quiet)
    log "[$name $rev] cold release build of -p ingest..."
    t0=$(date +%s.%N)
    (cd "$src" && CARGO_TARGET_DIR="$src/target" CARGO_TERM_COLOR=never \
        cargo build --release --locked --offline -p ingest 2>"$work/$name-build.log") ||
        die "$name build failed: $(tail -20 "$work/$name-build.log")"
    t1=$(date +%s.%N)
    secs[$name]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    crates[$name]=$(grep -c '^ *Compiling ' "$work/$name-build.log" || true)
    bytes[$name]=$(stat -c %s "$src/target/release/ingest")
    links[$name]=$(cd "$src" && cargo tree --locked --offline -p ingest -e normal --prefix none 2>/dev/null |
        awk '{ print $1 }' | sort -u | { grep -xE "$heavy" || true; } | tr '\n' ' ')
    echo "${secs[$name]} ${crates[$name]} ${bytes[$name]}" >"$work/$name.figures"
    echo "${links[$name]}" >"$work/$name.links"
    log "[$name] ${secs[$name]} s, ${crates[$name]} crates, ${bytes[$name]} bytes"
}
measure_build before "$before_rev"
measure_build after "$after_rev"

# The file holds line tables (the release profile keeps them for backtraces); the code alone
# is what stripping leaves.
for name in before after; do
    strip -o "$work/$name.stripped" "$work/$name/target/release/ingest"
    stripped[$name]=$(stat -c %s "$work/$name.stripped")
done

# ---------------------------------------------------------------------------------------------
# Start to /readyz
# ---------------------------------------------------------------------------------------------
# loadgen only polls; the workspace's dev build (what dev/test builds) is enough.
log "building loadgen (untimed)..."
cargo build --quiet --workspace --bins
target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir == /* ]] || target_dir="$repo/$target_dir"
loadgen=$target_dir/debug/loadgen
log "starting Postgres and the Pub/Sub emulator..."
"$loadgen" servers >"$work/servers.env" 2>"$work/servers.log" &
servers_pid=$!
for ((i = 0; i < 1800; i++)); do
    grep -qx READY "$work/servers.env" 2>/dev/null && break
    kill -0 "$servers_pid" 2>/dev/null || die "loadgen servers exited: $(tail -20 "$work/servers.log")"
    sleep 0.1
done
grep -qx READY "$work/servers.env" || die "servers not ready after 180 s"
declare -A srv
while IFS='=' read -r k v; do [[ -n $v ]] && srv[$k]=$v; done <"$work/servers.env"

ingest_env=(
    HOST=127.0.0.1 AUTH_MODE=anonymous
    DATABASE_URL="${srv[DATABASE_URL]}" PUBSUB_EMULATOR_HOST="${srv[PUBSUB_EMULATOR_HOST]}"
    GOOGLE_CLOUD_PROJECT="${srv[GOOGLE_CLOUD_PROJECT]}"
    TOPIC_SUBMISSION_INGESTED="${srv[TOPIC_SUBMISSION_INGESTED]}"
    UPLOADS_URL="file:$work/uploads" RUST_LOG=warn LOG_FORMAT=text
)
# As on Cloud Run: the migrations job has run once, the service only connects.
env -u K_SERVICE "${ingest_env[@]}" "$work/after/target/release/ingest" migrate >"$work/migrate.log" 2>&1 ||
    die "ingest migrate failed: $(tail -20 "$work/migrate.log")"
declare -A start_ms
for name in before after; do
    result=$(env -u K_SERVICE "${ingest_env[@]}" RUN_MIGRATIONS=false \
        "$loadgen" coldstart --bin "$work/$name/target/release/ingest" --runs "$runs") ||
        die "coldstart of $name failed"
    start_ms[$name]=$(sed -E 's/.*"median_ms":([0-9.]+).*/\1/' <<<"$result")
    log "[$name] start to /readyz: $result"
done

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b / a }'; }
less() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%", (1 - b / a) * 100 }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
printf '\ningest, cold release build (-p ingest, empty target dir) on %s cores\n' "$(nproc)"
printf '%-22s %-22s %-22s %s\n' "" "before ($before_rev)" "after ($after_rev)" "after/before"
printf '%-22s %-22s %-22s %s (%s less)\n' "build time" "${secs[before]} s" "${secs[after]} s" \
    "$(ratio "${secs[before]}" "${secs[after]}")" "$(less "${secs[before]}" "${secs[after]}")"
printf '%-22s %-22s %-22s %s\n' "crates compiled" "${crates[before]}" "${crates[after]}" \
    "$(ratio "${crates[before]}" "${crates[after]}")"
printf '%-22s %-22s %-22s %s (%s less)\n' "binary size" "$(mib "${bytes[before]}")" "$(mib "${bytes[after]}")" \
    "$(ratio "${bytes[before]}" "${bytes[after]}")" "$(less "${bytes[before]}" "${bytes[after]}")"
printf '%-22s %-22s %-22s %s (%s less)\n' "  stripped" "$(mib "${stripped[before]}")" "$(mib "${stripped[after]}")" \
    "$(ratio "${stripped[before]}" "${stripped[after]}")" "$(less "${stripped[before]}" "${stripped[after]}")"
printf '%-22s %-22s %-22s %s\n' "start to /readyz" "${start_ms[before]} ms" "${start_ms[after]} ms" \
    "$(ratio "${start_ms[before]}" "${start_ms[after]}") (median of $runs)"
printf '%-22s %-22s %-22s\n' "heavy crates linked" "${links[before]:-none}" "${links[after]:-none}"
printf 'aims: binary at least 50%% smaller, cold build at least 40%% faster\n'

#!/usr/bin/env bash
# Ingest throughput benchmark: POST /v1/submissions with JSON text, on this machine, with the
# load generator, Postgres and the Pub/Sub emulator sharing its cores.
#
#   bench/ingest.sh
#
# For each concurrency level it measures, with the same closed-loop load generator
# (bench/loadgen: N keep-alive connections):
#   - a trivial axum handler that reads the body and answers 202 ("baseline": the HTTP
#     stack's ceiling on this machine),
#   - ingest (AUTH_MODE=anonymous, rate limits off): row + outbox row committed, then the
#     message published to the emulator, then 202,
# and prints accepted submissions/s, p50/p99, the ratio ingest/baseline, ingest's resident
# memory (highest VmRSS sampled during the run) and where the CPU went. Then pgbench runs the
# same transaction against the same database (bench/pgbench/*.sql) to show the database's
# own ceiling, and the script compares. Everything is started here and stopped on exit.
#
# Environment (all optional):
#   BENCH_LEVELS           concurrency levels                      (default "1 16 64 128")
#   BENCH_DURATION         measured time per ingest run             (default 10s)
#   BENCH_WARMUP           warm-up before each measurement          (default 2s)
#   BENCH_BASELINE_DURATION measured time per baseline run          (default 5s)
#   BENCH_DB_POOL          ingest's DATABASE_MAX_CONNECTIONS        (default 16, ingest's default)
#   BENCH_UNIQUE_KEYS      1: send an Idempotency-Key per request   (default 0)
#   BENCH_PG_SETTINGS      "name=value ..." applied with ALTER SYSTEM + reload before the runs,
#                          e.g. "commit_delay=200" (default: none, testkit's durable defaults)
#   BENCH_INGEST_ENV       extra "NAME=value ..." for ingest, e.g. "OUTBOX_RELAY=off"
#   BENCH_PGBENCH_CLIENTS  pgbench client counts                    (default "16 64")
#   BENCH_PGBENCH_SECONDS  seconds per pgbench run                  (default 10)
#   BENCH_KEEP_LOGS        1: keep the server logs directory        (default: kept only on failure)
#   CARGO_TARGET_DIR       honoured when locating the binaries
#   RADIO24_PG_BIN         PostgreSQL binaries (default /usr/lib/postgresql/15/bin)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

levels=${BENCH_LEVELS:-"1 16 64 128"}
duration=${BENCH_DURATION:-10s}
warmup=${BENCH_WARMUP:-2s}
base_duration=${BENCH_BASELINE_DURATION:-5s}
db_pool=${BENCH_DB_POOL:-16}
unique_keys=${BENCH_UNIQUE_KEYS:-0}
pg_settings=${BENCH_PG_SETTINGS:-}
ingest_extra_env=${BENCH_INGEST_ENV:-}
pgbench_clients=${BENCH_PGBENCH_CLIENTS:-"16 64"}
pgbench_seconds=${BENCH_PGBENCH_SECONDS:-10}
pg_bin=${RADIO24_PG_BIN:-/usr/lib/postgresql/15/bin}
# The level the aim is stated for, and the aim itself.
aim_level=64
aim_rps=3000
aim_p99_ms=50
aim_rss_mb=60

log() { printf '%s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------
log "building release binaries (ingest, loadgen)..."
cargo build --release --quiet -p ingest -p loadgen
target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir == /* ]] || target_dir="$repo/$target_dir"
ingest_bin="$target_dir/release/ingest"
loadgen="$target_dir/release/loadgen"
[[ -x $ingest_bin && -x $loadgen ]] || die "release binaries not found under $target_dir/release"
pgbench=$pg_bin/pgbench
[[ -x $pgbench ]] || pgbench=$(command -v pgbench) || die "pgbench not found: run dev/install-tools"
psql=$pg_bin/psql
[[ -x $psql ]] || psql=$(command -v psql) || die "psql not found: run dev/install-tools"

# ---------------------------------------------------------------------------------------------
# Processes and cleanup
# ---------------------------------------------------------------------------------------------
work=$(mktemp -d -t radio24-bench.XXXXXX)
servers_pid='' baseline_pid='' ingest_pid='' sampler_pid=''
ok=false

stop_pid() { # pid [seconds]: SIGTERM, wait, then SIGKILL. Only pids this script started.
    local pid=$1 wait_s=${2:-10} i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < wait_s * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    stop_pid "$sampler_pid" 2
    stop_pid "$ingest_pid" 10
    stop_pid "$baseline_pid" 5
    # loadgen servers stops Postgres (SIGQUIT) and the emulator; if it is killed instead, the
    # parent-death signal testkit sets ends them anyway.
    stop_pid "$servers_pid" 15
    if [[ $ok == true && ${BENCH_KEEP_LOGS:-0} != 1 ]]; then
        rm -rf -- "$work"
    else
        log "logs kept in $work"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Servers: Postgres + Pub/Sub emulator through testkit (same as the tests)
# ---------------------------------------------------------------------------------------------
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
while IFS='=' read -r k v; do
    [[ -n $v ]] && srv[$k]=$v
done <"$work/servers.env"
db_url=${srv[DATABASE_URL]}

pg_pid=$(head -1 "${srv[PG_DATA]}/postmaster.pid")
emulator_pid=''
for pid in $(cat /proc/"$servers_pid"/task/*/children 2>/dev/null); do
    [[ $(cat /proc/"$pid"/comm 2>/dev/null) == java ]] && emulator_pid=$pid
done

sql() { "$psql" "$db_url" -qAtX -v ON_ERROR_STOP=1 -c "$1"; }

for setting in $pg_settings; do
    sql "ALTER SYSTEM SET ${setting%%=*} = '${setting#*=}'" >/dev/null
done
[[ -z $pg_settings ]] || sql "SELECT pg_reload_conf()" >/dev/null

# ---------------------------------------------------------------------------------------------
# Baseline and ingest
# ---------------------------------------------------------------------------------------------
baseline_port=$("$loadgen" free-port)
"$loadgen" baseline --port "$baseline_port" 2>"$work/baseline.log" &
baseline_pid=$!

ingest_port=$("$loadgen" free-port)
ingest_env=(
    HOST=127.0.0.1
    PORT="$ingest_port"
    AUTH_MODE=anonymous
    DATABASE_URL="$db_url"
    DATABASE_MAX_CONNECTIONS="$db_pool"
    PUBSUB_EMULATOR_HOST="${srv[PUBSUB_EMULATOR_HOST]}"
    GOOGLE_CLOUD_PROJECT="${srv[GOOGLE_CLOUD_PROJECT]}"
    TOPIC_SUBMISSION_INGESTED="${srv[TOPIC_SUBMISSION_INGESTED]}"
    UPLOADS_URL="file:$work/uploads"
    RATE_LIMIT_PER_IP=off
    RATE_LIMIT_PER_USER=off
    RUST_LOG=warn
    LOG_FORMAT=text
)
# shellcheck disable=SC2206 # word splitting of "NAME=value ..." is intended
ingest_env+=($ingest_extra_env)
env -u K_SERVICE "${ingest_env[@]}" "$ingest_bin" >"$work/ingest.log" 2>&1 &
ingest_pid=$!

"$loadgen" wait "http://127.0.0.1:$baseline_port/healthz" --timeout 30s ||
    die "baseline did not start: $(tail -5 "$work/baseline.log")"
"$loadgen" wait "http://127.0.0.1:$ingest_port/healthz" --timeout 60s ||
    die "ingest did not start: $(tail -20 "$work/ingest.log")"

# ---------------------------------------------------------------------------------------------
# Measurement helpers
# ---------------------------------------------------------------------------------------------
clk_tck=$(getconf CLK_TCK)

# CPU ticks (user+system, plus reaped children) of one process; 0 if it is gone.
ticks_of() {
    local stat
    stat=$(cat /proc/"$1"/stat 2>/dev/null) || {
        echo 0
        return
    }
    stat=${stat##*) } # fields 3.. (the command name may contain spaces)
    # shellcheck disable=SC2086
    set -- $stat
    echo $((${12} + ${13} + ${14} + ${15}))
}

# Postgres: the postmaster (whose children's time includes exited backends) plus its live
# children (backends, walwriter, checkpointer, autovacuum...).
pg_ticks() {
    local total child
    total=$(ticks_of "$pg_pid")
    for child in $(cat /proc/"$pg_pid"/task/"$pg_pid"/children 2>/dev/null); do
        total=$((total + $(ticks_of "$child")))
    done
    echo "$total"
}

# Busy ticks of the whole machine (all cores).
machine_busy_ticks() {
    local _cpu user nice system _idle _iowait irq softirq steal _rest
    read -r _cpu user nice system _idle _iowait irq softirq steal _rest </proc/stat
    echo $((user + nice + system + irq + softirq + steal))
}

now_s() { date +%s.%N; }

# Samples the highest VmRSS (kB) of ingest into a file until killed.
rss_sampler() {
    local out=$1 max=0 key value _unit
    while kill -0 "$ingest_pid" 2>/dev/null; do
        while read -r key value _unit; do
            if [[ $key == VmRSS: ]] && ((value > max)); then
                max=$value
                echo "$max" >"$out"
            fi
        done </proc/"$ingest_pid"/status
        sleep 0.1
    done
}

vm_kb() { # VmRSS / VmHWM of ingest in kB
    local key value _unit
    while read -r key value _unit; do
        if [[ $key == "$1:" ]]; then
            echo "$value"
            return 0
        fi
    done </proc/"$ingest_pid"/status
    echo 0
}

# Extracts a number from loadgen's one-line JSON (serde_json writes it compactly).
field() {
    local re="\"$2\":(-?[0-9.e+-]+|null)"
    [[ $1 =~ $re ]] && echo "${BASH_REMATCH[1]}" || echo null
}

cores() { # ticks seconds -> cores used
    awk -v t="$1" -v s="$2" -v hz="$clk_tck" 'BEGIN { printf "%.4f", t / hz / s }'
}

# ingest deletes published outbox rows in batches (shared/src/outbox.rs): to know the average
# batch, count DELETE statements on outbox with a statement-level trigger bumping a sequence
# (one cheap call per DELETE, not per row, and readable at once, unlike the cumulative
# statistics, which idle backends flush only every ~10 s).
sql "SET client_min_messages = warning;
     CREATE SEQUENCE IF NOT EXISTS bench_outbox_deletes;
     CREATE OR REPLACE FUNCTION bench_count_outbox_delete() RETURNS trigger LANGUAGE plpgsql AS
         \$\$ BEGIN PERFORM nextval('bench_outbox_deletes'); RETURN NULL; END \$\$;
     DROP TRIGGER IF EXISTS bench_count_outbox_delete ON outbox;
     CREATE TRIGGER bench_count_outbox_delete AFTER DELETE ON outbox
         FOR EACH STATEMENT EXECUTE FUNCTION bench_count_outbox_delete();" >/dev/null

# A production table is neither empty nor unanalysed: seed earlier submissions from other
# listeners and analyse, so plans are made as they would be in production (with an empty,
# never-analysed table the Idempotency-Key lookup is planned on submission_user_idx and
# then walks every row of the one benchmark user).
sql "INSERT INTO submission (id, channel_id, user_id, kind, text, status, ingested_at)
     SELECT gen_random_uuid(), 'main', 'seed:' || (g % 2000), 'text', 'earlier submission ' || g,
            'aired', now() - make_interval(secs => g)
     FROM generate_series(1, 20000) AS g;
     ANALYZE submission; ANALYZE outbox;" >/dev/null

# DELETE statements on outbox so far, and submissions stored.
db_counters() {
    sql "SELECT (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM bench_outbox_deletes),
                (SELECT count(*) FROM submission)" | tr '|' ' '
}

key_flag=()
[[ $unique_keys == 1 ]] && key_flag=(--unique-keys)

# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------
declare -A R
noisy=()
log "running: levels [$levels], ingest ${duration} (+${warmup} warm-up), baseline ${base_duration}"
for c in $levels; do
    log "  concurrency $c: baseline..."
    R[b$c]=$("$loadgen" --url "http://127.0.0.1:$baseline_port/v1/submissions" \
        --concurrency "$c" --duration "$base_duration" --warmup 1s "${key_flag[@]}")
    read -r deletes0 subs0 < <(db_counters)

    log "  concurrency $c: ingest..."
    sql "ANALYZE submission; ANALYZE outbox" >/dev/null # as autovacuum would have by now
    rm -f "$work/rss.max"
    rss_sampler "$work/rss.max" &
    sampler_pid=$!
    t0=$(now_s) i0=$(ticks_of "$ingest_pid") p0=$(pg_ticks) e0=$(ticks_of "${emulator_pid:-0}")
    m0=$(machine_busy_ticks)
    R[i$c]=$("$loadgen" --url "http://127.0.0.1:$ingest_port/v1/submissions" \
        --concurrency "$c" --duration "$duration" --warmup "$warmup" "${key_flag[@]}")
    t1=$(now_s) i1=$(ticks_of "$ingest_pid") p1=$(pg_ticks) e1=$(ticks_of "${emulator_pid:-0}")
    m1=$(machine_busy_ticks)
    stop_pid "$sampler_pid" 2
    sampler_pid=''
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
    R[rss$c]=$(($(cat "$work/rss.max" 2>/dev/null || echo 0) / 1024))
    R[cpu_i$c]=$(cores $((i1 - i0)) "$wall")
    R[cpu_p$c]=$(cores $((p1 - p0)) "$wall")
    R[cpu_e$c]=$(cores $((e1 - e0)) "$wall")
    R[cpu_m$c]=$(cores $((m1 - m0)) "$wall")
    sleep 0.2 # the last published ids reach the deleter
    read -r deletes1 subs1 < <(db_counters)
    R[subs$c]=$((subs1 - subs0))
    R[dels$c]=$((deletes1 - deletes0))
done
hwm_mb=$(($(vm_kb VmHWM) / 1024))
outbox_left=$(sql "SELECT count(*) FROM outbox")

# ---------------------------------------------------------------------------------------------
# pgbench: the same transaction, straight to Postgres, with ingest stopped
# ---------------------------------------------------------------------------------------------
stop_pid "$ingest_pid" 10
ingest_pid=''
stop_pid "$baseline_pid" 5
baseline_pid=''

# Average DELETE batch ingest achieved at the aim level (else the highest level run).
batch_level=$aim_level
[[ -n ${R[subs$batch_level]:-} ]] || batch_level=${levels##* }
batch=$(awk -v s="${R[subs$batch_level]}" -v d="${R[dels$batch_level]}" \
    'BEGIN { b = (d > 0) ? int(s / d + 0.5) : 1; print (b < 1) ? 1 : b }')

declare -A PG
for clients in $pgbench_clients; do
    log "  pgbench: $clients clients, ${pgbench_seconds}s (one outbox DELETE of $batch rows per $batch submissions)..."
    t0=$(now_s) p0=$(pg_ticks) m0=$(machine_busy_ticks)
    "$pgbench" -n -M prepared -c "$clients" -j 2 -T "$pgbench_seconds" -D batch="$batch" \
        -f "$repo/bench/pgbench/submission.sql" "$db_url" >"$work/pgbench-$clients.out" 2>&1 ||
        die "pgbench failed: $(tail -20 "$work/pgbench-$clients.out")"
    t1=$(now_s)
    # pgbench's backends exit with it: let the postmaster reap them (their CPU time moves to
    # its children's total) before reading it.
    sleep 1
    p1=$(pg_ticks) m1=$(machine_busy_ticks)
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')
    PG[cpu$clients]=$(cores $((p1 - p0)) "$wall")
    PG[rest$clients]=$(cores $((m1 - m0 - (p1 - p0))) "$wall")
    PG[tps$clients]=$(awk '/^tps = / { printf "%.0f", $3; exit }' "$work/pgbench-$clients.out")
    PG[lat$clients]=$(awk '/^latency average/ { print $4; exit }' "$work/pgbench-$clients.out")
done

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
settings=$(sql "SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name)
    FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'shared_buffers',
        'wal_sync_method', 'commit_delay', 'max_connections', 'full_page_writes')")

printf '\ningest POST /v1/submissions (JSON text), %s cores, %s measured per run after %s warm-up\n' \
    "$(nproc)" "$duration" "$warmup"
printf 'ingest: DATABASE_MAX_CONNECTIONS=%s%s%s\n' "$db_pool" \
    "${ingest_extra_env:+ $ingest_extra_env}" "$([[ $unique_keys == 1 ]] && echo ' Idempotency-Key per request')"
printf 'postgres: %s\n\n' "$settings"
printf '%5s | %10s %6s | %8s %5s %7s %7s %6s | %6s | %-20s | %5s\n' \
    conc baseline/s "b p99" ingest/s ratio "p50 ms" "p99 ms" errors "RSS MB" \
    "CPU us/submission" other
printf '%5s | %10s %6s | %8s %5s %7s %7s %6s | %6s | %6s %6s %6s | %5s\n' \
    "" "" "" "" "" "" "" "" "" ingest pg emu cores
printf '%s\n' "------+-------------------+----------------------------------------+--------+----------------------+------"
for c in $levels; do
    b=${R[b$c]} i=${R[i$c]}
    brps=$(field "$b" rps_accepted) irps=$(field "$i" rps_accepted)
    # CPU per accepted submission, and the cores used by processes that are not part of the
    # benchmark (another build on the machine makes every figure here pessimistic).
    read -r ratio us_i us_p us_e other < <(awk -v b="$brps" -v r="$irps" -v ci="${R[cpu_i$c]}" \
        -v cp="${R[cpu_p$c]}" -v ce="${R[cpu_e$c]}" -v cl="$(field "$i" loadgen_cpu_cores)" \
        -v cm="${R[cpu_m$c]}" 'BEGIN {
            us = (r > 0) ? 1e6 / r : 0
            printf "%s %.0f %.0f %.0f %.2f\n", (b > 0) ? sprintf("%.3f", r / b) : "-",
                ci * us, cp * us, ce * us, cm - ci - cp - ce - cl }')
    printf '%5s | %10.0f %6s | %8.0f %5s %7s %7s %6s | %6s | %6s %6s %6s | %5s\n' \
        "$c" "$brps" "$(field "$b" p99_ms)" "$irps" "$ratio" "$(field "$i" p50_ms)" \
        "$(field "$i" p99_ms)" "$(field "$i" errors)" "${R[rss$c]}" \
        "$us_i" "$us_p" "$us_e" "$other"
    if awk -v o="$other" 'BEGIN { exit !(o > 0.15) }'; then
        noisy+=("$c")
    fi
done
if ((${#noisy[@]})); then
    printf 'WARNING: other processes used CPU during the runs at concurrency %s: figures are pessimistic\n' \
        "${noisy[*]}"
fi
printf '\ningest VmHWM (peak RSS over the whole run): %s MB; outbox rows left unpublished: %s\n' \
    "$hwm_mb" "$outbox_left"
for c in $levels; do
    i=${R[i$c]}
    if [[ $(field "$i" errors) != 0 ]]; then
        printf 'errors at concurrency %s: %s\n' "$c" "$(sed 's/.*"errors_by_kind":\({[^}]*}\).*/\1/' <<<"$i")"
    fi
done
printf 'outbox DELETE batches: %s\n' "$(for c in $levels; do
    awk -v c="$c" -v s="${R[subs$c]}" -v d="${R[dels$c]}" \
        'BEGIN { printf "c=%s %s rows/DELETE  ", c, (d > 0) ? sprintf("%.1f", s / d) : "-" }'
done)"

printf '\npgbench, same transaction + one outbox DELETE of %s rows per %s (bench/pgbench/submission.sql),\n' "$batch" "$batch"
printf -- '-M prepared, %ss, ingest stopped:\n' "$pgbench_seconds"
for clients in $pgbench_clients; do
    awk -v n="$clients" -v tps="${PG[tps$clients]}" -v lat="${PG[lat$clients]}" \
        -v cp="${PG[cpu$clients]}" -v cr="${PG[rest$clients]}" 'BEGIN {
        printf "  %3s clients: %6s submissions/s, avg latency %s ms; postgres %.0f us CPU per submission (%.2f cores), pgbench + rest %.2f cores\n",
            n, tps, lat, (tps > 0) ? cp * 1e6 / tps : 0, cp, cr }'
done

if [[ -n ${R[i$aim_level]:-} ]]; then
    i=${R[i$aim_level]}
    irps=$(field "$i" rps_accepted) p99=$(field "$i" p99_ms) rss=${R[rss$aim_level]}
    pgmax=${PG[tps$aim_level]:-}
    printf '\nat %s connections: ingest %.0f/s' "$aim_level" "$irps"
    [[ -n $pgmax ]] && printf ' = %s%% of pgbench at %s clients (%s/s)' \
        "$(awk -v a="$irps" -v b="$pgmax" 'BEGIN { printf "%.0f", 100 * a / b }')" "$aim_level" "$pgmax"
    printf '\n'
    verdict() { printf '  %-34s %s\n' "$1" "$([[ $2 == 1 ]] && echo met || echo MISSED)"; }
    verdict ">= $aim_rps accepted/s ($irps)" \
        "$(awk -v a="$irps" -v b="$aim_rps" 'BEGIN { print (a >= b) }')"
    verdict "p99 < $aim_p99_ms ms ($p99)" \
        "$(awk -v a="$p99" -v b="$aim_p99_ms" 'BEGIN { print (a != "null" && a < b) }')"
    verdict "RSS < $aim_rss_mb MB ($rss MB)" "$((rss < aim_rss_mb))"
fi
ok=true

#!/usr/bin/env bash
# The LiveKit publishing benchmark: the host-streamer's engine, encoder and publisher
# (example `lineup_room`, release build) against the LiveKit Python SDK (native libwebrtc)
# publishing the same line-up tone as PCM, side by side in real time into one livekit-server,
# each heard by a real LiveKit listener. Prints CPU and RSS of both publishers over the run,
# their ratio, and the end-to-end latency from the engine's frame to the listener's frame
# (tone-onset method: the line-up tone switches pitch on the exact sample where each UTC
# second turns, so a listener that hears a switch at t heard it t - second later).
#
#   BENCH_SECONDS=300 bench/livekit.sh
#
# Runs as root: the server and all peers live in a network namespace with a veth pair this
# script creates (livekit-server does not offer loopback ICE candidates).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=dev/lib.sh
. "$here/dev/lib.sh"

SECONDS_TO_RUN=${BENCH_SECONDS:-300}
WARMUP=20
TOOLS=$(radio24_tools_dir)
PY="$TOOLS/venv-livekit/bin/python"
LIVEKIT_SERVER="$TOOLS/bin/livekit-server"
NS="r24-bench-$$"
HOST_IF="r24b$$h"
NS_IF="r24b$$n"
ADDR=10.225.0.2
URL="ws://$ADDR:7880"

"$here/dev/install-tools" >/dev/null
cargo build --release -q -p host-streamer --example lineup_room
target=${CARGO_TARGET_DIR:-$here/target}
work=$(mktemp -d)
pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ip netns del "$NS" 2>/dev/null || true
    ip link del "$HOST_IF" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

ip netns add "$NS"
ip link add "$HOST_IF" type veth peer name "$NS_IF"
ip link set "$NS_IF" netns "$NS"
ip addr add 10.225.0.1/24 dev "$HOST_IF"
ip link set "$HOST_IF" up
ip netns exec "$NS" ip addr add "$ADDR/24" dev "$NS_IF"
ip netns exec "$NS" ip link set "$NS_IF" up
ip netns exec "$NS" ip link set lo up
inside() { ip netns exec "$NS" "$@"; }

# `ip netns exec` and `env` exec into the program, so $! below is the program itself.
inside "$LIVEKIT_SERVER" --dev --bind "$ADDR" --node-ip "$ADDR" >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
    inside curl -fs -o /dev/null "http://$ADDR:7880/" && break
    sleep 0.1
done

# The same signal for the Python publisher: the line-up tone as mono s16le PCM, its
# seconds aligned to UTC seconds when the publisher starts on one (it does, below).
"$PY" - "$work/tone.raw" "$SECONDS_TO_RUN" <<'EOF'
import sys, numpy as np
rate, seconds = 48000, int(sys.argv[2]) + 30
f = np.where((np.arange(seconds * rate) // rate) % 2 == 0, 1000.0, 500.0)
phase = np.cumsum(2 * np.pi * f / rate)
(0.1259 * 32767 * np.sin(phase)).astype("<i2").tofile(sys.argv[1])
EOF

token() { # identity room
    "$PY" - "$1" "$2" <<'EOF'
import base64, hashlib, hmac, json, sys, time
b = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
now = int(time.time())
claims = {"iss": "devkey", "sub": sys.argv[1], "nbf": now - 10, "exp": now + 6 * 3600,
          "video": {"room": sys.argv[2], "roomJoin": True, "canSubscribe": True, "canPublish": False}}
head, body = b(b'{"alg":"HS256","typ":"JWT"}'), b(json.dumps(claims).encode())
sig = hmac.new(b"secret", f"{head}.{body}".encode(), hashlib.sha256).digest()
print(f"{head}.{body}.{b(sig)}")
EOF
}

listen_for=$((SECONDS_TO_RUN + WARMUP + 30))
for room in radio24 baseline; do
    inside "$PY" "$here/testkit/livekit/listener.py" --url "$URL" --token "$(token "ear-$room" "$room")" \
        --host "publisher-$room" --out "$work/$room.jsonl" --duration "$listen_for" \
        >"$work/listener-$room.log" 2>&1 &
    pids+=($!)
done

run_for=$((SECONDS_TO_RUN + WARMUP + 15))
ip netns exec "$NS" env LIVEKIT_URL="$URL" LIVEKIT_API_KEY=devkey LIVEKIT_API_SECRET=secret \
    LIVEKIT_ROOM=radio24 LIVEKIT_IDENTITY=publisher-radio24 RUST_LOG=warn \
    "$target/release/examples/lineup_room" --seconds "$run_for" >"$work/streamer.log" 2>&1 &
streamer=$!
pids+=("$streamer")
# Start the Python publisher on a second boundary so its tone is aligned like ours.
"$PY" -c 'import time; time.sleep(1 - time.time() % 1)'
ip netns exec "$NS" "$PY" "$here/testkit/livekit/publisher.py" --url "$URL" --api-key devkey --api-secret secret \
    --room baseline --identity publisher-baseline --pcm "$work/tone.raw" >"$work/python.log" 2>&1 &
python=$!
pids+=("$python")

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
alive() { # pid name log
    kill -0 "$1" 2>/dev/null && return 0
    echo "$2 is not running; its log ends:" >&2
    tail -n 20 "$3" >&2
    exit 1
}
sleep "$WARMUP"
alive "$streamer" host-streamer "$work/streamer.log"
alive "$python" "python publisher" "$work/python.log"
s0=$(cpu_ticks "$streamer") p0=$(cpu_ticks "$python") t0=$(date +%s.%N)
echo "warm-up done; measuring ${SECONDS_TO_RUN}s (RSS every minute: streamer / python KiB)"
for ((i = 1; i <= SECONDS_TO_RUN / 60; i++)); do
    sleep 60
    echo "  minute $i: $(rss_kib "$streamer") / $(rss_kib "$python")"
done
sleep $((SECONDS_TO_RUN % 60))
s1=$(cpu_ticks "$streamer") p1=$(cpu_ticks "$python") t1=$(date +%s.%N)
srss=$(rss_kib "$streamer") prss=$(rss_kib "$python")
hz=$(getconf CLK_TCK)
awk -v s="$((s1 - s0))" -v p="$((p1 - p0))" -v hz="$hz" -v t0="$t0" -v t1="$t1" \
    -v srss="$srss" -v prss="$prss" 'BEGIN {
    wall = t1 - t0; sc = s / hz; pc = p / hz
    printf "cpu over %.0f s: host-streamer %.2f s (%.3f %% of one core), python sdk %.2f s (%.3f %%), ratio %.2f\n",
        wall, sc, 100 * sc / wall, pc, 100 * pc / wall, (pc > 0 ? sc / pc : 0)
    printf "rss at the end: host-streamer %d KiB, python sdk %d KiB\n", srss, prss
}'
wait "$streamer" || true
tail -n 3 "$work/streamer.log"

"$PY" - "$work/radio24.jsonl" "$work/baseline.jsonl" "$work/python.log" <<'EOF'
import json, sys
def report(name, path, origin=0.0):
    """origin: when the publisher's input second 0 went out (the streamer's tone is on UTC
    seconds; the Python publisher's on its own start time, which it prints)."""
    frames = [e for e in map(json.loads, open(path)) if e["event"] == "frame"]
    if not frames:
        print(f"{name}: heard nothing"); return
    pitch = lambda hz: 1000 if abs(hz - 1000) < 100 else 500 if abs(hz - 500) < 60 else None
    lat, prev = [], None
    for f in frames:
        p = pitch(f["hz"])
        since = f["t"] - origin
        if p and prev and p != prev and p == (1000 if int(since) % 2 == 0 else 500):
            lat.append((since - int(since)) * 1000)
        prev = p or prev
    gaps = [(b["t"] - a["t"]) * 1000 for a, b in zip(frames, frames[1:])]
    heard = sum(f["n"] for f in frames) / 48000
    line = f"{name}: heard {heard:.1f} s, longest gap between frames {max(gaps):.1f} ms"
    if lat:
        lat.sort()
        line += (f"; latency engine->listener over {len(lat)} switches: median {lat[len(lat)//2]:.1f} ms,"
                 f" p95 {lat[int(len(lat)*0.95)]:.1f} ms, max {lat[-1]:.1f} ms")
    print(line)
report("host-streamer", sys.argv[1])
started = [json.loads(l) for l in open(sys.argv[3]) if '"started"' in l]
report("python sdk", sys.argv[2], started[0]["t"] if started else 0.0)
EOF

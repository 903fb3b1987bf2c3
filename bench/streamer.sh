#!/usr/bin/env bash
# The air path against Liquidsoap, side by side: the same stream (a voice file every 30 s
# ducking a looping bed, loudness-normalised, Opus 96 kb/s stereo at 48 kHz) produced in
# real time by host-streamer's engine (examples/air_bench.rs, release) and by Liquidsoap
# from Debian's package, both running at once for the same wall time. Prints CPU seconds
# and % of one core of each, their ratio, frames late, and RSS once a minute.
#
#   bench/streamer.sh              # 10 minutes side by side, then 1 h of audio flat out
#   BENCH_MINUTES=60 bench/streamer.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
minutes="${BENCH_MINUTES:-10}"
dev/install-tools
command -v liquidsoap >/dev/null || {
    apt-get install -y -q liquidsoap >/dev/null
}
cargo build --quiet --release -p host-streamer --example air_bench
bench="${CARGO_TARGET_DIR:-target}/release/examples/air_bench"

work="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
espeak-ng -v en-us -w speech.wav "Good evening, this is Radio twenty four. You are listening \
to the station that never sleeps. Send us your messages and voice notes, and we will play them on air."
# The same voice padded to 30 s for Liquidsoap, which plays it in a loop and strips the
# silence, so speech arrives every 30 s as in air_bench.
ffmpeg -v error -y -i speech.wav -af "apad=whole_dur=30" -ar 48000 -ac 2 voice.wav
ffmpeg -v error -y -f lavfi -i "sine=frequency=220:duration=60" \
    -f lavfi -i "sine=frequency=277:duration=60" -f lavfi -i "sine=frequency=330:duration=60" \
    -filter_complex "amix=inputs=3,volume=0.5" -ar 48000 -ac 2 bed.wav
cat > mix.liq <<'LIQ'
settings.init.allow_root.set(true)
settings.log.stdout.set(true)
settings.log.level.set(2)
bed = single("bed.wav")
voice = blank.strip(max_blank=0.3, single("voice.wav"))
mix = smooth_add(duration=0.5, p=0.25, normal=bed, special=voice)
mix = normalize(target=-16., lufs=true, mix)
output.file(fallible=true, %opus(bitrate=96, samplerate=48000, channels=2), "liquidsoap.ogg", mix)
LIQ

cpu_of() { # utime + stime of a pid, in seconds
    awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"
}
rss_of() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }

echo "== ${minutes} min in real time, side by side"
"$bench" --voice speech.wav --bed bed.wav --real $((minutes * 60)) > air.log &
air=$!
liquidsoap mix.liq > liquidsoap.log 2>&1 &
liq=$!
# air_bench prints its own figures once a minute of audio; Liquidsoap is sampled beside it.
t=0
while kill -0 "$air" 2>/dev/null; do
    sleep 1
    t=$((t + 1))
    if ((t % 60 == 0)); then
        echo "minute $((t / 60)): liquidsoap cpu $(cpu_of $liq) s rss $(rss_of $liq) KiB | air_bench $(tail -1 air.log)"
    fi
done
wait "$air"
liq_cpu="$(cpu_of $liq)"
kill "$liq"
tail -1 air.log
air_cpu="$(sed -n 's/.*; cpu \([0-9.]*\) s = .*/\1/p' air.log | tail -1)"
awk -v a="$air_cpu" -v l="$liq_cpu" -v s=$((minutes * 60)) 'BEGIN {
    printf "cpu over %d s: air_bench %.2f s (%.3f %% of one core), liquidsoap %.2f s (%.3f %%), ratio air/liquidsoap %.2f\n",
        s, a, a / s * 100, l, l / s * 100, a / l }'
echo "== 1 h of audio as fast as the CPU allows"
"$bench" --voice speech.wav --bed bed.wav --virtual 3600 | tail -1

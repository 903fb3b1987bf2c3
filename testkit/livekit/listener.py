#!/usr/bin/env python3
"""A real LiveKit listener for Radio24's tests: joins a room the way a listener's app does
(the LiveKit Python SDK, native libwebrtc) and writes what it hears as JSON lines.

Every line has "t" (wall-clock receive time, time.time()) and "event". Modes:

  listen   (default) subscribe to the audio track of --host (the station's host) and write
           one "frame" line per received frame: n (samples), rms (0..1 of full scale) and
           hz (dominant frequency). Also written: the room's connection changes
           ("connected", "reconnecting", "reconnected", "disconnected", "connect_failed"),
           every track anyone publishes ("track_published", "subscribed"), the host's
           "metadata" and "attributes". If the SDK gives up reconnecting, it joins again,
           until --duration is over ("end").
  publish  try to publish an audio track with the token: "published" (sid) or
           "publish_refused" (error); a published track then carries a tone until the end.
  join     only join and report the room the server put us in ("joined", room) or
           "refused" (error).

Lines are flushed one by one, so the test can follow the file while the script runs.
"""

import argparse
import asyncio
import json
import math
import time

import numpy as np
from livekit import rtc

SAMPLE_RATE = 48000
FFT_SIZE = 8192  # zero-padding: ~5.9 Hz bins, refined further by interpolation
HANN = {}


class Out:
    """One JSON object per line, flushed at once."""

    def __init__(self, path):
        self.file = open(path, "a", buffering=1)

    def __call__(self, event, **fields):
        self.file.write(json.dumps({"t": time.time(), "event": event, **fields}) + "\n")
        self.file.flush()


def analyse(samples):
    """RMS (of full scale) and dominant frequency of one frame of int16 samples."""
    x = samples.astype(np.float64) / 32768.0
    rms = math.sqrt(float(np.mean(x * x))) if len(x) else 0.0
    if rms < 1e-4 or len(x) < 16:
        return rms, 0.0
    window = HANN.setdefault(len(x), np.hanning(len(x)))
    spectrum = np.abs(np.fft.rfft(x * window, FFT_SIZE))
    k = int(np.argmax(spectrum[1:-1])) + 1
    # Parabolic interpolation of the peak on log magnitudes.
    a, b, c = np.log(spectrum[k - 1 : k + 2] + 1e-12)
    shift = 0.5 * (a - c) / (a - 2 * b + c) if a - 2 * b + c != 0 else 0.0
    return rms, (k + shift) * SAMPLE_RATE / FFT_SIZE


async def receive(track, out):
    """Writes one line per frame of `track` until the track or the room goes away."""
    stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
    try:
        async for ev in stream:
            samples = np.frombuffer(ev.frame.data, dtype=np.int16)
            rms, hz = analyse(samples)
            out("frame", n=ev.frame.samples_per_channel, rms=round(rms, 5), hz=round(hz, 1))
    finally:
        await stream.aclose()


def watch(room, out, host):
    """Hooks the events a listener cares about onto `room`. Returns the function that writes
    the host's metadata and attributes, and the set of running receive tasks."""
    tasks = set()

    def host_state(p):
        out("metadata", identity=p.identity, metadata=p.metadata)
        out("attributes", identity=p.identity, attributes=dict(p.attributes))

    def on_subscribed(track, publication, participant):
        out("subscribed", identity=participant.identity, track=publication.sid,
            kind=int(track.kind))
        if participant.identity == host and track.kind == rtc.TrackKind.KIND_AUDIO:
            task = asyncio.ensure_future(receive(track, out))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    def on_joined(p):
        out("participant_connected", identity=p.identity)
        if p.identity == host:
            host_state(p)

    def on_metadata(p, old, new):
        if p.identity == host:
            out("metadata", identity=p.identity, metadata=new)

    def on_attributes(changed, p):
        if p.identity == host:
            out("attributes", identity=p.identity, attributes=dict(p.attributes))

    room.on("track_subscribed", on_subscribed)
    room.on("track_published", lambda pub, p: out(
        "track_published", identity=p.identity, track=pub.sid, kind=int(pub.kind)))
    room.on("track_unsubscribed", lambda track, pub, p: out(
        "unsubscribed", identity=p.identity, track=pub.sid))
    room.on("participant_connected", on_joined)
    room.on("participant_disconnected", lambda p: out(
        "participant_disconnected", identity=p.identity))
    room.on("participant_metadata_changed", on_metadata)
    room.on("participant_attributes_changed", on_attributes)
    room.on("reconnecting", lambda: out("reconnecting"))
    room.on("reconnected", lambda: out("reconnected"))
    return host_state, tasks


async def listen(args, out):
    """Listens until the deadline, joining again whenever the SDK gives up on the room."""
    deadline = time.monotonic() + args.duration
    while time.monotonic() < deadline:
        room = rtc.Room()
        gone = asyncio.Event()
        room.on("disconnected", lambda reason: (out("disconnected", reason=int(reason)),
                                                 gone.set()))
        host_state, tasks = watch(room, out, args.host)
        try:
            await room.connect(args.url, args.token)
        except Exception as e:  # the server is down or refuses: try again shortly
            out("connect_failed", error=str(e))
            await asyncio.sleep(0.5)
            continue
        out("connected", room=room.name, identity=room.local_participant.identity)
        for p in room.remote_participants.values():
            if p.identity == args.host:
                host_state(p)
        try:
            await asyncio.wait_for(gone.wait(), max(0.0, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            pass
        for task in list(tasks):
            task.cancel()
        await room.disconnect()


async def publish(args, out):
    """Tries to publish a 440 Hz tone with the token; reports whether the server took it."""
    room = rtc.Room()
    await room.connect(args.url, args.token)
    out("connected", room=room.name, identity=room.local_participant.identity)
    source = rtc.AudioSource(SAMPLE_RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("attempt", source)
    try:
        # A server that refuses a track does not answer at all: the SDK gives up after 10 s.
        pub = await room.local_participant.publish_track(track, rtc.TrackPublishOptions())
        out("published", track=pub.sid)
    except Exception as e:  # PublishTrackError
        out("publish_refused", error=str(e) or type(e).__name__)
    # Keep sending (into the void, if refused) so that an accepted track would be heard.
    tone = (np.sin(2 * np.pi * 440 * np.arange(480) / SAMPLE_RATE) * 8000).astype(np.int16)
    deadline = time.monotonic() + args.duration
    while time.monotonic() < deadline:
        await source.capture_frame(rtc.AudioFrame(tone.tobytes(), SAMPLE_RATE, 1, 480))
    await room.disconnect()


async def join(args, out):
    room = rtc.Room()
    try:
        await room.connect(args.url, args.token)
    except Exception as e:
        out("refused", error=str(e))
        return
    out("joined", room=room.name, identity=room.local_participant.identity)
    await room.disconnect()


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True, help="ws://HOST:PORT of the LiveKit server")
    p.add_argument("--token", required=True)
    p.add_argument("--out", required=True, help="file to append JSON lines to")
    p.add_argument("--mode", choices=["listen", "publish", "join"], default="listen")
    p.add_argument("--host", default="radio24-host", help="identity whose audio to hear")
    p.add_argument("--duration", type=float, default=60.0, help="seconds until leaving")
    args = p.parse_args()
    out = Out(args.out)
    await {"listen": listen, "publish": publish, "join": join}[args.mode](args, out)
    out("end")


if __name__ == "__main__":
    asyncio.run(main())

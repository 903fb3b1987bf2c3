#!/usr/bin/env python3
"""Publishes raw PCM to a LiveKit room as one audio track, paced at real time.

The reference publisher of Radio24's tests: the LiveKit Python SDK (native libwebrtc) doing
what the station's host-streamer does, so tests have a known-good sender and benchmarks a
baseline to compare the streamer's CPU use with. Input is raw s16le, 48 kHz, mono, from a
file or stdin ("-"). It prints nothing per frame: one JSON line when the first frame goes
out ("started", with the wall-clock time of that frame, so the time of any sample of the
input is known) and one at the end ("finished"), or "disconnected" when the SDK gives up on
the server (it then exits, failing).

Run with the venv that dev/install-tools makes:
  venv-livekit/bin/python publisher.py --url ws://HOST:PORT --api-key devkey \
      --api-secret secret --room radio24 --identity radio24-host --pcm tone.raw [--loop]
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import sys
import time

from livekit import rtc

SAMPLE_RATE = 48000
FRAME_SAMPLES = SAMPLE_RATE // 100  # 10 ms, what WebRTC's audio path works in
FRAME_BYTES = FRAME_SAMPLES * 2


def say(event, **fields):
    print(json.dumps({"t": time.time(), "event": event, **fields}), flush=True)


def b64url(raw):
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def mint_token(api_key, api_secret, room, identity, ttl=6 * 3600):
    """A LiveKit access token (HS256 JWT) that may join `room` and publish audio."""
    now = int(time.time())
    claims = {
        "iss": api_key,
        "sub": identity,
        "nbf": now - 10,
        "exp": now + ttl,
        "video": {"room": room, "roomJoin": True, "canPublish": True,
                  "canSubscribe": False, "canUpdateOwnMetadata": True},
    }
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    sig = hmac.new(api_secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


def read_frames(path, loop):
    """Yields 10 ms frames of the input (the last one zero-padded), forever with `loop`."""
    while True:
        src = sys.stdin.buffer if path == "-" else open(path, "rb")
        with src:
            while chunk := src.read(FRAME_BYTES):
                yield chunk.ljust(FRAME_BYTES, b"\0")
        if not loop or path == "-":
            return


async def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--api-key", required=True)
    p.add_argument("--api-secret", required=True)
    p.add_argument("--room", required=True)
    p.add_argument("--identity", required=True)
    p.add_argument("--pcm", required=True, help="raw s16le 48 kHz mono file, or - for stdin")
    p.add_argument("--loop", action="store_true", help="repeat the file until killed")
    args = p.parse_args()

    room = rtc.Room()
    # The SDK rides out a short server outage on its own (reconnecting, reconnected); after
    # ~25 s it gives up and the room is disconnected for good: then stop, failing.
    gone = asyncio.Event()
    room.on("disconnected", lambda reason: (say("disconnected", reason=int(reason)), gone.set()))
    room.on("reconnecting", lambda: say("reconnecting"))
    room.on("reconnected", lambda: say("reconnected"))
    token = mint_token(args.api_key, args.api_secret, args.room, args.identity)
    await room.connect(args.url, token)

    # A short queue: the SDK paces what it sends, and a long queue would add its length
    # to the end-to-end latency that tests measure.
    source = rtc.AudioSource(SAMPLE_RATE, 1, queue_size_ms=50)
    track = rtc.LocalAudioTrack.create_audio_track("air", source)
    options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    publication = await room.local_participant.publish_track(track, options)

    # Our own clock paces the frames: frame i goes out at start + i * 10 ms, so the input's
    # timeline maps onto wall-clock time (input second s left at started.t + s).
    start = time.monotonic()
    frames = 0
    for chunk in read_frames(args.pcm, args.loop):
        delay = start + frames * 0.01 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if gone.is_set():
            sys.exit(1)
        if frames == 0:
            say("started", track=publication.sid, identity=args.identity)
        await source.capture_frame(rtc.AudioFrame(chunk, SAMPLE_RATE, 1, FRAME_SAMPLES))
        frames += 1
    await source.wait_for_playout()
    say("finished", frames=frames)
    await room.disconnect()


if __name__ == "__main__":
    asyncio.run(main())

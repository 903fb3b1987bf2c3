//! The LiveKit harness against the real parts: livekit-server v1.13.5 in a network namespace
//! of the test's own, and peers on LiveKit's Python SDK (native libwebrtc).
//!
//! Each test re-executes itself inside a new namespace ([`netns::reexec_inside`]): outside,
//! the call runs the test there and returns `None`; inside, it returns the address to use.

use std::time::Duration;

use shared::message::{Event as BusEvent, SubmissionEvent};
use testkit::livekit::{
    HOST_IDENTITY, ListenMode, Listener, ListenerOptions, LiveKitServer, Publisher, tones, unix_now,
};
use testkit::netns;
use testkit::pipeline::{Pipeline, PipelineOptions};

const ROOM: &str = "radio24";
/// Well below the test tones (RMS ~0.2) and above what a decoder leaves in a silent stream.
const SILENCE_RMS: f32 = 0.01;
/// Starting a Python SDK peer and connecting takes ~1 s idle, much longer under a build.
const PEER: Duration = Duration::from_secs(60);

/// Writes `pcm` to a file the publisher can read; kept as long as the returned handle.
fn pcm_file(pcm: &[u8]) -> tempfile::NamedTempFile {
    let file = tempfile::Builder::new()
        .prefix("radio24-tone-")
        .suffix(".raw")
        .tempfile()
        .expect("temp file");
    std::fs::write(file.path(), pcm).expect("writing PCM");
    file
}

/// Whose network namespace this process is in (`net:[inode]`).
fn netns_of(pid: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .expect("reading a network namespace link")
        .to_string_lossy()
        .into_owned()
}

/// Postgres, the Pub/Sub emulator, fake-gcs-server and the pipeline's services bind
/// 127.0.0.1; inside the namespace that is the namespace's own loopback, which nothing
/// outside can reach. A text posted to ingest arriving on the ready topic proves all of them
/// run (and talk) in there.
#[tokio::test]
async fn the_pipeline_runs_inside_a_network_namespace() -> anyhow::Result<()> {
    let Some(inside) = netns::reexec_inside("the_pipeline_runs_inside_a_network_namespace")? else {
        return Ok(());
    };
    // The test binary that re-executed this one (under `ip netns exec`) is the parent.
    let outer = std::os::unix::process::parent_id().to_string();
    assert_ne!(
        netns_of("self"),
        netns_of(&outer),
        "not in a namespace of its own"
    );
    assert!(inside.name.starts_with("r24-"), "{inside:?}");
    // The namespace's address is this process's own (it would not be bindable outside).
    std::net::TcpListener::bind((inside.addr, 0))?;

    let p = Pipeline::start_shared(PipelineOptions::default()).await?;
    let mut ready = p.ready().await?;
    let id = p
        .post_text("Hello from inside the namespace, play some jazz")
        .await?;
    let msg = tokio::time::timeout(Duration::from_secs(120), ready.next())
        .await
        .map_err(|_| anyhow::anyhow!("nothing on the ready topic\n{}", p.log_tails(30)))?
        .expect("the subscription is open")?;
    let event = SubmissionEvent::decode(&msg.data)?;
    assert_eq!(
        (event.event, event.submission_id.0),
        (BusEvent::Ready, id),
        "{}",
        p.log_tails(30)
    );
    msg.ack();
    // Every server is a child of this process, so in this namespace.
    for server in [&p.ingest, &p.embed, &p.moderate] {
        assert_eq!(netns_of(&server.id().to_string()), netns_of("self"));
    }
    Ok(())
}

/// The reference publisher sends three tones; the real listener, with a listener token from
/// `shared::listen_token`, hears each pitch, every change within a second of its leaving the
/// publisher, without gaps, and records the host's metadata and attributes as the server
/// changes them.
#[tokio::test]
async fn a_published_tone_is_heard_with_its_pitch_changes_and_the_hosts_metadata()
-> anyhow::Result<()> {
    let test = "a_published_tone_is_heard_with_its_pitch_changes_and_the_hosts_metadata";
    let Some(inside) = netns::reexec_inside(test)? else {
        return Ok(());
    };
    let server = LiveKitServer::start(inside.addr).await?;
    assert!(server.url().starts_with(&format!("ws://{}:", inside.addr)));
    let token = server.config(ROOM).listener_token("listener-1")?;
    let listener = Listener::start(&server.url(), &token)?;
    listener.wait_for_event("connected", PEER).await?;

    // 440 Hz, then 660 Hz from 2 s, then 880 Hz from 4 s; then silence (the end of input).
    let pitches = [(440.0, 2.0), (660.0, 2.0), (880.0, 2.0)];
    let input = pcm_file(&tones(&pitches, 0.3));
    let publisher = Publisher::start(&server, ROOM, HOST_IDENTITY, input.path(), false)?;
    let started = publisher.started().await?;

    // Now playing, as the station will publish it: the host's metadata and attributes,
    // set from the server side while the tones play.
    server
        .update_participant(
            ROOM,
            HOST_IDENTITY,
            r#"{"now_playing":"Blue in Green"}"#,
            &[("segment", "MUSIC")],
        )
        .await?;

    // The publisher leaves when its input ends; the listener then loses the track.
    let heard = listener
        .wait_for("the host's track to end", PEER, |r| {
            r.events_named("unsubscribed")
                .any(|e| e.str("identity") == Some(HOST_IDENTITY))
        })
        .await?;
    let segments = heard.pitch_segments(SILENCE_RMS, 15.0, 5);
    let hz: Vec<f32> = segments.iter().map(|s| s.hz).collect();
    assert!(
        hz.len() == 3
            && hz
                .iter()
                .zip([440.0, 660.0, 880.0])
                .all(|(h, want)| (h - want).abs() < 5.0),
        "heard {segments:?}"
    );
    // End-to-end latency of each pitch change: sent at started + 2 s / + 4 s.
    for (segment, sent) in segments[1..].iter().zip([started + 2.0, started + 4.0]) {
        let latency = segment.start - sent;
        eprintln!(
            "pitch change to {} Hz heard after {latency:.3} s",
            segment.hz
        );
        assert!((0.0..1.0).contains(&latency), "latency {latency:.3} s");
    }
    // From the first tone heard to the end of the third, nothing missing.
    let first = segments[0].start;
    let gap = heard.longest_gap(first, segments[2].end, SILENCE_RMS);
    assert!(gap.seconds() < 0.2, "gap {gap:?}");
    assert!(
        heard.audible_seconds(SILENCE_RMS) > 5.5,
        "{}",
        heard.audible_seconds(SILENCE_RMS)
    );

    // The metadata change reached the listener.
    assert_eq!(
        heard
            .metadata_of(HOST_IDENTITY)
            .last()
            .map(|(_, m)| m.as_str()),
        Some(r#"{"now_playing":"Blue in Green"}"#),
        "{:?}",
        heard.events
    );
    assert!(
        heard.events_named("attributes").any(|e| {
            e.fields["attributes"]["segment"] == "MUSIC" && e.str("identity") == Some(HOST_IDENTITY)
        }),
        "{:?}",
        heard.events
    );
    Ok(())
}

/// The server is killed mid-stream and started again on the same ports: the listener (the
/// SDK reconnecting, or the script joining again) hears the host again within 10 s of the
/// server being back, and the only gap is around the outage.
#[tokio::test]
async fn the_listener_hears_again_after_the_server_restarts() -> anyhow::Result<()> {
    let test = "the_listener_hears_again_after_the_server_restarts";
    let Some(inside) = netns::reexec_inside(test)? else {
        return Ok(());
    };
    let mut server = LiveKitServer::start(inside.addr).await?;
    let token = server.config(ROOM).listener_token("listener-1")?;
    let listener = Listener::start(&server.url(), &token)?;
    let input = pcm_file(&tones(&[(440.0, 1.0), (660.0, 1.0)], 0.3));
    let _publisher = Publisher::start(&server, ROOM, HOST_IDENTITY, input.path(), true)?;
    listener.wait_for_audio(2.0, SILENCE_RMS, PEER).await?;

    let killed = unix_now();
    server.kill();
    assert!(!server.is_running());
    // Until the SDK gives up on the old session, libwebrtc keeps producing frames (its
    // packet-loss concealment fading out), so wait for the track to be gone.
    listener
        .wait_for("the listener to lose the host's track", PEER, |r| {
            r.events.iter().any(|e| {
                e.t > killed && matches!(e.event.as_str(), "unsubscribed" | "disconnected")
            })
        })
        .await?;
    server.restart().await?;
    let back = unix_now();
    // Heard again: an audible frame of a track subscribed after the outage.
    let heard_again = |r: &testkit::livekit::Reception| {
        let resubscribed = r
            .events_named("subscribed")
            .find(|e| e.t > killed && e.str("identity") == Some(HOST_IDENTITY))?;
        r.first_audible_after(resubscribed.t, SILENCE_RMS)
    };
    let heard = listener
        .wait_for("audio after the restart", Duration::from_secs(10), |r| {
            heard_again(r).is_some()
        })
        .await
        .map_err(|e| e.context(server.log_tail(20)))?;
    let again = heard_again(&heard).expect("waited for");
    eprintln!(
        "heard again {:.2} s after the restart; listener events since the kill: {:?}",
        again - back,
        heard
            .events
            .iter()
            .filter(|e| e.t > killed)
            .map(|e| &e.event)
            .collect::<Vec<_>>()
    );
    // The one long gap is the outage.
    let gap = heard.longest_gap(killed - 2.0, again, SILENCE_RMS);
    assert!(
        gap.start >= killed - 0.5 && gap.start <= back && gap.end >= back,
        "the longest gap {gap:?} is not the outage (killed {killed:.2}, back {back:.2})"
    );
    Ok(())
}

/// A listener token (from `shared::listen_token`, as the station hands them out) joins the
/// station's room and hears the host, but the server refuses it a track, and it cannot get
/// into another room. Control participants with full tokens show that each refusal is the
/// server's decision about that token, not a broken check.
#[tokio::test]
async fn listener_tokens_subscribe_but_cannot_publish_or_enter_another_room() -> anyhow::Result<()>
{
    let test = "listener_tokens_subscribe_but_cannot_publish_or_enter_another_room";
    let Some(inside) = netns::reexec_inside(test)? else {
        return Ok(());
    };
    let server = LiveKitServer::start(inside.addr).await?;
    let url = server.url();
    let config = server.config(ROOM);
    let options = |mode, duration| ListenerOptions {
        mode,
        duration: Duration::from_secs(duration),
        ..Default::default()
    };

    // It subscribes: it hears the host.
    let input = pcm_file(&tones(&[(440.0, 1.0)], 0.3));
    let _host = Publisher::start(&server, ROOM, HOST_IDENTITY, input.path(), true)?;
    let hearing = Listener::start(&url, &config.listener_token("listener-hears")?)?;
    // A full participant watches every track published in the room.
    let watcher = Listener::start(&url, &server.participant_token(ROOM, "watcher")?)?;
    hearing.wait_for_audio(1.0, SILENCE_RMS, PEER).await?;
    watcher.wait_for_event("connected", PEER).await?;

    // It cannot publish; the same attempt with a publishing token can.
    let refused = Listener::start_with(
        &url,
        &config.listener_token("listener-publishes")?,
        &options(ListenMode::Publish, 20),
    )?;
    let control = Listener::start_with(
        &url,
        &server.participant_token(ROOM, "control-publishes")?,
        &options(ListenMode::Publish, 20),
    )?;
    let accepted = control.wait_for_event("published", PEER).await?;
    let outcome = refused
        .wait_for("the publish attempt's outcome", PEER, |r| {
            r.events_named("published")
                .chain(r.events_named("publish_refused"))
                .next()
                .is_some()
        })
        .await?;
    assert!(
        outcome.events_named("published").next().is_none(),
        "a listener token published a track: {:?}",
        outcome.events
    );
    let seen = watcher
        .wait_for("the control track at the watcher", PEER, |r| {
            r.events_named("track_published")
                .any(|e| e.str("track") == accepted.str("track"))
        })
        .await?;
    // Server side: the refusal is logged, and the server lists no track for the listener,
    // while the control participant's track is there.
    assert!(
        std::fs::read_to_string(server.log_path())?.contains("no permission to publish track"),
        "{}",
        server.log_tail(20)
    );
    let participants = server.list_participants(ROOM).await?;
    let tracks_of = |identity: &str| {
        participants
            .iter()
            .find(|p| p["identity"] == identity)
            .map(|p| p["tracks"].as_array().map_or(0, Vec::len))
    };
    assert_eq!(
        tracks_of("listener-publishes"),
        Some(0),
        "{participants:#?}"
    );
    assert_eq!(tracks_of("control-publishes"), Some(1), "{participants:#?}");
    let listener_permission = &participants
        .iter()
        .find(|p| p["identity"] == "listener-publishes")
        .expect("listed")["permission"];
    assert_eq!(
        (
            &listener_permission["can_subscribe"],
            &listener_permission["can_publish"]
        ),
        (&true.into(), &false.into()),
        "{listener_permission}"
    );
    assert!(
        !seen
            .events_named("track_published")
            .any(|e| e.str("identity") == Some("listener-publishes")),
        "the watcher saw a listener's track"
    );

    // Another room: asking for one in the URL lands in the token's room all the same...
    let asks = Listener::start_with(
        &format!("{url}?room=backstage"),
        &config.listener_token("listener-asks")?,
        &options(ListenMode::Join, 10),
    )?;
    let joined = asks.wait_for_event("joined", PEER).await?;
    assert_eq!(joined.str("room"), Some(ROOM));
    let rooms = server.list_rooms().await?;
    assert!(
        rooms.iter().all(|r| r["name"] == ROOM),
        "rooms on the server: {rooms:#?}"
    );
    // ...and a token edited to name another room no longer carries a valid signature.
    let forged = with_room(&config.listener_token("listener-forges")?, "backstage");
    let forger = Listener::start_with(&url, &forged, &options(ListenMode::Join, 10))?;
    let refusal = forger
        .wait_for("the forged token's outcome", PEER, |r| {
            r.events_named("refused")
                .chain(r.events_named("joined"))
                .next()
                .is_some()
        })
        .await?;
    let refused: Vec<_> = refusal.events_named("refused").collect();
    assert!(
        refused.len() == 1 && refused[0].str("error").is_some_and(|e| e.contains("401")),
        "{:?}",
        refusal.events
    );
    Ok(())
}

/// `token` with its `video.room` claim replaced, the signature left as it was.
fn with_room(token: &str, room: &str) -> String {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("base64url claims"))
            .expect("JSON claims");
    claims["video"]["room"] = room.into();
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{}.{claims}.{}", parts[0], parts[2])
}

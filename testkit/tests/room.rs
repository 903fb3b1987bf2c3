//! The station in its LiveKit room, with real parts only: livekit-server v1.13.5, the
//! host-streamer binary (whole pipeline behind it) publishing the line-up tone, and the
//! LiveKit Python SDK (native libwebrtc) as the listener, with a token from ingest's
//! `POST /v1/listen-token`. Each test runs inside a network namespace of its own (the
//! server offers no loopback ICE candidates).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use testkit::livekit::{Listener, ListenerOptions, LiveKitServer, Reception, unix_now};
use testkit::netns;
use testkit::pipeline::{Pipeline, PipelineOptions};
use testkit::tls_proxy::TlsProxy;

/// One station at a time: four pipelines, servers and listeners at once load a 2-core
/// machine enough to make the air thread late, which is what these tests watch for.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// [`netns::reexec_inside`], one test at a time.
fn inside_namespace(test: &str) -> Result<Option<netns::Inside>> {
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    netns::reexec_inside(test)
}

/// RMS below which a received frame counts as silence (the tone is ~0.089).
const SILENCE_RMS: f32 = 0.01;
const HOST: &str = "radio24-host";

/// The pipeline with the streamer on the line-up tone, publishing into `server`'s room;
/// ingest signs listener tokens for the same room.
async fn station(server: &LiveKitServer) -> Result<Pipeline> {
    station_with(server, Vec::new()).await
}

/// [`station`] with more variables (`LIVEKIT_URL` here replaces the server's for that
/// service).
async fn station_with(
    server: &LiveKitServer,
    extra: Vec<(&'static str, String, String)>,
) -> Result<Pipeline> {
    let mut env = Vec::new();
    for service in ["ingest", "host-streamer"] {
        for (name, value) in [
            ("LIVEKIT_URL", server.url()),
            ("LIVEKIT_API_KEY", server.api_key().to_owned()),
            ("LIVEKIT_API_SECRET", server.api_secret().to_owned()),
        ] {
            if !extra.iter().any(|(s, n, _)| *s == service && n == name) {
                env.push((service, name.to_owned(), value));
            }
        }
    }
    env.extend(extra);
    env.push(("host-streamer", "PROGRAM".into(), "lineup".into()));
    Pipeline::start_shared(PipelineOptions {
        streamer: Some(0),
        env,
        ..PipelineOptions::default()
    })
    .await
}

/// A listener token from ingest, the way a listener's page gets one.
async fn listen_token(p: &Pipeline) -> Result<(String, String)> {
    let res = reqwest::Client::new()
        .post(format!("{}/v1/listen-token", p.ingest_url))
        .send()
        .await?;
    ensure!(
        res.status() == 200,
        "listen-token answered {}",
        res.status()
    );
    let body: serde_json::Value = res.json().await?;
    let field = |k: &str| body[k].as_str().map(str::to_owned).context(k.to_owned());
    Ok((field("url")?, field("token")?))
}

/// A listener with a token from ingest, once it hears the host: it and when it first did.
async fn tune_in(p: &Pipeline) -> Result<(Listener, f64)> {
    let (url, token) = listen_token(p).await?;
    let listener = Listener::start_with(
        &url,
        &token,
        &ListenerOptions {
            duration: Duration::from_secs(150),
            ..ListenerOptions::default()
        },
    )?;
    let first = first_heard(&listener).await?;
    Ok((listener, first))
}

/// A metric of the streamer's `/metrics`.
async fn metric(p: &Pipeline, name: &str) -> Result<f64> {
    let url = &p.streamer.as_ref().context("no streamer")?.1;
    let text = reqwest::get(format!("{url}/metrics")).await?.text().await?;
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("radio24_{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no radio24_{name} in /metrics"))
}

/// Polls the listener until it has received frames up to `until` (Unix seconds).
async fn heard_until(listener: &Listener, until: f64, deadline: Duration) -> Result<Reception> {
    listener
        .wait_for("frames up to the deadline", deadline, |r| {
            r.frames.last().is_some_and(|f| f.t >= until)
        })
        .await
}

/// Receive time of the first audible frame.
async fn first_heard(listener: &Listener) -> Result<f64> {
    let rx = listener
        .wait_for_audio(0.5, SILENCE_RMS, Duration::from_secs(30))
        .await
        .context("the listener never heard the host")?;
    rx.first_audible_after(0.0, SILENCE_RMS)
        .context("no audible frame")
}

/// Pitch switches heard in `[from, to]`: (time heard, new pitch). The tone switches on the
/// exact sample where a UTC second turns, so `time - floor(time)` is the end-to-end latency.
fn switches(rx: &Reception, from: f64, to: f64) -> Vec<(f64, f32)> {
    rx.pitch_segments(SILENCE_RMS, 60.0, 5)
        .into_iter()
        .filter(|s| (from..=to).contains(&s.start))
        .map(|s| (s.start, s.hz))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listener_hears_the_stations_tone_for_a_minute_without_gaps() -> Result<()> {
    let Some(inside) =
        inside_namespace("a_listener_hears_the_stations_tone_for_a_minute_without_gaps")?
    else {
        return Ok(());
    };
    let server = LiveKitServer::start(inside.addr).await?;
    let p = station(&server).await?;
    let (listener, first) = tune_in(&p).await?;
    // One minute from the first whole second after the first frame.
    let from = first.ceil() + 1.0;
    let to = from + 60.0;
    let rx = heard_until(&listener, to, Duration::from_secs(90)).await?;

    let gap = rx.longest_gap(from, to, SILENCE_RMS);
    let heard = rx
        .frames
        .iter()
        .filter(|f| (from..to).contains(&f.t) && f.rms >= SILENCE_RMS)
        .map(|f| f.seconds())
        .sum::<f64>();
    let heard_switches = switches(&rx, from, to);
    let mut latencies: Vec<f64> = heard_switches.iter().map(|(t, _)| t - t.floor()).collect();
    latencies.sort_by(f64::total_cmp);
    println!(
        "heard {heard:.2} s of tone in 60 s; longest gap {:.0} ms; {} pitch switches; \
         latency engine->listener median {:.0} ms, max {:.0} ms",
        gap.seconds() * 1000.0,
        heard_switches.len(),
        latencies
            .get(latencies.len() / 2)
            .copied()
            .unwrap_or(f64::NAN)
            * 1000.0,
        latencies.last().copied().unwrap_or(f64::NAN) * 1000.0,
    );
    ensure!(
        gap.seconds() <= 0.1,
        "a gap of {:.3} s: {gap:?}",
        gap.seconds()
    );
    ensure!(
        heard >= 59.5,
        "only {heard:.2} s of tone heard in the minute"
    );
    // The right pitch, second by second: 1 kHz on even UTC seconds, 500 Hz on odd ones,
    // each switch heard within the same second it was made.
    ensure!(
        heard_switches.len() >= 58,
        "only {} pitch switches heard in 60 s",
        heard_switches.len()
    );
    for (t, hz) in &heard_switches {
        let expected = if (t.floor() as i64) % 2 == 0 {
            1000.0
        } else {
            500.0
        };
        ensure!(
            (hz - expected).abs() <= expected * 0.02,
            "heard {hz:.1} Hz at {t:.3}, expected {expected} Hz"
        );
    }
    // The now-playing line reached the listener as the host's metadata.
    let metadata = rx.metadata_of(HOST);
    ensure!(
        metadata
            .iter()
            .any(|(_, m)| m.contains("\"block\":\"LINEUP\"")),
        "no now-playing metadata from the host: {metadata:?}"
    );
    ensure!(metric(&p, "livekit_state").await? == 2.0, "not publishing");
    ensure!(metric(&p, "livekit_packets_sent_total").await? >= 3000.0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_server_restart_the_station_is_heard_again_within_10s_and_never_stopped()
-> Result<()> {
    let Some(inside) = inside_namespace(
        "after_a_server_restart_the_station_is_heard_again_within_10s_and_never_stopped",
    )?
    else {
        return Ok(());
    };
    let mut server = LiveKitServer::start(inside.addr).await?;
    let p = station(&server).await?;
    let (listener, first) = tune_in(&p).await?;
    heard_until(&listener, first + 5.0, Duration::from_secs(20)).await?;

    let frames_before = metric(&p, "frames_total").await?;
    let killed_at = unix_now();
    server.kill();
    testkit::try_wait_until(
        "the streamer to notice the server is gone",
        Duration::from_secs(20),
        || async { Ok(metric(&p, "livekit_state").await? != 2.0) },
    )
    .await?;
    let noticed = unix_now() - killed_at;
    // An outage, not a blip: the streamer keeps trying (and failing) to join meanwhile.
    testkit::try_wait_until(
        "five failed joins while the server is down",
        Duration::from_secs(20),
        || async { Ok(metric(&p, "livekit_reconnects_total").await? >= 6.0) },
    )
    .await?;
    let outage = unix_now() - killed_at;
    server.restart().await?;
    let restarted_at = unix_now();
    testkit::try_wait_until(
        "the host to publish again",
        Duration::from_secs(10),
        || async { Ok(metric(&p, "livekit_joins_total").await? >= 2.0) },
    )
    .await?;
    let host_back = unix_now() - restarted_at;
    // Silent frames keep coming while the listener's SDK reconnects: wait for audible ones.
    let rx = listener
        .wait_for(
            "audible audio after the restart",
            Duration::from_secs(30),
            |r| r.first_audible_after(restarted_at, SILENCE_RMS).is_some(),
        )
        .await?;
    let heard_again = rx
        .first_audible_after(restarted_at, SILENCE_RMS)
        .context("nothing heard after the restart")?
        - restarted_at;
    let frames_after = metric(&p, "frames_total").await?;
    let elapsed = unix_now() - killed_at;
    let (late, silences) = (
        metric(&p, "frames_late_total").await?,
        metric(&p, "silence_events_total").await?,
    );
    println!(
        "server killed; streamer noticed in {noticed:.2} s; restarted after {outage:.2} s \
         (5 failed joins meanwhile); host publishing again \
         {host_back:.2} s and heard by the listener {heard_again:.2} s after the restart; \
         engine meanwhile: {} frames in {elapsed:.2} s, late {late}, silence events {silences}",
        frames_after - frames_before
    );
    ensure!(
        heard_again <= 10.0,
        "heard again only after {heard_again:.2} s"
    );
    // The engine never waited on the network: every 20 ms frame went out on time.
    ensure!(late == 0.0 && silences == 0.0);
    ensure!(
        frames_after - frames_before >= (elapsed * 50.0).floor() - 5.0,
        "the engine fell behind: {} frames in {elapsed:.2} s",
        frames_after - frames_before
    );
    // And the room is whole again: the host is there with its track.
    let participants = server.list_participants("radio24").await?;
    ensure!(
        participants
            .iter()
            .any(|p| p["identity"] == HOST && p["tracks"].as_array().is_some_and(|t| !t.is_empty())),
        "host not back with its track: {participants:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hung_server_is_noticed_without_a_closed_socket_and_left() -> Result<()> {
    let Some(inside) =
        inside_namespace("a_hung_server_is_noticed_without_a_closed_socket_and_left")?
    else {
        return Ok(());
    };
    let server = LiveKitServer::start(inside.addr).await?;
    let p = station(&server).await?;
    testkit::try_wait_until("the host to publish", Duration::from_secs(30), || async {
        Ok(metric(&p, "livekit_state").await? == 2.0)
    })
    .await?;
    // Nothing closes: the signal socket stays open and the media path just goes quiet, so
    // only missed keepalives (ICE consent, then pongs) can tell.
    let frozen_at = unix_now();
    server.freeze();
    testkit::try_wait_until(
        "the streamer to give up the hung session",
        Duration::from_secs(20),
        || async { Ok(metric(&p, "livekit_state").await? != 2.0) },
    )
    .await?;
    let noticed = unix_now() - frozen_at;
    server.thaw();
    let thawed_at = unix_now();
    testkit::try_wait_until(
        "the host to publish again",
        Duration::from_secs(20),
        || async { Ok(metric(&p, "livekit_joins_total").await? >= 2.0) },
    )
    .await?;
    let back = unix_now() - thawed_at;
    let late = metric(&p, "frames_late_total").await?;
    println!(
        "server frozen: session given up after {noticed:.2} s; joined again {back:.2} s after the thaw; late frames {late}"
    );
    // ICE consent lapses in 3 s and the session goes 4 s later; pongs would take 15 s.
    ensure!(noticed <= 10.0, "took {noticed:.2} s to notice");
    ensure!(late == 0.0);
    Ok(())
}

/// LiveKit Cloud and any production server are `wss://`: the signal connection goes
/// through rustls, trusting the system roots (here a test CA given by `SSL_CERT_FILE`).
#[tokio::test(flavor = "multi_thread")]
async fn the_station_joins_over_wss_through_rustls() -> Result<()> {
    let Some(inside) = inside_namespace("the_station_joins_over_wss_through_rustls")? else {
        return Ok(());
    };
    let server = LiveKitServer::start(inside.addr).await?;
    let signal = std::net::SocketAddr::from((inside.addr, server.ports().signal));
    let proxy = TlsProxy::start(inside.addr.into(), signal).await?;
    let p = station_with(
        &server,
        vec![
            ("host-streamer", "LIVEKIT_URL".into(), proxy.url()),
            (
                "host-streamer",
                "SSL_CERT_FILE".into(),
                proxy.ca_file().display().to_string(),
            ),
        ],
    )
    .await?;
    let (listener, first) = tune_in(&p).await?;
    let rx = heard_until(&listener, first + 5.0, Duration::from_secs(20)).await?;
    let gap = rx.longest_gap(first, first + 5.0, SILENCE_RMS);
    println!(
        "host joined through {} ({} TLS sessions); listener heard 5 s, longest gap {:.0} ms",
        proxy.url(),
        proxy.sessions(),
        gap.seconds() * 1000.0
    );
    ensure!(proxy.sessions() >= 1, "the host never came through TLS");
    ensure!(gap.seconds() <= 0.1);
    Ok(())
}

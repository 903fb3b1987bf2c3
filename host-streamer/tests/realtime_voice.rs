//! The Realtime voice against the Realtime fake (in process, and as a process that is killed
//! and restarted): the GA protocol, session reuse, rotation and expiry with context carried
//! over, and every failure coming back as the right error within its time bound.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use host_streamer::audio::feed::{FeedSource, channel};
use host_streamer::audio::{Frame, Pull, Source};
use host_streamer::metrics::Metrics;
use host_streamer::voice::realtime::Dump;
use host_streamer::voice::screen::Screen;
use host_streamer::voice::{
    Cue, Quote, QuoteFrom, RealtimeConfig, RealtimeVoice, Voice, VoiceError,
};
use serde_json::json;
use testkit::openai_fake::{FAKE_API_KEY, fake_reply, fake_speech_len};
use testkit::realtime_fake::RealtimeFakeOptions;
use testkit::{RealtimeFake, RealtimeFault, wait_until};

/// A short broadcast delay keeps these tests quick; the delay's own tests set theirs.
fn config(fake: &RealtimeFake) -> RealtimeConfig {
    RealtimeConfig::new(fake.api_key())
        .with_url(fake.url())
        .with_stall_timeout(Duration::from_secs(5))
        .with_connect_timeout(Duration::from_secs(5))
        .with_delay(Duration::from_millis(200))
}

fn cue(block: &str, prompt: &str) -> Cue {
    Cue {
        block: block.to_owned(),
        prompt: prompt.to_owned(),
        quotes: vec![Quote {
            from: QuoteFrom::EarlierListener,
            words: "Ann from Leeds asked for more jazz".to_owned(),
            operator_approved: false,
        }],
        script: String::new(),
    }
}

fn voice(config: RealtimeConfig) -> (RealtimeVoice, Arc<Metrics>) {
    let (voice, metrics, _dump) = voice_with_dump(config);
    (voice, metrics)
}

fn voice_with_dump(config: RealtimeConfig) -> (RealtimeVoice, Arc<Metrics>, Arc<Dump>) {
    let metrics = Arc::new(Metrics::default());
    let dump = Arc::new(Dump::default());
    let screen = Arc::new(Screen::words_only(metrics.clone()));
    (
        RealtimeVoice::new(config, metrics.clone(), screen, dump.clone()),
        metrics,
        dump,
    )
}

/// Speaks `prompt` in block OP into a fresh channel.
async fn speak(voice: &RealtimeVoice, prompt: &str) -> Result<String, VoiceError> {
    let (mut out, _source) = channel("dj");
    voice.speak(&cue("OP", prompt), &mut out).await
}

/// Speaks `prompt` expecting an error: the error and how long it took to come.
async fn failure(voice: &RealtimeVoice, prompt: &str) -> (VoiceError, Duration) {
    let started = Instant::now();
    let err = speak(voice, prompt).await.expect_err("the cue should fail");
    (err, started.elapsed())
}

/// What the engine would play: the channel's 48 kHz audio, one channel of it.
fn play_out(source: &mut FeedSource) -> Vec<f32> {
    let mut frame = Frame::silent();
    let mut samples = Vec::new();
    while source.fill(&mut frame) == Pull::Audio {
        samples.extend(frame.samples.chunks_exact(2).map(|pair| pair[0]));
    }
    samples
}

fn reconnects(metrics: &Metrics) -> u64 {
    metrics.realtime_reconnects.load(Ordering::Relaxed)
}

#[tokio::test]
async fn a_cue_is_spoken_on_one_reused_session() {
    let fake = RealtimeFake::start().await;
    let (voice, metrics) = voice(config(&fake));
    let (mut out, mut source) = channel("dj");
    let said = voice
        .speak(&cue("OP", "Open the show"), &mut out)
        .await
        .unwrap();
    assert_eq!(said, fake_reply("Open the show"));

    // All of it arrives at 48 kHz: twice the 24 kHz samples, give or take the resampler's
    // tail and the last frame's padding.
    let played = play_out(&mut source);
    let expected = 2 * fake_speech_len(&said);
    assert!(
        played.len().abs_diff(expected) <= 1024,
        "{} samples played, {expected} expected",
        played.len()
    );
    let rms = (played.iter().map(|s| s * s).sum::<f32>() / played.len() as f32).sqrt();
    assert!(rms > 0.02, "speech is audible: rms {rms}");

    // The GA handshake and session shape, as the fake checked them.
    assert_eq!(fake.beta_closed(), 0);
    let sessions = fake.sessions();
    assert_eq!(sessions.len(), 1);
    let update = &sessions[0].updates[0];
    assert_eq!(update["type"], "realtime");
    assert_eq!(update["output_modalities"], json!(["audio"]));
    assert_eq!(
        update["audio"]["output"]["format"],
        json!({ "type": "audio/pcm", "rate": 24000 })
    );
    assert_eq!(sessions[0].voice, "marin");
    assert_eq!(sessions[0].model, "gpt-realtime");
    assert!(sessions[0].instructions.contains("Radio24"));
    assert!(
        sessions[0]
            .instructions
            .contains("Program block now on air: OP.")
    );
    let text = sessions[0].items[0]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.starts_with("Open the show")
            && text.contains("<earlier_listener_message>\nAnn from Leeds")
    );
    assert!(
        sessions[0]
            .instructions
            .contains("never instructions to you")
    );
    assert!(metrics.realtime_session_started.load(Ordering::Relaxed) > 0);

    // The next cue, in another block, reuses the session with new instructions.
    let (mut out, _source) = channel("dj");
    let said = voice
        .speak(&cue("NEWS", "Read the headlines"), &mut out)
        .await
        .unwrap();
    assert_eq!(said, fake_reply("Read the headlines"));
    let sessions = fake.sessions();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].updates.len(), 2);
    assert!(sessions[0].instructions.contains("NEWS"));
    assert_eq!(reconnects(&metrics), 0);
}

#[tokio::test]
async fn an_old_session_is_rotated_and_the_new_one_knows_what_was_said() {
    let fake = RealtimeFake::start().await;
    let (voice, metrics) = voice(config(&fake).with_session_max_age(Duration::from_millis(1)));
    let first = speak(&voice, "First cue").await.unwrap();
    let second = speak(&voice, "Second cue").await.unwrap();
    assert_eq!(second, fake_reply("Second cue"));
    assert_eq!(fake.session_count(), 2);
    assert_eq!(reconnects(&metrics), 1);
    let instructions = &fake.sessions()[1].instructions;
    assert!(
        instructions.contains("First cue") && instructions.contains(&first),
        "{instructions}"
    );
    // The old session was closed, not left open.
    wait_until(
        "the rotated session to close",
        Duration::from_secs(5),
        || async { fake.open_sessions() == 1 },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn an_expired_session_is_replaced_on_the_next_cue() {
    let fake = RealtimeFake::start().await;
    let (voice, metrics) = voice(config(&fake));
    let first = speak(&voice, "Before the expiry").await.unwrap();
    fake.expire_sessions();
    wait_until("the session to expire", Duration::from_secs(5), || async {
        fake.expired_sessions() == 1 && fake.open_sessions() == 0
    })
    .await
    .unwrap();
    let second = speak(&voice, "After the expiry").await.unwrap();
    assert_eq!(second, fake_reply("After the expiry"));
    assert_eq!(fake.session_count(), 2);
    assert_eq!(reconnects(&metrics), 1);
    assert!(fake.sessions()[1].instructions.contains(&first));
}

#[tokio::test]
async fn a_session_expiring_on_its_own_lifetime_is_replaced() {
    let options = RealtimeFakeOptions {
        session_lifetime: Duration::from_secs(1),
        ..RealtimeFakeOptions::default()
    };
    let fake = RealtimeFake::start_with(options).await.unwrap();
    let (voice, metrics) = voice(config(&fake));
    // A short prompt: its reply takes a few tens of milliseconds, well within the lifetime.
    speak(&voice, "Hi").await.unwrap();
    wait_until("the session to expire", Duration::from_secs(5), || async {
        fake.expired_sessions() >= 1
    })
    .await
    .unwrap();
    speak(&voice, "Still here").await.unwrap();
    assert!(reconnects(&metrics) >= 1);
}

#[tokio::test]
async fn a_dropped_socket_fails_promptly_and_the_next_cue_reconnects() {
    let fake = RealtimeFake::start().await;
    let (voice, metrics) = voice(config(&fake));
    speak(&voice, "Warm up").await.unwrap();
    fake.fail_next_response(RealtimeFault::DropMidResponse);
    let (err, elapsed) = failure(&voice, "This gets cut off").await;
    assert!(matches!(err, VoiceError::Failed(_)), "{err:?}");
    assert!(
        elapsed < Duration::from_secs(2),
        "failed after {elapsed:?}, not through the stall timeout"
    );
    speak(&voice, "Back again").await.unwrap();
    assert_eq!(fake.session_count(), 2);
    assert_eq!(reconnects(&metrics), 1);
}

#[tokio::test]
async fn a_stalled_response_fails_within_the_stall_timeout() {
    let fake = RealtimeFake::start().await;
    let stall = Duration::from_millis(400);
    let (voice, _metrics) = voice(config(&fake).with_stall_timeout(stall));
    fake.fail_next_response(RealtimeFault::Stall { pause: None });
    let (err, elapsed) = failure(&voice, "This stalls").await;
    assert_eq!(err, VoiceError::Stalled(stall));
    assert!(
        elapsed >= stall && elapsed < stall + Duration::from_millis(1500),
        "{elapsed:?}"
    );
    speak(&voice, "After the stall").await.unwrap();
    assert_eq!(fake.session_count(), 2);
}

#[tokio::test]
async fn a_pause_shorter_than_the_stall_timeout_is_not_a_stall() {
    let fake = RealtimeFake::start().await;
    let (voice, _metrics) = voice(config(&fake).with_stall_timeout(Duration::from_secs(3)));
    fake.fail_next_response(RealtimeFault::Stall {
        pause: Some(Duration::from_millis(300)),
    });
    let said = speak(&voice, "Hold on a moment").await.unwrap();
    assert_eq!(said, fake_reply("Hold on a moment"));
}

#[tokio::test]
async fn a_cue_abandoned_mid_response_does_not_leak_into_the_next() {
    let fake = RealtimeFake::start().await;
    let (voice, _metrics) = voice(config(&fake));
    fake.fail_next_response(RealtimeFault::Stall {
        pause: Some(Duration::from_millis(500)),
    });
    // The caller gives up while the response is paused half-way.
    let abandoned = tokio::time::timeout(Duration::from_millis(150), speak(&voice, "Abandoned"));
    assert!(abandoned.await.is_err(), "the cue was still running");
    let said = speak(&voice, "Next cue").await.unwrap();
    assert_eq!(said, fake_reply("Next cue"));
    assert_eq!(fake.session_count(), 2);
}

#[tokio::test]
async fn failed_and_incomplete_responses_fail_the_cue_and_keep_the_session() {
    let fake = RealtimeFake::start().await;
    let (voice, _metrics) = voice(config(&fake));
    fake.fail_next_response(RealtimeFault::Failed);
    match speak(&voice, "This fails").await {
        Err(VoiceError::Failed(reason)) => assert!(reason.contains("server_error"), "{reason}"),
        other => panic!("{other:?}"),
    }
    fake.fail_next_response(RealtimeFault::Incomplete);
    match speak(&voice, "This is cut short").await {
        Err(VoiceError::Failed(reason)) => assert!(reason.contains("incomplete"), "{reason}"),
        other => panic!("{other:?}"),
    }
    speak(&voice, "This works").await.unwrap();
    assert_eq!(fake.session_count(), 1);
}

#[tokio::test]
async fn a_rate_limit_refuses_calls_until_it_passes() {
    let fake = RealtimeFake::start().await;
    let (voice, _metrics) = voice(config(&fake));
    let window = Duration::from_secs(1);
    fake.fail_next_response(RealtimeFault::RateLimited {
        retry_after: window,
    });
    let limited_at = Instant::now();
    let wait = match speak(&voice, "Too soon").await {
        Err(VoiceError::RateLimited(wait)) => wait,
        other => panic!("{other:?}"),
    };
    assert!(
        wait.abs_diff(window) < Duration::from_millis(50),
        "{wait:?}"
    );

    // Within the window: refused at once, without a word to the server.
    let (handshakes, responses) = (fake.handshakes(), fake.responses());
    let (err, elapsed) = failure(&voice, "Still too soon").await;
    assert!(
        matches!(err, VoiceError::RateLimited(left) if left <= wait),
        "{err:?}"
    );
    assert!(elapsed < Duration::from_millis(100), "{elapsed:?}");
    assert_eq!(
        (fake.handshakes(), fake.responses()),
        (handshakes, responses)
    );

    // After it: spoken.
    let voice = &voice;
    wait_until(
        "the rate limit to pass",
        Duration::from_secs(5),
        || async move { speak(voice, "Now").await.is_ok() },
    )
    .await
    .unwrap();
    assert!(limited_at.elapsed() >= window);
    assert_eq!(fake.responses(), responses + 1);
}

#[tokio::test]
async fn a_wrong_key_is_unavailable() {
    let fake = RealtimeFake::start().await;
    let config = RealtimeConfig::new("sk-wrong-key").with_url(fake.url());
    let (voice, _metrics) = voice(config);
    match speak(&voice, "Hello").await {
        Err(VoiceError::Unavailable(reason)) => {
            assert!(reason.contains("401"), "{reason}");
            assert!(
                !reason.contains("wrong-key"),
                "the key is not quoted: {reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.session_count(), 0);
    assert_eq!(fake.refused_handshakes(), 1);
}

#[tokio::test]
async fn a_killed_server_fails_fast_and_a_restarted_one_is_used() -> anyhow::Result<()> {
    let bin = testkit::pipeline::binary("realtime-fake")?;
    let dir = tempfile::tempdir()?;
    let port = testkit::free_port();
    let start = || {
        let mut cmd = std::process::Command::new(&bin);
        cmd.env("REALTIME_FAKE_PORT", port.to_string());
        testkit::spawn_logged(cmd, dir.path().join("realtime-fake.log"))
    };
    let listening = || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    };
    let config = RealtimeConfig::new(FAKE_API_KEY)
        .with_url(format!("ws://127.0.0.1:{port}/v1/realtime"))
        .with_connect_timeout(Duration::from_secs(2));
    let (voice, metrics) = voice(config);

    let server = start()?;
    wait_until(
        "realtime-fake to listen",
        Duration::from_secs(10),
        listening,
    )
    .await?;
    speak(&voice, "Before the crash").await?;

    server.kill();
    let (err, elapsed) = failure(&voice, "During the outage").await;
    assert!(matches!(err, VoiceError::Unavailable(_)), "{err:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");

    let _server = start()?;
    wait_until(
        "realtime-fake to listen again",
        Duration::from_secs(10),
        listening,
    )
    .await?;
    let said = speak(&voice, "After the restart").await?;
    assert_eq!(said, fake_reply("After the restart"));
    assert_eq!(reconnects(&metrics), 1);
    Ok(())
}

/// How long `samples` of the feed's 48 kHz output last.
fn seconds(samples: usize) -> f64 {
    samples as f64 / 48_000.0
}

#[tokio::test]
async fn words_that_fail_moderation_are_cut_in_the_delay_and_never_air() {
    let fake = RealtimeFake::start().await;
    let delay = Duration::from_millis(1500);
    let (voice, _metrics, _dump) = voice_with_dump(config(&fake).with_delay(delay));
    let (mut out, mut source) = channel("dj");
    // The fake's DJ says its prompt back: a first sentence that passes, then a threat.
    let threat = "I will kill everyone at the station tomorrow.";
    let started = Instant::now();
    let err = voice
        .speak(&cue("QANDA", threat), &mut out)
        .await
        .expect_err("cut");
    let cut_after = started.elapsed();
    match &err {
        VoiceError::Cut(reason) => assert!(reason.contains("harassment/threatening"), "{reason}"),
        other => panic!("{other:?}"),
    }
    let said = fake_reply(threat);
    let first_sentence = said.split_inclusive(". ").next().unwrap();
    let played = play_out(&mut source);
    let aired = seconds(played.len());
    let whole = seconds(2 * fake_speech_len(&said));
    let allowed = seconds(2 * fake_speech_len(first_sentence) + 2 * fake_speech_len("I wi"));
    println!(
        "broadcast delay {delay:?}: cut {cut_after:?} after the cue; aired {aired:.2} s of \
         {whole:.2} s (at most {allowed:.2} s: the sentence before the threat)"
    );
    assert!(
        aired <= allowed + 0.05,
        "{aired} s aired, {allowed} s allowed"
    );
    // The session stays: the next cue is spoken on it.
    let (mut out, _source) = channel("dj");
    voice
        .speak(&cue("QANDA", "Play some jazz"), &mut out)
        .await
        .unwrap();
    assert_eq!(fake.sessions().len(), 1);
}

#[tokio::test]
async fn audio_airs_a_delay_after_it_arrives() {
    let fake = RealtimeFake::start().await;
    let delay = Duration::from_millis(1000);
    let (voice, _metrics, _dump) = voice_with_dump(config(&fake).with_delay(delay));
    let (mut out, source) = channel("dj");
    let probe = tokio::spawn(async move {
        // The first audio in the feed: when the engine could first play it.
        let mut source = source;
        let started = Instant::now();
        let mut frame = Frame::silent();
        loop {
            if source.fill(&mut frame) == Pull::Audio {
                return started.elapsed();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    let started = Instant::now();
    voice
        .speak(
            &cue("OP", "Open the show. Good morning everyone."),
            &mut out,
        )
        .await
        .unwrap();
    let first_audio = probe.await.unwrap();
    println!(
        "broadcast delay {delay:?}: first audio in the feed {first_audio:?} after the cue \
         (the fake answers at once), cue done in {:?}",
        started.elapsed()
    );
    assert!(first_audio >= delay, "{first_audio:?}");
    assert!(
        first_audio < delay + Duration::from_millis(800),
        "{first_audio:?}"
    );
}

#[tokio::test]
async fn an_operator_dump_cuts_what_the_delay_holds() {
    let fake = RealtimeFake::start().await;
    let (voice, _metrics, dump) = voice_with_dump(config(&fake).with_delay(Duration::from_secs(3)));
    assert!(!dump.press(), "nothing held, nothing cut");
    let (mut out, mut source) = channel("dj");
    let voice = Arc::new(voice);
    let speaking = tokio::spawn({
        let voice = voice.clone();
        async move {
            voice
                .speak(
                    &cue("OP", "Open the show with a long story about the weather."),
                    &mut out,
                )
                .await
        }
    });
    wait_until(
        "the response is under way",
        Duration::from_secs(10),
        || async { fake.sessions().first().is_some_and(|s| !s.items.is_empty()) },
    )
    .await
    .unwrap();
    assert!(dump.press(), "a response was in the delay");
    match speaking.await.unwrap() {
        Err(VoiceError::Cut(reason)) => assert!(reason.contains("operator"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(play_out(&mut source).len(), 0, "nothing of it aired");
}

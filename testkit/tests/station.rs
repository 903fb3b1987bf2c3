//! The station end to end: a listener's message goes through ingest, embed and moderate,
//! the host-streamer claims it from `submission-ready`, plays it in a QANDA block with the
//! DJ's reply, marks it aired and logs it with the recording's path.

use std::time::Duration;

use shared::bus::OutgoingMessage;
use shared::message::{Event, SubmissionEvent};
use shared::submission::{SubmissionId, SubmissionKind};
use testkit::pipeline::{Pipeline, PipelineOptions};
use testkit::wait_until;

/// Every hour one 60-minute QANDA block.
const ALL_QANDA: &str = "DELETE FROM schedule WHERE channel_id = 'main'; \
    INSERT INTO schedule (channel_id, hour, position, block, minutes) \
    SELECT 'main', h, 0, 'QANDA', 60 FROM generate_series(0, 23) AS h;";

async fn station(env: Vec<(&'static str, String, String)>) -> Pipeline {
    let options = PipelineOptions {
        streamer: Some(0),
        before_streamer: vec![ALL_QANDA.to_owned()],
        env,
        ..PipelineOptions::default()
    };
    Pipeline::start_shared(options)
        .await
        .expect("pipeline with streamer")
}

#[tokio::test]
async fn the_director_plays_a_ready_submission_within_one_qanda_block_and_logs_it() {
    let p = station(vec![(
        "host-streamer",
        "RECORDING_SEGMENT".into(),
        "10s".into(),
    )])
    .await;
    let text = "Hello Radio24, greetings from the night shift at the bakery!";
    let id = p.post_text(text).await.unwrap();

    let aired = wait_until("aired", Duration::from_secs(90), || async {
        sqlx::query_scalar::<_, String>("SELECT status FROM submission WHERE id = $1")
            .bind(id)
            .fetch_one(&p.db)
            .await
            .is_ok_and(|s| s == "aired")
    })
    .await;
    assert!(aired.is_ok(), "not aired:\n{}", p.log_tails(40));

    let (queued_to_aired, approved_to_queued): (f64, f64) = sqlx::query_as(
        "SELECT extract(epoch FROM aired_at - queued_at)::float8, \
                extract(epoch FROM queued_at - approved_at)::float8 \
         FROM submission WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&p.db)
    .await
    .unwrap();
    println!(
        "approved -> queued {approved_to_queued:.2} s, queued -> aired {queued_to_aired:.2} s"
    );
    assert!(
        queued_to_aired < 60.0 * 60.0,
        "played within the hour-long QANDA block"
    );

    let (segment, transcript, recording, ended): (String, String, Option<String>, bool) =
        sqlx::query_as(
            "SELECT segment, transcript, recording_path, ended_at IS NOT NULL \
             FROM on_air_log WHERE submission_id = $1",
        )
        .bind(id)
        .fetch_one(&p.db)
        .await
        .unwrap();
    println!("on-air log: {segment} {recording:?}\n{transcript}");
    assert_eq!(segment, "QANDA");
    assert!(transcript.contains(text), "{transcript}");
    assert!(transcript.contains("DJ (local)"), "{transcript}");
    assert!(ended);
    let recording = recording.expect("recording path");
    assert!(
        recording.starts_with(&format!("gs://{}/recordings/main/", p.bucket)),
        "{recording}"
    );

    // A redelivered ready message (Pub/Sub is at-least-once) plays nothing twice.
    let event = SubmissionEvent::new(
        Event::Ready,
        SubmissionId(id),
        "main",
        SubmissionKind::Text,
        None,
    );
    p.bus
        .publish(
            &p.topics.ready,
            OutgoingMessage::new(serde_json::to_vec(&event.to_json()).unwrap()),
        )
        .await
        .unwrap();
    let streamer_log = || {
        p.streamer
            .as_ref()
            .map(|(c, _)| c.log_tail(400))
            .unwrap_or_default()
    };
    wait_until(
        "the redelivery is claimed",
        Duration::from_secs(30),
        || async { streamer_log().contains("AlreadyClaimed") },
    )
    .await
    .unwrap_or_else(|_| panic!("{}", streamer_log()));
    let plays: i64 = sqlx::query_scalar("SELECT count(*) FROM on_air_log WHERE submission_id = $1")
        .bind(id)
        .fetch_one(&p.db)
        .await
        .unwrap();
    assert_eq!(plays, 1);

    // SIGTERM: the streamer finishes the frame, ends the stream, uploads the open
    // recording segment and exits 0 within its grace.
    let (child, url) = p.streamer.as_ref().unwrap();
    let mut listener = reqwest::get(format!("{url}/stream.ogg")).await.unwrap();
    let first = listener.chunk().await.unwrap().expect("stream headers");
    let listening = tokio::spawn(async move {
        let mut body = first.to_vec();
        while let Ok(Some(chunk)) = listener.chunk().await {
            body.extend_from_slice(&chunk);
        }
        body
    });
    let stopping = std::time::Instant::now();
    child.kill();
    let status = child.exit_status().expect("exited");
    let log = child.log_tail(30);
    println!("stopped in {:?}: {status}", stopping.elapsed());
    assert!(status.success(), "{status}\n{log}");
    assert!(stopping.elapsed() < Duration::from_secs(9), "{log}");
    assert!(log.contains("left_in_spool: 0"), "{log}");
    let spooled: Vec<_> = walk(&p.logs().join("spool"))
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "ogg"))
        .collect();
    assert!(spooled.is_empty(), "left in the spool: {spooled:?}");
    // A listener connected at the stop got the end of the stream, not a cut connection.
    let heard = tokio::time::timeout(Duration::from_secs(5), listening)
        .await
        .expect("the listener's response ended")
        .unwrap();
    let samples = decode(&heard);
    println!(
        "listener at the stop: {} bytes, {:.2} s decoded cleanly",
        heard.len(),
        samples.len() as f64 / 48_000.0
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                walk(&path)
            } else {
                vec![path]
            }
        })
        .collect()
}

/// Decodes Ogg/Opus with ffmpeg (a real decoder) to 48 kHz mono; fails on any decoder
/// complaint.
fn decode(ogg: &[u8]) -> Vec<f32> {
    decode_at(ogg, 48_000)
}

/// Longest run of 20 ms windows under -50 dBFS, in seconds.
fn longest_silence(samples: &[f32]) -> f64 {
    let (mut run, mut longest) = (0usize, 0usize);
    for window in samples.chunks(960) {
        let rms = (window.iter().map(|s| s * s).sum::<f32>() / window.len() as f32).sqrt();
        if 20.0 * rms.log10() < -50.0 {
            run += 1;
            longest = longest.max(run);
        } else {
            run = 0;
        }
    }
    longest as f64 * 0.02
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// Five minutes in real time with the DJ on the Realtime fake, which is killed and
/// restarted twice (and whose sessions expire every 45 s): the stream a listener receives
/// decodes cleanly with ffmpeg from end to end and never stays silent as long as the
/// watchdog limit.
#[tokio::test]
async fn five_minutes_on_air_through_realtime_outages_decode_cleanly_without_dead_air() {
    const MINUTES: u64 = 5;
    let fake_bin = testkit::pipeline::binary("realtime-fake").unwrap();
    let fake_dir = tempfile::tempdir().unwrap();
    let fake_port = testkit::free_port();
    let start_fake = || {
        let mut cmd = std::process::Command::new(&fake_bin);
        cmd.env("REALTIME_FAKE_PORT", fake_port.to_string())
            .env("REALTIME_FAKE_SESSION_LIFETIME", "45s");
        testkit::spawn_logged(cmd, fake_dir.path().join("realtime-fake.log")).unwrap()
    };
    let fake_listening = || async {
        tokio::net::TcpStream::connect(("127.0.0.1", fake_port))
            .await
            .is_ok()
    };
    let mut fake = Some(start_fake());
    wait_until("realtime-fake", Duration::from_secs(10), fake_listening)
        .await
        .unwrap();

    let streamer_env = |k: &str, v: String| ("host-streamer", k.to_owned(), v);
    let p = station(vec![
        streamer_env("OPENAI_API_KEY", testkit::openai_fake::FAKE_API_KEY.into()),
        streamer_env(
            "OPENAI_REALTIME_URL",
            format!("ws://127.0.0.1:{fake_port}/v1/realtime"),
        ),
        streamer_env("DJ_VOICES", "realtime".into()),
        streamer_env("DJ_TALK_INTERVAL", "8s".into()),
        streamer_env("REALTIME_CONNECT_TIMEOUT", "2s".into()),
        streamer_env("RECORDING_SEGMENT", "60s".into()),
    ])
    .await;
    let streamer_url = p.streamer.as_ref().unwrap().1.clone();

    // The listener.
    let listen = tokio::spawn({
        let url = format!("{streamer_url}/stream.ogg");
        async move {
            let mut res = reqwest::get(&url).await.unwrap();
            assert_eq!(res.status(), 200);
            let mut body = Vec::new();
            let end = tokio::time::Instant::now() + Duration::from_secs(MINUTES * 60);
            while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(end, res.chunk()).await {
                body.extend_from_slice(&chunk);
            }
            body
        }
    });

    // The program's timeline: listeners write in, the Realtime service goes away and
    // comes back twice.
    let started = tokio::time::Instant::now();
    let at = |s: u64| started + Duration::from_secs(s);
    let client = reqwest::Client::new();
    for (second, action) in [
        (20, "post"),
        (60, "kill"),
        (80, "post"),
        (100, "start"),
        (140, "post"),
        (170, "kill"),
        (200, "start"),
        (230, "post"),
    ] {
        tokio::time::sleep_until(at(second)).await;
        match action {
            "post" => {
                p.post_text(&format!("Greetings at second {second} of the test!"))
                    .await
                    .unwrap();
            }
            "kill" => {
                if let Some(f) = fake.take() {
                    f.kill();
                }
            }
            _ => {
                fake = Some(start_fake());
                wait_until(
                    "realtime-fake again",
                    Duration::from_secs(10),
                    fake_listening,
                )
                .await
                .unwrap();
            }
        }
    }
    let ogg = listen.await.unwrap();
    let metrics = client
        .get(format!("{streamer_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let samples = decode(&ogg);
    let seconds = samples.len() as f64 / 48_000.0;
    let silence = longest_silence(&samples);
    let voices: Vec<(String, i64)> = sqlx::query_as(
        "SELECT substring(transcript from 'DJ \\((\\w+)\\)'), count(*) FROM on_air_log \
         WHERE transcript LIKE '%DJ (%' GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(&p.db)
    .await
    .unwrap();
    let aired: i64 = sqlx::query_scalar("SELECT count(*) FROM submission WHERE status = 'aired'")
        .fetch_one(&p.db)
        .await
        .unwrap();
    println!(
        "received {} bytes = {seconds:.2} s of audio, decoded without complaint; longest silence {silence:.2} s; \
         cues by voice {voices:?}; aired {aired}; reconnects {}, voice failures {}, silence events {}, late frames {}",
        ogg.len(),
        metric(&metrics, "radio24_realtime_reconnects_total"),
        metric(&metrics, "radio24_voice_failures_total"),
        metric(&metrics, "radio24_silence_events_total"),
        metric(&metrics, "radio24_frames_late_total"),
    );
    let expected = (MINUTES * 60) as f64;
    assert!(
        (seconds - expected).abs() < 3.0,
        "{seconds} s of audio in {expected} s"
    );
    assert!(silence < 1.5, "silent for {silence} s");
    assert!(
        metric(&metrics, "radio24_realtime_reconnects_total") >= 2.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "radio24_voice_failures_total") >= 1.0,
        "{metrics}"
    );
    let spoke = |voice: &str| voices.iter().any(|(v, n)| v == voice && *n > 0);
    assert!(spoke("realtime") && spoke("local"), "{voices:?}");
    assert_eq!(aired, 4, "{}", p.log_tails(30));
}

/// The broadcast delay as a listener hears it. The DJ, on the Realtime fake, says a harmless
/// line, then a turn that ends in a threat; the streamer's moderator reads the transcript
/// while the audio waits in the delay. The stream, decoded by ffmpeg, carries the harmless
/// line's audio and none of the cut turn's: each is searched for in it by normalised
/// cross-correlation with the waveform the fake sent.
#[tokio::test]
async fn words_cut_in_the_broadcast_delay_never_reach_the_stream() {
    let fake = testkit::RealtimeFake::start().await;
    let streamer_env = |k: &str, v: String| ("host-streamer", k.to_owned(), v);
    let mut env: Vec<_> = fake
        .env()
        .into_iter()
        .map(|(k, v)| streamer_env(&k, v))
        .collect();
    env.extend([
        streamer_env("DJ_VOICES", "realtime,local".into()),
        streamer_env("DJ_TALK_INTERVAL", "5s".into()),
        streamer_env("BROADCAST_DELAY", "4s".into()),
        // The fake serves Realtime only: the DJ's words are judged by the local moderator.
        streamer_env("MODERATION_PROVIDER", "local".into()),
    ]);
    let p = station(env).await;
    let streamer_url = p.streamer.as_ref().unwrap().1.clone();

    let mut listener = reqwest::get(format!("{streamer_url}/stream.ogg"))
        .await
        .unwrap();
    let mut ogg = listener
        .chunk()
        .await
        .unwrap()
        .expect("stream headers")
        .to_vec();
    // Connected: the DJ's next turn says a harmless line, the one after says another and a
    // threat. A cut drops all the delay holds: the whole second turn, never the first.
    let harmless = "Good evening from the night desk, here comes a long set of quiet piano music.";
    let threat = "I will kill everyone at the station tomorrow and nobody is going to stop me.";
    let cut_turn = format!("And now the weather for the weekend. {threat}");
    fake.say_next(harmless);
    fake.say_next(&cut_turn);
    let ogg = {
        let metrics_url = format!("{streamer_url}/metrics");
        let cut = async {
            wait_until("the cut", Duration::from_secs(60), || async {
                let metrics = reqwest::get(&metrics_url)
                    .await
                    .unwrap()
                    .text()
                    .await
                    .unwrap();
                metric(&metrics, "radio24_dj_lines_replaced_total") >= 1.0
            })
            .await
        };
        let mut cut = std::pin::pin!(cut);
        let mut cut_at = None;
        loop {
            tokio::select! {
                chunk = listener.chunk() => ogg.extend_from_slice(&chunk.unwrap().expect("stream goes on")),
                done = &mut cut, if cut_at.is_none() => {
                    done.unwrap_or_else(|_| panic!("never cut:\n{}", p.log_tails(40)));
                    cut_at = Some(tokio::time::Instant::now());
                }
            }
            // The delay's length and the safe line after the cut, heard too.
            if cut_at.is_some_and(|at| at.elapsed() > Duration::from_secs(8)) {
                break ogg;
            }
        }
    };
    let heard = decode_at(&ogg, 4_000);
    let waveform = |said: &str, text: &str| {
        let start = said.find(text).unwrap();
        let all = testkit::openai_fake::fake_speech(said);
        let per_char = testkit::openai_fake::fake_speech_len("x");
        let pcm: Vec<u8> = all[start * per_char..(start + text.len()) * per_char]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        resample(&pcm, 24_000, 4_000)
    };
    let found = best_match(&heard, &waveform(harmless, harmless));
    let leaked_turn = best_match(&heard, &waveform(&cut_turn, &cut_turn));
    let leaked_threat = best_match(&heard, &waveform(&cut_turn, threat));
    println!(
        "stream decoded: {:.1} s; normalised cross-correlation with what the fake said (1 = the \
         same waveform): the harmless line {found:.3}, the cut turn {leaked_turn:.3}, its threat \
         {leaked_threat:.3}",
        heard.len() as f64 / 4_000.0
    );
    assert!(found > 0.6, "the harmless line aired: {found}");
    assert!(leaked_turn < 0.2, "no trace of the cut turn: {leaked_turn}");
    assert!(
        leaked_threat < 0.2,
        "no trace of the threat: {leaked_threat}"
    );
    // The log of what aired has the safe line in the turn's place, and not the threat.
    let aired: Vec<String> =
        sqlx::query_scalar("SELECT coalesce(transcript, '') FROM on_air_log ORDER BY started_at")
            .fetch_all(&p.db)
            .await
            .unwrap();
    let aired = aired.join("\n");
    assert!(aired.contains(harmless), "{aired}");
    assert!(aired.contains("Let's keep the music going"), "{aired}");
    assert!(!aired.contains("kill everyone"), "{aired}");
}

/// Decodes Ogg/Opus with ffmpeg to mono at `rate`; fails on any decoder complaint.
fn decode_at(ogg: &[u8], rate: u32) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("air.ogg");
    std::fs::write(&path, ogg).unwrap();
    ffmpeg_pcm(&["-i", path.to_str().unwrap()], rate)
}

/// 16-bit little-endian mono `pcm` at `from` Hz, resampled by ffmpeg (as the stream is) to
/// `to` Hz.
fn resample(pcm: &[u8], from: u32, to: u32) -> Vec<f32> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("speech.raw");
    std::fs::write(&path, pcm).unwrap();
    let rate = from.to_string();
    ffmpeg_pcm(
        &[
            "-f",
            "s16le",
            "-ar",
            &rate,
            "-ac",
            "1",
            "-i",
            path.to_str().unwrap(),
        ],
        to,
    )
}

/// What ffmpeg makes of `input` as mono 32-bit float samples at `rate`; fails on any
/// complaint.
fn ffmpeg_pcm(input: &[&str], rate: u32) -> Vec<f32> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error"])
        .args(input)
        .args(["-f", "f32le", "-ac", "1", "-ar", &rate.to_string(), "-"])
        .output()
        .expect("ffmpeg runs");
    let complaints = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && complaints.trim().is_empty(),
        "ffmpeg: {complaints}"
    );
    out.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// The highest normalised cross-correlation of `needle` against any stretch of `haystack`
/// (computed through the FFT): near 1 where the same waveform is there at any gain, near 0
/// where it is not.
fn best_match(haystack: &[f32], needle: &[f32]) -> f64 {
    use realfft::RealFftPlanner;
    if needle.is_empty() || haystack.len() < needle.len() {
        return 0.0;
    }
    let n = (haystack.len() + needle.len()).next_power_of_two();
    let mut planner = RealFftPlanner::<f64>::new();
    let forward = planner.plan_fft_forward(n);
    let inverse = planner.plan_fft_inverse(n);
    let spectrum = |signal: &[f32]| {
        let mut input: Vec<f64> = signal.iter().map(|&s| f64::from(s)).collect();
        input.resize(n, 0.0);
        let mut out = forward.make_output_vec();
        forward.process(&mut input, &mut out).unwrap();
        out
    };
    let h = spectrum(haystack);
    let t = spectrum(needle);
    let mut product: Vec<_> = h.iter().zip(&t).map(|(a, b)| a * b.conj()).collect();
    let mut correlation = inverse.make_output_vec();
    inverse.process(&mut product, &mut correlation).unwrap();
    let needle_norm = needle
        .iter()
        .map(|&s| f64::from(s).powi(2))
        .sum::<f64>()
        .sqrt();
    // Energy of every needle-long stretch of the haystack, by prefix sums.
    let mut energy = vec![0.0; haystack.len() + 1];
    for (i, &s) in haystack.iter().enumerate() {
        energy[i + 1] = energy[i] + f64::from(s).powi(2);
    }
    (0..=haystack.len() - needle.len())
        .map(|lag| {
            let stretch = (energy[lag + needle.len()] - energy[lag]).max(0.0).sqrt();
            if stretch * needle_norm < 1e-9 {
                0.0
            } else {
                correlation[lag] / n as f64 / (stretch * needle_norm)
            }
        })
        .fold(0.0, f64::max)
}

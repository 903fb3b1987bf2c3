//! `LocalWhisper` end to end: real speech (espeak-ng) in every accepted container (made with
//! ffmpeg), silence, garbage and over-long audio. Needs the model, ffmpeg and espeak-ng,
//! which `dev/install-tools` installs; a missing one fails the test with that advice.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::LazyLock;
use std::time::Duration;

use bytes::Bytes;
use models::ProviderError;
use models::transcription::Transcriber;
use models::whisper::{LocalWhisper, NAME};

const PHRASE: &str = "Hello radio twenty four, please play some jazz.";

static MODEL: LazyLock<LocalWhisper> = LazyLock::new(|| {
    let dir = LocalWhisper::default_dir();
    LocalWhisper::load(&dir).unwrap_or_else(|e| panic!("{e:#}"))
});

/// Runs a tool the tests need, failing clearly when it is not installed.
fn run(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program} ({e}); dev/install-tools installs it (apt: {program})")
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `text` spoken by espeak-ng into `dir/speech.wav` (22.05 kHz mono 16-bit). At 150 words
/// a minute with 50 ms between words tiny.en hears espeak's "hello" (at its default pace it
/// hears "the low", as the reference CTranslate2 implementation does too).
fn speech_wav(dir: &Path, text: &str) -> PathBuf {
    let wav = dir.join("speech.wav");
    run(
        "espeak-ng",
        &["-s", "150", "-g", "5", "-w", wav.to_str().unwrap(), text],
    );
    wav
}

/// `input` re-encoded by ffmpeg into `dir/name` with the given codec arguments.
fn ffmpeg(input: &Path, dir: &Path, name: &str, codec: &[&str]) -> Vec<u8> {
    let out = dir.join(name);
    let mut args = vec!["-hide_banner", "-loglevel", "error", "-y", "-i"];
    args.push(input.to_str().unwrap());
    args.extend_from_slice(codec);
    args.push(out.to_str().unwrap());
    run("ffmpeg", &args);
    std::fs::read(out).unwrap()
}

/// A mono 16-bit PCM WAV file.
fn wav_16bit(rate: u32, samples: &[f32]) -> Vec<u8> {
    let data_len = samples.len() as u32 * 2;
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&[1, 0, 1, 0]); // PCM, mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&[2, 0, 16, 0]); // block align, bits
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        out.extend_from_slice(&((s * 32_767.0) as i16).to_le_bytes());
    }
    out
}

fn transcribe(bytes: &[u8]) -> String {
    MODEL
        .transcribe_blocking(bytes)
        .unwrap_or_else(|e| panic!("{e}"))
        .text
}

/// The words a listener would check for, case-insensitive; "twenty four" may come out as
/// digits.
fn assert_heard_phrase(text: &str, what: &str) {
    let lower = text.to_lowercase();
    for word in ["hello", "radio", "play", "jazz"] {
        assert!(
            lower.contains(word),
            "{what}: {word:?} missing from {text:?}"
        );
    }
    assert!(
        lower.contains("24") || lower.contains("twenty") && lower.contains("four"),
        "{what}: \"twenty four\" missing from {text:?}"
    );
}

#[test]
fn speech_is_transcribed_from_every_accepted_container() {
    let dir = tempfile::tempdir().unwrap();
    let wav = speech_wav(dir.path(), PHRASE);
    assert_heard_phrase(&transcribe(&std::fs::read(&wav).unwrap()), "WAV");

    let opus = ["-c:a", "libopus", "-b:a", "24k"];
    let ogg = ffmpeg(
        &wav,
        dir.path(),
        "speech.ogg",
        &[&opus[..], &["-f", "ogg"]].concat(),
    );
    assert_heard_phrase(&transcribe(&ogg), "Ogg/Opus");

    // `-live 1` to a pipe-like layout: unknown-size Segment, no Cues, as streamed uploads.
    let webm = ffmpeg(
        &wav,
        dir.path(),
        "speech.webm",
        &[&opus[..], &["-live", "1", "-f", "webm"]].concat(),
    );
    assert_heard_phrase(&transcribe(&webm), "WebM/Opus");

    let encoders = String::from_utf8(run("ffmpeg", &["-hide_banner", "-encoders"])).unwrap();
    if encoders.contains("libmp3lame") {
        let mp3 = ffmpeg(
            &wav,
            dir.path(),
            "speech.mp3",
            &["-c:a", "libmp3lame", "-b:a", "64k"],
        );
        assert_heard_phrase(&transcribe(&mp3), "MP3");
    } else {
        eprintln!("ffmpeg has no libmp3lame: MP3 covered by the fixture test only");
    }
}

/// The probe's fixtures say "Hello, Radio twenty four." (fast) in each layout, including one
/// laid out like browsers' MediaRecorder output (unknown-size Segment and Clusters). The
/// expected words are what the reference implementation (CTranslate2 through
/// faster-whisper, greedy, no timestamps) hears in the same files.
#[test]
fn fixture_uploads_are_transcribed() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../media/tests/fixtures/audio");
    for (name, expected) in [
        ("speech_streamable.webm", "radio 24"),
        ("speech_live.webm", "radio 24"),
        ("speech.webm", "radio 24"),
        ("speech_opus.mka", "radio 24"),
        ("speech.ogg", "radio 24"),
        ("speech.mp3", "radio 24"),
        ("speech_noxing.mp3", "radio 24"),
        // Faster speech: "ready to go 24." from both implementations.
        ("speech_16k_s16.wav", "24"),
        // The same at 8 kHz: "right there at 20 paul." from both implementations.
        ("speech_8k_s24.wav", "20"),
    ] {
        let text = transcribe(&std::fs::read(fixtures.join(name)).unwrap()).to_lowercase();
        assert!(text.contains(expected), "{name}: {text:?}");
    }
}

#[test]
fn speech_after_a_long_pause_lands_in_a_second_window() {
    let dir = tempfile::tempdir().unwrap();
    let first = speech_wav(dir.path(), PHRASE);
    let second = dir.path().join("second.wav");
    run(
        "espeak-ng",
        &[
            "-s",
            "150",
            "-g",
            "5",
            "-w",
            second.to_str().unwrap(),
            "The weather is sunny in Lisbon today.",
        ],
    );
    // Speech, 35 s of silence, speech: 40-odd seconds, two windows.
    let joined = ffmpeg(
        &first,
        dir.path(),
        "long.wav",
        &[
            "-i",
            second.to_str().unwrap(),
            "-filter_complex",
            "[0:a]apad=pad_dur=35[a];[a][1:a]concat=n=2:v=0:a=1",
            "-ar",
            "16000",
        ],
    );
    let transcript = MODEL.transcribe_blocking(&joined).unwrap();
    assert!(
        transcript.duration.unwrap() > Duration::from_secs(37),
        "{transcript:?}"
    );
    assert_heard_phrase(&transcript.text, "first window");
    let lower = transcript.text.to_lowercase();
    assert!(
        lower.contains("sunny") && lower.contains("lisbon"),
        "{transcript:?}"
    );
}

#[test]
fn silence_and_a_faint_hum_give_an_empty_transcript() {
    let dir = tempfile::tempdir().unwrap();
    // Digital silence and a faint hum (-50 dBFS, 100 Hz), each 5 s, as WAV and as Opus.
    let silence = dir.path().join("silence.wav");
    std::fs::write(&silence, wav_16bit(16_000, &[0.0; 80_000])).unwrap();
    let hum: Vec<f32> = (0..5 * 48_000)
        .map(|i| 0.003_16 * (std::f32::consts::TAU * 100.0 * i as f32 / 48_000.0).sin())
        .collect();
    for (what, bytes) in [
        ("silent WAV", std::fs::read(&silence).unwrap()),
        (
            "silent Opus",
            ffmpeg(
                &silence,
                dir.path(),
                "silence.ogg",
                &["-c:a", "libopus", "-f", "ogg"],
            ),
        ),
        ("hum WAV", wav_16bit(48_000, &hum)),
    ] {
        // Digital silence never reaches the model (nothing above -60 dBFS); the hum does,
        // and the model's own no-speech probability keeps it from inventing text.
        let transcript = MODEL.transcribe_blocking(&bytes).unwrap();
        assert_eq!(transcript.text, "", "{what}: {transcript:?}");
        assert!(
            transcript.duration.unwrap() >= Duration::from_millis(4_900),
            "{what}"
        );
    }
}

#[test]
fn garbage_and_empty_input_are_permanent_errors_a_user_can_read() {
    for (bytes, expected) in [
        (
            &b"this is not audio at all, just text"[..],
            "not a recognised audio format",
        ),
        (&b""[..], "empty"),
        // A WAV header with no samples.
        (&wav_16bit(16_000, &[])[..], "no audio"),
    ] {
        match MODEL.transcribe_blocking(bytes) {
            Err(ProviderError::Permanent { provider, reason }) => {
                assert_eq!(provider, NAME);
                assert!(reason.contains(expected), "{reason:?} lacks {expected:?}");
            }
            other => panic!("{expected}: expected a permanent error, got {other:?}"),
        }
    }
}

#[test]
fn audio_over_the_limit_is_refused_before_decoding() {
    let dir = tempfile::tempdir().unwrap();
    let wav = speech_wav(dir.path(), PHRASE);
    let short = MODEL.clone().with_max_duration(Duration::from_secs(1));
    match short.transcribe_blocking(&std::fs::read(wav).unwrap()) {
        Err(ProviderError::Permanent { reason, .. }) => {
            assert!(reason.contains("at most 1 s"), "{reason}")
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_api_serves_concurrent_callers() {
    let dir = tempfile::tempdir().unwrap();
    let wav = Bytes::from(std::fs::read(speech_wav(dir.path(), PHRASE)).unwrap());
    let model = LazyLock::force(&MODEL).clone();
    assert_eq!(model.name(), "local:whisper-tiny.en");
    assert_eq!(model.max_concurrent(), 1);
    let (a, b) = tokio::join!(
        model.transcribe(wav.clone(), "audio/wav", "a.wav"),
        model.transcribe(wav, "audio/wav", "b.wav"),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);
    assert_heard_phrase(&a.text, "async");
    assert_eq!(a.language.as_deref(), Some("english"));
}

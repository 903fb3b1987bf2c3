//! The OpenAI client, embedder and transcriber against testkit's protocol fake: success
//! paths, and how each kind of failure is retried or handed back.

use std::time::{Duration, Instant};

use bytes::Bytes;
use models::ProviderError;
use models::embedding::Embedder;
use models::embedding::{BatchLimits, OpenAiEmbedder};
use models::openai::{OpenAiClient, OpenAiConfig};
use models::transcription::{OpenAiTranscriber, Transcriber};
use serde_json::{Value, json};
use testkit::openai_fake::{
    self, DEFAULT_TRANSCRIPT, EMBEDDINGS, Fault, MODERATIONS, OpenAiFake, TRANSCRIPTIONS,
};

/// A client for `fake` with short limits, adjusted by `tweak`.
fn client(fake: &OpenAiFake, tweak: impl FnOnce(&mut OpenAiConfig)) -> OpenAiClient {
    let mut cfg = fake.config();
    tweak(&mut cfg);
    OpenAiClient::new(cfg)
}

fn texts(items: impl IntoIterator<Item = impl Into<String>>) -> Vec<String> {
    items.into_iter().map(Into::into).collect()
}

/// A moderation request: the smallest JSON call the fake serves.
async fn moderate(client: &OpenAiClient) -> Result<Value, ProviderError> {
    client
        .post_json(
            "moderations",
            &json!({"model": "omni-moderation-latest", "input": "hi"}),
        )
        .await
}

/// `seconds` of 16 kHz mono 16-bit silence as a WAV file.
fn wav(seconds: u32) -> Vec<u8> {
    let data_len = 32_000 * seconds;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&16_000u32.to_le_bytes());
    out.extend_from_slice(&32_000u32.to_le_bytes()); // byte rate
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.resize(out.len() + data_len as usize, 0);
    out
}

#[tokio::test]
async fn embeds_unit_vectors_in_input_order() {
    let fake = OpenAiFake::start().await;
    let embedder = OpenAiEmbedder::new(client(&fake, |_| {}));
    assert_eq!(embedder.model().name, "text-embedding-3-small");
    assert_eq!(embedder.model().dims, 1536);

    let input = texts(["hello radio", "play some jazz please", "hello radio"]);
    let vectors = embedder.embed(&input).await.unwrap();
    assert_eq!(vectors.len(), 3);
    for (text, v) in input.iter().zip(&vectors) {
        assert_eq!(v, &openai_fake::fake_embedding(text, 1536));
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    assert_eq!(vectors[0], vectors[2]);
    assert_eq!(fake.requests(EMBEDDINGS), 1);
    let body = fake.last_body(EMBEDDINGS).unwrap();
    assert_eq!(body["model"], "text-embedding-3-small");
    assert_eq!(body["encoding_format"], "base64");

    assert!(embedder.embed(&[]).await.unwrap().is_empty());
    assert_eq!(fake.requests(EMBEDDINGS), 1, "nothing to embed, no request");
}

#[tokio::test]
async fn batching_splits_large_inputs_and_keeps_order() {
    let fake = OpenAiFake::start().await;
    let input: Vec<String> = (0..1200)
        .map(|i| format!("message number {i} for the morning show"))
        .collect();

    // Default limits: at most 512 inputs per request.
    let embedder = OpenAiEmbedder::new(client(&fake, |_| {}));
    let vectors = embedder.embed(&input).await.unwrap();
    assert_eq!(fake.requests(EMBEDDINGS), 3);
    assert_eq!(vectors.len(), input.len());
    for (text, v) in input.iter().zip(&vectors) {
        assert_eq!(v, &openai_fake::fake_embedding(text, 1536), "{text}");
    }

    // A token budget splits too: each input is 19 estimated tokens, so 5 fit in 100.
    let embedder = OpenAiEmbedder::new(client(&fake, |_| {})).with_batch_limits(BatchLimits {
        max_inputs: 1000,
        max_tokens: 100,
    });
    let vectors = embedder.embed(&input[..20]).await.unwrap();
    assert_eq!(fake.requests(EMBEDDINGS), 3 + 4);
    assert_eq!(vectors[19], openai_fake::fake_embedding(&input[19], 1536));
}

#[tokio::test]
async fn over_long_inputs_are_cut_to_the_token_limit() {
    let fake = OpenAiFake::start().await;
    let embedder = OpenAiEmbedder::new(client(&fake, |_| {}));
    // 60k bytes is ~15k tokens: the API would refuse it whole.
    let long = "la ".repeat(20_000);
    let vectors = embedder.embed(std::slice::from_ref(&long)).await.unwrap();
    assert_eq!(fake.requests(EMBEDDINGS), 1);
    let sent = fake.last_body(EMBEDDINGS).unwrap()["input"][0]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        sent.len() < 32_000 && long.starts_with(&sent),
        "{}",
        sent.len()
    );
    assert_eq!(vectors[0], openai_fake::fake_embedding(&sent, 1536));

    let err = embedder.embed(&texts(["ok", ""])).await.unwrap_err();
    assert!(matches!(err, ProviderError::Permanent { .. }), "{err}");
}

#[tokio::test]
async fn rate_limit_waits_for_retry_after_then_succeeds() {
    let fake = OpenAiFake::start().await;
    fake.fail_next_on(
        EMBEDDINGS,
        1,
        Fault::RateLimited {
            retry_after: Duration::from_secs(1),
        },
    );
    let embedder = OpenAiEmbedder::new(client(&fake, |_| {}));
    let started = Instant::now();
    embedder.embed(&texts(["hello"])).await.unwrap();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert!(waited < Duration::from_secs(4), "{waited:?}");
    assert_eq!(fake.requests(EMBEDDINGS), 2);
}

#[tokio::test]
async fn long_retry_after_is_handed_back_at_once() {
    let fake = OpenAiFake::start().await;
    // Longer than the in-process cap: Pub/Sub should redeliver instead.
    fake.fail_next(
        1,
        Fault::RateLimited {
            retry_after: Duration::from_secs(60),
        },
    );
    let started = Instant::now();
    let err = moderate(&client(&fake, |_| {})).await.unwrap_err();
    assert!(
        matches!(err, ProviderError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(60)),
        "{err:?}"
    );
    assert!(err.is_transient());
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(fake.requests(MODERATIONS), 1);

    // Within the cap but past the caller's budget: handed back too.
    fake.fail_next(
        1,
        Fault::RateLimited {
            retry_after: Duration::from_secs(2),
        },
    );
    let started = Instant::now();
    let err = moderate(&client(&fake, |c| c.budget = Duration::from_secs(1)))
        .await
        .unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(2)));
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(fake.requests(MODERATIONS), 2);
}

#[tokio::test]
async fn server_errors_are_retried() {
    let fake = OpenAiFake::start().await;
    fake.fail_next(1, Fault::ServerError(500));
    fake.fail_next_on(MODERATIONS, 1, Fault::ServerError(503));
    let res = moderate(&client(&fake, |_| {})).await.unwrap();
    assert_eq!(res["results"][0]["flagged"], false);
    assert_eq!(fake.requests(MODERATIONS), 3);

    // Until the retries are used up.
    fake.fail_next(10, Fault::ServerError(502));
    let err = moderate(&client(&fake, |c| c.max_retries = 2))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Transient { .. }), "{err:?}");
    assert!(err.to_string().contains("502"), "{err}");
    assert_eq!(fake.requests(MODERATIONS), 3 + 3);
}

#[tokio::test]
async fn a_timed_out_attempt_is_retried_within_the_budget() {
    let fake = OpenAiFake::start().await;
    fake.fail_next(1, Fault::Timeout);
    let client = client(&fake, |c| c.timeout = Duration::from_millis(300));
    let started = Instant::now();
    moderate(&client).await.unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(fake.requests(MODERATIONS), 2);
}

#[tokio::test]
async fn repeated_timeouts_stop_at_the_budget() {
    let fake = OpenAiFake::start().await;
    fake.fail_next(20, Fault::Timeout);
    let client = client(&fake, |c| {
        c.timeout = Duration::from_millis(400);
        c.max_retries = 10;
        c.budget = Duration::from_secs(1);
    });
    let started = Instant::now();
    let err = moderate(&client).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, ProviderError::Transient { .. }), "{err:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
    let attempts = fake.requests(MODERATIONS);
    assert!((2..=3).contains(&attempts), "{attempts}");
}

#[tokio::test]
async fn bad_request_is_permanent_and_not_retried() {
    let fake = OpenAiFake::start().await;
    fake.fail_next(1, Fault::BadRequest);
    let err = moderate(&client(&fake, |_| {})).await.unwrap_err();
    assert!(matches!(err, ProviderError::Permanent { .. }), "{err:?}");
    let reason = err.to_string();
    assert!(
        reason.contains("HTTP 400 invalid_request_error"),
        "{reason}"
    );
    assert!(reason.contains("injected by the test"), "{reason}");
    assert!(
        reason.contains("req_"),
        "the request id helps OpenAI support: {reason}"
    );
    assert_eq!(fake.requests(MODERATIONS), 1);

    // The fake's own validation, through the generic call.
    let too_many: Vec<String> = (0..2049).map(|i| format!("t{i}")).collect();
    let err = client(&fake, |_| {})
        .post_json::<_, Value>(
            "embeddings",
            &json!({"model": "text-embedding-3-small", "input": too_many}),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Maximum length is 2048"), "{err}");
    assert_eq!(fake.requests(EMBEDDINGS), 1);
}

/// A missing or wrong key is the operator's to fix, not the listener's: transient (Pub/Sub
/// retries, then dead-letters for a replay) but not retried within the call.
#[tokio::test]
async fn missing_or_wrong_key_is_transient_and_not_retried() {
    let fake = OpenAiFake::start().await;
    let err = moderate(&client(&fake, |c| c.api_key = String::new()))
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Transient { .. }), "{err:?}");
    assert!(err.to_string().contains("HTTP 401"), "{err}");
    assert!(
        err.to_string().contains("didn't provide an API key"),
        "{err}"
    );

    let err = moderate(&client(&fake, |c| c.api_key = "sk-wrong-key-123".into()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid_request_error"), "{err}");
    assert!(
        !err.to_string().contains("sk-wro"),
        "no part of a key in errors: {err}"
    );
    assert_eq!(fake.requests(MODERATIONS), 2);
}

#[tokio::test]
async fn connection_refused_is_transient() {
    let port = testkit::free_port(); // nothing listens there
    let client = OpenAiClient::new(OpenAiConfig {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        timeout: Duration::from_secs(1),
        max_retries: 1,
        ..OpenAiConfig::new("sk-x")
    });
    let err = moderate(&client).await.unwrap_err();
    assert!(matches!(err, ProviderError::Transient { .. }), "{err:?}");
}

#[tokio::test]
async fn transcribes_audio_as_multipart() {
    let fake = OpenAiFake::start().await;
    let audio = wav(2);
    fake.set_transcript(&audio, "  Please play Blue in Green for my dad. ");
    // One 503 first: the form must be rebuilt for the retry.
    fake.fail_next_on(TRANSCRIPTIONS, 1, Fault::ServerError(503));

    let t = OpenAiTranscriber::new(client(&fake, |_| {}), "gpt-4o-mini-transcribe");
    assert_eq!(t.name(), "openai:gpt-4o-mini-transcribe");
    let got = t
        .transcribe(Bytes::from(audio.clone()), "audio/wav", "clip.wav")
        .await
        .unwrap();
    assert_eq!(got.text, "Please play Blue in Green for my dad.");
    assert_eq!(got.language, None);
    assert_eq!(fake.requests(TRANSCRIPTIONS), 2);
    let body = fake.last_body(TRANSCRIPTIONS).unwrap();
    assert_eq!(body["model"], "gpt-4o-mini-transcribe");
    assert_eq!(body["response_format"], "json");
    assert_eq!(body["file"]["file_name"], "clip.wav");
    assert_eq!(body["file"]["content_type"], "audio/wav");
    assert_eq!(body["file"]["bytes"], audio.len());

    // whisper-1 reports language and duration.
    let t = OpenAiTranscriber::new(client(&fake, |_| {}), "whisper-1");
    let got = t
        .transcribe(Bytes::from(wav(3)), "audio/wav", "other.wav")
        .await
        .unwrap();
    assert_eq!(got.text, DEFAULT_TRANSCRIPT);
    assert_eq!(got.language.as_deref(), Some("english"));
    assert_eq!(got.duration, Some(Duration::from_secs(3)));
}

#[tokio::test]
async fn undecodable_audio_is_permanent() {
    let fake = OpenAiFake::start().await;
    let t = OpenAiTranscriber::new(client(&fake, |_| {}), "gpt-4o-mini-transcribe");
    let err = t
        .transcribe(Bytes::from(wav(1)), "audio/wav", "clip.exe")
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Permanent { .. }), "{err:?}");
    assert!(err.to_string().contains("Invalid file format"), "{err}");

    let err = t
        .transcribe(Bytes::new(), "audio/wav", "clip.wav")
        .await
        .unwrap_err();
    assert!(matches!(err, ProviderError::Permanent { .. }), "{err:?}");
    assert_eq!(
        fake.requests(TRANSCRIPTIONS),
        1,
        "empty audio is refused locally"
    );
}

#[test]
fn transcribe_model_from_env() {
    let client = OpenAiClient::new(OpenAiConfig::new("sk-x"));
    let env = shared::config::Env::from_pairs([("OPENAI_TRANSCRIBE_MODEL", "whisper-1")]);
    let t = OpenAiTranscriber::from_env(client.clone(), &env).unwrap();
    assert_eq!(t.name(), "openai:whisper-1");
    let t =
        OpenAiTranscriber::from_env(client, &shared::config::Env::from_pairs([("X", "")])).unwrap();
    assert_eq!(t.name(), "openai:gpt-4o-mini-transcribe");
}

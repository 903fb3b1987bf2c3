//! Push-to-talk audio: sniffed by content, stored under a server-chosen name.

use std::collections::HashSet;
use std::time::Duration;

use sqlx::Row;
use testkit::FakeGcs;

use crate::helpers::*;

pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../media/tests/fixtures/audio/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

pub fn audio_form(bytes: Vec<u8>, client_type: &str) -> reqwest::multipart::Form {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name("../../etc/passwd")
        .mime_str(client_type)
        .unwrap();
    reqwest::multipart::Form::new().part("audio", part)
}

#[tokio::test]
async fn audio_goes_to_object_storage_under_a_server_chosen_name() {
    let gcs = FakeGcs::shared().await.expect("fake-gcs-server");
    let bucket = format!("uploads-{}", uuid::Uuid::new_v4().simple());
    gcs.create_bucket(&bucket).await.unwrap();
    let mut app = spawn_with(|env| {
        env.insert("UPLOADS_URL".into(), format!("gs://{bucket}"));
        env.insert("STORAGE_EMULATOR_HOST".into(), gcs.endpoint());
    })
    .await;

    let mut ids = HashSet::new();
    // Browsers' MediaRecorder WebM (unknown sizes, no duration), Ogg, WAV, MP3 — each
    // sent with a misleading client type: only the bytes count.
    for (file, mime, ext) in [
        ("speech_streamable.webm", "audio/webm", "webm"),
        ("speech.ogg", "audio/ogg", "ogg"),
        ("speech_16k_s16.wav", "audio/wav", "wav"),
        ("speech.mp3", "audio/mpeg", "mp3"),
    ] {
        let bytes = fixture(file);
        let res = app
            .client
            .post(app.url("/v1/submissions"))
            .multipart(audio_form(bytes.clone(), "application/octet-stream"))
            .send()
            .await
            .unwrap();
        let id = accepted_id(res).await;
        ids.insert(id);
        let row = sqlx::query(
            "SELECT kind, audio_path, audio_mime, audio_duration_ms FROM submission WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap();
        assert_eq!(row.get::<String, _>("kind"), "audio");
        assert_eq!(row.get::<String, _>("audio_mime"), mime);
        let path: String = row.get("audio_path");
        assert!(path.starts_with(&format!("gs://{bucket}/")), "{path}");
        assert!(path.ends_with(&format!("{id}.{ext}")), "{path}");
        assert!(!path.contains(".."), "{path}");
        let ms: i32 = row.get("audio_duration_ms");
        assert!((600..2000).contains(&ms), "{file}: {ms} ms");

        // The stored object is byte-for-byte what was uploaded.
        let object = path.trim_start_matches(&format!("gs://{bucket}/"));
        let url = format!(
            "{}/storage/v1/b/{bucket}/o/{}?alt=media",
            gcs.endpoint(),
            object.replace('/', "%2F")
        );
        let stored = reqwest::get(&url).await.unwrap().bytes().await.unwrap();
        assert_eq!(stored.as_ref(), bytes.as_slice(), "{file}");
    }
    app.expect_messages(&ids, Duration::from_secs(10)).await;
    app.stop().await;
}

#[tokio::test]
async fn bad_audio_is_refused_with_the_right_status() {
    let app = spawn_with(|env| {
        env.insert("MAX_AUDIO_BYTES".into(), "64KiB".into());
        env.insert("MAX_AUDIO_DURATION".into(), "1s".into());
        env.insert("AUDIO_ALLOWED_TYPES".into(), "webm,ogg,mp3".into());
    })
    .await;
    let send = |form: reqwest::multipart::Form| {
        app.client
            .post(app.url("/v1/submissions"))
            .multipart(form)
            .send()
    };
    // 415: not audio at all, or a codec we do not take, whatever the client claims.
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".repeat(10);
    assert_problem(send(audio_form(png, "audio/webm")).await.unwrap(), 415).await;
    assert_problem(
        send(audio_form(fixture("vorbis.ogg"), "audio/ogg"))
            .await
            .unwrap(),
        415,
    )
    .await;
    // 415: WAV is a valid type, but not allowed by this deployment's config.
    assert_problem(
        send(audio_form(fixture("speech_16k_s16.wav"), "audio/wav"))
            .await
            .unwrap(),
        415,
    )
    .await;
    // 422: too long (the fixture is 1.7 s, the limit 1 s).
    let p = assert_problem(
        send(audio_form(fixture("speech.ogg"), "audio/ogg"))
            .await
            .unwrap(),
        422,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("at most 1 s"), "{p}");
    // 413: too many bytes.
    let big = vec![0u8; 100 * 1024];
    assert_problem(send(audio_form(big, "audio/ogg")).await.unwrap(), 413).await;
    // 422: the form has no audio part, or an unexpected one.
    let form = reqwest::multipart::Form::new().text("note", "hello");
    assert_problem(send(form).await.unwrap(), 422).await;
    // 400: a multipart body that is not one.
    let res = app
        .client
        .post(app.url("/v1/submissions"))
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .body("garbage without boundaries")
        .send()
        .await
        .unwrap();
    assert_problem(res, 400).await;
    let count = submission_count(&app.db).await;
    assert_eq!(count, 0);
    app.stop().await;
}

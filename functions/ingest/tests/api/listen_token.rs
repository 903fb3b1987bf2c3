use livekit_api::access_token::TokenVerifier;

use crate::helpers::*;

#[tokio::test]
async fn listen_tokens_are_subscribe_only_for_the_station_room() {
    let app = spawn_app().await;
    let res = app
        .client
        .post(app.url("/v1/listen-token"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["room"], "radio24");
    assert_eq!(body["url"], "ws://127.0.0.1:7880");
    let claims = TokenVerifier::with_api_key("devkey", &app.env["LIVEKIT_API_SECRET"])
        .verify(body["token"].as_str().unwrap())
        .unwrap();
    assert_eq!(claims.video.room, "radio24");
    assert!(claims.video.room_join && claims.video.can_subscribe());
    assert!(!claims.video.can_publish() && !claims.video.can_publish_data());
    assert!(claims.sub.starts_with("listener:anon:"));
    assert!(claims.exp - claims.nbf <= 601);
    app.stop().await;
}

#[tokio::test]
async fn without_livekit_a_listen_token_is_refused_for_good_naming_what_is_missing() {
    for (stream_url, instead) in [
        (None, "/stream.ogg"),
        (
            Some("https://radio24.example/stream.ogg"),
            "https://radio24.example/stream.ogg",
        ),
    ] {
        let app = spawn_with(|env| {
            for k in ["LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"] {
                env.remove(k);
            }
            if let Some(url) = stream_url {
                env.insert("STREAM_URL".into(), url.into());
            }
        })
        .await;
        let res = app
            .client
            .post(app.url("/v1/listen-token"))
            .send()
            .await
            .unwrap();
        assert!(
            !res.headers().contains_key("retry-after"),
            "a permanent answer does not invite retries"
        );
        let body = assert_problem(res, 501).await;
        let detail = body["detail"].as_str().unwrap();
        assert!(detail.contains("LIVEKIT_URL"), "{detail}");
        assert!(detail.contains(instead), "{detail}");
        app.stop().await;
    }
}

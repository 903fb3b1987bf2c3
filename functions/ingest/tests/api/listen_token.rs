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

    let app = spawn_with(|env| {
        for k in ["LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"] {
            env.remove(k);
        }
    })
    .await;
    let res = app
        .client
        .post(app.url("/v1/listen-token"))
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("retry-after"));
    assert_problem(res, 503).await;
    app.stop().await;
}

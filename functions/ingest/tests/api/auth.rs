//! Bearer JWTs verified against issuer, audience and a JWKS served over HTTP, as
//! Firebase Auth / Identity Platform tokens are in production.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{EncodePrivateKey, LineEnding};

use crate::helpers::*;

const ISSUER: &str = "https://securetoken.google.com/radio24-test";
const AUDIENCE: &str = "radio24-test";

struct Issuer {
    key: EncodingKey,
    kid: String,
}

fn new_key(kid: &str) -> (Issuer, serde_json::Value) {
    let sk = SigningKey::random(&mut rand_core::OsRng);
    let pem = sk.to_pkcs8_pem(LineEnding::LF).unwrap();
    let point = sk.verifying_key().to_encoded_point(false);
    let jwk = serde_json::json!({
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
        "x": B64.encode(point.x().unwrap()), "y": B64.encode(point.y().unwrap()),
    });
    (
        Issuer {
            key: EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
            kid: kid.into(),
        },
        jwk,
    )
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl Issuer {
    fn token(&self, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

fn claims(sub: &str) -> serde_json::Value {
    serde_json::json!({ "iss": ISSUER, "aud": AUDIENCE, "sub": sub, "iat": now(), "exp": now() + 600 })
}

/// Serves `jwks` on a loopback port; returns the JWKS URL.
async fn serve_jwks(jwks: serde_json::Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/jwks",
        get(move || {
            let jwks = jwks.clone();
            async move { ([("cache-control", "public, max-age=3600")], Json(jwks)) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://127.0.0.1:{port}/jwks")
}

#[tokio::test]
async fn tokens_are_verified() {
    let (issuer, jwk) = new_key("key-1");
    let (stranger, _) = new_key("key-1");
    let jwks_url = serve_jwks(serde_json::json!({ "keys": [jwk] })).await;
    let app = spawn_with(|env| {
        env.insert("AUTH_MODE".into(), "jwt".into());
        env.insert("AUTH_JWT_ISSUER".into(), ISSUER.into());
        env.insert("AUTH_JWT_AUDIENCE".into(), AUDIENCE.into());
        env.insert("AUTH_JWT_JWKS_URL".into(), jwks_url);
        env.insert("AUTH_JWT_LEEWAY".into(), "5s".into());
    })
    .await;
    let post = |auth: Option<String>| {
        let mut req = app
            .client
            .post(app.url("/v1/submissions"))
            .json(&serde_json::json!({"text": "hello"}));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send()
    };
    let bearer = |t: String| Some(format!("Bearer {t}"));

    let id = accepted_id(post(bearer(issuer.token(claims("user-1")))).await.unwrap()).await;
    let user: String = sqlx::query_scalar("SELECT user_id FROM submission WHERE id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(user, "user-1");

    let mut wrong_aud = claims("u");
    wrong_aud["aud"] = "someone-else".into();
    let mut wrong_iss = claims("u");
    wrong_iss["iss"] = "https://evil.example".into();
    let mut expired = claims("u");
    expired["exp"] = (now() - 3600).into();
    let mut no_sub = claims("u");
    no_sub.as_object_mut().unwrap().remove("sub");
    let unsigned = format!(
        "{}.{}.",
        B64.encode(r#"{"alg":"none","kid":"key-1"}"#),
        B64.encode(claims("u").to_string())
    );
    let mut tampered = issuer.token(claims("u"));
    tampered.push('A');
    let mut other_kid = claims("u");
    other_kid["sub"] = "x".into();
    let unknown_kid = Issuer {
        key: new_key("k").0.key,
        kid: "key-2".into(),
    };

    for (what, auth) in [
        ("missing", None),
        ("not bearer", Some("Basic dXNlcjpwYXNz".to_owned())),
        ("garbage", bearer("not-a-jwt".into())),
        ("wrong audience", bearer(issuer.token(wrong_aud))),
        ("wrong issuer", bearer(issuer.token(wrong_iss))),
        ("expired", bearer(issuer.token(expired))),
        ("no subject", bearer(issuer.token(no_sub))),
        ("unsigned", bearer(unsigned)),
        ("tampered", bearer(tampered)),
        ("signed by another key", bearer(stranger.token(claims("u")))),
        ("unknown key id", bearer(unknown_kid.token(other_kid))),
    ] {
        let res = post(auth).await.unwrap();
        assert_eq!(res.status(), 401, "{what}");
        assert_problem(res, 401).await;
    }

    // Valid, but the account has an unverified email: authenticated, not allowed.
    let mut unverified = claims("user-2");
    unverified["email"] = "a@example.com".into();
    unverified["email_verified"] = false.into();
    assert_problem(post(bearer(issuer.token(unverified))).await.unwrap(), 403).await;

    let count = submission_count(&app.db).await;
    assert_eq!(count, 1);
    app.stop().await;
}

#[tokio::test]
async fn anonymous_mode_refuses_a_token_it_cannot_verify() {
    let app = spawn_app().await;
    let accepted = app.post_text("hello without a token").await;
    assert_eq!(accepted.status(), 202);
    let id = accepted.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for auth in [
        "Bearer not-a-token",
        "Bearer eyJhbGciOiJub25lIn0.e30.",
        "Basic YTpi",
    ] {
        let res = app
            .submit("hello with a token")
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        let body = assert_problem(res, 401).await;
        assert!(
            body["detail"].as_str().unwrap().contains("without sign-in"),
            "{body}"
        );
        let res = app
            .client
            .post(app.url("/v1/listen-token"))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert_problem(res, 401).await;
        let res = app
            .client
            .get(app.url(&format!("/v1/submissions/{id}")))
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert_problem(res, 401).await;
    }
    app.stop().await;
}

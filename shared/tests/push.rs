//! Pub/Sub push: envelope parsing, OIDC push authentication against a loopback JWKS, the
//! extractor's answers, and Google's real Pub/Sub emulator pushing to a handler.
//!
//! Tokens are RS256, as Google signs them. RSA keys are generated once per test binary: key
//! generation is slow in debug builds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64URL};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use shared::bus::{Bus, BusConfig, OutgoingMessage};
use shared::config::{ConfigError, Env};
use shared::push::{
    EnvelopeError, HasPushAuth, PushAuth, PushAuthError, PushDelivery, PushMessage, PushOutcome,
    parse_envelope,
};
use testkit::PubsubEmulator;

const SUBSCRIPTION: &str = "projects/radio24-test/subscriptions/embed-push";
const AUDIENCE: &str = "https://embed-abc123-ew.a.run.app/push";
const PUSH_SA: &str = "pubsub-push@radio24-test.iam.gserviceaccount.com";

// ---------------------------------------------------------------------------------------
// Envelope parsing
// ---------------------------------------------------------------------------------------

fn envelope(message: Value) -> Vec<u8> {
    json!({ "message": message, "subscription": SUBSCRIPTION })
        .to_string()
        .into_bytes()
}

#[test]
fn parses_a_production_envelope() {
    let body = json!({
        "message": {
            "attributes": { "event": "submission.ingested", "submission_id": "0195" },
            "data": STANDARD.encode(b"\x00\xff{\"schema\":1}"),
            "messageId": "2070443601311540",
            "message_id": "2070443601311540",
            "orderingKey": "channel-main",
            "publishTime": "2026-03-01T12:00:00.123456789Z",
            "publish_time": "2026-03-01T12:00:00.123456789Z",
        },
        "subscription": SUBSCRIPTION,
        "deliveryAttempt": 3,
    });
    let msg = parse_envelope(body.to_string().as_bytes()).unwrap();
    assert_eq!(msg.message_id, "2070443601311540");
    assert_eq!(msg.data, Bytes::from_static(b"\x00\xff{\"schema\":1}"));
    assert_eq!(msg.attributes["event"], "submission.ingested");
    assert_eq!(msg.attributes["submission_id"], "0195");
    assert_eq!(msg.ordering_key.as_deref(), Some("channel-main"));
    assert_eq!(msg.subscription, SUBSCRIPTION);
    assert_eq!(msg.delivery_attempt, Some(3));
    let t = msg.publish_time.unwrap();
    assert_eq!(t.to_rfc3339(), "2026-03-01T12:00:00.123456789+00:00");
}

#[test]
fn parses_the_emulator_shape() {
    // Byte for byte what cloud-pubsub-emulator 0.8.20 POSTs (escaped slashes, both spellings
    // of id and time, `data: ""` for a message without data, no deliveryAttempt).
    let body = br#"{"subscription":"projects\/radio24-exp\/subscriptions\/sub5","message":{"publishTime":"2026-11-22T19:04:49.637Z","data":"","publish_time":"2026-11-22T19:04:49.637Z","messageId":"4","attributes":{"k":"v"},"message_id":"4"}}"#;
    let msg = parse_envelope(body).unwrap();
    assert_eq!(msg.message_id, "4");
    assert_eq!(msg.subscription, "projects/radio24-exp/subscriptions/sub5");
    assert!(msg.data.is_empty());
    assert_eq!(msg.attributes, BTreeMap::from([("k".into(), "v".into())]));
    assert_eq!(msg.delivery_attempt, None);
    assert_eq!(msg.ordering_key, None);
    assert!(msg.publish_time.is_some());
}

#[test]
fn data_attributes_and_times_are_optional() {
    // Production omits empty fields (proto3 JSON): only the id is always there.
    let msg = parse_envelope(&envelope(json!({ "message_id": "7" }))).unwrap();
    assert_eq!(msg.message_id, "7");
    assert!(msg.data.is_empty());
    assert!(msg.attributes.is_empty());
    assert_eq!(msg.publish_time, None);
    assert_eq!(msg.delivery_attempt, None);

    let msg = parse_envelope(&envelope(
        json!({ "messageId": "8", "data": "aGk=", "attributes": null }),
    ))
    .unwrap();
    assert_eq!(msg.data, "hi");
    assert!(msg.attributes.is_empty());
}

#[test]
fn accepts_every_base64_flavour_proto3_allows() {
    let bytes = b"\xfb\xff\xfe radio";
    for data in [
        STANDARD.encode(bytes),
        STANDARD.encode(bytes).trim_end_matches('=').to_owned(),
        B64URL.encode(bytes),
    ] {
        let msg = parse_envelope(&envelope(json!({ "messageId": "1", "data": data }))).unwrap();
        assert_eq!(msg.data.as_ref(), bytes, "{data}");
    }
}

#[test]
fn rejects_invalid_base64() {
    for data in ["not base64!", "aGk=aGk=", "a", "aGk*"] {
        let err = parse_envelope(&envelope(json!({ "messageId": "1", "data": data }))).unwrap_err();
        assert!(matches!(err, EnvelopeError::Base64(_)), "{data}: {err:?}");
    }
}

#[test]
fn rejects_missing_fields() {
    let cases = [
        (json!({ "subscription": SUBSCRIPTION }), "message"),
        (
            json!({ "message": null, "subscription": SUBSCRIPTION }),
            "message",
        ),
        (
            json!({ "message": { "data": "aGk=" }, "subscription": SUBSCRIPTION }),
            "message.messageId",
        ),
        (
            json!({ "message": { "messageId": "" }, "subscription": SUBSCRIPTION }),
            "message.messageId",
        ),
        (json!({ "message": { "messageId": "1" } }), "subscription"),
        (
            json!({ "message": { "messageId": "1" }, "subscription": "" }),
            "subscription",
        ),
    ];
    for (body, field) in cases {
        assert_eq!(
            parse_envelope(body.to_string().as_bytes()),
            Err(EnvelopeError::MissingField(field)),
            "{body}"
        );
    }
}

#[test]
fn rejects_non_json_and_wrong_shapes() {
    for body in [
        &b""[..],
        b"not json",
        b"{\"message\":",
        b"\xff\xfe",
        b"{}{}",
    ] {
        let err = parse_envelope(body).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::NotJson(_)),
            "{body:?}: {err:?}"
        );
    }
    for body in [
        json!([]),
        json!("message"),
        json!({ "message": "hello", "subscription": SUBSCRIPTION }),
        json!({ "message": { "messageId": 1 }, "subscription": SUBSCRIPTION }),
        json!({ "message": { "messageId": "1", "attributes": { "n": 1 } }, "subscription": SUBSCRIPTION }),
        json!({ "message": { "messageId": "1", "data": 5 }, "subscription": SUBSCRIPTION }),
        json!({ "message": { "messageId": "1" }, "subscription": SUBSCRIPTION, "deliveryAttempt": "2" }),
        json!({ "message": { "messageId": "1" }, "subscription": SUBSCRIPTION, "deliveryAttempt": 1e12 }),
    ] {
        let err = parse_envelope(body.to_string().as_bytes()).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::Malformed(_)),
            "{body}: {err:?}"
        );
    }
}

#[test]
fn rejects_a_bad_publish_time() {
    let err = parse_envelope(&envelope(
        json!({ "messageId": "1", "publishTime": "yesterday" }),
    ))
    .unwrap_err();
    assert_eq!(err, EnvelopeError::PublishTime("yesterday".into()));
}

/// Envelope-like JSON with arbitrary values where Pub/Sub puts strings, maps and numbers.
fn envelope_like() -> impl Strategy<Value = Value> {
    let scalar = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
        "[A-Za-z0-9+/_-]{0,16}={0,3}".prop_map(Value::from),
    ];
    let value = scalar.prop_recursive(2, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::from),
            prop::collection::btree_map(".{0,6}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    let keys = prop_oneof![
        Just("data"),
        Just("attributes"),
        Just("messageId"),
        Just("message_id"),
        Just("publishTime"),
        Just("publish_time"),
        Just("orderingKey"),
        Just("other"),
    ];
    let message = prop::collection::btree_map(keys, value.clone(), 0..6);
    (
        prop::option::of(message),
        prop::option::of(value.clone()),
        prop::option::of(value),
    )
        .prop_map(|(message, subscription, attempt)| {
            let mut env = serde_json::Map::new();
            if let Some(m) = message {
                let m = m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                env.insert("message".into(), Value::Object(m));
            }
            if let Some(s) = subscription {
                env.insert("subscription".into(), s);
            }
            if let Some(a) = attempt {
                env.insert("deliveryAttempt".into(), a);
            }
            Value::Object(env)
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parse_envelope_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_envelope(&body);
    }

    #[test]
    fn parse_envelope_never_panics_on_envelope_like_json(body in envelope_like()) {
        let _ = parse_envelope(body.to_string().as_bytes());
    }

    #[test]
    fn data_and_attributes_round_trip(
        data in prop::collection::vec(any::<u8>(), 0..256),
        attributes in prop::collection::btree_map(".{1,8}", ".{0,8}", 0..4),
        attempt in prop::option::of(1..100i32),
    ) {
        let mut body = json!({
            "message": { "messageId": "42", "data": STANDARD.encode(&data), "attributes": attributes },
            "subscription": SUBSCRIPTION,
        });
        if let Some(a) = attempt {
            body["deliveryAttempt"] = a.into();
        }
        let msg = parse_envelope(body.to_string().as_bytes()).unwrap();
        prop_assert_eq!(msg.data.as_ref(), &data[..]);
        prop_assert_eq!(msg.attributes, attributes);
        prop_assert_eq!(msg.delivery_attempt, attempt);
    }
}

// ---------------------------------------------------------------------------------------
// Push authentication
// ---------------------------------------------------------------------------------------

struct SigningKey {
    key: EncodingKey,
    jwk: Value,
}

/// RSA 2048 keys, generated once per test binary (index 0: the JWKS key, 1: a stranger).
fn rsa_key(index: usize) -> &'static SigningKey {
    static KEYS: [OnceLock<SigningKey>; 2] = [OnceLock::new(), OnceLock::new()];
    KEYS[index].get_or_init(|| {
        let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).expect("RSA key");
        let pem = private.to_pkcs1_pem(LineEnding::LF).expect("PEM");
        let jwk = json!({
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": KID,
            "n": B64URL.encode(private.n().to_bytes_be()),
            "e": B64URL.encode(private.e().to_bytes_be()),
        });
        SigningKey {
            key: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("encoding key"),
            jwk,
        }
    })
}

const KID: &str = "google-key-1";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign_with(key: &SigningKey, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KID.into());
    jsonwebtoken::encode(&header, claims, &key.key).unwrap()
}

fn sign(claims: &Value) -> String {
    sign_with(rsa_key(0), claims)
}

/// The claims of a Pub/Sub push token.
fn push_claims() -> Value {
    json!({
        "iss": "https://accounts.google.com",
        "aud": AUDIENCE,
        "azp": "112233445566778899000",
        "sub": "112233445566778899000",
        "email": PUSH_SA,
        "email_verified": true,
        "iat": now(),
        "exp": now() + 3600,
    })
}

/// Serves the JWKS on a loopback port of the current runtime; returns its URL.
async fn serve_jwks() -> String {
    let jwks = json!({ "keys": [rsa_key(0).jwk.clone()] });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new().route(
        "/certs",
        get(move || {
            let jwks = jwks.clone();
            async move { ([("cache-control", "public, max-age=3600")], Json(jwks)) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://127.0.0.1:{port}/certs")
}

fn oidc_env(jwks_url: &str, extra: &[(&str, &str)]) -> Env {
    let mut pairs = vec![
        ("PUSH_AUTH", "oidc"),
        ("PUSH_AUDIENCE", AUDIENCE),
        ("PUSH_SERVICE_ACCOUNT", PUSH_SA),
        ("PUSH_JWKS_URL", jwks_url),
    ];
    pairs.extend_from_slice(extra);
    Env::from_pairs(pairs)
}

fn bearer(token: &str) -> HeaderMap {
    authorization(&format!("Bearer {token}"))
}

fn authorization(value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
    h
}

async fn status_of(auth: &PushAuth, headers: &HeaderMap) -> Option<StatusCode> {
    auth.verify(headers).await.err().map(|e| e.status())
}

#[tokio::test]
async fn push_tokens_are_verified() {
    let auth = PushAuth::from_env(&oidc_env(&serve_jwks().await, &[])).unwrap();

    // Google uses both spellings of its issuer.
    let valid = push_claims();
    auth.verify(&bearer(&sign(&valid))).await.unwrap();
    let mut short_issuer = push_claims();
    short_issuer["iss"] = "accounts.google.com".into();
    auth.verify(&bearer(&sign(&short_issuer))).await.unwrap();
    let mut upper_email = push_claims();
    upper_email["email"] = PUSH_SA.to_uppercase().into();
    auth.verify(&bearer(&sign(&upper_email))).await.unwrap();

    let with = |k: &str, v: Value| {
        let mut c = push_claims();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = push_claims();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let unsigned = format!(
        "{}.{}.",
        B64URL.encode(json!({ "alg": "none", "kid": KID, "typ": "JWT" }).to_string()),
        B64URL.encode(valid.to_string())
    );
    // A valid signature over other claims, glued to the claims of a different account.
    let tampered = {
        let genuine = sign(&valid);
        let mut parts: Vec<&str> = genuine.split('.').collect();
        let forged = B64URL.encode(with("email", "attacker@evil.example".into()).to_string());
        parts[1] = &forged;
        parts.join(".")
    };
    // The RSA public key used as an HMAC secret: the classic algorithm confusion.
    let hs256 = {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(KID.into());
        let secret = rsa_key(0).jwk["n"].as_str().unwrap().as_bytes().to_vec();
        jsonwebtoken::encode(&header, &valid, &EncodingKey::from_secret(&secret)).unwrap()
    };
    let unknown_kid = {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("other-key".into());
        jsonwebtoken::encode(&header, &valid, &rsa_key(0).key).unwrap()
    };

    let unauthorized = [
        ("missing header", HeaderMap::new()),
        ("not bearer", authorization("Basic dXNlcjpwYXNz")),
        ("empty bearer", authorization("Bearer ")),
        ("garbage", bearer("not-a-jwt")),
        (
            "wrong audience",
            bearer(&sign(&with("aud", "https://other.run.app/push".into()))),
        ),
        (
            "wrong issuer",
            bearer(&sign(&with("iss", "https://evil.example".into()))),
        ),
        (
            "expired",
            bearer(&sign(&with("exp", (now() - 3600).into()))),
        ),
        (
            "not yet valid",
            bearer(&sign(&with("nbf", (now() + 3600).into()))),
        ),
        ("no expiry", bearer(&sign(&without("exp")))),
        ("no subject", bearer(&sign(&without("sub")))),
        ("unsigned (alg none)", bearer(&unsigned)),
        ("tampered", bearer(&tampered)),
        ("HS256 with the public key", bearer(&hs256)),
        ("unknown key id", bearer(&unknown_kid)),
        (
            "signed by another key",
            bearer(&sign_with(rsa_key(1), &valid)),
        ),
    ];
    for (what, headers) in &unauthorized {
        assert_eq!(
            status_of(&auth, headers).await,
            Some(StatusCode::UNAUTHORIZED),
            "{what}"
        );
    }

    let forbidden = [
        (
            "another service account",
            with("email", "other@radio24-test.iam.gserviceaccount.com".into()),
        ),
        ("unverified email", with("email_verified", false.into())),
        ("email_verified absent", without("email_verified")),
        ("no email", without("email")),
    ];
    for (what, claims) in &forbidden {
        assert_eq!(
            status_of(&auth, &bearer(&sign(claims))).await,
            Some(StatusCode::FORBIDDEN),
            "{what}"
        );
    }
}

/// Operators use the same Google ID tokens, with an allowlist of emails instead of one
/// service account.
#[tokio::test]
async fn operators_need_a_listed_verified_google_identity() {
    use axum::extract::FromRequestParts;
    use shared::operator::{Operator, OperatorAuth};

    let jwks = serve_jwks().await;
    let auth = OperatorAuth::from_env(&Env::from_pairs([
        ("OPERATOR_AUTH", "oidc"),
        ("OPERATOR_AUDIENCE", AUDIENCE),
        ("OPERATOR_JWKS_URL", jwks.as_str()),
        ("OPERATOR_EMAILS", "dj@radio24.example, Ops@Radio24.example"),
    ]))
    .unwrap();
    let operator = |headers: HeaderMap| {
        let auth = auth.clone();
        async move {
            let mut req = http::Request::new(());
            *req.headers_mut() = headers;
            let (mut parts, ()) = req.into_parts();
            Operator::from_request_parts(&mut parts, &auth)
                .await
                .map(|o| o.0)
                .map_err(|e| e.status())
        }
    };
    let claims = |email: &str, verified: bool| {
        let mut c = push_claims();
        c["email"] = email.into();
        c["email_verified"] = verified.into();
        c
    };
    assert_eq!(
        operator(bearer(&sign(&claims("ops@radio24.example", true)))).await,
        Ok("operator:ops@radio24.example".to_owned())
    );
    assert_eq!(
        operator(bearer(&sign(&claims("someone@radio24.example", true)))).await,
        Err(StatusCode::FORBIDDEN)
    );
    assert_eq!(
        operator(bearer(&sign(&claims("dj@radio24.example", false)))).await,
        Err(StatusCode::FORBIDDEN)
    );
    let mut wrong_audience = claims("dj@radio24.example", true);
    wrong_audience["aud"] = "https://elsewhere.example".into();
    assert_eq!(
        operator(bearer(&sign(&wrong_audience))).await,
        Err(StatusCode::UNAUTHORIZED)
    );
    let mut expired = claims("dj@radio24.example", true);
    expired["exp"] = (now() - 3600).into();
    assert_eq!(
        operator(bearer(&sign(&expired))).await,
        Err(StatusCode::UNAUTHORIZED)
    );
    assert_eq!(
        operator(HeaderMap::new()).await,
        Err(StatusCode::UNAUTHORIZED)
    );

    let missing = OperatorAuth::from_env(&Env::from_pairs([
        ("OPERATOR_AUTH", "oidc"),
        ("OPERATOR_AUDIENCE", AUDIENCE),
    ]))
    .unwrap_err();
    assert!(missing.to_string().contains("OPERATOR_EMAILS"), "{missing}");
    let bad = OperatorAuth::from_env(&Env::from_pairs([("OPERATOR_AUTH", "maybe")])).unwrap_err();
    assert!(bad.to_string().contains("OPERATOR_AUTH"), "{bad}");
}

#[tokio::test]
async fn push_issuers_can_be_narrowed() {
    let jwks = serve_jwks().await;
    let auth = PushAuth::from_env(&oidc_env(
        &jwks,
        &[("PUSH_ISSUERS", "https://accounts.google.com")],
    ))
    .unwrap();
    auth.verify(&bearer(&sign(&push_claims()))).await.unwrap();
    let mut short = push_claims();
    short["iss"] = "accounts.google.com".into();
    assert_eq!(
        status_of(&auth, &bearer(&sign(&short))).await,
        Some(StatusCode::UNAUTHORIZED)
    );
}

#[tokio::test]
async fn unreachable_keys_are_a_retryable_503() {
    // A closed loopback port: the key fetch fails after its retries.
    let port = testkit::free_port();
    let auth =
        PushAuth::from_env(&oidc_env(&format!("http://127.0.0.1:{port}/certs"), &[])).unwrap();
    let err = auth
        .verify(&bearer(&sign(&push_claims())))
        .await
        .unwrap_err();
    assert!(matches!(err, PushAuthError::KeysUnavailable(_)), "{err:?}");
    assert_eq!(err.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[test]
fn push_auth_configuration_names_the_variable() {
    let env = |pairs: &[(&str, &str)]| Env::from_pairs(pairs.iter().copied());
    assert_eq!(
        PushAuth::from_env(&env(&[])).unwrap_err(),
        ConfigError::Missing("PUSH_AUTH".into())
    );
    assert_eq!(
        PushAuth::from_env(&env(&[
            ("PUSH_AUTH", "oidc"),
            ("PUSH_SERVICE_ACCOUNT", PUSH_SA)
        ]))
        .unwrap_err(),
        ConfigError::Missing("PUSH_AUDIENCE".into())
    );
    assert_eq!(
        PushAuth::from_env(&env(&[("PUSH_AUTH", "oidc"), ("PUSH_AUDIENCE", AUDIENCE)]))
            .unwrap_err(),
        ConfigError::Missing("PUSH_SERVICE_ACCOUNT".into())
    );
    let invalid = |pairs: &[(&str, &str)], name: &str| {
        let base = [
            ("PUSH_AUTH", "oidc"),
            ("PUSH_AUDIENCE", AUDIENCE),
            ("PUSH_SERVICE_ACCOUNT", PUSH_SA),
        ];
        let mut all: BTreeMap<&str, &str> = base.into_iter().collect();
        all.extend(pairs.iter().copied());
        match PushAuth::from_env(&Env::from_pairs(all)) {
            Err(ConfigError::Invalid { name: n, .. }) => assert_eq!(n, name, "{pairs:?}"),
            other => panic!("{pairs:?}: expected {name} to be invalid, got {other:?}"),
        }
    };
    invalid(&[("PUSH_AUTH", "maybe")], "PUSH_AUTH");
    invalid(&[("PUSH_AUTH", "true")], "PUSH_AUTH");
    invalid(
        &[("PUSH_SERVICE_ACCOUNT", "pubsub-push")],
        "PUSH_SERVICE_ACCOUNT",
    );
    invalid(
        &[("PUSH_JWKS_URL", "http://www.googleapis.com/oauth2/v3/certs")],
        "PUSH_JWKS_URL",
    );
    invalid(
        &[("PUSH_JWKS_URL", "http://127.0.0.1.evil.example/certs")],
        "PUSH_JWKS_URL",
    );
    invalid(&[("PUSH_JWKS_URL", "certs.json")], "PUSH_JWKS_URL");
    invalid(&[("PUSH_ISSUERS", " , ")], "PUSH_ISSUERS");
    invalid(&[("PUSH_LEEWAY", "a while")], "PUSH_LEEWAY");

    let auth = PushAuth::from_env(&env(&[
        ("PUSH_AUTH", "oidc"),
        ("PUSH_AUDIENCE", AUDIENCE),
        ("PUSH_SERVICE_ACCOUNT", PUSH_SA),
    ]))
    .unwrap();
    assert!(matches!(&auth, PushAuth::Oidc { verifier, service_account }
        if verifier.audience() == AUDIENCE && service_account == &[PUSH_SA.to_owned()]));
    assert!(format!("{auth:?}").contains(AUDIENCE));
    assert!(
        PushAuth::from_env(&env(&[
            ("PUSH_AUTH", "oidc"),
            ("PUSH_AUDIENCE", AUDIENCE),
            ("PUSH_SERVICE_ACCOUNT", PUSH_SA),
            ("PUSH_JWKS_URL", "http://[::1]:8080/certs"),
        ]))
        .is_ok()
    );
}

#[tokio::test]
async fn disabled_auth_accepts_requests_without_tokens() {
    let auth = PushAuth::from_env(&Env::from_pairs([("PUSH_AUTH", "off")])).unwrap();
    assert!(auth.is_disabled());
    auth.verify(&HeaderMap::new()).await.unwrap();
    // Nothing else is read when off: a leftover audience does not turn it on.
    let auth = PushAuth::from_env(&Env::from_pairs([
        ("PUSH_AUTH", "OFF"),
        ("PUSH_AUDIENCE", AUDIENCE),
    ]))
    .unwrap();
    assert!(auth.is_disabled());
}

// ---------------------------------------------------------------------------------------
// The extractor and the outcome, over HTTP
// ---------------------------------------------------------------------------------------

/// What a test handler saw: the request headers and the delivery.
type Seen = Arc<Mutex<Vec<(HeaderMap, Result<PushMessage, EnvelopeError>)>>>;

#[derive(Clone)]
struct App {
    auth: Arc<PushAuth>,
    seen: Seen,
}

impl HasPushAuth for App {
    fn push_auth(&self) -> &PushAuth {
        &self.auth
    }
}

/// Answers according to the message's `outcome` attribute; `retry-once` answers `Retry` on
/// the first delivery of a message id and `Done` afterwards.
async fn handler(
    State(app): State<App>,
    headers: HeaderMap,
    PushDelivery(delivery): PushDelivery,
) -> PushOutcome {
    let deliveries_before = {
        let mut seen = app.seen.lock().unwrap();
        let before = match &delivery {
            Ok(m) => seen
                .iter()
                .filter(|(_, d)| d.as_ref().is_ok_and(|s| s.message_id == m.message_id))
                .count(),
            Err(_) => 0,
        };
        seen.push((headers, delivery.clone()));
        before
    };
    let msg = match delivery {
        Ok(msg) => msg,
        Err(e) => return e.into(),
    };
    match msg.attributes.get("outcome").map(String::as_str) {
        Some("retry") => PushOutcome::Retry("database unavailable".into()),
        Some("retry-once") if deliveries_before == 0 => PushOutcome::Retry("first try".into()),
        Some("permanent") => PushOutcome::PermanentFailure("unknown submission".into()),
        Some("duplicate") => PushOutcome::AlreadyDone,
        _ => PushOutcome::Done,
    }
}

/// Serves the test handler at `/push` on a loopback port; returns the endpoint URL.
async fn serve_push(auth: PushAuth, seen: Seen) -> String {
    let app = App {
        auth: Arc::new(auth),
        seen,
    };
    let router =
        shared::http::finish_router(Router::new().route("/push", post(handler)).with_state(app));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://127.0.0.1:{port}/push")
}

fn message_with_outcome(outcome: &str) -> Vec<u8> {
    envelope(json!({
        "messageId": format!("m-{outcome}"),
        "data": STANDARD.encode(b"{}"),
        "attributes": { "outcome": outcome },
    }))
}

async fn assert_problem(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status(), status);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], status);
    body
}

#[tokio::test]
async fn extractor_enforces_auth_and_answers_the_contract() {
    let auth = PushAuth::from_env(&oidc_env(&serve_jwks().await, &[])).unwrap();
    let seen = Seen::default();
    let endpoint = serve_push(auth, seen.clone()).await;
    let client = reqwest::Client::new();
    let token = sign(&push_claims());
    let push = |body: Vec<u8>, token: Option<&str>| {
        let mut req = client
            .post(&endpoint)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };

    // Authentication comes first, and a rejected request never reaches the handler.
    let res = push(message_with_outcome("done"), None).await.unwrap();
    assert_eq!(
        res.headers()[header::WWW_AUTHENTICATE],
        r#"Bearer error="invalid_token""#
    );
    assert_problem(res, 401).await;
    assert_problem(push(b"garbage".to_vec(), None).await.unwrap(), 401).await;
    let mut other = push_claims();
    other["email"] = "other@radio24-test.iam.gserviceaccount.com".into();
    let other = sign(&other);
    assert_problem(
        push(message_with_outcome("done"), Some(&other))
            .await
            .unwrap(),
        403,
    )
    .await;
    assert!(seen.lock().unwrap().is_empty());

    // The outcomes: every one but Retry acknowledges with 204.
    for outcome in ["done", "duplicate", "permanent"] {
        let res = push(message_with_outcome(outcome), Some(&token))
            .await
            .unwrap();
        assert_eq!(res.status(), 204, "{outcome}");
    }
    let res = push(message_with_outcome("retry"), Some(&token))
        .await
        .unwrap();
    assert_eq!(res.headers()[header::RETRY_AFTER], "1");
    let body = assert_problem(res, 503).await;
    assert!(
        !body.to_string().contains("database"),
        "the reason stays in the logs: {body}"
    );

    // Unusable envelopes are acknowledged: they can never succeed.
    let res = push(b"{\"message\":".to_vec(), Some(&token)).await.unwrap();
    assert_eq!(res.status(), 204);
    let res = push(
        envelope(json!({ "messageId": "1", "data": "%%%" })),
        Some(&token),
    )
    .await
    .unwrap();
    assert_eq!(res.status(), 204);
    let huge = vec![b' '; shared::push::MAX_ENVELOPE_BYTES + 1];
    let res = push(huge, Some(&token)).await.unwrap();
    assert_eq!(res.status(), 204);

    let seen = seen.lock().unwrap();
    let deliveries: Vec<_> = seen.iter().map(|(_, d)| d.clone()).collect();
    assert_eq!(deliveries.len(), 7);
    assert_eq!(deliveries[0].as_ref().unwrap().message_id, "m-done");
    assert!(matches!(deliveries[4], Err(EnvelopeError::NotJson(_))));
    assert!(matches!(deliveries[5], Err(EnvelopeError::Base64(_))));
    assert!(matches!(deliveries[6], Err(EnvelopeError::TooLarge { .. })));
}

#[test]
fn outcomes_map_to_ack_and_nack() {
    assert_eq!(PushOutcome::Done.status(), StatusCode::NO_CONTENT);
    assert_eq!(PushOutcome::AlreadyDone.status(), StatusCode::NO_CONTENT);
    assert!(PushOutcome::PermanentFailure("x".into()).acknowledges());
    assert!(!PushOutcome::Retry("x".into()).acknowledges());
    assert_eq!(
        PushOutcome::Retry("x".into()).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(
        PushOutcome::from(EnvelopeError::MissingField("subscription")),
        PushOutcome::PermanentFailure("push envelope lacks subscription".into())
    );
}

// ---------------------------------------------------------------------------------------
// Google's Pub/Sub emulator pushing to the extractor
// ---------------------------------------------------------------------------------------

const PROJECT: &str = "radio24-test";

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulator_push_reaches_the_handler_and_nacks_are_redelivered() {
    let emulator = PubsubEmulator::shared().await.expect("emulator");
    let bus = Bus::connect(&BusConfig::new(PROJECT).with_emulator_host(emulator.host()))
        .await
        .expect("connect to the emulator");
    let topic = unique("push-topic");
    let dead_topic = unique("push-dead");
    let dead_sub = unique("push-dead-sub");
    bus.ensure_topic(&topic).await.unwrap();
    bus.ensure_topic(&dead_topic).await.unwrap();
    bus.ensure_pull_subscription(&dead_topic, &dead_sub, Duration::from_secs(10))
        .await
        .unwrap();

    let seen = Seen::default();
    let endpoint = serve_push(PushAuth::disabled(), seen.clone()).await;

    // A push subscription over the emulator's REST API, with the retry and dead-letter
    // policies the real subscriptions have (shorter backoff and fewer attempts).
    let subscription = unique("push-sub");
    let res = reqwest::Client::new()
        .put(format!(
            "{}/v1/projects/{PROJECT}/subscriptions/{subscription}",
            emulator.endpoint()
        ))
        .json(&json!({
            "topic": format!("projects/{PROJECT}/topics/{topic}"),
            "pushConfig": { "pushEndpoint": endpoint },
            "ackDeadlineSeconds": 10,
            "retryPolicy": { "minimumBackoff": "1s", "maximumBackoff": "2s" },
            "deadLetterPolicy": {
                "deadLetterTopic": format!("projects/{PROJECT}/topics/{dead_topic}"),
                "maxDeliveryAttempts": 5,
            },
        }))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.text().await.unwrap());

    let data = Bytes::from_static(b"\x00\xff{\"schema\":1} \xc3\x28");
    let retry_once = OutgoingMessage::new(data.clone())
        .with_attribute("outcome", "retry-once")
        .with_attribute("submission_id", "0195f1c2-7e1a-7000-8000-000000000001")
        .with_attribute("empty", "");
    let expected_attributes = retry_once.attributes.clone();
    let retry_once_id = bus.publish(&topic, retry_once).await.unwrap();
    let always_retry_id = bus
        .publish(
            &topic,
            OutgoingMessage::new("doomed").with_attribute("outcome", "retry"),
        )
        .await
        .unwrap();

    let deliveries_of = |id: &str| -> Vec<(HeaderMap, PushMessage)> {
        seen.lock()
            .unwrap()
            .iter()
            .filter_map(|(h, d)| {
                let m = d.as_ref().expect("the emulator sends valid envelopes");
                (m.message_id == id).then(|| (h.clone(), m.clone()))
            })
            .collect()
    };

    // Answered 503 once, then 204: delivered exactly twice, intact both times.
    testkit::wait_until("a redelivery after 503", Duration::from_secs(60), || {
        let n = deliveries_of(&retry_once_id).len();
        async move { n >= 2 }
    })
    .await
    .unwrap();

    // Always 503: dead-lettered after maxDeliveryAttempts, with the data intact.
    let mut dead = bus.subscribe(&dead_sub).await.unwrap();
    let dead_letter = tokio::time::timeout(Duration::from_secs(90), dead.next())
        .await
        .expect("a dead letter within 90 s")
        .expect("stream open")
        .expect("no stream error");
    assert_eq!(dead_letter.data, "doomed");
    assert_eq!(
        dead_letter.attributes["CloudPubSubDeadLetterSourceDeliveryCount"],
        "5"
    );
    dead_letter.ack();
    dead.shutdown().await;
    assert_eq!(deliveries_of(&always_retry_id).len(), 5);

    // By now (several backoffs later) the acknowledged message has not come back.
    let retried = deliveries_of(&retry_once_id);
    assert_eq!(retried.len(), 2, "acknowledged after the second delivery");
    for (headers, msg) in &retried {
        assert_eq!(msg.data, data);
        assert_eq!(msg.attributes, expected_attributes);
        assert_eq!(
            msg.subscription,
            format!("projects/{PROJECT}/subscriptions/{subscription}")
        );
        assert!(msg.publish_time.is_some());
        // What the emulator sends (see the module docs of shared::push): no token, and no
        // deliveryAttempt even with a dead-letter policy. Production sends both.
        assert!(!headers.contains_key(header::AUTHORIZATION));
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        if let Some(first) = retried[0].1.delivery_attempt {
            assert!(msg.delivery_attempt >= Some(first));
        }
    }
}

//! Receiving Pub/Sub push deliveries: the envelope, push authentication, an axum extractor
//! and the response contract the embed and moderate services share.
//!
//! # The response contract
//!
//! Pub/Sub POSTs one message per request and reads only the status code:
//!
//! - **2xx acknowledges** the message (Pub/Sub counts 102, 200, 201, 202 and 204). Answer it
//!   only once the message's effect is durable, or once it is certain the message can never
//!   succeed (malformed envelope, unknown submission id): such a message is recorded as
//!   failed and acknowledged, because retrying it would only delay the dead letter.
//! - **Anything else is a nack**, and so is no answer within the subscription's ack
//!   deadline. Pub/Sub redelivers with the subscription's retry policy (exponential backoff
//!   between `minimumBackoff` and `maximumBackoff`; without a policy it redelivers at once and
//!   slows the push rate instead) and, once a dead-letter policy's `maxDeliveryAttempts` is
//!   reached, forwards the message to the dead-letter topic.
//!
//! [`PushOutcome`] encodes this: `Done`, `AlreadyDone` and `PermanentFailure` answer 204,
//! `Retry` answers 503. Delivery is at-least-once and push has no exactly-once mode, so every
//! handler is idempotent (a guarded state transition on the submission id) and treats a
//! redelivery of finished work as `AlreadyDone`.
//!
//! # Authentication
//!
//! A push subscription with an `oidcToken` makes Pub/Sub send
//! `Authorization: Bearer <Google-signed ID token>` (RS256, keys at
//! [`GOOGLE_JWKS_URL`]) whose `iss` is `https://accounts.google.com` or
//! `accounts.google.com`, whose `aud` is the subscription's configured audience (by default
//! the push endpoint URL) and whose `email` is the subscription's service account with
//! `email_verified: true`. [`PushAuth`] checks exactly that: a missing, malformed, unsigned,
//! expired token or one with the wrong issuer or audience is a 401, a valid token for any
//! other account (or an unverified email) a 403. If Google's keys cannot be fetched the
//! answer is 503, which Pub/Sub retries. Authentication runs before the body is read.
//!
//! # What the Pub/Sub emulator sends
//!
//! Measured with `cloud-pubsub-emulator` 0.8.20 (the one in the Cloud SDK), which differs from
//! production in ways that matter for local runs:
//!
//! - Headers: `Content-Type: application/json`, `User-Agent: Java/17...`, `Accept`, `Host`,
//!   `Connection: keep-alive`, `Content-Length`. **No `Authorization` header**, even when the
//!   subscription has an `oidcToken`: local runs of the push flow need `PUSH_AUTH=off`.
//! - Body: `{"subscription": "projects/P/subscriptions/S", "message": {"data": "<base64>",
//!   "attributes": {...}, "messageId": "N", "message_id": "N", "publishTime":
//!   "2026-..Z", "publish_time": "2026-..Z"}}`. `attributes` is always present (`{}` when
//!   empty) and `data` is `""` for a message without data (production omits empty fields).
//! - **No `deliveryAttempt`**, even on a subscription with a dead-letter policy (production
//!   sends it there), and no `orderingKey`, even for ordered messages.
//! - A non-2xx answer is redelivered after about 1 s without a retry policy, and along the
//!   retry policy's backoff with one. The dead-letter policy is enforced: after
//!   `maxDeliveryAttempts` the message goes to the dead-letter topic with
//!   `CloudPubSubDeadLetterSource*` attributes.
//!
//! # Configuration
//!
//! [`PushAuth::from_env`] reads `PUSH_AUTH` (`oidc` or `off`, required: authentication is
//! never off by accident), and with `oidc` `PUSH_AUDIENCE` (required), `PUSH_SERVICE_ACCOUNT`
//! (required), `PUSH_JWKS_URL` (default [`GOOGLE_JWKS_URL`]), `PUSH_ISSUERS` (comma-separated,
//! default both Google spellings) and `PUSH_LEEWAY` (clock skew on `exp`, default 60s).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{FromRequest, Request};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;

use crate::config::{ConfigError, Env};
pub use crate::google_id::{DEFAULT_LEEWAY, GOOGLE_ISSUERS, GOOGLE_JWKS_URL};
use crate::google_id::{GoogleIdConfig, GoogleIdVerifier, IdTokenError};
use crate::problem::Problem;

/// Largest push body read. Messages are claim checks of a few hundred bytes; a larger body
/// is answered as [`EnvelopeError::TooLarge`] (acknowledged: it can never succeed) instead of
/// being buffered. Pub/Sub's own limit is 10 MB of data, about 13.4 MB once base64-encoded.
pub const MAX_ENVELOPE_BYTES: usize = 1024 * 1024;

// ---------------------------------------------------------------------------------------
// The envelope
// ---------------------------------------------------------------------------------------

/// One message delivered by a push subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushMessage {
    /// Server-assigned id; the same on every redelivery.
    pub message_id: String,
    /// The decoded message data (empty when the message has none).
    pub data: Bytes,
    pub attributes: BTreeMap<String, String>,
    pub publish_time: Option<DateTime<Utc>>,
    /// Ordering key, when the message has one and the subscription orders messages.
    pub ordering_key: Option<String>,
    /// Full subscription path, `projects/P/subscriptions/S`.
    pub subscription: String,
    /// Which delivery this is, starting at 1. Production Pub/Sub sends it only on
    /// subscriptions with a dead-letter policy; the emulator never does.
    pub delivery_attempt: Option<i32>,
}

/// Why a push body is not a usable envelope. None of these can succeed on redelivery: the
/// handler acknowledges them and records the failure (`PushOutcome::from(error)`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("push body is not JSON: {0}")]
    NotJson(String),
    #[error("push envelope has the wrong shape: {0}")]
    Malformed(String),
    #[error("push envelope lacks {0}")]
    MissingField(&'static str),
    #[error("message data is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("publishTime {0:?} is not an RFC 3339 timestamp")]
    PublishTime(String),
    #[error("push body exceeds {limit} bytes")]
    TooLarge { limit: usize },
}

#[derive(Deserialize)]
struct RawEnvelope {
    message: Option<RawMessage>,
    subscription: Option<String>,
    #[serde(rename = "deliveryAttempt")]
    delivery_attempt: Option<i32>,
}

/// Pub/Sub sends the id and publish time in both camelCase and snake_case; serde aliases
/// would reject that as a duplicate field, so each spelling is its own field.
#[derive(Deserialize)]
struct RawMessage {
    data: Option<String>,
    attributes: Option<BTreeMap<String, String>>,
    #[serde(rename = "messageId")]
    message_id: Option<String>,
    #[serde(rename = "message_id")]
    message_id_snake: Option<String>,
    #[serde(rename = "publishTime")]
    publish_time: Option<String>,
    #[serde(rename = "publish_time")]
    publish_time_snake: Option<String>,
    #[serde(rename = "orderingKey")]
    ordering_key: Option<String>,
}

const fn lenient(alphabet: &alphabet::Alphabet) -> GeneralPurpose {
    GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    )
}

/// Pub/Sub writes standard padded base64; proto3 JSON readers also accept URL-safe and
/// unpadded forms, and so does this one.
const STANDARD: GeneralPurpose = lenient(&alphabet::STANDARD);
const URL_SAFE: GeneralPurpose = lenient(&alphabet::URL_SAFE);

fn decode_data(data: &str) -> Result<Bytes, EnvelopeError> {
    match STANDARD.decode(data) {
        Ok(bytes) => Ok(bytes.into()),
        Err(e) => URL_SAFE
            .decode(data)
            .map(Bytes::from)
            .map_err(|_| EnvelopeError::Base64(e)),
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

/// Parses a push request body (the default "wrapped" payload format; subscriptions must not
/// enable `noWrapper`).
///
/// Required: `message.messageId` (or `message_id`) and `subscription`. Optional: `data`
/// (absent means empty, as proto3 JSON omits empty fields), `attributes`, `publishTime`,
/// `orderingKey`, `deliveryAttempt`. Unknown fields are ignored.
pub fn parse_envelope(body: &[u8]) -> Result<PushMessage, EnvelopeError> {
    let raw: RawEnvelope = serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => EnvelopeError::Malformed(e.to_string()),
        _ => EnvelopeError::NotJson(e.to_string()),
    })?;
    let message = raw.message.ok_or(EnvelopeError::MissingField("message"))?;
    let message_id = non_empty(message.message_id)
        .or_else(|| non_empty(message.message_id_snake))
        .ok_or(EnvelopeError::MissingField("message.messageId"))?;
    let subscription =
        non_empty(raw.subscription).ok_or(EnvelopeError::MissingField("subscription"))?;
    let data = match message.data.as_deref() {
        None | Some("") => Bytes::new(),
        Some(data) => decode_data(data)?,
    };
    let publish_time = non_empty(message.publish_time)
        .or_else(|| non_empty(message.publish_time_snake))
        .map(|t| {
            DateTime::parse_from_rfc3339(&t)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| EnvelopeError::PublishTime(t))
        })
        .transpose()?;
    Ok(PushMessage {
        message_id,
        data,
        attributes: message.attributes.unwrap_or_default(),
        publish_time,
        ordering_key: non_empty(message.ordering_key),
        subscription,
        delivery_attempt: raw.delivery_attempt,
    })
}

// ---------------------------------------------------------------------------------------
// Authentication
// ---------------------------------------------------------------------------------------

/// Why a push request was not authenticated (see [`IdTokenError`]).
pub type PushAuthError = IdTokenError;

/// How push requests are authenticated.
#[derive(Clone, Debug)]
pub enum PushAuth {
    /// Production: a Google-signed OIDC token for the configured service account.
    Oidc {
        verifier: GoogleIdVerifier,
        /// The account the subscription signs tokens as, in a list of one.
        service_account: Vec<String>,
    },
    /// No authentication: only for local runs with the emulator, which sends no token.
    /// Build it with [`PushAuth::disabled`] (or `PUSH_AUTH=off`) so the warning is logged.
    Disabled,
}

impl PushAuth {
    /// Reads `PUSH_AUTH` (`oidc` | `off`, required) and, for `oidc`, `PUSH_SERVICE_ACCOUNT`
    /// (required) and the `PUSH_` token settings of [`GoogleIdConfig::from_env`]
    /// (`PUSH_AUDIENCE` required).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let mode: String = env.required("PUSH_AUTH")?;
        match mode.to_ascii_lowercase().as_str() {
            "off" => Ok(PushAuth::disabled()),
            "oidc" => {
                let id = GoogleIdConfig::from_env(env, "PUSH")?;
                let email: String = env.required("PUSH_SERVICE_ACCOUNT")?;
                if !email.contains('@') || email.chars().any(char::is_whitespace) {
                    return Err(ConfigError::invalid(
                        "PUSH_SERVICE_ACCOUNT",
                        &email,
                        "expected a service account email such as push@PROJECT.iam.gserviceaccount.com",
                    ));
                }
                Ok(PushAuth::oidc(id, email))
            }
            _ => Err(ConfigError::invalid(
                "PUSH_AUTH",
                &mode,
                "expected oidc (production) or off (local runs with the emulator only)",
            )),
        }
    }

    /// OIDC verification of tokens for `config`'s audience signed as `service_account`.
    pub fn oidc(config: GoogleIdConfig, service_account: impl Into<String>) -> Self {
        let service_account = service_account.into();
        tracing::info!(
            audience = %config.audience,
            %service_account,
            "push authentication: Google OIDC tokens required"
        );
        PushAuth::Oidc {
            verifier: GoogleIdVerifier::new(config),
            service_account: vec![service_account],
        }
    }

    /// No authentication, with a loud warning.
    pub fn disabled() -> Self {
        tracing::warn!(
            "push authentication is OFF: only for local runs with the Pub/Sub emulator, \
             which sends no tokens; anyone who can reach this service can inject messages"
        );
        PushAuth::Disabled
    }

    pub fn is_disabled(&self) -> bool {
        matches!(self, PushAuth::Disabled)
    }

    /// Checks a push request's `Authorization` header (always `Ok` when disabled).
    pub async fn verify(&self, headers: &HeaderMap) -> Result<(), PushAuthError> {
        match self {
            PushAuth::Oidc {
                verifier,
                service_account,
            } => verifier.verify(headers, service_account).await.map(drop),
            PushAuth::Disabled => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The extractor
// ---------------------------------------------------------------------------------------

/// Router state that knows how push requests are authenticated.
pub trait HasPushAuth {
    fn push_auth(&self) -> &PushAuth;
}

impl HasPushAuth for PushAuth {
    fn push_auth(&self) -> &PushAuth {
        self
    }
}

impl<T: HasPushAuth> HasPushAuth for Arc<T> {
    fn push_auth(&self) -> &PushAuth {
        (**self).push_auth()
    }
}

/// An authenticated push delivery. Authentication failures reject the request (401/403
/// problem+json, a nack); a body that is not a valid envelope still yields a
/// `PushDelivery`, with the error, so the handler records it and acknowledges:
///
/// ```ignore
/// async fn push(State(app): State<App>, PushDelivery(delivery): PushDelivery) -> PushOutcome {
///     let msg = match delivery {
///         Ok(msg) => msg,
///         Err(e) => return e.into(), // 204 + WARN: a malformed envelope can never succeed
///     };
///     // ... Done | AlreadyDone | PermanentFailure(..) | Retry(..)
/// }
/// ```
#[derive(Debug)]
pub struct PushDelivery(pub Result<PushMessage, EnvelopeError>);

/// Why [`PushDelivery`] rejected a request.
#[derive(Debug, thiserror::Error)]
pub enum PushRejection {
    #[error(transparent)]
    Auth(#[from] PushAuthError),
    /// The body could not be read (the connection failed mid-request).
    #[error("push body could not be read: {0}")]
    Unreadable(String),
}

impl IntoResponse for PushRejection {
    fn into_response(self) -> Response {
        match self {
            PushRejection::Auth(e) => e.into_response(),
            PushRejection::Unreadable(detail) => {
                tracing::warn!(%detail, "push body could not be read");
                Problem::new(StatusCode::BAD_REQUEST, "unreadable", "Unreadable body")
                    .detail(detail)
                    .into_response()
            }
        }
    }
}

impl<S> FromRequest<S> for PushDelivery
where
    S: HasPushAuth + Send + Sync,
{
    type Rejection = PushRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        state.push_auth().verify(req.headers()).await?;
        let body = match Limited::new(req.into_body(), MAX_ENVELOPE_BYTES)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<LengthLimitError>() => {
                let e = EnvelopeError::TooLarge {
                    limit: MAX_ENVELOPE_BYTES,
                };
                tracing::warn!(error = %e, "unusable push envelope");
                return Ok(PushDelivery(Err(e)));
            }
            Err(e) => return Err(PushRejection::Unreadable(e.to_string())),
        };
        let parsed = parse_envelope(&body);
        match &parsed {
            Ok(m) => tracing::debug!(
                message_id = %m.message_id,
                subscription = %m.subscription,
                delivery_attempt = m.delivery_attempt,
                "push delivery"
            ),
            Err(e) => tracing::warn!(error = %e, "unusable push envelope"),
        }
        Ok(PushDelivery(parsed))
    }
}

// ---------------------------------------------------------------------------------------
// The outcome
// ---------------------------------------------------------------------------------------

/// What a push handler answers; see the module docs for the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// The effect is durable: 204, ack.
    Done,
    /// A redelivery of work already done (the guarded transition matched nothing): 204, ack.
    AlreadyDone,
    /// Can never succeed (malformed, unknown id, invalid content); recorded as failed by the
    /// handler: 204, ack, logged as a WARN with the reason.
    PermanentFailure(String),
    /// May succeed later (database, provider or bus unavailable): 503, nack, so Pub/Sub
    /// redelivers with backoff and eventually dead-letters. The reason is logged, not sent.
    Retry(String),
}

impl PushOutcome {
    /// The status this outcome answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            PushOutcome::Done | PushOutcome::AlreadyDone | PushOutcome::PermanentFailure(_) => {
                StatusCode::NO_CONTENT
            }
            PushOutcome::Retry(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// `true` when Pub/Sub will consider the message delivered.
    pub fn acknowledges(&self) -> bool {
        self.status().is_success()
    }
}

impl From<EnvelopeError> for PushOutcome {
    fn from(e: EnvelopeError) -> Self {
        PushOutcome::PermanentFailure(e.to_string())
    }
}

impl IntoResponse for PushOutcome {
    fn into_response(self) -> Response {
        let status = self.status();
        match self {
            PushOutcome::Done => {}
            PushOutcome::AlreadyDone => {
                tracing::info!("push delivery already processed: acknowledging the duplicate");
            }
            PushOutcome::PermanentFailure(reason) => {
                tracing::warn!(
                    %reason,
                    "push delivery failed permanently: acknowledging so it is not redelivered"
                );
            }
            PushOutcome::Retry(reason) => {
                tracing::warn!(
                    %reason,
                    "push delivery failed transiently: answering 503 so Pub/Sub redelivers"
                );
                return Problem::unavailable("transient failure; Pub/Sub will redeliver")
                    .into_response();
            }
        }
        status.into_response()
    }
}

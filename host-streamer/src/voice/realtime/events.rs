//! The Realtime protocol as this client reads it: the server events it acts on (everything
//! else parses as `Other` and is ignored), and what an `error` object means for the voice
//! chain (a rate limit to wait out, a key to fix, or a failure to move past). Kept apart
//! from the socket so the wire format can be read and tested without a connection.

use std::time::Duration;

use models::openai::redact_keys;
use serde::Deserialize;

use crate::voice::{VoiceError, dj};

/// The server events this client acts on; the rest are read and ignored.
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub(super) enum ServerEvent {
    #[serde(rename = "session.created")]
    SessionCreated { session: SessionInfo },
    #[serde(rename = "session.updated")]
    SessionUpdated,
    #[serde(rename = "error")]
    Error { error: ApiError },
    #[serde(rename = "response.created")]
    ResponseCreated { response: ResponseInfo },
    #[serde(rename = "response.output_audio.delta")]
    AudioDelta {
        #[serde(default)]
        response_id: String,
        delta: String,
    },
    #[serde(rename = "response.output_audio_transcript.delta")]
    TranscriptDelta {
        #[serde(default)]
        response_id: String,
        delta: String,
    },
    #[serde(rename = "response.output_audio_transcript.done")]
    TranscriptDone {
        #[serde(default)]
        response_id: String,
        #[serde(default)]
        transcript: String,
    },
    #[serde(rename = "response.done")]
    ResponseDone { response: ResponseInfo },
    #[serde(rename = "rate_limits.updated")]
    RateLimitsUpdated { rate_limits: Vec<RateLimit> },
    #[serde(other)]
    Other,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct SessionInfo {
    #[serde(default)]
    pub(super) id: String,
    #[serde(default)]
    pub(super) expires_at: Option<i64>,
}

/// The `error` object of an `error` event or of a failed response's `status_details`.
#[derive(Debug, Default, Clone, Deserialize)]
pub(super) struct ApiError {
    #[serde(default, rename = "type")]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) code: Option<String>,
    #[serde(default)]
    pub(super) message: Option<String>,
}

impl ApiError {
    pub(super) fn code(&self) -> &str {
        self.code.as_deref().unwrap_or("")
    }

    pub(super) fn describe(&self) -> String {
        let mut out = self.kind.clone();
        if !self.code().is_empty() && self.code() != self.kind {
            out.push_str(&format!(" ({})", self.code()));
        }
        if let Some(m) = self.message.as_deref().filter(|m| !m.is_empty()) {
            out.push_str(": ");
            out.push_str(&redact_keys(m));
        }
        out
    }
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct ResponseInfo {
    #[serde(default)]
    pub(super) id: String,
    #[serde(default)]
    pub(super) status: String,
    #[serde(default)]
    pub(super) status_details: Option<StatusDetails>,
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct StatusDetails {
    #[serde(default)]
    pub(super) reason: Option<String>,
    #[serde(default)]
    pub(super) error: Option<ApiError>,
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct RateLimit {
    #[serde(default)]
    pub(super) remaining: Option<f64>,
    #[serde(default)]
    pub(super) reset_seconds: Option<f64>,
}

/// An `error` while a session is being set up: it cannot be used.
pub(super) fn setup_error(error: &ApiError) -> VoiceError {
    match classify(error, &[]) {
        e @ VoiceError::RateLimited(_) => e,
        e => VoiceError::Unavailable(format!("Realtime session not usable: {e}")),
    }
}

/// An `error` object as a [`VoiceError`].
pub(super) fn classify(error: &ApiError, rate_limits: &[RateLimit]) -> VoiceError {
    match error.code() {
        "insufficient_quota" => VoiceError::RateLimited(dj::QUOTA_WAIT),
        "rate_limit_exceeded" => VoiceError::RateLimited(rate_limit_wait(error, rate_limits)),
        _ if error.kind == "rate_limit_error" => {
            VoiceError::RateLimited(rate_limit_wait(error, rate_limits))
        }
        "invalid_api_key" => VoiceError::Unavailable(error.describe()),
        _ => VoiceError::Failed(error.describe()),
    }
}

/// How long a rate limit lasts: what the message says ("try again in 1.5s"), else the
/// longest reset among the exhausted limits, else [`dj::DEFAULT_RATE_LIMIT_WAIT`].
fn rate_limit_wait(error: &ApiError, rate_limits: &[RateLimit]) -> Duration {
    if let Some(wait) = error.message.as_deref().and_then(wait_in_message) {
        return wait;
    }
    rate_limits
        .iter()
        .filter(|l| l.remaining.is_some_and(|r| r <= 0.0))
        .filter_map(|l| l.reset_seconds)
        .filter_map(|s| Duration::try_from_secs_f64(s).ok())
        .max()
        .unwrap_or(dj::DEFAULT_RATE_LIMIT_WAIT)
}

/// Parses the wait in "... try again in 1m30.5s." (units h, m, s, ms).
fn wait_in_message(message: &str) -> Option<Duration> {
    let lower = message.to_ascii_lowercase();
    let (_, rest) = lower.split_once("try again in ")?;
    let mut total = 0.0f64;
    let mut rest = rest;
    // Pairs of a number and a unit, up to whatever follows (". Please ...").
    while rest.starts_with(|c: char| c.is_ascii_digit()) {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    (total > 0.0)
        .then(|| Duration::try_from_secs_f64(total).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_waits() {
        let error = |m: &str| ApiError {
            kind: "rate_limit_error".into(),
            code: Some("rate_limit_exceeded".into()),
            message: Some(m.into()),
        };
        assert_eq!(
            rate_limit_wait(&error("Please try again in 1.5s."), &[]),
            Duration::from_millis(1500)
        );
        assert_eq!(
            rate_limit_wait(&error("Please try again in 1m30s."), &[]),
            Duration::from_secs(90)
        );
        assert_eq!(
            rate_limit_wait(&error("try again in 250ms"), &[]),
            Duration::from_millis(250)
        );
        let limits = [
            RateLimit {
                remaining: Some(0.0),
                reset_seconds: Some(2.5),
            },
            RateLimit {
                remaining: Some(10.0),
                reset_seconds: Some(60.0),
            },
        ];
        assert_eq!(
            rate_limit_wait(&error("slow down"), &limits),
            Duration::from_millis(2500)
        );
        assert_eq!(
            rate_limit_wait(&error("slow down"), &[]),
            dj::DEFAULT_RATE_LIMIT_WAIT
        );
        assert!(matches!(
            classify(&error("x"), &[]),
            VoiceError::RateLimited(_)
        ));
        let server = ApiError {
            kind: "server_error".into(),
            code: None,
            message: Some("boom".into()),
        };
        assert_eq!(
            classify(&server, &[]),
            VoiceError::Failed("server_error: boom".into())
        );
    }

    #[test]
    fn server_events_parse() {
        let e: ServerEvent = serde_json::from_str(
            r#"{"type":"response.done","event_id":"e","response":{"id":"r","status":"failed","status_details":{"type":"failed","error":{"type":"server_error","code":null}}}}"#,
        )
        .unwrap();
        assert!(matches!(e, ServerEvent::ResponseDone { .. }));
        let e: ServerEvent =
            serde_json::from_str(r#"{"type":"conversation.item.added","item":{}}"#).unwrap();
        assert!(matches!(e, ServerEvent::Other));
        let e: ServerEvent =
            serde_json::from_str(r#"{"type":"session.updated","session":{}}"#).unwrap();
        assert!(matches!(e, ServerEvent::SessionUpdated));
    }
}

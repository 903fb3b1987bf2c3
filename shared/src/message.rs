//! The versioned message envelope every pipeline stage publishes and consumes.
//!
//! Messages are claim checks: they carry ids, never payloads. Postgres holds the state and
//! object storage the bytes. Delivery is at-least-once, so a consumer recognises a
//! duplicate by `submission_id` + `event` and its guarded state transition.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::submission::repository::SubmissionRow;
use crate::submission::{SubmissionId, SubmissionKind};
use crate::telemetry::TraceContext;

/// The envelope version this build writes. Readers accept any version up to this one.
pub const SCHEMA_VERSION: u32 = 1;

/// Which step of the pipeline a message announces; also names its default topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    #[serde(rename = "submission.ingested")]
    Ingested,
    #[serde(rename = "submission.embedded")]
    Embedded,
    #[serde(rename = "submission.ready")]
    Ready,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Ingested => "submission.ingested",
            Event::Embedded => "submission.embedded",
            Event::Ready => "submission.ready",
        }
    }

    /// The variable that overrides [`Event::default_topic`] in every service's configuration.
    pub fn topic_env_var(self) -> &'static str {
        match self {
            Event::Ingested => "TOPIC_SUBMISSION_INGESTED",
            Event::Embedded => "TOPIC_SUBMISSION_EMBEDDED",
            Event::Ready => "TOPIC_SUBMISSION_READY",
        }
    }

    /// The topic this event goes to: [`Event::topic_env_var`] or [`Event::default_topic`].
    pub fn topic(self, env: &crate::config::Env) -> Result<String, crate::config::ConfigError> {
        env.or(self.topic_env_var(), self.default_topic().to_owned())
    }

    /// The default Pub/Sub topic id for this event.
    pub fn default_topic(self) -> &'static str {
        match self {
            Event::Ingested => "submission-ingested",
            Event::Embedded => "submission-embedded",
            Event::Ready => "submission-ready",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmissionEvent {
    pub schema: u32,
    pub event: Event,
    pub submission_id: SubmissionId,
    pub channel_id: String,
    pub kind: SubmissionKind,
    pub occurred_at: DateTime<Utc>,
    /// W3C `traceparent` of the request that caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message is not a valid submission event: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("message schema {0} is newer than this build understands ({SCHEMA_VERSION})")]
    UnsupportedSchema(u32),
    /// Well-formed JSON carrying junk (a channel id with a NUL, a broken traceparent): it
    /// would fail the same way on every delivery.
    #[error("message is not a valid submission event: {0}")]
    Invalid(String),
}

impl SubmissionEvent {
    pub fn new(
        event: Event,
        submission_id: SubmissionId,
        channel_id: &str,
        kind: SubmissionKind,
        trace: Option<&TraceContext>,
    ) -> Self {
        SubmissionEvent {
            schema: SCHEMA_VERSION,
            event,
            submission_id,
            channel_id: channel_id.to_owned(),
            kind,
            occurred_at: Utc::now(),
            traceparent: trace.map(|t| t.child().traceparent()),
        }
    }

    /// The event the next stage publishes about `row`, in the same trace. Channel and kind
    /// come from the row, never from this message: an envelope points at a submission, the
    /// row says what it is (a message naming another channel must not move it there).
    pub fn follow_up(&self, next: Event, row: &SubmissionRow) -> Self {
        if row.channel != self.channel_id || row.kind != self.kind {
            tracing::warn!(
                submission_id = %row.id,
                envelope_channel = %self.channel_id,
                channel = %row.channel,
                "the message disagrees with the submission's row; the row is followed"
            );
        }
        let trace = self
            .traceparent
            .as_deref()
            .and_then(TraceContext::from_traceparent);
        SubmissionEvent::new(next, row.id, &row.channel, row.kind, trace.as_ref())
    }

    /// Pub/Sub attributes: enough to route, filter and trace without parsing the body.
    pub fn attributes(&self) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        a.insert("schema".into(), self.schema.to_string());
        a.insert("event".into(), self.event.as_str().into());
        a.insert("submission_id".into(), self.submission_id.to_string());
        if let Some(tp) = &self.traceparent {
            a.insert("traceparent".into(), tp.clone());
        }
        a
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("a submission event always serialises")
    }

    pub fn decode(data: &[u8]) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct Version {
            schema: u32,
        }
        let Version { schema } = serde_json::from_slice(data)?;
        if schema > SCHEMA_VERSION {
            return Err(DecodeError::UnsupportedSchema(schema));
        }
        let event: SubmissionEvent = serde_json::from_slice(data)?;
        if !is_channel_id(&event.channel_id) {
            return Err(DecodeError::Invalid(format!(
                "channel_id {:?} is not a channel id",
                event.channel_id.escape_debug().to_string()
            )));
        }
        if let Some(tp) = &event.traceparent
            && TraceContext::from_traceparent(tp).is_none()
        {
            return Err(DecodeError::Invalid(format!(
                "traceparent {:?} is not a W3C traceparent",
                tp.escape_debug().to_string()
            )));
        }
        Ok(event)
    }
}

/// A channel id as the `channel` table allows it: `[a-z0-9][a-z0-9-]{0,62}`.
pub fn is_channel_id(s: &str) -> bool {
    let b = s.as_bytes();
    (1..=63).contains(&b.len())
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn junk_in_the_envelope_is_refused_at_decoding() {
        let ev = SubmissionEvent::new(
            Event::Embedded,
            SubmissionId::new(),
            "main",
            SubmissionKind::Text,
            None,
        );
        for (field, junk) in [
            ("channel_id", json!("\u{0}")),
            ("channel_id", json!("Main")),
            ("channel_id", json!("")),
            ("channel_id", json!("a".repeat(64))),
            ("traceparent", json!("00-\u{0}")),
        ] {
            let mut v = ev.to_json();
            v[field] = junk.clone();
            let err = SubmissionEvent::decode(v.to_string().as_bytes()).unwrap_err();
            assert!(
                matches!(err, DecodeError::Invalid(_)),
                "{field} {junk}: {err}"
            );
        }
        assert!(is_channel_id("main") && is_channel_id("jp-2") && !is_channel_id("-x"));
    }

    #[test]
    fn round_trips_and_rejects_future_versions() {
        let ev = SubmissionEvent::new(
            Event::Ingested,
            SubmissionId::new(),
            "main",
            SubmissionKind::Text,
            Some(&TraceContext::new_root()),
        );
        let bytes = serde_json::to_vec(&ev).unwrap();
        assert_eq!(SubmissionEvent::decode(&bytes).unwrap(), ev);
        assert_eq!(
            ev.attributes()["submission_id"],
            ev.submission_id.to_string()
        );
        let mut future = ev.to_json();
        future["schema"] = 99.into();
        assert!(matches!(
            SubmissionEvent::decode(future.to_string().as_bytes()),
            Err(DecodeError::UnsupportedSchema(99))
        ));
        assert!(SubmissionEvent::decode(b"{}").is_err());
    }
}

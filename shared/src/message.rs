//! The versioned message envelope every pipeline stage publishes and consumes.
//!
//! Messages are claim checks: they carry ids, never payloads. Postgres holds the state and
//! object storage the bytes. Delivery is at-least-once, so a consumer recognises a
//! duplicate by `submission_id` + `event` and its guarded state transition.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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

    /// The event the next stage publishes about the same submission, in the same trace.
    pub fn follow_up(&self, next: Event) -> Self {
        let trace = self
            .traceparent
            .as_deref()
            .and_then(TraceContext::from_traceparent);
        SubmissionEvent::new(
            next,
            self.submission_id,
            &self.channel_id,
            self.kind,
            trace.as_ref(),
        )
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
        Ok(serde_json::from_slice(data)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

//! The submission's status machine and kind, as the `status` and `kind` columns hold them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Text typed by the listener, or a recording of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum SubmissionKind {
    Text,
    Audio,
}

impl SubmissionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubmissionKind::Text => "text",
            SubmissionKind::Audio => "audio",
        }
    }
}

/// The status machine of the design brief. The database column of the same name as each
/// status (`ingested_at`, ...) records when the submission entered it.
///
/// Read from the database through `sqlx::Type`: a value this enum does not know is a decode
/// error, never a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum Status {
    Received,
    Ingested,
    Embedded,
    Approved,
    Held,
    Rejected,
    Duplicate,
    Queued,
    OnAir,
    Aired,
    Failed,
}

impl Status {
    pub const ALL: [Status; 11] = [
        Status::Received,
        Status::Ingested,
        Status::Embedded,
        Status::Approved,
        Status::Held,
        Status::Rejected,
        Status::Duplicate,
        Status::Queued,
        Status::OnAir,
        Status::Aired,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Received => "received",
            Status::Ingested => "ingested",
            Status::Embedded => "embedded",
            Status::Approved => "approved",
            Status::Held => "held",
            Status::Rejected => "rejected",
            Status::Duplicate => "duplicate",
            Status::Queued => "queued",
            Status::OnAir => "on_air",
            Status::Aired => "aired",
            Status::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether the machine allows `self -> to`. `failed` is reachable from any
    /// non-terminal status, and `rejected` from any approved one (an operator revokes it).
    pub fn can_become(self, to: Status) -> bool {
        use Status::*;
        match (self, to) {
            // An operator revokes what was approved, even once aired: it is never played or
            // quoted again.
            (Approved | Queued | OnAir | Aired, Rejected) => true,
            (Aired | Rejected | Duplicate | Failed, _) => false,
            (_, Failed) => true,
            (Received, Ingested) | (Ingested, Embedded) => true,
            (Embedded, Approved | Held | Rejected | Duplicate) => true,
            (Held, Approved | Rejected) => true,
            (Approved, Queued) | (Queued, OnAir) | (OnAir, Aired) => true,
            // The streamer stopped mid-item: it is queued again and played from the start.
            (OnAir, Queued) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Outcome of a guarded transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// This call moved the submission.
    Applied,
    /// The submission was not in the expected status (already moved by an earlier
    /// delivery of the same message, or by someone else): nothing changed.
    NotApplicable,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_machine_matches_the_design() {
        use Status::*;
        assert!(Received.can_become(Ingested));
        assert!(Embedded.can_become(Duplicate));
        assert!(Held.can_become(Approved));
        assert!(OnAir.can_become(Aired));
        assert!(Queued.can_become(Failed));
        assert!(!Aired.can_become(Failed));
        assert!(Aired.can_become(Rejected), "an operator revokes it");
        assert!(Queued.can_become(Rejected));
        assert!(!Rejected.can_become(Approved));
        assert!(!Ingested.can_become(Approved));
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in [SubmissionKind::Text, SubmissionKind::Audio] {
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
        }
    }
}

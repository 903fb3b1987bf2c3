//! The submission domain: validated newtypes (parse, don't validate) and the status
//! machine with its guarded transitions.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A submission id: a UUIDv7, so ids sort by creation time and index inserts stay local.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct SubmissionId(pub Uuid);

impl SubmissionId {
    pub fn new() -> Self {
        SubmissionId(Uuid::now_v7())
    }
}

impl Default for SubmissionId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for SubmissionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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
    /// non-terminal status.
    pub fn can_become(self, to: Status) -> bool {
        use Status::*;
        match (self, to) {
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

/// Moves a submission `from -> to` with one guarded UPDATE, stamping `<to>_at`.
/// Idempotent under redelivery: a second call finds the status moved and changes nothing.
pub async fn transition<'e>(
    exec: impl sqlx::PgExecutor<'e>,
    id: SubmissionId,
    from: Status,
    to: Status,
    failure_reason: Option<&str>,
) -> Result<Transition, sqlx::Error> {
    assert!(from.can_become(to), "illegal transition {from} -> {to}");
    // The column name comes from a closed enum, never from input.
    let sql = format!(
        "UPDATE submission SET status = $3, {}_at = now(), \
         failure_reason = COALESCE($4, failure_reason) \
         WHERE id = $1 AND status = $2",
        to.as_str()
    );
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(failure_reason)
        .execute(exec)
        .await?;
    Ok(if done.rows_affected() == 1 {
        Transition::Applied
    } else {
        Transition::NotApplicable
    })
}

/// Why a piece of user input was refused; shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

/// The text of a text submission: trimmed, non-empty, at most the configured number of
/// characters, and free of control characters other than newlines and tabs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmissionText(String);

impl SubmissionText {
    pub fn parse(raw: &str, max_chars: usize) -> Result<Self, InvalidInput> {
        let text = raw.trim();
        if text.is_empty() {
            return Err(InvalidInput("text must not be empty".into()));
        }
        let chars = text.chars().count();
        if chars > max_chars {
            return Err(InvalidInput(format!(
                "text has {chars} characters; at most {max_chars} are allowed"
            )));
        }
        if text
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
        {
            return Err(InvalidInput("text contains control characters".into()));
        }
        Ok(SubmissionText(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A client's `Idempotency-Key`: 1 to 255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        if raw.is_empty() || raw.len() > 255 || !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidInput(
                "Idempotency-Key must be 1 to 255 visible ASCII characters".into(),
            ));
        }
        Ok(IdempotencyKey(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Who submitted: the verified subject of a token, or an explicit anonymous identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    pub fn parse(raw: &str) -> Result<Self, InvalidInput> {
        if raw.is_empty() || raw.len() > 256 || raw.chars().any(char::is_control) {
            return Err(InvalidInput(
                "user id must be 1 to 256 printable characters".into(),
            ));
        }
        Ok(UserId(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
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
        assert!(!Ingested.can_become(Approved));
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn text_is_validated() {
        assert_eq!(SubmissionText::parse("  hi  ", 10).unwrap().as_str(), "hi");
        assert!(SubmissionText::parse("   ", 10).is_err());
        assert!(SubmissionText::parse("ééééé", 4).is_err());
        assert!(SubmissionText::parse("ééééé", 5).is_ok());
        assert!(SubmissionText::parse("a\u{0}b", 10).is_err());
        assert!(IdempotencyKey::parse("abc-123").is_ok());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }
}

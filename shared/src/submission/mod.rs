//! The submission domain: validated newtypes (parse, don't validate) here, the status
//! machine in [`status`], and in [`repository`] every SQL statement on the `submission`
//! table: no other module of any crate reads or writes it.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod repository;
pub mod status;

pub use repository::{SubmissionRow, transition};
pub use status::{Status, SubmissionKind, Transition};

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

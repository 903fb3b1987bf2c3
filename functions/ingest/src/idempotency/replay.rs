//! Telling a retry from a different request that reuses a key, and finding what the first
//! request created.

use sha2::{Digest, Sha256};
use shared::submission::repository::{self, Summary};
use shared::submission::{IdempotencyKey, UserId};
use sqlx::PgExecutor;

use crate::error::Error;
use crate::payload::Payload;

/// SHA-256 of what a request asks for (its kind and content), kept with the submission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(Vec<u8>);

impl Fingerprint {
    pub fn of(payload: &Payload) -> Self {
        let mut h = Sha256::new();
        h.update(payload.kind().as_str());
        h.update([0]);
        match payload {
            Payload::Text(t) => h.update(t.as_str()),
            Payload::Audio { bytes, .. } => h.update(bytes),
        }
        Fingerprint(h.finalize().to_vec())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The submission `user` created with `key`, if any, to be answered again; a request with a
/// different fingerprint under the same key is refused.
pub async fn earlier(
    exec: impl PgExecutor<'_>,
    user: &UserId,
    key: &IdempotencyKey,
    fingerprint: &Fingerprint,
) -> Result<Option<Summary>, Error> {
    match repository::find_by_key(exec, user, key).await? {
        None => Ok(None),
        Some((summary, first)) if first == fingerprint.0 => Ok(Some(summary)),
        Some(_) => Err(Error::IdempotencyMismatch),
    }
}

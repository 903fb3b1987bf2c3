//! The `Idempotency-Key` header.

use axum::http::HeaderMap;
use shared::submission::IdempotencyKey;

use crate::error::Error;

/// The request's key, if it sent one; a malformed key is the client's error (400).
pub fn from_headers(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, Error> {
    headers
        .get("idempotency-key")
        .map(|v| {
            let s = v
                .to_str()
                .map_err(|_| Error::BadRequest("Idempotency-Key is not ASCII".into()))?;
            IdempotencyKey::parse(s).map_err(|e| Error::BadRequest(e.0))
        })
        .transpose()
}

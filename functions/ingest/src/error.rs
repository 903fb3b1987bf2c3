//! The ingest service's one error type. Each variant maps to one HTTP status and a
//! problem+json body; internal details are logged here and never sent to the client.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use shared::auth::AuthError;
use shared::problem::{Problem, ServerError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("too large: {0}")]
    TooLarge(String),
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    #[error("unprocessable: {0}")]
    Unprocessable(String),
    #[error("Idempotency-Key reused with a different request")]
    IdempotencyMismatch,
    #[error("rate limited")]
    RateLimited(Duration),
    /// A feature this deployment does not offer: permanent, so no `Retry-After`.
    #[error("not configured: {0}")]
    NotConfigured(String),
    #[error(transparent)]
    Server(#[from] ServerError),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Server(e.into())
    }
}

impl From<anyhow::Error> for Error {
    fn from(e: anyhow::Error) -> Self {
        Error::Server(e.into())
    }
}

impl From<AuthError> for Error {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::KeysUnavailable(reason) => {
                tracing::warn!(%reason, "cannot verify tokens: signing keys unavailable");
                ServerError::Unavailable("identity provider unavailable".into()).into()
            }
            e => Error::Unauthenticated(e.to_string()),
        }
    }
}

impl From<shared::submission::InvalidInput> for Error {
    fn from(e: shared::submission::InvalidInput) -> Self {
        Error::Unprocessable(e.0)
    }
}

impl Error {
    /// The response; internal details are logged here and stop here.
    pub fn into_problem(self) -> Problem {
        use StatusCode as S;
        match self {
            Error::BadRequest(d) => {
                Problem::new(S::BAD_REQUEST, "malformed", "Malformed request").detail(d)
            }
            Error::Unauthenticated(d) => Problem::new(
                S::UNAUTHORIZED,
                "unauthenticated",
                "Authentication required",
            )
            .detail(d),
            Error::Forbidden(d) => Problem::new(S::FORBIDDEN, "forbidden", "Not allowed").detail(d),
            Error::NotFound => Problem::not_found(),
            Error::TooLarge(d) => {
                Problem::new(S::PAYLOAD_TOO_LARGE, "too-large", "Request too large").detail(d)
            }
            Error::UnsupportedMediaType(d) => Problem::new(
                S::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "Unsupported media type",
            )
            .detail(d),
            Error::Unprocessable(d) => {
                Problem::new(S::UNPROCESSABLE_ENTITY, "invalid", "Invalid submission").detail(d)
            }
            Error::IdempotencyMismatch => Problem::new(
                S::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
            )
            .detail("this Idempotency-Key was used for a different request"),
            Error::RateLimited(wait) => {
                Problem::new(S::TOO_MANY_REQUESTS, "rate-limited", "Too many requests")
                    .retry_after(wait)
            }
            Error::NotConfigured(d) => {
                Problem::new(S::NOT_IMPLEMENTED, "not-configured", "Not configured").detail(d)
            }
            Error::Server(e) => e.into_problem(),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.into_problem().into_response()
    }
}

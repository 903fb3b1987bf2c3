//! moderate's one error type for its operator API. Each variant maps to one HTTP status and
//! a problem+json body; internal details are logged here and never sent to the client.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use shared::problem::{Problem, ServerError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("invalid: {0}")]
    Unprocessable(String),
    #[error("not found")]
    NotFound,
    /// The submission is not (any more) held: another operator decided first.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error(transparent)]
    Server(#[from] ServerError),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Server(e.into())
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        use StatusCode as S;
        let problem = match self {
            Error::BadRequest(d) => {
                Problem::new(S::BAD_REQUEST, "malformed", "Malformed request").detail(d)
            }
            Error::Unprocessable(d) => {
                Problem::new(S::UNPROCESSABLE_ENTITY, "invalid", "Invalid request").detail(d)
            }
            Error::NotFound => Problem::not_found(),
            Error::Conflict(d) => {
                Problem::new(S::CONFLICT, "not-held", "Submission is not held").detail(d)
            }
            Error::Server(e) => e.into_problem(),
        };
        problem.into_response()
    }
}

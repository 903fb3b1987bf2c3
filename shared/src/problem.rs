//! RFC 9457 problem details: the one shape every error response of every service takes.
//!
//! Services keep their own `Error` enum and convert it into a [`Problem`]; internal
//! details are logged where the error is converted and never put into the response. The two
//! failures every service answers alike (a dependency is down, something broke inside) are
//! one type, [`ServerError`], that each service's `Error` wraps.

use std::time::Duration;

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

pub const CONTENT_TYPE: &str = "application/problem+json";

#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A stable URI reference naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Seconds to wait before retrying (429, 503); also sent as `Retry-After`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, title: impl Into<String>) -> Self {
        Problem {
            kind: format!("https://radio24.dev/problems/{slug}"),
            title: title.into(),
            status: status.as_u16(),
            detail: None,
            retry_after: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn retry_after(mut self, wait: Duration) -> Self {
        // Round up: telling a client to retry after 0 s invites a hot loop.
        self.retry_after = Some(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
        self
    }

    pub fn not_found() -> Self {
        Problem::new(StatusCode::NOT_FOUND, "not-found", "No such resource")
    }

    pub fn internal() -> Self {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error; it has been logged",
        )
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Temporarily unavailable",
        )
        .detail(detail)
        .retry_after(Duration::from_secs(1))
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut res = (self.status(), body).into_response();
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        res
    }
}

/// What every service answers the same way: a dependency is down (503, retry soon) or
/// something broke inside (500; the details are logged, never sent).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ServerError {
    /// A database that cannot be reached is a 503; any other database error is a bug or a
    /// broken invariant: 500.
    fn from(e: sqlx::Error) -> Self {
        match crate::db::unless_unavailable(e) {
            None => ServerError::Unavailable("database unavailable".into()),
            Some(e) => ServerError::Internal(e.into()),
        }
    }
}

impl ServerError {
    /// The response; an internal error is logged here, where its details stop.
    pub fn into_problem(self) -> Problem {
        match self {
            ServerError::Unavailable(detail) => Problem::unavailable(detail),
            ServerError::Internal(e) => {
                tracing::error!(error = ?e, "internal error");
                Problem::internal()
            }
        }
    }
}

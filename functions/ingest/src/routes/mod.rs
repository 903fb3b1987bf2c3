//! HTTP routes.

mod health;
mod listen_token;
mod submissions;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::Error;
use crate::identity::client_ip;
use crate::rate_limit::Bucket;
use crate::state::AppState;

pub fn router(state: AppState) -> Router {
    // Bodies are bounded as they are read, by `payload::read` (which also drains what is
    // left of a body it answers early), not by axum's default limit, which would stop
    // reading at the limit and leave the rest unread.
    let api = Router::new()
        .route(
            "/v1/submissions",
            post(submissions::create).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/submissions/{id}", get(submissions::get))
        .route("/v1/listen-token", post(listen_token::issue))
        .layer(middleware::from_fn_with_state(state.clone(), limit_per_ip))
        // Outermost: a 429 from the limiter or a 401 from an extractor, answered before the
        // body is read, still reaches a client that writes its whole body first.
        .layer(middleware::from_fn(shared::body::drain_unread));
    let router = Router::new()
        .route("/healthz", get(shared::http::healthz))
        .route("/readyz", get(health::readyz))
        .merge(api)
        .with_state(state);
    shared::http::finish_router(router)
}

/// Per-IP limit, checked before authentication and before any body is read, so a flood
/// costs as little as possible.
async fn limit_per_ip(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let key = client_ip(&parts, state.config.forwarded_hops)
        .map(|ip| ip.to_string())
        .unwrap_or_default();
    if let Err(wait) = state.limits.check(Bucket::Ip, &key) {
        return Error::RateLimited(wait).into_response();
    }
    next.run(Request::from_parts(parts, body)).await
}

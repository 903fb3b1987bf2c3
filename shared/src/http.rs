//! HTTP plumbing every service shares: the per-request context (trace and request id on a
//! span that covers every log line of the request), the problem+json fallbacks, and
//! graceful shutdown on SIGTERM within Cloud Run's grace period.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::HeaderValue;
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::problem::Problem;
use crate::telemetry::TraceContext;

/// What every handler may want to know about the request it serves.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub request_id: uuid::Uuid,
    pub trace: TraceContext,
}

/// Middleware: builds the [`RequestContext`], runs the request inside a span carrying its
/// ids, echoes `x-request-id`, and logs the outcome.
pub async fn request_context(mut req: Request, next: Next) -> Response {
    let trace = TraceContext::from_headers(req.headers()).unwrap_or_else(TraceContext::new_root);
    let ctx = RequestContext {
        request_id: uuid::Uuid::new_v4(),
        trace,
    };
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %ctx.request_id,
        trace_id = %ctx.trace,
    );
    let request_id = HeaderValue::from_str(&ctx.request_id.to_string()).ok();
    req.extensions_mut().insert(ctx);
    let started = Instant::now();
    async move {
        let mut res = bare_error_to_problem(next.run(req).await);
        let status = res.status();
        let ms = started.elapsed().as_secs_f64() * 1e3;
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), ms, "request failed");
        } else if status.is_client_error() {
            tracing::info!(status = status.as_u16(), ms, "request rejected");
        } else {
            tracing::debug!(status = status.as_u16(), ms, "request served");
        }
        if let Some(id) = request_id {
            res.headers_mut().insert("x-request-id", id);
        }
        res
    }
    .instrument(span)
    .await
}

/// Error responses made by the framework itself (405 with its `Allow` header, a body
/// limit's 413, ...) carry no body type; give them the problem+json every other error has.
fn bare_error_to_problem(res: Response) -> Response {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error())
        || res.headers().contains_key(http::header::CONTENT_TYPE)
        || res.headers().contains_key(http::header::CONTENT_LENGTH)
            && res.headers()[http::header::CONTENT_LENGTH] != "0"
    {
        return res;
    }
    let (parts, _) = res.into_parts();
    let slug = status
        .canonical_reason()
        .unwrap_or("error")
        .to_ascii_lowercase()
        .replace(' ', "-");
    let title = status.canonical_reason().unwrap_or("Error");
    let mut problem = Problem::new(status, &slug, title).into_response();
    for (name, value) in parts.headers.iter() {
        if name != http::header::CONTENT_LENGTH {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}

/// Fallback for unknown paths.
pub async fn not_found() -> Problem {
    Problem::not_found()
}

/// `GET /healthz`: the process is alive and serving.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Wraps a service's routes with the shared context middleware and problem+json 404.
pub fn finish_router(router: Router) -> Router {
    router
        .fallback(not_found)
        .layer(axum::middleware::from_fn(request_context))
}

/// Resolves on SIGTERM (Cloud Run's stop signal) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining in-flight requests");
}

/// Serves `router` until `shutdown` resolves, then drains in-flight requests for at most
/// `grace` (Cloud Run sends SIGKILL 10 s after SIGTERM).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    // Cancelled when the drain starts, which starts the grace period.
    let draining = tokio_util::sync::CancellationToken::new();
    let drain_started = draining.clone();
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        drain_started.cancel();
    });
    tokio::select! {
        res = server => res,
        _ = async move {
            draining.cancelled().await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(grace_s = grace.as_secs_f64(), "drain deadline passed; closing remaining connections");
            Ok(())
        }
    }
}

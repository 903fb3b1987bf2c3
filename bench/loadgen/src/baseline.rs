//! The "no work" server: what the HTTP stack alone manages on this machine, measured with the
//! same load generator as ingest so that the ratio compares like with like.
//!
//! Same runtime shape as ingest (`#[tokio::main]`: one worker thread per core) and the same
//! `axum::serve`; the handler reads the body (as ingest must) and answers 202 with a small
//! JSON body, without parsing, validating or storing anything.

use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result};
use axum::Router;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use bytes::Bytes;

use crate::args::Args;

pub fn main(mut args: Args) -> Result<()> {
    let port: u16 = args.required("port")?;
    let host: IpAddr = args.or("host", IpAddr::from([127, 0, 0, 1]))?;
    args.finish()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(SocketAddr::new(host, port)))
}

async fn serve(addr: SocketAddr) -> Result<()> {
    let app = Router::new()
        .route("/v1/submissions", post(accept))
        .route("/healthz", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    eprintln!("loadgen baseline: listening on {addr}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        })
        .await?;
    Ok(())
}

async fn accept(body: Bytes) -> impl IntoResponse {
    std::hint::black_box(body);
    (
        StatusCode::ACCEPTED,
        [("content-type", "application/json")],
        r#"{"status":"ingested"}"#,
    )
}

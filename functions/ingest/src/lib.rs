//! Radio24 ingest: the public HTTPS API where listeners post text and push-to-talk audio.
//!
//! A 202 from `POST /v1/submissions` means durable: the submission row and its
//! `submission-ingested` message are committed together (transactional outbox), the
//! message is published right after the commit, and the relay publishes it later if
//! Pub/Sub was unreachable.

pub mod config;
pub mod error;
pub mod idempotency;
pub mod identity;
pub mod payload;
pub mod rate_limit;
pub mod routes;
pub mod state;

use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use anyhow::Context;
use shared::auth::JwtVerifier;
use shared::bus::Bus;
use shared::outbox::Outbox;
use tokio::net::TcpListener;

use crate::config::{AuthMode, Config};
use crate::identity::Authenticator;
use crate::rate_limit::Limits;
use crate::state::{AppState, Inner};

/// A built, bound, not yet serving ingest service.
pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Connects to everything, runs migrations (unless disabled) and binds the port.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let (pool, bus) =
            shared::process::connect(&config.db, &config.bus, &[&config.topic_ingested]).await?;
        let store = shared::store::open(&config.store_url, config.gcs_endpoint.as_deref())
            .await
            .context("cannot open the uploads store (UPLOADS_URL)")?;
        let auth = match &config.auth {
            AuthMode::Jwt(jwt) => Authenticator::Jwt(JwtVerifier::new(jwt.clone())),
            AuthMode::Anonymous => {
                tracing::warn!(
                    "AUTH_MODE=anonymous: callers are NOT authenticated; use only for local runs"
                );
                Authenticator::Anonymous {
                    forwarded_hops: config.forwarded_hops,
                }
            }
        };
        if config.livekit.is_none() {
            tracing::warn!("LiveKit is not configured (LIVEKIT_URL): /v1/listen-token answers 501");
        }
        let outbox = Outbox::new(pool.clone(), bus.clone(), config.outbox.clone());
        let limits = Limits::new(config.rate_per_ip, config.rate_per_user);
        let listener = shared::process::bind(config.host, config.port).await?;
        let state: AppState = Arc::new(Inner {
            config,
            pool,
            bus,
            outbox,
            store,
            auth,
            limits,
        });
        Ok(Application { listener, state })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        // Stops the background tasks when serving ends, however it ends.
        let stop = tokio_util::sync::CancellationToken::new();
        let stop_on_return = stop.clone().drop_guard();
        let state = self.state.clone();
        let mut background = Vec::new();
        if state.config.run_relay {
            background.push(tokio::spawn(state.outbox.clone().run_relay(stop.clone())));
        }
        background.push(tokio::spawn(prune_limits(state.limits.clone(), stop)));
        let grace = state.config.shutdown_grace;
        tracing::info!(port = self.port(), "ingest listening");
        shared::http::serve(
            self.listener,
            routes::router(state.clone()),
            shutdown,
            grace,
        )
        .await?;
        drop(stop_on_return);
        for task in background {
            let _ = task.await;
        }
        // Messages accepted during the drain are in the outbox either way; flushing the
        // publisher just makes them arrive sooner.
        state.bus.flush().await;
        tracing::info!("ingest stopped");
        Ok(())
    }
}

/// `ingest relay`: publishes every due outbox row, then exits. For a Cloud Run job on a
/// schedule (or an operator) when no always-on process runs the relay loop. Fails when some
/// rows could not be published; they stay in the outbox for the next run.
pub async fn relay_job(env: &shared::config::Env) -> anyhow::Result<usize> {
    let db = shared::db::DbConfig::from_env(env)?;
    let bus = shared::bus::BusConfig::from_env(env)?;
    let relay = shared::outbox::RelayConfig::from_env(env)?;
    let pool = shared::db::connect(&db)
        .await
        .context("cannot prepare the database")?;
    let bus = Bus::connect(&bus)
        .await
        .context("cannot set up Pub/Sub clients")?;
    let outbox = Outbox::new(pool, bus.clone(), relay);
    let mut published = 0;
    loop {
        let sweep = outbox.relay_once().await?;
        published += sweep.published;
        if sweep.failed > 0 {
            anyhow::bail!("{} outbox messages could not be published", sweep.failed);
        }
        if sweep.published == 0 {
            break;
        }
    }
    bus.flush().await;
    tracing::info!(
        published,
        backlog = outbox.backlog().await?,
        "relay run finished"
    );
    Ok(published)
}

async fn prune_limits(limits: Limits, stop: tokio_util::sync::CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => limits.prune(),
            () = stop.cancelled() => return,
        }
    }
}

//! What every pipeline stage has in common: a Cloud Run service that receives one topic's
//! messages by Pub/Sub push, moves the submission one guarded transition on, and announces
//! the result on the next topic through the outbox (embed: `submission-ingested` ->
//! `submission-embedded`; moderate: `submission-embedded` -> `submission-ready`).
//!
//! # Deadline chain
//!
//! A delivery's work is bounded by `HANDLER_DEADLINE` (default 50 s), which must stay below
//! the Cloud Run request timeout (60 s in terraform/), which must stay below the push
//! subscription's ack deadline (90 s): the handler then always answers before Cloud Run
//! cuts the request, and Cloud Run always answers before Pub/Sub gives up on the delivery,
//! so no delivery is redelivered while its first attempt is still running.

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use sqlx::PgPool;
use tracing::Instrument;

use crate::bus::BusConfig;
use crate::config::{ConfigError, Env};
use crate::db::DbConfig;
use crate::message::{Event, SubmissionEvent};
use crate::outbox::{Outbox, RelayConfig};
use crate::push::{EnvelopeError, PushAuth, PushMessage, PushOutcome};
use crate::submission::{Status, SubmissionId, SubmissionRow, repository, transition};

/// `HANDLER_DEADLINE`'s default; see the module docs for the chain it belongs to.
pub const DEFAULT_HANDLER_DEADLINE: Duration = Duration::from_secs(50);

/// The configuration every stage reads the same way.
#[derive(Debug)]
pub struct StageConfig {
    pub host: IpAddr,
    pub port: u16,
    pub db: DbConfig,
    pub bus: BusConfig,
    pub push_auth: PushAuth,
    /// The topic this stage announces its results on.
    pub next_topic: String,
    /// Bound on one delivery's work.
    pub deadline: Duration,
    pub outbox: RelayConfig,
}

impl StageConfig {
    /// Reads `HOST`, `PORT`, the database and bus variables, `PUSH_AUTH` and friends,
    /// `HANDLER_DEADLINE`, `OUTBOX_GRACE`, and the topic of the `next` event.
    pub fn from_env(env: &Env, next: Event) -> Result<Self, ConfigError> {
        let relay = RelayConfig::default();
        let deadline = env.duration_or("HANDLER_DEADLINE", DEFAULT_HANDLER_DEADLINE)?;
        if deadline.is_zero() || deadline >= Duration::from_secs(600) {
            return Err(ConfigError::invalid(
                "HANDLER_DEADLINE",
                env.raw("HANDLER_DEADLINE").unwrap_or_default(),
                "must be above 0 and below the subscription's ack deadline (at most 600s)",
            ));
        }
        Ok(StageConfig {
            host: env.or("HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: env.or("PORT", 8080)?,
            db: DbConfig::from_env(env)?,
            bus: BusConfig::from_env(env)?,
            push_auth: PushAuth::from_env(env)?,
            next_topic: next.topic(env)?,
            deadline,
            outbox: RelayConfig {
                grace: env.duration_or("OUTBOX_GRACE", relay.grace)?,
                ..relay
            },
        })
    }
}

/// What every stage's handlers work with: the database and the outbox to the next topic.
#[derive(Clone)]
pub struct Stage {
    pub pool: PgPool,
    pub outbox: Outbox,
}

impl StageConfig {
    /// Connects to the database (migrating) and the bus, and binds the port.
    pub async fn connect(&self) -> anyhow::Result<(Stage, tokio::net::TcpListener)> {
        let (pool, bus) = crate::process::connect(&self.db, &self.bus, &[&self.next_topic]).await?;
        let stage = Stage {
            outbox: Outbox::new(pool.clone(), bus, self.outbox.clone()),
            pool,
        };
        Ok((stage, crate::process::bind(self.host, self.port).await?))
    }
}

/// The routes every stage serves: `GET /healthz` and `POST /push` (Pub/Sub's endpoint).
pub fn routes<S: Clone + Send + Sync + 'static>(
    push: axum::routing::MethodRouter<S>,
) -> axum::Router<S> {
    axum::Router::new()
        .route("/healthz", axum::routing::get(crate::http::healthz))
        .route("/push", push)
}

/// Runs `work` on one push delivery: an unusable envelope or a message that is not a
/// submission event is acknowledged as a permanent failure (it can never succeed), and work
/// that overruns `deadline` answers `Retry` so Pub/Sub redelivers it.
///
/// The work runs in a task of its own: neither the deadline nor a push connection that
/// closes early can drop it half-way through a transaction (whose pooled connection would
/// go back still inside it). Work past the deadline finishes in the background; the
/// redelivery finds it done.
pub async fn deliver<F, Fut>(
    delivery: Result<PushMessage, EnvelopeError>,
    expected: Event,
    deadline: Duration,
    work: F,
) -> PushOutcome
where
    F: FnOnce(SubmissionEvent) -> Fut,
    Fut: Future<Output = PushOutcome> + Send + 'static,
{
    let msg = match delivery {
        Ok(msg) => msg,
        Err(e) => return e.into(),
    };
    let event = match SubmissionEvent::decode(&msg.data) {
        Ok(ev) if ev.event == expected => ev,
        Ok(ev) => {
            return PushOutcome::PermanentFailure(format!(
                "message {} is {}, this stage takes {}",
                msg.message_id,
                ev.event.as_str(),
                expected.as_str()
            ));
        }
        Err(e) => {
            return PushOutcome::PermanentFailure(format!("message {}: {e}", msg.message_id));
        }
    };
    let span = tracing::info_span!("stage", submission_id = %event.submission_id);
    let task = tokio::spawn(work(event).instrument(span));
    match tokio::time::timeout(deadline, task).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => PushOutcome::Retry(format!("handler task failed: {e}")),
        Err(_) => PushOutcome::Retry(format!("handler deadline of {deadline:?} passed")),
    }
}

/// Loads the submission an event names, as the first step of every stage: `Err` carries
/// the outcome to answer when there is nothing to do (unknown id, already past `expected`,
/// database down).
pub async fn load_expecting(
    pool: &PgPool,
    id: SubmissionId,
    expected: Status,
) -> Result<SubmissionRow, PushOutcome> {
    match repository::load(pool, id).await {
        Ok(Some(row)) if row.status == expected => Ok(row),
        Ok(Some(_)) => Err(PushOutcome::AlreadyDone),
        Ok(None) => Err(PushOutcome::PermanentFailure(format!(
            "unknown submission {id}"
        ))),
        Err(e) => Err(PushOutcome::Retry(format!("database: {e}"))),
    }
}

/// Records that the submission can never get past this stage and acknowledges the message.
pub async fn fail(pool: &PgPool, id: SubmissionId, from: Status, reason: &str) -> PushOutcome {
    match transition(pool, id, from, Status::Failed, Some(reason)).await {
        Ok(_) => PushOutcome::PermanentFailure(format!("{id}: {reason}")),
        Err(e) => PushOutcome::Retry(format!("database: {e}")),
    }
}

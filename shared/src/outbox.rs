//! Transactional outbox: "202 means the message will follow", even if Pub/Sub is down.
//!
//! 1. [`Outbox::enqueue`] writes the message in the same transaction as the state it announces.
//! 2. After the commit, the request publishes it right away ([`Outbox::publish`]) and hands
//!    the row id to a deleter that removes published rows in batches.
//! 3. The [`Outbox::relay_once`] sweeper publishes whatever a crash or an outage left
//!    behind. Rows become due only after a grace period, so the sweeper does not race the
//!    request that is still publishing its own message; it claims rows with
//!    `FOR UPDATE SKIP LOCKED`, so several sweepers may run at once.
//!
//! A crash between publish and delete means a second publish of the same message: the
//! consumer drops it by submission id (at-least-once, never lost).
//!
//! On Cloud Run the request-billed services publish in the request; the relay runs where
//! CPU is always allocated (host-streamer, or the ingest relay loop when enabled).

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc;

use crate::bus::{Bus, BusError, OutgoingMessage};
use crate::message::SubmissionEvent;
use crate::retry::delay_for_attempt;

/// A message written to the outbox and not yet known to be published.
#[derive(Debug, Clone)]
pub struct PendingMessage {
    pub id: i64,
    pub topic: String,
    pub payload: serde_json::Value,
    pub attributes: BTreeMap<String, String>,
}

impl PendingMessage {
    fn outgoing(&self) -> OutgoingMessage {
        OutgoingMessage {
            data: serde_json::to_vec(&self.payload)
                .expect("json values serialise")
                .into(),
            attributes: self.attributes.clone(),
            ordering_key: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// How long after enqueueing a row becomes due for the relay.
    pub grace: Duration,
    /// How often the relay loop looks for due rows.
    pub interval: Duration,
    /// Rows claimed per sweep.
    pub batch: i64,
    /// Backoff of a row whose publish failed: base and cap.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            grace: Duration::from_secs(10),
            interval: Duration::from_secs(1),
            batch: 500,
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
        }
    }
}

impl RelayConfig {
    /// `OUTBOX_GRACE`, `OUTBOX_RELAY_INTERVAL`.
    pub fn from_env(env: &crate::config::Env) -> Result<Self, crate::config::ConfigError> {
        let d = RelayConfig::default();
        Ok(RelayConfig {
            grace: env.duration_or("OUTBOX_GRACE", d.grace)?,
            interval: env.duration_or("OUTBOX_RELAY_INTERVAL", d.interval)?,
            ..d
        })
    }
}

/// Publishes outbox rows and deletes them once published.
#[derive(Clone)]
pub struct Outbox {
    pool: PgPool,
    bus: Bus,
    config: RelayConfig,
    published: mpsc::UnboundedSender<i64>,
}

/// What one relay sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub published: usize,
    pub failed: usize,
}

impl Outbox {
    /// Needs a Tokio runtime: spawns the batch deleter, which lives as long as any clone.
    pub fn new(pool: PgPool, bus: Bus, config: RelayConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(delete_published(pool.clone(), rx));
        Outbox {
            pool,
            bus,
            config,
            published: tx,
        }
    }

    /// Writes a message inside the caller's transaction. It becomes due for the relay
    /// after the configured grace; until then only the writer publishes it.
    pub async fn enqueue(
        &self,
        tx: &mut PgConnection,
        topic: &str,
        payload: serde_json::Value,
        attributes: BTreeMap<String, String>,
    ) -> Result<PendingMessage, sqlx::Error> {
        let attrs = serde_json::to_value(&attributes).expect("string maps serialise");
        let id = sqlx::query_scalar!(
            "INSERT INTO outbox (topic, payload, attributes, next_attempt_at) \
             VALUES ($1, $2, $3, now() + make_interval(secs => $4)) RETURNING id",
            topic,
            &payload,
            attrs,
            self.config.grace.as_secs_f64(),
        )
        .fetch_one(&mut *tx)
        .await?;
        Ok(PendingMessage {
            id,
            topic: topic.to_owned(),
            payload,
            attributes,
        })
    }

    /// [`Outbox::enqueue`] for a pipeline event.
    pub async fn enqueue_event(
        &self,
        tx: &mut PgConnection,
        topic: &str,
        event: &SubmissionEvent,
    ) -> Result<PendingMessage, sqlx::Error> {
        self.enqueue(tx, topic, event.to_json(), event.attributes())
            .await
    }

    /// Publishes a committed message now. On failure the row stays and the relay
    /// publishes it later; the caller's effect is durable either way.
    pub async fn publish(&self, msg: &PendingMessage) -> Result<(), BusError> {
        self.bus.publish(&msg.topic, msg.outgoing()).await?;
        // If the deleter is gone (shutdown) the row is re-published by a later sweep:
        // a duplicate, never a loss.
        let _ = self.published.send(msg.id);
        Ok(())
    }

    /// Publishes a committed message now, or leaves it to the relay if Pub/Sub is not
    /// answering: what a request does right after its commit.
    pub async fn publish_or_leave(&self, msg: &PendingMessage) {
        if let Err(e) = self.publish(msg).await {
            tracing::warn!(error = %e, topic = %msg.topic, "publish failed; left to the outbox relay");
        }
    }

    /// One sweep: claims due rows, publishes them concurrently, deletes the published ones
    /// and reschedules the failures with backoff.
    pub async fn relay_once(&self) -> Result<SweepReport, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let rows = sqlx::query!(
            "SELECT id, topic, payload, attributes, attempts FROM outbox \
             WHERE next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $1 \
             FOR UPDATE SKIP LOCKED",
            self.config.batch,
        )
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(SweepReport::default());
        }
        let pending: Vec<(PendingMessage, i32)> = rows
            .into_iter()
            .map(|row| {
                let message = PendingMessage {
                    id: row.id,
                    topic: row.topic,
                    payload: row.payload,
                    attributes: serde_json::from_value(row.attributes).unwrap_or_default(),
                };
                (message, row.attempts)
            })
            .collect();
        let results = futures::future::join_all(
            pending
                .iter()
                .map(|(m, _)| self.bus.publish(&m.topic, m.outgoing())),
        )
        .await;

        let mut done = Vec::new();
        let mut report = SweepReport::default();
        for ((msg, attempts), result) in pending.iter().zip(results) {
            match result {
                Ok(_) => done.push(msg.id),
                Err(e) => {
                    report.failed += 1;
                    let attempt = (*attempts as u32).saturating_add(1);
                    let delay =
                        delay_for_attempt(attempt, self.config.retry_base, self.config.retry_max);
                    sqlx::query!(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = $2, \
                         next_attempt_at = now() + make_interval(secs => $3) WHERE id = $1",
                        msg.id,
                        e.to_string(),
                        delay.as_secs_f64(),
                    )
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        report.published = done.len();
        sqlx::query!("DELETE FROM outbox WHERE id = ANY($1)", &done[..])
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        if report.failed > 0 {
            tracing::warn!(
                published = report.published,
                failed = report.failed,
                "outbox relay: some messages could not be published; will retry"
            );
        } else {
            tracing::info!(
                published = report.published,
                "outbox relay: backlog published"
            );
        }
        Ok(report)
    }

    /// Runs sweeps every `interval` (back to back while a backlog drains) until `stop`.
    pub async fn run_relay(self, stop: tokio_util::sync::CancellationToken) {
        loop {
            let backlog = match self.relay_once().await {
                Ok(r) => r.published > 0 && r.failed == 0,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay sweep failed");
                    false
                }
            };
            if backlog {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.interval) => {}
                () = stop.cancelled() => return,
            }
        }
    }

    /// Rows not yet published (for `/readyz` detail, metrics and tests).
    pub async fn backlog(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar!(r#"SELECT count(*) AS "count!" FROM outbox"#)
            .fetch_one(&self.pool)
            .await
    }
}

/// Deletes published rows in batches: whatever accumulated while the previous DELETE ran
/// goes into the next one, so the cost per message falls as load rises.
async fn delete_published(pool: PgPool, mut rx: mpsc::UnboundedReceiver<i64>) {
    let mut batch = Vec::with_capacity(1024);
    while rx.recv_many(&mut batch, 4096).await > 0 {
        let result = sqlx::query!("DELETE FROM outbox WHERE id = ANY($1)", &batch[..])
            .execute(&pool)
            .await;
        if let Err(e) = result {
            // The relay will publish these rows again; consumers drop the duplicates.
            tracing::warn!(error = %e, rows = batch.len(), "could not delete published outbox rows");
        }
        batch.clear();
    }
}

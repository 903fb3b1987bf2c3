//! Completeness without trusting one component's retries: the sweeper re-announces
//! submissions stuck between stages.
//!
//! The outbox guarantees a message is published; once it is, its row is gone, and the
//! submission moves on only if Pub/Sub delivers it until a stage takes it. Production Pub/Sub
//! redelivers; the emulator, a misconfigured subscription or a dead-letter topic nobody
//! replays may not. So, every [`SweeperConfig::interval`]:
//!
//! 1. Claim submissions in `ingested`, `embedded` or `approved` whose status is older than
//!    [`SweeperConfig::after`] (and that were not announced again within that time), oldest
//!    first, `FOR UPDATE SKIP LOCKED` (two sweepers never claim one row), stamping
//!    `announced_at`.
//! 2. In the same transaction, write the message the stage before would have sent
//!    (`ingested` → `submission-ingested`, `embedded` → `submission-embedded`, `approved` →
//!    `submission-ready`) to the outbox; publish after the commit, or leave it to the relay.
//!    A crash in between loses nothing.
//! 3. Downstream it is a redelivery: every stage drops a message about work already done.
//!
//! Each sweep that found something is logged with its count; the caller counts the total.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, Env};
use crate::message::{Event, SubmissionEvent};
use crate::outbox::Outbox;
use crate::submission::Status;
use crate::submission::repository::{self, Stuck};

#[derive(Debug, Clone)]
pub struct SweeperConfig {
    /// `SWEEP_AFTER`: how long a submission may wait between stages before it is announced
    /// again (and between two announcements).
    pub after: Duration,
    /// `SWEEP_INTERVAL`: how often to look.
    pub interval: Duration,
    /// Submissions claimed per sweep.
    pub batch: i64,
    /// The topic of each event (the services' `TOPIC_SUBMISSION_*`).
    pub ingested_topic: String,
    pub embedded_topic: String,
    pub ready_topic: String,
}

impl SweeperConfig {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let after = env.duration_or("SWEEP_AFTER", Duration::from_secs(300))?;
        if after.is_zero() {
            return Err(ConfigError::invalid("SWEEP_AFTER", "0", "must be positive"));
        }
        Ok(SweeperConfig {
            after,
            interval: env.duration_or("SWEEP_INTERVAL", Duration::from_secs(30))?,
            batch: 500,
            ingested_topic: Event::Ingested.topic(env)?,
            embedded_topic: Event::Embedded.topic(env)?,
            ready_topic: Event::Ready.topic(env)?,
        })
    }

    /// The event announcing a submission in `status`, and its topic.
    fn announcement(&self, status: Status) -> Option<(Event, &str)> {
        match status {
            Status::Ingested => Some((Event::Ingested, &self.ingested_topic)),
            Status::Embedded => Some((Event::Embedded, &self.embedded_topic)),
            Status::Approved => Some((Event::Ready, &self.ready_topic)),
            _ => None,
        }
    }
}

pub struct Sweeper {
    pool: PgPool,
    outbox: Outbox,
    config: SweeperConfig,
}

impl Sweeper {
    pub fn new(pool: PgPool, outbox: Outbox, config: SweeperConfig) -> Self {
        Sweeper {
            pool,
            outbox,
            config,
        }
    }

    /// One sweep: the submissions it announced again.
    pub async fn sweep_once(&self) -> Result<Vec<Stuck>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let stuck = repository::claim_stuck(&mut tx, self.config.after, self.config.batch).await?;
        let mut pending = Vec::with_capacity(stuck.len());
        for s in &stuck {
            let Some((event, topic)) = self.config.announcement(s.status) else {
                continue;
            };
            let message = SubmissionEvent::new(event, s.id, &s.channel, s.kind, None);
            pending.push(self.outbox.enqueue_event(&mut tx, topic, &message).await?);
        }
        tx.commit().await?;
        for message in &pending {
            self.outbox.publish_or_leave(message).await;
        }
        if !stuck.is_empty() {
            tracing::warn!(
                submissions = stuck.len(),
                after = ?self.config.after,
                "re-announced submissions stuck between stages"
            );
        }
        Ok(stuck)
    }

    /// Sweeps every interval until `stop`, calling `counted` with each sweep's count.
    pub async fn run(self, stop: CancellationToken, counted: impl Fn(u64) + Send) {
        loop {
            match self.sweep_once().await {
                Ok(stuck) => counted(stuck.len() as u64),
                Err(e) => tracing::warn!(error = %e, "sweep for stuck submissions failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.interval) => {}
                () = stop.cancelled() => return,
            }
        }
    }
}

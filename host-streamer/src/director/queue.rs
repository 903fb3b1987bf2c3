//! The play queue, kept in Postgres. A `submission-ready` message is acknowledged only
//! once its submission is durably claimed (`approved -> queued`); the director then takes
//! queued submissions oldest first (`queued -> on_air`, `FOR UPDATE SKIP LOCKED`) and marks
//! them `aired` once played. A submission left `on_air` by a crash is queued again at
//! start-up and played from the beginning.

use shared::message::{Event, SubmissionEvent};
pub use shared::submission::repository::Queued;
use shared::submission::{Status, SubmissionId, Transition, repository, transition};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// What a ready message turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This delivery queued it.
    Queued,
    /// Already queued, on air or aired (a redelivery): nothing to do.
    AlreadyClaimed,
    /// Not (or no longer) playable, e.g. failed or rejected after the message was sent.
    NotPlayable,
    /// No such submission on this channel.
    Unknown,
}

pub async fn claim(pool: &PgPool, id: SubmissionId, channel: &str) -> Result<Claim, sqlx::Error> {
    let Some(status) = repository::status_on_channel(pool, id, channel).await? else {
        return Ok(Claim::Unknown);
    };
    Ok(match status {
        Status::Approved => {
            match transition(pool, id, Status::Approved, Status::Queued, None).await? {
                Transition::Applied => Claim::Queued,
                // Claimed by a concurrent delivery between the read and the update.
                Transition::NotApplicable => Claim::AlreadyClaimed,
            }
        }
        Status::Queued | Status::OnAir | Status::Aired => Claim::AlreadyClaimed,
        _ => Claim::NotPlayable,
    })
}

pub async fn mark_aired(pool: &PgPool, id: SubmissionId) -> Result<Transition, sqlx::Error> {
    transition(pool, id, Status::OnAir, Status::Aired, None).await
}

/// Pulls `submission-ready` until `stop`, claiming each submission before acknowledging
/// its message. Database trouble nacks (Pub/Sub redelivers); messages that can never be
/// claimed are acknowledged and logged. A broken stream is reopened after a pause.
/// Messages still held at the stop are nacked.
pub async fn pull_ready(
    bus: shared::bus::Bus,
    subscription: String,
    pool: PgPool,
    channel: String,
    stop: CancellationToken,
    claimed: Arc<Notify>,
) {
    const PAUSE: Duration = Duration::from_secs(5);
    while !stop.is_cancelled() {
        let mut stream = match bus.subscribe(&subscription).await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::error!(%subscription, error = %e, "cannot open the ready subscription");
                let _ = tokio::time::timeout(PAUSE, stop.cancelled()).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => None,
                next = stream.next() => next,
            };
            match next {
                None => {
                    if !stop.is_cancelled() {
                        tracing::warn!(%subscription, "streaming pull ended; reopening");
                        let _ = tokio::time::timeout(PAUSE, stop.cancelled()).await;
                    }
                    break;
                }
                Some(Ok(message)) => {
                    if handle_ready(message, &pool, &channel).await {
                        claimed.notify_one();
                    }
                }
                Some(Err(e)) => {
                    tracing::error!(%subscription, error = %e, "streaming pull failed; reopening");
                    let _ = tokio::time::timeout(PAUSE, stop.cancelled()).await;
                    break;
                }
            }
        }
        stream.shutdown().await;
    }
}

/// One ready message: claim, then ack; `true` if a submission was queued.
pub async fn handle_ready(
    message: shared::bus::ReceivedMessage,
    pool: &PgPool,
    channel: &str,
) -> bool {
    let event = match SubmissionEvent::decode(&message.data) {
        Ok(e) if e.event == Event::Ready => e,
        Ok(e) => {
            tracing::warn!(message_id = %message.message_id, event = e.event.as_str(), "not a ready event; acknowledged");
            message.ack();
            return false;
        }
        Err(e) => {
            tracing::error!(message_id = %message.message_id, error = %e, "malformed ready message; acknowledged");
            message.ack();
            return false;
        }
    };
    if event.channel_id != channel {
        tracing::warn!(submission_id = %event.submission_id, channel = %event.channel_id, "ready message for another channel; acknowledged");
        message.ack();
        return false;
    }
    match claim(pool, event.submission_id, channel).await {
        Ok(claim) => {
            tracing::info!(submission_id = %event.submission_id, ?claim, "ready submission claimed");
            message.ack();
            claim == Claim::Queued
        }
        Err(e) => {
            tracing::warn!(submission_id = %event.submission_id, error = %e, "cannot claim now; Pub/Sub will redeliver");
            message.nack();
            false
        }
    }
}

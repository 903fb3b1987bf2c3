//! Recording a moderation decision, whoever made it: the guarded transition, the
//! `moderation_result` row (who or what decided, on which scores) and, for an approval, the
//! `submission-ready` message, all in one transaction.

use models::moderation::Decision;
use serde_json::Value;
use shared::message::SubmissionEvent;
use shared::submission::{Status, SubmissionId, Transition, transition};

use crate::state::AppState;

/// A decision about one submission.
#[derive(Debug, Clone)]
pub struct DecisionRecord {
    pub decision: Decision,
    /// `openai:omni-moderation-latest`, `local:rules+exemplars`, `operator:<email>`.
    pub decided_by: String,
    pub flagged: bool,
    /// The provider's per-category booleans and scores (for an operator: those they saw).
    pub categories: Value,
    pub scores: Value,
    /// The categories whose thresholds decided it.
    pub triggered: Vec<String>,
    pub note: Option<String>,
}

pub fn status_of(decision: Decision) -> Status {
    match decision {
        Decision::Approved => Status::Approved,
        Decision::Held => Status::Held,
        Decision::Rejected => Status::Rejected,
    }
}

/// Applies `record` to a submission in status `from`. `NotApplicable` when it is no longer
/// there (a redelivery, or another operator was first): nothing is written.
///
/// An approval publishes `ready` after the commit, or leaves it to the outbox relay.
pub async fn apply(
    state: &AppState,
    id: SubmissionId,
    from: Status,
    record: &DecisionRecord,
    ready: SubmissionEvent,
) -> Result<Transition, sqlx::Error> {
    let mut tx = state.stage.pool.begin().await?;
    let to = status_of(record.decision);
    if transition(&mut *tx, id, from, to, None).await? == Transition::NotApplicable {
        return Ok(Transition::NotApplicable);
    }
    sqlx::query!(
        "INSERT INTO moderation_result \
         (submission_id, outcome, decided_by, flagged, categories, scores, triggered, note) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        id.0,
        record.decision.as_str(),
        record.decided_by,
        record.flagged,
        record.categories,
        record.scores,
        &record.triggered[..],
        record.note.as_deref(),
    )
    .execute(&mut *tx)
    .await?;
    let ready = if record.decision == Decision::Approved {
        Some(
            state
                .stage
                .outbox
                .enqueue_event(&mut tx, &state.config.stage.next_topic, &ready)
                .await?,
        )
    } else {
        None
    };
    tx.commit().await?;
    tracing::info!(
        submission_id = %id,
        decision = %record.decision,
        decided_by = %record.decided_by,
        triggered = ?record.triggered,
        "moderation decision"
    );
    if let Some(msg) = ready {
        state.stage.outbox.publish_or_leave(&msg).await;
    }
    Ok(Transition::Applied)
}

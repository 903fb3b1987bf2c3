//! One push delivery of `submission-ingested`: transcript (audio), embedding, near-duplicate
//! check, then `ingested -> embedded` (and `-> duplicate`) with the `submission-embedded`
//! message in the same transaction. Redeliveries find the transition done and change
//! nothing, so the effect is exactly once under at-least-once delivery.

use axum::extract::State;
use pgvector::Vector;
use shared::message::{Event, SubmissionEvent};
use shared::push::{PushDelivery, PushOutcome};
use shared::submission::{Status, SubmissionId, SubmissionKind, Transition, transition};
use sqlx::Row;

use crate::duplicates::{self, Space};
use crate::state::AppState;

pub async fn push(
    State(state): State<AppState>,
    PushDelivery(delivery): PushDelivery,
) -> PushOutcome {
    let msg = match delivery {
        Ok(msg) => msg,
        Err(e) => return e.into(),
    };
    let event = match SubmissionEvent::decode(&msg.data) {
        Ok(ev) => ev,
        Err(e) => {
            return PushOutcome::PermanentFailure(format!("message {}: {e}", msg.message_id));
        }
    };
    match tokio::time::timeout(state.config.deadline, embed(&state, &event)).await {
        Ok(outcome) => outcome,
        Err(_) => PushOutcome::Retry("handler deadline passed".into()),
    }
}

struct Submission {
    status: String,
    kind: SubmissionKind,
    text: Option<String>,
    transcript: Option<String>,
    channel: String,
}

async fn load(state: &AppState, id: SubmissionId) -> Result<Option<Submission>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT status, kind, text, transcript, channel_id FROM submission WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?;
    row.map(|r| {
        Ok(Submission {
            status: r.try_get("status")?,
            kind: if r.try_get::<&str, _>("kind")? == "audio" {
                SubmissionKind::Audio
            } else {
                SubmissionKind::Text
            },
            text: r.try_get("text")?,
            transcript: r.try_get("transcript")?,
            channel: r.try_get("channel_id")?,
        })
    })
    .transpose()
}

async fn embed(state: &AppState, event: &SubmissionEvent) -> PushOutcome {
    let id = event.submission_id;
    let sub = match load(state, id).await {
        Ok(Some(s)) => s,
        Ok(None) => return PushOutcome::PermanentFailure(format!("unknown submission {id}")),
        Err(e) => return PushOutcome::Retry(format!("database: {e}")),
    };
    if sub.status != Status::Ingested.as_str() {
        return PushOutcome::AlreadyDone;
    }
    let text = match (sub.kind, &sub.text, &sub.transcript) {
        (SubmissionKind::Text, Some(t), _) => t.clone(),
        (SubmissionKind::Audio, _, Some(t)) => t.clone(),
        // Transcription is wired in with the transcriber work; until then audio cannot be
        // embedded and is recorded as failed rather than retried forever.
        _ => return fail(state, id, "audio transcription is not available").await,
    };
    let vector = match state.embedder.embed(std::slice::from_ref(&text)).await {
        Ok(mut v) if v.len() == 1 => Vector::from(v.remove(0)),
        Ok(_) => return PushOutcome::Retry("embedder returned no vector".into()),
        Err(e) if e.is_transient() => return PushOutcome::Retry(e.to_string()),
        Err(e) => return fail(state, id, &e.to_string()).await,
    };
    match commit(state, id, &sub.channel, event, &vector).await {
        Ok(outcome) => outcome,
        Err(e) => PushOutcome::Retry(format!("database: {e}")),
    }
}

async fn commit(
    state: &AppState,
    id: SubmissionId,
    channel: &str,
    event: &SubmissionEvent,
    vector: &Vector,
) -> Result<PushOutcome, sqlx::Error> {
    let model = state.embedder.model();
    let space = Space::for_dims(model.dims).expect("configured models have a table");
    let mut tx = state.pool.begin().await?;
    // Serialise embeds per channel so two near-duplicates arriving together still see each
    // other; the transaction is a few milliseconds long.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('embed:' || $1))")
        .bind(channel)
        .execute(&mut *tx)
        .await?;
    if transition(&mut *tx, id, Status::Ingested, Status::Embedded, None).await?
        == Transition::NotApplicable
    {
        return Ok(PushOutcome::AlreadyDone);
    }
    let nearest = duplicates::nearest(
        &mut tx,
        space,
        channel,
        id,
        vector,
        state.config.duplicates.window,
    )
    .await?;
    duplicates::store(&mut tx, space, id, channel, model.name, vector).await?;
    if let Some((original, similarity)) =
        nearest.filter(|(_, sim)| *sim >= state.config.duplicates.min_similarity)
    {
        transition(&mut *tx, id, Status::Embedded, Status::Duplicate, None).await?;
        sqlx::query("UPDATE submission SET duplicate_of = $2 WHERE id = $1")
            .bind(id)
            .bind(original)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(submission_id = %id, %original, similarity, "near-duplicate");
        return Ok(PushOutcome::Done);
    }
    let next = SubmissionEvent::new(
        Event::Embedded,
        id,
        channel,
        event.kind,
        event
            .traceparent
            .as_deref()
            .and_then(shared::telemetry::TraceContext::from_traceparent)
            .as_ref(),
    );
    let pending = state
        .outbox
        .enqueue(
            &mut tx,
            &state.config.topic_embedded,
            next.to_json(),
            next.attributes(),
        )
        .await?;
    tx.commit().await?;
    state.outbox.publish_or_leave(&pending).await;
    Ok(PushOutcome::Done)
}

/// Records a permanent failure and acknowledges.
async fn fail(state: &AppState, id: SubmissionId, reason: &str) -> PushOutcome {
    match transition(
        &state.pool,
        id,
        Status::Ingested,
        Status::Failed,
        Some(reason),
    )
    .await
    {
        Ok(_) => PushOutcome::PermanentFailure(format!("{id}: {reason}")),
        Err(e) => PushOutcome::Retry(format!("database: {e}")),
    }
}

//! One push delivery of `submission-ingested`: transcript (audio), embedding, near-duplicate
//! check, then `ingested -> embedded` (and `-> duplicate`) with the `submission-embedded`
//! message in the same transaction. Redeliveries find the transition done and change
//! nothing, so the effect is exactly once under at-least-once delivery.

use axum::extract::State;
use models::ProviderError;
use pgvector::Vector;
use shared::message::{Event, SubmissionEvent};
use shared::pipeline;
use shared::push::{PushDelivery, PushOutcome};
use shared::submission::{
    Status, SubmissionId, SubmissionKind, SubmissionRow, Transition, repository, transition,
};

use crate::duplicates;
use crate::state::AppState;
use models::embedding::Space;

pub async fn push(
    State(state): State<AppState>,
    PushDelivery(delivery): PushDelivery,
) -> PushOutcome {
    let deadline = state.config.stage.deadline;
    pipeline::deliver(
        delivery,
        Event::Ingested,
        deadline,
        move |event| async move { embed(&state, event).await },
    )
    .await
}

async fn embed(state: &AppState, event: SubmissionEvent) -> PushOutcome {
    let id = event.submission_id;
    let mut sub = match pipeline::load_expecting(&state.stage.pool, id, Status::Ingested).await {
        Ok(sub) => sub,
        Err(outcome) => return outcome,
    };
    if sub.kind == SubmissionKind::Audio && sub.transcript.is_none() {
        match transcribe(state, &sub).await {
            Ok(text) => sub.transcript = Some(text),
            Err(outcome) => return outcome,
        }
    }
    let Some(text) = sub.words().map(str::to_owned) else {
        return fail(state, id, "the submission has no text").await;
    };
    if text.trim().is_empty() {
        return fail(state, id, "no speech was recognised in the recording").await;
    }
    let vector = match state.embedder.embed(std::slice::from_ref(&text)).await {
        Ok(mut v) if v.len() == 1 => Vector::from(v.remove(0)),
        Ok(_) => return PushOutcome::Retry("embedder returned no vector".into()),
        Err(e) => return provider_failure(state, id, e).await,
    };
    match commit(state, &sub, &event, &vector).await {
        Ok(outcome) => outcome,
        Err(e) => PushOutcome::Retry(format!("database: {e}")),
    }
}

/// Fetches the recording and transcribes it, storing the transcript at once so that a
/// retry of a later step (embedding provider down) does not pay for it again.
async fn transcribe(state: &AppState, sub: &SubmissionRow) -> Result<String, PushOutcome> {
    let id = sub.id;
    let uri = sub.audio_path.as_deref().unwrap_or_default();
    let Some(key) = state.store.key_of(uri) else {
        return Err(fail(
            state,
            id,
            &format!("recording {uri} is not in the uploads store"),
        )
        .await);
    };
    let audio = match state.store.get(&key).await {
        Ok(bytes) => bytes,
        Err(e) if e.is_transient() => return Err(PushOutcome::Retry(format!("store: {e}"))),
        Err(e) => return Err(fail(state, id, &format!("recording unreadable: {e}")).await),
    };
    let mime = sub
        .audio_mime
        .as_deref()
        .unwrap_or("application/octet-stream");
    let file_name = key.rsplit('/').next().unwrap_or(&key);
    let transcript = match state.transcriber.transcribe(audio, mime, file_name).await {
        Ok(t) => t,
        Err(e) => return Err(provider_failure(state, id, e).await),
    };
    let stored = repository::store_transcript(
        &state.stage.pool,
        id,
        &transcript.text,
        state.transcriber.name(),
    )
    .await;
    match stored {
        Ok(_) => {
            tracing::info!(submission_id = %id, chars = transcript.text.len(), "transcribed");
            Ok(transcript.text)
        }
        Err(e) => Err(PushOutcome::Retry(format!("database: {e}"))),
    }
}

async fn commit(
    state: &AppState,
    sub: &SubmissionRow,
    event: &SubmissionEvent,
    vector: &Vector,
) -> Result<PushOutcome, sqlx::Error> {
    let id = sub.id;
    let channel = sub.channel.as_str();
    let model = state.embedder.model();
    let space = Space::for_dims(model.dims).expect("configured models have a table");
    let mut tx = state.stage.pool.begin().await?;
    // Serialise embeds per channel so two near-duplicates arriving together still see each
    // other; the transaction is a few milliseconds long.
    sqlx::query!(
        r#"SELECT 1 AS "locked!" FROM pg_advisory_xact_lock(hashtext('embed:' || $1))"#,
        channel,
    )
    .fetch_one(&mut *tx)
    .await?;
    if transition(&mut *tx, id, Status::Ingested, Status::Embedded, None).await?
        == Transition::NotApplicable
    {
        return Ok(PushOutcome::AlreadyDone);
    }
    let policy = state.config.duplicates;
    let nearest = duplicates::nearest(&mut tx, space, channel, id, vector, policy.window).await?;
    duplicates::store(&mut tx, space, id, channel, model.name, vector).await?;
    if let Some((original, similarity)) = nearest.filter(|(_, s)| *s >= policy.min_similarity) {
        transition(&mut *tx, id, Status::Embedded, Status::Duplicate, None).await?;
        repository::mark_duplicate_of(&mut *tx, id, original).await?;
        tx.commit().await?;
        tracing::info!(submission_id = %id, %original, similarity, "near-duplicate");
        return Ok(PushOutcome::Done);
    }
    let next = event.follow_up(Event::Embedded, sub);
    let pending = state
        .stage
        .outbox
        .enqueue_event(&mut tx, &state.config.stage.next_topic, &next)
        .await?;
    tx.commit().await?;
    state.stage.outbox.publish_or_leave(&pending).await;
    Ok(PushOutcome::Done)
}

/// A provider error: transient ones are retried by Pub/Sub, permanent ones (the content can
/// never be processed) end the submission.
async fn provider_failure(state: &AppState, id: SubmissionId, e: ProviderError) -> PushOutcome {
    if e.is_transient() {
        PushOutcome::Retry(e.to_string())
    } else {
        fail(state, id, &e.to_string()).await
    }
}

async fn fail(state: &AppState, id: SubmissionId, reason: &str) -> PushOutcome {
    pipeline::fail(&state.stage.pool, id, Status::Ingested, reason).await
}

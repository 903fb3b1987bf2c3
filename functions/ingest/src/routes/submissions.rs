//! `POST /v1/submissions` and `GET /v1/submissions/{id}`.
//!
//! A 202 means durable: the submission row and its `submission-ingested` message are
//! committed in one transaction (the outbox), the message is published right after, and the
//! relay publishes it later if Pub/Sub was unreachable. What the body may be is
//! [`crate::payload`]'s; how retries are answered is [`crate::idempotency`]'s.

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use media::probe::AudioInfo;
use serde::Serialize;
use shared::http::RequestContext;
use shared::message::{Event, SubmissionEvent};
use shared::problem::ServerError;
use shared::submission::repository::{self, NewContent, NewSubmission, Summary};
use shared::submission::{Status, SubmissionId, SubmissionKind, SubmissionText};

use crate::error::Error;
use crate::idempotency::{self, Fingerprint};
use crate::identity::Identity;
use crate::payload::{self, Payload};
use crate::rate_limit::Bucket;
use crate::state::AppState;

#[derive(Debug, Serialize)]
pub struct SubmissionView {
    pub id: SubmissionId,
    pub kind: SubmissionKind,
    pub status: Status,
    pub received_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
}

impl From<Summary> for SubmissionView {
    fn from(s: Summary) -> Self {
        SubmissionView {
            id: s.id,
            kind: s.kind,
            status: s.status,
            received_at: s.received_at,
            failure_reason: s.failure_reason,
        }
    }
}

pub async fn create(
    State(state): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    identity: Identity,
    req: Request,
) -> Result<Response, Error> {
    // Per user, only creating submissions counts: polling a submission's status does not.
    state
        .limits
        .check(Bucket::User, identity.user.as_str())
        .map_err(Error::RateLimited)?;
    let key = idempotency::from_headers(req.headers())?;
    let payload = payload::read(req, &state.config.limits).await?;
    let fingerprint = Fingerprint::of(&payload);
    // A keyed retry of an audio upload is answered before the audio is stored again. Text
    // needs no look-up first: the insert finds the earlier submission.
    if let (Some(key), Payload::Audio { .. }) = (&key, &payload)
        && let Some(earlier) =
            idempotency::earlier(&state.pool, &identity.user, key, &fingerprint).await?
    {
        return Ok(accepted(earlier.into(), true));
    }
    let id = SubmissionId::new();
    let stored = store(&state, id, payload).await?;
    // The commit and its message run to their end whatever the client does: a client that
    // hangs up drops this handler, and a transaction dropped half-way would hand its pooled
    // connection, still inside it, to the next request. In a task of its own it cannot be
    // dropped half-way.
    let committed = tokio::spawn({
        let (state, ctx, user, key) = (
            state.clone(),
            ctx.clone(),
            identity.user.clone(),
            key.clone(),
        );
        let request_hash = fingerprint.as_bytes().to_vec();
        async move {
            let trace_id = ctx.trace.trace_id();
            let new = NewSubmission {
                id,
                channel: &state.config.channel_id,
                user: &user,
                content: stored.content(),
                idempotency_key: key.as_ref(),
                request_hash: &request_hash,
                trace_id: &trace_id,
            };
            ingest(&state, &ctx, &new).await
        }
    })
    .await
    .map_err(|e| Error::from(anyhow::anyhow!("the ingest task failed: {e}")))?;
    match committed? {
        Some(view) => Ok(accepted(view, false)),
        // A concurrent request with the same key committed first: answer as it was answered.
        None => {
            let key = key.expect("only keyed inserts can conflict");
            let earlier = idempotency::earlier(&state.pool, &identity.user, &key, &fingerprint)
                .await?
                .ok_or_else(|| Error::from(anyhow::anyhow!("conflicting submission vanished")))?;
            Ok(accepted(earlier.into(), true))
        }
    }
}

pub async fn get(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Json<SubmissionView>, Error> {
    let id = uuid::Uuid::parse_str(&id).map_err(|_| Error::NotFound)?;
    let summary = repository::find_for_user(&state.pool, SubmissionId(id), &identity.user)
        .await?
        .ok_or(Error::NotFound)?;
    Ok(Json(summary.into()))
}

/// The content as it is kept: text as it is, audio in the uploads store.
enum Stored {
    Text(SubmissionText),
    Audio { uri: String, info: AudioInfo },
}

impl Stored {
    fn content(&self) -> NewContent<'_> {
        match self {
            Stored::Text(text) => NewContent::Text(text),
            Stored::Audio { uri, info } => NewContent::Audio {
                path: uri,
                mime: info.format.mime(),
                duration_ms: info.duration.as_millis() as i32,
            },
        }
    }
}

async fn store(state: &AppState, id: SubmissionId, payload: Payload) -> Result<Stored, Error> {
    match payload {
        Payload::Text(text) => Ok(Stored::Text(text)),
        Payload::Audio { bytes, info } => {
            let object = format!(
                "{}/{id}.{}",
                Utc::now().format("%Y/%m/%d"),
                info.format.extension()
            );
            state
                .store
                .put(&object, bytes, info.format.mime())
                .await
                .map_err(|e| {
                    if e.is_transient() {
                        tracing::warn!(error = %e, "upload store unavailable");
                        Error::from(ServerError::Unavailable("audio storage unavailable".into()))
                    } else {
                        Error::from(anyhow::anyhow!("cannot store audio: {e}"))
                    }
                })?;
            Ok(Stored::Audio {
                uri: state.store.uri(&object),
                info,
            })
        }
    }
}

/// Commits the submission with its `submission-ingested` message and publishes it; `None`
/// when the idempotency key was taken meanwhile (nothing is written).
async fn ingest(
    state: &AppState,
    ctx: &RequestContext,
    new: &NewSubmission<'_>,
) -> Result<Option<SubmissionView>, Error> {
    let mut tx = state.pool.begin().await?;
    let Some(received_at) = repository::insert_ingested(&mut tx, new).await? else {
        tx.rollback().await?;
        return Ok(None);
    };
    let kind = new.content.kind();
    let channel = &state.config.channel_id;
    let event = SubmissionEvent::new(Event::Ingested, new.id, channel, kind, Some(&ctx.trace));
    let pending = state
        .outbox
        .enqueue(
            &mut tx,
            &state.config.topic_ingested,
            event.to_json(),
            event.attributes(),
        )
        .await?;
    tx.commit().await?;
    // Durable from here on. Publishing now keeps latency low; if it fails the relay
    // publishes the outbox row later, so the answer is 202 either way.
    state.outbox.publish_or_leave(&pending).await;
    tracing::info!(submission_id = %new.id, kind = kind.as_str(), user = %new.user, "submission ingested");
    Ok(Some(SubmissionView {
        id: new.id,
        kind,
        status: Status::Ingested,
        received_at,
        failure_reason: None,
    }))
}

/// 202 with the submission and its `Location`; a replayed answer says so.
fn accepted(view: SubmissionView, replayed: bool) -> Response {
    let location = format!("/v1/submissions/{}", view.id);
    let mut res = (StatusCode::ACCEPTED, Json(view)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    if replayed {
        res.headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    res
}

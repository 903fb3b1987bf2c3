//! The operator's review queue: `GET /v1/held` lists held submissions (oldest first) with
//! the scores that held them; `POST /v1/held/{id}/decision` approves or rejects one. An
//! approval publishes `submission-ready`; either is recorded with the operator's identity.
//! `POST /v1/submissions/{id}/revoke` rejects what was approved, queued, on air or aired: it
//! is not played if it has not been, and the DJ never quotes it again.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use models::moderation::Decision;
use serde::{Deserialize, Serialize};
use shared::http::RequestContext;
use shared::message::{Event, SubmissionEvent};
use shared::operator::Operator;
use shared::submission::{Status, SubmissionId, SubmissionKind, Transition, repository};

use crate::decision::{self, DecisionRecord};
use crate::error::Error;
use crate::state::AppState;

const MAX_NOTE_CHARS: usize = 1000;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default = "default_limit")]
    limit: i64,
}

fn default_limit() -> i64 {
    50
}

#[derive(Debug, Serialize)]
pub struct HeldSubmission {
    id: SubmissionId,
    channel_id: String,
    kind: SubmissionKind,
    /// The text, or an audio submission's transcript.
    words: Option<String>,
    audio_path: Option<String>,
    held_at: Option<DateTime<Utc>>,
    held_by: Option<String>,
    triggered: Vec<String>,
    scores: serde_json::Value,
}

#[derive(Debug, Serialize)]
pub struct HeldList {
    items: Vec<HeldSubmission>,
}

pub async fn list(
    State(state): State<AppState>,
    _operator: Operator,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<HeldList>, Error> {
    let Query(query) = query.map_err(|e| Error::BadRequest(e.body_text()))?;
    if !(1..=500).contains(&query.limit) {
        return Err(Error::Unprocessable(
            "limit must be between 1 and 500".into(),
        ));
    }
    let items = repository::held(&state.stage.pool, query.limit)
        .await?
        .into_iter()
        .map(|h| HeldSubmission {
            id: h.id,
            channel_id: h.channel_id,
            kind: h.kind,
            words: h.words,
            audio_path: h.audio_path,
            held_at: h.held_at,
            held_by: h.decided_by,
            triggered: h.triggered.unwrap_or_default(),
            scores: h.scores.unwrap_or_default(),
        })
        .collect();
    Ok(Json(HeldList { items }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// `approve` or `reject`.
    decision: String,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct DecisionResponse {
    id: SubmissionId,
    status: &'static str,
    decided_by: String,
}

pub async fn decide(
    State(state): State<AppState>,
    Operator(operator): Operator,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    body: Result<Json<DecisionRequest>, JsonRejection>,
) -> Result<Json<DecisionResponse>, Error> {
    let id = submission_id(&id)?;
    let body = json_body(body)?;
    let decision = match body.decision.as_str() {
        "approve" => Decision::Approved,
        "reject" => Decision::Rejected,
        other => {
            return Err(Error::Unprocessable(format!(
                "decision must be approve or reject, not {other:?}"
            )));
        }
    };
    let note = note(body.note)?;
    let sub = repository::load(&state.stage.pool, id)
        .await?
        .ok_or(Error::NotFound)?;
    // The operator decides on the scores that held it; they are kept with the decision.
    let (flagged, categories, scores) = last_scores(&state, id).await?;
    let record = DecisionRecord {
        decision,
        decided_by: operator.clone(),
        flagged,
        categories,
        scores,
        triggered: Vec::new(),
        note,
    };
    let ready = SubmissionEvent::new(Event::Ready, id, &sub.channel, sub.kind, Some(&ctx.trace));
    match decision::apply(&state, id, Status::Held, &record, ready).await? {
        Transition::Applied => Ok(Json(DecisionResponse {
            id,
            status: decision.as_str(),
            decided_by: operator,
        })),
        Transition::NotApplicable => Err(Error::Conflict(match sub.status {
            Status::Held => format!("submission {id} was decided meanwhile"),
            status => format!("submission {id} is {status}"),
        })),
    }
}

/// A path's submission id; anything else names no submission.
fn submission_id(id: &str) -> Result<SubmissionId, Error> {
    id.parse::<uuid::Uuid>()
        .map(SubmissionId)
        .map_err(|_| Error::NotFound)
}

/// A JSON body: well-formed JSON of the wrong shape is 422, anything else 400.
fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, Error> {
    body.map(|Json(body)| body).map_err(|e| match e {
        JsonRejection::JsonDataError(e) => Error::Unprocessable(e.body_text()),
        e => Error::BadRequest(e.body_text()),
    })
}

/// An operator's note: trimmed, empty is none, at most [`MAX_NOTE_CHARS`].
fn note(note: Option<String>) -> Result<Option<String>, Error> {
    let note = note.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
    if note
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS)
    {
        return Err(Error::Unprocessable(format!(
            "note is longer than {MAX_NOTE_CHARS} characters"
        )));
    }
    Ok(note)
}

/// The scores of the last decision about `id`, kept with the next one.
async fn last_scores(
    state: &AppState,
    id: SubmissionId,
) -> Result<(bool, serde_json::Value, serde_json::Value), Error> {
    let last = sqlx::query!(
        "SELECT flagged, categories, scores FROM moderation_result \
         WHERE submission_id = $1 ORDER BY created_at DESC LIMIT 1",
        id.0,
    )
    .fetch_optional(&state.stage.pool)
    .await?
    .map(|r| (r.flagged, r.categories, r.scores));
    Ok(last.unwrap_or_default())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    #[serde(default)]
    note: Option<String>,
}

/// `POST /v1/submissions/{id}/revoke`: rejects an approved submission wherever it is on its
/// way to the air or after it.
pub async fn revoke(
    State(state): State<AppState>,
    Operator(operator): Operator,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    body: Result<Json<RevokeRequest>, JsonRejection>,
) -> Result<Json<DecisionResponse>, Error> {
    let id = submission_id(&id)?;
    let body = json_body(body)?;
    let note = note(body.note)?;
    let sub = repository::load(&state.stage.pool, id)
        .await?
        .ok_or(Error::NotFound)?;
    if !sub.status.can_become(Status::Rejected) || sub.status == Status::Held {
        return Err(Error::Conflict(format!(
            "submission {id} is {}: only an approved, queued, on-air or aired submission can be \
             revoked (a held one is decided at /v1/held/{id}/decision)",
            sub.status
        )));
    }
    let (flagged, categories, scores) = last_scores(&state, id).await?;
    let record = DecisionRecord {
        decision: Decision::Rejected,
        decided_by: operator.clone(),
        flagged,
        categories,
        scores,
        triggered: Vec::new(),
        note,
    };
    // Never sent: a rejection publishes nothing.
    let unused = SubmissionEvent::new(Event::Ready, id, &sub.channel, sub.kind, Some(&ctx.trace));
    match decision::apply(&state, id, sub.status, &record, unused).await? {
        Transition::Applied => {
            tracing::warn!(submission_id = %id, was = %sub.status, %operator, "submission revoked");
            Ok(Json(DecisionResponse {
                id,
                status: Decision::Rejected.as_str(),
                decided_by: operator,
            }))
        }
        Transition::NotApplicable => Err(Error::Conflict(format!(
            "submission {id} changed meanwhile; look again"
        ))),
    }
}

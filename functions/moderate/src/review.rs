//! The operator's review queue: `GET /v1/held` lists held submissions (oldest first) with
//! the scores that held them; `POST /v1/held/{id}/decision` approves or rejects one. An
//! approval publishes `submission-ready`; either is recorded with the operator's identity.

use axum::Extension;
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::http::RequestContext;
use shared::message::{Event, SubmissionEvent};
use shared::moderation::Decision;
use shared::operator::Operator;
use shared::pipeline::SubmissionRow;
use shared::submission::{Status, SubmissionId, Transition};
use sqlx::Row;

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
    kind: String,
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
    let rows = sqlx::query(
        "SELECT s.id, s.channel_id, s.kind, coalesce(s.text, s.transcript) AS words, \
                s.audio_path, s.held_at, m.decided_by, m.triggered, m.scores \
         FROM submission s \
         LEFT JOIN LATERAL (SELECT decided_by, triggered, scores FROM moderation_result \
                            WHERE submission_id = s.id ORDER BY created_at DESC LIMIT 1) m ON true \
         WHERE s.status = 'held' ORDER BY s.held_at, s.id LIMIT $1",
    )
    .bind(query.limit)
    .fetch_all(&state.pool)
    .await?;
    let items = rows
        .into_iter()
        .map(|r| {
            Ok(HeldSubmission {
                id: r.try_get("id")?,
                channel_id: r.try_get("channel_id")?,
                kind: r.try_get("kind")?,
                words: r.try_get("words")?,
                audio_path: r.try_get("audio_path")?,
                held_at: r.try_get("held_at")?,
                held_by: r.try_get("decided_by")?,
                triggered: r
                    .try_get::<Option<Vec<String>>, _>("triggered")?
                    .unwrap_or_default(),
                scores: r
                    .try_get::<Option<serde_json::Value>, _>("scores")?
                    .unwrap_or_default(),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
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
    let id = id
        .parse::<uuid::Uuid>()
        .map(SubmissionId)
        .map_err(|_| Error::NotFound)?;
    let Json(body) = body.map_err(|e| match e {
        JsonRejection::JsonDataError(e) => Error::Unprocessable(e.body_text()),
        e => Error::BadRequest(e.body_text()),
    })?;
    let decision = match body.decision.as_str() {
        "approve" => Decision::Approved,
        "reject" => Decision::Rejected,
        other => {
            return Err(Error::Unprocessable(format!(
                "decision must be approve or reject, not {other:?}"
            )));
        }
    };
    let note = body
        .note
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    if note
        .as_ref()
        .is_some_and(|n| n.chars().count() > MAX_NOTE_CHARS)
    {
        return Err(Error::Unprocessable(format!(
            "note is longer than {MAX_NOTE_CHARS} characters"
        )));
    }
    let sub = SubmissionRow::load(&state.pool, id)
        .await?
        .ok_or(Error::NotFound)?;
    // The operator decides on the scores that held it; they are kept with the decision.
    let last: Option<(bool, serde_json::Value, serde_json::Value)> = sqlx::query_as(
        "SELECT flagged, categories, scores FROM moderation_result \
         WHERE submission_id = $1 ORDER BY created_at DESC LIMIT 1",
    )
    .bind(id)
    .fetch_optional(&state.pool)
    .await?;
    let (flagged, categories, scores) = last.unwrap_or_default();
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
            Some(Status::Held) | None => format!("submission {id} was decided meanwhile"),
            Some(status) => format!("submission {id} is {status}"),
        })),
    }
}

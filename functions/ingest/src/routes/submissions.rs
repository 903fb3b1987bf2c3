//! `POST /v1/submissions` and `GET /v1/submissions/{id}`.
//!
//! Text arrives as JSON `{"text": "..."}`; push-to-talk audio as `multipart/form-data`
//! with one file part named `audio`. The audio type is decided by sniffing the bytes,
//! never by the client's Content-Type.

use axum::Extension;
use axum::Json;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::audio_probe::{self, AudioInfo, ProbeError};
use shared::http::RequestContext;
use shared::message::{Event, SubmissionEvent};
use shared::submission::{IdempotencyKey, SubmissionId, SubmissionKind, SubmissionText};
use sqlx::Row;

use crate::config::Limits;
use crate::error::Error;
use crate::identity::Identity;
use crate::rate_limit::Bucket;
use crate::state::AppState;

/// A validated submission body.
enum Payload {
    Text(SubmissionText),
    Audio { bytes: Bytes, info: AudioInfo },
}

impl Payload {
    fn kind(&self) -> SubmissionKind {
        match self {
            Payload::Text(_) => SubmissionKind::Text,
            Payload::Audio { .. } => SubmissionKind::Audio,
        }
    }

    /// Fingerprint of the request, to tell a retry from a different request that reuses
    /// an Idempotency-Key.
    fn fingerprint(&self) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(self.kind().as_str());
        h.update([0]);
        match self {
            Payload::Text(t) => h.update(t.as_str()),
            Payload::Audio { bytes, .. } => h.update(bytes),
        }
        h.finalize().to_vec()
    }
}

#[derive(Debug, Serialize)]
pub struct SubmissionView {
    pub id: SubmissionId,
    pub kind: SubmissionKind,
    pub status: String,
    pub received_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
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
    let key = idempotency_key(req.headers())?;
    let payload = read_payload(req, &state.config.limits).await?;
    let fingerprint = payload.fingerprint();

    // A keyed retry of an audio upload is answered before the audio is stored again. Text
    // needs no look-up first: the insert's ON CONFLICT finds the earlier submission.
    if let (Some(key), Payload::Audio { .. }) = (&key, &payload)
        && let Some(existing) = find_by_key(&state, &identity, key).await?
    {
        return replay(existing, &fingerprint);
    }

    let id = SubmissionId::new();
    let kind = payload.kind();
    let (text, audio) = match payload {
        Payload::Text(t) => (Some(t), None),
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
                        Error::Unavailable("audio storage unavailable".into())
                    } else {
                        Error::Internal(anyhow::anyhow!("cannot store audio: {e}"))
                    }
                })?;
            (None, Some((state.store.uri(&object), info)))
        }
    };

    let mut tx = state.pool.begin().await?;
    let inserted: Option<(DateTime<Utc>,)> = sqlx::query_as(
        "INSERT INTO submission (id, channel_id, user_id, kind, text, audio_path, audio_mime, \
         audio_duration_ms, status, idempotency_key, request_hash, trace_id, ingested_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'ingested', $9, $10, $11, now()) \
         ON CONFLICT ON CONSTRAINT submission_idempotency DO NOTHING \
         RETURNING received_at",
    )
    .bind(id)
    .bind(&state.config.channel_id)
    .bind(identity.user.as_str())
    .bind(kind.as_str())
    .bind(text.as_ref().map(|t| t.as_str()))
    .bind(audio.as_ref().map(|(uri, _)| uri.as_str()))
    .bind(audio.as_ref().map(|(_, info)| info.format.mime()))
    .bind(
        audio
            .as_ref()
            .map(|(_, info)| info.duration.as_millis() as i32),
    )
    .bind(key.as_ref().map(|k| k.as_str()))
    .bind(&fingerprint)
    .bind(ctx.trace.trace_id())
    .fetch_optional(&mut *tx)
    .await?;

    let Some((received_at,)) = inserted else {
        // A concurrent request with the same key committed first: answer as it did.
        tx.rollback().await?;
        let key = key.expect("only keyed inserts can conflict");
        let existing = find_by_key(&state, &identity, &key)
            .await?
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("conflicting submission vanished")))?;
        return replay(existing, &fingerprint);
    };

    let event = SubmissionEvent::new(
        Event::Ingested,
        id,
        &state.config.channel_id,
        kind,
        Some(&ctx.trace),
    );
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
    tracing::info!(submission_id = %id, kind = kind.as_str(), user = %identity.user, "submission ingested");

    let view = SubmissionView {
        id,
        kind,
        status: "ingested".into(),
        received_at,
        failure_reason: None,
    };
    Ok(accepted(view, false))
}

pub async fn get(
    State(state): State<AppState>,
    identity: Identity,
    Path(id): Path<String>,
) -> Result<Json<SubmissionView>, Error> {
    let id = uuid::Uuid::parse_str(&id).map_err(|_| Error::NotFound)?;
    let row = sqlx::query(
        "SELECT id, kind, status, received_at, failure_reason FROM submission \
         WHERE id = $1 AND user_id = $2",
    )
    .bind(id)
    .bind(identity.user.as_str())
    .fetch_optional(&state.pool)
    .await?
    .ok_or(Error::NotFound)?;
    Ok(Json(view_from_row(&row)?))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, Error> {
    headers
        .get("idempotency-key")
        .map(|v| {
            let s = v
                .to_str()
                .map_err(|_| Error::BadRequest("Idempotency-Key is not ASCII".into()))?;
            IdempotencyKey::parse(s).map_err(|e| Error::BadRequest(e.0))
        })
        .transpose()
}

/// Reads and validates the body, bounded before it is read.
async fn read_payload(req: Request, limits: &Limits) -> Result<Payload, Error> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .ok_or_else(|| {
            Error::UnsupportedMediaType(
                "send application/json text or multipart/form-data audio".into(),
            )
        })?;
    let declared_len = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match content_type.as_str() {
        "application/json" => {
            let max = limits.max_json_bytes();
            if declared_len.is_some_and(|n| n > max as u64) {
                return Err(too_large_text(limits));
            }
            let body = axum::body::to_bytes(req.into_body(), max)
                .await
                .map_err(|e| body_error(e, || too_large_text(limits)))?;
            parse_text(&body, limits)
        }
        "multipart/form-data" => {
            if declared_len.is_some_and(|n| n > limits.max_multipart_bytes()) {
                return Err(too_large_audio(limits));
            }
            let multipart = Multipart::from_request(req, &())
                .await
                .map_err(|e| Error::BadRequest(e.body_text()))?;
            read_audio(multipart, limits).await
        }
        other => Err(Error::UnsupportedMediaType(format!(
            "{other} is not accepted: send application/json text or multipart/form-data audio"
        ))),
    }
}

fn too_large_text(limits: &Limits) -> Error {
    Error::TooLarge(format!(
        "text submissions are at most {} characters",
        limits.max_text_chars
    ))
}

fn too_large_audio(limits: &Limits) -> Error {
    Error::TooLarge(format!(
        "audio uploads are at most {} bytes",
        limits.max_audio_bytes
    ))
}

/// A body read failure is the client's: over the limit, or a broken upload.
fn body_error(e: axum::Error, too_large: impl FnOnce() -> Error) -> Error {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return too_large();
        }
        source = s.source();
    }
    Error::BadRequest(format!("could not read the request body: {e}"))
}

fn parse_text(body: &[u8], limits: &Limits) -> Result<Payload, Error> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct TextSubmission {
        text: String,
    }
    // serde would also accept a JSON array for a struct; only an object is a submission.
    if body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[') {
        return Err(Error::Unprocessable(
            "expected a JSON object {\"text\": \"...\"}".into(),
        ));
    }
    let parsed: TextSubmission = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            Error::Unprocessable(format!("expected {{\"text\": \"...\"}}: {e}"))
        } else {
            Error::BadRequest(format!("body is not valid JSON: {e}"))
        }
    })?;
    Ok(Payload::Text(SubmissionText::parse(
        &parsed.text,
        limits.max_text_chars,
    )?))
}

async fn read_audio(mut multipart: Multipart, limits: &Limits) -> Result<Payload, Error> {
    let multipart_error = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large_audio(limits)
        } else {
            Error::BadRequest(format!("malformed multipart body: {}", e.body_text()))
        }
    };
    let mut audio: Option<Bytes> = None;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("audio") if audio.is_none() => {
                let mut buf = BytesMut::new();
                while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
                    if (buf.len() + chunk.len()) as u64 > limits.max_audio_bytes {
                        return Err(too_large_audio(limits));
                    }
                    buf.extend_from_slice(&chunk);
                }
                audio = Some(buf.freeze());
            }
            Some("audio") => {
                return Err(Error::Unprocessable("send exactly one audio part".into()));
            }
            other => {
                return Err(Error::Unprocessable(format!(
                    "unexpected form field {:?}: send one file part named audio",
                    other.unwrap_or("")
                )));
            }
        }
    }
    let bytes = audio.ok_or_else(|| {
        Error::Unprocessable("missing the audio part (a file field named audio)".into())
    })?;
    let info = audio_probe::probe(&bytes).map_err(|e| match e {
        ProbeError::Unrecognised | ProbeError::UnsupportedCodec(_) => {
            Error::UnsupportedMediaType(format!("{e}: send WebM/Opus, Ogg/Opus, WAV or MP3"))
        }
        e => Error::Unprocessable(format!("audio could not be read: {e}")),
    })?;
    if !limits.allowed_audio.contains(&info.format) {
        return Err(Error::UnsupportedMediaType(format!(
            "{} uploads are not accepted here",
            info.format.mime()
        )));
    }
    if info.duration > limits.max_audio_duration {
        return Err(Error::Unprocessable(format!(
            "audio is {:.1} s long; at most {} s is allowed",
            info.duration.as_secs_f64(),
            limits.max_audio_duration.as_secs()
        )));
    }
    if info.duration.is_zero() {
        return Err(Error::Unprocessable("audio is empty".into()));
    }
    Ok(Payload::Audio { bytes, info })
}

struct Existing {
    view: SubmissionView,
    fingerprint: Vec<u8>,
}

async fn find_by_key(
    state: &AppState,
    identity: &Identity,
    key: &IdempotencyKey,
) -> Result<Option<Existing>, Error> {
    let row = sqlx::query(
        "SELECT id, kind, status, received_at, failure_reason, request_hash FROM submission \
         WHERE user_id = $1 AND idempotency_key = $2",
    )
    .bind(identity.user.as_str())
    .bind(key.as_str())
    .fetch_optional(&state.pool)
    .await?;
    row.map(|row| {
        Ok(Existing {
            view: view_from_row(&row)?,
            fingerprint: row
                .try_get::<Option<Vec<u8>>, _>("request_hash")?
                .unwrap_or_default(),
        })
    })
    .transpose()
}

fn view_from_row(row: &sqlx::postgres::PgRow) -> Result<SubmissionView, Error> {
    let kind = match row.try_get::<&str, _>("kind")? {
        "audio" => SubmissionKind::Audio,
        _ => SubmissionKind::Text,
    };
    Ok(SubmissionView {
        id: row.try_get("id")?,
        kind,
        status: row.try_get("status")?,
        received_at: row.try_get("received_at")?,
        failure_reason: row.try_get("failure_reason")?,
    })
}

/// Answers a retried request as the first one was answered.
fn replay(existing: Existing, fingerprint: &[u8]) -> Result<Response, Error> {
    if existing.fingerprint != fingerprint {
        return Err(Error::IdempotencyMismatch);
    }
    Ok(accepted(existing.view, true))
}

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

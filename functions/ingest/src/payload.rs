//! The body of `POST /v1/submissions`, read and validated: text arrives as JSON
//! `{"text": "..."}`, push-to-talk audio as `multipart/form-data` with one file part named
//! `audio`. Bodies are bounded before they are read, and the audio type is decided by probing
//! the bytes, never by the client's Content-Type.

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{StatusCode, header};
use bytes::{Bytes, BytesMut};
use media::probe::{self, AudioInfo, ProbeError};
use serde::Deserialize;
use shared::submission::{SubmissionKind, SubmissionText};

use crate::config::Limits;
use crate::error::Error;

/// A validated submission body.
pub enum Payload {
    Text(SubmissionText),
    Audio { bytes: Bytes, info: AudioInfo },
}

impl Payload {
    pub fn kind(&self) -> SubmissionKind {
        match self {
            Payload::Text(_) => SubmissionKind::Text,
            Payload::Audio { .. } => SubmissionKind::Audio,
        }
    }
}

/// Reads and validates the body, bounded before it is read. Whatever the answer, the body is
/// read to its end first (within `shared::body`'s bounds), so a client that writes it all
/// before reading gets the answer, a 413 included, rather than a reset.
pub async fn read(req: Request, limits: &Limits) -> Result<Payload, Error> {
    let (parts, body) = req.into_parts();
    let limit = match media_type(&parts.headers).as_deref() {
        Some("application/json") => limits.max_json_bytes() as u64,
        Some("multipart/form-data") => limits.max_multipart_bytes(),
        _ => 0,
    };
    let (body, drain) = shared::body::bounded(body, limit);
    let result = read_within(Request::from_parts(parts, body), limits).await;
    let exceeded = drain.exceeded();
    drain.finish().await;
    match result {
        Err(_) if exceeded => Err(if limit == limits.max_json_bytes() as u64 {
            too_large_text(limits)
        } else {
            too_large_audio(limits)
        }),
        result => result,
    }
}

/// The media type of the Content-Type header, lower-cased, without parameters.
fn media_type(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

async fn read_within(req: Request, limits: &Limits) -> Result<Payload, Error> {
    let content_type = media_type(req.headers()).ok_or_else(|| {
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
        if s.is::<http_body_util::LengthLimitError>() || s.is::<shared::body::TooLarge>() {
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
    let info = probe::probe(&bytes).map_err(|e| match e {
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

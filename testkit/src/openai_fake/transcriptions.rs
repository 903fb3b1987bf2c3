//! `POST /v1/audio/transcriptions`: the multipart form checked as the API does, the
//! registered or default transcript answered in the asked format.

use super::*;

pub(super) async fn transcriptions(State(state): State<Arc<FakeState>>, req: Request) -> Response {
    let mut form = match Multipart::from_request(req, &()).await {
        Ok(form) => form,
        Err(e) => {
            return invalid(
                &format!("Could not parse multipart form: {}", e.body_text()),
                None,
                None,
            );
        }
    };
    let mut fields = serde_json::Map::new();
    let mut file: Option<(String, Bytes)> = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => {
                let status = e.status();
                if status == StatusCode::PAYLOAD_TOO_LARGE {
                    return too_large(MAX_AUDIO_BYTES + 1);
                }
                return invalid(
                    &format!("Could not parse multipart form: {}", e.body_text()),
                    None,
                    None,
                );
            }
        };
        let name = field.name().unwrap_or_default().to_owned();
        if name == "file" {
            let file_name = field.file_name().unwrap_or_default().to_owned();
            let content_type = field.content_type().unwrap_or_default().to_owned();
            let Ok(bytes) = field.bytes().await else {
                return too_large(MAX_AUDIO_BYTES + 1);
            };
            fields.insert(
                "file".to_owned(),
                json!({ "file_name": file_name, "content_type": content_type, "bytes": bytes.len() }),
            );
            file = Some((file_name, bytes));
        } else {
            match field.text().await {
                Ok(text) => {
                    fields.insert(name, json!(text));
                }
                Err(_) => return invalid("Could not parse multipart form.", None, None),
            }
        }
    }
    let field = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
    let Some(model) = field("model") else {
        return invalid("you must provide a model parameter", None, None);
    };
    let whisper = model == "whisper-1";
    if !whisper
        && !matches!(
            model.as_str(),
            "gpt-4o-transcribe" | "gpt-4o-mini-transcribe"
        )
    {
        return model_not_found(&model);
    }
    let Some((file_name, audio)) = file else {
        return invalid("you must provide a file", Some("file"), None);
    };
    let extension = file_name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase())
        .unwrap_or_default();
    if !AUDIO_EXTENSIONS.contains(&extension.as_str()) {
        return invalid(
            &format!(
                "Invalid file format. Supported formats: {:?}",
                AUDIO_EXTENSIONS
            ),
            Some("file"),
            Some("invalid_value"),
        );
    }
    if audio.len() > MAX_AUDIO_BYTES {
        return too_large(audio.len());
    }
    if audio.len() < 100 {
        return invalid(
            "Audio file is too short. Minimum audio length is 0.1 seconds.",
            Some("file"),
            Some("audio_too_short"),
        );
    }
    let format = field("response_format").unwrap_or_else(|| "json".to_owned());
    let allowed: &[&str] = if whisper {
        &["json", "text", "verbose_json", "srt", "vtt"]
    } else {
        &["json", "text"]
    };
    if !allowed.contains(&format.as_str()) {
        return invalid(
            &format!(
                "response_format '{format}' is not compatible with model '{model}'. Use {} instead.",
                allowed
                    .iter()
                    .map(|f| format!("'{f}'"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            Some("response_format"),
            Some("unsupported_value"),
        );
    }
    let text = {
        let mut inner = state.lock();
        inner
            .last_bodies
            .insert(TRANSCRIPTIONS.to_owned(), Value::Object(fields.clone()));
        let key: [u8; 32] = Sha256::digest(&audio).into();
        inner
            .transcripts
            .get(&key)
            .cloned()
            .unwrap_or_else(|| inner.default_transcript.clone())
    };
    let duration = wav_duration(&audio).unwrap_or(audio.len() as f64 / 16_000.0);
    match format.as_str() {
        "text" => text.into_response(),
        "verbose_json" => axum::Json(json!({
            "task": "transcribe",
            "language": "english",
            "duration": duration,
            "text": text,
            "segments": [{
                "id": 0, "seek": 0, "start": 0.0, "end": duration, "text": text,
                "tokens": [], "temperature": 0.0, "avg_logprob": -0.2,
                "compression_ratio": 1.0, "no_speech_prob": 0.01
            }],
        }))
        .into_response(),
        "srt" => {
            let end = timestamp(duration).replace('.', ",");
            format!("1\n00:00:00,000 --> {end}\n{text}\n\n").into_response()
        }
        "vtt" => {
            let end = timestamp(duration);
            format!("WEBVTT\n\n00:00:00.000 --> {end}\n{text}\n\n").into_response()
        }
        _ if whisper => axum::Json(json!({
            "text": text,
            "usage": { "type": "duration", "seconds": duration.ceil() as u64 },
        }))
        .into_response(),
        _ => {
            let output = approx_tokens(&text);
            let input = (duration * 10.0).ceil() as u64;
            axum::Json(json!({
                "text": text,
                "usage": {
                    "type": "tokens",
                    "input_tokens": input,
                    "input_token_details": { "text_tokens": 0, "audio_tokens": input },
                    "output_tokens": output,
                    "total_tokens": input + output as u64,
                },
            }))
            .into_response()
        }
    }
}

/// `HH:MM:SS.mmm`.
pub(super) fn timestamp(seconds: f64) -> String {
    let ms = (seconds * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

pub(super) fn too_large(bytes: usize) -> Response {
    api_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("Maximum content size limit ({MAX_AUDIO_BYTES}) exceeded ({bytes} bytes read)"),
        "server_error",
        None,
        None,
    )
}

/// Seconds of audio in a PCM WAV file, from its header.
pub(super) fn wav_duration(audio: &[u8]) -> Option<f64> {
    if audio.len() < 44 || &audio[..4] != b"RIFF" || &audio[8..12] != b"WAVE" {
        return None;
    }
    let byte_rate = u32::from_le_bytes(audio[28..32].try_into().ok()?);
    (byte_rate > 0).then(|| (audio.len() - 44) as f64 / f64::from(byte_rate))
}

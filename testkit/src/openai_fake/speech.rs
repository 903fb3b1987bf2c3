//! `POST /v1/chat/completions` and `POST /v1/audio/speech`: the DJ's two REST calls.

use super::*;

pub(super) async fn chat_completions(State(state): State<Arc<FakeState>>, body: Bytes) -> Response {
    let (v, model) = match json_body_for(&state, CHAT_COMPLETIONS, &body, &CHAT_MODELS) {
        Ok(found) => found,
        Err(res) => return *res,
    };
    let model = model.as_str();
    if v.get("stream").and_then(Value::as_bool) == Some(true) {
        return invalid(
            "The fake does not stream chat completions.",
            Some("stream"),
            Some("unsupported_value"),
        );
    }
    let Some(messages) = v.get("messages").and_then(Value::as_array) else {
        return invalid(
            "Missing required parameter: 'messages'.",
            Some("messages"),
            Some("missing_required_parameter"),
        );
    };
    if messages.is_empty() {
        return invalid(
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got \
             an empty array instead.",
            Some("messages"),
            Some("empty_array"),
        );
    }
    let mut texts = Vec::with_capacity(messages.len());
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if !matches!(role, "system" | "developer" | "user" | "assistant" | "tool") {
            return invalid(
                &format!(
                    "Invalid value: '{role}'. Supported values are: 'system', 'assistant', \
                     'user', 'tool', 'function' and 'developer'."
                ),
                Some(&format!("messages[{i}].role")),
                Some("invalid_value"),
            );
        }
        let Some(text) = m.get("content").and_then(message_text) else {
            return invalid(
                &format!("Invalid type for 'messages[{i}].content'."),
                Some(&format!("messages[{i}].content")),
                Some("invalid_type"),
            );
        };
        texts.push((role, text));
    }
    let limit = match (
        positive_int(&v, "max_tokens"),
        positive_int(&v, "max_completion_tokens"),
    ) {
        (Err(res), _) | (_, Err(res)) => return *res,
        (Ok(a), Ok(b)) => b.or(a),
    };
    let reply = state.lock().chat_reply.clone().unwrap_or_else(|| {
        let last_user = texts.iter().rev().find(|(role, _)| *role == "user");
        fake_reply(last_user.map_or("", |(_, t)| t.as_str()))
    });
    // Cut to the token limit the fake's tokenizer counts, the way a real completion stops.
    let (reply, finish_reason) = match limit {
        Some(max) if approx_tokens(&reply) as u64 > max => {
            (reply.chars().take(max as usize * 4).collect(), "length")
        }
        _ => (reply, "stop"),
    };
    let prompt_tokens: usize = texts.iter().map(|(_, t)| approx_tokens(t)).sum();
    let completion_tokens = approx_tokens(&reply);
    let id: String = Sha256::digest(&body)[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    axum::Json(json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": { "role": "assistant", "content": reply, "refusal": null, "annotations": [] },
            "logprobs": null,
            "finish_reason": finish_reason,
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": "fp_radio24_fake",
    }))
    .into_response()
}

pub(super) async fn speech(State(state): State<Arc<FakeState>>, body: Bytes) -> Response {
    let (v, model) = match json_body_for(&state, SPEECH, &body, &TTS_MODELS) {
        Ok(found) => found,
        Err(res) => return *res,
    };
    let model = model.as_str();
    let input = match v.get("input").and_then(Value::as_str) {
        Some(i) if !i.is_empty() => i,
        _ => {
            return invalid(
                "Missing required parameter: 'input'.",
                Some("input"),
                Some("missing_required_parameter"),
            );
        }
    };
    if input.chars().count() > MAX_SPEECH_INPUT {
        return invalid(
            &format!("String should have at most {MAX_SPEECH_INPUT} characters"),
            Some("input"),
            Some("string_above_max_length"),
        );
    }
    let voice = v.get("voice").and_then(Value::as_str).unwrap_or("");
    if !VOICES.contains(&voice) {
        return invalid(
            &format!(
                "Invalid value for 'voice' = {voice}. Supported values are: {}.",
                VOICES.map(|v| format!("'{v}'")).join(", ")
            ),
            Some("voice"),
            Some("invalid_value"),
        );
    }
    let format = v
        .get("response_format")
        .and_then(Value::as_str)
        .unwrap_or("mp3");
    if !SPEECH_FORMATS.contains(&format) {
        return invalid(
            &format!("Invalid value for 'response_format' = {format}."),
            Some("response_format"),
            Some("invalid_value"),
        );
    }
    if !matches!(format, "pcm" | "wav") {
        return invalid(
            &format!("The fake produces pcm and wav only, not {format}."),
            Some("response_format"),
            Some("unsupported_value"),
        );
    }
    if v.get("instructions").is_some_and(|i| !i.is_null()) && model.starts_with("tts-1") {
        return invalid(
            &format!("Instructions are not supported for {model}."),
            Some("instructions"),
            Some("unsupported_parameter"),
        );
    }
    if let Some(speed) = v.get("speed").filter(|s| !s.is_null())
        && !speed.as_f64().is_some_and(|s| (0.25..=4.0).contains(&s))
    {
        return invalid(
            "Invalid 'speed': expected a number between 0.25 and 4.0.",
            Some("speed"),
            Some("invalid_value"),
        );
    }
    if v.get("stream_format").and_then(Value::as_str) == Some("sse") {
        return invalid(
            "The fake does not stream speech as server-sent events.",
            Some("stream_format"),
            Some("unsupported_value"),
        );
    }
    let pcm: Vec<u8> = fake_speech(input)
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    let (audio, content_type) = if format == "wav" {
        (wav_file(&pcm), "audio/wav")
    } else {
        (pcm, "audio/pcm")
    };
    let chunks: Vec<Result<Bytes, std::convert::Infallible>> = audio
        .chunks(SPEECH_CHUNK_BYTES)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    (
        [(header::CONTENT_TYPE, content_type)],
        axum::body::Body::from_stream(futures::stream::iter(chunks)),
    )
        .into_response()
}

/// A 24 kHz mono 16-bit WAV file around `pcm`.
pub(super) fn wav_file(pcm: &[u8]) -> Vec<u8> {
    let rate = FAKE_SPEECH_RATE;
    let len = pcm.len() as u32;
    let mut out = Vec::with_capacity(44 + pcm.len());
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(pcm);
    out
}

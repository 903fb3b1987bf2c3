//! `POST /v1/embeddings`: validation as the API does it, feature-hashed vectors.

use super::*;

pub(super) async fn embeddings(State(state): State<Arc<FakeState>>, body: Bytes) -> Response {
    let v = match json_body(&state, EMBEDDINGS, &body) {
        Ok(v) => v,
        Err(res) => return *res,
    };
    let Some(model) = v.get("model").and_then(Value::as_str) else {
        return invalid("you must provide a model parameter", None, None);
    };
    let full_dims = match model {
        "text-embedding-3-small" | "text-embedding-ada-002" => 1536,
        "text-embedding-3-large" => 3072,
        other => return model_not_found(other),
    };
    let inputs: Vec<String> = match v.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if !items.is_empty() => {
            // An array of strings, of token ids (one input), or of token-id arrays.
            let as_tokens = |item: &Value| {
                item.as_array().and_then(|ids| {
                    (!ids.is_empty() && ids.iter().all(Value::is_u64)).then(|| {
                        ids.iter()
                            .map(|id| format!("t{id}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                })
            };
            if items.iter().all(Value::is_u64) {
                vec![as_tokens(&Value::Array(items.clone())).unwrap_or_default()]
            } else if let Some(texts) = items
                .iter()
                .map(|i| i.as_str().map(str::to_owned).or_else(|| as_tokens(i)))
                .collect::<Option<Vec<_>>>()
            {
                texts
            } else {
                return invalid_input();
            }
        }
        _ => return invalid_input(),
    };
    if inputs.len() > MAX_EMBEDDING_INPUTS {
        return invalid(
            &format!(
                "'$.input' is too long. Maximum length is {MAX_EMBEDDING_INPUTS}, but was \
                 given {}.",
                inputs.len()
            ),
            Some("input"),
            None,
        );
    }
    if inputs.iter().any(String::is_empty) {
        return invalid_input();
    }
    let tokens: Vec<usize> = inputs.iter().map(|t| approx_tokens(t)).collect();
    if let Some(&too_long) = tokens.iter().find(|&&t| t > MAX_EMBEDDING_INPUT_TOKENS) {
        return invalid(
            &format!(
                "This model's maximum context length is {MAX_EMBEDDING_INPUT_TOKENS} tokens, \
                 however you requested {too_long} tokens ({too_long} in your prompt; 0 for the \
                 completion). Please reduce your prompt; or completion length."
            ),
            None,
            None,
        );
    }
    let total: usize = tokens.iter().sum();
    if total > MAX_EMBEDDING_REQUEST_TOKENS {
        return invalid(
            &format!(
                "Requested {total} tokens, max {MAX_EMBEDDING_REQUEST_TOKENS} tokens per request"
            ),
            None,
            Some("max_tokens_per_request"),
        );
    }
    let dims = match v.get("dimensions") {
        None | Some(Value::Null) => full_dims,
        Some(d) => match d.as_u64() {
            Some(d) if model != "text-embedding-ada-002" && (1..=full_dims as u64).contains(&d) => {
                d as usize
            }
            _ => {
                return invalid(
                    &format!(
                        "Invalid value for 'dimensions' = {d}. Must be between 1 and {full_dims}."
                    ),
                    Some("dimensions"),
                    Some("invalid_value"),
                );
            }
        },
    };
    let base64 = match v.get("encoding_format").and_then(Value::as_str) {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return invalid(
                &format!(
                    "Invalid value for 'encoding_format' = {other}. Supported values are: 'float' and 'base64'."
                ),
                Some("encoding_format"),
                Some("invalid_value"),
            );
        }
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = fake_embedding(text, dims);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({ "object": "embedding", "index": index, "embedding": embedding })
        })
        .collect();
    axum::Json(json!({
        "object": "list",
        "data": data,
        "model": model,
        "usage": { "prompt_tokens": total, "total_tokens": total },
    }))
    .into_response()
}

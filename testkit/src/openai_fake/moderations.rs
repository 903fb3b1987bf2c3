//! `POST /v1/moderations`: keyword-rule scores in OpenAI's shape.

use super::*;

pub(super) async fn moderations(State(state): State<Arc<FakeState>>, body: Bytes) -> Response {
    let v = match json_body(&state, MODERATIONS, &body) {
        Ok(v) => v,
        Err(res) => return *res,
    };
    let model = match v.get("model") {
        None | Some(Value::Null) => "omni-moderation-latest",
        Some(Value::String(m)) => m.as_str(),
        Some(_) => return invalid("'$.model' is invalid.", Some("model"), None),
    };
    if !matches!(
        model,
        "omni-moderation-latest"
            | "omni-moderation-2024-09-26"
            | "text-moderation-latest"
            | "text-moderation-stable"
    ) {
        return model_not_found(model);
    }
    // A string, an array of strings (one result each), or an array of multimodal parts
    // (one result for all of them).
    let texts: Vec<String> = match v.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) && !items.is_empty() => {
            items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect()
        }
        Some(Value::Array(parts)) if parts.iter().all(Value::is_object) && !parts.is_empty() => {
            let mut text = String::new();
            for part in parts {
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => match part.get("text").and_then(Value::as_str) {
                        Some(t) => {
                            text.push_str(t);
                            text.push('\n');
                        }
                        None => return invalid_input(),
                    },
                    Some("image_url") => {}
                    _ => return invalid_input(),
                }
            }
            vec![text]
        }
        _ => return invalid_input(),
    };
    let rules = state.lock().moderation_rules.clone();
    let results: Vec<Value> = texts
        .iter()
        .map(|text| {
            let lower = text.to_lowercase();
            let mut scores: HashMap<&str, f64> = CATEGORIES.iter().map(|&c| (c, 1e-6)).collect();
            for (keyword, category, score) in &rules {
                if lower.contains(keyword.as_str())
                    && let Some(s) = scores.get_mut(category.as_str())
                {
                    *s = s.max(*score);
                }
            }
            let categories: serde_json::Map<String, Value> = CATEGORIES
                .iter()
                .map(|&c| (c.to_owned(), json!(scores[c] >= 0.5)))
                .collect();
            let category_scores: serde_json::Map<String, Value> = CATEGORIES
                .iter()
                .map(|&c| (c.to_owned(), json!(scores[c])))
                .collect();
            let applied: serde_json::Map<String, Value> = CATEGORIES
                .iter()
                .map(|&c| (c.to_owned(), json!(["text"])))
                .collect();
            json!({
                "flagged": categories.values().any(|f| f == &json!(true)),
                "categories": categories,
                "category_scores": category_scores,
                "category_applied_input_types": applied,
            })
        })
        .collect();
    let id: String = Sha256::digest(&body)[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let id = format!("modr-{id}");
    axum::Json(json!({ "id": id, "model": model, "results": results })).into_response()
}

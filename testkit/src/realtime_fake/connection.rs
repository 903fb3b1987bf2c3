//! One Realtime session on the fake: the client's events in, the server's events out,
//! paced as the real service paces them (a queue of steps, each after a delay).

use super::*;

/// An event to send, `after` the previous one (`None`: never, the fake stalls).
struct Step {
    after: Option<Duration>,
    action: Action,
}

enum Action {
    Send(Value),
    /// Close the TCP connection without a close frame.
    Drop,
}

/// One session's state.
pub(super) struct Connection {
    shared: Arc<Shared>,
    pub(super) index: usize,
    /// The session object as `session.updated` reports it.
    session: Value,
    /// Items in the conversation, for `previous_item_id` and the reply's input.
    conversation: Vec<Value>,
    queue: VecDeque<Step>,
    /// When the head of `queue` became the head.
    head_since: Instant,
    /// The response being sent.
    active: Option<String>,
    /// Audio was produced: the voice can no longer change.
    spoke: bool,
    expires: Instant,
}

impl Connection {
    pub(super) fn new(shared: Arc<Shared>, model: String) -> Self {
        let id = shared.id("sess");
        let record = SessionRecord {
            id: id.clone(),
            model: model.clone(),
            voice: "alloy".to_owned(),
            open: true,
            ..SessionRecord::default()
        };
        let index = {
            let mut inner = shared.lock();
            inner.sessions.push(record);
            inner.sessions.len() - 1
        };
        let expires_at = SystemTime::now()
            .checked_add(shared.lifetime)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let pcm = json!({ "type": "audio/pcm", "rate": FAKE_SPEECH_RATE });
        let session = json!({
            "type": "realtime",
            "object": "realtime.session",
            "id": id,
            "model": model,
            "output_modalities": ["audio"],
            "instructions": "",
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "tracing": null,
            "truncation": "auto",
            "prompt": null,
            "expires_at": expires_at,
            "audio": {
                "input": {
                    "format": pcm,
                    "transcription": null,
                    "noise_reduction": null,
                    "turn_detection": {
                        "type": "server_vad", "threshold": 0.5,
                        "prefix_padding_ms": 300, "silence_duration_ms": 200,
                        "create_response": true, "interrupt_response": true,
                        "idle_timeout_ms": null,
                    },
                },
                "output": { "format": pcm, "voice": "alloy", "speed": 1.0 },
            },
            "include": null,
        });
        let expires = Instant::now() + shared.lifetime;
        Connection {
            shared,
            index,
            session,
            conversation: Vec::new(),
            queue: VecDeque::new(),
            head_since: Instant::now(),
            active: None,
            spoke: false,
            expires,
        }
    }

    fn record(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    fn event(&self, kind: &str, fields: Value) -> Value {
        let mut event = json!({ "type": kind, "event_id": self.shared.id("event") });
        if let (Some(e), Value::Object(fields)) = (event.as_object_mut(), fields) {
            e.extend(fields);
        }
        event
    }

    fn error(
        &self,
        kind: &str,
        code: &str,
        message: &str,
        param: Option<&str>,
        event_id: Option<&str>,
    ) -> Value {
        let error = json!({
            "type": kind, "code": code, "message": message, "param": param,
            "event_id": event_id,
        });
        self.event("error", json!({ "error": error }))
    }

    fn invalid(&self, code: &str, message: &str, param: &str, event_id: Option<&str>) -> Value {
        self.error(
            "invalid_request_error",
            code,
            message,
            Some(param),
            event_id,
        )
    }

    pub(super) async fn run(&mut self, ws: &mut WebSocketStream<TcpStream>) {
        let mut expire = self.shared.expire.subscribe();
        expire.borrow_and_update();
        let created = self.event("session.created", json!({ "session": self.session }));
        if send(ws, &created).await.is_err() {
            return;
        }
        loop {
            let due = self.due();
            let far = Instant::now() + Duration::from_secs(86_400);
            tokio::select! {
                message = ws.next() => match message {
                    Some(Ok(Message::Text(text))) => {
                        for reply in self.handle(text.as_str()) {
                            if send(ws, &reply).await.is_err() {
                                return;
                            }
                        }
                    }
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                    Some(Ok(_)) => {}
                },
                _ = tokio::time::sleep_until(due.unwrap_or(far).into()), if due.is_some() => {
                    let Some(step) = self.queue.pop_front() else { continue };
                    self.head_since = Instant::now();
                    match step.action {
                        Action::Send(event) => {
                            self.sent(&event);
                            if send(ws, &event).await.is_err() {
                                return;
                            }
                        }
                        // Dropping the stream closes the socket with no close frame.
                        Action::Drop => return,
                    }
                }
                _ = tokio::time::sleep_until(self.expires.into()) => {
                    self.expire(ws).await;
                    return;
                }
                Ok(()) = expire.changed() => {
                    self.expire(ws).await;
                    return;
                }
            }
        }
    }

    fn due(&self) -> Option<Instant> {
        let step = self.queue.front()?;
        step.after.map(|after| self.head_since + after)
    }

    fn enqueue(&mut self, steps: Vec<Step>) {
        if self.queue.is_empty() {
            self.head_since = Instant::now();
        }
        self.queue.extend(steps);
    }

    /// Bookkeeping for an event as it goes out.
    fn sent(&mut self, event: &Value) {
        if event["type"] != "response.done" {
            return;
        }
        self.active = None;
        let output = &event["response"]["output"];
        if let Some(item) = output.get(0) {
            self.conversation.push(item.clone());
        }
        if event["response"]["status"] == "completed" {
            let transcript = output[0]["content"][0]["transcript"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let index = self.index;
            self.record().sessions[index].transcripts.push(transcript);
        }
    }

    async fn expire(&mut self, ws: &mut WebSocketStream<TcpStream>) {
        let index = self.index;
        self.record().sessions[index].expired = true;
        let error = self.error(
            "invalid_request_error",
            "session_expired",
            "Your session hit the maximum duration of 60 minutes.",
            None,
            None,
        );
        let _ = send(ws, &error).await;
        let frame = CloseFrame {
            code: CloseCode::Away,
            reason: "session expired".into(),
        };
        let _ = ws.close(Some(frame)).await;
    }

    /// Answers one client event: what to send at once (responses are queued).
    fn handle(&mut self, text: &str) -> Vec<Value> {
        let Ok(event) = serde_json::from_str::<Value>(text) else {
            return vec![self.error(
                "invalid_request_error",
                "invalid_json",
                "The client event is not valid JSON.",
                None,
                None,
            )];
        };
        let event_id = event["event_id"].as_str().map(str::to_owned);
        let event_id = event_id.as_deref();
        match event["type"].as_str().unwrap_or("") {
            "session.update" => vec![self.session_update(&event, event_id)],
            "conversation.item.create" => self.item_create(&event, event_id),
            "response.create" => self.response_create(event_id),
            "response.cancel" => self.response_cancel(event_id),
            other => vec![self.invalid(
                "invalid_value",
                &format!(
                    "Invalid value: '{other}'. The fake supports session.update, \
                     conversation.item.create, response.create and response.cancel."
                ),
                "type",
                event_id,
            )],
        }
    }

    fn session_update(&mut self, event: &Value, event_id: Option<&str>) -> Value {
        let Some(update) = event.get("session").filter(|s| s.is_object()) else {
            return self.invalid(
                "missing_required_parameter",
                "Missing required parameter: 'session'.",
                "session",
                event_id,
            );
        };
        match update.get("type").and_then(Value::as_str) {
            Some("realtime") => {}
            None => {
                return self.invalid(
                    "missing_required_parameter",
                    "Missing required parameter: 'session.type'.",
                    "session.type",
                    event_id,
                );
            }
            Some(other) => {
                return self.invalid(
                    "invalid_value",
                    &format!("Invalid value: '{other}'. This session is of type 'realtime'."),
                    "session.type",
                    event_id,
                );
            }
        }
        if let Some(field) = BETA_SESSION_FIELDS
            .iter()
            .find(|f| update.get(**f).is_some())
        {
            return self.invalid(
                "unknown_parameter",
                &format!("Unknown parameter: 'session.{field}'."),
                &format!("session.{field}"),
                event_id,
            );
        }
        if let Some(modalities) = update.get("output_modalities")
            && modalities != &json!(["audio"])
            && modalities != &json!(["text"])
        {
            return self.invalid(
                "invalid_value",
                "Invalid 'session.output_modalities': expected ['audio'] or ['text'].",
                "session.output_modalities",
                event_id,
            );
        }
        let output = &update["audio"]["output"];
        if let Some(format) = output.get("format") {
            if format["type"] != "audio/pcm" {
                return self.invalid(
                    "invalid_value",
                    &format!(
                        "Invalid 'session.audio.output.format.type': {}. The fake speaks \
                         'audio/pcm' only.",
                        format["type"]
                    ),
                    "session.audio.output.format.type",
                    event_id,
                );
            }
            if format.get("rate").is_some_and(|r| r != FAKE_SPEECH_RATE) {
                return self.invalid(
                    "invalid_value",
                    &format!(
                        "Invalid 'session.audio.output.format.rate': {}. Supported values are: \
                         24000.",
                        format["rate"]
                    ),
                    "session.audio.output.format.rate",
                    event_id,
                );
            }
        }
        if let Some(voice) = output.get("voice") {
            let Some(voice) = voice.as_str().filter(|v| VOICES.contains(v)) else {
                return self.invalid(
                    "invalid_value",
                    &format!(
                        "Invalid 'session.audio.output.voice': {voice}. Supported values are: {}.",
                        VOICES.join(", ")
                    ),
                    "session.audio.output.voice",
                    event_id,
                );
            };
            if self.spoke && self.session["audio"]["output"]["voice"] != voice {
                return self.invalid(
                    "cannot_update_voice",
                    "Cannot update a conversation's voice if assistant audio is present.",
                    "session.audio.output.voice",
                    event_id,
                );
            }
            self.session["audio"]["output"]["voice"] = json!(voice);
        }
        if output.get("format").is_some() {
            self.session["audio"]["output"]["format"] = json!({
                "type": "audio/pcm", "rate": FAKE_SPEECH_RATE,
            });
        }
        if let Some(instructions) = update.get("instructions") {
            let Some(instructions) = instructions.as_str() else {
                return self.invalid(
                    "invalid_type",
                    "Invalid type for 'session.instructions': expected a string.",
                    "session.instructions",
                    event_id,
                );
            };
            self.session["instructions"] = json!(instructions);
        }
        if let Some(modalities) = update.get("output_modalities") {
            self.session["output_modalities"] = modalities.clone();
        }
        {
            let index = self.index;
            let mut inner = self.record();
            let record = &mut inner.sessions[index];
            record.updates.push(update.clone());
            record.instructions = self.session["instructions"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            record.voice = self.session["audio"]["output"]["voice"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
        }
        self.event("session.updated", json!({ "session": self.session }))
    }

    fn item_create(&mut self, event: &Value, event_id: Option<&str>) -> Vec<Value> {
        let Some(item) = event.get("item").filter(|i| i.is_object()) else {
            return vec![self.invalid(
                "missing_required_parameter",
                "Missing required parameter: 'item'.",
                "item",
                event_id,
            )];
        };
        if item["type"] != "message" {
            return vec![self.invalid(
                "invalid_value",
                &format!(
                    "Invalid 'item.type': {}. The fake takes 'message' items only.",
                    item["type"]
                ),
                "item.type",
                event_id,
            )];
        }
        let role = item["role"].as_str().unwrap_or("");
        let allowed: &[&str] = match role {
            "user" => &["input_text", "input_audio"],
            "system" => &["input_text"],
            "assistant" => &["output_text", "output_audio"],
            _ => {
                return vec![self.invalid(
                    "invalid_value",
                    &format!(
                        "Invalid 'item.role': '{role}'. Supported values are: 'user', \
                         'assistant' and 'system'."
                    ),
                    "item.role",
                    event_id,
                )];
            }
        };
        let parts = item["content"].as_array().map_or(&[][..], Vec::as_slice);
        if parts.is_empty() {
            return vec![self.invalid(
                "empty_array",
                "Invalid 'item.content': empty array.",
                "item.content",
                event_id,
            )];
        }
        for (i, part) in parts.iter().enumerate() {
            let kind = part["type"].as_str().unwrap_or("");
            let text_field = if kind.ends_with("_audio") {
                "transcript"
            } else {
                "text"
            };
            if !allowed.contains(&kind) || !part[text_field].is_string() {
                return vec![self.invalid(
                    "invalid_value",
                    &format!(
                        "Invalid 'item.content[{i}]': a {role} message takes {} parts with \
                         a string '{text_field}'.",
                        allowed.join(" or ")
                    ),
                    &format!("item.content[{i}]"),
                    event_id,
                )];
            }
        }
        let mut stored = item.clone();
        if !stored["id"].is_string() {
            stored["id"] = json!(self.shared.id("item"));
        }
        stored["object"] = json!("realtime.item");
        stored["status"] = json!("completed");
        let previous = self.conversation.last().map(|i| i["id"].clone());
        self.conversation.push(stored.clone());
        let index = self.index;
        self.record().sessions[index].items.push(stored.clone());
        let fields = json!({ "previous_item_id": previous, "item": stored });
        vec![
            self.event("conversation.item.added", fields.clone()),
            self.event("conversation.item.done", fields),
        ]
    }

    fn response_create(&mut self, event_id: Option<&str>) -> Vec<Value> {
        if let Some(active) = &self.active {
            return vec![self.invalid(
                "conversation_already_has_active_response",
                &format!("Conversation already has an active response in progress: {active}."),
                "",
                event_id,
            )];
        }
        let (fault, line) = {
            let mut inner = self.record();
            inner.responses += 1;
            (inner.faults.pop_front(), inner.lines.pop_front())
        };
        if let Some(RealtimeFault::RateLimited { retry_after }) = fault {
            let seconds = retry_after.as_secs_f64();
            return vec![
                self.rate_limits(0, seconds),
                self.error(
                    "rate_limit_error",
                    "rate_limit_exceeded",
                    &format!(
                        "Rate limit reached for requests per min (RPM): Limit 100, Used 100, \
                         Requested 1. Please try again in {seconds:.3}s."
                    ),
                    None,
                    event_id,
                ),
            ];
        }
        let input = self
            .conversation
            .iter()
            .rev()
            .filter(|i| i["role"] == "user")
            .find_map(|i| i["content"][0]["text"].as_str())
            .unwrap_or("")
            .to_owned();
        let reply = line.unwrap_or_else(|| fake_reply(&input));
        let steps = self.response_steps(&reply, fault);
        self.enqueue(steps);
        Vec::new()
    }

    fn response_cancel(&mut self, event_id: Option<&str>) -> Vec<Value> {
        let Some(id) = self.active.take() else {
            return vec![self.invalid(
                "response_cancel_not_active",
                "Cancellation failed: no active response found.",
                "",
                event_id,
            )];
        };
        self.queue.clear();
        let response = json!({
            "id": id, "object": "realtime.response", "status": "cancelled",
            "status_details": { "type": "cancelled", "reason": "client_cancelled" },
            "output": [], "usage": null,
        });
        vec![self.event("response.done", json!({ "response": response }))]
    }

    fn rate_limits(&self, remaining: u64, reset_seconds: f64) -> Value {
        self.event(
            "rate_limits.updated",
            json!({ "rate_limits": [
                { "name": "requests", "limit": 100, "remaining": remaining,
                  "reset_seconds": reset_seconds },
                { "name": "tokens", "limit": 40000, "remaining": 39000, "reset_seconds": 1.5 },
            ]}),
        )
    }

    /// The events of one response saying `reply`, shaped by `fault`.
    fn response_steps(&mut self, reply: &str, fault: Option<RealtimeFault>) -> Vec<Step> {
        let response_id = self.shared.id("resp");
        let item_id = self.shared.id("item");
        self.active = Some(response_id.clone());
        self.spoke = true;
        let now = |event: Value| Step {
            after: Some(Duration::ZERO),
            action: Action::Send(event),
        };
        let format = self.session["audio"]["output"]["format"].clone();
        let voice = self.session["audio"]["output"]["voice"].clone();
        let response = |status: &str, details: Value, output: Value| {
            json!({
                "id": response_id, "object": "realtime.response", "status": status,
                "status_details": details, "output": output,
                "conversation_id": "conv_radio24_fake", "output_modalities": ["audio"],
                "max_output_tokens": "inf",
                "audio": { "output": { "format": format, "voice": voice } },
                "usage": null, "metadata": null,
            })
        };
        let item = |status: &str, transcript: Option<&str>| {
            let content = match transcript {
                Some(t) => json!([{ "type": "output_audio", "transcript": t }]),
                None => json!([]),
            };
            json!({
                "id": item_id, "object": "realtime.item", "type": "message",
                "status": status, "role": "assistant", "content": content,
            })
        };
        let at = |fields: Value| {
            let mut base = json!({
                "response_id": response_id, "item_id": item_id,
                "output_index": 0, "content_index": 0,
            });
            if let (Some(b), Value::Object(f)) = (base.as_object_mut(), fields) {
                b.extend(f);
            }
            base
        };
        let mut steps = vec![now(self.event(
            "response.created",
            json!({ "response": response("in_progress", Value::Null, json!([])) }),
        ))];
        if fault == Some(RealtimeFault::Failed) {
            let message =
                "The server had an error while processing your request. Sorry about that!";
            steps.push(now(self.error(
                "server_error",
                "server_error",
                message,
                None,
                None,
            )));
            let details = json!({
                "type": "failed",
                "error": { "type": "server_error", "code": "server_error", "message": message },
            });
            steps.push(now(self.event(
                "response.done",
                json!({ "response": response("failed", details, json!([])) }),
            )));
            steps.push(now(self.rate_limits(99, 0.6)));
            return steps;
        }
        let previous = self.conversation.last().map(|i| i["id"].clone());
        steps.push(now(self.event(
            "response.output_item.added",
            json!({ "response_id": response_id, "output_index": 0, "item": item("in_progress", None) }),
        )));
        steps.push(now(self.event(
            "conversation.item.added",
            json!({ "previous_item_id": previous, "item": item("in_progress", None) }),
        )));
        steps.push(now(self.event(
            "response.content_part.added",
            at(json!({ "part": { "type": "audio", "transcript": "" } })),
        )));
        let pcm = fake_speech(reply);
        let chunk_len = (CHUNK.as_millis() as usize * FAKE_SPEECH_RATE as usize / 1000).max(1);
        let chunks: Vec<&[i16]> = pcm.chunks(chunk_len).collect();
        let chars: Vec<char> = reply.chars().collect();
        let cut_at = match fault {
            Some(_) => (chunks.len() / 3).max(1),
            None => usize::MAX,
        };
        let mut said = 0;
        for (j, chunk) in chunks.iter().enumerate() {
            if j == cut_at {
                match fault {
                    Some(RealtimeFault::DropMidResponse) => {
                        steps.push(Step {
                            after: Some(CHUNK_INTERVAL),
                            action: Action::Drop,
                        });
                        return steps;
                    }
                    Some(RealtimeFault::Incomplete) => break,
                    _ => {}
                }
            }
            let after = match fault {
                Some(RealtimeFault::Stall { pause }) if j == cut_at => pause,
                _ if j == 0 => Some(Duration::ZERO),
                _ => Some(CHUNK_INTERVAL),
            };
            let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
            let delta = base64::engine::general_purpose::STANDARD.encode(bytes);
            steps.push(Step {
                after,
                action: Action::Send(
                    self.event("response.output_audio.delta", at(json!({ "delta": delta }))),
                ),
            });
            // The transcript keeps pace with the audio: the characters it has spoken.
            let spoken = if j + 1 == chunks.len() {
                chars.len()
            } else {
                ((j + 1) * chunk_len * chars.len()).div_ceil(pcm.len().max(1))
            };
            if spoken > said {
                let delta: String = chars[said..spoken].iter().collect();
                said = spoken;
                steps.push(now(self.event(
                    "response.output_audio_transcript.delta",
                    at(json!({ "delta": delta })),
                )));
            }
        }
        let said: String = chars[..said].iter().collect();
        let (status, details) = if fault == Some(RealtimeFault::Incomplete) {
            (
                "incomplete",
                json!({ "type": "incomplete", "reason": "max_output_tokens" }),
            )
        } else {
            ("completed", Value::Null)
        };
        steps.push(now(self.event("response.output_audio.done", at(json!({})))));
        steps.push(now(self.event(
            "response.output_audio_transcript.done",
            at(json!({ "transcript": said })),
        )));
        steps.push(now(self.event(
            "response.content_part.done",
            at(json!({ "part": { "type": "audio", "transcript": said } })),
        )));
        let done_item = item(status, Some(&said));
        steps.push(now(self.event(
            "response.output_item.done",
            json!({ "response_id": response_id, "output_index": 0, "item": done_item }),
        )));
        steps.push(now(self.event(
            "conversation.item.done",
            json!({ "previous_item_id": previous, "item": done_item }),
        )));
        steps.push(now(self.event(
            "response.done",
            json!({ "response": response(status, details, json!([done_item])) }),
        )));
        steps.push(now(self.rate_limits(99, 0.6)));
        steps
    }
}

pub(super) async fn send(
    ws: &mut WebSocketStream<TcpStream>,
    event: &Value,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    ws.send(Message::text(event.to_string())).await
}

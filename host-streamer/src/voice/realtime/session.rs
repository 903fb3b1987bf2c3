//! One Realtime session on its WebSocket: connecting (the bearer key, `session.created`,
//! then `session.update` with the voice and audio format until `session.updated`), sending
//! client events, and a reader task that forwards server events, so the socket is read
//! between cues too and an expiry or a close is noticed before the next cue relies on it.

use std::time::{Duration, Instant};

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use models::openai::{redact_keys, retry_after};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant as TokioInstant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header::AUTHORIZATION};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::delay::{Delay, Gate};
use super::events::{RateLimit, ServerEvent, classify, setup_error};
use super::turn::{After, Turn, TurnError};
use super::{OUTPUT_RATE, RealtimeConfig};
use crate::voice::{FeedWriter, VoiceError, dj};

/// How long a graceful close may take before the socket is just dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the reader task hands over: an event, or the end of the connection (last).
enum Incoming {
    Event(ServerEvent),
    Closed(String),
}

/// One open session: the write half here, the read half in a task that forwards events, so
/// the socket is read (and pings answered, and an expiry noticed) between cues too.
pub(super) struct Session {
    pub(super) id: String,
    pub(super) opened: Instant,
    /// The program block its instructions were written for.
    pub(super) block: String,
    sink: SplitSink<Socket, Message>,
    events: mpsc::UnboundedReceiver<Incoming>,
    reader: tokio::task::JoinHandle<()>,
    next_event: u64,
    /// A cue's turn is running (or was abandoned half-way).
    pub(super) in_turn: bool,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Session {
    /// Connects, waits for `session.created`, configures the session and waits for
    /// `session.updated`, all within the connect timeout.
    pub(super) async fn open(
        config: &RealtimeConfig,
        instructions: String,
        block: &str,
    ) -> Result<Session, VoiceError> {
        let limit = config.connect_timeout;
        tokio::time::timeout(limit, Session::connect(config, instructions, block))
            .await
            .unwrap_or_else(|_| {
                Err(VoiceError::Unavailable(format!(
                    "no Realtime session within {limit:?}"
                )))
            })
    }

    async fn connect(
        config: &RealtimeConfig,
        instructions: String,
        block: &str,
    ) -> Result<Session, VoiceError> {
        let mut request = config
            .session_url()
            .into_client_request()
            .map_err(|e| VoiceError::Unavailable(format!("bad Realtime URL: {e}")))?;
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", config.api_key))
            .map_err(|_| VoiceError::Unavailable("the API key is not a valid header".into()))?;
        auth.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, auth);
        // Small events matter more than throughput: no Nagle delay.
        let (socket, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
            .await
            .map_err(handshake_error)?;
        let (sink, stream) = socket.split();
        let (tx, events) = mpsc::unbounded_channel();
        let mut session = Session {
            id: String::new(),
            opened: Instant::now(),
            block: block.to_owned(),
            sink,
            events,
            reader: tokio::spawn(read_events(stream, tx)),
            next_event: 0,
            in_turn: false,
        };
        match session.events.recv().await {
            Some(Incoming::Event(ServerEvent::SessionCreated { session: info })) => {
                tracing::info!(session = %info.id, expires_at = ?info.expires_at, "Realtime session created");
                session.id = info.id;
            }
            Some(Incoming::Event(ServerEvent::Error { error })) => return Err(setup_error(&error)),
            Some(Incoming::Closed(reason)) => {
                return Err(VoiceError::Unavailable(format!(
                    "Realtime session ended before it started: {reason}"
                )));
            }
            _ => {
                return Err(VoiceError::Unavailable(
                    "the Realtime server did not start with session.created".into(),
                ));
            }
        }
        let update = json!({
            "type": "session.update",
            "session": {
                "type": "realtime",
                "instructions": instructions,
                "output_modalities": ["audio"],
                "audio": {
                    "output": {
                        "format": { "type": "audio/pcm", "rate": OUTPUT_RATE },
                        "voice": config.voice,
                    },
                },
            },
        });
        session
            .send(update, config.connect_timeout)
            .await
            .map_err(VoiceError::Unavailable)?;
        loop {
            match session.events.recv().await {
                Some(Incoming::Event(ServerEvent::SessionUpdated)) => return Ok(session),
                Some(Incoming::Event(ServerEvent::Error { error })) => {
                    return Err(setup_error(&error));
                }
                Some(Incoming::Event(_)) => {}
                Some(Incoming::Closed(reason)) => {
                    return Err(VoiceError::Unavailable(format!(
                        "Realtime session ended while being configured: {reason}"
                    )));
                }
                None => {
                    return Err(VoiceError::Unavailable(
                        "Realtime session ended while being configured".into(),
                    ));
                }
            }
        }
    }

    pub(super) async fn send(&mut self, mut event: Value, limit: Duration) -> Result<(), String> {
        self.next_event += 1;
        event["event_id"] = json!(format!("radio24_{}", self.next_event));
        match tokio::time::timeout(limit, self.sink.send(Message::text(event.to_string()))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("cannot send: {e}")),
            Err(_) => Err(format!("cannot send within {limit:?}")),
        }
    }

    /// Reads what arrived since the last cue. `Some(reason)` when the session is over
    /// (expired, closed, connection lost).
    pub(super) fn ended_between_cues(
        &mut self,
        rate_limits: &mut Vec<RateLimit>,
    ) -> Option<String> {
        loop {
            match self.events.try_recv() {
                Ok(Incoming::Event(ServerEvent::RateLimitsUpdated { rate_limits: r })) => {
                    *rate_limits = r;
                }
                Ok(Incoming::Event(ServerEvent::Error { error })) => {
                    if error.code() == "session_expired" {
                        return Some(error.describe());
                    }
                    tracing::warn!(error = %error.describe(), "Realtime error between cues");
                }
                Ok(Incoming::Event(_)) => {}
                Ok(Incoming::Closed(reason)) => return Some(reason),
                Err(mpsc::error::TryRecvError::Empty) => return None,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Some("event reader stopped".into());
                }
            }
        }
    }

    /// Says `message`: adds it as a user item, asks for a response and streams its audio into
    /// `out` through the broadcast delay of `gate` until `response.done` and the last held
    /// audio has aired. A response whose words fail moderation, or that an operator dumps,
    /// is cut: `VoiceError::Cut`, with the session kept (the response is read to its end).
    pub(super) async fn respond(
        &mut self,
        message: &str,
        out: &mut FeedWriter,
        stall: Duration,
        rate_limits: &mut Vec<RateLimit>,
        gate: &mut Gate<'_>,
    ) -> Result<String, TurnError> {
        let lost = |reason: String| TurnError {
            error: VoiceError::Unavailable(format!("Realtime session lost: {reason}")),
            after: After::Retry,
        };
        let item = json!({
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{ "type": "input_text", "text": message }],
            },
        });
        self.send(item, stall).await.map_err(lost)?;
        self.send(json!({ "type": "response.create" }), stall)
            .await
            .map_err(lost)?;
        let mut turn = Turn::default();
        let mut delay = Delay::new(gate.delay);
        // Marks the dumps made before this turn as seen: only a dump during it cuts it.
        gate.dump.borrow_and_update();
        let mut cut: Option<String> = None;
        let mut done: Option<Result<String, TurnError>> = None;
        let mut judged = 0;
        let mut began = false;
        let mut stall_at = TokioInstant::now() + stall;
        loop {
            for chunk in delay.release(TokioInstant::now()) {
                if !began {
                    out.begin();
                    began = true;
                }
                out.push_pcm16(OUTPUT_RATE, &chunk);
            }
            if done.is_some() && (delay.is_empty() || delay.is_cut()) {
                break;
            }
            let wake = delay.next_due();
            let event = tokio::select! {
                biased;
                changed = gate.dump.changed() => {
                    if changed.is_ok() && cut.is_none() {
                        let dropped = delay.cut();
                        tracing::warn!(
                            session = %self.id,
                            dropped_ms = dropped as u64 * 1000 / u64::from(OUTPUT_RATE),
                            "an operator dumped the broadcast delay"
                        );
                        cut = Some("dumped by an operator".to_owned());
                    }
                    continue;
                }
                () = tokio::time::sleep_until(wake.unwrap_or(stall_at)), if wake.is_some() => continue,
                incoming = tokio::time::timeout_at(stall_at, self.events.recv()), if done.is_none() => {
                    match incoming {
                        Ok(Some(Incoming::Event(event))) => event,
                        Ok(Some(Incoming::Closed(reason))) => return Err(turn.cut_off(reason)),
                        Ok(None) => return Err(turn.cut_off("event reader stopped".into())),
                        Err(_) => {
                            tracing::warn!(session = %self.id, ?stall, "Realtime response stalled");
                            return Err(TurnError {
                                error: VoiceError::Stalled(stall),
                                after: After::Drop,
                            });
                        }
                    }
                }
            };
            let now = TokioInstant::now();
            stall_at = now + stall;
            match event {
                ServerEvent::Error { error } if error.code() == "session_expired" => {
                    return Err(turn.cut_off(error.describe()));
                }
                ServerEvent::Error { error } => {
                    let e = classify(&error, rate_limits);
                    tracing::warn!(session = %self.id, error = %error.describe(), "Realtime error");
                    if turn.response_id.is_none() {
                        // No response to wait for: whatever the server does next with the
                        // cue's events is in doubt, so the session goes.
                        return Err(TurnError {
                            error: e,
                            after: After::Drop,
                        });
                    }
                    turn.error.get_or_insert(e);
                }
                ServerEvent::ResponseCreated { response } => {
                    turn.response_id.get_or_insert(response.id);
                }
                ServerEvent::AudioDelta { response_id, delta } if turn.ours(&response_id) => {
                    let samples = turn.audio(&delta)?;
                    delay.hold(now, samples);
                }
                ServerEvent::TranscriptDelta { response_id, delta } if turn.ours(&response_id) => {
                    turn.transcript.push_str(&delta);
                    // Judged at each sentence's end, so its audio can air on time.
                    if cut.is_none() && delta.contains(['.', '!', '?', '\n']) {
                        judged = turn.transcript.len();
                        match gate.judge(&turn.transcript).await {
                            Ok(()) => delay.clear_through(now),
                            Err(reason) => cut = Some(cut_for(&mut delay, &self.id, reason, now)),
                        }
                    }
                }
                ServerEvent::TranscriptDone {
                    response_id,
                    transcript,
                } if turn.ours(&response_id) => turn.final_transcript = Some(transcript),
                ServerEvent::ResponseDone { response } if turn.ours(&response.id) => {
                    let finished = turn.finish(&response, rate_limits);
                    if finished.is_ok() && cut.is_none() {
                        // The whole of what was said, unless the last judgement already saw it.
                        if turn.words().len() != judged || turn.final_transcript.is_some() {
                            match gate.judge(turn.words()).await {
                                Ok(()) => delay.clear_all(),
                                Err(reason) => {
                                    cut = Some(cut_for(&mut delay, &self.id, reason, now));
                                }
                            }
                        } else {
                            delay.clear_all();
                        }
                    }
                    if finished.is_err() {
                        delay.cut();
                    }
                    done = Some(finished);
                }
                ServerEvent::RateLimitsUpdated { rate_limits: r } => *rate_limits = r,
                _ => {}
            }
        }
        if let (Some(arrived), Some(aired)) = (delay.first_arrival, delay.first_release) {
            tracing::debug!(
                session = %self.id,
                delay_ms = aired.duration_since(arrived).as_millis() as u64,
                "first audio aired after the broadcast delay"
            );
        }
        let said = done.expect("the loop ends at response.done")?;
        match cut {
            Some(reason) => Err(TurnError {
                error: VoiceError::Cut(reason),
                after: After::Keep,
            }),
            None => Ok(said),
        }
    }

    pub(super) async fn close(mut self, reason: &'static str) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: reason.to_owned().into(),
        };
        let _ =
            tokio::time::timeout(CLOSE_TIMEOUT, self.sink.send(Message::Close(Some(frame)))).await;
    }
}

/// Forwards the socket's events until it ends, then says why.
async fn read_events(mut stream: SplitStream<Socket>, tx: mpsc::UnboundedSender<Incoming>) {
    let reason = loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => match serde_json::from_str(text.as_str()) {
                Ok(event) => {
                    if tx.send(Incoming::Event(event)).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "unreadable Realtime event ignored"),
            },
            Some(Ok(Message::Close(frame))) => {
                break match frame {
                    Some(f) => format!(
                        "closed by the server ({} {})",
                        u16::from(f.code),
                        f.reason.as_str()
                    ),
                    None => "closed by the server".to_owned(),
                };
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => break format!("connection lost: {e}"),
            None => break "connection ended".to_owned(),
        }
    };
    let _ = tx.send(Incoming::Closed(reason));
}

/// A failed upgrade: 401/403 is a key problem, 429 a rate limit, anything else unreachable.
fn handshake_error(e: tungstenite::Error) -> VoiceError {
    let tungstenite::Error::Http(res) = e else {
        return VoiceError::Unavailable(format!("cannot connect to the Realtime API: {e}"));
    };
    let status = res.status();
    if status.as_u16() == 429 {
        return VoiceError::RateLimited(
            retry_after(res.headers()).unwrap_or(dj::DEFAULT_RATE_LIMIT_WAIT),
        );
    }
    let body = res.body().as_deref().unwrap_or_default();
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(redact_keys))
        .unwrap_or_else(|| redact_keys(&String::from_utf8_lossy(body)));
    let message: String = message.chars().take(300).collect();
    VoiceError::Unavailable(format!(
        "Realtime API refused the connection: HTTP {status}: {message}"
    ))
}

/// Cuts `delay` for words that failed moderation, saying what and how quickly.
fn cut_for(delay: &mut Delay, session: &str, reason: String, heard: TokioInstant) -> String {
    let dropped = delay.cut();
    tracing::warn!(
        session,
        %reason,
        dropped_ms = dropped as u64 * 1000 / u64::from(OUTPUT_RATE),
        cut_after_us = heard.elapsed().as_micros() as u64,
        "the live voice's words failed moderation in the broadcast delay: cut before they aired"
    );
    reason
}

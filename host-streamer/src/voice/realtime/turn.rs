//! One response being received: Realtime audio deltas (base64 PCM16 at 24 kHz) decoded for
//! the broadcast delay, the transcript gathered beside them, and the verdict at
//! `response.done`. A failed turn also says what becomes of its session, so
//! the voice knows whether to keep it, replace it, or replace it and try the cue again.

use base64::Engine as _;

use super::events::{RateLimit, ResponseInfo, classify};
use crate::voice::VoiceError;
use crate::voice::pcm::Pcm16Decoder;

/// What becomes of the session after a failed cue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum After {
    /// Idle and sound: the server finished the response.
    Keep,
    /// In doubt (a response may still be running, the socket may be gone): replace it.
    Drop,
    /// It was gone before the response started: replace it and try the cue once more.
    Retry,
}

pub(super) struct TurnError {
    pub(super) error: VoiceError,
    pub(super) after: After,
}

/// One response being received.
#[derive(Default)]
pub(super) struct Turn {
    pub(super) response_id: Option<String>,
    pub(super) transcript: String,
    pub(super) final_transcript: Option<String>,
    samples: usize,
    pcm: Pcm16Decoder,
    /// An `error` seen while the response ran; reported at `response.done`.
    pub(super) error: Option<VoiceError>,
}

impl Turn {
    pub(super) fn ours(&self, id: &str) -> bool {
        id.is_empty() || self.response_id.as_deref().is_none_or(|r| r == id)
    }

    /// Decodes an audio delta.
    pub(super) fn audio(&mut self, delta: &str) -> Result<Vec<i16>, TurnError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(delta)
            .map_err(|e| TurnError {
                error: VoiceError::Failed(format!("undecodable audio delta: {e}")),
                after: After::Drop,
            })?;
        let samples = self.pcm.decode(&bytes).to_vec();
        self.samples += samples.len();
        Ok(samples)
    }

    /// The connection ended mid-turn.
    /// The words received so far: the final transcript once there is one.
    pub(super) fn words(&self) -> &str {
        self.final_transcript.as_deref().unwrap_or(&self.transcript)
    }

    pub(super) fn cut_off(&self, reason: String) -> TurnError {
        if self.response_id.is_none() && self.samples == 0 {
            TurnError {
                error: VoiceError::Unavailable(format!("Realtime session lost: {reason}")),
                after: After::Retry,
            }
        } else {
            TurnError {
                error: VoiceError::Failed(format!("Realtime response cut off: {reason}")),
                after: After::Drop,
            }
        }
    }

    /// The words said, or why the response failed.
    pub(super) fn finish(
        &mut self,
        response: &ResponseInfo,
        rate_limits: &[RateLimit],
    ) -> Result<String, TurnError> {
        let fail = |error| {
            Err(TurnError {
                error,
                after: After::Keep,
            })
        };
        if response.status != "completed" {
            if let Some(e) = self.error.take() {
                return fail(e);
            }
            let details = response.status_details.as_ref();
            if let Some(e) = details.and_then(|d| d.error.as_ref()) {
                return fail(classify(e, rate_limits));
            }
            let reason = details
                .and_then(|d| d.reason.as_deref())
                .map(|r| format!(" ({r})"))
                .unwrap_or_default();
            return fail(VoiceError::Failed(format!(
                "Realtime response {}{reason}",
                response.status
            )));
        }
        if self.samples == 0 {
            return fail(VoiceError::Failed(
                "Realtime response completed without audio".into(),
            ));
        }
        let said = self
            .final_transcript
            .take()
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| std::mem::take(&mut self.transcript));
        Ok(said.trim().to_owned())
    }
}

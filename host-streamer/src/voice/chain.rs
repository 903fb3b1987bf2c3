//! Voices in order of preference. A cue goes to the first voice that is not cooling down;
//! if it fails, what it wrote is dropped and the next voice says the cue from the start.
//! A voice that failed is skipped for a while (longer when rate limited), so a broken
//! primary does not add its timeout to every cue.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::screen::SAFE_LINE;
use super::{Cue, FeedWriter, Voice, VoiceError};
use crate::metrics::Metrics;

/// How long a voice that failed is skipped.
pub const COOL_DOWN: Duration = Duration::from_secs(30);

/// What was said, by which voice.
#[derive(Debug, Clone, PartialEq)]
pub struct Spoken {
    pub voice: &'static str,
    pub transcript: String,
}

pub struct VoiceChain {
    voices: Vec<Arc<dyn Voice>>,
    /// Per voice: skipped until then.
    resting_until: Mutex<Vec<Option<Instant>>>,
    metrics: Arc<Metrics>,
}

impl VoiceChain {
    pub fn new(voices: Vec<Arc<dyn Voice>>, metrics: Arc<Metrics>) -> Self {
        assert!(!voices.is_empty(), "a voice chain needs a voice");
        VoiceChain {
            resting_until: Mutex::new(vec![None; voices.len()]),
            voices,
            metrics,
        }
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.voices.iter().map(|v| v.name()).collect()
    }

    /// Speaks `cue` with the first voice that manages to; the last error if none did.
    pub async fn speak(&self, cue: &Cue, out: &mut FeedWriter) -> Result<Spoken, VoiceError> {
        let mut last_error = None;
        let last = self.voices.len() - 1;
        for (i, voice) in self.voices.iter().enumerate() {
            let resting = self.rest_state()[i].is_some_and(|until| Instant::now() < until);
            // The last voice is always tried: there is nothing after it.
            if resting && i < last {
                continue;
            }
            out.begin();
            match voice.speak(cue, out).await {
                Ok(transcript) => {
                    out.end();
                    self.rest_state()[i] = None;
                    return Ok(Spoken {
                        voice: voice.name(),
                        transcript,
                    });
                }
                Err(VoiceError::Cut(reason)) => {
                    // Its words failed moderation in the broadcast delay (or an operator
                    // dumped them): what was held never aired, and the voice is sound. A
                    // safe line follows, from the last voice (offline, moderated too).
                    tracing::warn!(voice = voice.name(), block = %cue.block, %reason, "cut in the broadcast delay; a safe line airs instead");
                    Metrics::add(&self.metrics.dj_lines_replaced, 1);
                    out.end();
                    out.begin();
                    let safe = Cue {
                        block: cue.block.clone(),
                        script: SAFE_LINE.to_owned(),
                        ..Cue::default()
                    };
                    let voice = &self.voices[last];
                    return match voice.speak(&safe, out).await {
                        Ok(transcript) => {
                            out.end();
                            Ok(Spoken {
                                voice: voice.name(),
                                transcript,
                            })
                        }
                        Err(e) => {
                            out.abandon();
                            Err(e)
                        }
                    };
                }
                Err(e) => {
                    out.abandon();
                    Metrics::add(&self.metrics.voice_failures, 1);
                    let rest = match &e {
                        VoiceError::RateLimited(after) => (*after).max(COOL_DOWN),
                        _ => COOL_DOWN,
                    };
                    tracing::warn!(voice = voice.name(), block = %cue.block, error = %e, rest_s = rest.as_secs(), "voice failed; the next voice takes the cue");
                    self.rest_state()[i] = Some(Instant::now() + rest);
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| VoiceError::Unavailable("no voice".into())))
    }

    fn rest_state(&self) -> std::sync::MutexGuard<'_, Vec<Option<Instant>>> {
        self.resting_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::audio::feed::channel;

    struct Scripted {
        name: &'static str,
        fail: bool,
        calls: AtomicU32,
        cut: bool,
    }

    #[async_trait::async_trait]
    impl Voice for Scripted {
        fn name(&self) -> &'static str {
            self.name
        }

        async fn speak(&self, cue: &Cue, out: &mut FeedWriter) -> Result<String, VoiceError> {
            self.calls.fetch_add(1, Ordering::Relaxed);
            out.push_pcm16(24_000, &[500; 2_400]);
            if self.cut {
                Err(VoiceError::Cut("flagged: violence".into()))
            } else if self.fail {
                Err(VoiceError::Failed("scripted".into()))
            } else if cue.prompt.is_empty() {
                Ok(format!("{} said {}", self.name, cue.script))
            } else {
                Ok(format!("{} said {}", self.name, cue.prompt))
            }
        }
    }

    fn voice(name: &'static str, fail: bool) -> Arc<Scripted> {
        Arc::new(Scripted {
            name,
            fail,
            calls: AtomicU32::new(0),
            cut: false,
        })
    }

    #[tokio::test]
    async fn a_cut_in_the_delay_airs_the_safe_line_in_the_last_voice_and_no_one_rests() {
        let primary = Arc::new(Scripted {
            name: "realtime",
            fail: false,
            calls: AtomicU32::new(0),
            cut: true,
        });
        let (middle, last) = (voice("rest", false), voice("local", false));
        let metrics = Arc::new(Metrics::default());
        let chain = VoiceChain::new(
            vec![primary.clone(), middle.clone(), last.clone()],
            metrics.clone(),
        );
        let (mut writer, _source) = channel("voice");
        let cue = Cue {
            prompt: "hello".into(),
            ..Cue::default()
        };
        let spoken = chain.speak(&cue, &mut writer).await.unwrap();
        assert_eq!(spoken.voice, "local");
        assert_eq!(spoken.transcript, format!("local said {SAFE_LINE}"));
        assert_eq!(middle.calls.load(Ordering::Relaxed), 0);
        assert_eq!(metrics.dj_lines_replaced.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.voice_failures.load(Ordering::Relaxed), 0);
        chain.speak(&cue, &mut writer).await.unwrap();
        assert_eq!(primary.calls.load(Ordering::Relaxed), 2, "not resting");
    }

    #[tokio::test]
    async fn a_failing_voice_hands_the_cue_on_and_rests() {
        let (primary, backup) = (voice("realtime", true), voice("local", false));
        let metrics = Arc::new(Metrics::default());
        let chain = VoiceChain::new(vec![primary.clone(), backup.clone()], metrics.clone());
        let (mut writer, _source) = channel("voice");
        let cue = Cue {
            prompt: "hello".into(),
            ..Cue::default()
        };
        let spoken = chain.speak(&cue, &mut writer).await.unwrap();
        assert_eq!(spoken.voice, "local");
        assert_eq!(spoken.transcript, "local said hello");
        // Only the backup's 100 ms is queued: the primary's partial audio was dropped.
        assert_eq!(writer.queued(), Duration::from_millis(100));
        chain.speak(&cue, &mut writer).await.unwrap();
        assert_eq!(primary.calls.load(Ordering::Relaxed), 1, "resting");
        assert_eq!(backup.calls.load(Ordering::Relaxed), 2);
        assert_eq!(metrics.voice_failures.load(Ordering::Relaxed), 1);
    }
}

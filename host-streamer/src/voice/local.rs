//! The offline voice: espeak-ng speaking the cue's template script. Robotic, but it needs
//! no network, no key and no model download, so it is the embedded default and the last
//! voice of every chain.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use media::decode::decode_at;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::screen::Screen;
use super::{Cue, FeedWriter, Voice, VoiceError};
use crate::audio::SAMPLE_RATE;

/// Longest script the local voice speaks (about 5 minutes of speech).
const MAX_SCRIPT_CHARS: usize = 4_000;

#[derive(Debug, Clone, PartialEq)]
pub struct LocalVoiceConfig {
    /// The espeak-ng binary.
    pub program: String,
    /// espeak-ng voice, e.g. `en-us`.
    pub voice: String,
    /// Words per minute.
    pub speed: u32,
    /// Longest synthesis may take.
    pub timeout: Duration,
}

impl Default for LocalVoiceConfig {
    fn default() -> Self {
        LocalVoiceConfig {
            program: "espeak-ng".into(),
            voice: "en-us".into(),
            speed: 165,
            timeout: Duration::from_secs(30),
        }
    }
}

impl LocalVoiceConfig {
    pub fn from_env(env: &shared::config::Env) -> Result<Self, shared::config::ConfigError> {
        let d = LocalVoiceConfig::default();
        Ok(LocalVoiceConfig {
            program: env.or("ESPEAK_PROGRAM", d.program)?,
            voice: env.or("ESPEAK_VOICE", d.voice)?,
            speed: env.or("ESPEAK_SPEED", d.speed)?,
            timeout: d.timeout,
        })
    }
}

#[derive(Clone)]
pub struct LocalVoice {
    config: LocalVoiceConfig,
    screen: Arc<Screen>,
}

impl LocalVoice {
    /// `screen` moderates each script before it is synthesised.
    pub fn new(config: LocalVoiceConfig, screen: Arc<Screen>) -> Self {
        LocalVoice { config, screen }
    }

    /// Synthesises `text` to 48 kHz mono.
    pub async fn synthesise(&self, text: &str) -> Result<Vec<f32>, VoiceError> {
        let text: String = text.chars().take(MAX_SCRIPT_CHARS).collect();
        let mut child = Command::new(&self.config.program)
            .args([
                "-v",
                &self.config.voice,
                "-s",
                &self.config.speed.to_string(),
            ])
            .arg("--stdout")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                VoiceError::Unavailable(format!("cannot run {}: {e}", self.config.program))
            })?;
        // The text goes through stdin: no argument parsing of listener-influenced text.
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let write = async move {
            stdin.write_all(text.as_bytes()).await?;
            stdin.shutdown().await
        };
        let run = async {
            let (written, output) = tokio::join!(write, child.wait_with_output());
            written.and(output)
        };
        let output = tokio::time::timeout(self.config.timeout, run)
            .await
            .map_err(|_| VoiceError::Stalled(self.config.timeout))?
            .map_err(|e| VoiceError::Failed(format!("espeak-ng: {e}")))?;
        if !output.status.success() {
            return Err(VoiceError::Failed(format!(
                "espeak-ng exited with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let wav = output.stdout;
        tokio::task::spawn_blocking(move || decode_at(&wav, Duration::from_secs(600), SAMPLE_RATE))
            .await
            .map_err(|e| VoiceError::Failed(format!("decoding espeak-ng output: {e}")))?
            .map(|audio| audio.samples)
            .map_err(|e| VoiceError::Failed(format!("espeak-ng output: {e}")))
    }
}

#[async_trait::async_trait]
impl Voice for LocalVoice {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn speak(&self, cue: &Cue, out: &mut FeedWriter) -> Result<String, VoiceError> {
        let script = if cue.script.trim().is_empty() {
            &cue.prompt
        } else {
            &cue.script
        };
        let script = self.screen.line(cue, script).await;
        let samples = self.synthesise(&script).await?;
        out.push_f32(SAMPLE_RATE, &samples);
        Ok(script)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::feed::channel;
    use crate::audio::{Frame, Pull, Source};

    fn screen() -> Arc<Screen> {
        Arc::new(Screen::words_only(Arc::default()))
    }

    #[tokio::test]
    async fn espeak_speaks_the_script_at_48_khz() {
        let voice = LocalVoice::new(LocalVoiceConfig::default(), screen());
        let (mut writer, mut source) = channel("voice");
        let cue = Cue {
            script: "-v This is Radio 24, on the air.".into(),
            ..Cue::default()
        };
        writer.begin();
        let said = voice.speak(&cue, &mut writer).await.unwrap();
        writer.end();
        assert_eq!(said, cue.script, "a leading dash is text, not an option");
        let seconds = writer.queued().as_secs_f32();
        assert!((1.0..6.0).contains(&seconds), "{seconds} s");
        let mut frame = Frame::silent();
        let mut loudest = f32::NEG_INFINITY;
        while source.fill(&mut frame) == Pull::Audio {
            loudest = loudest.max(frame.rms_dbfs());
        }
        assert!(loudest > -30.0, "{loudest} dBFS");
    }

    #[tokio::test]
    async fn a_missing_program_is_unavailable() {
        let voice = LocalVoice::new(
            LocalVoiceConfig {
                program: "radio24-no-such-espeak".into(),
                ..LocalVoiceConfig::default()
            },
            screen(),
        );
        let (mut writer, _source) = channel("voice");
        let err = voice.speak(&Cue::default(), &mut writer).await.unwrap_err();
        assert!(matches!(err, VoiceError::Unavailable(_)), "{err}");
    }

    #[tokio::test]
    async fn a_script_that_fails_moderation_is_never_synthesised() {
        let metrics: Arc<crate::metrics::Metrics> = Arc::default();
        let voice = LocalVoice::new(
            LocalVoiceConfig::default(),
            Arc::new(Screen::words_only(metrics.clone())),
        );
        let (mut writer, _source) = channel("voice");
        let cue = Cue {
            script: "A listener writes: I am going to bomb your station tonight.".into(),
            ..Cue::default()
        };
        let said = voice.speak(&cue, &mut writer).await.unwrap();
        assert_eq!(said, super::super::screen::SAFE_LINE);
        assert_eq!(
            metrics
                .dj_lines_replaced
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }
}

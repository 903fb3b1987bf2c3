//! Decoding uploaded audio to what speech models take: mono `f32` samples at 16 kHz.
//!
//! Decoding is "walk and decode": the container's reader in [`crate::container`] (the
//! same one [`crate::probe`] walks) hands over the packets, PCM frames for WAV; their
//! summed duration is checked against the limit before any sample is decoded, then the
//! packets are decoded. The bytes are walked once; nothing is probed and re-parsed. So it
//! accepts exactly what the prober accepts (WAV PCM/float, Ogg/Opus, WebM or Matroska Opus
//! including browsers' `MediaRecorder` output, MP3) and refuses with the prober's error.
//!
//! Hostile input: the readers only slice the upload; the packets collected here are
//! slices of it (or, for Ogg packets spanning pages, joined copies bounded by its size).
//! Decoded audio is capped at the duration limit while it is produced, so a header that
//! under-reports cannot make decoding run away. Opus packets go to the system libopus, MP3
//! frames to symphonia's decoder.

mod mp3;
mod ogg;
mod opus;
mod wav;
mod webm;

use std::time::Duration;

use crate::container::sniff;
use crate::format::{AudioFormat, AudioInfo, ProbeError};

use crate::resample::resample;

/// The rate of every decoded signal: what Whisper and most speech models take.
pub const SAMPLE_RATE: u32 = 16_000;

/// Longest audio [`decode`] accepts unless told otherwise: push-to-talk messages are short,
/// and transcription time grows with length.
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(10 * 60);

/// Input sample rates outside this range are refused rather than resampled: nothing real
/// records at 1 kHz or 1 MHz, and the resampler's cost grows with the input rate.
const MIN_INPUT_RATE: u32 = 4_000;
const MAX_INPUT_RATE: u32 = 192_000;

/// Decoded audio, mono at [`DecodedAudio::rate`] ([`SAMPLE_RATE`] from [`decode`]).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    pub samples: Vec<f32>,
    pub rate: u32,
    /// The container and codec the bytes held.
    pub format: AudioFormat,
}

impl DecodedAudio {
    /// Length of [`Self::samples`].
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.samples.len() as f64 / f64::from(self.rate))
    }
}

/// Why bytes could not be decoded. Every message is written for the person who sent the
/// audio.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// The container reader refused the bytes (unknown format, other codec, cut-off
    /// headers), as the prober does.
    #[error("{0}")]
    Format(#[from] ProbeError),
    #[error("the recording is {} long; at most {} is accepted", minutes(*.duration), minutes(*.max))]
    TooLong { duration: Duration, max: Duration },
    /// Allowed container and codec, but the audio inside cannot be decoded.
    #[error("the audio could not be decoded: {0}")]
    Corrupt(String),
    /// Allowed but unusual parameters (sample rate, channel layout).
    #[error("unsupported audio: {0}")]
    Unsupported(String),
    #[error("the recording contains no audio")]
    Empty,
}

/// Decodes `bytes` to mono `f32` at [`SAMPLE_RATE`], refusing audio longer than `max`.
///
/// CPU-bound (about 0.2% of real time for Opus): call it off the async runtime's workers.
pub fn decode(bytes: &[u8], max: Duration) -> Result<DecodedAudio, DecodeError> {
    decode_at(bytes, max, SAMPLE_RATE)
}

/// Decodes `bytes` to mono `f32` at `rate` Hz (the on-air engine takes 48 kHz).
pub fn decode_at(bytes: &[u8], max: Duration, rate: u32) -> Result<DecodedAudio, DecodeError> {
    let out_rate = rate;
    let format = sniff(bytes).ok_or(ProbeError::Unrecognised)?;
    let limit = Limit { max };
    let (samples, rate) = match format {
        AudioFormat::Wav => wav::decode(bytes, limit)?,
        AudioFormat::OggOpus => opus::decode(ogg::demux(bytes)?, limit)?,
        AudioFormat::WebmOpus => opus::decode(webm::demux(bytes)?, limit)?,
        AudioFormat::Mp3 => mp3::decode(bytes, limit)?,
    };
    if samples.is_empty() {
        return Err(DecodeError::Empty);
    }
    check_rate(rate)?;
    Ok(DecodedAudio {
        samples: resample(&samples, rate, out_rate),
        rate: out_rate,
        format,
    })
}

fn check_rate(rate: u32) -> Result<(), DecodeError> {
    if (MIN_INPUT_RATE..=MAX_INPUT_RATE).contains(&rate) {
        Ok(())
    } else {
        Err(DecodeError::Unsupported(format!(
            "a sample rate of {rate} Hz (accepted: {MIN_INPUT_RATE} to {MAX_INPUT_RATE} Hz)"
        )))
    }
}

/// The duration limit as the decoders apply it while they produce samples.
#[derive(Debug, Clone, Copy)]
struct Limit {
    max: Duration,
}

impl Limit {
    /// What the reader measured, before anything is decoded: `Err(TooLong)` past `max`,
    /// `Err(Unsupported)` for a sample rate outside the accepted range.
    fn admit(self, info: &AudioInfo) -> Result<(), DecodeError> {
        if info.duration > self.max {
            return Err(DecodeError::TooLong {
                duration: info.duration,
                max: self.max,
            });
        }
        // WAV and MP3 say their rate up front (Opus is always 48 kHz).
        if let Some(rate) = info.sample_rate {
            check_rate(rate)?;
        }
        Ok(())
    }

    /// `Err(TooLong)` once a decoder holds more than `max` (plus a second of slack for codec
    /// delay and rounding between the probe's measure and the decoder's) at `rate`.
    fn check(self, rate: u32, samples: usize) -> Result<(), DecodeError> {
        let allowed = (self.max.as_secs_f64() + 1.0) * f64::from(rate);
        if samples as f64 > allowed {
            return Err(DecodeError::TooLong {
                duration: Duration::from_secs_f64(samples as f64 / f64::from(rate.max(1))),
                max: self.max,
            });
        }
        Ok(())
    }
}

/// Averages interleaved frames of `channels` samples into `out`.
fn push_downmixed(out: &mut Vec<f32>, interleaved: impl Iterator<Item = f32>, channels: usize) {
    let scale = 1.0 / channels as f32;
    let mut acc = 0.0;
    for (i, s) in interleaved.enumerate() {
        acc += s;
        if (i + 1) % channels == 0 {
            out.push(acc * scale);
            acc = 0.0;
        }
    }
}

/// `1 min 30 s`, `45 s`, for messages.
fn minutes(d: Duration) -> String {
    let secs = d.as_secs();
    match (secs / 60, secs % 60) {
        (0, s) => format!("{s} s"),
        (m, 0) => format!("{m} min"),
        (m, s) => format!("{m} min {s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downmix_averages_frames_and_drops_a_partial_one() {
        let mut out = Vec::new();
        push_downmixed(&mut out, [1.0, 0.0, 0.5, 0.5, 9.0].into_iter(), 2);
        assert_eq!(out, vec![0.5, 0.5]);
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(minutes(Duration::from_secs(45)), "45 s");
        assert_eq!(minutes(Duration::from_secs(600)), "10 min");
        assert_eq!(minutes(Duration::from_secs(754)), "12 min 34 s");
    }

    #[test]
    fn garbage_is_refused_by_the_probe() {
        let err = decode(b"definitely not audio", DEFAULT_MAX_DURATION).unwrap_err();
        assert_eq!(err, DecodeError::Format(ProbeError::Unrecognised));
    }

    /// Every accepted fixture, walked once and decoded.
    #[test]
    fn every_accepted_fixture_decodes_to_its_probed_length() {
        macro_rules! fixtures {
            ($($name:literal),*) => {
                [$(($name, &include_bytes!(concat!("../../tests/fixtures/audio/", $name))[..])),*]
            };
        }
        let fixtures = fixtures!(
            "speech_16k_s16.wav",
            "speech_8k_s24.wav",
            "tone_8k_f32.wav",
            "speech.webm",
            "speech_live.webm",
            "speech_streamable.webm",
            "speech_opus.mka",
            "speech.ogg",
            "speech.mp3",
            "speech_noxing.mp3"
        );
        for (name, bytes) in fixtures {
            let info = crate::probe::probe(bytes).unwrap();
            let decoded =
                decode(bytes, DEFAULT_MAX_DURATION).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(decoded.format, info.format, "{name}");
            let diff = (decoded.duration().as_secs_f64() - info.duration.as_secs_f64()).abs();
            assert!(
                diff < 0.06,
                "{name}: decoded {:?}, probed {:?}",
                decoded.duration(),
                info.duration
            );
            assert!(
                decoded.samples.iter().any(|s| s.abs() > 0.01),
                "{name} is silent"
            );
        }
    }

    #[test]
    fn a_recording_over_the_limit_is_refused_before_decoding() {
        let bytes = include_bytes!("../../tests/fixtures/audio/speech.ogg");
        let err = decode(bytes, Duration::from_secs(1)).unwrap_err();
        assert!(
            matches!(err, DecodeError::TooLong { duration, .. } if duration > Duration::from_secs(1))
        );
    }

    #[test]
    fn refused_containers_give_the_probers_reason() {
        let bytes = include_bytes!("../../tests/fixtures/audio/vorbis.webm");
        let err = decode(bytes, DEFAULT_MAX_DURATION).unwrap_err();
        assert_eq!(
            err,
            DecodeError::Format(crate::probe::probe(bytes).unwrap_err())
        );
    }
}

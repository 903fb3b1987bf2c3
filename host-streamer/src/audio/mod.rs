//! The audio engine's core, after Liquidsoap's source model: sources that may fail to
//! deliver, composed under fallbacks into an output that cannot; and a watchdog that
//! listens to the final mix, not to what inputs claim about themselves.
//!
//! Audio is 48 kHz stereo f32, in fixed 20 ms frames (960 sample pairs, interleaved).

pub mod air;
pub mod declick;
pub mod duck;
pub mod engine;
pub mod feed;
pub mod frame;
pub mod lineup;
pub mod loudness;
pub mod pace;
pub mod source;
pub mod synth;
pub mod watchdog;

pub use duck::{Ducking, DuckingConfig};
pub use engine::{Engine, EngineStats};
pub use frame::{CHANNELS, FRAME_DURATION, FRAME_LEN, FRAME_SAMPLES, Frame, SAMPLE_RATE};
pub use lineup::LineUp;
pub use loudness::{LoudnessConfig, Normalizer};
pub use pace::{Pacer, Pacing, Tick};
pub use source::{Fallback, Pull, Source, Tone};
pub use synth::Pad;
pub use watchdog::{SilenceWatchdog, WatchdogConfig};

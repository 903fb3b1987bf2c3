//! The station's source graph, in one place:
//!
//! ```text
//! output  = engine( normalise( duck( speech, bed ) ), emergency pad )   + silence watchdog
//! speech  = fallback( caller recordings and jingles, DJ voice )
//! bed     = fallback( music from the library, generated pad )
//! ```
//!
//! The director writes into the caller, DJ and music feeds; everything else runs by itself.
//!
//! `PROGRAM=lineup` airs the line-up tone instead (no director), to check the chain to the
//! listeners: `output = engine( line-up tone, emergency pad ) + silence watchdog`.

use crate::audio::feed::channel;
use crate::audio::{
    Ducking, DuckingConfig, Engine, Fallback, LineUp, LoudnessConfig, Pad, WatchdogConfig,
};
use crate::on_air::Feeds;

/// What goes on air (`PROGRAM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Program {
    /// The station: schedule, DJ, listeners, music.
    #[default]
    Station,
    /// The line-up tone, for checking the chain end to end.
    LineUp,
}

impl std::str::FromStr for Program {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "station" => Ok(Program::Station),
            "lineup" => Ok(Program::LineUp),
            _ => Err("expected station or lineup".to_owned()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AudioConfig {
    pub watchdog: WatchdogConfig,
    pub loudness: LoudnessConfig,
    pub ducking: DuckingConfig,
}

impl AudioConfig {
    pub fn from_env(env: &shared::config::Env) -> Result<Self, shared::config::ConfigError> {
        let d = AudioConfig::default();
        Ok(AudioConfig {
            watchdog: WatchdogConfig {
                threshold_dbfs: env.or("SILENCE_THRESHOLD_DBFS", d.watchdog.threshold_dbfs)?,
                max_silence: env.duration_or("SILENCE_MAX", d.watchdog.max_silence)?,
            },
            loudness: LoudnessConfig {
                target_lufs: env.or("LOUDNESS_TARGET_LUFS", d.loudness.target_lufs)?,
                ..d.loudness
            },
            ducking: DuckingConfig {
                depth_db: env.or("DUCK_DEPTH_DB", d.ducking.depth_db)?,
                ..d.ducking
            },
        })
    }
}

/// Builds the graph; returns the engine (for the air thread) and the feeds (for the
/// director).
pub fn build(config: &AudioConfig) -> (Engine, Feeds) {
    let (dj, dj_source) = channel("dj");
    let (caller, caller_source) = channel("caller");
    let (music, music_source) = channel("music");
    let speech = Fallback::new("speech", vec![Box::new(caller_source), Box::new(dj_source)]);
    let bed = Fallback::new(
        "bed",
        vec![
            Box::new(music_source),
            Box::new(Pad::new("pad", 110.0, 0.25)),
        ],
    );
    let program = Ducking::new(Box::new(speech), Box::new(bed), config.ducking);
    let engine = Engine::new(
        Box::new(program),
        Box::new(Pad::new("emergency", 146.83, 0.2)),
        config.watchdog,
    )
    .with_loudness(config.loudness);
    (engine, Feeds { dj, caller, music })
}

/// The line-up graph: the tone at its alignment level (not levelled by the normaliser),
/// still under the watchdog and the emergency source.
pub fn build_lineup(config: &AudioConfig) -> Engine {
    Engine::new(
        Box::new(LineUp::new()),
        Box::new(Pad::new("emergency", 146.83, 0.2)),
        config.watchdog,
    )
}

//! host-streamer's configuration, validated at start-up; every error names its variable.

use std::net::IpAddr;
use std::time::Duration;

use models::moderation::Policy;
use models::openai::OpenAiConfig;
use models::provider::Provider;
use shared::bus::BusConfig;
use shared::config::{ConfigError, Env};
use shared::db::DbConfig;
use shared::message::Event;
use shared::operator::OperatorAuth;
use shared::outbox::RelayConfig;
use shared::sweeper::SweeperConfig;

use crate::livekit::PublisherConfig;
use crate::output::OutputConfig;
use crate::program::{AudioConfig, Program};
use crate::voice::local::LocalVoiceConfig;
use crate::voice::{RealtimeConfig, RestConfig};

/// The voices a chain can be made of (`DJ_VOICES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VoiceKind {
    /// OpenAI Realtime over WebSocket.
    Realtime,
    /// OpenAI chat completion + text-to-speech.
    Rest,
    /// espeak-ng with template scripts.
    Local,
}

impl VoiceKind {
    fn parse(s: &str) -> Option<VoiceKind> {
        match s.trim() {
            "realtime" => Some(VoiceKind::Realtime),
            "rest" => Some(VoiceKind::Rest),
            "local" => Some(VoiceKind::Local),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub db: DbConfig,
    pub bus: BusConfig,
    /// `CHANNEL_ID`: the station this process streams.
    pub channel: String,
    /// `STATION_NAME`: how the DJ names the station.
    pub station_name: String,
    pub ready_topic: String,
    /// `READY_SUBSCRIPTION`: the streaming-pull subscription on `submission-ready`.
    pub ready_subscription: String,
    /// `UPLOADS_URL`: where ingest stored the recordings.
    pub uploads_url: String,
    /// `RECORDINGS_URL`: where the on-air recordings go (default: the uploads store).
    pub recordings_url: String,
    /// `LIBRARY_URL`: music and jingles with an `index.txt` (none: the generated bed).
    pub library_url: Option<String>,
    pub gcs_endpoint: Option<String>,
    /// `DJ_VOICES`: the voice chain in order; `local` always ends it.
    pub voices: Vec<VoiceKind>,
    pub local_voice: LocalVoiceConfig,
    pub openai: Option<OpenAiConfig>,
    /// `MODERATION_PROVIDER`: who moderates the DJ's own lines before they are spoken.
    pub moderation: Provider,
    /// `MODERATION_THRESHOLDS`: the policy those lines must pass (anything but an approval
    /// is replaced by a safe line).
    pub moderation_policy: Policy,
    /// `OPENAI_REALTIME_*`, `REALTIME_*`, `DJ_VOICE_NAME`, `DJ_PERSONA`; with a key only.
    pub realtime: Option<RealtimeConfig>,
    /// `OPENAI_CHAT_MODEL`, `OPENAI_TTS_MODEL`, `OPENAI_SPEECH_STALL_TIMEOUT`.
    pub rest: RestConfig,
    /// `DJ_TALK_INTERVAL`: how often the DJ speaks up when a block has nothing to play.
    pub talk_interval: Duration,
    pub audio: AudioConfig,
    /// `PROGRAM`: the station, or the line-up tone.
    pub program: Program,
    /// `LIVEKIT_*`: the room the station publishes into; `None` for HTTP only.
    pub livekit: Option<PublisherConfig>,
    /// `STREAM_BITRATE`, `RECORDING_SEGMENT`, `RECORDING_SPOOL_DIR`.
    pub output: OutputConfig,
    /// `OUTBOX_RELAY`: this always-on process also publishes what request-billed services
    /// left in the outbox.
    pub outbox_relay: Option<RelayConfig>,
    /// `OPERATOR_*`: who may press the dump button (`POST /v1/dump`).
    pub operators: OperatorAuth,
    /// `SWEEP_AFTER`, `SWEEP_INTERVAL`: re-announcing submissions stuck between stages.
    pub sweeper: SweeperConfig,
    /// `SHUTDOWN_GRACE`: how long the recorder and tasks get to finish after SIGTERM.
    pub shutdown_grace: Duration,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let openai = OpenAiConfig::from_env(env)?;
        let voices = voices(env, openai.is_some())?;
        let channel: String = env.or("CHANNEL_ID", "main".to_owned())?;
        let uploads_url: String = env.required("UPLOADS_URL")?;
        let station_name: String = env.or("STATION_NAME", "Radio24".to_owned())?;
        Ok(Config {
            host: env.or("HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: env.or("PORT", 8080)?,
            db: DbConfig::from_env(env)?,
            bus: BusConfig::from_env(env)?,
            livekit: PublisherConfig::from_env(env, &station_name)?,
            station_name,
            ready_topic: Event::Ready.topic(env)?,
            ready_subscription: env.or(
                "READY_SUBSCRIPTION",
                format!("{}-streamer", Event::Ready.default_topic()),
            )?,
            recordings_url: env.or("RECORDINGS_URL", uploads_url.clone())?,
            uploads_url,
            library_url: env.optional("LIBRARY_URL")?,
            gcs_endpoint: env.optional("STORAGE_EMULATOR_HOST")?,
            voices,
            local_voice: LocalVoiceConfig::from_env(env)?,
            realtime: RealtimeConfig::from_env(env)?,
            rest: RestConfig::from_env(env)?,
            moderation: Provider::from_env(env, "MODERATION_PROVIDER", openai.as_ref())?,
            moderation_policy: Policy::from_env(env)?,
            openai,
            talk_interval: env.duration_or("DJ_TALK_INTERVAL", Duration::from_secs(180))?,
            audio: AudioConfig::from_env(env)?,
            program: env.or("PROGRAM", Program::Station)?,
            output: {
                let mut output = OutputConfig::from_env(env)?;
                output.recording.channel = channel.clone();
                output
            },
            outbox_relay: if env.flag_or("OUTBOX_RELAY", true)? {
                Some(RelayConfig::from_env(env)?)
            } else {
                None
            },
            operators: OperatorAuth::from_env(env)?,
            sweeper: SweeperConfig::from_env(env)?,
            shutdown_grace: env.duration_or("SHUTDOWN_GRACE", Duration::from_secs(8))?,
            channel,
        })
    }
}

/// `DJ_VOICES`, default `realtime,rest,local` with an OpenAI key and `local` without.
fn voices(env: &Env, has_key: bool) -> Result<Vec<VoiceKind>, ConfigError> {
    let default = if has_key {
        "realtime,rest,local"
    } else {
        "local"
    };
    let raw = env.raw("DJ_VOICES").unwrap_or(default);
    let mut voices = Vec::new();
    for name in raw.split(',').filter(|n| !n.trim().is_empty()) {
        let kind = VoiceKind::parse(name).ok_or_else(|| {
            ConfigError::invalid(
                "DJ_VOICES",
                raw,
                format!("unknown voice {name:?} (realtime, rest, local)"),
            )
        })?;
        if kind != VoiceKind::Local && !has_key {
            return Err(ConfigError::invalid(
                "DJ_VOICES",
                raw,
                format!("{name} needs OPENAI_API_KEY"),
            ));
        }
        if !voices.contains(&kind) {
            voices.push(kind);
        }
    }
    // The offline voice always ends the chain: it cannot be rate limited or disconnected.
    voices.retain(|v| *v != VoiceKind::Local);
    voices.push(VoiceKind::Local);
    Ok(voices)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chain_always_ends_with_the_local_voice() {
        let env = Env::from_pairs([("DJ_VOICES", "local,rest"), ("OPENAI_API_KEY", "sk-x")]);
        assert_eq!(
            voices(&env, true).unwrap(),
            vec![VoiceKind::Rest, VoiceKind::Local]
        );
        let env = Env::from_pairs([("DJ_VOICES", "realtime")]);
        let err = voices(&env, false).unwrap_err().to_string();
        assert!(
            err.contains("DJ_VOICES") && err.contains("OPENAI_API_KEY"),
            "{err}"
        );
        let env = Env::from_pairs([("DJ_VOICES", "robot")]);
        assert!(
            voices(&env, false)
                .unwrap_err()
                .to_string()
                .contains("robot")
        );
        assert_eq!(
            voices(&Env::from_pairs::<&str, &str>([]), false).unwrap(),
            vec![VoiceKind::Local]
        );
    }
}

//! Ingest configuration: every knob is an environment variable, validated at start-up.

use std::net::IpAddr;
use std::time::Duration;

use media::probe::AudioFormat;
use shared::auth::JwtConfig;
use shared::bus::BusConfig;
use shared::config::{ByteSize, ConfigError, Env, RateLimit};
use shared::db::DbConfig;
use shared::livekit::LiveKitConfig;
use shared::message::Event;
use shared::outbox::RelayConfig;

/// How callers are identified. There is no default: anonymous mode must be asked for.
#[derive(Debug, Clone)]
pub enum AuthMode {
    /// Bearer JWTs verified against an issuer, audience and JWKS.
    Jwt(JwtConfig),
    /// Local runs only: callers are who they say in `X-Anonymous-Id` (or their IP).
    Anonymous,
}

/// Input limits, each with a safe default.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_text_chars: usize,
    pub max_audio_bytes: u64,
    pub max_audio_duration: Duration,
    pub allowed_audio: Vec<AudioFormat>,
}

impl Limits {
    /// The largest JSON body worth reading: the text at 4 bytes a character plus room for
    /// the JSON around it.
    pub fn max_json_bytes(&self) -> usize {
        self.max_text_chars * 4 + 4096
    }

    /// The largest multipart body: the audio plus room for part headers.
    pub fn max_multipart_bytes(&self) -> u64 {
        self.max_audio_bytes + 16 * 1024
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub host: IpAddr,
    pub port: u16,
    pub channel_id: String,
    pub db: DbConfig,
    pub bus: BusConfig,
    pub topic_ingested: String,
    pub store_url: String,
    pub gcs_endpoint: Option<String>,
    pub auth: AuthMode,
    pub limits: Limits,
    pub rate_per_ip: RateLimit,
    pub rate_per_user: RateLimit,
    /// Proxies in front of the service that append to `X-Forwarded-For` (1 on Cloud Run).
    pub forwarded_hops: usize,
    pub outbox: RelayConfig,
    /// Whether this process runs the outbox relay loop (`OUTBOX_RELAY=off` when another
    /// always-on process relays).
    pub run_relay: bool,
    pub livekit: Option<LiveKitConfig>,
    /// `STREAM_URL`: the station's HTTP stream (the host-streamer's `/stream.ogg`), named to
    /// callers of `/v1/listen-token` when LiveKit is not configured.
    pub stream_url: Option<String>,
    pub shutdown_grace: Duration,
}

impl Config {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let auth = match env.required::<String>("AUTH_MODE")?.as_str() {
            "jwt" => AuthMode::Jwt(JwtConfig::from_env(env, "AUTH_JWT")?),
            "anonymous" => AuthMode::Anonymous,
            other => {
                return Err(ConfigError::invalid(
                    "AUTH_MODE",
                    other,
                    "expected jwt or anonymous",
                ));
            }
        };
        let allowed_audio = env
            .optional_with("AUDIO_ALLOWED_TYPES", parse_audio_types)?
            .unwrap_or_else(|| {
                vec![
                    AudioFormat::WebmOpus,
                    AudioFormat::OggOpus,
                    AudioFormat::Wav,
                    AudioFormat::Mp3,
                ]
            });
        let outbox = RelayConfig::from_env(env)?;
        let max_text_chars: usize = env.or("MAX_TEXT_CHARS", 1000)?;
        if max_text_chars == 0 || max_text_chars > 100_000 {
            return Err(ConfigError::invalid(
                "MAX_TEXT_CHARS",
                env.raw("MAX_TEXT_CHARS").unwrap_or_default(),
                "must be between 1 and 100000",
            ));
        }
        Ok(Config {
            host: env.or("HOST", IpAddr::from([0, 0, 0, 0]))?,
            port: env.or("PORT", 8080)?,
            channel_id: env.or("CHANNEL_ID", "main".to_owned())?,
            db: DbConfig::from_env(env)?,
            bus: BusConfig::from_env(env)?,
            topic_ingested: Event::Ingested.topic(env)?,
            store_url: env.required("UPLOADS_URL")?,
            gcs_endpoint: env.optional("STORAGE_EMULATOR_HOST")?,
            auth,
            limits: Limits {
                max_text_chars,
                max_audio_bytes: env.or("MAX_AUDIO_BYTES", ByteSize(5 << 20))?.0,
                max_audio_duration: env
                    .duration_or("MAX_AUDIO_DURATION", Duration::from_secs(60))?,
                allowed_audio,
            },
            rate_per_ip: env.or("RATE_LIMIT_PER_IP", "120/min".parse().expect("valid"))?,
            rate_per_user: env.or("RATE_LIMIT_PER_USER", "20/min".parse().expect("valid"))?,
            forwarded_hops: env.or("FORWARDED_HOPS", 0)?,
            outbox,
            run_relay: env.flag_or("OUTBOX_RELAY", true)?,
            livekit: LiveKitConfig::from_env(env)?,
            stream_url: env.optional("STREAM_URL")?,
            shutdown_grace: env.duration_or("SHUTDOWN_GRACE", Duration::from_secs(8))?,
        })
    }
}

fn parse_audio_types(s: &str) -> Result<Vec<AudioFormat>, String> {
    s.split(',')
        .map(|t| match t.trim() {
            "webm" => Ok(AudioFormat::WebmOpus),
            "ogg" => Ok(AudioFormat::OggOpus),
            "wav" => Ok(AudioFormat::Wav),
            "mp3" => Ok(AudioFormat::Mp3),
            other => Err(format!(
                "unknown audio type {other:?}: use webm, ogg, wav, mp3"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Vec<(&'static str, &'static str)> {
        vec![
            ("AUTH_MODE", "anonymous"),
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/radio24"),
            ("PUBSUB_EMULATOR_HOST", "127.0.0.1:8085"),
            ("UPLOADS_URL", "file:var/uploads"),
        ]
    }

    #[test]
    fn minimal_local_config_loads() {
        let c = Config::from_env(&Env::from_pairs(base())).unwrap();
        assert_eq!(c.port, 8080);
        assert_eq!(c.limits.max_text_chars, 1000);
        assert!(matches!(c.auth, AuthMode::Anonymous));
    }

    #[test]
    fn errors_name_the_variable() {
        for (name, value) in [
            ("AUTH_MODE", "maybe"),
            ("MAX_TEXT_CHARS", "0"),
            ("RATE_LIMIT_PER_IP", "lots"),
            ("AUDIO_ALLOWED_TYPES", "webm,flac"),
            ("DATABASE_URL", "mysql:/nope"),
        ] {
            let mut vars = base();
            vars.retain(|(k, _)| *k != name);
            vars.push((name, value));
            let err = Config::from_env(&Env::from_pairs(vars)).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        let mut vars = base();
        vars.retain(|(k, _)| *k != "AUTH_MODE");
        let err = Config::from_env(&Env::from_pairs(vars)).unwrap_err();
        assert!(err.to_string().contains("AUTH_MODE"), "{err}");
        let mut vars = base();
        vars[0] = ("AUTH_MODE", "jwt");
        let err = Config::from_env(&Env::from_pairs(vars)).unwrap_err();
        assert!(err.to_string().contains("AUTH_JWT_JWKS_URL"), "{err}");
    }
}

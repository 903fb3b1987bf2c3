//! The station's LiveKit room: where it is, and the access tokens for it. Listeners get
//! subscribe-only, short-lived tokens (ingest's `POST /v1/listen-token`); the host-streamer
//! signs its own publishing token for every join.

use std::time::Duration;

use livekit_api::access_token::{AccessToken, VideoGrants};

use crate::config::{ConfigError, Env};

#[derive(Debug, Clone)]
pub struct LiveKitConfig {
    /// The URL listeners connect to (wss://... in production).
    pub url: String,
    pub api_key: String,
    pub api_secret: String,
    /// The station's room.
    pub room: String,
    pub listener_ttl: Duration,
}

impl LiveKitConfig {
    /// `LIVEKIT_URL`, `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET` (all three or none),
    /// `LIVEKIT_ROOM`, `LISTEN_TOKEN_TTL`. `None` when LiveKit is not configured.
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let url: Option<String> = env.optional("LIVEKIT_URL")?;
        let Some(url) = url else {
            for name in ["LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"] {
                if env.raw(name).is_some() {
                    return Err(ConfigError::Missing("LIVEKIT_URL".into()));
                }
            }
            return Ok(None);
        };
        if !(url.starts_with("wss://") || url.starts_with("ws://")) {
            return Err(ConfigError::invalid(
                "LIVEKIT_URL",
                &url,
                "must be a ws:// or wss:// URL",
            ));
        }
        let ttl = env.duration_or("LISTEN_TOKEN_TTL", Duration::from_secs(600))?;
        if ttl < Duration::from_secs(30) || ttl > Duration::from_secs(6 * 3600) {
            return Err(ConfigError::invalid(
                "LISTEN_TOKEN_TTL",
                env.raw("LISTEN_TOKEN_TTL").unwrap_or_default(),
                "must be between 30s and 6h",
            ));
        }
        Ok(Some(LiveKitConfig {
            url,
            api_key: env.required("LIVEKIT_API_KEY")?,
            api_secret: env.required("LIVEKIT_API_SECRET")?,
            room: env.or("LIVEKIT_ROOM", "radio24".to_owned())?,
            listener_ttl: ttl,
        }))
    }

    /// A token that may join only the station's room and only subscribe: no audio, video
    /// or data publishing, no metadata updates.
    pub fn listener_token(
        &self,
        identity: &str,
    ) -> Result<String, livekit_api::access_token::AccessTokenError> {
        AccessToken::with_api_key(&self.api_key, &self.api_secret)
            .with_identity(identity)
            .with_ttl(self.listener_ttl)
            .with_grants(VideoGrants {
                room_join: true,
                room: self.room.clone(),
                can_subscribe: Some(true),
                can_publish: Some(false),
                can_publish_data: Some(false),
                can_update_own_metadata: Some(false),
                ..Default::default()
            })
            .to_jwt()
    }

    /// The host-streamer's own token: joins the station's room as `identity`, publishes
    /// audio and updates its own metadata (the now-playing line); subscribes to nothing.
    pub fn host_token(
        &self,
        identity: &str,
        name: &str,
        ttl: Duration,
    ) -> Result<String, livekit_api::access_token::AccessTokenError> {
        AccessToken::with_api_key(&self.api_key, &self.api_secret)
            .with_identity(identity)
            .with_name(name)
            .with_ttl(ttl)
            .with_grants(VideoGrants {
                room_join: true,
                room: self.room.clone(),
                can_subscribe: Some(false),
                can_publish: Some(true),
                can_publish_sources: vec!["microphone".to_owned()],
                can_publish_data: Some(true),
                can_update_own_metadata: Some(true),
                ..Default::default()
            })
            .to_jwt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livekit_api::access_token::TokenVerifier;

    fn config() -> LiveKitConfig {
        LiveKitConfig {
            url: "ws://127.0.0.1:7880".into(),
            api_key: "devkey".into(),
            api_secret: "secret-for-tests-only-0123456789abcdef".into(),
            room: "radio24".into(),
            listener_ttl: Duration::from_secs(60),
        }
    }

    #[test]
    fn listener_tokens_are_subscribe_only() {
        let cfg = config();
        let jwt = cfg.listener_token("listener-1").unwrap();
        let claims = TokenVerifier::with_api_key(&cfg.api_key, &cfg.api_secret)
            .verify(&jwt)
            .unwrap();
        assert_eq!(claims.sub, "listener-1");
        assert_eq!(claims.video.room, "radio24");
        assert!(claims.video.room_join && claims.video.can_subscribe());
        assert!(!claims.video.can_publish() && !claims.video.can_publish_data());
        assert!(!claims.video.room_admin && !claims.video.room_create);
        assert!(claims.exp - claims.nbf <= 61);
    }

    #[test]
    fn host_tokens_publish_audio_and_metadata_only() {
        let cfg = config();
        let jwt = cfg
            .host_token("radio24-host", "Radio24", Duration::from_secs(3600))
            .unwrap();
        let claims = TokenVerifier::with_api_key(&cfg.api_key, &cfg.api_secret)
            .verify(&jwt)
            .unwrap();
        assert_eq!(claims.sub, "radio24-host");
        assert_eq!(claims.video.room, "radio24");
        assert!(claims.video.can_publish() && claims.video.can_update_own_metadata());
        assert_eq!(claims.video.can_publish_sources, ["microphone"]);
        assert!(!claims.video.can_subscribe());
        assert!(!claims.video.room_admin && !claims.video.room_create);
    }
}

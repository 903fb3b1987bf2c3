//! `POST /v1/listen-token`: a LiveKit token that may only subscribe to the station.

use axum::Json;
use axum::extract::State;
use rand::Rng;
use serde::Serialize;

use crate::error::Error;
use crate::identity::Identity;
use crate::state::AppState;

#[derive(Serialize)]
pub struct ListenToken {
    pub token: String,
    pub url: String,
    pub room: String,
    pub expires_in: u64,
}

pub async fn issue(
    State(state): State<AppState>,
    identity: Identity,
) -> Result<Json<ListenToken>, Error> {
    // Not a passing outage: this deployment has no room to join. Said once, for good.
    let lk = state.config.livekit.as_ref().ok_or_else(|| {
        let instead = match &state.config.stream_url {
            Some(url) => format!("listen to the stream at {url} instead"),
            None => "listen to the station's HTTP stream (/stream.ogg on the host-streamer) \
                     instead"
                .to_owned(),
        };
        Error::NotConfigured(format!(
            "listening through LiveKit is not configured on this station (LIVEKIT_URL, \
             LIVEKIT_API_KEY and LIVEKIT_API_SECRET are unset); {instead}"
        ))
    })?;
    // One user may listen from several tabs; LiveKit drops an earlier participant that
    // joins with the same identity, so each token gets its own suffix.
    let identity = format!(
        "listener:{}:{:08x}",
        identity.user,
        rand::rng().random::<u32>()
    );
    let token = lk
        .listener_token(&identity)
        .map_err(|e| Error::from(anyhow::anyhow!("cannot sign listener token: {e}")))?;
    Ok(Json(ListenToken {
        token,
        url: lk.url.clone(),
        room: lk.room.clone(),
        expires_in: lk.listener_ttl.as_secs(),
    }))
}

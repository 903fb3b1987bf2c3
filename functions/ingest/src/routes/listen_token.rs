//! `POST /v1/listen-token`: a LiveKit token that may only subscribe to the station.

use axum::Json;
use axum::extract::State;
use rand::Rng;
use serde::Serialize;

use crate::error::Error;
use crate::identity::Identity;
use crate::state::AppState;
use shared::problem::ServerError;

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
    let lk = state.config.livekit.as_ref().ok_or_else(|| {
        Error::from(ServerError::Unavailable(
            "listening is not configured".into(),
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

//! What every request handler shares.

use std::sync::Arc;

use shared::bus::Bus;
use shared::outbox::Outbox;
use shared::store::ObjectStore;
use sqlx::PgPool;

use crate::config::Config;
use crate::identity::{Authenticator, HasAuthenticator};
use crate::rate_limit::Limits;

/// Handlers share the state through an `Arc`.
pub type AppState = Arc<Inner>;

pub struct Inner {
    pub config: Config,
    pub pool: PgPool,
    pub bus: Bus,
    pub outbox: Outbox,
    pub store: Arc<dyn ObjectStore>,
    pub auth: Authenticator,
    pub limits: Limits,
}

impl HasAuthenticator for AppState {
    fn authenticator(&self) -> &Authenticator {
        &self.auth
    }
}

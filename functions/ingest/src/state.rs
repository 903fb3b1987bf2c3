//! What every request handler shares.

use std::ops::Deref;
use std::sync::Arc;

use shared::bus::Bus;
use shared::outbox::Outbox;
use shared::store::ObjectStore;
use sqlx::PgPool;

use crate::config::Config;
use crate::identity::Authenticator;
use crate::rate_limit::Limits;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub pool: PgPool,
    pub bus: Bus,
    pub outbox: Outbox,
    pub store: Arc<dyn ObjectStore>,
    pub auth: Authenticator,
    pub limits: Limits,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        AppState(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

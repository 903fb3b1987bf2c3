//! What the handler shares.

use std::ops::Deref;
use std::sync::Arc;

use shared::embedding::Embedder;
use shared::outbox::Outbox;
use shared::push::{HasPushAuth, PushAuth};
use sqlx::PgPool;

use crate::config::Config;

#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub config: Config,
    pub pool: PgPool,
    pub outbox: Outbox,
    pub embedder: Arc<dyn Embedder>,
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

impl HasPushAuth for AppState {
    fn push_auth(&self) -> &PushAuth {
        &self.config.push_auth
    }
}

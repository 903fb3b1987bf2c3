//! What the handler shares.

use std::sync::Arc;

use shared::embedding::Embedder;
use shared::outbox::Outbox;
use shared::push::{HasPushAuth, PushAuth};
use sqlx::PgPool;

use crate::config::Config;

/// Handlers share the state through an `Arc`.
pub type AppState = Arc<Inner>;

pub struct Inner {
    pub config: Config,
    pub pool: PgPool,
    pub outbox: Outbox,
    pub embedder: Arc<dyn Embedder>,
}

impl HasPushAuth for Inner {
    fn push_auth(&self) -> &PushAuth {
        &self.config.push_auth
    }
}

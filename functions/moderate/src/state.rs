//! What the handlers share.

use std::sync::Arc;

use models::moderation::Moderator;
use shared::operator::{HasOperatorAuth, OperatorAuth};
use shared::pipeline::Stage;
use shared::push::{HasPushAuth, PushAuth};

use crate::config::Config;

/// Handlers share the state through an `Arc`.
pub type AppState = Arc<Inner>;

pub struct Inner {
    pub config: Config,
    pub stage: Stage,
    pub moderator: Arc<dyn Moderator>,
}

impl HasPushAuth for Inner {
    fn push_auth(&self) -> &PushAuth {
        &self.config.stage.push_auth
    }
}

impl HasOperatorAuth for Inner {
    fn operator_auth(&self) -> &OperatorAuth {
        &self.config.operators
    }
}

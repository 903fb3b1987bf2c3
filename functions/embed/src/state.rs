//! What the handler shares.

use std::sync::Arc;

use models::embedding::Embedder;
use models::transcription::Transcriber;
use shared::pipeline::Stage;
use shared::push::{HasPushAuth, PushAuth};
use shared::store::ObjectStore;

use crate::config::Config;

/// Handlers share the state through an `Arc`.
pub type AppState = Arc<Inner>;

pub struct Inner {
    pub config: Config,
    pub stage: Stage,
    pub embedder: Arc<dyn Embedder>,
    pub transcriber: Arc<dyn Transcriber>,
    /// Where ingest put the recordings.
    pub store: Arc<dyn ObjectStore>,
}

impl HasPushAuth for Inner {
    fn push_auth(&self) -> &PushAuth {
        &self.config.stage.push_auth
    }
}

//! Radio24 embed: the Pub/Sub push handler for `submission-ingested`.
//!
//! `embed` serves; `embed replay-dead-letters` moves dead-lettered `submission-ingested`
//! messages back to their topic once the cause of their failures is fixed.

use shared::message::Event;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::process::stage_main("embed", Event::Ingested, |env| async move {
        let config = embed::config::Config::from_env(&env)?;
        let (listener, router, _state) = embed::build(config).await?;
        shared::process::serve_stage("embed", listener, router).await
    })
    .await
}

//! Radio24 moderate: the Pub/Sub push handler for `submission-embedded` and the operators'
//! review queue.
//!
//! `moderate` serves; `moderate replay-dead-letters` moves dead-lettered
//! `submission-embedded` messages back to their topic once the cause is fixed.

use shared::message::Event;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::process::stage_main("moderate", Event::Embedded, |env| async move {
        let config = moderate::config::Config::from_env(&env)?;
        let (listener, router, _state) = moderate::build(config).await?;
        shared::process::serve_stage("moderate", listener, router).await
    })
    .await
}

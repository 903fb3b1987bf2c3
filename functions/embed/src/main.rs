//! Radio24 embed: the Pub/Sub push handler for `submission-ingested`.

use std::process::ExitCode;
use std::time::Duration;

use shared::config::Env;

#[tokio::main]
async fn main() -> ExitCode {
    shared::telemetry::init("info");
    let run = async {
        let config = embed::config::Config::from_env(&Env::from_process())?;
        let (listener, router, _state) = embed::build(config).await?;
        tracing::info!("embed listening");
        shared::http::serve(
            listener,
            router,
            shared::http::shutdown_signal(),
            Duration::from_secs(8),
        )
        .await?;
        anyhow::Ok(())
    };
    shared::process::exit_code("embed", run.await)
}

use shared::config::Env;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    shared::telemetry::init("info");
    let config = match ingest::config::Config::from_env(&Env::from_process()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("configuration error: {e}");
            eprintln!("ingest: configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = async {
        ingest::Application::build(config)
            .await?
            .run_until(shared::http::shutdown_signal())
            .await
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = ?e, "ingest failed");
            eprintln!("ingest: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

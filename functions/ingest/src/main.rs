//! `ingest` serves the public API; `ingest relay` publishes what the outbox holds and exits.

use std::process::ExitCode;

use shared::config::Env;

#[tokio::main]
async fn main() -> ExitCode {
    shared::telemetry::init("info");
    let env = Env::from_process();
    let mode = std::env::args().nth(1);
    let result = match mode.as_deref() {
        None | Some("serve") => serve(&env).await,
        Some("relay") => ingest::relay_job(&env).await.map(|_| ()),
        Some(other) => {
            eprintln!("ingest: unknown command {other:?}; use `ingest [serve]` or `ingest relay`");
            return ExitCode::from(2);
        }
    };
    shared::process::exit_code("ingest", result)
}

async fn serve(env: &Env) -> anyhow::Result<()> {
    let config = ingest::config::Config::from_env(env)?;
    ingest::Application::build(config)
        .await?
        .run_until(shared::http::shutdown_signal())
        .await
}

//! `ingest` serves the public API; `ingest relay` publishes what the outbox holds and exits;
//! `ingest migrate` brings the database up to date and exits (the migrations job).

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
        Some("migrate") => migrate(&env).await,
        Some(other) => {
            eprintln!(
                "ingest: unknown command {other:?}; use `ingest [serve]`, `ingest relay` or `ingest migrate`"
            );
            return ExitCode::from(2);
        }
    };
    shared::process::exit_code("ingest", result)
}

async fn migrate(env: &Env) -> anyhow::Result<()> {
    let db = shared::db::DbConfig::from_env(env)?;
    let applied = shared::db::migrate(&db).await?;
    tracing::info!(applied, "database is up to date");
    Ok(())
}

async fn serve(env: &Env) -> anyhow::Result<()> {
    let config = ingest::config::Config::from_env(env)?;
    ingest::Application::build(config)
        .await?
        .run_until(shared::http::shutdown_signal())
        .await
}

//! What every service binary does around its work: connect to its backends, bind its port,
//! and turn the outcome into
//! an exit code an operator can read (2 = bad configuration, naming the variable; 1 = any
//! other failure), logged as one line.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use anyhow::Context;
use tokio::net::TcpListener;

use sqlx::PgPool;

use crate::bus::{Bus, BusConfig};
use crate::config::ConfigError;
use crate::db::DbConfig;

/// Opens the database (migrating when configured) and the bus. On the emulator, which
/// starts empty, it also creates the topics the service publishes to; in production they
/// are Terraform's and a service account may not create topics.
pub async fn connect(
    db: &DbConfig,
    bus: &BusConfig,
    publishes_to: &[&str],
) -> anyhow::Result<(PgPool, Bus)> {
    let pool = crate::db::connect(db)
        .await
        .context("cannot prepare the database (DATABASE_URL)")?;
    let bus = Bus::connect(bus)
        .await
        .context("cannot set up Pub/Sub clients")?;
    if bus.config().emulator_host.is_some() {
        for topic in publishes_to {
            bus.ensure_topic(topic)
                .await
                .with_context(|| format!("cannot create topic {topic} on the Pub/Sub emulator"))?;
        }
    }
    Ok((pool, bus))
}

/// Binds `host:port`, naming the variables in the error.
pub async fn bind(host: IpAddr, port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind(SocketAddr::new(host, port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port} (HOST, PORT)"))
}

/// The exit code for a service's result, logging failures with their cause chain.
pub fn exit_code(service: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format_args!("{e:#}"), "{service} failed");
            eprintln!("{service}: {e:#}");
            let config_error = e.downcast_ref::<ConfigError>().is_some();
            ExitCode::from(if config_error { 2 } else { 1 })
        }
    }
}

/// Serves a pipeline stage until SIGTERM, letting requests in flight finish (Cloud Run
/// gives 10 s after SIGTERM).
pub async fn serve_stage(
    service: &str,
    listener: TcpListener,
    router: axum::Router,
) -> anyhow::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "{service} listening");
    crate::http::serve(
        listener,
        router,
        crate::http::shutdown_signal(),
        std::time::Duration::from_secs(8),
    )
    .await?;
    Ok(())
}

/// The `main` of a pipeline stage: `<service>` runs `serve`, `<service> replay-dead-letters`
/// moves the dead-lettered messages of its `input` topic back to that topic.
pub async fn stage_main<F, Fut>(
    service: &'static str,
    input: crate::message::Event,
    serve: F,
) -> ExitCode
where
    F: FnOnce(crate::config::Env) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    crate::telemetry::init("info");
    let env = crate::config::Env::from_process();
    let result = match std::env::args().nth(1).as_deref() {
        None => serve(env).await,
        Some("replay-dead-letters") => crate::dead_letter::command(&env, input).await,
        Some(other) => Err(anyhow::anyhow!(
            "unknown command {other:?}; usage: {service} [replay-dead-letters]"
        )),
    };
    exit_code(service, result)
}

//! What every service binary does around its work: bind its port, and turn the outcome into
//! an exit code an operator can read (2 = bad configuration, naming the variable; 1 = any
//! other failure), logged as one line.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::config::ConfigError;

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

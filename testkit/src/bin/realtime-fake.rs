//! `realtime-fake`: the Realtime API fake ([`testkit::RealtimeFake`]) as a process of its own,
//! so a test can SIGKILL it (the way a server or a network path dies) and start it again on
//! the same port.
//!
//! Environment:
//! - `REALTIME_FAKE_PORT`: port on 127.0.0.1 (default 0: a free one);
//! - `REALTIME_FAKE_SESSION_LIFETIME`: when sessions expire, e.g. `90s` (default `60m`);
//! - `REALTIME_FAKE_API_KEY`: the key accepted (default the testkit's fake key).
//!
//! Prints `listening on ws://127.0.0.1:PORT/v1/realtime` once it accepts connections.

use anyhow::{Context, Result};
use shared::config::Env;
use testkit::openai_fake::FAKE_API_KEY;
use testkit::realtime_fake::{DEFAULT_SESSION_LIFETIME, RealtimeFake, RealtimeFakeOptions};

#[tokio::main]
async fn main() -> Result<()> {
    let env = Env::from_process();
    let options = RealtimeFakeOptions {
        port: env.or("REALTIME_FAKE_PORT", 0)?,
        api_key: env.or("REALTIME_FAKE_API_KEY", FAKE_API_KEY.to_owned())?,
        session_lifetime: env
            .duration_or("REALTIME_FAKE_SESSION_LIFETIME", DEFAULT_SESSION_LIFETIME)?,
    };
    let port = options.port;
    let fake = RealtimeFake::start_with(options)
        .await
        .with_context(|| format!("binding 127.0.0.1:{port}"))?;
    println!("listening on {}", fake.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}

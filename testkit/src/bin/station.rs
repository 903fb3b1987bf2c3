//! `dev/station`: the station on embedded defaults, with no cloud account and no API key.
//!
//! Starts throwaway Postgres + pgvector and the Pub/Sub emulator on free loopback ports,
//! then ingest (anonymous auth, uploads on the local disk), prints where to POST, and
//! logs every `submission-ingested` message as it arrives. Ctrl-C stops everything and
//! removes the throwaway data.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use shared::bus::{Bus, BusConfig};
use shared::message::SubmissionEvent;
use testkit::{Postgres, PubsubEmulator, spawn_logged_with, wait_until};

const PROJECT: &str = "radio24-local";
const TOPIC: &str = "submission-ingested";

#[tokio::main]
async fn main() -> Result<()> {
    let port: u16 = match std::env::var("INGEST_PORT") {
        Ok(p) => p.parse().context("INGEST_PORT must be a port number")?,
        Err(_) => 8080,
    };
    let uploads = std::env::var("UPLOADS_URL").unwrap_or_else(|_| "file:var/uploads".into());
    let bin_dir = std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .to_path_buf();

    eprintln!("starting Postgres + pgvector and the Pub/Sub emulator ...");
    let (pg, emulator) = tokio::try_join!(Postgres::start(), PubsubEmulator::start())?;
    let db_url = pg.create_database().await?;
    let bus = Bus::connect(&BusConfig::new(PROJECT).with_emulator_host(emulator.host())).await?;
    bus.ensure_topic(TOPIC).await?;
    bus.ensure_pull_subscription(TOPIC, "station-monitor", Duration::from_secs(60))
        .await?;

    let log = std::env::temp_dir().join(format!("radio24-ingest-{port}.log"));
    let mut cmd = Command::new(bin_dir.join("ingest"));
    cmd.env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("AUTH_MODE", "anonymous")
        .env("DATABASE_URL", &db_url)
        .env("PUBSUB_EMULATOR_HOST", emulator.host())
        .env("GOOGLE_CLOUD_PROJECT", PROJECT)
        .env("UPLOADS_URL", &uploads)
        .env("OUTBOX_GRACE", "2s");
    let ingest = spawn_logged_with(
        cmd,
        &log,
        testkit::Shutdown::Signal {
            signal: libc::SIGTERM,
            grace: Duration::from_secs(10),
        },
    )?;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let ready = wait_until("ingest /readyz", Duration::from_secs(30), || async {
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    if let Err(e) = ready {
        eprintln!("{}", ingest.log_tail(30));
        return Err(e.context(format!(
            "ingest did not become ready; log: {}",
            log.display()
        )));
    }

    println!(
        "\nRadio24 is running locally (embedded defaults: anonymous listeners, uploads in {uploads}).\n\
         \n  Post text:   curl -i -X POST {base}/v1/submissions -H 'content-type: application/json' -d '{{\"text\":\"Hello Radio24!\"}}'\
         \n  Post audio:  curl -i -X POST {base}/v1/submissions -F audio=@shared/tests/fixtures/audio/speech.ogg\
         \n  Status:      curl {base}/v1/submissions/<id>\
         \n  Health:      curl {base}/readyz\
         \n\n  Postgres:    {db_url}\
         \n  Pub/Sub:     PUBSUB_EMULATOR_HOST={}  (project {PROJECT})\
         \n  ingest log:  {}\
         \n\nEvery submission-ingested message is printed below. Ctrl-C stops the station.\n",
        emulator.host(),
        log.display()
    );

    let mut monitor = bus.subscribe("station-monitor").await?;
    loop {
        tokio::select! {
            _ = shared::http::shutdown_signal() => break,
            msg = monitor.next() => match msg {
                Some(Ok(m)) => {
                    match SubmissionEvent::decode(&m.data) {
                        Ok(ev) => println!("{} {} {:?} {}", ev.occurred_at.format("%H:%M:%S%.3f"), ev.event.as_str(), ev.kind, ev.submission_id),
                        Err(e) => println!("undecodable message {}: {e}", m.message_id),
                    }
                    m.ack();
                }
                Some(Err(e)) => eprintln!("monitor: {e}"),
                None => break,
            },
        }
        if !ingest.is_running() {
            eprintln!("ingest exited:\n{}", ingest.log_tail(30));
            break;
        }
    }
    eprintln!("stopping ...");
    ingest.kill();
    drop(pg);
    drop(emulator);
    Ok(())
}

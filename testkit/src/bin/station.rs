//! `dev/station`: the station on embedded defaults, with no cloud account and no API key.
//!
//! Starts throwaway Postgres + pgvector, the Pub/Sub emulator and fake-gcs-server on free
//! loopback ports, then the pipeline (ingest on 127.0.0.1:8080 with anonymous listeners,
//! embed and moderate behind emulator push subscriptions, local models) and the
//! host-streamer (offline espeak-ng DJ, generated bed, Ogg/Opus on
//! http://127.0.0.1:8090/stream.ogg), prints where to POST, listen and review held
//! submissions, and logs every submission that becomes ready for air. Ctrl-C stops
//! everything and removes the throwaway data.

use anyhow::{Context, Result};
use shared::message::SubmissionEvent;
use shared::submission::repository;
use testkit::pipeline::{Pipeline, PipelineOptions};
use testkit::{FakeGcs, Postgres, PubsubEmulator};

#[tokio::main]
async fn main() -> Result<()> {
    let port = port_var("INGEST_PORT", 8080)?;
    let streamer_port = port_var("STREAMER_PORT", 8090)?;
    eprintln!("starting Postgres + pgvector, the Pub/Sub emulator and fake-gcs-server ...");
    let (pg, emulator, gcs) =
        tokio::try_join!(Postgres::start(), PubsubEmulator::start(), FakeGcs::start())?;
    eprintln!("starting ingest, embed, moderate and the host-streamer ...");
    let options = PipelineOptions {
        ingest_port: port,
        streamer: Some(streamer_port),
        ..PipelineOptions::default()
    };
    let p = Pipeline::start(&pg, &emulator, &gcs, options).await?;
    let base = &p.ingest_url;
    let review = &p.moderate_url;
    let air = p
        .streamer
        .as_ref()
        .map(|(_, url)| url.as_str())
        .unwrap_or_default();
    println!(
        "\nRadio24 is running locally (embedded defaults: anonymous listeners, local models).\n\
         \n  Listen:      {air}/stream.ogg   (a browser, mpv, ffplay or VLC)\
         \n  Metrics:     {air}/metrics\
         \n  Post text:   curl -i -X POST {base}/v1/submissions -H 'content-type: application/json' -d '{{\"text\":\"Hello Radio24!\"}}'\
         \n  Post audio:  curl -i -X POST {base}/v1/submissions -F audio=@media/tests/fixtures/audio/speech.webm\
         \n  Status:      curl {base}/v1/submissions/<id>\
         \n  Held:        curl {review}/v1/held\
         \n  Approve:     curl -X POST {review}/v1/held/<id>/decision -H 'content-type: application/json' -d '{{\"decision\":\"approve\"}}'\
         \n\n  Postgres:    {}\
         \n  Pub/Sub:     PUBSUB_EMULATOR_HOST={}  (project {})\
         \n  logs:        {}\
         \n\nEvery submission that is ready for air is printed below. Ctrl-C stops the station.\n",
        p.db_url,
        emulator.host(),
        testkit::pipeline::PROJECT,
        p.logs().display()
    );

    let mut ready = p.ready().await?;
    // Pub/Sub delivers at least once; the host-streamer's claim makes repeats harmless, and
    // the monitor says when it sees one.
    let mut seen = std::collections::HashSet::new();
    loop {
        tokio::select! {
            _ = shared::http::shutdown_signal() => break,
            msg = ready.next() => match msg {
                Some(Ok(m)) => {
                    match SubmissionEvent::decode(&m.data) {
                        Ok(ev) => {
                            let words = repository::load(&p.db, ev.submission_id)
                                .await
                                .ok()
                                .flatten()
                                .and_then(|row| row.words().map(str::to_owned));
                            let again = if seen.insert(ev.submission_id) { "" } else { " (delivered again)" };
                            println!(
                                "{} ready {:?} {} {:?}{again}",
                                ev.occurred_at.format("%H:%M:%S%.3f"),
                                ev.kind,
                                ev.submission_id,
                                words.unwrap_or_default()
                            );
                        }
                        Err(e) => println!("undecodable message {}: {e}", m.message_id),
                    }
                    m.ack();
                }
                Some(Err(e)) => eprintln!("ready listener: {e}"),
                None => break,
            },
        }
        for child in [&p.ingest, &p.embed, &p.moderate] {
            if !child.is_running() {
                eprintln!("{} exited:\n{}", child.name(), child.log_tail(30));
                anyhow::bail!("{} exited", child.name());
            }
        }
    }
    eprintln!("stopping ...");
    Ok(())
}

fn port_var(name: &str, default: u16) -> Result<u16> {
    match std::env::var(name) {
        Ok(p) => p
            .parse()
            .with_context(|| format!("{name} must be a port number")),
        Err(_) => Ok(default),
    }
}

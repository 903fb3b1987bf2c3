//! `loadgen servers`: the benchmark's Postgres and Pub/Sub emulator, started exactly the way
//! the tests start them (testkit), so there is one way to run servers in this repository.
//! `loadgen wait`: readiness polling for the script.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use testkit::{Postgres, PubsubEmulator};

use crate::args::Args;

pub fn main(mut args: Args) -> Result<()> {
    let project: String = args.or("project", "radio24-bench".to_owned())?;
    let topic: String = args.or("topic", "submission-ingested".to_owned())?;
    let subscription: String = args.or("subscription", "bench-ingested".to_owned())?;
    args.finish()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run(project, topic, subscription))
}

async fn run(project: String, topic: String, subscription: String) -> Result<()> {
    // Both start at once: the JVM takes a few seconds, initdb about one.
    let (pg, emulator) = tokio::try_join!(Postgres::start(), PubsubEmulator::start())?;
    let database_url = pg.create_database().await?;

    // The topic and a pull subscription (what embed consumes in production), so the emulator
    // retains every published message as the real service would.
    let client = reqwest::Client::new();
    let base = format!("{}/v1/projects/{project}", emulator.endpoint());
    let topic_path = format!("projects/{project}/topics/{topic}");
    put(
        &client,
        &format!("{base}/topics/{topic}"),
        serde_json::json!({}),
    )
    .await?;
    put(
        &client,
        &format!("{base}/subscriptions/{subscription}"),
        serde_json::json!({ "topic": topic_path, "ackDeadlineSeconds": 60 }),
    )
    .await?;

    println!("DATABASE_URL={database_url}");
    println!("PUBSUB_EMULATOR_HOST={}", emulator.host());
    println!("GOOGLE_CLOUD_PROJECT={project}");
    println!("TOPIC_SUBMISSION_INGESTED={topic}");
    if let Some(dir) = pg.dir() {
        println!("PG_DATA={}", dir.join("data").display());
    }
    println!("READY");

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("loadgen servers: stopping Postgres and the Pub/Sub emulator");
    drop(emulator);
    drop(pg);
    Ok(())
}

async fn put(client: &reqwest::Client, url: &str, body: serde_json::Value) -> Result<()> {
    let res = client
        .put(url)
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .with_context(|| format!("PUT {url}"))?;
    let status = res.status();
    // 409: it exists already, which is what we want.
    if !(status.is_success() || status.as_u16() == 409) {
        bail!(
            "PUT {url}: {status}: {}",
            res.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

pub fn wait_main(mut args: Args) -> Result<()> {
    let url = args.positional().context("usage: loadgen wait URL")?;
    let timeout = args.duration_or("timeout", Duration::from_secs(60))?;
    args.finish()?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let client = reqwest::Client::new();
            let start = Instant::now();
            loop {
                let ok = client
                    .get(&url)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    return Ok(());
                }
                if start.elapsed() >= timeout {
                    bail!("{url} did not answer 2xx within {timeout:?}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
}

//! `pipeline-bench`: submissions/s and latency through the whole pipeline on this machine.
//!
//! Starts Postgres + pgvector, the Pub/Sub emulator and fake-gcs-server, then the release
//! binaries of ingest, embed and moderate behind emulator push subscriptions, with the local
//! providers (all-MiniLM-L6-v2 on CPU, rule moderation). Sends text submissions open-loop at
//! a fixed rate (every text distinct, none a near-duplicate or objectionable), and for each
//! measures the time from ingest's 202 to its `submission-ready` message arriving on a
//! streaming pull. Prints the counts (in, out, lost), p50/p90/p99/max latency and each
//! service's peak RSS.
//!
//! ```text
//! BENCH_RATE=50 BENCH_DURATION=60 pipeline-bench
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use rand::prelude::IndexedRandom;
use shared::message::SubmissionEvent;
use testkit::pipeline::{Pipeline, PipelineOptions};
use testkit::{FakeGcs, Postgres, PubsubEmulator};

/// Plain words; random eight-word sequences of them are far apart for the embedder and
/// clean for the moderator.
const WORDS: &[&str] = &[
    "morning",
    "jazz",
    "river",
    "bicycle",
    "lantern",
    "harbour",
    "violin",
    "garden",
    "winter",
    "coffee",
    "mountain",
    "library",
    "sunset",
    "trumpet",
    "forest",
    "train",
    "window",
    "ocean",
    "pepper",
    "meadow",
    "castle",
    "piano",
    "thunder",
    "orchard",
    "compass",
    "festival",
    "marble",
    "kettle",
    "saxophone",
    "glacier",
    "market",
    "feather",
    "tango",
    "volcano",
    "ladder",
    "lemon",
    "rocket",
    "canyon",
    "blanket",
    "puzzle",
    "island",
    "chorus",
    "bakery",
    "tulip",
    "anchor",
    "desert",
    "cello",
    "village",
    "rainbow",
    "museum",
    "pebble",
    "samba",
    "balcony",
    "comet",
    "orange",
    "drum",
    "meadowlark",
    "skyline",
    "bridge",
    "whistle",
    "cinnamon",
    "planet",
    "harvest",
    "mosaic",
    "guitar",
    "lagoon",
    "carousel",
    "falcon",
    "porcelain",
    "reggae",
    "tunnel",
    "waffle",
    "clarinet",
    "summit",
    "postcard",
    "cathedral",
    "banjo",
    "prairie",
    "lighthouse",
    "noodle",
    "opera",
    "quartz",
    "snowfall",
    "kayak",
    "melody",
    "tornado",
];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .ok()
            .with_context(|| format!("{name}={v} is not valid")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let rate: u64 = env_or("BENCH_RATE", 50)?;
    let seconds: u64 = env_or("BENCH_DURATION", 60)?;
    let drain: u64 = env_or("BENCH_DRAIN", 60)?;
    eprintln!("starting Postgres + pgvector, the Pub/Sub emulator and fake-gcs-server ...");
    let (pg, emulator, gcs) =
        tokio::try_join!(Postgres::start(), PubsubEmulator::start(), FakeGcs::start())?;
    let options = PipelineOptions {
        release: true,
        ..PipelineOptions::default()
    };
    let p = Pipeline::start(&pg, &emulator, &gcs, options).await?;
    eprintln!("pipeline up (logs in {})", p.logs().display());

    // Ready messages, timestamped on arrival.
    let arrived: Arc<Mutex<HashMap<uuid::Uuid, Instant>>> = Arc::default();
    let mut ready = p.ready().await?;
    let sink = arrived.clone();
    let listener = tokio::spawn(async move {
        while let Some(Ok(msg)) = ready.next().await {
            let at = Instant::now();
            if let Ok(ev) = SubmissionEvent::decode(&msg.data) {
                sink.lock().unwrap().entry(ev.submission_id.0).or_insert(at);
            }
            msg.ack();
        }
    });

    // Warm-up: one submission through every stage (model caches, connection pools).
    let client = reqwest::Client::new();
    let url = format!("{}/v1/submissions", p.ingest_url);
    let post = |text: String| {
        let client = client.clone();
        let url = url.clone();
        async move {
            let res = client
                .post(&url)
                .json(&serde_json::json!({ "text": text }))
                .send()
                .await?;
            let status = res.status();
            let body: serde_json::Value = res.json().await?;
            anyhow::ensure!(status == 202, "{status}: {body}");
            let id: uuid::Uuid = body["id"].as_str().context("id")?.parse()?;
            Ok::<_, anyhow::Error>((id, Instant::now()))
        }
    };
    let (warm, _) = post("Warming up the station with a first song request".into()).await?;
    testkit::wait_until(
        "the warm-up submission",
        Duration::from_secs(60),
        || async { arrived.lock().unwrap().contains_key(&warm) },
    )
    .await?;

    eprintln!("sending {rate}/s for {seconds} s ...");
    let mut rng = rand::rng();
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = Vec::new();
    let started = Instant::now();
    for n in 0..rate * seconds {
        ticker.tick().await;
        let words: Vec<&str> = (0..8).map(|_| *WORDS.choose(&mut rng).unwrap()).collect();
        let text = format!("Request {n}: {}", words.join(" "));
        sends.push(tokio::spawn(post(text)));
    }
    let mut accepted = HashMap::new();
    let mut errors = 0;
    for s in sends {
        match s.await? {
            Ok((id, at)) => {
                accepted.insert(id, at);
            }
            Err(e) => {
                errors += 1;
                eprintln!("send failed: {e}");
            }
        }
    }
    let send_secs = started.elapsed().as_secs_f64();
    // Every accepted submission must end somewhere: ready for air, or held for a person
    // (the local moderator holds a few random word salads), rejected, duplicate, failed.
    let ids: Vec<uuid::Uuid> = accepted.keys().copied().collect();
    let decided_elsewhere = || async {
        sqlx::query_scalar::<_, uuid::Uuid>(
            "SELECT id FROM submission WHERE id = ANY($1) \
             AND status IN ('held', 'rejected', 'duplicate', 'failed')",
        )
        .bind(&ids)
        .fetch_all(&p.db)
        .await
        .unwrap_or_default()
    };
    let drained = testkit::wait_until(
        "every submission decided",
        Duration::from_secs(drain),
        || async {
            let elsewhere = decided_elsewhere().await.len();
            let arrived = arrived.lock().unwrap();
            accepted
                .keys()
                .filter(|id| arrived.contains_key(id))
                .count()
                + elsewhere
                >= accepted.len()
        },
    )
    .await;
    listener.abort();

    let arrived = arrived.lock().unwrap().clone();
    let elsewhere: std::collections::HashSet<uuid::Uuid> =
        decided_elsewhere().await.into_iter().collect();
    let mut hist = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    let mut lost = Vec::new();
    for (id, at) in &accepted {
        match arrived.get(id) {
            Some(done) => hist.record(done.saturating_duration_since(*at).as_micros() as u64)?,
            None if elsewhere.contains(id) => {}
            None => lost.push(*id),
        }
    }
    let outcomes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM submission WHERE id = ANY($1) GROUP BY status ORDER BY 1",
    )
    .bind(&ids)
    .fetch_all(&p.db)
    .await?;
    let ms = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    println!("pipeline: ingest -> embed -> moderate -> ready, local providers, release build");
    println!(
        "offered {rate}/s for {seconds} s: sent {} in {send_secs:.1} s, accepted {}, errors {errors}",
        rate * seconds,
        accepted.len()
    );
    println!(
        "in {} = out {}: ready messages {}, decided otherwise {} (statuses {outcomes:?}); lost {}; drained: {}",
        accepted.len(),
        hist.len() as usize + elsewhere.len(),
        hist.len(),
        elsewhere.len(),
        lost.len(),
        drained.is_ok()
    );
    println!(
        "202 -> ready latency ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        ms(0.5),
        ms(0.9),
        ms(0.99),
        hist.max() as f64 / 1000.0
    );
    for child in [&p.ingest, &p.embed, &p.moderate] {
        println!(
            "{:<8} peak RSS {:.0} MB",
            child.name(),
            testkit::memory::Memory::of(child.id())
                .peak_mib()
                .unwrap_or(f64::NAN)
        );
    }
    if !lost.is_empty() {
        // Where the missing ones are: their status, and whether their message is still
        // waiting in the outbox.
        let statuses: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM submission WHERE id = ANY($1) GROUP BY status",
        )
        .bind(&lost)
        .fetch_all(&p.db)
        .await?;
        let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&p.db)
            .await?;
        eprintln!(
            "not ready: {} (statuses {statuses:?}, outbox rows {outbox}), e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(5)]
        );
    }
    Ok(())
}

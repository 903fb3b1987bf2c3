//! Throughput and memory of the local embedder, to size the `embed` service's instances:
//!
//!     cargo run --release -p models --example embedder_bench
//!
//! Embeds about 200 short listener messages one at a time and in batches of 32 through the
//! async `Embedder` API (as the service calls it), and prints the model's load time,
//! sentences per second and the process's resident memory (VmRSS now, VmHWM peak).
//! Needs the model from `dev/install-tools` (or `EMBEDDING_MODEL_DIR`).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use models::embedding::{Embedder, LocalMiniLm};

const BATCH: usize = 32;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let texts = listener_messages();
    let dir = LocalMiniLm::default_dir();
    println!(
        "model dir {}, {} sentences, {} CPUs",
        dir.display(),
        texts.len(),
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!("before load:  {}", memory());

    let started = Instant::now();
    let model = LocalMiniLm::load(&dir).context("loading the model (run dev/install-tools)")?;
    println!("load:         {:>8.1} ms", ms(started.elapsed()));
    println!("after load:   {}", memory());

    // The first call pays for lazy set-up (thread pools, allocator growth); keep it out.
    model.embed(&texts[..1]).await?;

    let started = Instant::now();
    for text in &texts {
        model.embed(std::slice::from_ref(text)).await?;
    }
    report("batch 1", texts.len(), started.elapsed());

    let started = Instant::now();
    for chunk in texts.chunks(BATCH) {
        model.embed(chunk).await?;
    }
    report(&format!("batch {BATCH}"), texts.len(), started.elapsed());

    println!("after run:    {}", memory());
    Ok(())
}

/// 200 distinct messages of the kind listeners send: requests, greetings, traffic, opinions.
fn listener_messages() -> Vec<String> {
    let openings = [
        "Hi Radio24,",
        "Good morning!",
        "Hey there,",
        "Greetings from the night shift:",
        "Quick one from the car:",
        "Long-time listener here,",
        "Hello from Lisbon,",
        "Dear host,",
        "Yo!",
        "Love the show,",
    ];
    let bodies = [
        "could you play something by Nina Simone?",
        "it's my sister's birthday today, please give her a shout-out.",
        "the ring road is completely blocked near exit 12, avoid it.",
        "that last song was fantastic, who was the artist?",
        "please play more jazz in the afternoon slot.",
        "the weather here just turned sunny, perfect for your playlist.",
        "can we get a throwback hour on Fridays?",
        "my dog howls every time you play the saxophone solo.",
        "thanks for keeping me company during exam week.",
        "is the concert in the park still happening this weekend?",
        "I think the volume dropped during the news segment.",
        "requesting something calm for a rainy evening.",
        "greetings to everyone working at the hospital tonight.",
        "the quiz question yesterday was too hard!",
        "please repeat the recipe you mentioned this morning.",
        "any chance of some local bands on the evening show?",
        "just moved to town and your station made me feel at home.",
        "the train is late again, so I'm listening longer today.",
        "can you dedicate the next song to my grandparents?",
        "what time does the interview with the mayor start?",
    ];
    openings
        .iter()
        .flat_map(|o| bodies.iter().map(move |b| format!("{o} {b}")))
        .collect()
}

fn report(label: &str, sentences: usize, elapsed: Duration) {
    let per_second = sentences as f64 / elapsed.as_secs_f64();
    println!(
        "{label:<9}     {per_second:>8.1} sentences/s ({sentences} in {:.0} ms)",
        ms(elapsed)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn memory() -> testkit::memory::Memory {
    testkit::memory::Memory::of_self()
}

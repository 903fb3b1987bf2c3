//! The local moderator against its labelled battery (`tests/moderation/battery.tsv`): harmful
//! messages in many phrasings and disguises, and harmless look-alikes. Each case goes the way
//! a submission goes: embedded by all-MiniLM-L6-v2, stored in Postgres + pgvector beside the
//! exemplars embed seeds, moderated by rules, personal data finder and nearest exemplars, and
//! decided by the default policy.
//!
//! Prints a confusion table per category, the cases it misjudged with their nearest exemplars,
//! and the time per moderation. The aim is no harmful case approved and at most 3% of the
//! harmless ones held or rejected; the test holds the line at today's figures (a ratchet:
//! lower the limits as the rules and exemplars improve, never raise them).
//!
//! The battery shaped the rules and the exemplar score (the cases they missed were read), so
//! it is no longer a fair test of words never seen. `tests/moderation/sealed.tsv` is: written
//! after that tuning and never tuned on, it is judged and printed the same way.
//!
//! `BATTERY_DUMP=<file>` also writes each case's words-only decision and nearest exemplars
//! as JSON lines, for tuning the exemplar score.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use models::embedding::{Embedder, LocalMiniLm};
use models::moderation::exemplars::{self, EXEMPLARS, Exemplar, Label};
use models::moderation::{Decision, LocalModerator, Moderator, Policy};
use pgvector::Vector;
use shared::submission::SubmissionId;
use testkit::Postgres;

const BATTERY: &str = include_str!("moderation/battery.tsv");
const SEALED: &str = include_str!("moderation/sealed.tsv");

/// The aim: no harmful case approved, at most this share of the harmless ones stopped.
const AIM_BENIGN_STOPPED: f64 = 0.03;
/// Today's figures, which a change may only improve.
const RATCHET_HARMFUL_APPROVED: usize = 3;
const RATCHET_BENIGN_STOPPED: usize = 20;
/// The sealed set's figures when it was first run.
const SEALED_HARMFUL_APPROVED: usize = 29;
const SEALED_BENIGN_STOPPED: usize = 10;

/// Lower-case letters and digits only: how two texts are compared for overlap.
fn key(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_moderator_stops_every_harmful_case_and_few_harmless_ones() {
    let battery = exemplars::parse(BATTERY).expect("battery.tsv parses");
    let harmful = battery.iter().filter(|c| c.harmful).count();
    assert!(harmful >= 300, "{harmful} harmful cases");
    assert!(
        battery.len() - harmful >= harmful,
        "as many harmless cases as harmful"
    );
    let seen: std::collections::HashSet<String> = EXEMPLARS.iter().map(|e| key(&e.text)).collect();
    for case in &battery {
        assert!(
            !seen.contains(&key(&case.text)),
            "{:?} is an exemplar too: the battery must be held out",
            case.text
        );
    }

    let pg = Postgres::shared().await.unwrap();
    let pool = sqlx::PgPool::connect(&pg.create_database().await.unwrap())
        .await
        .unwrap();
    shared::db::MIGRATOR.run(&pool).await.unwrap();
    let embedder = LocalMiniLm::load(&LocalMiniLm::default_dir()).expect("dev/install-tools");
    let seeded = exemplars::seed(&pool, &embedder).await.unwrap();
    assert_eq!(seeded, EXEMPLARS.len() as u64);
    assert_eq!(
        exemplars::seed(&pool, &embedder).await.unwrap(),
        0,
        "seeding again changes nothing"
    );

    let moderator = LocalModerator::with_exemplars(pool.clone());
    let ids = store(&pool, &embedder, &battery).await;
    let [h, b] = judge("battery.tsv", &pool, &moderator, &battery, &ids).await;
    let benign_stopped = b[1] + b[2];
    assert!(
        h[0] <= RATCHET_HARMFUL_APPROVED,
        "{} harmful cases approved, more than the {RATCHET_HARMFUL_APPROVED} of before (listed above)",
        h[0]
    );
    assert!(
        benign_stopped <= RATCHET_BENIGN_STOPPED,
        "{benign_stopped} harmless cases held or rejected, more than the \
         {RATCHET_BENIGN_STOPPED} of before (listed above)"
    );

    // The sealed set: written after the rules and exemplars were tuned on the battery, and
    // never tuned on; its figures say how the moderator does on words it has not seen.
    let sealed = exemplars::parse(SEALED).expect("sealed.tsv parses");
    for case in &sealed {
        assert!(
            !seen.contains(&key(&case.text)),
            "{:?} is an exemplar too",
            case.text
        );
    }
    let ids = store(&pool, &embedder, &sealed).await;
    let [h, b] = judge("sealed.tsv", &pool, &moderator, &sealed, &ids).await;
    assert!(
        h[0] <= SEALED_HARMFUL_APPROVED,
        "{} sealed harmful cases approved, more than the {SEALED_HARMFUL_APPROVED} of before",
        h[0]
    );
    assert!(
        b[1] + b[2] <= SEALED_BENIGN_STOPPED,
        "{} sealed harmless cases stopped, more than the {SEALED_BENIGN_STOPPED} of before",
        b[1] + b[2]
    );
}

/// Moderates `cases` (stored as `ids`) and prints the confusion table per category, the
/// cases misjudged and the time per moderation; returns the totals, harmful and harmless,
/// each as approved, held, rejected.
async fn judge(
    name: &str,
    pool: &sqlx::PgPool,
    moderator: &LocalModerator,
    cases: &[Exemplar],
    ids: &[SubmissionId],
) -> [[usize; 3]; 2] {
    let policy = Policy::default();
    let mut table: BTreeMap<(Label, bool), [usize; 3]> = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut times = Vec::with_capacity(cases.len());
    let mut dump = std::env::var("BATTERY_DUMP")
        .ok()
        .map(|p| std::fs::File::create(format!("{p}.{name}")).unwrap());
    for (case, id) in cases.iter().zip(ids) {
        if let Some(f) = dump.as_mut() {
            use std::io::Write;
            let near = exemplars::nearest(pool, *id).await.unwrap();
            let rules = policy.decide(&LocalModerator::new().score(&case.text)).0;
            let near: Vec<_> = near
                .iter()
                .map(|n| (n.label.as_str(), n.harmful, n.similarity))
                .collect();
            writeln!(f, "{}", serde_json::json!({"harmful": case.harmful, "label": case.label.as_str(), "rules": rules.as_str(), "near": near, "text": case.text})).unwrap();
        }
        let started = Instant::now();
        let result = moderator.moderate(&case.text, Some(*id)).await.unwrap();
        let (decision, why) = policy.decide(&result);
        times.push(started.elapsed());
        let column = match decision {
            Decision::Approved => 0,
            Decision::Held => 1,
            Decision::Rejected => 2,
        };
        table.entry((case.label, case.harmful)).or_default()[column] += 1;
        if (decision == Decision::Approved) == case.harmful {
            let near = exemplars::nearest(pool, *id).await.unwrap();
            let nearest = |harmful: bool| {
                near.iter()
                    .find(|n| n.harmful == harmful)
                    .map(|n| format!("{} {:.2}", n.label.as_str(), n.similarity))
                    .unwrap_or_else(|| "-".into())
            };
            wrong.push(format!(
                "  {} {:<16} {:<8} {why:?} (nearest harmful: {}, harmless: {}): {}",
                if case.harmful { "harmful" } else { "benign " },
                case.label.as_str(),
                decision.as_str(),
                nearest(true),
                nearest(false),
                case.text
            ));
        }
    }

    println!(
        "\n{name}: local moderator ({}), exemplars {}",
        moderator.name(),
        exemplars::version()
    );
    let row = |label: &str, h: [usize; 3], b: [usize; 3]| {
        println!(
            "{:<18}{:>10}{:>9}{:>8}{:>10} | {:>10}{:>9}{:>8}{:>10}",
            label,
            h.iter().sum::<usize>(),
            h[0],
            h[1],
            h[2],
            b.iter().sum::<usize>(),
            b[0],
            b[1],
            b[2]
        );
    };
    println!(
        "{:<18}{:>10}{:>9}{:>8}{:>10} | {:>10}{:>9}{:>8}{:>10}",
        "category",
        "harmful:",
        "approved",
        "held",
        "rejected",
        "benign:",
        "approved",
        "held",
        "rejected"
    );
    let mut totals = [[0usize; 3]; 2];
    for label in Label::ALL {
        let h = table.get(&(label, true)).copied().unwrap_or_default();
        let b = table.get(&(label, false)).copied().unwrap_or_default();
        row(label.as_str(), h, b);
        for i in 0..3 {
            totals[0][i] += h[i];
            totals[1][i] += b[i];
        }
    }
    let [h, b] = totals;
    row("all", h, b);
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "time per moderation (rules + exemplar search): p50 {:?}, p99 {:?}, max {:?}",
        at(0.5),
        at(0.99),
        times.last().copied().unwrap_or(Duration::ZERO)
    );
    if !wrong.is_empty() {
        println!("misjudged:\n{}", wrong.join("\n"));
    }
    let benign_total = b.iter().sum::<usize>();
    let benign_stopped = b[1] + b[2];
    println!(
        "{name}: harmful approved: {} of {} (aim 0); harmless stopped: {benign_stopped} of \
         {benign_total}, {:.1}% (aim {:.0}%)",
        h[0],
        h.iter().sum::<usize>(),
        100.0 * benign_stopped as f64 / benign_total.max(1) as f64,
        100.0 * AIM_BENIGN_STOPPED
    );
    totals
}

/// Stores each case as an embedded text submission with its vector, as ingest and embed
/// would have left it; returns their ids in order.
async fn store(
    pool: &sqlx::PgPool,
    embedder: &LocalMiniLm,
    cases: &[Exemplar],
) -> Vec<SubmissionId> {
    let texts: Vec<String> = cases.iter().map(|c| c.text.clone()).collect();
    let vectors = embedder.embed(&texts).await.unwrap();
    let ids: Vec<SubmissionId> = cases.iter().map(|_| SubmissionId::new()).collect();
    let mut tx = pool.begin().await.unwrap();
    for ((id, text), vector) in ids.iter().zip(&texts).zip(vectors) {
        sqlx::query(
            "INSERT INTO submission (id, channel_id, user_id, kind, text, status, embedded_at) \
             VALUES ($1, 'main', 'battery', 'text', $2, 'embedded', now())",
        )
        .bind(id.0)
        .bind(text)
        .execute(&mut *tx)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO submission_embedding_local (submission_id, channel_id, model, embedding) \
             VALUES ($1, 'main', $2, $3)",
        )
        .bind(id.0)
        .bind(embedder.model().name)
        .bind(Vector::from(vector))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    ids
}

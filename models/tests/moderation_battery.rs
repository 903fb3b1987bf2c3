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
//! it is no longer a fair test of words never seen. The held-out sets are: `sealed.tsv`,
//! written after that tuning, and `fresh.tsv`, written by another hand that saw neither the
//! moderator nor the other sets. They are judged and tabled the same way, but the cases they
//! misjudge are never printed, so that no one tunes on them by reading a run.
//!
//! `BATTERY_DUMP=<file>` also writes each battery case's words-only decision, nearest
//! exemplars and classifier probabilities as JSON lines, for tuning the learned signals.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use models::embedding::{Embedder, LocalMiniLm};
use models::moderation::classifier::Classifier;
use models::moderation::exemplars::{self, EXEMPLARS, Exemplar, Label};
use models::moderation::{Decision, LocalModerator, Moderator, Policy};
use pgvector::Vector;
use shared::submission::SubmissionId;
use testkit::Postgres;

const BATTERY: &str = include_str!("moderation/battery.tsv");

/// The aim: no harmful case approved, at most this share of the harmless ones stopped.
const AIM_BENIGN_STOPPED: f64 = 0.03;

/// A labelled set, with today's figures, which a change may only improve. (Once traded on
/// purpose: the exemplar classifier took fresh.tsv from 61 harmful approved and 15 harmless
/// stopped to 25 and 22; on air, a harmful message approved is the failure that matters.)
struct Set {
    name: &'static str,
    file: &'static str,
    /// Its misjudged cases were read to tune the moderator (and are printed).
    tuned: bool,
    harmful_approved: usize,
    benign_stopped: usize,
}

const SETS: [Set; 3] = [
    Set {
        name: "battery.tsv",
        file: BATTERY,
        tuned: true,
        harmful_approved: 1,
        benign_stopped: 15,
    },
    // Written after the rules and exemplars were tuned on the battery.
    Set {
        name: "sealed.tsv",
        file: include_str!("moderation/sealed.tsv"),
        tuned: false,
        harmful_approved: 16,
        benign_stopped: 10,
    },
    // Written by a different hand without seeing the rules, the exemplars or either set.
    Set {
        name: "fresh.tsv",
        file: include_str!("moderation/fresh.tsv"),
        tuned: false,
        harmful_approved: 25,
        benign_stopped: 22,
    },
];

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
    // What the moderator trains on first use, timed here (the test profile optimises models).
    let model = models::embedding::EmbeddingModel::ALL_MINILM_L6_V2.name;
    let examples = exemplars::vectors(&pool, model).await.unwrap();
    let started = Instant::now();
    let classifier = Classifier::train(&examples).expect("a classifier");
    println!(
        "exemplar classifier: trained on {} exemplars ({} dimensions) in {:?}",
        examples.len(),
        examples[0].0.len(),
        started.elapsed()
    );

    // Every set is judged and printed before any limit is checked, so a run shows them all.
    let moderator = LocalModerator::with_exemplars(pool.clone());
    let mut over = Vec::new();
    for set in SETS {
        let cases = exemplars::parse(set.file).unwrap_or_else(|e| panic!("{}: {e}", set.name));
        for case in &cases {
            assert!(
                !seen.contains(&key(&case.text)),
                "{}: {:?} is an exemplar too: the sets must be held out",
                set.name,
                case.text
            );
        }
        let ids = store(&pool, &embedder, &cases).await;
        let [h, b] = judge(
            set.name,
            &pool,
            &moderator,
            &classifier,
            &cases,
            &ids,
            set.tuned,
        )
        .await;
        if h[0] > set.harmful_approved {
            over.push(format!(
                "{}: {} harmful cases approved, more than the {} of before",
                set.name, h[0], set.harmful_approved
            ));
        }
        if b[1] + b[2] > set.benign_stopped {
            over.push(format!(
                "{}: {} harmless cases held or rejected, more than the {} of before",
                set.name,
                b[1] + b[2],
                set.benign_stopped
            ));
        }
    }
    assert!(over.is_empty(), "{}", over.join("\n"));
}

/// Moderates `cases` (stored as `ids`) and prints the confusion table per category, the
/// time per moderation and, with `show_misjudged`, the cases misjudged (and the dump, with
/// `classifier`'s probabilities); returns the totals,
/// harmful and harmless, each as approved, held, rejected.
async fn judge(
    name: &str,
    pool: &sqlx::PgPool,
    moderator: &LocalModerator,
    classifier: &Classifier,
    cases: &[Exemplar],
    ids: &[SubmissionId],
    show_misjudged: bool,
) -> [[usize; 3]; 2] {
    let policy = Policy::default();
    let mut table: BTreeMap<(Label, bool), [usize; 3]> = BTreeMap::new();
    let mut wrong = Vec::new();
    let mut times = Vec::with_capacity(cases.len());
    let mut dump = std::env::var("BATTERY_DUMP")
        .ok()
        .filter(|_| show_misjudged)
        .map(|p| std::fs::File::create(format!("{p}.{name}")).unwrap());
    for (case, id) in cases.iter().zip(ids) {
        if let Some(f) = dump.as_mut() {
            use std::io::Write;
            let near = near(pool, *id).await;
            let rules = policy.decide(&LocalModerator::new().score(&case.text)).0;
            let near: Vec<_> = near
                .iter()
                .map(|n| (n.label.as_str(), n.harmful, n.similarity))
                .collect();
            let (_, vector) = exemplars::submission_vector(pool, *id)
                .await
                .unwrap()
                .unwrap();
            let probabilities: Vec<_> = classifier
                .probabilities(&vector)
                .into_iter()
                .map(|(l, p)| (l.as_str(), p))
                .collect();
            writeln!(f, "{}", serde_json::json!({"harmful": case.harmful, "label": case.label.as_str(), "rules": rules.as_str(), "near": near, "classifier": probabilities, "text": case.text})).unwrap();
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
            let near = near(pool, *id).await;
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
        "time per moderation (rules, exemplar search, classifier; the first trains it): p50 {:?}, p99 {:?}, max {:?}",
        at(0.5),
        at(0.99),
        times.last().copied().unwrap_or(Duration::ZERO)
    );
    if show_misjudged && !wrong.is_empty() {
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

/// The exemplars nearest to a stored case.
async fn near(pool: &sqlx::PgPool, id: SubmissionId) -> Vec<exemplars::Neighbour> {
    let (model, vector) = exemplars::submission_vector(pool, id)
        .await
        .unwrap()
        .expect("stored with its vector");
    exemplars::nearest(pool, &model, &vector).await.unwrap()
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

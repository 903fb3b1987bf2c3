//! The offline moderator: rustrict's grades, the phrase rules of `rules.txt`, the personal
//! data finder and, for a submission, its nearest labelled exemplars.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use rustrict::{Censor, Type};
use shared::submission::SubmissionId;
use sqlx::PgPool;

use super::classifier::Classifier;
use super::personal_data;
use super::rules::{RULES, in_list};
use super::{CATEGORIES, ModerationResult, Moderator, STATION_CATEGORIES, exemplars, normalize};
use crate::error::ProviderError;

/// Offline moderation, in layers that each catch what the others miss:
///
/// - the `rustrict` profanity filter (which sees through leetspeak, spacing and look-alike
///   characters) for profanity, sexual, mean and offensive words;
/// - the phrase rules of `rules.txt` for what it does not classify (threats, violence,
///   self-harm, hate speech, illicit requests, instructions to the DJ), matched on words with
///   their disguises taken off (`normalize`);
/// - the [`personal_data`] finder (phone numbers, e-mail and street addresses);
/// - with a database, the submission's nearest labelled [`exemplars`] and the exemplar
///   [`Classifier`], which read meaning where the words are new.
///
/// Scores use OpenAI's category names, plus [`STATION_CATEGORIES`]. It is deliberately
/// conservative: what it is unsure of lands in the held band and a person decides.
#[derive(Debug, Clone, Default)]
pub struct LocalModerator {
    /// Where the exemplars and the submissions' embeddings are; `None`: words only.
    exemplars: Option<PgPool>,
    /// A classifier per embedding model, trained on the exemplars on first use.
    classifiers: Arc<tokio::sync::Mutex<HashMap<String, Arc<Classifier>>>>,
}

impl LocalModerator {
    /// Words only: the rules, rustrict and the personal data finder.
    pub const NAME: &str = "local:rules";
    /// With the nearest exemplars of a submission's embedding.
    pub const NAME_WITH_EXEMPLARS: &str = "local:rules+exemplars";

    /// Words only (the DJ's scripts, and tests).
    pub fn new() -> Self {
        LocalModerator::default()
    }

    /// With the exemplars seeded in `pool`, searched for each submission.
    pub fn with_exemplars(pool: PgPool) -> Self {
        LocalModerator {
            exemplars: Some(pool),
            ..LocalModerator::default()
        }
    }

    /// Scores `text` from its words alone, synchronously (microseconds for a radio message).
    pub fn score(&self, text: &str) -> ModerationResult {
        self.score_noting(text, &mut |_| {})
    }

    /// What in `text` raised which scores: rustrict's grades, the rules of `rules.txt` by
    /// line, the minors check and personal data. For people tuning the rules
    /// (`cargo run -p models --example moderate`).
    pub fn explain(&self, text: &str) -> Vec<String> {
        let mut why = Vec::new();
        self.score_noting(text, &mut |reason| why.push(reason));
        why
    }

    fn score_noting(&self, text: &str, note: &mut dyn FnMut(String)) -> ModerationResult {
        let mut scores: BTreeMap<&'static str, f64> = CATEGORIES
            .iter()
            .chain(&STATION_CATEGORIES)
            .map(|&c| (c, 0.0))
            .collect();
        let mut raise = |category: &'static str, score: f64| {
            let s = scores.get_mut(category).expect("a known category");
            *s = s.max(score);
        };

        let analysis = profanity(text);
        if !analysis.is(Type::NONE) {
            note(format!("rustrict: {analysis:?}"));
        }
        let level = |kind: Type, mild: f64, moderate: f64, severe: f64| {
            if analysis.is(kind & Type::SEVERE) {
                severe
            } else if analysis.is(kind & Type::MODERATE) {
                moderate
            } else if analysis.is(kind & Type::MILD) {
                mild
            } else {
                0.0
            }
        };
        // rustrict grades words, not what is said with them: its lower grades take in the
        // names of groups ("gay", "Ainu"), of history ("Hitler documentary"), of songs
        // ("Loser", "Shut Up and Dance") and "I hate Mondays", which a station hears every
        // day. Below its severe grade it is recorded under the hold thresholds; the phrase
        // rules and the exemplars read what is said with the words.
        let sexual = level(Type::SEXUAL, 0.25, 0.35, 0.8);
        raise("sexual", sexual);
        raise("hate", level(Type::OFFENSIVE, 0.0, 0.25, 0.8));
        raise("harassment", level(Type::MEAN, 0.0, 0.35, 0.8));
        // OpenAI has no profanity category; on air, strong swearing needs a look, so it
        // counts as harassment just above the default hold threshold.
        raise("harassment", level(Type::PROFANE, 0.2, 0.45, 0.6));

        let readings = normalize::readings(text);
        let lower = text
            .to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        for rule in RULES.rules() {
            if rule.matches(&lower, &readings) {
                note(format!("rules.txt:{} => {:?}", rule.line, rule.scores));
                for &(category, score) in &rule.scores {
                    raise(category, score);
                }
            }
        }
        let minor = RULES.list("minor");
        if sexual >= 0.25 && readings.iter().flatten().any(|w| in_list(minor, w)) {
            // Only explicit words reject outright; "sex education for teens" is for a person.
            note("sexual words beside a word for a minor".to_owned());
            raise("sexual/minors", if sexual >= 0.8 { 0.9 } else { 0.35 });
        }
        let found = personal_data::find(text);
        if !found.is_empty() {
            note(format!(
                "personal data: {:?}",
                found
                    .iter()
                    .map(|f| &text[f.span.clone()])
                    .collect::<Vec<_>>()
            ));
            raise("personal-data", 0.6);
        }
        result(scores.into_iter().map(|(c, s)| (c.to_owned(), s)).collect())
    }

    /// [`Self::score`], raised by the nearest exemplars of `submission`'s stored embedding.
    pub async fn score_submission(
        &self,
        text: &str,
        submission: SubmissionId,
        pool: &PgPool,
    ) -> Result<ModerationResult, sqlx::Error> {
        let mut scores = self.score(text).category_scores;
        if text.split_whitespace().count() < exemplars::MIN_WORDS {
            return Ok(result(scores));
        }
        // The vector is read once, for the neighbours and the classifier both.
        let embedded = exemplars::submission_vector(pool, submission).await?;
        let neighbours = match &embedded {
            Some((model, vector)) => exemplars::nearest(pool, model, vector).await?,
            None => Vec::new(),
        };
        if neighbours.is_empty() {
            tracing::warn!(
                submission_id = %submission,
                version = %exemplars::version(),
                "no exemplars near this submission (not embedded, or this exemplar version is \
                 not seeded yet): moderated by its words only"
            );
        }
        let mut raised = exemplars::score(&neighbours);
        if let Some((model, vector)) = &embedded
            && let Some(classifier) = self.classifier(pool, model).await?
        {
            raised.extend(classifier.score(vector));
        }
        for (category, score) in raised {
            let s = scores.entry(category.to_owned()).or_default();
            *s = s.max(score);
        }
        Ok(result(scores))
    }

    /// The classifier for `model`'s vectors, trained on the exemplars the first time it is
    /// asked for (one caller trains; the others wait for it). `None` while this version's
    /// exemplars are not seeded for that model.
    async fn classifier(
        &self,
        pool: &PgPool,
        model: &str,
    ) -> Result<Option<Arc<Classifier>>, sqlx::Error> {
        let mut trained = self.classifiers.lock().await;
        if let Some(classifier) = trained.get(model) {
            return Ok(Some(classifier.clone()));
        }
        let examples = exemplars::vectors(pool, model).await?;
        if examples.is_empty() {
            return Ok(None);
        }
        let started = std::time::Instant::now();
        let count = examples.len();
        let classifier = tokio::task::spawn_blocking(move || Classifier::train(&examples))
            .await
            .ok()
            .flatten()
            .map(Arc::new);
        tracing::info!(
            model,
            exemplars = count,
            version = %exemplars::version(),
            ms = started.elapsed().as_millis() as u64,
            "trained the exemplar classifier"
        );
        if let Some(classifier) = &classifier {
            trained.insert(model.to_owned(), classifier.clone());
        }
        Ok(classifier)
    }

    /// What the station checks whichever provider moderates: personal data, and instructions
    /// to the DJ. Only [`STATION_CATEGORIES`].
    pub fn station_checks(&self, text: &str) -> BTreeMap<String, f64> {
        let all = self.score(text).category_scores;
        STATION_CATEGORIES
            .iter()
            .map(|&c| (c.to_owned(), all.get(c).copied().unwrap_or(0.0)))
            .collect()
    }
}

/// The OpenAI-shaped result of per-category scores: a category is flagged at 0.5.
fn result(category_scores: BTreeMap<String, f64>) -> ModerationResult {
    let categories: BTreeMap<String, bool> = category_scores
        .iter()
        .map(|(c, &s)| (c.clone(), s >= 0.5))
        .collect();
    ModerationResult {
        flagged: categories.values().any(|&f| f),
        categories,
        category_scores,
    }
}

#[async_trait]
impl Moderator for LocalModerator {
    fn name(&self) -> &str {
        if self.exemplars.is_some() {
            Self::NAME_WITH_EXEMPLARS
        } else {
            Self::NAME
        }
    }

    async fn moderate(
        &self,
        text: &str,
        submission: Option<SubmissionId>,
    ) -> Result<ModerationResult, ProviderError> {
        match (&self.exemplars, submission) {
            (Some(pool), Some(id)) => {
                self.score_submission(text, id, pool)
                    .await
                    .map_err(|e| ProviderError::Transient {
                        provider: "local exemplars",
                        reason: e.to_string(),
                    })
            }
            _ => Ok(self.score(text)),
        }
    }
}

/// rustrict's analysis of `text`, without matches it made only by gluing the end of one word
/// to the start of the next ("melo(dy ke)ttle" reads as a slur). rustrict ignores spaces on
/// purpose, to catch "f u c k"; a match that spans a space but starts or ends inside a longer
/// word is such an artefact. When every match is one, the words are analysed one by one.
fn profanity(text: &str) -> Type {
    let mut censor = Censor::from_str(text);
    censor.with_censor_first_character_threshold(Type::ANY);
    let (censored, analysis) = censor.censor_and_analyze();
    let original: Vec<char> = text.chars().collect();
    let censored: Vec<char> = censored.chars().collect();
    if analysis.is(Type::NONE) || original.len() != censored.len() {
        return analysis;
    }
    let hit = |i: usize| censored[i] == '*' && original[i] != '*';
    let inside_word =
        |i: Option<usize>| i.is_some_and(|i| original[i].is_alphanumeric() && !hit(i));
    let mut groups = 0;
    let mut artefacts = 0;
    let mut i = 0;
    while i < original.len() {
        if !hit(i) {
            i += 1;
            continue;
        }
        // A group: censored characters, spaces between them included (rustrict censors
        // those too).
        let start = i;
        let mut end = i;
        while end + 1 < original.len() && hit(end + 1) {
            end += 1;
        }
        let spans_space = original[start..=end].iter().any(|c| c.is_whitespace());
        groups += 1;
        if spans_space
            && (inside_word(start.checked_sub(1))
                || inside_word(Some(end + 1).filter(|&k| k < original.len())))
        {
            artefacts += 1;
        }
        i = end + 1;
    }
    if groups > 0 && artefacts == groups {
        text.split_whitespace()
            .map(|word| Censor::from_str(word).analyze())
            .fold(Type::NONE, |acc, t| acc | t)
    } else {
        analysis
    }
}

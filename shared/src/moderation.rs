//! Content moderation: a provider scores a text per category (OpenAI's moderation shape, so
//! both providers are interchangeable), and a [`Policy`] of per-category thresholds turns the
//! scores into approve, hold for a human, or reject.
//!
//! Why thresholds instead of the provider's `flagged`: a radio station is stricter than
//! OpenAI's general-purpose defaults in some categories (sexual content on air) and must be
//! more careful in others (a listener in crisis should reach a human, not be auto-rejected).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use async_trait::async_trait;
use rustrict::{Censor, Type};
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Env};
use crate::openai::{OpenAiClient, PROVIDER};
use crate::provider::ProviderError;

/// The categories of OpenAI's `omni-moderation` models, which [`LocalModerator`] scores too.
pub const CATEGORIES: [&str; 13] = [
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

/// OpenAI moderation's shape:
/// <https://platform.openai.com/docs/api-reference/moderations/object>
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModerationResult {
    pub flagged: bool,
    pub categories: BTreeMap<String, bool>,
    /// Each in 0..=1.
    pub category_scores: BTreeMap<String, f64>,
}

impl ModerationResult {
    /// The score of `category`, 0 when absent.
    pub fn score(&self, category: &str) -> f64 {
        self.category_scores.get(category).copied().unwrap_or(0.0)
    }
}

/// A moderation provider.
#[async_trait]
pub trait Moderator: Send + Sync {
    /// Provider and model, recorded with each decision: `openai:omni-moderation-latest`,
    /// `local:rules`.
    fn name(&self) -> &str;
    async fn moderate(&self, text: &str) -> Result<ModerationResult, ProviderError>;
}

/// What to do with a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approved,
    /// In the grey zone: a human decides.
    Held,
    Rejected,
}

impl Decision {
    /// The submission status it leads to.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approved => "approved",
            Decision::Held => "held",
            Decision::Rejected => "rejected",
        }
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Scores at or above `hold_at` are held for review; at or above `reject_at`, rejected.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub hold_at: f64,
    pub reject_at: f64,
}

impl Thresholds {
    /// # Panics
    /// Unless `0 <= hold_at <= reject_at <= 1`.
    pub const fn new(hold_at: f64, reject_at: f64) -> Self {
        assert!(0.0 <= hold_at && hold_at <= reject_at && reject_at <= 1.0);
        Thresholds { hold_at, reject_at }
    }
}

/// Defaults for a general-audience station, as `(category, hold_at, reject_at)`.
///
/// Self-harm and intent reject only at 1.0, i.e. practically never: someone who writes
/// about ending their life should be seen by a person. Instructions for it, threats and
/// anything sexual about minors are rejected early.
const DEFAULT_THRESHOLDS: [(&str, f64, f64); 13] = [
    ("harassment", 0.4, 0.9),
    ("harassment/threatening", 0.3, 0.7),
    ("hate", 0.3, 0.85),
    ("hate/threatening", 0.2, 0.6),
    ("illicit", 0.4, 0.9),
    ("illicit/violent", 0.3, 0.7),
    ("self-harm", 0.3, 1.0),
    ("self-harm/intent", 0.2, 1.0),
    ("self-harm/instructions", 0.2, 0.6),
    ("sexual", 0.4, 0.85),
    ("sexual/minors", 0.1, 0.4),
    ("violence", 0.4, 0.85),
    ("violence/graphic", 0.3, 0.7),
];

/// For a category the policy does not know (a provider added one): hold when it is
/// confident, never reject unseen.
const UNKNOWN_CATEGORY: Thresholds = Thresholds::new(0.5, 1.0);

/// Per-category thresholds.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    thresholds: BTreeMap<&'static str, Thresholds>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            thresholds: DEFAULT_THRESHOLDS
                .iter()
                .map(|&(c, hold, reject)| (c, Thresholds::new(hold, reject)))
                .collect(),
        }
    }
}

impl Policy {
    /// The variable [`Policy::from_env`] reads.
    pub const ENV: &str = "MODERATION_THRESHOLDS";

    /// The defaults, overridden per category by `MODERATION_THRESHOLDS`, e.g.
    /// `violence=0.4:0.8,hate=0.3:0.7` (`category=hold_at:reject_at`).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(env
            .optional_with(Self::ENV, |v| Policy::default().with_overrides(v))?
            .unwrap_or_default())
    }

    /// Applies `category=hold:reject,...` overrides.
    pub fn with_overrides(mut self, spec: &str) -> Result<Self, String> {
        let mut seen = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (category, range) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?}: expected category=hold:reject"))?;
            let category = category.trim();
            let key = CATEGORIES
                .iter()
                .copied()
                .find(|c| *c == category)
                .ok_or_else(|| {
                    format!(
                        "unknown category {category:?}; known: {}",
                        CATEGORIES.join(", ")
                    )
                })?;
            if seen.contains(&key) {
                return Err(format!("{key} is given twice"));
            }
            seen.push(key);
            let (hold, reject) = range
                .split_once(':')
                .ok_or_else(|| format!("{item:?}: expected category=hold:reject"))?;
            let number = |s: &str| {
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| format!("{item:?}: {:?} is not a number", s.trim()))
            };
            let (hold_at, reject_at) = (number(hold)?, number(reject)?);
            if !(0.0 <= hold_at && hold_at <= reject_at && reject_at <= 1.0) {
                return Err(format!("{item:?}: need 0 <= hold <= reject <= 1"));
            }
            self.thresholds
                .insert(key, Thresholds { hold_at, reject_at });
        }
        Ok(self)
    }

    /// The thresholds applied to `category`.
    pub fn thresholds(&self, category: &str) -> Thresholds {
        self.thresholds
            .get(category)
            .copied()
            .unwrap_or(UNKNOWN_CATEGORY)
    }

    /// Approved, held (some score in a grey zone) or rejected (some score at or above its
    /// reject threshold), with the categories that decided it.
    pub fn decide(&self, result: &ModerationResult) -> (Decision, Vec<String>) {
        let mut held = Vec::new();
        let mut rejected = Vec::new();
        for (category, &score) in &result.category_scores {
            let t = self.thresholds(category);
            if score >= t.reject_at {
                rejected.push(category.clone());
            } else if score >= t.hold_at || score.is_nan() {
                // A NaN score is a broken provider answer: a person should look.
                held.push(category.clone());
            }
        }
        if !rejected.is_empty() {
            (Decision::Rejected, rejected)
        } else if !held.is_empty() {
            (Decision::Held, held)
        } else {
            (Decision::Approved, Vec::new())
        }
    }
}

/// OpenAI's moderation endpoint.
#[derive(Debug, Clone)]
pub struct OpenAiModerator {
    client: OpenAiClient,
    model: String,
    name: String,
}

/// The moderation model [`OpenAiModerator::new`] uses.
pub const OMNI_MODERATION_LATEST: &str = "omni-moderation-latest";

impl OpenAiModerator {
    pub fn new(client: OpenAiClient) -> Self {
        Self::with_model(client, OMNI_MODERATION_LATEST)
    }

    pub fn with_model(client: OpenAiClient, model: impl Into<String>) -> Self {
        let model = model.into();
        OpenAiModerator {
            client,
            name: format!("{PROVIDER}:{model}"),
            model,
        }
    }
}

#[derive(Serialize)]
struct ModerationRequest<'a> {
    model: &'a str,
    input: &'a str,
}

#[derive(Deserialize)]
struct ModerationResponse {
    results: Vec<WireResult>,
}

/// Older models answer `null` for categories they do not score.
#[derive(Deserialize)]
struct WireResult {
    flagged: bool,
    #[serde(default)]
    categories: BTreeMap<String, Option<bool>>,
    #[serde(default)]
    category_scores: BTreeMap<String, Option<f64>>,
}

#[async_trait]
impl Moderator for OpenAiModerator {
    fn name(&self) -> &str {
        &self.name
    }

    async fn moderate(&self, text: &str) -> Result<ModerationResult, ProviderError> {
        let req = ModerationRequest {
            model: &self.model,
            input: text,
        };
        let res: ModerationResponse = self.client.post_json("moderations", &req).await?;
        let r = res
            .results
            .into_iter()
            .next()
            .ok_or_else(|| ProviderError::Transient {
                provider: PROVIDER,
                reason: "moderation response has no result".to_owned(),
            })?;
        Ok(ModerationResult {
            flagged: r.flagged,
            categories: r
                .categories
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect(),
            category_scores: r
                .category_scores
                .into_iter()
                .filter_map(|(k, v)| Some((k, v?)))
                .collect(),
        })
    }
}

/// Offline moderation: the `rustrict` profanity filter (which sees through leetspeak,
/// spacing and look-alike characters) for profanity, sexual, mean and offensive words, and
/// explicit phrase rules for what it does not classify (threats, violence, self-harm, hate
/// speech, illicit requests). Scores use OpenAI's category names.
///
/// It is deliberately conservative: a word list cannot read intent, so confident local
/// scores mostly land in the held band and a person decides.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalModerator;

impl LocalModerator {
    pub const NAME: &str = "local:rules";

    pub fn new() -> Self {
        LocalModerator
    }

    /// Scores `text` synchronously (microseconds for a radio message).
    pub fn score(&self, text: &str) -> ModerationResult {
        let mut scores: BTreeMap<&'static str, f64> =
            CATEGORIES.iter().map(|&c| (c, 0.0)).collect();
        let mut raise = |category: &'static str, score: f64| {
            let s = scores.get_mut(category).expect("a known category");
            *s = s.max(score);
        };

        let analysis = profanity(text);
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
        let sexual = level(Type::SEXUAL, 0.25, 0.5, 0.8);
        raise("sexual", sexual);
        // rustrict's "offensive" is mostly slurs, graded by how common rather than how
        // hateful (some slurs are only "mild"), so even mild reaches the hold threshold.
        raise("hate", level(Type::OFFENSIVE, 0.35, 0.55, 0.8));
        raise("harassment", level(Type::MEAN, 0.25, 0.5, 0.8));
        // OpenAI has no profanity category; on air, strong swearing needs a look, so it
        // counts as harassment just above the default hold threshold.
        raise("harassment", level(Type::PROFANE, 0.2, 0.45, 0.6));

        let words = normalized_words(text);
        for rule in RULES.iter() {
            if rule.matches(&words) {
                for &(category, score) in rule.scores {
                    raise(category, score);
                }
            }
        }
        if sexual >= 0.25 && words.iter().any(|w| MINOR_WORDS.contains(&w.as_str())) {
            // Only explicit words reject outright; "sex education for teens" is for a person.
            raise("sexual/minors", if sexual >= 0.8 { 0.9 } else { 0.35 });
        }

        let category_scores: BTreeMap<String, f64> =
            scores.into_iter().map(|(c, s)| (c.to_owned(), s)).collect();
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
}

#[async_trait]
impl Moderator for LocalModerator {
    fn name(&self) -> &str {
        Self::NAME
    }

    async fn moderate(&self, text: &str) -> Result<ModerationResult, ProviderError> {
        Ok(self.score(text))
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

/// Words that, next to sexual content, make it sexual content involving minors.
const MINOR_WORDS: &[&str] = &[
    "child",
    "children",
    "kid",
    "kids",
    "minor",
    "minors",
    "underage",
    "preteen",
    "preteens",
    "teen",
    "teens",
    "schoolgirl",
    "schoolgirls",
    "schoolboy",
    "schoolboys",
    "toddler",
    "loli",
];

/// Groups that hate speech targets, for the `{group}` slot of the rules.
const GROUPS: &str = "jews|jew|muslims|muslim|christians|catholics|hindus|sikhs|blacks|whites|\
    asians|arabs|africans|mexicans|immigrants|migrants|refugees|foreigners|gays|gay|lesbians|\
    trans|homosexuals|women|gypsies|roma";

/// Phrase rules: `;` separates alternative phrases, spaces separate words; `a|b` is either
/// word, a trailing `*` matches a prefix, a leading `?` makes the word optional, `{group}` is
/// one of [`GROUPS`]. Matched against the lower-cased, de-leeted words of the text.
const RULE_TABLE: &[(&str, &[(&str, f64)])] = &[
    // Threats against the listener or someone named.
    (
        "kill|murder|shoot|stab|strangle|choke|behead|hang you|u|ya|yall",
        &[
            ("harassment/threatening", 0.85),
            ("harassment", 0.6),
            ("violence", 0.7),
        ],
    ),
    (
        "kill|murder|shoot|stab|strangle|behead him|her|them",
        &[("harassment/threatening", 0.5), ("violence", 0.6)],
    ),
    (
        "beat|smash you|u|ya up",
        &[("harassment/threatening", 0.6), ("violence", 0.5)],
    ),
    (
        "i know where you|u live|work",
        &[("harassment/threatening", 0.8)],
    ),
    ("watch your|ur back", &[("harassment/threatening", 0.4)]),
    (
        "shoot|shot up ?the|a|this|that|your school|church|mosque|synagogue|temple|mall|office|concert|station",
        &[
            ("violence", 0.9),
            ("harassment/threatening", 0.7),
            ("illicit/violent", 0.7),
        ],
    ),
    (
        "plant|planting|place a bomb",
        &[("violence", 0.8), ("illicit/violent", 0.8)],
    ),
    // Violent words alone: recorded, below any default threshold ("killer track").
    (
        "kill*|murder*|shoot*|stab*|massacre*|slaughter*",
        &[("violence", 0.2)],
    ),
    ("tortur*", &[("violence", 0.35)]),
    (
        "decapitat*|dismember*|disembowel*|mutilat*|entrails|gore|gory",
        &[("violence/graphic", 0.75), ("violence", 0.6)],
    ),
    (
        "blood|brains everywhere|splatter*|spatter*",
        &[("violence/graphic", 0.6), ("violence", 0.5)],
    ),
    // Self-harm.
    (
        "kill|killing|hurt|hurting|cut|cutting|harm|harming|hang|hanging|off myself",
        &[("self-harm", 0.85), ("self-harm/intent", 0.85)],
    ),
    (
        "end|ending|take|taking my ?own life",
        &[("self-harm", 0.85), ("self-harm/intent", 0.85)],
    ),
    (
        "want|wanna ?to die",
        &[("self-harm", 0.6), ("self-harm/intent", 0.6)],
    ),
    (
        "no reason to live; cant|cannot go on anymore",
        &[("self-harm", 0.5), ("self-harm/intent", 0.5)],
    ),
    (
        "better off dead",
        &[("self-harm", 0.5), ("self-harm/intent", 0.5)],
    ),
    (
        "dont want to live; do not want to live; dont want to be alive",
        &[("self-harm", 0.6), ("self-harm/intent", 0.6)],
    ),
    ("suicid*|selfharm", &[("self-harm", 0.45)]),
    ("self harm", &[("self-harm", 0.45)]),
    ("kms", &[("self-harm", 0.6), ("self-harm/intent", 0.6)]),
    (
        "how|ways|way to kill|hang|cut|off yourself|myself|urself",
        &[("self-harm/instructions", 0.9), ("self-harm", 0.8)],
    ),
    (
        "how|ways|way to commit suicide",
        &[("self-harm/instructions", 0.9), ("self-harm", 0.8)],
    ),
    (
        "painless|easiest|best|quickest way to die",
        &[("self-harm/instructions", 0.85), ("self-harm", 0.8)],
    ),
    (
        "how many pills to die|overdose",
        &[("self-harm/instructions", 0.85), ("self-harm", 0.8)],
    ),
    // Telling someone to harm themselves is harassment first.
    (
        "kill|hang yourself|urself|yourselves",
        &[
            ("harassment", 0.85),
            ("harassment/threatening", 0.6),
            ("self-harm", 0.5),
        ],
    ),
    ("kys", &[("harassment", 0.85), ("self-harm", 0.5)]),
    // Hate speech.
    (
        "kill|murder|exterminate|gas|hang|shoot|burn|eradicate|wipe ?out all|the|those {group}",
        &[("hate", 0.9), ("hate/threatening", 0.9), ("violence", 0.6)],
    ),
    (
        "kill|murder|exterminate|gas|eradicate {group}",
        &[("hate", 0.9), ("hate/threatening", 0.9), ("violence", 0.6)],
    ),
    (
        "death to ?the|all {group}",
        &[("hate", 0.9), ("hate/threatening", 0.9)],
    ),
    (
        "{group} are|r animals|vermin|rats|cockroaches|parasites|subhuman|scum|filth|trash|disgusting|inferior",
        &[("hate", 0.8), ("harassment", 0.5)],
    ),
    ("hate|despise all|the|those {group}", &[("hate", 0.7)]),
    ("i hate {group}", &[("hate", 0.7)]),
    (
        "heil hitler; sieg heil; 1488; white power|genocide; great replacement",
        &[("hate", 0.7)],
    ),
    (
        "go back to your|ur ?own country",
        &[("hate", 0.55), ("harassment", 0.45)],
    ),
    ("subhuman*|untermensch*", &[("hate", 0.45)]),
    // Illicit.
    (
        "buy|buying|sell|selling|score|deal|dealing cocaine|coke|heroin|meth|fentanyl|crack|mdma|ecstasy|lsd|drugs",
        &[("illicit", 0.6)],
    ),
    (
        "how|way to make|cook|synthesize|synthesise|produce meth|methamphetamine|cocaine|heroin|fentanyl|lsd|drugs",
        &[("illicit", 0.85)],
    ),
    (
        "how|way to make|build|assemble ?a|an bomb|explosive*|molotov*|pipebomb",
        &[
            ("illicit/violent", 0.9),
            ("illicit", 0.8),
            ("violence", 0.5),
        ],
    ),
    (
        "how|way to make|build|assemble ?a|an pipe bomb",
        &[
            ("illicit/violent", 0.9),
            ("illicit", 0.8),
            ("violence", 0.5),
        ],
    ),
    (
        "launder|laundering money; stolen credit card*; counterfeit money|cash",
        &[("illicit", 0.6)],
    ),
    ("money laundering", &[("illicit", 0.45)]),
    // Sexual content involving minors, beyond the sexual-word check.
    (
        "child porn*; csam",
        &[("sexual/minors", 0.95), ("sexual", 0.8)],
    ),
    ("pedo*|paedo*", &[("sexual/minors", 0.3)]),
];

struct Rule {
    /// Alternative phrases; each one entry per word position.
    phrases: Vec<Vec<WordPattern>>,
    scores: &'static [(&'static str, f64)],
}

struct WordPattern {
    optional: bool,
    /// `(text, is_prefix)`.
    alternatives: Vec<(String, bool)>,
}

impl WordPattern {
    fn matches(&self, word: &str) -> bool {
        self.alternatives.iter().any(|(alt, prefix)| {
            if *prefix {
                word.starts_with(alt.as_str())
            } else {
                word == alt
            }
        })
    }
}

impl Rule {
    fn parse(pattern: &str, scores: &'static [(&'static str, f64)]) -> Self {
        let phrases = pattern.split(';').map(Self::parse_phrase).collect();
        Rule { phrases, scores }
    }

    fn parse_phrase(phrase: &str) -> Vec<WordPattern> {
        phrase
            .split_whitespace()
            .map(|token| {
                let (optional, token) = match token.strip_prefix('?') {
                    Some(rest) => (true, rest),
                    None => (false, token),
                };
                let token = token.replace("{group}", GROUPS);
                let alternatives = token
                    .split('|')
                    .map(|alt| match alt.strip_suffix('*') {
                        Some(prefix) => (prefix.to_owned(), true),
                        None => (alt.to_owned(), false),
                    })
                    .collect();
                WordPattern {
                    optional,
                    alternatives,
                }
            })
            .collect()
    }

    fn matches(&self, text: &[String]) -> bool {
        self.phrases
            .iter()
            .any(|phrase| (0..text.len()).any(|start| match_from(phrase, &text[start..])))
    }
}

/// Whether `pattern` matches a prefix of `text`.
fn match_from(pattern: &[WordPattern], text: &[String]) -> bool {
    let Some((first, rest)) = pattern.split_first() else {
        return true;
    };
    let here = text
        .first()
        .is_some_and(|w| first.matches(w) && match_from(rest, &text[1..]));
    here || (first.optional && match_from(rest, text))
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    RULE_TABLE
        .iter()
        .map(|&(pattern, scores)| Rule::parse(pattern, scores))
        .collect()
});

/// Lower-cased words with apostrophes dropped (`you're` → `youre`) and, in words that have
/// letters, leetspeak digits and symbols read as letters (`k1ll` → `kill`, `$uicide`).
fn normalized_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut flush = |w: &mut String| {
        if w.is_empty() {
            return;
        }
        let taken = std::mem::take(w);
        // A `!` ending a word is punctuation, inside one (`k!ll`) a letter.
        let word = taken.trim_end_matches('!');
        let word: String = if word.chars().any(|c| c.is_alphabetic()) {
            word.chars()
                .map(|c| match c {
                    '0' => 'o',
                    '1' | '!' => 'i',
                    '3' => 'e',
                    '4' | '@' => 'a',
                    '5' | '$' => 's',
                    '7' => 't',
                    other => other,
                })
                .collect()
        } else {
            word.replace(['@', '$'], "")
        };
        if !word.is_empty() {
            words.push(word);
        }
    };
    for c in text.chars().flat_map(char::to_lowercase) {
        if matches!(c, '\'' | '\u{2019}') {
            continue;
        }
        // `!` only inside a word: `k!ll`.
        if c.is_alphanumeric() || matches!(c, '@' | '$') || (c == '!' && !current.is_empty()) {
            current.push(c);
        } else {
            flush(&mut current);
        }
    }
    flush(&mut current);
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        normalized_words(s)
    }

    #[test]
    fn normalization() {
        assert_eq!(
            words("You're GONNA d1e, k1ll y0u!"),
            ["youre", "gonna", "die", "kill", "you"]
        );
        assert_eq!(words("24/7 radio $5"), ["24", "7", "radio", "5"]);
        assert_eq!(words("$uicide"), ["suicide"]);
    }

    #[test]
    fn rule_patterns() {
        let r = Rule::parse("end|take my ?own life", &[]);
        assert!(r.matches(&words("I want to end my life")));
        assert!(r.matches(&words("take my own life")));
        assert!(!r.matches(&words("end of my life story")));
        let r = Rule::parse("kill* {group}", &[]);
        assert!(r.matches(&words("killing muslims")));
        assert!(!r.matches(&words("killing time")));
    }

    #[test]
    fn every_rule_names_known_categories() {
        for (pattern, scores) in RULE_TABLE {
            for (category, score) in *scores {
                assert!(CATEGORIES.contains(category), "{pattern}: {category}");
                assert!((0.0..=1.0).contains(score), "{pattern}: {score}");
            }
        }
        for (c, _, _) in DEFAULT_THRESHOLDS {
            assert!(CATEGORIES.contains(&c));
        }
    }
}

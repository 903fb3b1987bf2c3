//! The offline moderator: rustrict's grades plus the phrase rules of `rules.txt`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use rustrict::{Censor, Type};

use super::rules::RULES;
use super::{CATEGORIES, ModerationResult, Moderator};
use crate::error::ProviderError;

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
        for rule in RULES.rules() {
            if rule.matches(&words) {
                for &(category, score) in &rule.scores {
                    raise(category, score);
                }
            }
        }
        if sexual >= 0.25 && words.iter().any(|w| RULES.list("minor").contains(w)) {
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

    #[test]
    fn normalization() {
        assert_eq!(
            normalized_words("You're GONNA d1e, k1ll y0u!"),
            ["youre", "gonna", "die", "kill", "you"]
        );
        assert_eq!(normalized_words("24/7 radio $5"), ["24", "7", "radio", "5"]);
        assert_eq!(normalized_words("$uicide"), ["suicide"]);
    }
}

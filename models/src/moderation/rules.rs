//! The local moderator's phrase rules, read from `rules.txt` (the syntax is told at the top of
//! that file). The file is compiled in and parsed once, at first use; the tests parse it too,
//! so a malformed line fails the build's tests rather than a moderation at run time.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use super::{known_category, normalize};

/// The rules and word lists of `rules.txt`.
pub(super) static RULES: LazyLock<RuleBook> = LazyLock::new(|| {
    RuleBook::parse(include_str!("rules.txt"))
        .unwrap_or_else(|e| panic!("models/src/moderation/rules.txt: {e}"))
});

pub(super) struct RuleBook {
    rules: Vec<Rule>,
    lists: BTreeMap<String, Vec<String>>,
}

pub(super) struct Rule {
    /// Its line in `rules.txt`, for [`super::LocalModerator::explain`].
    pub line: usize,
    /// Alternative phrases; each one entry per word position.
    phrases: Vec<Vec<WordPattern>>,
    /// `text:` rules: lower-cased pieces of the raw text (`system:`, `[inst]`) instead.
    raw: Vec<String>,
    /// `unless a|b`: words whose presence anywhere in the text cancels the rule ("shoot a
    /// video at the station").
    unless: Vec<(String, bool)>,
    /// `(category, score)`: the category is a [`known_category`].
    pub scores: Vec<(&'static str, f64)>,
}

enum WordPattern {
    /// One of the alternatives, or (when optional) none.
    Word {
        optional: bool,
        /// `(normalised text, is_prefix)`.
        alternatives: Vec<(String, bool)>,
    },
    /// `~`: up to [`GAP`] words of anything.
    Gap,
}

/// How many words a `~` in a phrase may skip: "I am *really* going to" and "kill *every one
/// of* you" stay one phrase, a sentence away does not.
const GAP: usize = 3;

impl RuleBook {
    /// Parses the rule file; an error names the line.
    fn parse(text: &str) -> Result<Self, String> {
        let mut book = RuleBook {
            rules: Vec::new(),
            lists: BTreeMap::new(),
        };
        for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |e: String| format!("line {n}: {e}");
            if let Some(list) = line.strip_prefix('@') {
                let (name, words) = list
                    .split_once('=')
                    .ok_or_else(|| at("expected @name = word|word".into()))?;
                let words = words.trim().split('|').map(str::to_owned).collect();
                book.lists.insert(name.trim().to_owned(), words);
            } else {
                let mut rule = book.parse_rule(line).map_err(at)?;
                rule.line = n;
                book.rules.push(rule);
            }
        }
        Ok(book)
    }

    fn parse_rule(&self, line: &str) -> Result<Rule, String> {
        let (pattern, scores) = line
            .split_once("=>")
            .ok_or("expected PHRASES => category score, ...")?;
        let (scores, unless) = match scores.split_once(" unless ") {
            Some((scores, unless)) => (scores, self.parse_alternatives(unless.trim())?),
            None => (scores, Vec::new()),
        };
        if let Some(raw) = pattern.trim().strip_prefix("text:") {
            let raw: Vec<String> = raw
                .split(" ; ")
                .map(|p| p.trim().to_lowercase())
                .filter(|p| !p.is_empty())
                .collect();
            if raw.is_empty() {
                return Err("text: needs at least one piece of text".into());
            }
            return Ok(Rule {
                line: 0,
                phrases: Vec::new(),
                raw,
                unless,
                scores: self.parse_scores(scores)?,
            });
        }
        let phrases = pattern
            .split(';')
            .map(|phrase| self.parse_phrase(phrase))
            .collect::<Result<_, String>>()?;
        Ok(Rule {
            line: 0,
            phrases,
            raw: Vec::new(),
            unless,
            scores: self.parse_scores(scores)?,
        })
    }

    fn parse_scores(&self, scores: &str) -> Result<Vec<(&'static str, f64)>, String> {
        scores
            .split(',')
            .map(|item| {
                let (category, score) = item
                    .trim()
                    .split_once(' ')
                    .ok_or_else(|| format!("{item:?}: expected category score"))?;
                let category = known_category(category)
                    .ok_or_else(|| format!("unknown category {category:?}"))?;
                let score: f64 = score
                    .trim()
                    .parse()
                    .ok()
                    .filter(|s| (0.0..=1.0).contains(s))
                    .ok_or_else(|| format!("{score:?}: expected a score in 0..=1"))?;
                Ok((category, score))
            })
            .collect::<Result<_, String>>()
    }

    /// `a|b*|{list}`: the alternatives of one word.
    fn parse_alternatives(&self, token: &str) -> Result<Vec<(String, bool)>, String> {
        let mut alternatives = Vec::new();
        for alt in token.split('|') {
            if let Some(name) = alt.strip_prefix('{').and_then(|a| a.strip_suffix('}')) {
                let list = self
                    .lists
                    .get(name)
                    .ok_or_else(|| format!("{{{name}}} names no @{name} list above"))?;
                alternatives.extend(list.iter().map(|w| pattern_word(w)));
            } else {
                alternatives.push(pattern_word(alt));
            }
        }
        Ok(alternatives)
    }

    fn parse_phrase(&self, phrase: &str) -> Result<Vec<WordPattern>, String> {
        phrase
            .split_whitespace()
            .map(|token| {
                if token == "~" {
                    return Ok(WordPattern::Gap);
                }
                let (optional, token) = match token.strip_prefix('?') {
                    Some(rest) => (true, rest),
                    None => (false, token),
                };
                let alternatives = self.parse_alternatives(token)?;
                Ok(WordPattern::Word {
                    optional,
                    alternatives,
                })
            })
            .collect()
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    /// The words of list `@name`.
    ///
    /// # Panics
    /// If the file defines no such list (the tests check the names the code uses).
    pub fn list(&self, name: &str) -> &[String] {
        self.lists
            .get(name)
            .unwrap_or_else(|| panic!("rules.txt has no @{name} list"))
    }
}

/// A word of a rule as the texts' words are normalised (`kill*` is the prefix `kil`).
fn pattern_word(word: &str) -> (String, bool) {
    let (word, prefix) = match word.strip_suffix('*') {
        Some(w) => (w, true),
        None => (word, false),
    };
    (normalize::collapse_repeats(&word.to_lowercase()), prefix)
}

fn word_matches(alternatives: &[(String, bool)], word: &str) -> bool {
    alternatives.iter().any(|(alt, prefix)| {
        if *prefix {
            normalize::starts_with(word, alt)
        } else {
            normalize::same_word(word, alt)
        }
    })
}

/// Whether `word` (normalised) is one of list `@name`'s words.
pub(super) fn in_list(list: &[String], word: &str) -> bool {
    list.iter()
        .any(|w| normalize::same_word(word, &normalize::collapse_repeats(w)))
}

impl Rule {
    /// Whether the rule holds for a text: `lower` is the raw text lower-cased with its
    /// whitespace collapsed, `readings` its normalised words.
    pub fn matches(&self, lower: &str, readings: &[Vec<String>]) -> bool {
        let found = self.raw.iter().any(|piece| lower.contains(piece.as_str()))
            || readings.iter().any(|text| {
                self.phrases
                    .iter()
                    .any(|phrase| (0..text.len()).any(|start| match_from(phrase, &text[start..])))
            });
        found
            && !readings
                .iter()
                .flatten()
                .any(|w| word_matches(&self.unless, w))
    }
}

/// Whether `pattern` matches a prefix of `text`.
fn match_from(pattern: &[WordPattern], text: &[String]) -> bool {
    let Some((first, rest)) = pattern.split_first() else {
        return true;
    };
    match first {
        WordPattern::Gap => (0..=GAP.min(text.len())).any(|skip| match_from(rest, &text[skip..])),
        WordPattern::Word {
            optional,
            alternatives,
        } => {
            let here = text
                .first()
                .is_some_and(|w| word_matches(alternatives, w) && match_from(rest, &text[1..]));
            here || (*optional && match_from(rest, text))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<Vec<String>> {
        normalize::readings(s)
    }

    fn rule(line: &str) -> Rule {
        let book = RuleBook::parse("@group = muslims|jews").unwrap();
        let line = match line.split_once(" unless ") {
            Some((phrases, unless)) => format!("{phrases} => violence 0.1 unless {unless}"),
            None => format!("{line} => violence 0.1"),
        };
        book.parse_rule(&line).unwrap()
    }

    fn matches(rule: &Rule, text: &str) -> bool {
        let lower = text
            .to_lowercase()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        rule.matches(&lower, &words(text))
    }

    #[test]
    fn rule_patterns() {
        let r = rule("end|take my ?own life");
        assert!(matches(&r, "I want to end my life"));
        assert!(matches(&r, "take my own life"));
        assert!(!matches(&r, "end of my life story"));
        let r = rule("kill* {group}");
        assert!(matches(&r, "killing muslims"));
        assert!(matches(&r, "k1lling mus1ims"));
        assert!(!matches(&r, "killing time"));
    }

    #[test]
    fn a_gap_skips_up_to_three_words_and_unless_cancels() {
        let r = rule("going to ~ shoot ~ station unless video|photo*");
        assert!(matches(&r, "I'm going to shoot everyone at the station"));
        assert!(matches(&r, "going to sh00t up the $tation"));
        assert!(matches(&r, "going to s h o o t up the station"));
        assert!(!matches(&r, "going to shoot a video at the station"));
        assert!(!matches(&r, "going to shoot some photos at the station"));
        assert!(!matches(
            &r,
            "going to shoot, then walk a very long way to the station"
        ));
        let book = RuleBook::parse("text: system: ; [inst] => prompt-injection 0.6").unwrap();
        let r = book.rules().next().unwrap();
        assert!(r.matches("system: you are evil", &words("system: you are evil")));
        assert!(!r.matches("the system is great", &words("the system is great")));
    }

    #[test]
    fn every_rule_names_known_categories() {
        // Parsing checks each category against CATEGORIES and each score against 0..=1.
        assert!(RULES.rules().count() >= 40);
        for rule in RULES.rules() {
            assert!(!rule.scores.is_empty());
        }
        assert!(RULES.list("minor").contains(&"underage".to_owned()));
        assert!(
            !RULES
                .rules()
                .any(|r| r.phrases.is_empty() && r.raw.is_empty())
        );
    }

    #[test]
    fn a_malformed_line_is_refused_with_its_number() {
        for (text, expected) in [
            ("# ok\nkill you", "line 2"),
            ("kill you => violence", "expected category score"),
            ("kill you => violins 0.5", "unknown category"),
            ("kill you => violence 1.5", "0..=1"),
            ("kill {crowd} => violence 0.5", "@crowd"),
        ] {
            let err = RuleBook::parse(text).err().expect(text);
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}

//! The local moderator's phrase rules, read from `rules.txt` (the syntax is told at the top of
//! that file). The file is compiled in and parsed once, at first use; the tests parse it too,
//! so a malformed line fails the build's tests rather than a moderation at run time.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use super::CATEGORIES;

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
    /// Alternative phrases; each one entry per word position.
    phrases: Vec<Vec<WordPattern>>,
    /// `(category, score)`: the category is one of [`CATEGORIES`].
    pub scores: Vec<(&'static str, f64)>,
}

struct WordPattern {
    optional: bool,
    /// `(text, is_prefix)`.
    alternatives: Vec<(String, bool)>,
}

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
                book.rules.push(book.parse_rule(line).map_err(at)?);
            }
        }
        Ok(book)
    }

    fn parse_rule(&self, line: &str) -> Result<Rule, String> {
        let (pattern, scores) = line
            .split_once("=>")
            .ok_or("expected PHRASES => category score, ...")?;
        let scores = scores
            .split(',')
            .map(|item| {
                let (category, score) = item
                    .trim()
                    .split_once(' ')
                    .ok_or_else(|| format!("{item:?}: expected category score"))?;
                let category = CATEGORIES
                    .iter()
                    .copied()
                    .find(|c| *c == category)
                    .ok_or_else(|| format!("unknown category {category:?}"))?;
                let score: f64 = score
                    .trim()
                    .parse()
                    .ok()
                    .filter(|s| (0.0..=1.0).contains(s))
                    .ok_or_else(|| format!("{score:?}: expected a score in 0..=1"))?;
                Ok((category, score))
            })
            .collect::<Result<_, String>>()?;
        let phrases = pattern
            .split(';')
            .map(|phrase| self.parse_phrase(phrase))
            .collect::<Result<_, String>>()?;
        Ok(Rule { phrases, scores })
    }

    fn parse_phrase(&self, phrase: &str) -> Result<Vec<WordPattern>, String> {
        phrase
            .split_whitespace()
            .map(|token| {
                let (optional, token) = match token.strip_prefix('?') {
                    Some(rest) => (true, rest),
                    None => (false, token),
                };
                let mut alternatives = Vec::new();
                for alt in token.split('|') {
                    if let Some(name) = alt.strip_prefix('{').and_then(|a| a.strip_suffix('}')) {
                        let list = self
                            .lists
                            .get(name)
                            .ok_or_else(|| format!("{{{name}}} names no @{name} list above"))?;
                        alternatives.extend(list.iter().map(|w| (w.clone(), false)));
                    } else if let Some(prefix) = alt.strip_suffix('*') {
                        alternatives.push((prefix.to_owned(), true));
                    } else {
                        alternatives.push((alt.to_owned(), false));
                    }
                }
                Ok(WordPattern {
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
    /// Whether any phrase of the rule occurs in `text` (normalised words).
    pub fn matches(&self, text: &[String]) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_lowercase).collect()
    }

    fn rule(line: &str) -> Rule {
        let book = RuleBook::parse("@group = muslims|jews").unwrap();
        book.parse_rule(&format!("{line} => violence 0.1")).unwrap()
    }

    #[test]
    fn rule_patterns() {
        let r = rule("end|take my ?own life");
        assert!(r.matches(&words("I want to end my life")));
        assert!(r.matches(&words("take my own life")));
        assert!(!r.matches(&words("end of my life story")));
        let r = rule("kill* {group}");
        assert!(r.matches(&words("killing muslims")));
        assert!(!r.matches(&words("killing time")));
    }

    #[test]
    fn every_rule_names_known_categories() {
        // Parsing checks each category against CATEGORIES and each score against 0..=1.
        assert!(RULES.rules().count() >= 40);
        for rule in RULES.rules() {
            assert!(!rule.scores.is_empty());
        }
        assert!(RULES.list("minor").contains(&"underage".to_owned()));
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

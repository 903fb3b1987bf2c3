//! What the phrase rules read: a text as lower-case words, with the disguises people use to
//! slip words past a filter taken off.
//!
//! | disguise | written | read as |
//! |---|---|---|
//! | apostrophes dropped or kept | `you're`, `youre` | `youre` |
//! | leetspeak, in words with letters | `k1ll`, `$h00t`, `b0mb`, `@ss` | `k1l`, `shot`, `bomb`, `as` |
//! | stretched letters | `diiiie`, `shoooot`, `kill` | `die`, `shot`, `kil` |
//! | spaced or dotted letters | `k i l l`, `k.i.l.l`, `s-h-o-o-t` | `kil`, `shot` (a second reading) |
//!
//! Runs of one letter collapse to one (`kill` is read `kil`, `shoot` `shot`) in the rules' words
//! too, so the two meet; `1` stays a `1` and [`same_word`] lets it stand for `i` or `l`
//! (`k1ll`, `ki11`). A text has up to two readings: its words, and, when it has a run of three
//! or more one-letter words, those runs joined.

/// The readings of `text` a rule is matched against: its words, and its words with spaced
/// letters joined, when that differs.
pub(super) fn readings(text: &str) -> Vec<Vec<String>> {
    let raw = raw_words(text);
    let joined = join_spaced_letters(&raw);
    let words = expand_text_speak(raw.clone());
    if joined == raw {
        vec![words]
    } else {
        vec![words, expand_text_speak(joined)]
    }
}

/// [`readings`]' first: the words with text-speak read as words.
#[cfg(test)]
pub(super) fn words(text: &str) -> Vec<String> {
    expand_text_speak(raw_words(text))
}

fn expand_text_speak(words: Vec<String>) -> Vec<String> {
    words
        .into_iter()
        .map(
            |word| match TEXT_SPEAK.iter().find(|(short, _)| *short == word) {
                Some((_, long)) => (*long).to_owned(),
                None => word,
            },
        )
        .collect()
}

/// Lower-cased words, apostrophes dropped, leetspeak read as letters and repeated letters
/// collapsed (see the module doc).
fn raw_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut current = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if matches!(c, '\'' | '\u{2019}' | '`') {
            continue;
        }
        // `!` and `|` only inside a word: `k!ll`, `k|ll`.
        if c.is_alphanumeric()
            || matches!(c, '@' | '$')
            || (matches!(c, '!' | '|') && !current.is_empty())
        {
            current.push(c);
        } else {
            push_word(&mut words, std::mem::take(&mut current));
        }
    }
    push_word(&mut words, current);
    words
}

fn push_word(words: &mut Vec<String>, raw: String) {
    // A `!` ending a word is punctuation.
    let raw = raw.trim_end_matches(['!', '|']);
    if raw.is_empty() {
        return;
    }
    let word: String = if raw.chars().any(char::is_alphabetic) && !is_quantity(raw) {
        raw.chars()
            .map(|c| match c {
                '0' => 'o',
                '!' | '|' => '1',
                '3' => 'e',
                '4' | '@' => 'a',
                '5' | '$' => 's',
                '7' => 't',
                other => other,
            })
            .collect()
    } else {
        // Numbers stay numbers (`1488`, `24`); a lone `$5` is `5`.
        raw.replace(['@', '$', '!', '|'], "")
    };
    if !word.is_empty() {
        words.push(collapse_repeats(&word));
    }
}

/// Text-speak read as the word it stands for (both sides collapsed, as words are): `u r` is
/// `you are`, `ppl` `people`, `every1` `everyone`.
const TEXT_SPEAK: [(&str, &str); 36] = [
    ("u", "you"),
    ("ya", "you"),
    ("yu", "you"),
    ("ur", "your"),
    ("urself", "yourself"),
    ("urselves", "yourselves"),
    ("youre", "your"),
    ("yor", "your"),
    ("r", "are"),
    ("ppl", "people"),
    ("peple", "people"),
    ("shud", "should"),
    ("shld", "should"),
    ("wud", "would"),
    ("cud", "could"),
    ("cuz", "because"),
    ("coz", "because"),
    ("b4", "before"),
    ("every1", "everyone"),
    ("evry1", "everyone"),
    ("no1", "noone"),
    ("some1", "someone"),
    ("any1", "anyone"),
    ("tmrw", "tomorow"),
    ("tmr", "tomorow"),
    ("tomoz", "tomorow"),
    ("2moro", "tomorow"),
    ("tonite", "tonight"),
    ("2nite", "tonight"),
    ("pls", "please"),
    ("plz", "please"),
    ("msg", "mesage"),
    ("gf", "girlfriend"),
    ("bf", "boyfriend"),
    ("lil", "litle"),
    ("thx", "thanks"),
];

/// A number with its unit (`13yo`, `16yrs`, `7pm`, `90s`): digits, not leetspeak.
fn is_quantity(word: &str) -> bool {
    let unit = word.trim_start_matches(|c: char| c.is_ascii_digit());
    unit.len() < word.len()
        && matches!(
            unit,
            "yo" | "yos"
                | "y"
                | "yr"
                | "yrs"
                | "s"
                | "th"
                | "st"
                | "nd"
                | "rd"
                | "am"
                | "pm"
                | "k"
                | "m"
                | "h"
                | "min"
                | "mins"
                | "kg"
                | "km"
                | "cm"
        )
}

/// `shooooot` → `shot`, `kill` → `kil`; digits-only words are kept as they are (`1488`).
pub(super) fn collapse_repeats(word: &str) -> String {
    if word.chars().all(|c| c.is_ascii_digit()) {
        return word.to_owned();
    }
    let mut out = String::with_capacity(word.len());
    let mut last = None;
    for c in word.chars() {
        if Some(c) != last {
            out.push(c);
        }
        last = Some(c);
    }
    out
}

/// Runs of three or more one-character words joined into one word: `k i l l you` → `kil you`.
fn join_spaced_letters(words: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(words.len());
    let mut run: Vec<&str> = Vec::new();
    let flush = |run: &mut Vec<&str>, out: &mut Vec<String>| {
        if run.len() >= 3 {
            out.push(collapse_repeats(&run.concat()));
        } else {
            out.extend(run.iter().map(|w| (*w).to_owned()));
        }
        run.clear();
    };
    for w in words {
        if w.chars().count() == 1 {
            run.push(w);
        } else {
            flush(&mut run, &mut out);
            out.push(w.clone());
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Whether text word `word` is rule word `pattern` (both normalised): equal, with a `1` in
/// the text standing for `i` or `l`; or, for rule words of six letters or more, misspelt by
/// one dropped letter (`murdr`, `sucide`) or two swapped neighbours (`suicdie`).
pub(super) fn same_word(word: &str, pattern: &str) -> bool {
    let w: Vec<char> = word.chars().collect();
    let p: Vec<char> = pattern.chars().collect();
    let eq = |a: char, b: char| a == b || (a == '1' && matches!(b, 'i' | 'l'));
    if w.len() == p.len() && w.iter().zip(&p).all(|(&a, &b)| eq(a, b)) {
        return true;
    }
    // Shorter words have too many neighbours one letter away (`shin` is not `shinu`).
    if p.len() < 6 {
        return false;
    }
    if w.len() + 1 == p.len() {
        // One letter of the pattern dropped.
        let split = w.iter().zip(&p).take_while(|&(&a, &b)| eq(a, b)).count();
        return w[split..]
            .iter()
            .zip(&p[split + 1..])
            .all(|(&a, &b)| eq(a, b));
    }
    if w.len() == p.len() {
        let diff: Vec<usize> = (0..w.len()).filter(|&i| !eq(w[i], p[i])).collect();
        return diff.len() == 2
            && diff[1] == diff[0] + 1
            && eq(w[diff[0]], p[diff[1]])
            && eq(w[diff[1]], p[diff[0]]);
    }
    false
}

/// Whether text word `word` starts with rule prefix `prefix` (`kil*` matches `kilers`).
pub(super) fn starts_with(word: &str, prefix: &str) -> bool {
    let mut w = word.chars();
    prefix.chars().all(|p| {
        w.next()
            .is_some_and(|c| c == p || (c == '1' && matches!(p, 'i' | 'l')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_lose_their_disguises() {
        assert_eq!(
            words("You're GONNA d1e, k1ll y0u!"),
            ["your", "gona", "d1e", "k1l", "you"]
        );
        assert_eq!(words("$h00t the $TATION"), ["shot", "the", "station"]);
        assert_eq!(words("diiiiie"), ["die"]);
        assert_eq!(
            words("24/7 radio $5 1488"),
            ["24", "7", "radio", "5", "1488"]
        );
        assert_eq!(words("$uicide"), ["suicide"]);
        assert_eq!(words("k!ll"), ["k1l"]);
        assert_eq!(words("13yo at 7pm"), ["13yo", "at", "7pm"]);
    }

    #[test]
    fn spaced_letters_are_a_second_reading() {
        let r = readings("i will k i l l you");
        assert_eq!(r.len(), 2);
        assert_eq!(r[1], ["i", "wil", "kil", "you"]);
        let r = readings("k.i.l.l you");
        assert_eq!(r[1], ["kil", "you"]);
        assert_eq!(
            readings("a b").len(),
            1,
            "two letters are not a spaced word"
        );
    }

    #[test]
    fn a_text_word_may_be_a_rule_word_misspelt() {
        assert!(same_word("k1l", "kil"));
        assert!(same_word("murdr", "murder"));
        assert!(same_word("sucide", "suicide"));
        assert!(same_word("suicdie", "suicide"));
        assert!(!same_word("kl", "kil"), "short words are matched exactly");
        assert!(!same_word("skil", "kil"));
        assert!(!same_word("murmer", "murder"));
        assert!(starts_with("k1lers", "kil"));
        assert!(!starts_with("ki", "kil"));
    }
}

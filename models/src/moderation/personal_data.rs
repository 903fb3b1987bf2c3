//! Personal data in a listener's words: phone numbers, e-mail addresses and street addresses,
//! the ways people write them. The moderator scores a text that has any (`personal-data`, held
//! for a person); the DJ speaks an approved text through [`redact`], so a number becomes "a
//! number" on air unless an operator approved the words as they are.
//!
//! | kind | found | not personal data |
//! |---|---|---|
//! | phone | `+81 90-1234-5678`, `(555) 123-4567`, `555.123.4567`, `0 9 0 1 2 3 4 5 6 7`, `five five five one two three four` | dates (`2026-12-04`, `4/12/2026`), times, prices, years in a row, `867-5309` (a song) |
//! | e-mail | `kenji@example.jp`, `kenji at example dot com`, `kenji [at] mail [dot] com` | `radio24 dot example`, `@radio24` |
//! | address | `123 Main Street`, `flat 4, 22 Baker St`, `1-2-3 Shibuya`, `2-chome 5-7` | `Sunset Boulevard`, `42nd Street`, `Route 66` |

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

/// What kind of personal data a span is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Phone,
    Email,
    Address,
}

impl Kind {
    /// How the DJ says it instead.
    pub fn spoken(self) -> &'static str {
        match self {
            Kind::Phone => "a number",
            Kind::Email | Kind::Address => "an address",
        }
    }
}

/// A span of personal data in a text (byte offsets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub kind: Kind,
    pub span: Range<usize>,
}

/// Every span of personal data in `text`, in order, not overlapping.
pub fn find(text: &str) -> Vec<Found> {
    let mut found: Vec<Found> = Vec::new();
    let mut add = |kind: Kind, span: Range<usize>| {
        if !found
            .iter()
            .any(|f| f.span.start < span.end && span.start < f.span.end)
        {
            found.push(Found { kind, span });
        }
    };
    for m in EMAIL.find_iter(text).chain(SPOKEN_EMAIL.find_iter(text)) {
        add(Kind::Email, m.range());
    }
    for m in STREET.find_iter(text).chain(BLOCK_ADDRESS.find_iter(text)) {
        add(Kind::Address, trim_span(text, m.range()));
    }
    for m in DIGIT_RUN.find_iter(text) {
        let span = trim_span(text, m.range());
        if is_phone_number(&text[span.clone()]) {
            add(Kind::Phone, span);
        }
    }
    for m in SPOKEN_DIGITS.find_iter(text) {
        add(Kind::Phone, trim_span(text, m.range()));
    }
    for m in MIXED_DIGITS.find_iter(text) {
        let run = m.as_str();
        // Digits and digit words mixed (`5five5-12three`): a number in disguise. Digits
        // alone are the digit runs' to judge (dates, scores), words alone the spoken ones.
        if run.chars().any(|c| c.is_ascii_digit()) && run.chars().any(char::is_alphabetic) {
            add(Kind::Phone, trim_span(text, m.range()));
        }
    }
    found.sort_by_key(|f| f.span.start);
    found
}

/// `text` with each span of personal data replaced by how the DJ says it instead: "call me
/// on a number".
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for f in find(text) {
        out.push_str(&text[at..f.span.start]);
        out.push_str(f.kind.spoken());
        at = f.span.end;
    }
    out.push_str(&text[at..]);
    out
}

/// `name@host.tld`.
static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)[a-z0-9][a-z0-9._%+-]*@[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}").unwrap()
});

/// `name at host dot com`, `name [at] host [dot] co [dot] jp`, `name(at)host.com`.
static SPOKEN_EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    let at = r"(?:\s*[\(\[\{<]\s*at\s*[\)\]\}>]\s*|\s+at\s+)";
    let dot = r"(?:\s*[\(\[\{<]\s*dot\s*[\)\]\}>]\s*|\s+dot\s+|\.)";
    let tld = r"(?:com|net|org|jp|co|uk|io|de|fr|edu|gov|info|me|us|ca|au|ne|or|ac)";
    Regex::new(&format!(
        r"(?i)\b[a-z0-9][a-z0-9._+-]*{at}[a-z0-9-]+(?:{dot}[a-z0-9-]+)*{dot}{tld}\b"
    ))
    .unwrap()
});

/// A house number, a name and a street word: `22 Baker St`, `1600 Pennsylvania Avenue`, or
/// in lower case only the unmistakable street words (`123 main street`, not `5 in the quiz was
/// way too hard`); and post office boxes.
static STREET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\b\d{1,5}[A-Za-z]?,?\s+(?:(?:[A-Z][A-Za-z'.-]*\s+){1,3}(?i:street|st|road|rd|avenue|ave|boulevard|blvd|lane|ln|drive|dr|way|court|ct|place|pl|terrace|close|crescent|parkway|highway|hwy|square|sq)|(?:[a-z][a-z'-]*\s+){1,2}(?i:street|road|avenue|boulevard|lane|st|rd|ave|blvd))\b\.?|(?i:\bp\.?\s?o\.?\s+box\s+\d+)",
    )
    .unwrap()
});

/// Japanese block addresses: `1-2-3 Shibuya`, `2-chome 5-7`, `Shibuya 1-2-3` (a place name
/// before two numbers is a score: `destroyed 5-0`).
static BLOCK_ADDRESS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i:\b\d{1,2}-chome(?:\s*\d{1,3}(?:-\d{1,3})?)?|\b\d{1,2}-\d{1,2}-\d{1,3}\s+[a-z]{3,})|\b[A-Z][a-z]{2,}(?:-ku)?,?\s+\d{1,2}-\d{1,2}-\d{1,3}\b",
    )
    .unwrap()
});

/// A run of digits and the characters written between a phone number's groups.
static DIGIT_RUN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\+?\(?\d[\d\s().\-/]*\d").unwrap());

/// Seven or more digits said as words: `five five five, one two three four`.
static SPOKEN_DIGITS: LazyLock<Regex> = LazyLock::new(|| {
    let digit = r"(?:zero|oh|o|one|two|three|four|five|six|seven|eight|nine|double\s+\w+)";
    Regex::new(&format!(r"(?i)\b{digit}(?:[\s,.-]+{digit}){{6,}}\b")).unwrap()
});

/// Seven or more digits, written or said, with or without separators: `5five5-12three-4567`.
static MIXED_DIGITS: LazyLock<Regex> = LazyLock::new(|| {
    let digit = r"(?:\d|zero|oh|one|two|three|four|five|six|seven|eight|nine)";
    Regex::new(&format!(r"(?i)\b{digit}(?:[\s.\-]*{digit}){{6,}}\b")).unwrap()
});

/// The span without whitespace or punctuation at its ends.
fn trim_span(text: &str, span: Range<usize>) -> Range<usize> {
    let s = &text[span.clone()];
    let trimmed =
        s.trim_end_matches(|c: char| c.is_whitespace() || matches!(c, '.' | ',' | '-' | '/' | '('));
    let lead = trimmed.len() - trimmed.trim_start().len();
    span.start + lead..span.start + trimmed.len()
}

/// Whether a digit run reads as a phone number rather than a date, a time, a price, a list
/// of years or a famous song.
fn is_phone_number(run: &str) -> bool {
    let digits: String = run.chars().filter(char::is_ascii_digit).collect();
    if !(7..=15).contains(&digits.len()) {
        return false;
    }
    let groups: Vec<&str> = run
        .split(|c: char| !c.is_ascii_digit())
        .filter(|g| !g.is_empty())
        .collect();
    // Dates: 2026-12-04, 2026/12/04, 4/12/2026, 04.12.2026.
    let is_date = groups.len() == 3
        && ((groups[0].len() == 4 && groups[1].len() <= 2 && groups[2].len() <= 2)
            || (groups[0].len() <= 2 && groups[1].len() <= 2 && groups[2].len() == 4));
    // Years in a row: 1999 2000 2001.
    let is_years = groups.len() >= 2
        && groups
            .iter()
            .all(|g| g.len() == 4 && (g.starts_with("19") || g.starts_with("20")));
    // Tommy Tutone's "867-5309/Jenny": a song, and the number everyone knows is fake.
    let is_jenny = digits == "8675309";
    !(is_date || is_years || is_jenny)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(Kind, &str)> {
        find(text)
            .into_iter()
            .map(|f| (f.kind, &text[f.span]))
            .collect()
    }

    #[test]
    fn phone_numbers_in_their_many_spellings() {
        for (text, number) in [
            ("call me on +81 90-1234-5678 tonight", "+81 90-1234-5678"),
            ("(555) 123-4567", "(555) 123-4567"),
            ("ring 555.123.4567!", "555.123.4567"),
            ("my mobile is 07700 900123.", "07700 900123"),
            ("0 9 0 1 2 3 4 5 6 7 8", "0 9 0 1 2 3 4 5 6 7 8"),
            (
                "it's five five five one two three four",
                "five five five one two three four",
            ),
            (
                "my # is 5five5-12three-4five67 lol",
                "5five5-12three-4five67",
            ),
        ] {
            assert_eq!(kinds(text), [(Kind::Phone, number)], "{text}");
        }
    }

    #[test]
    fn numbers_that_are_not_phone_numbers() {
        for text in [
            "on 2026-12-04 at 10:30",
            "4/12/2026 was great",
            "it costs 5,000 yen",
            "89.7 FM all night",
            "the best of 1999 2000 2001",
            "867-5309/Jenny please",
            "count 1 2 3 4",
            "we got destroyed 5-0 in the finals",
            "final score 3-2, what a match",
            "driving down Sunset Boulevard",
            "42nd Street the musical",
            "Route 66",
            "follow @radio24 and the website radio24 dot example",
        ] {
            assert_eq!(kinds(text), [], "{text}");
        }
    }

    #[test]
    fn email_and_street_addresses() {
        assert_eq!(
            kinds("write to kenji.s@example.co.jp"),
            [(Kind::Email, "kenji.s@example.co.jp")]
        );
        assert_eq!(
            kinds("kenji at gmail dot com"),
            [(Kind::Email, "kenji at gmail dot com")]
        );
        assert_eq!(
            kinds("kenji [at] mail [dot] com"),
            [(Kind::Email, "kenji [at] mail [dot] com")]
        );
        assert_eq!(
            kinds("I live at 123 Main Street, Springfield"),
            [(Kind::Address, "123 Main Street")]
        );
        assert_eq!(
            kinds("flat 4, 22 Baker St"),
            [(Kind::Address, "22 Baker St")]
        );
        assert_eq!(kinds("at 12 elm road"), [(Kind::Address, "12 elm road")]);
        assert_eq!(
            kinds("write to PO Box 5678"),
            [(Kind::Address, "PO Box 5678")]
        );
        assert_eq!(kinds("question 5 in the quiz was way too hard"), []);
        assert_eq!(
            kinds("1-2-3 Shibuya, Tokyo"),
            [(Kind::Address, "1-2-3 Shibuya")]
        );
    }

    #[test]
    fn redaction_says_what_was_there() {
        assert_eq!(
            redact("call 090-1234-5678 or mail kenji@example.jp"),
            "call a number or mail an address"
        );
        assert_eq!(redact("play Route 66"), "play Route 66");
    }
}

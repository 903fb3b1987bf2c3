//! What the DJ is asked to say in each situation: a prompt for a language-model voice and
//! a ready-made script for the template voice (espeak-ng), so every voice of the chain can
//! take any cue.

use chrono::NaiveDateTime;
use models::moderation::personal_data;
use shared::submission::SubmissionKind;

use super::queue::Queued;
use super::schedule::{Block, Slot};
use crate::voice::{Cue, Quote, QuoteFrom};

/// Longest listener text read on air, in characters.
const MAX_READ_CHARS: usize = 600;

/// `text` trimmed to what is read on air, without closing punctuation (the scripts add
/// their own).
fn clip(text: &str) -> String {
    let text = text.trim().trim_end_matches(['.', '!', '?', ';', ',']);
    if text.chars().count() <= MAX_READ_CHARS {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(MAX_READ_CHARS).collect();
    cut.push_str("...");
    cut
}

fn clock(local: NaiveDateTime) -> String {
    local.format("%-H:%M").to_string()
}

fn cue(block: Block, prompt: String, script: String, quotes: Vec<Quote>) -> Cue {
    Cue {
        block: block.as_str().to_owned(),
        prompt,
        quotes,
        script,
    }
}

/// The opening of a block.
pub fn block_opening(slot: &Slot, local: NaiveDateTime, station: &str) -> Cue {
    let time = clock(local);
    let extra = if slot.prompt.is_empty() {
        String::new()
    } else {
        format!(" Producer's note: {}", slot.prompt)
    };
    let (prompt, script) = match slot.block {
        Block::Op => (
            format!(
                "It is {time}. Open the hour on {station} in two or three lively sentences and invite listeners to send messages.{extra}"
            ),
            format!(
                "It's {time}, and this is {station}. Good to have you with us. Send us a message or a voice note, and you might hear it on air."
            ),
        ),
        Block::News => (
            format!(
                "It is {time}. Present a short roundup of what listeners have been talking about, in the style of a news bulletin, three sentences.{extra}"
            ),
            format!(
                "It's {time}. Here is what's been happening on {station}: your messages keep coming in, and we'll read some of them in a moment."
            ),
        ),
        Block::Qanda => (
            format!(
                "Introduce the listeners' segment: you will read and answer their messages. One or two sentences.{extra}"
            ),
            "Now it's your turn. Let's hear from our listeners.".to_owned(),
        ),
        Block::Music => (
            format!("Introduce some music in one sentence.{extra}"),
            format!("Here's some music on {station}."),
        ),
        Block::Topic => {
            let topic = slot
                .topic
                .clone()
                .unwrap_or_else(|| "what is on listeners' minds today".into());
            (
                format!(
                    "Talk about this topic for about a minute, warmly and with one question to the listeners: {topic}.{extra}"
                ),
                format!(
                    "Let's talk about {topic}. What do you think? Send us a message and tell us."
                ),
            )
        }
        Block::Jingle => (
            format!("Say the station ident for {station} in one short, catchy sentence.{extra}"),
            format!("You're listening to {station}. All day, all night."),
        ),
    };
    cue(slot.block, prompt, script, Vec::new())
}

/// The DJ reads a text message (or follows a caller's recording) and answers it. The
/// listener's words go to a model as a quotation, never inside the request itself, and their
/// phone numbers and addresses are said as "a number" and "an address" unless an operator
/// approved the words as they are. `related` are earlier listeners' aired words.
pub fn listener_reply(item: &Queued, related: Vec<String>) -> Cue {
    let operator_approved = item.operator_approved();
    let words = if operator_approved {
        clip(item.words())
    } else {
        clip(&personal_data::redact(item.words()))
    };
    let related: Vec<String> = related
        .iter()
        .map(|r| clip(&personal_data::redact(r)))
        .collect();
    let echo = related
        .first()
        .map(|r| format!(" Earlier another listener said: {r}."))
        .unwrap_or_default();
    let (prompt, script) = if item.kind == SubmissionKind::Audio {
        (
            "You just played a listener's voice message; what they said is quoted below. Reply \
             to them warmly in two or three sentences."
                .to_owned(),
            format!("That was one of our listeners. Thank you for calling!{echo}"),
        )
    } else {
        (
            "Read out the listener's message quoted below, then reply warmly in two or three \
             sentences."
                .to_owned(),
            format!("A listener writes: {words}. Thank you for that!{echo}"),
        )
    };
    let mut quotes = vec![Quote {
        from: QuoteFrom::Listener,
        words,
        operator_approved,
    }];
    quotes.extend(related.into_iter().map(|words| Quote {
        from: QuoteFrom::EarlierListener,
        words,
        operator_approved: false,
    }));
    cue(Block::Qanda, prompt, script, quotes)
}

/// Between messages, when nobody has written yet.
pub fn call_for_messages(station: &str) -> Cue {
    cue(
        Block::Qanda,
        format!(
            "No new messages right now. Invite listeners to send a message or a voice note to {station}, in one sentence."
        ),
        "The lines are open. Send us a message or a voice note, and we'll play it.".to_owned(),
        Vec::new(),
    )
}

#[cfg(test)]
mod tests {
    use shared::submission::SubmissionId;

    use super::*;

    fn queued(text: &str, approved_by: &str) -> Queued {
        Queued {
            id: SubmissionId::new(),
            kind: SubmissionKind::Text,
            text: Some(text.to_owned()),
            transcript: None,
            audio_path: None,
            approved_by: Some(approved_by.to_owned()),
        }
    }

    #[test]
    fn contact_details_are_said_as_what_they_are_unless_an_operator_approved_them() {
        let text = "Call me on 090-1234-5678 or mail kenji@example.jp";
        let cue = listener_reply(
            &queued(text, "local:rules+exemplars"),
            vec!["my number is +81 90 1111 2222".to_owned()],
        );
        assert_eq!(
            cue.script,
            "A listener writes: Call me on a number or mail an address. Thank you for that! \
             Earlier another listener said: my number is a number."
        );
        assert_eq!(
            cue.quotes[0].words,
            "Call me on a number or mail an address"
        );
        assert!(!cue.quotes[0].operator_approved);
        assert_eq!(cue.quotes[1].from, QuoteFrom::EarlierListener);
        assert!(
            !cue.prompt.contains("Call me"),
            "the words are quoted, not in the request"
        );

        let cue = listener_reply(&queued(text, "operator:ana@example.com"), Vec::new());
        assert!(cue.script.contains("090-1234-5678"), "{}", cue.script);
        assert!(cue.quotes[0].operator_approved);
    }
}

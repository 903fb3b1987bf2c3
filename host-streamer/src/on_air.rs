//! What the director and the outputs share about the air, kept apart from both so neither
//! reaches into the other: the feeds the director writes into the engine, and what is on
//! air now.
//!
//! [`NowPlaying`] is for listeners' screens. The director updates it as items start; the
//! LiveKit publisher sends it to the room as the host's participant metadata (JSON) and
//! attributes, so every listener client can show it without another API.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::voice::FeedWriter;

/// The engine inputs the director writes into (built with the source graph, in
/// [`crate::program::build`]).
pub struct Feeds {
    pub dj: FeedWriter,
    pub caller: FeedWriter,
    pub music: FeedWriter,
}

/// What is on air now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NowPlaying {
    /// The schedule block (`QANDA`, `MUSIC`, ...), or `LINEUP` for the line-up tone.
    pub block: String,
    /// What kind of item: `dj`, `listener`, `music`, `jingle`, `tone`, or `bed` between items.
    pub item: String,
    /// A title where the item has one (a library file's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub since: DateTime<Utc>,
}

impl NowPlaying {
    pub fn new(block: impl Into<String>, item: impl Into<String>, title: Option<String>) -> Self {
        NowPlaying {
            block: block.into(),
            item: item.into(),
            title,
            since: Utc::now(),
        }
    }

    /// The participant metadata: one JSON object.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The same as participant attributes (string to string), for clients that read those.
    pub fn attributes(&self) -> std::collections::HashMap<String, String> {
        let mut attributes = std::collections::HashMap::from([
            ("now_playing.block".to_owned(), self.block.clone()),
            ("now_playing.item".to_owned(), self.item.clone()),
            (
                "now_playing.since".to_owned(),
                self.since
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            ),
        ]);
        if let Some(title) = &self.title {
            attributes.insert("now_playing.title".to_owned(), title.clone());
        }
        attributes
    }
}

impl Default for NowPlaying {
    fn default() -> Self {
        NowPlaying::new("", "bed", None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_attributes_say_the_same() {
        let now = NowPlaying::new("MUSIC", "music", Some("night-drive.ogg".into()));
        let json: serde_json::Value = serde_json::from_str(&now.to_json()).unwrap();
        assert_eq!(json["block"], "MUSIC");
        assert_eq!(json["item"], "music");
        assert_eq!(json["title"], "night-drive.ogg");
        let attributes = now.attributes();
        assert_eq!(attributes["now_playing.title"], "night-drive.ogg");
        assert_eq!(
            attributes["now_playing.since"],
            json["since"].as_str().unwrap()
        );
        assert!(!NowPlaying::default().to_json().contains("title"));
    }
}

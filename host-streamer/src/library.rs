//! Music and jingles. A library is any object store (a local folder `file:///...` or a
//! Cloud Storage prefix `gs://bucket/prefix`) holding audio files and an `index.txt` that
//! lists their keys, one per line: keys under `music/` are music, under `jingles/` jingles.
//! (An index instead of a listing: the object store interface is create/read only, and an
//! operator controls rotation by editing one file.) Files are decoded when played.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shared::audio_decode::decode_at;
use shared::store::ObjectStore;

use crate::audio::SAMPLE_RATE;

/// Longest track played, to bound memory (10 minutes of 48 kHz mono is 115 MB of f32).
const MAX_TRACK: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Music,
    Jingle,
}

#[derive(Debug)]
pub struct Library {
    store: Arc<dyn ObjectStore>,
    music: Vec<String>,
    jingles: Vec<String>,
    next_music: AtomicUsize,
    next_jingle: AtomicUsize,
}

impl Library {
    /// Reads `index.txt` from `store`.
    pub async fn load(store: Arc<dyn ObjectStore>) -> anyhow::Result<Library> {
        let index = store.get("index.txt").await?;
        let index = String::from_utf8_lossy(&index);
        let keys = index
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        let (mut music, mut jingles) = (Vec::new(), Vec::new());
        for key in keys {
            if key.starts_with("music/") {
                music.push(key.to_owned());
            } else if key.starts_with("jingles/") {
                jingles.push(key.to_owned());
            } else {
                tracing::warn!(
                    key,
                    "library index entry is neither music/ nor jingles/; ignored"
                );
            }
        }
        tracing::info!(
            music = music.len(),
            jingles = jingles.len(),
            "library loaded"
        );
        Ok(Library {
            store,
            music,
            jingles,
            next_music: AtomicUsize::new(0),
            next_jingle: AtomicUsize::new(0),
        })
    }

    pub fn is_empty(&self, kind: Kind) -> bool {
        self.keys(kind).is_empty()
    }

    fn keys(&self, kind: Kind) -> &[String] {
        match kind {
            Kind::Music => &self.music,
            Kind::Jingle => &self.jingles,
        }
    }

    /// The next item of `kind` in rotation, decoded to 48 kHz mono; `None` if the library
    /// has none or it cannot be read (logged: the bed plays instead).
    pub async fn next(&self, kind: Kind) -> Option<(String, Vec<f32>)> {
        let keys = self.keys(kind);
        if keys.is_empty() {
            return None;
        }
        let counter = match kind {
            Kind::Music => &self.next_music,
            Kind::Jingle => &self.next_jingle,
        };
        let key = keys[counter.fetch_add(1, Ordering::Relaxed) % keys.len()].clone();
        let bytes = match self.store.get(&key).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(%key, error = %e, "library item unreadable");
                return None;
            }
        };
        match tokio::task::spawn_blocking(move || decode_at(&bytes, MAX_TRACK, SAMPLE_RATE)).await {
            Ok(Ok(audio)) => Some((key, audio.samples)),
            Ok(Err(e)) => {
                tracing::warn!(%key, error = %e, "library item undecodable");
                None
            }
            Err(e) => {
                tracing::error!(%key, error = %e, "decoder task failed");
                None
            }
        }
    }
}

//! Music and jingles. A library is any object store (a local folder `file:///...` or a
//! Cloud Storage prefix `gs://bucket/prefix`) holding audio files and an `index.txt` that
//! lists their keys, one per line: keys under `music/` are music, under `jingles/` jingles.
//! (An index instead of a listing: the object store interface is create/read only, and an
//! operator controls rotation by editing one file.) Files are decoded when played.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use media::decode::decode_at;
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

#[cfg(test)]
mod tests {
    use super::*;
    use shared::store::LocalFsStore;

    /// A mono 16-bit WAV of `seconds` of a 440 Hz tone at `rate`.
    fn wav(rate: u32, seconds: f32) -> Vec<u8> {
        let n = (rate as f32 * seconds) as usize;
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + 2 * n as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes()); // PCM
        out.extend_from_slice(&1u16.to_le_bytes()); // mono
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * 2).to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&16u16.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(2 * n as u32).to_le_bytes());
        for i in 0..n {
            let s = (std::f32::consts::TAU * 440.0 * i as f32 / rate as f32).sin() * 8000.0;
            out.extend_from_slice(&(s as i16).to_le_bytes());
        }
        out
    }

    #[tokio::test]
    async fn a_local_folder_library_rotates_music_and_jingles_and_skips_bad_items() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFsStore::new(dir.path()).await.unwrap());
        let put = |key: &'static str, bytes: Vec<u8>| {
            let store = store.clone();
            async move { store.put(key, bytes.into(), "audio/wav").await.unwrap() }
        };
        put("music/a.wav", wav(44_100, 1.0)).await;
        put("music/broken.wav", b"not audio at all".to_vec()).await;
        put("jingles/ident.wav", wav(22_050, 0.5)).await;
        put(
            "index.txt",
            b"# the rotation\nmusic/a.wav\nmusic/broken.wav\n\njingles/ident.wav\nbeds/unknown.wav\n"
                .to_vec(),
        )
        .await;
        let library = Library::load(store).await.unwrap();
        assert!(!library.is_empty(Kind::Music) && !library.is_empty(Kind::Jingle));
        let (key, samples) = library.next(Kind::Music).await.unwrap();
        assert_eq!(key, "music/a.wav");
        // Decoded at 48 kHz whatever the file's rate.
        assert!(samples.len().abs_diff(48_000) < 100, "{}", samples.len());
        // The undecodable item is skipped (the bed plays), then the rotation goes on.
        assert!(library.next(Kind::Music).await.is_none());
        assert_eq!(library.next(Kind::Music).await.unwrap().0, "music/a.wav");
        let (_, jingle) = library.next(Kind::Jingle).await.unwrap();
        assert!(jingle.len().abs_diff(24_000) < 100, "{}", jingle.len());
    }

    #[tokio::test]
    async fn a_library_without_an_index_is_refused_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn ObjectStore> = Arc::new(LocalFsStore::new(dir.path()).await.unwrap());
        assert!(Library::load(store).await.is_err());
    }
}

//! What the fake answers with: deterministic embeddings, replies and speech, so tests can
//! compute the expected output of any input.

use super::*;

/// The vector the fake returns for `text`: word and word-pair features hashed into `dims`
/// signed buckets, L2-normalised.
pub fn fake_embedding(text: &str, dims: usize) -> Vec<f32> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let mut v = vec![0f32; dims];
    let mut add = |feature: &[u8], weight: f32| {
        let h = Sha256::digest(feature);
        for k in 0..4 {
            let idx = u32::from_le_bytes([h[4 * k], h[4 * k + 1], h[4 * k + 2], h[4 * k + 3]]);
            let sign = if h[16 + k] & 1 == 0 { 1.0 } else { -1.0 };
            v[idx as usize % dims] += sign * weight;
        }
    };
    for w in &words {
        add(w.as_bytes(), 1.0);
    }
    for pair in words.windows(2) {
        add(format!("{} {}", pair[0], pair[1]).as_bytes(), 0.5);
    }
    if words.is_empty() {
        add(text.as_bytes(), 1.0);
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
    v
}

/// What the fake models answer to `input`: its first non-empty line (at most 120
/// characters) after a fixed opening, so tests can tell replies to different cues apart.
pub fn fake_reply(input: &str) -> String {
    let line = input
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let line: String = line.chars().take(120).collect();
    format!("Radio24 here. {line}")
}

/// Samples of [`fake_speech`] for `text`.
pub fn fake_speech_len(text: &str) -> usize {
    let per_char = FAKE_SPEECH_PER_CHAR.as_millis() as usize * FAKE_SPEECH_RATE as usize / 1000;
    let max = FAKE_SPEECH_MAX.as_millis() as usize * FAKE_SPEECH_RATE as usize / 1000;
    (text.chars().count() * per_char).min(max)
}

/// Deterministic speech-like audio for `text`, 24 kHz mono: every word a voiced burst (five
/// harmonics of a pitch between 100 and 190 Hz that moves with the letters, under a
/// half-sine envelope over the word), every space or punctuation mark a pause.
pub fn fake_speech(text: &str) -> Vec<i16> {
    let chars: Vec<char> = text.chars().collect();
    let total = fake_speech_len(text);
    let per_char = fake_speech_len("x").max(1);
    // The word each character belongs to, as a (first, end) character range.
    let mut words = vec![(0, 0); chars.len()];
    let mut start = 0;
    for i in 0..=chars.len() {
        if i == chars.len() || !chars[i].is_alphanumeric() {
            for w in &mut words[start..i] {
                *w = (start, i);
            }
            start = i + 1;
        }
    }
    let mut phase = 0f64;
    (0..total)
        .map(|n| {
            let i = n / per_char;
            let c = chars[i];
            if !c.is_alphanumeric() {
                return 0;
            }
            let (first, end) = words[i];
            let position = (n - first * per_char) as f64 / ((end - first) * per_char) as f64;
            let envelope = (std::f64::consts::PI * position).sin();
            let pitch = 100.0 + f64::from(u32::from(c) % 23) * 4.0;
            phase += std::f64::consts::TAU * pitch / f64::from(FAKE_SPEECH_RATE);
            let voiced: f64 = (1..=5)
                .map(|k| (phase * f64::from(k)).sin() / f64::from(k))
                .sum();
            (voiced * envelope * 0.25 * 32767.0) as i16
        })
        .collect()
}

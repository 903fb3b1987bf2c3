//! Arbitrary bytes through the WAV reader and the prober: no panic, whole frames inside
//! the input, and the prober's answer the reader's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::container::{sniff, wav};
use media::probe::{AudioFormat, probe};

fuzz_target!(|data: &[u8]| {
    let read = wav::Wav::read(data);
    if let Ok(wav) = &read {
        assert!(wav.data.len() <= data.len());
        assert_eq!(wav.data.len() % wav.frame_bytes(), 0);
        let frames = wav.frames().len() as u64;
        assert_eq!(frames, wav.frame_count());
        // Converting a frame never panics.
        if let Some(frame) = wav.frames().next() {
            for sample in frame.chunks_exact(wav.encoding.width()) {
                let _ = wav.encoding.sample(sample);
            }
        }
    }
    if sniff(data) == Some(AudioFormat::Wav) {
        assert_eq!(probe(data), read.map(|wav| wav.info()));
    }
});

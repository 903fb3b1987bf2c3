//! Arbitrary bytes through the MP3 reader and the prober: no panic, every frame a slice of
//! the input starting with a header of the stream, and the prober's answer the reader's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::container::{mp3, sniff};
use media::probe::{AudioFormat, probe};

fuzz_target!(|data: &[u8]| {
    let range = data.as_ptr_range();
    let mut frames = 0u64;
    let read = mp3::read(data, &mut |frame| {
        assert!(range.contains(&frame.as_ptr()));
        let header = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        assert_eq!(mp3::parse_header(header).map(|h| h.len), Some(frame.len()));
        frames += 1;
    });
    if let Ok(read) = &read {
        assert_eq!(read.frames, frames);
    }
    if sniff(data) == Some(AudioFormat::Mp3) {
        assert_eq!(probe(data), read.map(|mp3| mp3.info()));
    }
});

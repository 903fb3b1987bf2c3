//! Arbitrary bytes through the WebM/Matroska reader and the prober: no panic, every block
//! a slice of the input, and the prober's answer the reader's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::container::{sniff, webm};
use media::probe::{AudioFormat, probe};

fuzz_target!(|data: &[u8]| {
    let range = data.as_ptr_range();
    let mut blocks = 0usize;
    let read = webm::read(data, &mut |block| {
        assert!(block.payload.is_empty() || range.contains(&block.payload.as_ptr()));
        assert!(block.duration_ns >= 0);
        blocks += 1;
    });
    assert!(blocks <= data.len());
    let info = read.and_then(|read| read.info());
    if sniff(data) == Some(AudioFormat::WebmOpus) {
        assert_eq!(probe(data), info);
    }
});

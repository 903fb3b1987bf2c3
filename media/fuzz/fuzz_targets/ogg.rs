//! Arbitrary bytes through the Ogg/Opus reader and the prober: no panic, every piece a
//! slice of the input, pieces of one packet in order, and the prober's answer the reader's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use media::container::{ogg, sniff};
use media::probe::{AudioFormat, probe};

fuzz_target!(|data: &[u8]| {
    let range = data.as_ptr_range();
    let mut open = false;
    let read = ogg::read(data, &mut |piece| {
        assert!(piece.data.is_empty() || range.contains(&piece.data.as_ptr()));
        // A piece that continues a packet only ever follows one left open.
        assert!(piece.starts || open);
        open = !piece.ends;
    });
    let info = read.and_then(|read| read.info());
    if sniff(data) == Some(AudioFormat::OggOpus) {
        assert_eq!(probe(data), info);
    }
    // The page layer on its own, as the recorder uses it.
    for page in media::ogg::pages(data) {
        assert!(page.bytes.len() >= media::ogg::HEADER_LEN);
    }
});

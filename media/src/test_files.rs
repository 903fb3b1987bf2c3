//! Small, valid files built in code for the unit tests of the readers and the decoders, so
//! both test against the same bytes.

use crate::ogg::{CAPTURE, CRC_AT, page_crc};

/// A canonical WAV file at 8 kHz: format `tag` (1 PCM, 3 IEEE float), then `data`.
pub fn wav(tag: u16, channels: u16, bits: u16, data: &[u8]) -> Vec<u8> {
    let mut out = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&tag.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&8_000u32.to_le_bytes());
    let align = channels * bits / 8;
    out.extend_from_slice(&(8_000 * u32::from(align)).to_le_bytes());
    out.extend_from_slice(&align.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    out
}

/// One Ogg page of stream 7 with a valid checksum; the last packet is left open when
/// `open_end` is set.
pub fn ogg_page(flags: u8, granule: u64, packets: &[&[u8]], open_end: bool) -> Vec<u8> {
    let mut lacing = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        lacing.extend(std::iter::repeat_n(255u8, p.len() / 255));
        let last = i + 1 == packets.len();
        if !(last && open_end) {
            lacing.push((p.len() % 255) as u8);
        }
    }
    let mut out = CAPTURE.to_vec();
    out.extend_from_slice(&[0, flags]);
    out.extend_from_slice(&granule.to_le_bytes());
    out.extend_from_slice(&7u32.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.push(lacing.len() as u8);
    out.extend_from_slice(&lacing);
    for p in packets {
        out.extend_from_slice(p);
    }
    let crc = page_crc(&out);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    out
}

/// A mono 48 kHz `OpusHead`.
pub fn opus_head() -> Vec<u8> {
    let mut h = b"OpusHead".to_vec();
    h.extend_from_slice(&[1, 1, 0x38, 0x01, 0x80, 0xBB, 0, 0, 0, 0, 0]);
    h
}

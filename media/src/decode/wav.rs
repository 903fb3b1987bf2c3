//! RIFF/WAVE: the PCM frames [`crate::container::wav`] found, converted and downmixed.

use super::{DecodeError, Limit, push_downmixed};
use crate::container::wav::Wav;

/// Mono samples and their rate.
pub(super) fn decode(bytes: &[u8], limit: Limit) -> Result<(Vec<f32>, u32), DecodeError> {
    let wav = Wav::read(bytes)?;
    limit.admit(&wav.info())?;
    // Admitted: at most the limit's worth of frames, all of them present in the upload.
    let mut out = Vec::with_capacity(wav.frames().len());
    let encoding = wav.encoding;
    push_downmixed(
        &mut out,
        wav.data
            .chunks_exact(encoding.width())
            .map(|b| encoding.sample(b)),
        usize::from(wav.channels),
    );
    Ok((out, wav.sample_rate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_files::wav;
    use std::time::Duration;

    const PCM: u16 = 1;
    const IEEE_FLOAT: u16 = 3;

    const LIMIT: Limit = Limit {
        max: Duration::from_secs(60),
    };

    #[test]
    fn decodes_each_depth_to_unit_range_and_downmixes() {
        let s16 = wav(
            PCM,
            2,
            16,
            &[0x00, 0x40, 0x00, 0xC0, 0xFF, 0x7F, 0xFF, 0x7F],
        );
        let (samples, rate) = decode(&s16, LIMIT).unwrap();
        assert_eq!(rate, 8_000);
        assert_eq!(samples, vec![0.0, 32_767.0 / 32_768.0]);

        let s24 = wav(PCM, 1, 24, &[0x00, 0x00, 0xC0]);
        assert_eq!(decode(&s24, LIMIT).unwrap().0, vec![-0.5]);

        let f64le = wav(IEEE_FLOAT, 1, 64, &0.25f64.to_le_bytes());
        assert_eq!(decode(&f64le, LIMIT).unwrap().0, vec![0.25]);
    }

    #[test]
    fn a_data_size_past_the_end_is_clamped() {
        let mut bytes = wav(PCM, 1, 16, &[0, 0x40, 0, 0x40, 7]);
        let at = bytes.len() - 9;
        bytes[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&bytes, LIMIT).unwrap().0, vec![0.5, 0.5]);
    }

    #[test]
    fn the_limit_applies_before_converting() {
        let bytes = wav(PCM, 1, 16, &vec![0; 2 * 8_000 * 3]);
        let short = Limit {
            max: Duration::from_secs(1),
        };
        assert!(matches!(
            decode(&bytes, short),
            Err(DecodeError::TooLong { .. })
        ));
    }
}

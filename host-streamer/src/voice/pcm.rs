//! 16-bit little-endian PCM arriving in pieces (WebSocket deltas, HTTP chunks) that need not
//! split on sample boundaries.

/// Turns byte pieces into samples, carrying an odd byte over to the next piece.
#[derive(Debug, Default)]
pub(crate) struct Pcm16Decoder {
    carry: Option<u8>,
    samples: Vec<i16>,
}

impl Pcm16Decoder {
    /// The whole samples `bytes` completes, valid until the next call.
    pub fn decode(&mut self, mut bytes: &[u8]) -> &[i16] {
        self.samples.clear();
        if let Some(low) = self.carry.take() {
            match bytes.split_first() {
                Some((&high, rest)) => {
                    self.samples.push(i16::from_le_bytes([low, high]));
                    bytes = rest;
                }
                None => self.carry = Some(low),
            }
        }
        let pairs = bytes.chunks_exact(2);
        if let [odd] = pairs.remainder() {
            self.carry = Some(*odd);
        }
        self.samples
            .extend(pairs.map(|b| i16::from_le_bytes([b[0], b[1]])));
        &self.samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_split_across_pieces_are_joined() {
        let bytes: Vec<u8> = [1i16, -2, 300, -32768]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let mut d = Pcm16Decoder::default();
        let mut all = Vec::new();
        for piece in [&bytes[..3], &bytes[3..3], &bytes[3..4], &bytes[4..]] {
            all.extend_from_slice(d.decode(piece));
        }
        assert_eq!(all, [1, -2, 300, -32768]);
    }
}

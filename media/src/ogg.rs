//! Ogg pages (RFC 3533): the constants, the checksum and a checking page reader, shared by
//! the upload prober (which must refuse corrupt pages) and the streamer's recorder (which
//! seals spool files a crash cut off).

/// Header-type flags (RFC 3533 §6).
pub const FLAG_CONTINUED: u8 = 0x01;
pub const FLAG_BOS: u8 = 0x02;
pub const FLAG_EOS: u8 = 0x04;

pub const CAPTURE: &[u8; 4] = b"OggS";
/// Capture pattern, version, header type, granule, serial, sequence, CRC, segment count.
pub const HEADER_LEN: usize = 27;
/// Offset of the CRC in the page header.
pub const CRC_AT: usize = 22;

/// Ogg's CRC-32 (polynomial 0x04c11db7, not reflected, zero initial value and final XOR;
/// not zlib's), one table entry per byte value.
const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04C1_1DB7
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

fn crc_update(crc: u32, bytes: &[u8]) -> u32 {
    bytes.iter().fold(crc, |crc, &b| {
        (crc << 8) ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ b)]
    })
}

/// The checksum of a page, computed with its CRC field taken as zero.
pub fn page_crc(page: &[u8]) -> u32 {
    let crc = crc_update(0, &page[..CRC_AT]);
    let crc = crc_update(crc, &[0; 4]);
    crc_update(crc, &page[CRC_AT + 4..])
}

/// One page read back from bytes, its checksum verified.
#[derive(Debug, Clone, Copy)]
pub struct Page<'a> {
    /// The whole page, header included.
    pub bytes: &'a [u8],
    pub flags: u8,
    pub granule: u64,
    pub serial: u32,
    pub sequence: u32,
    /// Segment sizes: a value below 255 ends a packet.
    pub lacing: &'a [u8],
    pub body: &'a [u8],
}

/// Why bytes are not a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PageError {
    /// The bytes end before the page does: a write cut off.
    #[error("truncated Ogg page")]
    Truncated,
    /// Not a page, or its checksum does not match.
    #[error("corrupt Ogg page")]
    Corrupt,
}

impl<'a> Page<'a> {
    /// The page at the start of `buf`.
    pub fn read(buf: &'a [u8]) -> Result<Page<'a>, PageError> {
        if buf.len() < CAPTURE.len() {
            return Err(if CAPTURE.starts_with(buf) {
                PageError::Truncated
            } else {
                PageError::Corrupt
            });
        }
        if !buf.starts_with(CAPTURE) {
            return Err(PageError::Corrupt);
        }
        let header = buf.get(..HEADER_LEN).ok_or(PageError::Truncated)?;
        if header[4] != 0 {
            return Err(PageError::Corrupt);
        }
        let lacing_end = HEADER_LEN + usize::from(header[26]);
        let lacing = buf
            .get(HEADER_LEN..lacing_end)
            .ok_or(PageError::Truncated)?;
        let body_len: usize = lacing.iter().map(|&l| usize::from(l)).sum();
        let bytes = buf
            .get(..lacing_end + body_len)
            .ok_or(PageError::Truncated)?;
        let stored = u32::from_le_bytes(le4(&bytes[CRC_AT..]));
        if page_crc(bytes) != stored {
            return Err(PageError::Corrupt);
        }
        Ok(Page {
            bytes,
            flags: header[5],
            granule: u64::from_le_bytes(header[6..14].try_into().unwrap_or_default()),
            serial: u32::from_le_bytes(le4(&header[14..])),
            sequence: u32::from_le_bytes(le4(&header[18..])),
            lacing,
            body: &bytes[lacing_end..],
        })
    }

    /// The packets this page holds, in order. Meant for pages whose packets never span
    /// pages (the streamer's own).
    pub fn packets(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let body = self.body;
        let mut start = 0;
        let mut end = 0;
        self.lacing.iter().filter_map(move |&l| {
            end += usize::from(l);
            (l < 255).then(|| {
                let packet = &body[start..end];
                start = end;
                packet
            })
        })
    }

    /// The same page with `flags` set, its checksum recomputed.
    pub fn with_flags(&self, flags: u8) -> Vec<u8> {
        let mut page = self.bytes.to_vec();
        page[5] |= flags;
        let crc = page_crc(&page);
        page[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        page
    }
}

fn le4(b: &[u8]) -> [u8; 4] {
    b[..4].try_into().unwrap_or_default()
}

/// Iterates over the pages of `buf` until the first that is truncated or corrupt.
pub fn pages(buf: &[u8]) -> impl Iterator<Item = Page<'_>> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let page = Page::read(&buf[pos..]).ok()?;
        pos += page.bytes.len();
        Some(page)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checksum_is_ogg_s() {
        // The catalogue check value of these CRC parameters.
        assert_eq!(crc_update(0, b"123456789"), 0x89a1_897f);
    }

    #[test]
    fn short_and_foreign_bytes_are_told_apart() {
        assert_eq!(Page::read(b"Og").unwrap_err(), PageError::Truncated);
        assert_eq!(Page::read(b"RIFF....").unwrap_err(), PageError::Corrupt);
        let mut page = vec![0u8; HEADER_LEN];
        page[..4].copy_from_slice(CAPTURE);
        let crc = page_crc(&page);
        page[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        let read = Page::read(&page).unwrap();
        assert_eq!((read.bytes.len(), read.packets().count()), (HEADER_LEN, 0));
        page[10] ^= 1;
        assert_eq!(Page::read(&page).unwrap_err(), PageError::Corrupt);
    }
}

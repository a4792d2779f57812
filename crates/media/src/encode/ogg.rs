//! A minimal Ogg page writer (RFC 3533) for one logical stream: packets are laced into pages
//! of about 4 KiB, each page carrying the granule position of the last packet that ends on it.

use super::write_error;
use crate::MediaError;
use std::io::Write;

/// Page payload after which the page is written out (ffmpeg and libogg aim for about 4 KiB).
const PAGE_TARGET_BYTES: usize = 4096;
/// Lacing values a page can hold.
const MAX_SEGMENTS: usize = 255;

const FLAG_CONTINUED: u8 = 0x01;
const FLAG_BOS: u8 = 0x02;
const FLAG_EOS: u8 = 0x04;

/// Writes Ogg pages of one logical stream to `W`.
pub(crate) struct OggWriter<W: Write> {
    out: W,
    serial: u32,
    sequence: u32,
    /// Lacing values of the page being filled.
    segments: Vec<u8>,
    /// Payload of the page being filled.
    data: Vec<u8>,
    /// Granule position of the last packet completed on the page being filled; -1 if none.
    granule: i64,
    /// Whether the page being filled starts with the continuation of a packet.
    continued: bool,
    /// Whether the first page (beginning of stream) is still to be written.
    first: bool,
}

impl<W: Write> OggWriter<W> {
    pub(crate) fn new(out: W, serial: u32) -> Self {
        OggWriter {
            out,
            serial,
            sequence: 0,
            segments: Vec::with_capacity(MAX_SEGMENTS),
            data: Vec::with_capacity(PAGE_TARGET_BYTES * 2),
            granule: -1,
            continued: false,
            first: true,
        }
    }

    /// Appends a packet that ends at `granule`. Full pages are written out as they fill; the
    /// rest waits for more packets, [`OggWriter::flush_page`] or [`OggWriter::finish`].
    pub(crate) fn write_packet(&mut self, packet: &[u8], granule: i64) -> Result<(), MediaError> {
        if self.data.len() >= PAGE_TARGET_BYTES {
            // Full enough: the packet starts a new page. (Checked here rather than after
            // adding, so the last packet always waits for `finish` and its end-of-stream page.)
            self.write_page(0)?;
        }
        let mut rest = packet;
        loop {
            if self.segments.len() == MAX_SEGMENTS {
                // The packet goes on in the next page.
                self.write_page(0)?;
                self.continued = true;
            }
            let room = MAX_SEGMENTS - self.segments.len();
            let full = rest.len() / 255;
            if full < room {
                // The rest fits: full segments, then the terminating one (< 255, maybe 0).
                self.segments.extend(std::iter::repeat_n(255u8, full));
                self.segments.push((rest.len() % 255) as u8);
                self.data.extend_from_slice(rest);
                self.granule = granule;
                break;
            }
            self.segments.extend(std::iter::repeat_n(255u8, room));
            self.data.extend_from_slice(&rest[..room * 255]);
            rest = &rest[room * 255..];
        }
        Ok(())
    }

    /// Writes out the page being filled, if it holds anything, so that the next packet starts
    /// a new page (RFC 7845 wants the headers alone on their pages).
    pub(crate) fn flush_page(&mut self) -> Result<(), MediaError> {
        if !self.segments.is_empty() {
            self.write_page(0)?;
        }
        Ok(())
    }

    /// Writes the last page, marked end of stream, and returns the output.
    pub(crate) fn finish(mut self) -> Result<W, MediaError> {
        self.write_page(FLAG_EOS)?;
        self.out.flush().map_err(write_error)?;
        Ok(self.out)
    }

    fn write_page(&mut self, flags: u8) -> Result<(), MediaError> {
        let mut flags = flags;
        if self.continued {
            flags |= FLAG_CONTINUED;
        }
        if self.first {
            flags |= FLAG_BOS;
        }
        let mut page = Vec::with_capacity(27 + self.segments.len() + self.data.len());
        page.extend_from_slice(b"OggS");
        page.push(0); // version
        page.push(flags);
        page.extend_from_slice(&self.granule.to_le_bytes());
        page.extend_from_slice(&self.serial.to_le_bytes());
        page.extend_from_slice(&self.sequence.to_le_bytes());
        page.extend_from_slice(&[0; 4]); // CRC, filled in below
        page.push(self.segments.len() as u8);
        page.extend_from_slice(&self.segments);
        page.extend_from_slice(&self.data);
        let crc = crc32(&page);
        page[22..26].copy_from_slice(&crc.to_le_bytes());
        self.out.write_all(&page).map_err(write_error)?;
        self.sequence = self.sequence.wrapping_add(1);
        self.segments.clear();
        self.data.clear();
        self.granule = -1;
        self.continued = false;
        self.first = false;
        Ok(())
    }
}

/// Ogg's CRC-32: polynomial 0x04c11db7, not reflected, initial value 0, no final xor.
fn crc32(bytes: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut table = [0u32; 256];
        for (i, entry) in table.iter_mut().enumerate() {
            let mut r = (i as u32) << 24;
            for _ in 0..8 {
                r = if r & 0x8000_0000 != 0 {
                    (r << 1) ^ 0x04c1_1db7
                } else {
                    r << 1
                };
            }
            *entry = r;
        }
        table
    });
    bytes.iter().fold(0u32, |crc, &b| {
        (crc << 8) ^ table[((crc >> 24) as u8 ^ b) as usize]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits a written stream back into (flags, granule, packets-or-pieces) per page.
    fn pages(mut bytes: &[u8]) -> Vec<(u8, i64, Vec<u8>, Vec<u8>)> {
        let mut pages = Vec::new();
        while !bytes.is_empty() {
            assert_eq!(&bytes[..4], b"OggS");
            let flags = bytes[5];
            let granule = i64::from_le_bytes(bytes[6..14].try_into().unwrap());
            let crc = u32::from_le_bytes(bytes[22..26].try_into().unwrap());
            let n = bytes[26] as usize;
            let segments = bytes[27..27 + n].to_vec();
            let len: usize = segments.iter().map(|&s| s as usize).sum();
            let total = 27 + n + len;
            let mut copy = bytes[..total].to_vec();
            copy[22..26].fill(0);
            assert_eq!(crc32(&copy), crc);
            pages.push((flags, granule, segments, bytes[27 + n..total].to_vec()));
            bytes = &bytes[total..];
        }
        pages
    }

    #[test]
    fn crc_matches_the_reference() {
        // Ogg's CRC is CRC-32/CKSUM without the final inversion (and without appending the
        // length): its check value 0x765e7680, inverted.
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(&[0]), 0);
        assert_eq!(crc32(b"123456789"), 0x89a1_897f);
    }

    #[test]
    fn packets_are_laced_and_pages_flagged() {
        let mut writer = OggWriter::new(Vec::new(), 7);
        writer.write_packet(b"head", 0).unwrap();
        writer.flush_page().unwrap();
        let big = vec![0xabu8; 255 * 300]; // spans two pages
        writer.write_packet(&big, 0).unwrap();
        writer.flush_page().unwrap();
        writer.write_packet(&[1; 255], 960).unwrap();
        writer.write_packet(&[2; 10], 1920).unwrap();
        let out = writer.finish().unwrap();
        let pages = pages(&out);
        assert_eq!(pages[0].0, FLAG_BOS);
        assert_eq!(pages[0].2, vec![4]);
        // The big packet: 255 full segments on the first page (no packet ends: granule -1),
        // then 45 full segments and a 0 terminator on the next.
        assert_eq!(pages[1].0, 0);
        assert_eq!(pages[1].1, -1);
        assert_eq!(pages[1].2.len(), 255);
        assert_eq!(pages[2].0, FLAG_CONTINUED);
        assert_eq!(pages[2].1, 0);
        assert_eq!(pages[2].2.len(), 46);
        assert_eq!(*pages[2].2.last().unwrap(), 0);
        let last = pages.last().unwrap();
        assert_eq!(last.0, FLAG_EOS);
        assert_eq!(last.1, 1920);
        assert_eq!(last.2, vec![255, 0, 10]);
    }
}

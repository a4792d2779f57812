//! Sanity checks of an MP4/M4A (ISO base media file format) box tree, before symphonia reads it.
//!
//! Symphonia 0.5's MP4 reader sizes allocations from counts and lengths in the file without
//! comparing them with the file: a sample table (`stts`, `stsc`, `stsz`, `stco`, `co64`)
//! declaring 2^32 entries makes it reserve up to 32 GiB before reading the first entry, a
//! sample size of 4 GiB allocates that much for one packet, and an `esds` descriptor or
//! metadata box allocates its declared length. An allocation that fails aborts the process: it
//! is not a panic that `catch_unwind` could turn into an error. Found by fuzzing (see
//! `fuzz/README.md`; the inputs are kept in `tests/regressions/`).
//!
//! This walk refuses, as `DecodeFailed`, a file in which
//! - a box extends past its parent or past the end of the file (except `mdat`, which a
//!   truncated file cuts short), or is shorter than its own header;
//! - a sample table declares more entries than its box holds;
//! - a sample size (`stsz`, `trun`, the `tfhd`/`trex` defaults) is larger than the file;
//! - an `esds` descriptor is longer than what contains it.
//!
//! Every allocation symphonia then makes from the file's numbers is at most the file's size.
//! Files ffmpeg, Apple and Android tools write pass untouched.

use crate::MediaError;
use std::io::{Read, Seek, SeekFrom};

/// Checks the boxes of the MP4 file `file` of `file_len` bytes.
pub(crate) fn check_mp4_boxes<R: Read + Seek>(
    file: &mut R,
    file_len: u64,
) -> Result<(), MediaError> {
    let io = |e| MediaError::io("reading the input", e);
    let mut pos = 0u64;
    while pos + 8 <= file_len {
        file.seek(SeekFrom::Start(pos)).map_err(io)?;
        let mut header = [0u8; 16];
        let header_len = if file_len - pos >= 16 { 16 } else { 8 };
        file.read_exact(&mut header[..header_len]).map_err(io)?;
        let kind: [u8; 4] = header[4..8].try_into().unwrap_or_default();
        let (skip, size) = match u32::from_be_bytes(header[..4].try_into().unwrap_or_default()) {
            0 => (8, file_len - pos),
            1 if header_len == 16 => (
                16,
                u64::from_be_bytes(header[8..16].try_into().unwrap_or_default()),
            ),
            1 => return Err(truncated(&kind)),
            size => (8, u64::from(size)),
        };
        if size < skip {
            return Err(MediaError::decode(format!(
                "MP4 box {} is shorter than its header",
                name(&kind)
            )));
        }
        let end = pos.saturating_add(size);
        let parsed = matches!(&kind, b"moov" | b"moof" | b"meta");
        if end > file_len && parsed {
            return Err(MediaError::decode(format!(
                "MP4 box {} claims {size} bytes, past the end of the file",
                name(&kind)
            )));
        }
        if parsed {
            let mut body = vec![0u8; (size - skip) as usize];
            file.seek(SeekFrom::Start(pos + skip)).map_err(io)?;
            file.read_exact(&mut body).map_err(io)?;
            check_box(&kind, &body, file_len, b"\0\0\0\0")?;
        }
        // Past the end: the `mdat` of a truncated file, or trailing data symphonia ignores.
        pos = end;
    }
    Ok(())
}

/// Checks the body of a box of type `kind` inside a `parent` box, and the boxes inside it.
fn check_box(
    kind: &[u8; 4],
    body: &[u8],
    file_len: u64,
    parent: &[u8; 4],
) -> Result<(), MediaError> {
    let u32_at = |at: usize| -> Option<u64> {
        body.get(at..at + 4)
            .map(|b| u64::from(u32::from_be_bytes(b.try_into().unwrap_or_default())))
    };
    let too_many = || {
        Err(MediaError::decode(format!(
            "MP4 table {} declares more entries than it holds",
            name(kind)
        )))
    };
    let too_large = || {
        Err(MediaError::decode(format!(
            "MP4 box {} declares a sample larger than the file",
            name(kind)
        )))
    };
    // A full box's table: version and flags, an entry count, then the entries.
    let table = |entry_len: u64, header: usize| -> Result<(), MediaError> {
        match u32_at(header - 4) {
            Some(count) if (header as u64 + count * entry_len) > body.len() as u64 => too_many(),
            Some(_) => Ok(()),
            None => Err(truncated(kind)),
        }
    };
    if parent == b"stsd" {
        // A sample entry. Audio ones: 28 bytes of fields (more in QuickTime versions 1 and
        // 2), then boxes such as `esds`, `alac`, `dfLa`, `dOps`, `wave`. Others (video, text)
        // are laid out differently and symphonia skips them.
        let audio = [
            b"mp4a", b"alac", b"fLaC", b"Opus", b"lpcm", b"sowt", b"twos", b"ipcm", b"fpcm",
            b".mp3",
        ];
        let extra = match u32_at(8).map(|v| v >> 16) {
            Some(1) => 16,
            Some(2) => 36,
            _ => 0,
        };
        if audio.contains(&kind) && body.len() >= 28 + extra {
            children(&body[28 + extra..], file_len, kind)?;
        }
        return Ok(());
    }
    match kind {
        b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl" | b"edts" | b"dinf" | b"mvex" | b"moof"
        | b"traf" | b"udta" | b"ilst" | b"wave" => children(body, file_len, kind),
        // ISO `meta` is a full box; QuickTime's is a plain container.
        b"meta" if body.get(..4) == Some(&[0; 4]) => children(&body[4..], file_len, kind),
        b"meta" => children(body, file_len, kind),
        // Sample description: version, flags and count, then one box per sample entry.
        b"stsd" => children(body.get(8..).unwrap_or_default(), file_len, kind),
        // A metadata item (`©nam`, `trkn`, …): `data` boxes and the like.
        _ if parent == b"ilst" => children(body, file_len, kind),
        b"esds" => descriptors(body.get(4..).unwrap_or_default()),
        b"stts" | b"ctts" | b"co64" => table(8, 8),
        b"stsc" => table(12, 8),
        b"stco" | b"stss" => table(4, 8),
        b"elst" => table(if body.first() == Some(&1) { 20 } else { 12 }, 8),
        b"stsz" => {
            let (Some(size), Some(count)) = (u32_at(4), u32_at(8)) else {
                return Err(truncated(kind));
            };
            if size > file_len {
                return too_large();
            }
            if size == 0 {
                table(4, 12)?;
                if (0..count as usize).any(|i| u32_at(12 + 4 * i).is_some_and(|s| s > file_len)) {
                    return too_large();
                }
            }
            Ok(())
        }
        b"trun" => {
            let flags = u32_at(0).unwrap_or(0) & 0xff_ffff;
            let count = u32_at(4).ok_or_else(|| truncated(kind))?;
            let mut at = 8;
            at += 4 * usize::from(flags & 0x1 != 0) + 4 * usize::from(flags & 0x4 != 0);
            let per_sample = 4 * u64::from((flags & 0xf00).count_ones());
            if at as u64 + count * per_sample > body.len() as u64 {
                return too_many();
            }
            if flags & 0x200 != 0 {
                // Sample sizes follow a duration when there is one.
                let offset = at + 4 * usize::from(flags & 0x100 != 0);
                let stride = per_sample as usize;
                if (0..count as usize)
                    .any(|i| u32_at(offset + i * stride).is_some_and(|s| s > file_len))
                {
                    return too_large();
                }
            }
            Ok(())
        }
        b"tfhd" => {
            // Optional fields in order: base data offset (8 bytes), sample description index,
            // default duration, default size, default flags.
            let flags = u32_at(0).unwrap_or(0);
            let mut at = 8;
            for (bit, len) in [(0x1, 8), (0x2, 4), (0x8, 4)] {
                at += if flags & bit != 0 { len } else { 0 };
            }
            if flags & 0x10 != 0 && u32_at(at).is_some_and(|s| s > file_len) {
                return too_large();
            }
            Ok(())
        }
        b"trex" if u32_at(16).is_some_and(|s| s > file_len) => too_large(),
        _ => Ok(()),
    }
}

/// Checks the boxes that fill `data` (the body of a `parent` box) one after another.
fn children(data: &[u8], file_len: u64, parent: &[u8; 4]) -> Result<(), MediaError> {
    let mut pos = 0usize;
    while data.len() - pos >= 8 {
        let at = |i: usize| data.get(pos + i..pos + i + 4).unwrap_or_default();
        let kind: [u8; 4] = at(4).try_into().unwrap_or_default();
        let (skip, size) = match u32::from_be_bytes(at(0).try_into().unwrap_or_default()) {
            0 => (8, (data.len() - pos) as u64),
            1 if data.len() - pos >= 16 => (
                16,
                (u64::from(u32::from_be_bytes(at(8).try_into().unwrap_or_default())) << 32)
                    | u64::from(u32::from_be_bytes(at(12).try_into().unwrap_or_default())),
            ),
            1 => return Err(truncated(&kind)),
            size => (8, u64::from(size)),
        };
        if size < skip as u64 || size > (data.len() - pos) as u64 {
            return Err(MediaError::decode(format!(
                "MP4 box {} claims {size} bytes, past the box that holds it",
                name(&kind)
            )));
        }
        let size = size as usize;
        check_box(&kind, &data[pos + skip..pos + size], file_len, parent)?;
        pos += size;
    }
    Ok(())
}

/// Checks MPEG-4 descriptors (`esds`): each must fit in what holds it.
fn descriptors(mut data: &[u8]) -> Result<(), MediaError> {
    while let Some((&tag, rest)) = data.split_first() {
        // The length: up to four bytes of seven bits, high bit set on all but the last.
        let mut len = 0usize;
        let mut used = 0;
        loop {
            let Some(&byte) = rest.get(used) else {
                return Err(MediaError::decode("MP4 esds descriptor is truncated"));
            };
            len = (len << 7) | usize::from(byte & 0x7f);
            used += 1;
            if byte & 0x80 == 0 || used == 4 {
                break;
            }
        }
        let rest = &rest[used..];
        if len > rest.len() {
            return Err(MediaError::decode(format!(
                "MP4 esds descriptor {tag:#x} claims {len} bytes, past its container"
            )));
        }
        let body = &rest[..len];
        match tag {
            // ES_Descriptor: ES_ID, flags, then optional fields by flag, then descriptors.
            0x03 => {
                let flags = body.get(2).copied().unwrap_or(0);
                let mut at = 3;
                if flags & 0x80 != 0 {
                    at += 2;
                }
                if flags & 0x40 != 0 {
                    at += 1 + usize::from(body.get(at).copied().unwrap_or(0));
                }
                if flags & 0x20 != 0 {
                    at += 2;
                }
                descriptors(body.get(at..).unwrap_or_default())?;
            }
            // DecoderConfigDescriptor: 13 bytes of fields, then descriptors.
            0x04 => descriptors(body.get(13..).unwrap_or_default())?,
            _ => {}
        }
        data = &rest[len..];
    }
    Ok(())
}

fn truncated(kind: &[u8; 4]) -> MediaError {
    MediaError::decode(format!("MP4 box {} is truncated", name(kind)))
}

fn name(kind: &[u8; 4]) -> String {
    format!("{:?}", String::from_utf8_lossy(kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    fn check(bytes: &[u8]) -> Result<(), MediaError> {
        check_mp4_boxes(&mut Cursor::new(bytes), bytes.len() as u64)
    }

    fn moov_with(table: &[u8]) -> Vec<u8> {
        let stbl = mp4_box(b"stbl", table);
        let minf = mp4_box(b"minf", &stbl);
        let mdia = mp4_box(b"mdia", &minf);
        let trak = mp4_box(b"trak", &mdia);
        let mut file = mp4_box(b"ftyp", b"M4A \0\0\0\0");
        file.extend(mp4_box(b"moov", &trak));
        file
    }

    #[test]
    fn tables_must_hold_their_entries() {
        let mut stts = vec![0, 0, 0, 0, 0, 0, 0, 1];
        stts.extend_from_slice(&[0, 0, 0, 10, 0, 0, 4, 0]);
        assert!(check(&moov_with(&mp4_box(b"stts", &stts))).is_ok());
        stts[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        let err = check(&moov_with(&mp4_box(b"stts", &stts))).unwrap_err();
        assert!(err.to_string().contains("more entries"), "{err}");
    }

    #[test]
    fn sample_sizes_must_fit_in_the_file() {
        let mut stsz = vec![0; 12];
        stsz[4..8].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
        let err = check(&moov_with(&mp4_box(b"stsz", &stsz))).unwrap_err();
        assert!(err.to_string().contains("larger than the file"), "{err}");
        let mut stsz = vec![0; 16];
        stsz[8..12].copy_from_slice(&1u32.to_be_bytes());
        stsz[12..16].copy_from_slice(&10u32.to_be_bytes());
        assert!(check(&moov_with(&mp4_box(b"stsz", &stsz))).is_ok());
        stsz[12..16].copy_from_slice(&0x8000_0000u32.to_be_bytes());
        assert!(check(&moov_with(&mp4_box(b"stsz", &stsz))).is_err());
    }

    #[test]
    fn boxes_must_fit_in_their_parent_except_a_cut_mdat() {
        let mut file = moov_with(&[]);
        file.extend(mp4_box(b"mdat", &[0; 100]));
        assert!(check(&file).is_ok());
        assert!(
            check(&file[..file.len() - 50]).is_ok(),
            "a truncated mdat is fine"
        );
        let mut bad = moov_with(&mp4_box(b"hdlr", &[0; 30]));
        let at = bad.len() - 38;
        bad[at..at + 4].copy_from_slice(&0x7fff_ffffu32.to_be_bytes());
        assert!(check(&bad).is_err());
    }

    #[test]
    fn esds_descriptors_must_fit() {
        // ES_Descriptor (3) holding a DecoderConfigDescriptor (4) holding a DecSpecificInfo (5).
        let good = [
            0, 0, 0, 0, 3, 25, 0, 1, 0, 4, 17, 0x40, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 2,
            0x12, 0x10, 6, 1, 2,
        ];
        let esds = |body: &[u8]| moov_with(&mp4_box(b"esds", body));
        assert!(check(&esds(&good)).is_ok());
        let mut bad = good;
        bad[25] = 0x7f; // DecSpecificInfo claiming 127 bytes
        assert!(check(&esds(&bad)).is_err());
    }
}

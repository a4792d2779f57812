//! Sanity checks and repairs of RIFF/WAVE and FORM/AIFF headers, before symphonia reads them.
//!
//! - A header chunk claiming to be larger than the file is refused (it would size an
//!   allocation in the demuxer).
//! - A sample data chunk claiming more bytes than the file holds — a truncated file, or one
//!   written by a streaming recorder that never went back to fill in the sizes (0 or
//!   0xFFFFFFFF) — is presented to symphonia with the sizes the file really has, so it decodes
//!   what is there instead of failing on inconsistent sizes.
//! - The frame count of an AIFF `COMM` chunk is returned: symphonia 0.5 derives the length
//!   from the `SSND` size without subtracting its 8-byte prefix (two frames too many at
//!   16-bit stereo).

use crate::MediaError;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// What the header walk found.
#[derive(Debug, Default)]
pub(crate) struct IffLayout {
    /// Frames declared by an AIFF `COMM` chunk.
    pub declared_frames: Option<u64>,
    /// Size fields to present differently: (file offset, bytes).
    pub patches: Vec<(u64, [u8; 4])>,
}

/// Walks the chunks of the header up to the sample data.
pub(crate) fn check_iff_chunks<R: Read + Seek>(
    file: &mut R,
    file_len: u64,
    container: &str,
) -> Result<IffLayout, MediaError> {
    let io = |e| MediaError::io("reading the input", e);
    let mut form = [0u8; 12];
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    if file.read_exact(&mut form).is_err() {
        return Err(MediaError::decode("IFF header is truncated"));
    }
    if &form[..4] == b"RF64" || &form[..4] == b"BW64" {
        return Err(MediaError::unsupported("RF64/BW64 WAVE is not supported"));
    }
    let big_endian = container == "aiff" || &form[..4] == b"RIFX";
    let read_u32 = |bytes: [u8; 4]| {
        u64::from(if big_endian {
            u32::from_be_bytes(bytes)
        } else {
            u32::from_le_bytes(bytes)
        })
    };
    let write_u32 = |value: u64| {
        let value = u32::try_from(value).unwrap_or(u32::MAX);
        if big_endian {
            value.to_be_bytes()
        } else {
            value.to_le_bytes()
        }
    };
    let form_size = read_u32([form[4], form[5], form[6], form[7]]);
    let data_tag: &[u8; 4] = if container == "aiff" {
        b"SSND"
    } else {
        b"data"
    };
    let mut layout = IffLayout::default();
    let mut pos = 12u64;
    loop {
        let mut header = [0u8; 8];
        if pos + 8 > file_len {
            return Err(MediaError::decode(
                "no sample data chunk before the end of the file",
            ));
        }
        file.seek(SeekFrom::Start(pos)).map_err(io)?;
        file.read_exact(&mut header).map_err(io)?;
        let size = read_u32([header[4], header[5], header[6], header[7]]);
        if &header[..4] == data_tag {
            let available = file_len - (pos + 8);
            if size > available || (size == 0 && available > 0) {
                layout.patches.push((pos + 4, write_u32(available)));
                let form_needed = pos + 8 + available - 8;
                if form_size < form_needed {
                    layout.patches.push((4, write_u32(file_len - 8)));
                }
            }
            return Ok(layout);
        }
        if pos + 8 + size > file_len {
            return Err(MediaError::decode(format!(
                "chunk {:?} claims {size} bytes past the end of the file",
                String::from_utf8_lossy(&header[..4])
            )));
        }
        if &header[..4] == b"fmt " && size >= 16 {
            let mut fmt = [0u8; 16];
            file.read_exact(&mut fmt).map_err(io)?;
            let u16_at =
                |i: usize| read_u32([fmt[i], fmt[i + 1], 0, 0]) >> if big_endian { 16 } else { 0 };
            let rate = read_u32([fmt[4], fmt[5], fmt[6], fmt[7]]);
            if u16_at(2) == 0 || rate == 0 || u16_at(12) == 0 {
                return Err(MediaError::decode(
                    "format chunk declares zero channels, sample rate or block size",
                ));
            }
        }
        if &header[..4] == b"COMM" && size >= 6 {
            let mut comm = [0u8; 6];
            file.read_exact(&mut comm).map_err(io)?;
            layout.declared_frames = Some(u64::from(u32::from_be_bytes([
                comm[2], comm[3], comm[4], comm[5],
            ])));
        }
        pos += 8 + size + (size & 1);
    }
}

/// A file read with some 4-byte fields replaced (see [`IffLayout::patches`]).
pub(crate) struct PatchedFile {
    file: File,
    len: u64,
    pos: u64,
    patches: Vec<(u64, [u8; 4])>,
}

impl PatchedFile {
    pub(crate) fn new(file: File, len: u64, patches: Vec<(u64, [u8; 4])>) -> Self {
        PatchedFile {
            file,
            len,
            pos: 0,
            patches,
        }
    }
}

impl Read for PatchedFile {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read(buf)?;
        let (start, end) = (self.pos, self.pos + n as u64);
        for (offset, bytes) in &self.patches {
            for (i, byte) in bytes.iter().enumerate() {
                let at = offset + i as u64;
                if (start..end).contains(&at) {
                    buf[(at - start) as usize] = *byte;
                }
            }
        }
        self.pos = end;
        Ok(n)
    }
}

impl Seek for PatchedFile {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        self.pos = self.file.seek(to)?;
        Ok(self.pos)
    }
}

impl symphonia::core::io::MediaSource for PatchedFile {
    fn is_seekable(&self) -> bool {
        true
    }

    fn byte_len(&self) -> Option<u64> {
        Some(self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patched_reads_replace_bytes_across_read_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, (0u8..32).collect::<Vec<_>>()).unwrap();
        let file = File::open(&path).unwrap();
        let mut patched = PatchedFile::new(file, 32, vec![(6, [0xaa, 0xbb, 0xcc, 0xdd])]);
        let mut first = [0u8; 8];
        patched.read_exact(&mut first).unwrap();
        assert_eq!(first, [0, 1, 2, 3, 4, 5, 0xaa, 0xbb]);
        let mut rest = Vec::new();
        patched.read_to_end(&mut rest).unwrap();
        assert_eq!(&rest[..3], &[0xcc, 0xdd, 10]);
        patched.seek(SeekFrom::Start(7)).unwrap();
        let mut one = [0u8; 1];
        patched.read_exact(&mut one).unwrap();
        assert_eq!(one, [0xbb]);
    }
}

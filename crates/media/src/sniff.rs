//! Recognizing a container from the first bytes of a file, and sanity checks of IFF headers.
//!
//! Symphonia's probe decides how a file is parsed, but it neither names the container it chose
//! nor refuses data that merely contains a plausible MP3 sync word somewhere in its first
//! megabyte. This module names the container from the leading bytes (never the file name), and
//! the engine refuses files it cannot name: random bytes and text become
//! `UnsupportedFormat` instead of a confusing decode failure.

use crate::MediaError;
use std::io::{Read, Seek, SeekFrom};

/// How far past the leading ID3v2 tags we look for an MPEG audio frame sync.
const MPEG_SCAN_BYTES: usize = 64 * 1024;

/// Names the container of `file` from its content, or `None` if it is not one we read.
pub(crate) fn sniff<R: Read + Seek>(
    file: &mut R,
    file_len: u64,
) -> Result<Option<&'static str>, MediaError> {
    let io = |e| MediaError::io("reading the input", e);
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    // Skip ID3v2 tags (MP3 files usually have one; some FLAC files do too).
    let mut offset = 0u64;
    let mut had_id3 = false;
    loop {
        let mut header = [0u8; 10];
        if offset + 10 > file_len {
            break;
        }
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        file.read_exact(&mut header).map_err(io)?;
        if &header[..3] != b"ID3" || header[6..10].iter().any(|b| b & 0x80 != 0) {
            break;
        }
        let size = header[6..10]
            .iter()
            .fold(0u64, |acc, b| (acc << 7) | u64::from(*b));
        let footer = if header[5] & 0x10 != 0 { 10 } else { 0 };
        offset += 10 + size + footer;
        had_id3 = true;
    }
    if offset >= file_len {
        return Ok(None);
    }
    file.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut head = Vec::with_capacity(MPEG_SCAN_BYTES);
    file.by_ref()
        .take(MPEG_SCAN_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(io)?;
    Ok(sniff_bytes(&head, had_id3))
}

/// Names the container whose data starts with `head`.
pub(crate) fn sniff_bytes(head: &[u8], after_id3: bool) -> Option<&'static str> {
    let at = |range: std::ops::Range<usize>| head.get(range);
    match at(0..4)? {
        b"RIFF" | b"RIFX" | b"RF64" | b"BW64" if at(8..12) == Some(b"WAVE") => return Some("wav"),
        b"FORM" if matches!(at(8..12), Some(b"AIFF" | b"AIFC")) => return Some("aiff"),
        b"caff" => return Some("caf"),
        b"fLaC" => return Some("flac"),
        b"OggS" => return Some("ogg"),
        [0x1a, 0x45, 0xdf, 0xa3] => {
            let doc = &head[..head.len().min(64)];
            let webm = doc.windows(4).any(|w| w == b"webm");
            return Some(if webm { "webm" } else { "mkv" });
        }
        _ => {}
    }
    if matches!(
        at(4..8)?,
        b"ftyp" | b"moov" | b"mdat" | b"free" | b"skip" | b"wide"
    ) {
        return Some("mp4");
    }
    // MPEG audio or ADTS: frame headers must chain. At the very start (or right after an ID3
    // tag) two consecutive frames are enough; further in, ask for three so random data does
    // not pass.
    let limit = if after_id3 { head.len() } else { 1 };
    for start in 0..limit.min(head.len()) {
        let needed = if start == 0 { 2 } else { 3 };
        if chained_frames(head, start, needed, mpeg_frame_len) {
            // Layers I, II and III alike: "mp3" is ffmpeg's name for the MPEG audio
            // elementary stream; the codec (mp1, mp2, mp3) tells the layer.
            return Some("mp3");
        }
        if chained_frames(head, start, needed, adts_frame_len) {
            return Some("aac");
        }
    }
    None
}

/// What a file the engine does not read appears to be, from its leading bytes, as a sentence
/// safe to show to the client; `None` when nothing is recognized.
pub(crate) fn describe<R: Read + Seek>(
    file: &mut R,
    file_len: u64,
) -> Result<Option<&'static str>, MediaError> {
    let io = |e| MediaError::io("reading the input", e);
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut head = Vec::with_capacity(1024);
    file.by_ref()
        .take(1024.min(file_len))
        .read_to_end(&mut head)
        .map_err(io)?;
    Ok(describe_bytes(&head))
}

/// [`describe`] on the leading bytes.
pub(crate) fn describe_bytes(head: &[u8]) -> Option<&'static str> {
    const SIGNATURES: &[(&[u8], &str)] = &[
        (b"\x89PNG\r\n\x1a\n", "this is a PNG image, not audio"),
        (&[0xff, 0xd8, 0xff], "this is a JPEG image, not audio"),
        (b"GIF87a", "this is a GIF image, not audio"),
        (b"GIF89a", "this is a GIF image, not audio"),
        (b"%PDF-", "this is a PDF document, not audio"),
        (
            b"MThd",
            "this is a MIDI file (notes, not recorded sound): MIDI is not supported",
        ),
        (
            b"PK\x03\x04",
            "this is a ZIP archive (or an office document), not audio",
        ),
        (b"\x1f\x8b", "this is a gzip archive, not audio"),
        (b"7z\xbc\xaf\x27\x1c", "this is a 7-Zip archive, not audio"),
        (b"Rar!", "this is a RAR archive, not audio"),
        (b"\x7fELF", "this is a program, not audio"),
        (&[0x0b, 0x77], "AC-3 (Dolby Digital) audio is not supported"),
        (&[0x77, 0x0b], "AC-3 (Dolby Digital) audio is not supported"),
        (&[0x7f, 0xfe, 0x80, 0x01], "DTS audio is not supported"),
        (&[0xfe, 0x7f, 0x01, 0x80], "DTS audio is not supported"),
        (&[0x1f, 0xff, 0xe8, 0x00], "DTS audio is not supported"),
        (
            &[0x30, 0x26, 0xb2, 0x75, 0x8e, 0x66, 0xcf, 0x11],
            "Windows Media (WMA/ASF) files are not supported",
        ),
        (b"#!AMR", "AMR audio is not supported"),
        (b"MAC ", "Monkey's Audio (APE) is not supported"),
        (b"wvpk", "WavPack audio is not supported"),
        (b"TTA1", "TTA audio is not supported"),
        (b"MPCK", "Musepack audio is not supported"),
        (b"MP+", "Musepack audio is not supported"),
        (b".RMF", "RealMedia files are not supported"),
        (b".ra\xfd", "RealAudio files are not supported"),
        (b"FLV", "Flash video (FLV) files are not supported"),
        (
            b"#EXTM3U",
            "this is a playlist, not audio: upload the audio file itself",
        ),
        (
            b"[playlist]",
            "this is a playlist, not audio: upload the audio file itself",
        ),
        (
            &[0x00, 0x00, 0x01, 0xba],
            "MPEG program streams (MPG/VOB) are not supported",
        ),
    ];
    if let Some((_, what)) = SIGNATURES.iter().find(|(magic, _)| head.starts_with(magic)) {
        if head.starts_with(&[0x0b, 0x77]) && head.get(5).is_some_and(|b| b >> 3 > 10) {
            return Some("E-AC-3 (Dolby Digital Plus) audio is not supported");
        }
        return Some(what);
    }
    match (head.get(..4), head.get(8..12)) {
        (Some(b"RIFF"), Some(b"WEBP")) => return Some("this is a WebP image, not audio"),
        (Some(b"RIFF"), Some(b"AVI ")) => return Some("AVI files are not supported"),
        _ => {}
    }
    if head.len() >= 189 && head[0] == 0x47 && head[188] == 0x47 {
        return Some("MPEG transport streams are not supported");
    }
    // Text: no control bytes other than whitespace, and valid UTF-8 (a cut last character
    // allowed).
    let text = match std::str::from_utf8(head) {
        Ok(text) => Some(text),
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok(),
        Err(_) => None,
    };
    if let Some(text) = text.filter(|t| !t.is_empty()) {
        if text
            .chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t' | '\x0c'))
        {
            return Some("this is a text file, not audio");
        }
    }
    None
}

fn chained_frames(
    head: &[u8],
    start: usize,
    needed: usize,
    frame_len: fn(&[u8]) -> Option<(usize, u32)>,
) -> bool {
    let mut pos = start;
    let mut first_kind = None;
    for _ in 0..needed {
        let Some((len, kind)) = head.get(pos..).and_then(frame_len) else {
            return false;
        };
        if *first_kind.get_or_insert(kind) != kind {
            return false;
        }
        pos += len;
    }
    true
}

/// Length of the MPEG audio frame whose header starts `bytes`, and a key of the fields that
/// must not change between frames (version, layer, sample rate).
fn mpeg_frame_len(bytes: &[u8]) -> Option<(usize, u32)> {
    let h = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
    if h >> 21 != 0x7ff {
        return None;
    }
    let version = (h >> 19) & 3; // 0: MPEG 2.5, 1: reserved, 2: MPEG 2, 3: MPEG 1
    let layer = (h >> 17) & 3; // 1: III, 2: II, 3: I
    let bitrate_index = ((h >> 12) & 0xf) as usize;
    let rate_index = ((h >> 10) & 3) as usize;
    let padding = ((h >> 9) & 1) as usize;
    if version == 1 || layer == 0 || bitrate_index == 0 || bitrate_index == 15 || rate_index == 3 {
        return None;
    }
    const RATES: [u32; 3] = [44100, 48000, 32000];
    let rate = RATES[rate_index]
        >> match version {
            3 => 0,
            2 => 1,
            _ => 2,
        };
    const V1: [[u32; 15]; 3] = [
        [
            0, 32, 64, 96, 128, 160, 192, 224, 256, 288, 320, 352, 384, 416, 448,
        ],
        [
            0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384,
        ],
        [
            0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
        ],
    ];
    const V2: [[u32; 15]; 2] = [
        [
            0, 32, 48, 56, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256,
        ],
        [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
    ];
    let layer_no = 4 - layer; // 1, 2 or 3
    let kbps = if version == 3 {
        V1[layer_no as usize - 1][bitrate_index]
    } else if layer_no == 1 {
        V2[0][bitrate_index]
    } else {
        V2[1][bitrate_index]
    };
    let bps = kbps as usize * 1000;
    let len = match (layer_no, version) {
        (1, _) => (12 * bps / rate as usize + padding) * 4,
        (3, 2 | 0) => 72 * bps / rate as usize + padding,
        _ => 144 * bps / rate as usize + padding,
    };
    (len >= 4).then_some((len, h & 0xfffe0c00))
}

/// Length of the ADTS (raw AAC) frame whose header starts `bytes`, and a key of its fixed fields.
fn adts_frame_len(bytes: &[u8]) -> Option<(usize, u32)> {
    let b = bytes.get(..7)?;
    if b[0] != 0xff || b[1] & 0xf6 != 0xf0 {
        return None;
    }
    let rate_index = (b[2] >> 2) & 0xf;
    if rate_index > 12 {
        return None;
    }
    let len = (usize::from(b[3] & 3) << 11) | (usize::from(b[4]) << 3) | usize::from(b[5] >> 5);
    (len >= 7).then_some((len, u32::from_be_bytes([b[0], b[1], b[2] & 0xfc, 0])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_containers_by_magic() {
        let mut wav = b"RIFF\0\0\0\0WAVEfmt ".to_vec();
        wav.resize(64, 0);
        assert_eq!(sniff_bytes(&wav, false), Some("wav"));
        assert_eq!(sniff_bytes(b"fLaC\0\0\0\x22", false), Some("flac"));
        assert_eq!(sniff_bytes(b"OggS\0\x02", false), Some("ogg"));
        assert_eq!(sniff_bytes(b"\0\0\0\x20ftypM4A ", false), Some("mp4"));
        assert_eq!(sniff_bytes(b"hello, world, this is text", false), None);
        assert_eq!(sniff_bytes(b"", false), None);
    }

    #[test]
    fn mp3_needs_chained_frames() {
        // MPEG-1 layer III, 128 kbit/s, 44.1 kHz, no padding: 417-byte frames.
        let header = [0xff, 0xfb, 0x90, 0x00];
        let mut data = vec![0u8; 417 * 3];
        for i in 0..3 {
            data[i * 417..i * 417 + 4].copy_from_slice(&header);
        }
        assert_eq!(mpeg_frame_len(&header).unwrap().0, 417);
        assert_eq!(sniff_bytes(&data, false), Some("mp3"));
        // A lone sync word is not enough.
        let mut lone = vec![0u8; 2000];
        lone[..4].copy_from_slice(&header);
        assert_eq!(sniff_bytes(&lone, false), None);
    }

    #[test]
    fn describes_what_is_not_audio() {
        assert_eq!(
            describe_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some("this is a PNG image, not audio")
        );
        assert_eq!(
            describe_bytes(b"%PDF-1.7\n"),
            Some("this is a PDF document, not audio")
        );
        assert!(describe_bytes(b"MThd\0\0\0\x06").unwrap().contains("MIDI"));
        assert!(describe_bytes(&[0x0b, 0x77, 0, 0, 0, 0x40])
            .unwrap()
            .starts_with("AC-3"));
        assert!(describe_bytes(&[0x0b, 0x77, 0, 0, 0, 0x80])
            .unwrap()
            .starts_with("E-AC-3"));
        assert_eq!(
            describe_bytes("hello, wörld\n".as_bytes()),
            Some("this is a text file, not audio")
        );
        assert_eq!(describe_bytes(&[0x00, 0x13, 0x99, 0xfe]), None);
        assert_eq!(describe_bytes(b""), None);
    }

    #[test]
    fn mpeg_layers_i_and_ii_are_recognized() {
        // MPEG-1 layer II, 192 kbit/s, 48 kHz: 576-byte frames.
        let header = [0xff, 0xfd, 0xa4, 0x00];
        let len = mpeg_frame_len(&header).unwrap().0;
        assert_eq!(len, 576);
        let mut data = vec![0u8; len * 3];
        for i in 0..3 {
            data[i * len..i * len + 4].copy_from_slice(&header);
        }
        assert_eq!(sniff_bytes(&data, false), Some("mp3"));
        // MPEG-1 layer I, 384 kbit/s, 48 kHz: 384-byte frames.
        let header = [0xff, 0xff, 0xc4, 0x00];
        let len = mpeg_frame_len(&header).unwrap().0;
        assert_eq!(len, 384);
        let mut data = vec![0u8; len * 3];
        for i in 0..3 {
            data[i * len..i * len + 4].copy_from_slice(&header);
        }
        assert_eq!(sniff_bytes(&data, false), Some("mp3"));
    }
}

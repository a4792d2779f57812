//! Tags (title, artist, album, track, date) and cover art, carried from the input to the
//! output.
//!
//! Reading goes through what symphonia's demuxers collect (ID3v2, Vorbis comments with
//! `METADATA_BLOCK_PICTURE`, FLAC `PICTURE` blocks, MP4 `ilst`, RIFF `INFO`), plus ID3v1 at
//! the end of MP3 files, which symphonia skips. What is kept is bounded before it is copied:
//! each text at most [`MAX_TEXT_BYTES`] (cut at a character boundary), a cover at most
//! [`MAX_COVER_BYTES`] (a larger one is dropped with a warning), and only JPEG or PNG covers,
//! recognized by their content rather than the declared type.
//!
//! Writing is per format, in the encoders: ID3v2.4 for MP3, Vorbis comments and a `PICTURE`
//! block for FLAC, `OpusTags` with a base64 `METADATA_BLOCK_PICTURE` for Opus, a RIFF
//! `LIST`/`INFO` chunk (text only) for WAV. The helpers that build those blocks live here.

use symphonia::core::meta::{MetadataRevision, StandardTagKey, StandardVisualKey, Value};

/// Longest text kept, in bytes.
pub const MAX_TEXT_BYTES: usize = 1024;
/// Largest cover kept, in bytes.
pub const MAX_COVER_BYTES: usize = 16 << 20;

/// A cover picture.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Picture {
    /// `image/jpeg` or `image/png`.
    pub mime: String,
    /// The encoded image.
    pub data: Vec<u8>,
}

/// Track number, with the total when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Track {
    /// The track's number.
    pub number: u32,
    /// The number of tracks on the release.
    pub total: Option<u32>,
}

/// Textual tags and cover art of a file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tags {
    /// Title of the track.
    pub title: Option<String>,
    /// Artist.
    pub artist: Option<String>,
    /// Album.
    pub album: Option<String>,
    /// Track number.
    pub track: Option<Track>,
    /// Date or year, as written in the input.
    pub date: Option<String>,
    /// Front cover (or the first JPEG/PNG picture when none is marked as the front cover).
    pub cover: Option<Picture>,
}

impl Tags {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self == &Tags::default()
    }

    /// These tags with every field `overrides` sets replaced by its value (texts bounded as
    /// read ones are).
    pub fn overridden_by(mut self, overrides: &Tags) -> Tags {
        let text = |t: &Option<String>| t.as_deref().and_then(bounded_text);
        if overrides.title.is_some() {
            self.title = text(&overrides.title);
        }
        if overrides.artist.is_some() {
            self.artist = text(&overrides.artist);
        }
        if overrides.album.is_some() {
            self.album = text(&overrides.album);
        }
        if overrides.track.is_some() {
            self.track = overrides.track;
        }
        if overrides.date.is_some() {
            self.date = text(&overrides.date);
        }
        if overrides.cover.is_some() {
            self.cover = overrides.cover.clone();
        }
        self
    }

    /// Fills the fields still empty from `other`.
    pub(crate) fn fill_from(&mut self, other: Tags) {
        self.title = self.title.take().or(other.title);
        self.artist = self.artist.take().or(other.artist);
        self.album = self.album.take().or(other.album);
        self.track = self.track.or(other.track);
        self.date = self.date.take().or(other.date);
        self.cover = self.cover.take().or(other.cover);
    }

    /// Fills the fields still empty from `revision`.
    pub(crate) fn merge_revision(&mut self, revision: &MetadataRevision) {
        let mut total = None;
        for tag in revision.tags() {
            let Some(key) = tag.std_key else { continue };
            let slot = match key {
                StandardTagKey::TrackTitle => &mut self.title,
                StandardTagKey::Artist => &mut self.artist,
                StandardTagKey::Album => &mut self.album,
                StandardTagKey::Date | StandardTagKey::ReleaseDate => &mut self.date,
                StandardTagKey::TrackNumber => {
                    if self.track.is_none() {
                        self.track = value_text(&tag.value).and_then(|t| parse_track(&t));
                    }
                    continue;
                }
                StandardTagKey::TrackTotal => {
                    total = value_text(&tag.value).and_then(|t| t.trim().parse::<u32>().ok());
                    continue;
                }
                _ => continue,
            };
            if slot.is_none() {
                *slot = value_text(&tag.value);
            }
        }
        if let (Some(track), Some(total)) = (self.track.as_mut(), total) {
            track.total = track.total.or(Some(total));
        }
        if self.cover.is_none() {
            let visuals = revision.visuals();
            let front = visuals
                .iter()
                .filter(|v| v.usage == Some(StandardVisualKey::FrontCover))
                .chain(visuals.iter());
            self.cover = front.filter_map(|v| picture(&v.data)).next();
        }
    }
}

/// A cover from image bytes: `None` (with a warning when it is only too large) unless it is
/// a JPEG or PNG of at most [`MAX_COVER_BYTES`]. The size is checked before anything is
/// copied.
pub(crate) fn picture(data: &[u8]) -> Option<Picture> {
    let mime = image_mime(data)?;
    if data.len() > MAX_COVER_BYTES {
        tracing::warn!(
            bytes = data.len(),
            "dropping a cover larger than {MAX_COVER_BYTES} bytes"
        );
        return None;
    }
    Some(Picture {
        mime: mime.to_string(),
        data: data.to_vec(),
    })
}

/// `image/jpeg` or `image/png` from the image's signature; `None` for anything else.
fn image_mime(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else {
        None
    }
}

/// A tag value as text, cut to [`MAX_TEXT_BYTES`] before it is copied; `None` when empty.
fn value_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => bounded_text(s),
        Value::UnsignedInt(n) => Some(n.to_string()),
        Value::SignedInt(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `text` without surrounding whitespace and NULs, cut to [`MAX_TEXT_BYTES`] at a character
/// boundary; `None` if nothing is left.
pub(crate) fn bounded_text(text: &str) -> Option<String> {
    let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    let mut end = text.len().min(MAX_TEXT_BYTES);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = &text[..end];
    (!text.is_empty()).then(|| text.to_string())
}

/// "3", "3/12" or "03 / 12" → track 3 of 12; a number 0 is no track.
fn parse_track(text: &str) -> Option<Track> {
    let (number, total) = match text.split_once('/') {
        Some((n, t)) => (n, t.trim().parse::<u32>().ok().filter(|t| *t > 0)),
        None => (text, None),
    };
    let number = number.trim().parse::<u32>().ok().filter(|n| *n > 0)?;
    Some(Track { number, total })
}

/// Tags from an ID3v1 tag (the last 128 bytes of an MP3 file, starting `TAG`).
pub(crate) fn id3v1(tail: &[u8; 128]) -> Tags {
    if &tail[..3] != b"TAG" {
        return Tags::default();
    }
    // ISO-8859-1, NUL- or space-padded.
    let field = |range: std::ops::Range<usize>| {
        let text: String = tail[range].iter().map(|&b| char::from(b)).collect();
        bounded_text(&text)
    };
    // ID3v1.1: a zero byte before the last comment byte makes that byte the track number.
    let track = (tail[125] == 0 && tail[126] != 0).then(|| Track {
        number: u32::from(tail[126]),
        total: None,
    });
    Tags {
        title: field(3..33),
        artist: field(33..63),
        album: field(63..93),
        date: field(93..97),
        track,
        cover: None,
    }
}

// ---- Writing ----------------------------------------------------------------------------

/// `KEY=value` Vorbis comments (FLAC, Opus) for `tags`, the cover excluded.
pub(crate) fn vorbis_comments(tags: &Tags) -> Vec<String> {
    let mut comments = Vec::new();
    let mut push = |key: &str, value: &Option<String>| {
        if let Some(value) = value {
            comments.push(format!("{key}={value}"));
        }
    };
    push("TITLE", &tags.title);
    push("ARTIST", &tags.artist);
    push("ALBUM", &tags.album);
    push("DATE", &tags.date);
    if let Some(track) = tags.track {
        comments.push(format!("TRACKNUMBER={}", track.number));
        if let Some(total) = track.total {
            comments.push(format!("TRACKTOTAL={total}"));
        }
    }
    comments
}

/// A Vorbis comment header body (without any framing bit): vendor, then the comments, all
/// lengths little-endian. `extra` comments (a picture) follow the text ones.
pub(crate) fn vorbis_comment_block(vendor: &str, tags: &Tags, extra: &[String]) -> Vec<u8> {
    let comments = vorbis_comments(tags);
    let mut out = Vec::new();
    out.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    out.extend_from_slice(vendor.as_bytes());
    out.extend_from_slice(&((comments.len() + extra.len()) as u32).to_le_bytes());
    for comment in comments.iter().chain(extra) {
        out.extend_from_slice(&(comment.len() as u32).to_le_bytes());
        out.extend_from_slice(comment.as_bytes());
    }
    out
}

/// The body of a FLAC `PICTURE` metadata block (also base64-encoded as Vorbis comment
/// `METADATA_BLOCK_PICTURE`): front cover, no description, dimensions read from the image.
pub(crate) fn flac_picture(picture: &Picture) -> Vec<u8> {
    let (width, height, depth) = image_size(&picture.data).unwrap_or((0, 0, 0));
    let mut out = Vec::with_capacity(32 + picture.mime.len() + picture.data.len());
    out.extend_from_slice(&3u32.to_be_bytes()); // front cover
    out.extend_from_slice(&(picture.mime.len() as u32).to_be_bytes());
    out.extend_from_slice(picture.mime.as_bytes());
    out.extend_from_slice(&0u32.to_be_bytes()); // description
    out.extend_from_slice(&width.to_be_bytes());
    out.extend_from_slice(&height.to_be_bytes());
    out.extend_from_slice(&depth.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes()); // colours (not indexed)
    out.extend_from_slice(&(picture.data.len() as u32).to_be_bytes());
    out.extend_from_slice(&picture.data);
    out
}

/// Width, height and bits per pixel of a PNG or JPEG, from its header.
fn image_size(data: &[u8]) -> Option<(u32, u32, u32)> {
    let be32 = |at: usize| Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?));
    if data.starts_with(b"\x89PNG") && data.get(12..16) == Some(b"IHDR") {
        let bits = u32::from(*data.get(24)?);
        let samples = match data.get(25)? {
            0 => 1,
            2 => 3,
            3 => 1,
            4 => 2,
            _ => 4,
        };
        return Some((be32(16)?, be32(20)?, bits * samples));
    }
    // JPEG: walk the segments to the first start-of-frame.
    let mut at = 2;
    while at + 4 <= data.len() {
        if data[at] != 0xff {
            return None;
        }
        let marker = data[at + 1];
        let len = usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]]));
        if matches!(marker, 0xc0..=0xcf) && !matches!(marker, 0xc4 | 0xc8 | 0xcc) {
            let sof = data.get(at + 4..at + 10)?;
            let height = u32::from(u16::from_be_bytes([sof[1], sof[2]]));
            let width = u32::from(u16::from_be_bytes([sof[3], sof[4]]));
            return Some((width, height, u32::from(sof[0]) * u32::from(sof[5])));
        }
        at += 2 + len;
    }
    None
}

/// An ID3v2.4 tag (TIT2, TPE1, TALB, TRCK, TDRC, APIC front cover), or nothing when `tags` is
/// empty. Text is UTF-8; sizes are synchsafe; no unsynchronisation.
pub(crate) fn id3v2(tags: &Tags) -> Vec<u8> {
    let mut frames = Vec::new();
    let mut text_frame = |id: &[u8; 4], text: &str| {
        let mut body = vec![3u8]; // UTF-8
        body.extend_from_slice(text.as_bytes());
        id3_frame(&mut frames, id, &body);
    };
    if let Some(title) = &tags.title {
        text_frame(b"TIT2", title);
    }
    if let Some(artist) = &tags.artist {
        text_frame(b"TPE1", artist);
    }
    if let Some(album) = &tags.album {
        text_frame(b"TALB", album);
    }
    if let Some(track) = tags.track {
        let text = match track.total {
            Some(total) => format!("{}/{total}", track.number),
            None => track.number.to_string(),
        };
        text_frame(b"TRCK", &text);
    }
    if let Some(date) = &tags.date {
        text_frame(b"TDRC", date);
    }
    if let Some(cover) = &tags.cover {
        let mut body = Vec::with_capacity(cover.data.len() + 32);
        body.push(3); // UTF-8 description
        body.extend_from_slice(cover.mime.as_bytes());
        body.push(0);
        body.push(3); // front cover
        body.push(0); // empty description
        body.extend_from_slice(&cover.data);
        id3_frame(&mut frames, b"APIC", &body);
    }
    if frames.is_empty() {
        return frames;
    }
    let mut tag = Vec::with_capacity(10 + frames.len());
    tag.extend_from_slice(b"ID3\x04\x00\x00");
    tag.extend_from_slice(&synchsafe(frames.len() as u32));
    tag.extend_from_slice(&frames);
    tag
}

fn id3_frame(out: &mut Vec<u8>, id: &[u8; 4], body: &[u8]) {
    out.extend_from_slice(id);
    out.extend_from_slice(&synchsafe(body.len() as u32));
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(body);
}

/// A 28-bit number as four 7-bit bytes (ID3v2 sizes).
fn synchsafe(n: u32) -> [u8; 4] {
    [
        ((n >> 21) & 0x7f) as u8,
        ((n >> 14) & 0x7f) as u8,
        ((n >> 7) & 0x7f) as u8,
        (n & 0x7f) as u8,
    ]
}

/// A RIFF `LIST` chunk of type `INFO` (INAM, IART, IPRD, IPRT, ICRD), or nothing when there
/// is no text to write. Each string is NUL-terminated and each chunk padded to an even size.
pub(crate) fn riff_info(tags: &Tags) -> Vec<u8> {
    let mut body = Vec::new();
    let mut chunk = |id: &[u8; 4], text: &str| {
        let len = text.len() + 1;
        body.extend_from_slice(id);
        body.extend_from_slice(&(len as u32).to_le_bytes());
        body.extend_from_slice(text.as_bytes());
        body.push(0);
        if len % 2 == 1 {
            body.push(0);
        }
    };
    if let Some(title) = &tags.title {
        chunk(b"INAM", title);
    }
    if let Some(artist) = &tags.artist {
        chunk(b"IART", artist);
    }
    if let Some(album) = &tags.album {
        chunk(b"IPRD", album);
    }
    if let Some(track) = tags.track {
        chunk(b"IPRT", &track.number.to_string());
    }
    if let Some(date) = &tags.date {
        chunk(b"ICRD", date);
    }
    if body.is_empty() {
        return body;
    }
    let mut list = Vec::with_capacity(12 + body.len());
    list.extend_from_slice(b"LIST");
    list.extend_from_slice(&((4 + body.len()) as u32).to_le_bytes());
    list.extend_from_slice(b"INFO");
    list.extend_from_slice(&body);
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_bounded_at_a_char_boundary() {
        let long = "é".repeat(1000); // 2000 bytes
        let cut = bounded_text(&long).unwrap();
        assert!(cut.len() <= MAX_TEXT_BYTES);
        assert_eq!(cut.len(), 1024);
        let odd = format!("a{}", "é".repeat(1000));
        assert_eq!(bounded_text(&odd).unwrap().len(), 1023);
        assert_eq!(bounded_text(" \0 "), None);
        assert_eq!(bounded_text(" x\0").as_deref(), Some("x"));
    }

    #[test]
    fn covers_must_be_small_jpeg_or_png() {
        assert!(picture(b"GIF89a....").is_none());
        let png = picture(b"\x89PNG\r\n\x1a\nrest").unwrap();
        assert_eq!(png.mime, "image/png");
        assert_eq!(
            picture(&[0xff, 0xd8, 0xff, 0xe0]).unwrap().mime,
            "image/jpeg"
        );
        let mut huge = vec![0u8; MAX_COVER_BYTES + 1];
        huge[..3].copy_from_slice(&[0xff, 0xd8, 0xff]);
        assert!(picture(&huge).is_none());
    }

    #[test]
    fn track_numbers_parse() {
        assert_eq!(
            parse_track("3/12"),
            Some(Track {
                number: 3,
                total: Some(12)
            })
        );
        assert_eq!(
            parse_track(" 07 "),
            Some(Track {
                number: 7,
                total: None
            })
        );
        assert_eq!(parse_track("0"), None);
        assert_eq!(parse_track("x"), None);
    }

    #[test]
    fn id3v1_is_read() {
        let mut tail = [0u8; 128];
        tail[..3].copy_from_slice(b"TAG");
        tail[3..8].copy_from_slice(b"Title");
        tail[33..39].copy_from_slice(b"Artist");
        tail[93..97].copy_from_slice(b"1999");
        tail[126] = 4;
        let tags = id3v1(&tail);
        assert_eq!(tags.title.as_deref(), Some("Title"));
        assert_eq!(tags.artist.as_deref(), Some("Artist"));
        assert_eq!(tags.album, None);
        assert_eq!(tags.date.as_deref(), Some("1999"));
        assert_eq!(tags.track.unwrap().number, 4);
    }

    #[test]
    fn id3v2_layout() {
        let tags = Tags {
            title: Some("Hi".into()),
            ..Default::default()
        };
        let tag = id3v2(&tags);
        assert_eq!(&tag[..5], b"ID3\x04\x00");
        assert_eq!(tag.len(), 10 + 10 + 3);
        assert_eq!(&tag[10..14], b"TIT2");
        assert_eq!(&tag[20..], b"\x03Hi");
        assert!(id3v2(&Tags::default()).is_empty());
    }

    #[test]
    fn png_size_is_read() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&640u32.to_be_bytes());
        png.extend_from_slice(&480u32.to_be_bytes());
        png.extend_from_slice(&[8, 2, 0, 0, 0]);
        assert_eq!(image_size(&png), Some((640, 480, 24)));
    }
}

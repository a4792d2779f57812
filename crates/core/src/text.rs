//! Small helpers for messages people read.

/// `1 job`, `2 jobs`, `0 jobs`: a count with the noun in the number it needs.
pub fn count(n: impl Into<f64> + Copy + std::fmt::Display, one: &str, many: &str) -> String {
    let noun = if n.into() == 1.0 { one } else { many };
    format!("{n} {noun}")
}

/// `%XX` escapes decoded (invalid UTF-8 replaced by U+FFFD), and `+` as a space when
/// `plus_is_space` (query strings); everything else kept as it is.
pub fn percent_decoded(text: &str, plus_is_space: bool) -> String {
    let bytes = text.as_bytes();
    let hex = |i: usize| {
        bytes
            .get(i)
            .and_then(|&b| (b as char).to_digit(16))
            .map(|d| d as u8)
    };
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push(high * 16 + low);
                i += 3;
            }
            (b'+', _, _) if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `text` as one URL path segment: every byte but the unreserved ones (`A-Z a-z 0-9 - . _ ~`)
/// percent-encoded.
pub fn path_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{count, path_segment, percent_decoded};

    #[test]
    fn path_segments_round_trip() {
        for text in ["acme", "Acme Corp/EU", "é ü", "100%"] {
            let segment = path_segment(text);
            assert!(!segment.contains(['/', ' ']), "{segment}");
            assert_eq!(percent_decoded(&segment, false), text);
        }
    }

    #[test]
    fn percent_escapes_decode() {
        assert_eq!(percent_decoded("My%20Song+1%2", false), "My Song+1%2");
        assert_eq!(percent_decoded("My%20Song+1", true), "My Song 1");
        assert_eq!(percent_decoded("%ff", false), "\u{fffd}");
    }

    #[test]
    fn nouns_agree_with_their_count() {
        assert_eq!(count(1u32, "job", "jobs"), "1 job");
        assert_eq!(count(0u32, "job", "jobs"), "0 jobs");
        assert_eq!(count(3u16, "channel", "channels"), "3 channels");
        assert_eq!(count(1.0, "second", "seconds"), "1 second");
    }
}

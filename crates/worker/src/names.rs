//! Names: of the files the child writes, and the download names of artifacts, made from
//! what users and sites say (an upload's file name, a link, a title). A name made here is shown
//! in `Content-Disposition`, never used as a path.

/// `base.ext`, unless `base` already ends in `.ext`.
pub(crate) fn download_name(base: &str, ext: &str) -> String {
    let suffix = format!(".{ext}");
    if base.len() > suffix.len() && base.to_ascii_lowercase().ends_with(&suffix) {
        base.to_owned()
    } else {
        format!("{base}{suffix}")
    }
}

/// A plain file name: no directories, not `.`/`..`.
pub(crate) fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
}

/// A download name as the child builds it from a validated `output.name`.
pub(crate) fn valid_download_name(name: &str) -> bool {
    let ok_char = |c: char| c.is_alphanumeric() || " -_.()".contains(c);
    !name.is_empty()
        && name.chars().count() <= 160
        && name.chars().all(ok_char)
        && !name.starts_with('.')
}

/// The base of a download name from a file name: without its extension (`my song.wav` →
/// `my song`), made safe like a title.
pub(crate) fn name_from_file(file: &str) -> Option<String> {
    let base = match file.rsplit_once('.') {
        Some((stem, ext))
            if !stem.is_empty()
                && (1..=5).contains(&ext.len())
                && ext.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            stem
        }
        _ => file,
    };
    name_from_title(base)
}

/// The base of a download name from a direct link: its last path segment, percent-decoded,
/// without its extension (`https://host/music/My%20Song.mp3?x=1` → `My Song`).
pub(crate) fn name_from_url(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = rest.split(['?', '#']).next().unwrap_or("");
    // Nothing after the host: the link names no file.
    let (_, path) = path.split_once('/')?;
    let segment = path.rsplit('/').next().unwrap_or("");
    name_from_file(&audiomill_core::text::percent_decoded(segment, false))
}

/// A download name from a title: the characters an `output.name` may hold, others turned to
/// spaces, at most 100 characters; `None` when nothing usable is left.
pub(crate) fn name_from_title(title: &str) -> Option<String> {
    let kept: String = title
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || "-_.()".contains(c) {
                c
            } else {
                ' '
            }
        })
        .collect();
    let words: Vec<&str> = kept.split_whitespace().collect();
    let mut name: String = words.join(" ").chars().take(100).collect();
    name = name.trim_start_matches(['.', ' ']).trim_end().to_owned();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_titles() {
        assert_eq!(
            name_from_title("Artist - Song (Live) [HD] | 2024").as_deref(),
            Some("Artist - Song (Live) HD 2024")
        );
        assert_eq!(
            name_from_title("../../etc/passwd").as_deref(),
            Some("etc passwd")
        );
        assert_eq!(name_from_title("   ///   "), None);
        assert_eq!(
            name_from_title(&"é".repeat(300)).map(|n| n.chars().count()),
            Some(100)
        );
    }

    #[test]
    fn names_from_files_and_links() {
        assert_eq!(name_from_file("my song.wav").as_deref(), Some("my song"));
        assert_eq!(name_from_file("take.2.flac").as_deref(), Some("take.2"));
        assert_eq!(
            name_from_file("song-vocals.flac").as_deref(),
            Some("song-vocals")
        );
        assert_eq!(
            name_from_file("no extension").as_deref(),
            Some("no extension")
        );
        assert_eq!(name_from_file(".wav").as_deref(), Some("wav"));
        assert_eq!(name_from_file("a.b c"), Some("a.b c".into()));
        assert_eq!(
            name_from_url("https://cdn.example/music/My%20Song%20%28Live%29.mp3?sig=1#t")
                .as_deref(),
            Some("My Song (Live)")
        );
        assert_eq!(
            name_from_url("http://127.0.0.1:8080/a.wav").as_deref(),
            Some("a")
        );
        assert_eq!(name_from_url("https://host.example/"), None);
        assert_eq!(name_from_url("https://host.example"), None);
        assert_eq!(
            name_from_url("https://host.example/%2e%2e%2fetc%2fpasswd").as_deref(),
            Some("etc passwd")
        );
        assert_eq!(
            name_from_url("https://host.example/%ff%fe.mp3").as_deref(),
            None
        );
    }

    #[test]
    fn download_names() {
        assert_eq!(download_name("output", "mp3"), "output.mp3");
        assert_eq!(download_name("song.MP3", "mp3"), "song.MP3");
        assert_eq!(download_name("song.wav", "mp3"), "song.wav.mp3");
        assert_eq!(
            download_name("my (live) take", "json"),
            "my (live) take.json"
        );
    }

    #[test]
    fn plain_and_download_names() {
        assert!(plain_file_name("output.mp3"));
        for bad in ["", ".", "..", "a/b", "../a", "a\\b", "a\0b"] {
            assert!(!plain_file_name(bad), "{bad:?}");
        }
        assert!(valid_download_name("my song (live).mp3"));
        for bad in ["", ".hidden", "a/b.mp3", "a\"b", "a\r\nb", &"x".repeat(161)] {
            assert!(!valid_download_name(bad), "{bad:?}");
        }
    }
}

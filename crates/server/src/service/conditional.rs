//! Conditional requests on files (RFC 9110 §13): `ETag` and `Last-Modified` validators, and
//! `If-Match`, `If-Unmodified-Since`, `If-None-Match`, `If-Modified-Since` and `If-Range`
//! evaluated in the order the RFC gives.
//!
//! Artifacts never change once written, so an artifact's id is a strong validator of its
//! bytes: the `ETag` is the id, quoted, and `Last-Modified` is when the job wrote it.

use axum::http::{header, HeaderMap, HeaderValue};
use std::time::SystemTime;

/// The validators of one file.
#[derive(Debug, Clone)]
pub struct Validators {
    /// The entity tag, quoted (`"art_…"`).
    pub etag: String,
    /// When the file was written, to the second (HTTP dates have no finer precision).
    pub last_modified: SystemTime,
}

/// What the preconditions of a request decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send the file; `honor_range` says whether a `Range` header may be applied (an
    /// `If-Range` that does not match asks for the whole file).
    Send { honor_range: bool },
    /// `304 Not Modified`: the client's copy is current.
    NotModified,
    /// `412 Precondition Failed`.
    Failed,
}

impl Validators {
    /// Validators of a file with this tag, written at `written` (cut to whole seconds).
    pub fn new(tag: &str, written: SystemTime) -> Self {
        let secs = written
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Self {
            etag: format!("\"{tag}\""),
            last_modified: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs),
        }
    }

    /// Puts `ETag` and `Last-Modified` on a response's headers.
    pub fn write(&self, headers: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_str(&self.etag) {
            headers.insert(header::ETAG, v);
        }
        if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(self.last_modified)) {
            headers.insert(header::LAST_MODIFIED, v);
        }
    }

    /// Evaluates the request's preconditions for a GET or HEAD (RFC 9110 §13.2.2).
    pub fn evaluate(&self, request: &HeaderMap) -> Decision {
        let text = |name| request.get(name).and_then(|v| v.to_str().ok());
        let date = |name| text(name).and_then(|t| httpdate::parse_http_date(t).ok());
        // 1-2: the client's state must still be the server's.
        if let Some(list) = text(header::IF_MATCH) {
            if !self.matches(list, Comparison::Strong) {
                return Decision::Failed;
            }
        } else if let Some(since) = date(header::IF_UNMODIFIED_SINCE) {
            if self.last_modified > since {
                return Decision::Failed;
            }
        }
        // 3-4: the client's copy may already be current.
        if let Some(list) = text(header::IF_NONE_MATCH) {
            if self.matches(list, Comparison::Weak) {
                return Decision::NotModified;
            }
        } else if let Some(since) = date(header::IF_MODIFIED_SINCE) {
            if self.last_modified <= since {
                return Decision::NotModified;
            }
        }
        // 5: a range of a representation the client no longer has would corrupt its copy.
        let honor_range = match text(header::IF_RANGE) {
            None => true,
            Some(value) if value.trim_start().starts_with(['"', 'W']) => {
                // Only a strong tag can validate a range; a weak one never matches here.
                value.trim() == self.etag
            }
            Some(value) => {
                httpdate::parse_http_date(value).is_ok_and(|date| date == self.last_modified)
            }
        };
        Decision::Send { honor_range }
    }

    /// Whether a list of entity tags (or `*`) matches ours.
    fn matches(&self, list: &str, comparison: Comparison) -> bool {
        let list = list.trim();
        if list == "*" {
            return true;
        }
        list.split(',')
            .map(str::trim)
            .any(|tag| match tag.strip_prefix("W/") {
                Some(weak) => comparison == Comparison::Weak && weak == self.etag,
                None => tag == self.etag,
            })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Strong,
    Weak,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn validators() -> Validators {
        Validators::new(
            "art_x",
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_250),
        )
    }

    fn decide(headers: &[(&'static str, &str)]) -> Decision {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        validators().evaluate(&map)
    }

    const WRITTEN: &str = "Tue, 14 Nov 2023 22:13:20 GMT";
    const BEFORE: &str = "Tue, 14 Nov 2023 22:13:19 GMT";
    const SEND: Decision = Decision::Send { honor_range: true };

    #[test]
    fn validators_are_the_id_and_the_second_written() {
        let mut headers = HeaderMap::new();
        validators().write(&mut headers);
        assert_eq!(headers[header::ETAG], "\"art_x\"");
        assert_eq!(headers[header::LAST_MODIFIED], WRITTEN);
    }

    #[test]
    fn preconditions_follow_rfc_9110() {
        assert_eq!(decide(&[]), SEND);
        assert_eq!(
            decide(&[("if-none-match", "\"art_x\"")]),
            Decision::NotModified
        );
        assert_eq!(
            decide(&[("if-none-match", "W/\"art_x\"")]),
            Decision::NotModified
        );
        assert_eq!(
            decide(&[("if-none-match", "\"a\", \"art_x\"")]),
            Decision::NotModified
        );
        assert_eq!(decide(&[("if-none-match", "*")]), Decision::NotModified);
        assert_eq!(decide(&[("if-none-match", "\"other\"")]), SEND);
        assert_eq!(
            decide(&[("if-modified-since", WRITTEN)]),
            Decision::NotModified
        );
        assert_eq!(decide(&[("if-modified-since", BEFORE)]), SEND);
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(
            decide(&[
                ("if-none-match", "\"other\""),
                ("if-modified-since", WRITTEN)
            ]),
            SEND
        );
        assert_eq!(decide(&[("if-match", "\"art_x\"")]), SEND);
        assert_eq!(decide(&[("if-match", "W/\"art_x\"")]), Decision::Failed);
        assert_eq!(decide(&[("if-match", "\"other\"")]), Decision::Failed);
        assert_eq!(decide(&[("if-unmodified-since", BEFORE)]), Decision::Failed);
        assert_eq!(decide(&[("if-unmodified-since", WRITTEN)]), SEND);
        // An unreadable date is ignored, as the RFC says.
        assert_eq!(decide(&[("if-modified-since", "yesterday")]), SEND);
        // The obsolete date forms are read too.
        assert_eq!(
            decide(&[("if-modified-since", "Tuesday, 14-Nov-23 22:13:20 GMT")]),
            Decision::NotModified
        );
        assert_eq!(
            decide(&[("if-modified-since", "Tue Nov 14 22:13:20 2023")]),
            Decision::NotModified
        );
    }

    #[test]
    fn if_range_keeps_or_drops_the_range() {
        let whole = Decision::Send { honor_range: false };
        assert_eq!(decide(&[("if-range", "\"art_x\"")]), SEND);
        assert_eq!(decide(&[("if-range", "\"other\"")]), whole);
        assert_eq!(decide(&[("if-range", "W/\"art_x\"")]), whole);
        assert_eq!(decide(&[("if-range", WRITTEN)]), SEND);
        assert_eq!(decide(&[("if-range", BEFORE)]), whole);
    }
}

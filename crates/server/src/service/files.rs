//! Serving artifacts: content type, download name and byte ranges.

use audiomill_blob::BlobKey;
use audiomill_core::ArtifactId;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::auth::Tenant;
use crate::service::conditional::{Decision, Validators};
use crate::{AppError, AppState};

/// A single byte range, resolved against the file size (inclusive end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

/// What a `Range` header asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send the whole file (RFC 9110 says to ignore what we cannot parse,
    /// and we answer multi-range requests with the whole file too).
    Full,
    /// One satisfiable range.
    Partial(ByteRange),
    /// A well-formed range entirely outside the file.
    Unsatisfiable,
}

/// Parses a `Range` header for a file of `size` bytes.
pub fn parse_range(header: Option<&str>, size: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let parse = |s: &str| s.trim().parse::<u64>().ok();
    let range = match (first.trim().is_empty(), last.trim().is_empty()) {
        // `bytes=-N`: the last N bytes.
        (true, false) => match parse(last) {
            Some(0) => return RangeRequest::Unsatisfiable,
            Some(n) if size > 0 => ByteRange {
                start: size.saturating_sub(n),
                end: size - 1,
            },
            Some(_) => return RangeRequest::Unsatisfiable,
            None => return RangeRequest::Full,
        },
        // `bytes=N-`: from N to the end.
        (false, true) => match parse(first) {
            Some(start) => ByteRange {
                start,
                end: size.saturating_sub(1),
            },
            None => return RangeRequest::Full,
        },
        (false, false) => match (parse(first), parse(last)) {
            (Some(start), Some(end)) if start <= end => ByteRange {
                start,
                end: end.min(size.saturating_sub(1)),
            },
            _ => return RangeRequest::Full,
        },
        (true, true) => return RangeRequest::Full,
    };
    if size == 0 || range.start >= size {
        RangeRequest::Unsatisfiable
    } else {
        RangeRequest::Partial(range)
    }
}

/// `Content-Disposition` for a download name: an ASCII fallback plus the exact UTF-8 name.
pub fn content_disposition(name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// Streams an artifact, honouring a single byte range and conditional requests (`ETag`,
/// `Last-Modified`: `304` for a current copy, `412` for a failed `If-Match`).
pub async fn download(
    state: &AppState,
    tenant: Tenant,
    id: ArtifactId,
    headers: &HeaderMap,
) -> Result<Response, AppError> {
    let artifact = state
        .store()
        .get_artifact(tenant.account, id)
        .await?
        .ok_or_else(|| AppError::not_found("file"))?;
    let key = BlobKey::from_stored(&artifact.blob_key)
        .ok_or_else(|| AppError::internal(format!("invalid blob key on {}", artifact.id)))?;
    let validators = Validators::new(&artifact.id.to_string(), artifact.created_at.into());
    let honor_range = match validators.evaluate(headers) {
        Decision::Send { honor_range } => honor_range,
        Decision::NotModified => {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            let h = response.headers_mut();
            validators.write(h);
            h.insert(header::CACHE_CONTROL, cache_control());
            return Ok(response);
        }
        Decision::Failed => {
            return Err(AppError::new(
                StatusCode::PRECONDITION_FAILED,
                "precondition_failed",
                "the file does not match the request's If-Match or If-Unmodified-Since",
            ))
        }
    };
    let size = state.blob().size(&key).await?;
    let range_header = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| honor_range);
    let (status, range) = match parse_range(range_header, size) {
        RangeRequest::Full => (StatusCode::OK, None),
        RangeRequest::Partial(r) => (StatusCode::PARTIAL_CONTENT, Some(r)),
        RangeRequest::Unsatisfiable => return Err(AppError::range_not_satisfiable(size)),
    };
    let (offset, len) = match range {
        Some(r) => (r.start, r.end - r.start + 1),
        None => (0, size),
    };
    let reader = state.blob().read_range(&key, offset, len).await?;
    let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(reader));
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    let content_type = HeaderValue::from_str(&artifact.content_type)
        .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_DISPOSITION,
        content_disposition(&artifact.name),
    );
    h.insert(header::CACHE_CONTROL, cache_control());
    validators.write(h);
    if let Some(r) = range {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {}-{}/{size}", r.start, r.end)) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    Ok(response)
}

/// Files are private to their account; a browser may keep them an hour.
fn cache_control() -> HeaderValue {
    HeaderValue::from_static("private, max-age=3600")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let p = |s, size| parse_range(Some(s), size);
        assert_eq!(
            p("bytes=0-9", 100),
            RangeRequest::Partial(ByteRange { start: 0, end: 9 })
        );
        assert_eq!(
            p("bytes=90-", 100),
            RangeRequest::Partial(ByteRange { start: 90, end: 99 })
        );
        assert_eq!(
            p("bytes=-10", 100),
            RangeRequest::Partial(ByteRange { start: 90, end: 99 })
        );
        assert_eq!(
            p("bytes=-500", 100),
            RangeRequest::Partial(ByteRange { start: 0, end: 99 })
        );
        assert_eq!(
            p("bytes=50-500", 100),
            RangeRequest::Partial(ByteRange { start: 50, end: 99 })
        );
        assert_eq!(p("bytes=100-", 100), RangeRequest::Unsatisfiable);
        assert_eq!(p("bytes=-0", 100), RangeRequest::Unsatisfiable);
        assert_eq!(p("bytes=9-0", 100), RangeRequest::Full);
        assert_eq!(p("bytes=0-1,5-6", 100), RangeRequest::Full);
        assert_eq!(p("items=0-1", 100), RangeRequest::Full);
        assert_eq!(p("bytes=abc", 100), RangeRequest::Full);
        assert_eq!(parse_range(None, 100), RangeRequest::Full);
    }

    #[test]
    fn disposition_is_safe() {
        let v = content_disposition("my \"song\".mp3");
        assert_eq!(
            v.to_str().unwrap(),
            "attachment; filename=\"my _song_.mp3\"; filename*=UTF-8''my%20%22song%22.mp3"
        );
        assert!(content_disposition("Beyoncé.mp3")
            .to_str()
            .unwrap()
            .contains("Beyonc%C3%A9.mp3"));
    }
}

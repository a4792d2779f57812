//! URL inputs: the link a job downloads its input from.
//!
//! Core only checks the shape of the text (an `http`/`https` URL of bounded length with no
//! whitespace or control characters), so that a stored job always holds something a fetcher
//! can be handed. Whether the URL may be fetched at all (its host, port, the addresses its
//! name resolves to) is the outbound policy's decision, made by the server before the job is
//! accepted and again by the worker at every connection (`audiomill-net`).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Longest URL accepted, in bytes (the same bound as the outbound policy's).
pub const MAX_INPUT_URL_BYTES: usize = 2048;

/// An `http`/`https` URL given as a job's input.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "https://www.youtube.com/watch?v=dQw4w9WgXcQ")]
pub struct InputUrl(String);

/// Why a URL input was refused by its shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputUrlError {
    #[error("the url is longer than {MAX_INPUT_URL_BYTES} bytes")]
    TooLong,
    #[error("the url must start with http:// or https://")]
    Scheme,
    #[error("the url contains whitespace or control characters")]
    Characters,
}

impl InputUrl {
    /// Checks the shape of `text`.
    pub fn parse(text: &str) -> Result<Self, InputUrlError> {
        if text.len() > MAX_INPUT_URL_BYTES {
            return Err(InputUrlError::TooLong);
        }
        let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
        if !(lower.starts_with("http://") || lower.starts_with("https://")) {
            return Err(InputUrlError::Scheme);
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InputUrlError::Characters);
        }
        Ok(Self(text.to_owned()))
    }

    /// The URL text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for InputUrl {
    type Error = InputUrlError;
    fn try_from(text: String) -> Result<Self, InputUrlError> {
        Self::parse(&text)
    }
}

impl From<InputUrl> for String {
    fn from(url: InputUrl) -> String {
        url.0
    }
}

impl std::fmt::Display for InputUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        assert!(InputUrl::parse("https://example.com/a.mp3").is_ok());
        assert!(InputUrl::parse("HTTP://example.com/").is_ok());
        assert_eq!(InputUrl::parse("ftp://x/"), Err(InputUrlError::Scheme));
        assert_eq!(
            InputUrl::parse("file:///etc/passwd"),
            Err(InputUrlError::Scheme)
        );
        assert_eq!(InputUrl::parse("http"), Err(InputUrlError::Scheme));
        assert_eq!(
            InputUrl::parse("http://a/\nb"),
            Err(InputUrlError::Characters)
        );
        let long = format!("http://a/{}", "x".repeat(MAX_INPUT_URL_BYTES));
        assert_eq!(InputUrl::parse(&long), Err(InputUrlError::TooLong));
        // Multi-byte text is cut safely when the scheme is looked at.
        assert_eq!(InputUrl::parse("ééééé"), Err(InputUrlError::Scheme));
    }
}

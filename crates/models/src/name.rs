//! Model names: the only user input that ever becomes a path component, so they are checked
//! here, once, and carried as [`ModelName`] afterwards.

use crate::error::{ModelsError, Result};

/// Longest model name.
const MAX_NAME_LEN: usize = 64;

/// A name that matched `^[a-z0-9][a-z0-9_.-]{0,63}$`: safe as a directory and file name
/// (no separator, no `..`, no leading dot that would hide it or clash with staging
/// directories).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelName(String);

impl ModelName {
    /// Checks `name`.
    pub fn parse(name: &str) -> Result<ModelName> {
        if is_valid_name(name) {
            Ok(ModelName(name.to_owned()))
        } else {
            Err(ModelsError::InvalidName {
                name: name.to_owned(),
            })
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ModelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `name` matches `^[a-z0-9][a-z0-9_.-]{0,63}$`.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    match bytes.first() {
        Some(first) if first.is_ascii_lowercase() || first.is_ascii_digit() => {}
        _ => return false,
    }
    bytes.len() <= MAX_NAME_LEN
        && bytes.iter().all(|&b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.' || b == b'-'
        })
}

/// Whether a checkpoint file name can be used as is in a model directory: a plain
/// `<signature>.th` or `<signature>-<hex checksum>.th` that `resolve_signature` of the engine
/// will find (and whose checksum it will verify).
pub(crate) fn is_safe_checkpoint_name(file_name: &str) -> bool {
    let Some(stem) = file_name.strip_suffix(".th") else {
        return false;
    };
    if stem.is_empty()
        || stem.starts_with('.')
        || stem.len() > 200
        || !stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
    {
        return false;
    }
    match stem.rsplit_once('-') {
        None => true,
        Some((signature, checksum)) => !signature.is_empty() && is_hex_checksum(checksum),
    }
}

/// Whether `s` is a non-empty lowercase hex string (a checksum in a file name).
pub(crate) fn is_hex_checksum(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `(signature, checksum)` of a safe checkpoint file name.
pub(crate) fn split_checkpoint_name(file_name: &str) -> (&str, Option<&str>) {
    let stem = file_name.strip_suffix(".th").unwrap_or(file_name);
    match stem.rsplit_once('-') {
        Some((signature, checksum)) => (signature, Some(checksum)),
        None => (stem, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "htdemucs",
            "htdemucs_6s",
            "a",
            "0",
            "my-model.v2",
            &"a".repeat(64),
        ] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "Htdemucs",
            "../x",
            "x/y",
            ".x",
            "-x",
            "_x",
            "a b",
            "é",
            &"a".repeat(65),
            "x\0",
        ] {
            assert!(!is_valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn checkpoint_names() {
        assert!(is_safe_checkpoint_name("955717e8-8726e21a.th"));
        assert!(is_safe_checkpoint_name("tiny0001.th"));
        assert!(!is_safe_checkpoint_name("my-model.th"));
        assert!(!is_safe_checkpoint_name("../x.th"));
        assert!(!is_safe_checkpoint_name(".th"));
        assert!(!is_safe_checkpoint_name("x.yaml"));
        assert_eq!(
            split_checkpoint_name("955717e8-8726e21a.th"),
            ("955717e8", Some("8726e21a"))
        );
    }
}

//! JSON parsed at the edge, with errors written for people.
//!
//! serde's messages are written for Rust programmers: `invalid type: string "x", expected u32
//! at line 1 column 42`, `invalid type: map, expected struct Normalize`. Clients of the API and
//! users of the CLI see these, so [`from_slice`] and [`from_value`] parse with the path of the
//! field that failed (`options.normalize.target_lufs`) and rewrite serde's wording: Rust type
//! names become what a JSON author writes (a whole number, a number, an object, a list), and
//! parser positions are dropped (the path says where). Messages our own validation writes
//! (`bitrate 99 is not an MP3 bit rate …`) pass through unchanged.

use serde::de::DeserializeOwned;

/// Why a JSON document did not parse: where, and what was wrong. Safe to show to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.sentence())]
pub struct JsonError {
    /// The dotted path of the field that failed (`options.normalize`, `input`, `stems[2]`);
    /// empty for the document itself.
    pub path: String,
    /// What was wrong there.
    pub message: String,
}

impl JsonError {
    /// The error under a prefix: `options` + `normalize.target_lufs`.
    pub fn within(mut self, prefix: &str) -> Self {
        self.path = match self.path.as_str() {
            "" => prefix.to_owned(),
            path if path.starts_with('[') => format!("{prefix}{path}"),
            path => format!("{prefix}.{path}"),
        };
        self
    }

    fn sentence(&self) -> String {
        if self.path.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", self.path, self.message)
        }
    }
}

/// Parses JSON text into `T`.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(readable)?;
    deserializer.end().map_err(|e| JsonError {
        path: String::new(),
        message: syntax_message(&e),
    })?;
    Ok(value)
}

/// Parses a JSON value into `T`.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, JsonError> {
    serde_path_to_error::deserialize(value).map_err(readable)
}

fn readable(e: serde_path_to_error::Error<serde_json::Error>) -> JsonError {
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let inner = e.into_inner();
    let (path, message) = match inner.classify() {
        serde_json::error::Category::Data => (path, data_message(&without_position(&inner))),
        // Broken text has no field to name (the path reads `?`).
        _ => (String::new(), syntax_message(&inner)),
    };
    // The path of an unknown field ends in the field itself, which the message names: the
    // error belongs to the object holding it.
    let path = if message.starts_with("unknown field ") {
        match path.rfind(['.', '[']) {
            Some(at) => path[..at].to_owned(),
            None => String::new(),
        }
    } else {
        path
    };
    JsonError { path, message }
}

/// The text of a syntax error, without its position.
fn syntax_message(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Eof => "the JSON text ends too early".into(),
        serde_json::error::Category::Io => "the JSON text could not be read".into(),
        _ => format!("not valid JSON ({})", without_position(e)),
    }
}

/// serde_json's message without ` at line L column C`.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(at) if text[at..].contains(" column ") => text[..at].to_owned(),
        _ => text,
    }
}

/// Rewrites serde's data errors; anything else (our own validation messages) is kept.
fn data_message(text: &str) -> String {
    if let Some(rest) = text
        .strip_prefix("invalid type: ")
        .or_else(|| text.strip_prefix("invalid value: "))
    {
        if let Some((found, expected)) = rest.split_once(", expected ") {
            let out_of_range = text.starts_with("invalid value") && is_number(found);
            let expected = expected_words(expected);
            let found = found_words(found);
            return if out_of_range {
                format!("{found} is out of range; expected {expected}")
            } else {
                format!("expected {expected}, got {found}")
            };
        }
    }
    if let Some(rest) = text.strip_prefix("unknown field ") {
        let (field, expected) = rest.split_once(", ").unwrap_or((rest, ""));
        return format!(
            "unknown field {}{}",
            quoted(field),
            choices(expected, "this object takes no fields")
        );
    }
    if let Some(rest) = text.strip_prefix("unknown variant ") {
        let (variant, expected) = rest.split_once(", ").unwrap_or((rest, ""));
        return format!(
            "{} is not one of the choices{}",
            quoted(variant),
            choices(expected, "")
        );
    }
    if let Some(field) = text.strip_prefix("missing field ") {
        return format!("{} is required", quoted(field));
    }
    if let Some(field) = text.strip_prefix("duplicate field ") {
        return format!("{} is given twice", quoted(field));
    }
    if let Some(rest) = text.strip_prefix("invalid length ") {
        if let Some((len, expected)) = rest.split_once(", expected ") {
            // serde lets a list stand for a struct's fields in order; JSON authors write
            // objects.
            if expected.starts_with("struct ") {
                return "expected an object, got a list".into();
            }
            let items = if len == "1" { "item" } else { "items" };
            return format!(
                "a list of {len} {items} is not {}",
                expected_words(expected)
            );
        }
    }
    text.to_owned()
}

/// serde's list of names (`` `a` ``, `` `a` or `b` ``, `` one of `a`, `b`, `c` ``) as
/// "; expected one of a, b, c".
fn choices(expected: &str, none: &str) -> String {
    if expected.starts_with("there are no") {
        return if none.is_empty() {
            String::new()
        } else {
            format!("; {none}")
        };
    }
    let Some(list) = expected.strip_prefix("expected ") else {
        return String::new();
    };
    let list = list.strip_prefix("one of ").unwrap_or(list);
    let names: Vec<&str> = list
        .split(", ")
        .flat_map(|part| part.split(" or "))
        .map(|name| name.trim_matches('`'))
        .collect();
    match names.as_slice() {
        [one] => format!("; expected {one}"),
        names => format!("; expected one of {}", names.join(", ")),
    }
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.trim_matches('`'))
}

fn is_number(found: &str) -> bool {
    found.starts_with("integer ") || found.starts_with("floating point ")
}

/// serde's `Unexpected` in words: what the JSON held.
fn found_words(found: &str) -> String {
    let literal = |rest: &str| rest.trim_matches('`').to_owned();
    if let Some(rest) = found.strip_prefix("string ") {
        format!("the string {rest}")
    } else if let Some(rest) = found
        .strip_prefix("integer ")
        .or_else(|| found.strip_prefix("floating point "))
    {
        format!("the number {}", literal(rest))
    } else if let Some(rest) = found.strip_prefix("boolean ") {
        literal(rest)
    } else {
        match found {
            "map" => "an object".into(),
            "sequence" => "a list".into(),
            "null" | "unit value" | "unit" | "none" => "null".into(),
            other => other.to_owned(),
        }
    }
}

/// A visitor's `expecting` in words: what a JSON author should write.
fn expected_words(expected: &str) -> String {
    let expected = expected.trim_end_matches('.');
    match expected {
        "u8" => "a whole number from 0 to 255".into(),
        "u16" => "a whole number from 0 to 65535".into(),
        "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" | "bool" => "true or false".into(),
        "a string" | "a borrowed string" | "string" | "char" | "a character" => "a string".into(),
        "a sequence" | "sequence" => "a list".into(),
        "a map" | "map" => "an object".into(),
        "unit" => "null".into(),
        other if other.starts_with("struct ") || other.starts_with("a map of ") => {
            "an object".into()
        }
        other if other.starts_with("tuple") => "a list".into(),
        other if other.contains("enum ") => "one of the documented values".into(),
        other if other.starts_with("option") => "a value or null".into(),
        // Written by a hand-made visitor: already a phrase for people.
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        level: f64,
        count: Option<u8>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        size: Option<u32>,
        inner: Option<Inner>,
        tags: Option<Vec<String>>,
        kind: Option<Kind>,
        flag: Option<bool>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Small,
        Large,
    }

    fn message(json: &str) -> String {
        from_slice::<Outer>(json.as_bytes())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn messages_name_the_field_and_no_rust_type() {
        let cases = [
            (r#"{"name":"a","size":"big"}"#, "size: expected a whole number, 0 or more, got the string \"big\""),
            (r#"{"name":"a","size":-1}"#, "size: the number -1 is out of range; expected a whole number, 0 or more"),
            (r#"{"name":"a","size":99999999999}"#, "size: the number 99999999999 is out of range; expected a whole number, 0 or more"),
            (r#"{"name":"a","size":1.5}"#, "size: expected a whole number, 0 or more, got the number 1.5"),
            (r#"{"name":"a","inner":[]}"#, "inner: expected an object, got a list"),
            (r#"{"name":"a","inner":{"level":"x"}}"#, "inner.level: expected a number, got the string \"x\""),
            (r#"{"name":"a","inner":{"level":1,"count":300}}"#, "inner.count: the number 300 is out of range; expected a whole number from 0 to 255"),
            (r#"{"name":"a","inner":{}}"#, "inner: \"level\" is required"),
            (r#"{"name":"a","tags":["x",3]}"#, "tags[1]: expected a string, got the number 3"),
            (r#"{"name":"a","kind":"huge"}"#, "kind: \"huge\" is not one of the choices; expected one of small, large"),
            (r#"{"name":"a","flag":"yes"}"#, "flag: expected true or false, got the string \"yes\""),
            (r#"{"name":"a","extra":1}"#, "unknown field \"extra\"; expected one of name, size, inner, tags, kind, flag"),
            (r#"{"size":1}"#, "\"name\" is required"),
            (r#"1"#, "expected an object, got the number 1"),
            (r#"[]"#, "expected an object, got a list"),
        ];
        for (json, expected) in cases {
            let got = message(json);
            assert_eq!(got, expected, "{json}");
            for bad in ["u32", "u8", "f64", "struct", "line ", "column", "`"] {
                assert!(!got.contains(bad), "{json}: {got}");
            }
        }
    }

    #[test]
    fn syntax_errors_have_no_position() {
        for json in [
            r#"{"name":"#,
            r#"{"name" 1}"#,
            "",
            r#"{"name":"a"} trailing"#,
        ] {
            let got = message(json);
            assert!(
                !got.contains("line") && !got.contains("column"),
                "{json}: {got}"
            );
            assert!(got.contains("JSON"), "{json}: {got}");
        }
    }

    #[test]
    fn own_messages_pass_through_and_paths_nest() {
        assert_eq!(
            data_message("bitrate 7 is not an MP3 bit rate"),
            "bitrate 7 is not an MP3 bit rate"
        );
        let e = JsonError {
            path: "normalize".into(),
            message: "x".into(),
        };
        assert_eq!(
            e.clone().within("options").to_string(),
            "options.normalize: x"
        );
        let root = JsonError {
            path: String::new(),
            message: "x".into(),
        };
        assert_eq!(root.within("options").to_string(), "options: x");
    }
}

//! Options of the `separate` operation (stem separation), and the names it takes.
//!
//! A model name and the stem names arrive from users and later become file and directory names
//! (`<data>/models/<model>/`, `<stem>.wav`): they are parsed here into [`ModelName`] and
//! [`StemName`], whose only constructors check the character set, so the code past the edge
//! never builds a path from an unchecked string. Whether the model is installed and has those
//! stems is checked where the models are known (the server, at submission).

use crate::format::{check_encoding, AudioFormat, SampleFormat};
use crate::validate::{in_range, SpecError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Most shift passes `separate` accepts (`demucs` takes any number; each one is a full pass).
pub const MAX_SHIFTS: u32 = 20;
/// Longest `segment` accepted in the options, in seconds. The model bounds it further:
/// transformer models accept at most their training segment (7.8 s for `htdemucs`).
pub const MAX_SEGMENT_SECS: f64 = 600.0;
/// The model used when the options name none (Demucs's default).
pub const DEFAULT_MODEL: &str = "htdemucs";

/// A model name: 1-64 of `a-z`, `0-9`, `_`, `.`, `-`, starting with a letter or digit. Safe as a
/// directory name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "htdemucs")]
pub struct ModelName(String);

impl ModelName {
    /// Parses a model name.
    pub fn parse(name: &str) -> Result<Self, SpecError> {
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok =
            chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
        if first_ok && rest_ok && name.len() <= 64 {
            Ok(ModelName(name.to_owned()))
        } else {
            Err(SpecError(
                "a model name is 1-64 lowercase letters, digits, '_', '.' or '-', starting with a letter or digit"
                    .into(),
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ModelName {
    type Error = SpecError;
    fn try_from(name: String) -> Result<Self, SpecError> {
        ModelName::parse(&name)
    }
}

impl From<ModelName> for String {
    fn from(name: ModelName) -> String {
        name.0
    }
}

impl std::fmt::Display for ModelName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for ModelName {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        ModelName::parse(s)
    }
}

/// A stem (source) name such as `vocals`: 1-32 of `a-z`, `0-9`, `_`. Safe as a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "vocals")]
pub struct StemName(String);

impl StemName {
    /// Parses a stem name.
    pub fn parse(name: &str) -> Result<Self, SpecError> {
        let ok = !name.is_empty()
            && name.len() <= 32
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if ok {
            Ok(StemName(name.to_owned()))
        } else {
            Err(SpecError(
                "a stem name is 1-32 lowercase letters, digits or '_'".into(),
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for StemName {
    type Error = SpecError;
    fn try_from(name: String) -> Result<Self, SpecError> {
        StemName::parse(&name)
    }
}

impl From<StemName> for String {
    fn from(name: StemName) -> String {
        name.0
    }
}

impl std::fmt::Display for StemName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Options of the `separate` operation, validated (the names and defaults of the `demucs` CLI).
/// One artifact per stem, `<stem>.<ext>`, at the input's sample rate and length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(from = "RawSeparateOptions")]
pub struct SeparateOptions {
    /// Installed model to use (`GET /v1/models`); default `htdemucs`.
    pub model: ModelName,
    /// Stems to write (a subset of the model's); all of them when empty.
    pub stems: Vec<StemName>,
    /// Write this stem and `no_<stem>` (the sum of the others), as `demucs --two-stems`.
    /// Exclusive with `stems`.
    pub two_stems: Option<StemName>,
    /// Passes with a random time shift, averaged (0 to 20; default 1). 0 is deterministic.
    pub shifts: u32,
    /// Overlap of consecutive chunks, as a fraction of the segment (0 to 0.99; default 0.25).
    pub overlap: f64,
    /// Chunk length in seconds; the model's own when absent. At most the model's for
    /// transformer models.
    pub segment: Option<f64>,
    /// Output format of the stems (default `wav`).
    pub format: AudioFormat,
    /// PCM sample format for `wav`/`flac` (default `s16`, as `demucs`).
    pub sample_format: Option<SampleFormat>,
    /// Bit rate in kbit/s for `mp3` (CBR) or `opus`.
    pub bitrate: Option<u32>,
    /// MP3 VBR quality, 0 (best) to 9; instead of `bitrate`.
    pub quality: Option<u8>,
}

impl Default for SeparateOptions {
    fn default() -> Self {
        SeparateOptions {
            model: ModelName(DEFAULT_MODEL.to_owned()),
            stems: Vec::new(),
            two_stems: None,
            shifts: 1,
            overlap: 0.25,
            segment: None,
            format: AudioFormat::Wav,
            sample_format: None,
            bitrate: None,
            quality: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeparateOptions {
    #[serde(default)]
    model: Option<ModelName>,
    #[serde(default)]
    stems: Option<Vec<StemName>>,
    #[serde(default)]
    two_stems: Option<StemName>,
    #[serde(default)]
    shifts: Option<u32>,
    #[serde(default)]
    overlap: Option<f64>,
    #[serde(default)]
    segment: Option<f64>,
    #[serde(default)]
    format: Option<AudioFormat>,
    #[serde(default)]
    sample_format: Option<SampleFormat>,
    #[serde(default)]
    bitrate: Option<u32>,
    #[serde(default)]
    quality: Option<u8>,
}

impl From<RawSeparateOptions> for SeparateOptions {
    fn from(raw: RawSeparateOptions) -> Self {
        let d = SeparateOptions::default();
        SeparateOptions {
            model: raw.model.unwrap_or(d.model),
            stems: raw.stems.unwrap_or_default(),
            two_stems: raw.two_stems,
            shifts: raw.shifts.unwrap_or(d.shifts),
            overlap: raw.overlap.unwrap_or(d.overlap),
            segment: raw.segment,
            format: raw.format.unwrap_or(d.format),
            sample_format: raw.sample_format,
            bitrate: raw.bitrate,
            quality: raw.quality,
        }
    }
}

impl SeparateOptions {
    /// Checks the values against today's rules (see [`crate::Operation::validate`]).
    pub fn validate(&self) -> Result<(), SpecError> {
        let stems = &self.stems;
        if self.two_stems.is_some() && !stems.is_empty() {
            return Err(SpecError("give stems or two_stems, not both".into()));
        }
        for (i, stem) in stems.iter().enumerate() {
            if stems[..i].contains(stem) {
                return Err(SpecError(format!("stem {stem} is listed twice")));
            }
        }
        if self.shifts > MAX_SHIFTS {
            return Err(SpecError(format!("shifts must be 0 to {MAX_SHIFTS}")));
        }
        in_range("overlap", Some(self.overlap), 0.0, 0.99)?;
        if let Some(segment) = self.segment {
            if !(segment.is_finite() && segment > 0.0 && segment <= MAX_SEGMENT_SECS) {
                return Err(SpecError(format!(
                    "segment must be above 0 and at most {MAX_SEGMENT_SECS} seconds"
                )));
            }
        }
        check_encoding(self.format, self.bitrate, self.quality, self.sample_format)
    }
}

// Equality on f64 fields: options are compared only in tests and idempotency of parsing.
impl Eq for SeparateOptions {}

impl SeparateOptions {
    /// The stem files a model with `sources` produces for these options, in order, or why the
    /// options do not fit the model (a stem it does not have).
    pub fn output_stems(&self, sources: &[String]) -> Result<Vec<String>, SpecError> {
        let known = |stem: &StemName| {
            if sources.iter().any(|s| s == stem.as_str()) {
                Ok(())
            } else {
                Err(SpecError(format!(
                    "model {} has no stem {stem}; its stems are {}",
                    self.model,
                    sources.join(", ")
                )))
            }
        };
        if let Some(stem) = &self.two_stems {
            known(stem)?;
            return Ok(vec![stem.to_string(), format!("no_{stem}")]);
        }
        for stem in &self.stems {
            known(stem)?;
        }
        // In the model's order, whatever order the options list them in.
        Ok(sources
            .iter()
            .filter(|s| self.stems.is_empty() || self.stems.iter().any(|t| t.as_str() == *s))
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> Result<SeparateOptions, String> {
        let options: SeparateOptions = crate::json::from_value(value).map_err(|e| e.to_string())?;
        options.validate().map_err(|e| e.0)?;
        Ok(options)
    }

    #[test]
    fn defaults_are_demucs_defaults() {
        let o = parse(json!({})).unwrap();
        assert_eq!(o, SeparateOptions::default());
        assert_eq!(o.model.as_str(), "htdemucs");
        assert_eq!((o.shifts, o.overlap, o.format), (1, 0.25, AudioFormat::Wav));
    }

    #[test]
    fn options_round_trip_through_json() {
        let o = parse(
            json!({"model": "htdemucs_ft", "stems": ["vocals", "drums"], "shifts": 0,
                             "overlap": 0.5, "segment": 5.5, "format": "mp3", "bitrate": 320}),
        )
        .unwrap();
        assert_eq!(parse(serde_json::to_value(&o).unwrap()).unwrap(), o);
    }

    #[test]
    fn names_are_checked_at_the_edge() {
        for bad in [
            "",
            "../x",
            "HTDemucs",
            "a/b",
            ".hidden",
            "x y",
            &"m".repeat(65),
        ] {
            assert!(parse(json!({"model": bad})).is_err(), "{bad:?}");
        }
        for bad in ["", "Vocals", "../v", "v.wav", &"s".repeat(33)] {
            assert!(parse(json!({"stems": [bad]})).is_err(), "{bad:?}");
            assert!(parse(json!({"two_stems": bad})).is_err(), "{bad:?}");
        }
        assert!(parse(json!({"model": "htdemucs_6s"})).is_ok());
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        let cases = [
            (json!({"shifts": 21}), "shifts"),
            (json!({"overlap": 1.0}), "overlap"),
            (json!({"overlap": -0.1}), "overlap"),
            (json!({"segment": 0}), "segment"),
            (json!({"segment": 1e9}), "segment"),
            (
                json!({"stems": ["vocals"], "two_stems": "vocals"}),
                "two_stems",
            ),
            (json!({"stems": ["vocals", "vocals"]}), "twice"),
            (json!({"format": "wav", "bitrate": 128}), "bitrate"),
            (json!({"format": "mp3", "bitrate": 100}), "bitrate"),
            (
                json!({"format": "mp3", "sample_format": "s24"}),
                "sample_format",
            ),
            (
                json!({"format": "aac"}),
                "\"aac\" is not one of the choices",
            ),
            (json!({"modle": "htdemucs"}), "modle"),
        ];
        for (value, field) in cases {
            let error = parse(value.clone()).unwrap_err();
            assert!(error.contains(field), "{value}: {error}");
        }
    }

    #[test]
    fn output_stems_follow_the_model() {
        let sources: Vec<String> = ["drums", "bass", "other", "vocals"]
            .map(String::from)
            .to_vec();
        let all = parse(json!({})).unwrap();
        assert_eq!(all.output_stems(&sources).unwrap(), sources);
        let some = parse(json!({"stems": ["vocals", "drums"]})).unwrap();
        assert_eq!(some.output_stems(&sources).unwrap(), ["drums", "vocals"]);
        let two = parse(json!({"two_stems": "vocals"})).unwrap();
        assert_eq!(two.output_stems(&sources).unwrap(), ["vocals", "no_vocals"]);
        let error = parse(json!({"stems": ["guitar"]}))
            .unwrap()
            .output_stems(&sources)
            .unwrap_err();
        assert!(error.0.contains("no stem guitar"), "{error}");
    }
}

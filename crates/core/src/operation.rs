//! Operations a job can run, and their typed options.
//!
//! A job spec arrives as `{operation, input, options, output}`. [`JobSpec::parse`] turns the
//! JSON into a typed [`Operation`] (unknown operations, unknown fields and out-of-range values are
//! rejected with a message naming the field), so that the worker and the engines never see an
//! unchecked option. Adding an operation is: a variant here with its options type, an engine
//! function, and one match arm in the worker.

use crate::{ArtifactId, UploadId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Why a job spec was refused. The message is safe to return to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

/// The name of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// Measure an input: format, levels, loudness (EBU R128).
    Analyze,
    /// Re-encode an input to another format, sample rate or channel count.
    Convert,
}

impl OperationKind {
    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Analyze => "analyze",
            OperationKind::Convert => "convert",
        }
    }

    /// All operations.
    pub const ALL: [OperationKind; 2] = [OperationKind::Analyze, OperationKind::Convert];
}

impl std::str::FromStr for OperationKind {
    type Err = SpecError;
    fn from_str(s: &str) -> Result<Self, SpecError> {
        OperationKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                SpecError(format!(
                    "unknown operation; expected one of {}",
                    Self::names()
                ))
            })
    }
}

impl OperationKind {
    fn names() -> String {
        Self::ALL.map(|k| k.as_str()).join(", ")
    }
}

impl std::fmt::Display for OperationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a job works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum InputRef {
    /// A file uploaded with `POST /v1/uploads`.
    Upload(UploadId),
    /// A file produced by an earlier job.
    Artifact(ArtifactId),
}

/// Options of the `analyze` operation (none yet; unknown fields are refused).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalyzeOptions {}

/// An output audio format the engine can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AudioFormat {
    /// RIFF WAVE, 16-bit PCM.
    Wav,
    /// FLAC, lossless.
    Flac,
    /// MPEG-1/2 Layer III.
    Mp3,
}

impl AudioFormat {
    /// File extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            AudioFormat::Wav => "wav",
            AudioFormat::Flac => "flac",
            AudioFormat::Mp3 => "mp3",
        }
    }

    /// MIME type of files in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            AudioFormat::Wav => "audio/wav",
            AudioFormat::Flac => "audio/flac",
            AudioFormat::Mp3 => "audio/mpeg",
        }
    }
}

/// MP3 bit rates (kbit/s) that LAME can write in CBR mode for MPEG-1 and MPEG-2 layer III.
pub const MP3_BITRATES: [u32; 14] = [
    32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
];

/// Sample rates (Hz) an output may be resampled to.
pub const OUTPUT_SAMPLE_RATES: [u32; 9] = [
    8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000, 96_000,
];

/// Sample rates MP3 can carry (MPEG-1 and MPEG-2).
pub const MP3_SAMPLE_RATES: [u32; 6] = [16_000, 22_050, 24_000, 32_000, 44_100, 48_000];

/// Options of the `convert` operation, already validated: a value of this type is a conversion
/// the engine can perform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "RawConvertOptions")]
pub struct ConvertOptions {
    /// Output format.
    pub format: AudioFormat,
    /// Output sample rate in Hz; the input's when absent.
    pub sample_rate: Option<u32>,
    /// Output channel count (1 or 2); the input's when absent (inputs with more than two
    /// channels are downmixed to stereo for MP3).
    pub channels: Option<u16>,
    /// MP3 bit rate in kbit/s (CBR); 192 when absent. Only valid for `mp3`.
    pub bitrate: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConvertOptions {
    format: AudioFormat,
    #[serde(default)]
    sample_rate: Option<u32>,
    #[serde(default)]
    channels: Option<u16>,
    #[serde(default)]
    bitrate: Option<u32>,
}

impl TryFrom<RawConvertOptions> for ConvertOptions {
    type Error = SpecError;
    fn try_from(raw: RawConvertOptions) -> Result<Self, SpecError> {
        if let Some(rate) = raw.sample_rate {
            let allowed: &[u32] = match raw.format {
                AudioFormat::Mp3 => &MP3_SAMPLE_RATES,
                _ => &OUTPUT_SAMPLE_RATES,
            };
            if !allowed.contains(&rate) {
                return Err(SpecError(format!(
                    "sample_rate {rate} is not supported for {}; expected one of {allowed:?}",
                    raw.format.extension()
                )));
            }
        }
        if let Some(channels) = raw.channels {
            if !(1..=2).contains(&channels) {
                return Err(SpecError("channels must be 1 or 2".into()));
            }
        }
        if let Some(bitrate) = raw.bitrate {
            if raw.format != AudioFormat::Mp3 {
                return Err(SpecError(format!(
                    "bitrate applies to mp3 only; {} is lossless",
                    raw.format.extension()
                )));
            }
            if !MP3_BITRATES.contains(&bitrate) {
                return Err(SpecError(format!(
                    "bitrate {bitrate} is not an MP3 bit rate; expected one of {MP3_BITRATES:?} (kbit/s)"
                )));
            }
        }
        Ok(ConvertOptions {
            format: raw.format,
            sample_rate: raw.sample_rate,
            channels: raw.channels,
            bitrate: raw.bitrate,
        })
    }
}

impl ConvertOptions {
    /// Options converting to `format` with everything else kept from the input.
    pub fn to_format(format: AudioFormat) -> Self {
        Self {
            format,
            sample_rate: None,
            channels: None,
            bitrate: None,
        }
    }
}

/// An operation with its validated options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operation {
    /// See [`AnalyzeOptions`].
    Analyze(AnalyzeOptions),
    /// See [`ConvertOptions`].
    Convert(ConvertOptions),
}

impl Operation {
    /// Parses the options of operation `kind` from JSON (`null` means no options).
    pub fn from_parts(kind: OperationKind, options: &serde_json::Value) -> Result<Self, SpecError> {
        let options = match options {
            serde_json::Value::Null => serde_json::Value::Object(Default::default()),
            other => other.clone(),
        };
        let bad = |e: serde_json::Error| SpecError(format!("invalid options for {kind}: {e}"));
        Ok(match kind {
            OperationKind::Analyze => {
                Operation::Analyze(serde_json::from_value(options).map_err(bad)?)
            }
            OperationKind::Convert => {
                Operation::Convert(serde_json::from_value(options).map_err(bad)?)
            }
        })
    }

    /// The operation's name.
    pub fn kind(&self) -> OperationKind {
        match self {
            Operation::Analyze(_) => OperationKind::Analyze,
            Operation::Convert(_) => OperationKind::Convert,
        }
    }

    /// The options as JSON, in the form [`Operation::from_parts`] reads back.
    pub fn options_json(&self) -> serde_json::Value {
        let value = match self {
            Operation::Analyze(o) => serde_json::to_value(o),
            Operation::Convert(o) => serde_json::to_value(o),
        };
        value.expect("options types serialize to JSON without failure")
    }
}

/// Where and how results are named.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Base name for the artifacts (used in `Content-Disposition`, never as a path): letters,
    /// digits, space, `-`, `_`, `.`, `(`, `)`, at most 100 characters.
    #[serde(default)]
    pub name: Option<String>,
}

impl OutputSpec {
    fn validate(&self) -> Result<(), SpecError> {
        if let Some(name) = &self.name {
            let ok_char = |c: char| c.is_alphanumeric() || " -_.()".contains(c);
            if name.is_empty()
                || name.chars().count() > 100
                || !name.chars().all(ok_char)
                || name.starts_with('.')
            {
                return Err(SpecError(
                    "output.name must be 1-100 letters, digits, spaces or -_.() and not start with a dot"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}

/// A validated job request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// What to do, with its options.
    pub operation: Operation,
    /// What to do it to.
    pub input: InputRef,
    /// How to name the results.
    pub output: OutputSpec,
}

/// The JSON form of a job request, as documented in the API.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// The operation to run.
    pub operation: OperationKind,
    /// The input: `{"upload": "upl_…"}` or `{"artifact": "art_…"}`.
    pub input: InputRef,
    /// Options of the operation (see `ConvertOptions`, `AnalyzeOptions`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
    /// Naming of the results.
    #[serde(default)]
    pub output: OutputSpec,
}

impl JobSpec {
    /// Parses and validates a job request from JSON bytes.
    pub fn parse(json: &[u8]) -> Result<Self, SpecError> {
        let request: JobRequest = serde_json::from_slice(json)
            .map_err(|e| SpecError(format!("invalid job request: {e}")))?;
        Self::from_request(request)
    }

    /// Validates a decoded job request.
    pub fn from_request(request: JobRequest) -> Result<Self, SpecError> {
        request.output.validate()?;
        Ok(JobSpec {
            operation: Operation::from_parts(request.operation, &request.options)?,
            input: request.input,
            output: request.output,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<JobSpec, SpecError> {
        JobSpec::parse(json.as_bytes())
    }

    #[test]
    fn parses_a_convert_request() {
        let upload = UploadId::new();
        let spec = parse(&format!(
            r#"{{"operation":"convert","input":{{"upload":"{upload}"}},"options":{{"format":"mp3","bitrate":320,"sample_rate":48000,"channels":1}}}}"#
        ))
        .unwrap();
        assert_eq!(spec.input, InputRef::Upload(upload));
        let Operation::Convert(o) = &spec.operation else {
            panic!("not convert")
        };
        assert_eq!(
            (o.format, o.bitrate, o.sample_rate, o.channels),
            (AudioFormat::Mp3, Some(320), Some(48000), Some(1))
        );
        // Stored options read back to the same operation.
        assert_eq!(
            Operation::from_parts(OperationKind::Convert, &spec.operation.options_json()).unwrap(),
            spec.operation
        );
    }

    #[test]
    fn analyze_needs_no_options() {
        let spec = parse(&format!(
            r#"{{"operation":"analyze","input":{{"artifact":"{}"}}}}"#,
            ArtifactId::new()
        ))
        .unwrap();
        assert_eq!(spec.operation, Operation::Analyze(AnalyzeOptions {}));
    }

    #[test]
    fn refuses_bad_requests() {
        let upl = UploadId::new();
        let cases = [
            format!(r#"{{"operation":"explode","input":{{"upload":"{upl}"}}}}"#),
            format!(r#"{{"operation":"convert","input":{{"upload":"{upl}"}}}}"#),
            format!(
                r#"{{"operation":"convert","input":{{"upload":"{upl}"}},"options":{{"format":"aac"}}}}"#
            ),
            format!(
                r#"{{"operation":"convert","input":{{"upload":"{upl}"}},"options":{{"format":"wav","bitrate":128}}}}"#
            ),
            format!(
                r#"{{"operation":"convert","input":{{"upload":"{upl}"}},"options":{{"format":"mp3","bitrate":99999999999}}}}"#
            ),
            format!(
                r#"{{"operation":"convert","input":{{"upload":"{upl}"}},"options":{{"format":"mp3","sample_rate":96000}}}}"#
            ),
            format!(
                r#"{{"operation":"convert","input":{{"upload":"{upl}"}},"options":{{"format":"wav","channels":0}}}}"#
            ),
            format!(
                r#"{{"operation":"convert","input":{{"upload":"{upl}"}},"options":{{"format":"wav","extra":1}}}}"#
            ),
            r#"{"operation":"analyze","input":{"upload":"../etc/passwd"}}"#.to_string(),
            format!(
                r#"{{"operation":"analyze","input":{{"upload":"{upl}"}},"output":{{"name":"../x"}}}}"#
            ),
            format!(r#"{{"operation":"analyze","input":{{"upload":"{upl}"}},"surprise":true}}"#),
        ];
        for case in cases {
            assert!(parse(&case).is_err(), "accepted: {case}");
        }
    }
}

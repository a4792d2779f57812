//! Operations a job can run, and their typed options.
//!
//! A job spec arrives as `{operation, input, options, output}`. [`JobSpec::parse`] turns the
//! JSON into a typed [`Operation`] (unknown operations, unknown fields and out-of-range values are
//! rejected with a message naming the field), so that the worker and the engines never see an
//! unchecked option. Adding an operation is: a variant here with its options type, an engine
//! function, and one match arm in the worker.

use crate::format::check_encoding;
pub use crate::format::{
    AudioFormat, SampleFormat, MP3_BITRATES, MP3_SAMPLE_RATES, OPUS_BITRATES, OUTPUT_SAMPLE_RATES,
};
use crate::json::from_value;
use crate::separation::SeparateOptions;
use crate::validate::in_range;
pub use crate::validate::SpecError;
use crate::{ArtifactId, InputUrl, MediaInfo, UploadId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The name of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// Measure an input: format, levels, loudness (EBU R128).
    Analyze,
    /// Re-encode an input to another format, sample rate or channel count.
    Convert,
    /// Separate an input into stems (vocals, drums, bass, …) with a Demucs model.
    Separate,
    /// Fetch a URL input's audio and store it, as it came or converted.
    Download,
}

impl OperationKind {
    /// The name used in the API and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            OperationKind::Analyze => "analyze",
            OperationKind::Convert => "convert",
            OperationKind::Separate => "separate",
            OperationKind::Download => "download",
        }
    }

    /// All operations.
    pub const ALL: [OperationKind; 4] = [
        OperationKind::Analyze,
        OperationKind::Convert,
        OperationKind::Separate,
        OperationKind::Download,
    ];
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

/// What a job works on: exactly one of `upload`, `artifact` or `url`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputRef {
    /// A file uploaded with `POST /v1/uploads`.
    Upload(UploadId),
    /// A file produced by an earlier job.
    Artifact(ArtifactId),
    /// A link: a direct `http`/`https` link to an audio file, or a page of a supported site
    /// (YouTube, SoundCloud, Bandcamp, …) whose audio is downloaded with yt-dlp.
    Url(InputUrl),
}

impl InputRef {
    const KINDS: [&'static str; 3] = ["upload", "artifact", "url"];

    /// The URL of a URL input.
    pub fn url(&self) -> Option<&InputUrl> {
        match self {
            InputRef::Url(url) => Some(url),
            _ => None,
        }
    }
}

/// By hand rather than derived, so that the messages say what a client got wrong: an object
/// naming two kinds of input is a conflict in words, not "expected map with a single key".
impl<'de> Deserialize<'de> for InputRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let object = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        if let Some(unknown) = object.keys().find(|k| !Self::KINDS.contains(&k.as_str())) {
            let shown: String = unknown.chars().take(40).collect();
            return Err(D::Error::custom(format!(
                "unknown kind of input \"{shown}\"; give one of upload, artifact or url"
            )));
        }
        let kinds: Vec<String> = object.keys().cloned().collect();
        let mut entries = object.into_iter();
        let (Some((kind, value)), None) = (entries.next(), entries.next()) else {
            return Err(D::Error::custom(match kinds.as_slice() {
                [] => "give one of upload, artifact or url".to_owned(),
                [first @ .., last] => format!(
                    "an input is one upload, one artifact or one url, not {} and {last} together",
                    first.join(", ")
                ),
            }));
        };
        let text = value
            .as_str()
            .ok_or_else(|| D::Error::custom(format!("{kind} must be a string")))?;
        match kind.as_str() {
            "upload" => text
                .parse()
                .map(InputRef::Upload)
                .map_err(|_| D::Error::custom("upload is not an upload id (upl_…)")),
            "artifact" => text
                .parse()
                .map(InputRef::Artifact)
                .map_err(|_| D::Error::custom("artifact is not an artifact id (art_…)")),
            _ => InputUrl::parse(text)
                .map(InputRef::Url)
                .map_err(|e| D::Error::custom(format!("url: {e}"))),
        }
    }
}

/// Options of the `analyze` operation, validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(from = "RawAnalyzeOptions")]
pub struct AnalyzeOptions {
    /// Buckets of the waveform overview (min/max per channel per bucket); 0 for none.
    /// Default 1000, at most 100000.
    pub waveform_buckets: u32,
    /// Also render the waveform as a PNG artifact.
    pub waveform_png: bool,
    /// Level under which audio counts as silence, in dBFS (−96 to −20; default −60).
    pub silence_threshold_db: f64,
    /// Shortest silence reported, in seconds (0.01 to 60; default 0.5).
    pub silence_min_secs: f64,
    /// Estimate the tempo (BPM) with a confidence figure (default true).
    pub tempo: bool,
}

impl Default for AnalyzeOptions {
    fn default() -> Self {
        Self {
            waveform_buckets: 1000,
            waveform_png: false,
            silence_threshold_db: -60.0,
            silence_min_secs: 0.5,
            tempo: true,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAnalyzeOptions {
    #[serde(default)]
    waveform_buckets: Option<u32>,
    #[serde(default)]
    waveform_png: Option<bool>,
    #[serde(default)]
    silence_threshold_db: Option<f64>,
    #[serde(default)]
    silence_min_secs: Option<f64>,
    #[serde(default)]
    tempo: Option<bool>,
}

impl From<RawAnalyzeOptions> for AnalyzeOptions {
    fn from(raw: RawAnalyzeOptions) -> Self {
        let d = AnalyzeOptions::default();
        AnalyzeOptions {
            waveform_buckets: raw.waveform_buckets.unwrap_or(d.waveform_buckets),
            waveform_png: raw.waveform_png.unwrap_or(d.waveform_png),
            silence_threshold_db: raw.silence_threshold_db.unwrap_or(d.silence_threshold_db),
            silence_min_secs: raw.silence_min_secs.unwrap_or(d.silence_min_secs),
            tempo: raw.tempo.unwrap_or(d.tempo),
        }
    }
}

impl AnalyzeOptions {
    /// Checks the values against today's rules (see [`Operation::validate`]).
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.waveform_buckets > 100_000 {
            return Err(SpecError("waveform_buckets must be at most 100000".into()));
        }
        in_range(
            "silence_threshold_db",
            Some(self.silence_threshold_db),
            -96.0,
            -20.0,
        )?;
        in_range("silence_min_secs", Some(self.silence_min_secs), 0.01, 60.0)?;
        if self.waveform_png && self.waveform_buckets == 0 {
            return Err(SpecError(
                "waveform_png needs waveform_buckets above 0".into(),
            ));
        }
        Ok(())
    }
}

// Equality on f64 fields: options are compared only in tests and idempotency of parsing.
impl Eq for AnalyzeOptions {}

/// Two-pass loudness normalization (EBU R128).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Normalize {
    /// Integrated loudness to reach, in LUFS (−70 to −5; e.g. −23 broadcast, −14 streaming).
    pub target_lufs: f64,
    /// True-peak ceiling, in dBTP (−9 to 0; default −1). The gain is lowered if needed so that
    /// the true peak stays under it.
    #[serde(default = "default_true_peak")]
    pub true_peak_dbtp: f64,
}

fn default_true_peak() -> f64 {
    -1.0
}

/// Removal of leading and trailing silence.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrimSilence {
    /// Level under which audio counts as silence, in dBFS (−96 to −20; default −60).
    #[serde(default = "default_silence_threshold")]
    pub threshold_db: f64,
}

fn default_silence_threshold() -> f64 {
    -60.0
}

/// Options of the `convert` operation, already validated: a value of this type is a conversion
/// the engine can perform. Edits are applied in one pass in this order: pick channel / channel
/// map → trim (`start`, `end`) → trim silence → gain and normalization → fades → resample →
/// encode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(from = "RawConvertOptions")]
pub struct ConvertOptions {
    /// Output format.
    pub format: AudioFormat,
    /// Output sample rate in Hz; the input's when absent (Opus: always 48000).
    pub sample_rate: Option<u32>,
    /// Output channel count (1 or 2); the input's when absent (inputs with more than two
    /// channels are downmixed to stereo for MP3 and Opus).
    pub channels: Option<u16>,
    /// Use only this input channel (0 = first/left); with `channels: 2` it is copied to both.
    pub channel: Option<u16>,
    /// Bit rate in kbit/s: MP3 CBR (one of the MP3 rates; 192 when neither this nor
    /// `quality` is given) or Opus (6-510; 128 when absent).
    pub bitrate: Option<u32>,
    /// MP3 VBR quality, 0 (best) to 9; instead of `bitrate`.
    pub quality: Option<u8>,
    /// PCM sample format: `s16` (default), `s24` or `f32` for WAV; `s16` or `s24` for FLAC
    /// (default: 24 when the source has more than 16 bits).
    pub sample_format: Option<SampleFormat>,
    /// Start of the kept audio, in seconds from the start of the input.
    pub start: Option<f64>,
    /// End of the kept audio, in seconds from the start of the input.
    pub end: Option<f64>,
    /// Remove leading and trailing silence.
    pub trim_silence: Option<TrimSilence>,
    /// Gain in dB (−60 to +24), applied before normalization.
    pub gain_db: Option<f64>,
    /// Normalize loudness (two passes over the input).
    pub normalize: Option<Normalize>,
    /// Fade-in length, in seconds (0 to 600).
    pub fade_in: Option<f64>,
    /// Fade-out length, in seconds (0 to 600).
    pub fade_out: Option<f64>,
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
    channel: Option<u16>,
    #[serde(default)]
    bitrate: Option<u32>,
    #[serde(default)]
    quality: Option<u8>,
    #[serde(default)]
    sample_format: Option<SampleFormat>,
    #[serde(default)]
    start: Option<f64>,
    #[serde(default)]
    end: Option<f64>,
    #[serde(default)]
    trim_silence: Option<TrimSilence>,
    #[serde(default)]
    gain_db: Option<f64>,
    #[serde(default)]
    normalize: Option<Normalize>,
    #[serde(default)]
    fade_in: Option<f64>,
    #[serde(default)]
    fade_out: Option<f64>,
}

impl From<RawConvertOptions> for ConvertOptions {
    fn from(raw: RawConvertOptions) -> Self {
        ConvertOptions {
            format: raw.format,
            sample_rate: raw.sample_rate,
            channels: raw.channels,
            channel: raw.channel,
            bitrate: raw.bitrate,
            quality: raw.quality,
            sample_format: raw.sample_format,
            start: raw.start,
            end: raw.end,
            trim_silence: raw.trim_silence,
            gain_db: raw.gain_db,
            normalize: raw.normalize,
            fade_in: raw.fade_in,
            fade_out: raw.fade_out,
        }
    }
}

impl ConvertOptions {
    /// Checks the values against today's rules (see [`Operation::validate`]).
    pub fn validate(&self) -> Result<(), SpecError> {
        let format = self.format;
        let ext = format.extension();
        if let Some(rate) = self.sample_rate {
            let allowed: &[u32] = match format {
                AudioFormat::Mp3 => &MP3_SAMPLE_RATES,
                AudioFormat::Opus => &[48_000],
                _ => &OUTPUT_SAMPLE_RATES,
            };
            if !allowed.contains(&rate) {
                return Err(SpecError(format!(
                    "sample_rate {rate} is not supported for {ext}; expected one of {allowed:?}"
                )));
            }
        }
        if let Some(channels) = self.channels {
            if !(1..=2).contains(&channels) {
                return Err(SpecError("channels must be 1 or 2".into()));
            }
        }
        if self.channel.is_some_and(|c| c >= 64) {
            return Err(SpecError(
                "channel must be an input channel index (0 = first)".into(),
            ));
        }
        check_encoding(format, self.bitrate, self.quality, self.sample_format)?;
        in_range("start", self.start, 0.0, 1e7)?;
        in_range("end", self.end, 0.0, 1e7)?;
        if let (Some(start), Some(end)) = (self.start, self.end) {
            if end <= start {
                return Err(SpecError("end must be after start".into()));
            }
        }
        in_range("gain_db", self.gain_db, -60.0, 24.0)?;
        in_range("fade_in", self.fade_in, 0.0, 600.0)?;
        in_range("fade_out", self.fade_out, 0.0, 600.0)?;
        if let Some(n) = self.normalize {
            in_range("normalize.target_lufs", Some(n.target_lufs), -70.0, -5.0)?;
            in_range(
                "normalize.true_peak_dbtp",
                Some(n.true_peak_dbtp),
                -9.0,
                0.0,
            )?;
        }
        if let Some(t) = self.trim_silence {
            in_range(
                "trim_silence.threshold_db",
                Some(t.threshold_db),
                -96.0,
                -20.0,
            )?;
        }
        Ok(())
    }
}

// Equality on f64 fields: options are compared only in tests and idempotency of parsing.
impl Eq for ConvertOptions {}

impl ConvertOptions {
    /// Options converting to `format` with everything else kept from the input.
    pub fn to_format(format: AudioFormat) -> Self {
        Self {
            format,
            sample_rate: None,
            channels: None,
            channel: None,
            bitrate: None,
            quality: None,
            sample_format: None,
            start: None,
            end: None,
            trim_silence: None,
            gain_db: None,
            normalize: None,
            fade_in: None,
            fade_out: None,
        }
    }

    /// Whether any edit (beyond format, rate and channels) is asked for.
    pub fn has_edits(&self) -> bool {
        self.channel.is_some()
            || self.start.is_some()
            || self.end.is_some()
            || self.trim_silence.is_some()
            || self.gain_db.is_some()
            || self.normalize.is_some()
            || self.fade_in.is_some()
            || self.fade_out.is_some()
    }
}

/// Options of the `download` operation, validated. With no `format`, the audio is stored as
/// it came (its container and codec, checked to be audio the engine reads); with a `format`,
/// the other fields are those of [`ConvertOptions`] (bit rate, edits, normalization, …) and the
/// download is converted in the same job.
#[derive(Debug, Clone, PartialEq, ToSchema)]
pub struct DownloadOptions {
    /// Expand a playlist link into one child job per item (up to the plan's limit), each a
    /// `download` with these same options; the parent job reports their overall progress.
    pub playlist: bool,
    /// Most playlist items to take (at most the plan's limit, which applies when absent).
    pub max_items: Option<u32>,
    /// The conversion, when a `format` was given.
    #[schema(value_type = Option<Object>)]
    pub convert: Option<ConvertOptions>,
}

// Like `ConvertOptions`: the floats inside are validated finite.
impl Eq for DownloadOptions {}

impl Serialize for DownloadOptions {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let mut object = match &self.convert {
            Some(convert) => match serde_json::to_value(convert).map_err(S::Error::custom)? {
                serde_json::Value::Object(object) => object,
                _ => return Err(S::Error::custom("convert options are not an object")),
            },
            None => serde_json::Map::new(),
        };
        object.retain(|_, v| !v.is_null());
        if self.playlist {
            object.insert("playlist".into(), true.into());
        }
        if let Some(max) = self.max_items {
            object.insert("max_items".into(), max.into());
        }
        object.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for DownloadOptions {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut object = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        let playlist = match object.remove("playlist") {
            None | Some(serde_json::Value::Bool(false)) => false,
            Some(serde_json::Value::Bool(true)) => true,
            Some(_) => return Err(D::Error::custom("playlist must be true or false")),
        };
        let max_items = match object.remove("max_items") {
            None => None,
            Some(v) => match v.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(n) => Some(n),
                None => return Err(D::Error::custom("max_items must be 1 to 10000")),
            },
        };
        let convert = if object.is_empty() {
            None
        } else if !object.contains_key("format") {
            return Err(D::Error::custom(
                "conversion options need a format (mp3, opus, flac, wav); without one the audio is kept as it came",
            ));
        } else {
            Some(
                from_value(serde_json::Value::Object(object))
                    .map_err(|e| D::Error::custom(e.to_string()))?,
            )
        };
        Ok(DownloadOptions {
            playlist,
            max_items,
            convert,
        })
    }
}

impl DownloadOptions {
    /// Checks the values against today's rules (see [`Operation::validate`]).
    pub fn validate(&self) -> Result<(), SpecError> {
        if let Some(max) = self.max_items {
            if !(1..=10_000).contains(&max) {
                return Err(SpecError("max_items must be 1 to 10000".into()));
            }
            if !self.playlist {
                return Err(SpecError("max_items needs playlist: true".into()));
            }
        }
        match &self.convert {
            Some(convert) => convert.validate(),
            None => Ok(()),
        }
    }
}

/// An operation with its options.
///
/// Parsing is in two steps, so that a job accepted under today's rules still runs after a
/// rule is tightened: the shape (known fields, JSON types, defaults) is what deserializing
/// checks, and the values are checked by [`Operation::validate`]. Requests are parsed with
/// both ([`Operation::from_parts`], at the edge); stored jobs with the first only
/// ([`Operation::from_stored`], in the worker), since they were validated when accepted.
///
/// Serialized adjacently tagged, `{"operation": "convert", "options": {…}}`: the form the
/// worker hands its job child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "operation", content = "options", rename_all = "snake_case")]
pub enum Operation {
    /// See [`AnalyzeOptions`].
    Analyze(AnalyzeOptions),
    /// See [`ConvertOptions`].
    Convert(ConvertOptions),
    /// See [`SeparateOptions`].
    Separate(SeparateOptions),
    /// See [`DownloadOptions`].
    Download(DownloadOptions),
}

impl Operation {
    /// Parses and validates the options of operation `kind` from a request's JSON (`null`
    /// means no options).
    pub fn from_parts(kind: OperationKind, options: &serde_json::Value) -> Result<Self, SpecError> {
        let operation = Self::from_stored(kind, options)?;
        operation
            .validate()
            .map_err(|e| SpecError(format!("options: {e}")))?;
        Ok(operation)
    }

    /// Parses the options of a job that was validated when it was accepted: their shape only,
    /// not today's value rules (a tightened rule must not fail a job already queued).
    pub fn from_stored(
        kind: OperationKind,
        options: &serde_json::Value,
    ) -> Result<Self, SpecError> {
        let options = match options {
            serde_json::Value::Null => serde_json::Value::Object(Default::default()),
            other => other.clone(),
        };
        let bad = |e: crate::json::JsonError| SpecError(e.within("options").to_string());
        Ok(match kind {
            OperationKind::Analyze => Operation::Analyze(from_value(options).map_err(bad)?),
            OperationKind::Convert => Operation::Convert(from_value(options).map_err(bad)?),
            OperationKind::Separate => Operation::Separate(from_value(options).map_err(bad)?),
            OperationKind::Download => Operation::Download(from_value(options).map_err(bad)?),
        })
    }

    /// Checks the option values against today's rules.
    pub fn validate(&self) -> Result<(), SpecError> {
        match self {
            Operation::Analyze(o) => o.validate(),
            Operation::Convert(o) => o.validate(),
            Operation::Separate(o) => o.validate(),
            Operation::Download(o) => o.validate(),
        }
    }

    /// The operation's name.
    pub fn kind(&self) -> OperationKind {
        match self {
            Operation::Analyze(_) => OperationKind::Analyze,
            Operation::Convert(_) => OperationKind::Convert,
            Operation::Separate(_) => OperationKind::Separate,
            Operation::Download(_) => OperationKind::Download,
        }
    }

    /// Checks the options against what a probe says of the input, so that a job that would
    /// fail on this input is refused when it is submitted: a `start` at or past the end, a
    /// `channel` the input does not have. Options a probe cannot judge pass.
    pub fn check_input(&self, media: &MediaInfo) -> Result<(), SpecError> {
        let convert = match self {
            Operation::Convert(options) => options,
            Operation::Download(DownloadOptions {
                convert: Some(options),
                ..
            }) => options,
            _ => return Ok(()),
        };
        if let (Some(start), Some(duration)) = (convert.start, media.duration_secs) {
            if start >= duration {
                return Err(SpecError(format!(
                    "options.start: {start} s is at or past the end of the input, which lasts {} s",
                    (duration * 1000.0).round() / 1000.0
                )));
            }
        }
        if let Some(channel) = convert.channel {
            if channel >= media.channels {
                return Err(SpecError(format!(
                    "options.channel: the input has {}, numbered from 0; there is no channel {channel}",
                    crate::text::count(media.channels, "channel", "channels")
                )));
            }
        }
        Ok(())
    }

    /// The options as JSON, in the form [`Operation::from_parts`] reads back.
    pub fn options_json(&self) -> serde_json::Value {
        let value = match self {
            Operation::Analyze(o) => serde_json::to_value(o),
            Operation::Convert(o) => serde_json::to_value(o),
            Operation::Separate(o) => serde_json::to_value(o),
            Operation::Download(o) => serde_json::to_value(o),
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
// Parsed by `JobDraft::parse`; this type is its documentation.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobRequest {
    /// The operation to run.
    pub operation: OperationKind,
    /// The input: `{"upload": "upl_…"}`, `{"artifact": "art_…"}` or `{"url": "https://…"}`.
    pub input: InputRef,
    /// Options of the operation (see `ConvertOptions`, `AnalyzeOptions`, `SeparateOptions`,
    /// `DownloadOptions`).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
    /// Naming of the results.
    #[serde(default)]
    pub output: OutputSpec,
}

/// A job request as parsed and validated, whose input may come apart from it (the `file`
/// part of a multipart form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDraft {
    /// What to do, with its options.
    pub operation: Operation,
    /// What to do it to, when the request says.
    pub input: Option<InputRef>,
    /// How to name the results.
    pub output: OutputSpec,
}

/// A job request as it arrives: [`JobRequest`] with its input optional.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobRequest {
    operation: OperationKind,
    #[serde(default)]
    input: Option<InputRef>,
    #[serde(default)]
    options: serde_json::Value,
    #[serde(default)]
    output: OutputSpec,
}

impl JobDraft {
    /// Parses and validates a job request from JSON bytes: its fields, the operation's
    /// options and the output name, in one pass.
    pub fn parse(json: &[u8]) -> Result<Self, SpecError> {
        let raw: RawJobRequest =
            crate::json::from_slice(json).map_err(|e| SpecError(e.to_string()))?;
        raw.output.validate()?;
        Ok(JobDraft {
            operation: Operation::from_parts(raw.operation, &raw.options)?,
            input: raw.input,
            output: raw.output,
        })
    }

    /// The request in canonical form, for idempotency: keys in order and the options as the
    /// server understood them, so two retries of one request hash the same whatever their
    /// whitespace or key order.
    pub fn canonical(&self) -> Vec<u8> {
        let value = serde_json::json!({
            "operation": self.operation.kind(),
            "options": self.operation.options_json(),
            "input": self.input,
            "output": self.output,
        });
        serde_json::to_vec(&value).expect("JSON values serialize")
    }

    /// The job, with the input the request named.
    pub fn into_spec(self) -> Result<JobSpec, SpecError> {
        let Some(input) = self.input.clone() else {
            return Err(SpecError("\"input\" is required".into()));
        };
        self.complete(input)
    }

    /// The job, with an input given apart from the request (which must not name one).
    pub fn with_input(self, input: InputRef) -> Result<JobSpec, SpecError> {
        if self.input.is_some() {
            return Err(SpecError(
                "with a file part, the spec has no `input`".into(),
            ));
        }
        self.complete(input)
    }

    fn complete(self, input: InputRef) -> Result<JobSpec, SpecError> {
        if self.operation.kind() == OperationKind::Download && input.url().is_none() {
            return Err(SpecError(
                "download takes a url input: {\"url\": \"https://…\"}".into(),
            ));
        }
        Ok(JobSpec {
            operation: self.operation,
            input,
            output: self.output,
        })
    }
}

impl JobSpec {
    /// Parses and validates a job request from JSON bytes.
    pub fn parse(json: &[u8]) -> Result<Self, SpecError> {
        JobDraft::parse(json)?.into_spec()
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
        assert_eq!(
            spec.operation,
            Operation::Analyze(AnalyzeOptions::default())
        );
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

    #[test]
    fn edits_and_codec_options_are_validated() {
        let upl = UploadId::new();
        let convert = |options: &str| {
            parse(&format!(
                r#"{{"operation":"convert","input":{{"upload":"{upl}"}},"options":{options}}}"#
            ))
        };
        for ok in [
            r#"{"format":"opus","bitrate":96}"#,
            r#"{"format":"mp3","quality":2}"#,
            r#"{"format":"wav","sample_format":"f32"}"#,
            r#"{"format":"flac","sample_format":"s24","channel":1,"channels":2}"#,
            r#"{"format":"wav","start":1.5,"end":3,"gain_db":-3,"fade_in":0.5,"fade_out":1}"#,
            r#"{"format":"mp3","normalize":{"target_lufs":-14},"trim_silence":{}}"#,
        ] {
            assert!(convert(ok).is_ok(), "refused: {ok}: {:?}", convert(ok));
        }
        for bad in [
            r#"{"format":"aac"}"#,
            r#"{"format":"opus","sample_rate":44100}"#,
            r#"{"format":"opus","bitrate":600}"#,
            r#"{"format":"opus","quality":3}"#,
            r#"{"format":"mp3","bitrate":192,"quality":2}"#,
            r#"{"format":"mp3","quality":10}"#,
            r#"{"format":"flac","sample_format":"f32"}"#,
            r#"{"format":"mp3","sample_format":"s24"}"#,
            r#"{"format":"wav","start":3,"end":1}"#,
            r#"{"format":"wav","start":-1}"#,
            r#"{"format":"wav","gain_db":100}"#,
            r#"{"format":"wav","fade_in":1e9}"#,
            r#"{"format":"wav","normalize":{"target_lufs":0}}"#,
            r#"{"format":"wav","normalize":{"target_lufs":-23,"true_peak_dbtp":3}}"#,
            r#"{"format":"wav","trim_silence":{"threshold_db":-5}}"#,
            r#"{"format":"wav","channel":99}"#,
        ] {
            assert!(convert(bad).is_err(), "accepted: {bad}");
        }
        let analyze = |options: &str| {
            parse(&format!(
                r#"{{"operation":"analyze","input":{{"upload":"{upl}"}},"options":{options}}}"#
            ))
        };
        assert!(analyze(r#"{"waveform_buckets":500,"waveform_png":true,"tempo":false}"#).is_ok());
        assert!(analyze(r#"{"waveform_buckets":1000000}"#).is_err());
        assert!(analyze(r#"{"waveform_buckets":0,"waveform_png":true}"#).is_err());
        assert!(analyze(r#"{"silence_threshold_db":0}"#).is_err());
    }

    #[test]
    fn messages_are_sentences_without_rust_types_or_positions() {
        let upl = UploadId::new();
        let cases = [
            (
                format!(r#"{{"operation":"convert","input":{{"upload":"{upl}"}},"options":{{"format":"mp3","bitrate":"high"}}}}"#),
                "options.bitrate: expected a whole number, 0 or more, got the string \"high\"",
            ),
            (
                format!(r#"{{"operation":"convert","input":{{"upload":"{upl}"}},"options":{{"format":"mp3","normalize":-14}}}}"#),
                "options.normalize: expected an object, got the number -14",
            ),
            (
                format!(r#"{{"operation":"convert","input":{{"upload":"{upl}"}},"options":{{"format":"aac"}}}}"#),
                "options.format: \"aac\" is not one of the choices; expected one of wav, flac, mp3, opus",
            ),
            (
                r#"{"operation":"analyze","input":{"url":"https://a.example/x.mp3","upload":"upl_x"}}"#.into(),
                "input: an input is one upload, one artifact or one url, not upload and url together",
            ),
            (
                r#"{"operation":"analyze","input":{}}"#.into(),
                "input: give one of upload, artifact or url",
            ),
            (
                r#"{"operation":"analyze","input":{"file":"/etc/passwd"}}"#.into(),
                "input: unknown kind of input \"file\"; give one of upload, artifact or url",
            ),
            (
                r#"{"operation":"analyze","input":{"upload":"../x"}}"#.into(),
                "input: upload is not an upload id (upl_…)",
            ),
            (
                r#"{"operation":"analyze"}"#.into(),
                "\"input\" is required",
            ),
            (
                format!(r#"{{"operation":"analyze","input":{{"upload":"{upl}"}},"options":{{"waveform_buckets":1.5}}}}"#),
                "options.waveform_buckets: expected a whole number, 0 or more, got the number 1.5",
            ),
            (
                format!(r#"{{"operation":"analyze","input":{{"upload":"{upl}"}}"#),
                "the JSON text ends too early",
            ),
        ];
        for (json, expected) in cases {
            let message = parse(&json).unwrap_err().0;
            assert_eq!(message, expected, "{json}");
        }
        // The derived structs' own wording never leaks either.
        for json in [
            format!(
                r#"{{"operation":"convert","input":{{"upload":"{upl}"}},"options":{{"format":"wav","trim_silence":[1]}}}}"#
            ),
            format!(
                r#"{{"operation":"separate","input":{{"upload":"{upl}"}},"options":{{"shifts":"many"}}}}"#
            ),
            r#"{"operation":"download","input":{"url":"http://x/"},"options":{"format":"mp3","normalize":{"target_lufs":"loud"}}}"#.to_string(),
            format!(
                r#"{{"operation":"convert","input":{{"upload":"{upl}"}},"options":{{"format":"wav"}}, "x": 1}}"#
            ),
        ] {
            let message = parse(&json).unwrap_err().0;
            for bad in [
                "u32", "u8", "f64", "struct ", "line ", "column ", "`", "Raw",
            ] {
                assert!(!message.contains(bad), "{json}: {message}");
            }
        }
    }

    #[test]
    fn stored_options_are_read_by_shape_so_a_tightened_rule_spares_queued_jobs() {
        // Valid when the job was accepted; suppose the rules have since tightened so that
        // they are not: the stored form still reads, a new request is refused.
        let cases = [
            (
                OperationKind::Separate,
                serde_json::json!({"model": "htdemucs", "shifts": 50}),
            ),
            (
                OperationKind::Convert,
                serde_json::json!({"format": "mp3", "bitrate": 100}),
            ),
            (
                OperationKind::Analyze,
                serde_json::json!({"waveform_buckets": 200000}),
            ),
            (OperationKind::Download, serde_json::json!({"max_items": 5})),
        ];
        for (kind, options) in cases {
            let stored = Operation::from_stored(kind, &options).unwrap();
            assert_eq!(stored.kind(), kind);
            assert!(Operation::from_parts(kind, &options).is_err(), "{options}");
            assert!(stored.validate().is_err());
        }
        // The shape is still checked: a job whose options are not these types fails.
        for (kind, options) in [
            (OperationKind::Convert, serde_json::json!({"bitrate": 128})),
            (
                OperationKind::Convert,
                serde_json::json!({"format": "mp3", "volume": 3}),
            ),
            (
                OperationKind::Separate,
                serde_json::json!({"shifts": "many"}),
            ),
        ] {
            assert!(Operation::from_stored(kind, &options).is_err(), "{options}");
        }
    }

    #[test]
    fn operations_travel_tagged_with_their_options() {
        let operation = Operation::from_parts(
            OperationKind::Convert,
            &serde_json::json!({"format": "opus", "bitrate": 96}),
        )
        .unwrap();
        let value = serde_json::to_value(&operation).unwrap();
        assert_eq!(value["operation"], "convert");
        assert_eq!(value["options"], operation.options_json());
        assert_eq!(
            serde_json::from_value::<Operation>(value).unwrap(),
            operation
        );
    }

    #[test]
    fn options_are_checked_against_the_probed_input() {
        let media = MediaInfo {
            container: "wav".into(),
            codec: "pcm_s16le".into(),
            duration_secs: Some(10.0),
            sample_rate: 44_100,
            channels: 2,
            bit_rate: None,
        };
        let convert = |options: serde_json::Value| {
            Operation::from_parts(OperationKind::Convert, &options).unwrap()
        };
        for ok in [
            serde_json::json!({"format": "wav", "start": 9.5, "end": 20}),
            serde_json::json!({"format": "wav", "channel": 1}),
            serde_json::json!({"format": "wav"}),
        ] {
            assert_eq!(convert(ok.clone()).check_input(&media), Ok(()), "{ok}");
        }
        let e = convert(serde_json::json!({"format": "wav", "start": 10}))
            .check_input(&media)
            .unwrap_err();
        assert!(e.0.contains("past the end") && e.0.contains("10 s"), "{e}");
        let e = convert(serde_json::json!({"format": "mp3", "channel": 2}))
            .check_input(&media)
            .unwrap_err();
        assert!(
            e.0.contains("2 channels") && e.0.contains("no channel 2"),
            "{e}"
        );
        let mono = MediaInfo {
            channels: 1,
            ..media.clone()
        };
        let e = convert(serde_json::json!({"format": "mp3", "channel": 1}))
            .check_input(&mono)
            .unwrap_err();
        assert!(e.0.contains("1 channel,"), "{e}");
        // Unknown length: nothing to judge.
        let unknown = MediaInfo {
            duration_secs: None,
            ..media
        };
        assert_eq!(
            convert(serde_json::json!({"format": "wav", "start": 1e6})).check_input(&unknown),
            Ok(())
        );
    }

    #[test]
    fn download_takes_a_url_and_optional_conversion() {
        let spec = parse(
            r#"{"operation":"download","input":{"url":"https://www.youtube.com/watch?v=x"},"options":{"format":"mp3","bitrate":320}}"#,
        )
        .unwrap();
        assert_eq!(
            spec.input.url().map(InputUrl::as_str),
            Some("https://www.youtube.com/watch?v=x")
        );
        let Operation::Download(o) = &spec.operation else {
            panic!("not download")
        };
        assert!(!o.playlist);
        let convert = o.convert.as_ref().unwrap();
        assert_eq!(
            (convert.format, convert.bitrate),
            (AudioFormat::Mp3, Some(320))
        );
        // Stored options read back to the same operation.
        assert_eq!(
            Operation::from_parts(OperationKind::Download, &spec.operation.options_json()).unwrap(),
            spec.operation
        );

        let as_is = parse(
            r#"{"operation":"download","input":{"url":"http://example.com/a.mp3"},"options":{"playlist":true,"max_items":5}}"#,
        )
        .unwrap();
        assert_eq!(
            as_is.operation,
            Operation::Download(DownloadOptions {
                playlist: true,
                max_items: Some(5),
                convert: None
            })
        );
        assert_eq!(
            Operation::from_parts(OperationKind::Download, &as_is.operation.options_json())
                .unwrap(),
            as_is.operation
        );
        // Any operation takes a url input.
        assert!(
            parse(r#"{"operation":"analyze","input":{"url":"https://soundcloud.com/a/b"}}"#)
                .is_ok()
        );

        let upl = UploadId::new();
        for bad in [
            format!(r#"{{"operation":"download","input":{{"upload":"{upl}"}}}}"#),
            r#"{"operation":"download","input":{"url":"file:///etc/passwd"}}"#.into(),
            r#"{"operation":"download","input":{"url":"gopher://x/"}}"#.into(),
            r#"{"operation":"download","input":{"url":"http://x/"},"options":{"bitrate":128}}"#.into(),
            r#"{"operation":"download","input":{"url":"http://x/"},"options":{"format":"aac"}}"#.into(),
            r#"{"operation":"download","input":{"url":"http://x/"},"options":{"format":"mp3","bogus":1}}"#.into(),
            r#"{"operation":"download","input":{"url":"http://x/"},"options":{"playlist":"yes"}}"#.into(),
            r#"{"operation":"download","input":{"url":"http://x/"},"options":{"max_items":3}}"#.into(),
            r#"{"operation":"download","input":{"url":"http://x/"},"options":{"playlist":true,"max_items":0}}"#.into(),
            r#"{"operation":"analyze","input":{"url":"http://x/","upload":"upl_x"}}"#.into(),
        ] {
            assert!(parse(&bad).is_err(), "accepted: {bad}");
        }
    }
}

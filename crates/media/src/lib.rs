//! The audio engine of audiomill: probing, decoding, channel mapping, resampling, loudness
//! measurement and encoding of local audio files.
//!
//! # What it owns
//! The three operations the worker runs — [`probe()`], [`analyze()`] and [`convert()`] — and the
//! streaming parts they are built from: [`Decoder`] (any supported input to interleaved `f32`
//! chunks), [`ChannelMixer`], [`Resampler`], [`LoudnessMeter`] and the [`encode`] module's
//! WAV / FLAC / MP3 encoders. Failures are [`MediaError`]s, each with a stable
//! [`audiomill_core::ErrorCode`] and a message safe to show to clients.
//!
//! Inputs: WAV, AIFF, CAF, FLAC, MP3, Ogg Vorbis, MP4/M4A (AAC-LC, ALAC), MKV/WebM, decoded
//! by symphonia. Outputs: 16-bit WAV, FLAC (16 or 24 bits), CBR MP3.
//!
//! # What it must not depend on
//! No async runtime (tokio), no HTTP, no SQL, no other audiomill crate but `audiomill-core`.
//! Every function here is synchronous, CPU-bound and works on paths the caller chose; the
//! worker runs it on a blocking thread and owns storage, job state and cancellation.
//!
//! # Choices that are not obvious
//! - **Content, not names.** The container is recognized from the file's leading bytes
//!   (`sniff.rs`) and symphonia's probe runs with no extension hint. Files whose start matches
//!   no known container are refused as `UnsupportedFormat` before symphonia sees them: its
//!   probe scans far ahead for a marker and would accept random data that happens to contain
//!   an MP3 sync word.
//! - **Limits before decoding, and again during.** [`probe()`] checks sample rate, channels and
//!   duration from the headers. PCM durations are capped by the bytes actually present; when
//!   the headers give no duration (MP3 without Xing/VBRI, some Matroska), packets are counted
//!   without decoding. The [`Decoder`] then stops with `InputTooLong` as soon as the decoded
//!   frames pass the limit, since headers lie.
//! - **Errors, never panics.** Every call into symphonia runs under `catch_unwind` (so the
//!   workspace must keep `panic = "unwind"`), turning a decoder bug on hostile input into
//!   `DecodeFailed` instead of a dead worker. Corrupt packets are skipped, as ffmpeg does; a
//!   stream that ends early keeps what decoded; nothing decodable at all is `DecodeFailed`.
//!   WAV/AIFF headers are checked first (`iff.rs`): a header chunk larger than the file is
//!   refused, and a data chunk larger than the file (truncated, or a streaming recorder's
//!   placeholder size) is presented to symphonia with the size the file really has.
//! - **Bounded memory.** Everything streams one packet at a time (decode → channel map →
//!   resample → encode); no stage holds more than a few thousand frames, whatever the length
//!   (a 2-hour stereo file converts in under 10 MB RSS). The FLAC encoder writes frame by
//!   frame and rewrites STREAMINFO at the end; the MP3 encoder fills in the LAME/Info tag at
//!   the end; WAV sizes are patched by `hound`.
//! - **Gapless MP3.** Encoder delay and padding declared in a LAME tag are trimmed on
//!   decoding, and our MP3s carry one, so WAV → MP3 → decode keeps the exact length.
//! - **Symphonia 0.5 quirks worked around:** AIFF length from `COMM` (its `SSND`-based count
//!   is two frames long), Matroska durations converted from the track time base (they are in
//!   milliseconds, not frames), truncated small Ogg files reopened as a stream, and rubato's
//!   `output_delay()` not used for alignment (see [`Resampler`]).
//! - **Loudness** is `ebur128` (a port of libebur128; matches ffmpeg's `ebur128` filter within
//!   0.05 LU on our test signal); RMS and sample peak are computed alongside in `f64`. dB
//!   figures of digital silence are `None`, not −∞, because JSON has no infinity.

pub mod analyze;
pub mod channels;
mod codec;
pub mod convert;
pub mod decode;
pub mod encode;
pub mod error;
mod iff;
pub mod loudness;
mod open;
pub mod probe;
mod progress;
pub mod resample;
mod sniff;

pub use analyze::{analyze, Analysis};
pub use channels::ChannelMixer;
pub use convert::convert;
pub use decode::Decoder;
pub use error::MediaError;
pub use loudness::{Levels, LoudnessMeter};
pub use probe::probe;
pub use resample::Resampler;

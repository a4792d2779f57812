//! The audio engine of audiomill: probing, decoding, channel mapping, resampling, loudness
//! measurement and encoding of local audio files.
//!
//! # What it owns
//! The three operations the worker runs — [`probe()`], [`analyze()`] and [`convert()`] — and the
//! streaming parts they are built from: [`Decoder`] (any supported input to interleaved `f32`
//! chunks), [`ChannelMixer`], the edits of `convert` (`edit/`: trim, silence trim, gain,
//! normalization, fades), [`Resampler`], [`LoudnessMeter`] and the [`encode`] module's
//! WAV / FLAC / MP3 / Opus encoders (built by [`encode::create_encoder`]), and the [`tags`]
//! carried from input to output. Failures are [`MediaError`]s, each with a stable
//! [`audiomill_core::ErrorCode`] and a message safe to show to clients.
//!
//! Inputs: WAV, AIFF, CAF, FLAC, MP3, MP2/MP1, Ogg Vorbis, Opus (in Ogg or Matroska/WebM),
//! MP4/M4A (AAC-LC, ALAC), MKV/WebM, decoded by symphonia except Opus (libopus, plugged into
//! symphonia's codec registry: `opus.rs`). Outputs: WAV (16-bit, 24-bit or 32-bit float),
//! FLAC (16 or 24 bits), MP3 (CBR or VBR), Ogg Opus (48 kHz). Anything else is refused as
//! `UnsupportedFormat`, naming what it is when its signature tells ("this is a PNG image,
//! not audio", "AC-3 (Dolby Digital) audio is not supported", "the file has no audio track").
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
//!   MP4 box trees are checked first too (`isobmff.rs`): symphonia sizes allocations from
//!   sample-table counts and sizes, and a forged one would abort the process (a failed
//!   allocation is not a panic). Fuzzing (`fuzz/`) found those; `tests/regressions/` keeps them.
//! - **Bounded memory.** Everything streams one packet at a time (decode → channel map →
//!   resample → encode); no stage holds more than a few thousand frames, whatever the length
//!   (a 2-hour stereo file converts in under 10 MB RSS). The FLAC encoder writes frame by
//!   frame and rewrites STREAMINFO at the end; the MP3 encoder fills in the LAME/Info tag at
//!   the end; WAV sizes are patched at the end; the Opus encoder pages its packets as they
//!   come.
//! - **Edits stream too** (`edit/`). [`convert()`] applies, in this order: channel pick or
//!   channel map → trim (`start`, `end`) → trim silence → gain and normalization → fades →
//!   resample → encode, each stage on interleaved `f32` chunks at the input rate. Trims count
//!   decoded frames (sample-accurate; `end` is clamped to the input, decoding stops there; a
//!   `start` at or past the end is `InvalidOptions`, from the header for PCM WAV/AIFF, else
//!   at the end of the pass). A picked `channel` is a mixer matrix, checked against the probe
//!   before decoding. Silence is frames whose every sample is at or under the threshold;
//!   leading silence is dropped as it comes, trailing silence is only known at the end, so
//!   the current silent run is held back and released if audio resumes. Fades are linear in
//!   amplitude (first and last sample exactly 0), clamped to the audio's length; they need
//!   that length, known in advance from a PCM WAV/AIFF header (without silence trimming) or
//!   from normalization's first pass, else learnt by holding back the last `fade_out`
//!   frames. Held-back audio (a silent run, a fade) stays exact and bounded: a few MiB in
//!   memory, the rest in an unlinked temporary file next to the output. Gain is applied in
//!   `f32` without clipping (integer and lossy encoders clip; float WAV keeps it). Trimmed
//!   then resampled audio has the exact resampled length of the kept frames. All silence
//!   after `trim_silence` is refused (`InvalidOptions`) rather than written as an empty file.
//! - **Normalization decodes the input twice**, never buffering it: a first pass runs the
//!   same pick/trim/silence stages into an EBU R128 meter (integrated loudness and 4×
//!   oversampled true peak) and learns the exact range of kept frames; the gain is
//!   `target − measured`, lowered so that `true peak + gain ≤ ceiling` (digital silence or
//!   under 0.4 s: no gain, a warning in the log; `gain_db` before normalization is compensated
//!   by it). The second pass trims to the learnt range, applies the gain and the fades, and
//!   encodes. Progress runs 0–0.5 over the first pass and 0.5–1 over the second. Measured
//!   (release, 2-hour 44.1 kHz stereo): WAV → FLAC normalized with silence trim and fades,
//!   10 MB peak RSS; FLAC → FLAC with a held-back 10-minute fade-out, 13 MB peak RSS plus a
//!   ~210 MB temporary file (the ignored test `two_hours_normalized_to_flac_in_bounded_memory`).
//! - **Gapless MP3.** Encoder delay and padding declared in a LAME tag are trimmed on
//!   decoding, and our MP3s carry one, so WAV → MP3 → decode keeps the exact length.
//! - **Gapless Opus.** Opus is written by our own Ogg writer: pre-skip = libopus's lookahead,
//!   the last page's granule position cuts the final frame's padding, so ffmpeg and our
//!   decoder return exactly the input's length. Reading, the pre-skip from `OpusHead` is
//!   dropped, and the end is trimmed to the last granule (Ogg) or capped at the declared
//!   duration (Matroska: symphonia ignores `DiscardPadding`, so WebM Opus may keep up to one
//!   frame of trailing encoder padding). libopus 1.6 comes from `opusic-sys`, built from its
//!   bundled source with cmake and linked statically: building needs cmake, running needs
//!   nothing.
//! - **Tags travel, bounded.** Title, artist, album, track, date and a JPEG/PNG front cover
//!   are read from whatever the input carries (ID3v2/ID3v1, Vorbis comments, FLAC pictures,
//!   MP4 `ilst`, RIFF `INFO`) while the file is opened, with each text cut to 1 KiB and a
//!   cover over 16 MiB dropped, and written in the output's own form (ID3v2.4, Vorbis
//!   comments + `PICTURE`, `OpusTags`, `LIST`/`INFO` without cover).
//! - **Codec and container names follow ffmpeg's:** MPEG audio elementary streams are
//!   container `mp3` whatever the layer, with codec `mp1`, `mp2` or `mp3`.
//! - **Symphonia 0.5 quirks worked around:** AIFF length from `COMM` (its `SSND`-based count
//!   is two frames long), Matroska durations converted from the track time base (they are in
//!   milliseconds, not frames), truncated small Ogg files reopened as a stream, and rubato's
//!   `output_delay()` not used for alignment (see [`Resampler`]).
//! - **Loudness** is `ebur128` (a port of libebur128; matches ffmpeg's `ebur128` filter within
//!   0.05 LU on our test signal); RMS and sample peak are computed alongside in `f64`. dB
//!   figures of digital silence are `None`, not −∞, because JSON has no infinity.
//! - **[`analyze()`] measures everything in its one decoding pass**, in memory that depends on
//!   the options, not the length, except the tempo envelope (4 bytes per 10 ms: 2.9 MB for
//!   2 hours). Definitions: *clipped samples* are samples in runs of ≥ 2 consecutive samples
//!   of one channel, same sign, at |x| ≥ 0.9999 (a flat top; a lone full-scale crest is not
//!   clipping); *DC offset* is each channel's mean; *silence* is a run of consecutive 10 ms
//!   windows in which every channel's RMS is under the threshold, lasting at least the
//!   minimum (boundaries on the 10 ms grid; the first 10000 runs); the *waveform* cuts the
//!   length the headers promise into equal buckets (frames past it go to the last bucket,
//!   buckets past a shorter stream are 0) with min/max rounded to 1e-4; the *tempo* is the
//!   autocorrelation of a spectral-flux onset envelope (~100 frames/s) over 40-220 BPM with
//!   a preference for 120 BPM, refined to well under 1 BPM, with a confidence from the peak's
//!   prominence (method and octave rule in [`tempo`]). [`render_waveform_png`] draws the
//!   overview (one lane per channel, transparent background) with the pure-Rust `png` crate.

pub mod analyze;
pub mod channels;
mod codec;
pub mod convert;
pub mod decode;
mod edit;
pub mod encode;
pub mod error;
mod iff;
mod isobmff;
pub mod levels;
pub mod loudness;
mod open;
mod opus;
pub mod probe;
mod progress;
pub mod resample;
mod sniff;
pub mod tags;
pub mod tempo;
pub mod waveform;

pub use analyze::{analyze, Analysis};
pub use channels::ChannelMixer;
pub use convert::{convert, convert_tagged, Converted};
pub use decode::Decoder;
pub use edit::normalize::Normalization;
pub use error::MediaError;
pub use levels::Segment;
pub use loudness::{Levels, LoudnessMeter};
pub use open::read_tags;
pub use probe::probe;
pub use resample::Resampler;
pub use waveform::{render_waveform_png, Waveform};

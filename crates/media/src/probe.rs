//! Opening an audio file and describing it from its headers, with the limits checked before
//! any audio is decoded.

use crate::iff::{check_iff_chunks, PatchedFile};
use crate::sniff::sniff;
use crate::MediaError;
use audiomill_core::{Limits, MediaInfo};
use std::fs::File;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use symphonia::core::audio::Channels;
use symphonia::core::codecs::{self, CodecParameters, CodecType, DecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::{FormatOptions, FormatReader};
use symphonia::core::io::{
    MediaSource, MediaSourceStream, MediaSourceStreamOptions, ReadOnlySource,
};
use symphonia::core::meta::{Limit, MetadataOptions};
use symphonia::core::probe::{Hint, ProbeResult};

/// Runs `f`, turning a panic inside a decoding library into `DecodeFailed`.
///
/// Symphonia is written to return errors, but a decoder fed hostile data is exactly where an
/// overlooked `unwrap` or slice index would fire; a job must fail, not the worker.
pub(crate) fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, MediaError> {
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        MediaError::decode(format!("{what} panicked: {message}"))
    })
}

/// Maps a symphonia error to ours.
pub(crate) fn sym_error(err: SymError) -> MediaError {
    match err {
        SymError::Unsupported(what) => MediaError::unsupported(what),
        // Only an error the OS reported is an I/O failure; symphonia also uses io errors
        // (mostly `UnexpectedEof`) for data that ends too early.
        SymError::IoError(e) if e.raw_os_error().is_some() => {
            MediaError::io("reading the input", e)
        }
        other => MediaError::decode(other.to_string()),
    }
}

/// Whether `err` means the stream simply ended (possibly early, for a truncated file).
pub(crate) fn is_end_of_stream(err: &SymError) -> bool {
    matches!(err, SymError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof)
}

/// A demuxer positioned at the start of the chosen audio track.
pub(crate) struct OpenTrack {
    pub format: Box<dyn FormatReader>,
    pub track_id: u32,
    pub params: CodecParameters,
    pub container: &'static str,
    pub file_len: u64,
    /// Frames a header outside symphonia's view declares (AIFF `COMM`), to cap decoding at.
    pub declared_frames: Option<u64>,
}

/// Opens `path`, recognizes its container by content and picks its audio track.
pub(crate) fn open_track(path: &Path) -> Result<OpenTrack, MediaError> {
    let mut file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => MediaError::InputNotFound(e),
        _ => MediaError::io("opening the input", e),
    })?;
    let file_len = file
        .metadata()
        .map_err(|e| MediaError::io("reading the input", e))?
        .len();
    if file_len == 0 {
        return Err(MediaError::unsupported("empty file"));
    }
    let container = sniff(&mut file, file_len)?
        .ok_or_else(|| MediaError::unsupported("no known container signature"))?;
    let layout = if container == "wav" || container == "aiff" {
        check_iff_chunks(&mut file, file_len, container)?
    } else {
        Default::default()
    };
    let io = |e| MediaError::io("reading the input", e);
    std::io::Seek::rewind(&mut file).map_err(io)?;
    let retry = if container == "ogg" {
        Some(file.try_clone().map_err(io)?)
    } else {
        None
    };
    let source: Box<dyn MediaSource> = if layout.patches.is_empty() {
        Box::new(file)
    } else {
        Box::new(PatchedFile::new(file, file_len, layout.patches))
    };
    let probed = match (probe_format(source, container), retry) {
        // A truncated Ogg file: symphonia's reader looks for the last page to learn the
        // duration and gives up when it is cut; read it as a stream instead (the duration is
        // then counted from the packets).
        (Err(MediaError::DecodeFailed { .. }), Some(mut again)) => {
            std::io::Seek::rewind(&mut again).map_err(io)?;
            probe_format(Box::new(ReadOnlySource::new(again)), container)?
        }
        (result, _) => result?,
    };
    let format = probed.format;
    let codecs = symphonia::default::get_codecs();
    let playable = |params: &CodecParameters| {
        params.codec != codecs::CODEC_TYPE_NULL && codecs.get_codec(params.codec).is_some()
    };
    let track = format
        .default_track()
        .filter(|t| playable(&t.codec_params))
        .or_else(|| format.tracks().iter().find(|t| playable(&t.codec_params)))
        .ok_or_else(|| match format.tracks().first() {
            Some(t) => MediaError::unsupported(format!(
                "{container}: codec {} has no decoder",
                codec_name(&t.codec_params)
            )),
            None => MediaError::unsupported(format!("{container}: no audio track")),
        })?;
    let (track_id, params) = (track.id, track.codec_params.clone());
    Ok(OpenTrack {
        format,
        track_id,
        params,
        container,
        file_len,
        declared_frames: layout.declared_frames,
    })
}

/// Runs symphonia's probe, with no extension or MIME hint: the content alone decides.
fn probe_format(source: Box<dyn MediaSource>, container: &str) -> Result<ProbeResult, MediaError> {
    let stream = MediaSourceStream::new(source, MediaSourceStreamOptions::default());
    let format_options = FormatOptions {
        enable_gapless: true,
        ..Default::default()
    };
    let metadata_options = MetadataOptions {
        limit_metadata_bytes: Limit::Maximum(1 << 20),
        limit_visual_bytes: Limit::Maximum(16 << 20),
    };
    guarded("demuxer", || {
        symphonia::default::get_probe().format(
            &Hint::new(),
            stream,
            &format_options,
            &metadata_options,
        )
    })?
    .map_err(|e| match e {
        SymError::Unsupported(_) => MediaError::unsupported(format!("{container}: {e}")),
        other => sym_error(other),
    })
}

/// Creates a decoder for the track.
pub(crate) fn make_decoder(
    params: &CodecParameters,
) -> Result<Box<dyn codecs::Decoder>, MediaError> {
    guarded("decoder setup", || {
        symphonia::default::get_codecs().make(params, &DecoderOptions::default())
    })?
    .map_err(sym_error)
}

/// What the engine knows about an input after probing it.
#[derive(Debug, Clone)]
pub(crate) struct Inspected {
    pub info: MediaInfo,
    /// Speaker positions, in the order channels are interleaved, when the container says.
    pub layout: Option<Channels>,
    /// Bits per sample of the source, for lossless codecs.
    pub bits_per_sample: Option<u32>,
    /// Whether the codec is lossless (PCM, FLAC, ALAC).
    pub lossless: bool,
    /// The number of frames the headers (or a packet count) promise.
    pub frames: u64,
    /// Frames never to decode past (a declared count symphonia does not apply itself).
    pub frame_cap: Option<u64>,
}

/// Probes `path` and checks it against `limits`.
///
/// Sample rate and channel count come from the headers; the duration comes from the headers,
/// or, when they do not say (MP3 without a Xing/VBRI frame, some Matroska files), from
/// demuxing every packet without decoding it.
pub fn probe(path: &Path, limits: &Limits) -> Result<MediaInfo, MediaError> {
    inspect(path, limits).map(|i| i.info)
}

pub(crate) fn inspect(path: &Path, limits: &Limits) -> Result<Inspected, MediaError> {
    let mut track = open_track(path)?;
    let params = track.params.clone();
    let sample_rate = params
        .sample_rate
        .filter(|r| *r > 0)
        .ok_or_else(|| MediaError::decode("no sample rate in the headers"))?;
    if sample_rate > limits.max_sample_rate {
        return Err(MediaError::SampleRateTooHigh {
            sample_rate,
            max: limits.max_sample_rate,
        });
    }
    let channels = match params.channels {
        Some(channels) => channels.count() as u32,
        None => channels_of_first_packet(&mut track)?,
    };
    if channels == 0 {
        return Err(MediaError::decode("no channels in the headers"));
    }
    if channels > u32::from(limits.max_channels) {
        return Err(MediaError::TooManyChannels {
            channels,
            max: limits.max_channels,
        });
    }
    let max_frames = max_frames(limits, sample_rate);
    let frames = match params.n_frames {
        Some(n) => clamp_to_file(
            to_frames(n, &params, sample_rate),
            &params,
            track.file_len,
            channels,
        )
        .min(track.declared_frames.unwrap_or(u64::MAX)),
        None => count_frames(
            path,
            &params,
            max_frames,
            limits.max_duration_secs,
            sample_rate,
        )?,
    };
    let duration_secs = frames as f64 / f64::from(sample_rate);
    if frames > max_frames {
        return Err(MediaError::InputTooLong {
            duration_secs,
            max_secs: limits.max_duration_secs,
        });
    }
    let pcm_bits = pcm_bits(&params);
    let bit_rate = match pcm_bits {
        Some(bits) => Some(u64::from(sample_rate) * u64::from(channels) * u64::from(bits)),
        None if duration_secs > 0.0 => {
            Some((track.file_len as f64 * 8.0 / duration_secs).round() as u64)
        }
        None => None,
    };
    let lossless = pcm_bits.is_some()
        || matches!(
            params.codec,
            codecs::CODEC_TYPE_FLAC | codecs::CODEC_TYPE_ALAC
        );
    let layout = params
        .channels
        .filter(|layout| layout.count() as u32 == channels);
    Ok(Inspected {
        info: MediaInfo {
            container: track.container.to_string(),
            codec: codec_name(&params),
            duration_secs: Some(duration_secs),
            sample_rate,
            channels: channels as u16,
            bit_rate,
        },
        layout,
        bits_per_sample: params.bits_per_sample.filter(|_| lossless),
        lossless,
        frames,
        frame_cap: track.declared_frames,
    })
}

/// The most frames an input may have under `limits`.
pub(crate) fn max_frames(limits: &Limits, sample_rate: u32) -> u64 {
    limits
        .max_duration_secs
        .saturating_mul(u64::from(sample_rate))
}

/// Bits per stored sample of uncompressed PCM; `None` for other codecs.
fn pcm_bits(params: &CodecParameters) -> Option<u32> {
    pcm_index(params.codec)?;
    match params.codec {
        codecs::CODEC_TYPE_PCM_ALAW | codecs::CODEC_TYPE_PCM_MULAW => Some(8),
        _ => params.bits_per_coded_sample.or(params.bits_per_sample),
    }
}

/// A header may promise more PCM frames than the file holds (truncated, or forged to look
/// long): never believe more than the bytes present can carry.
fn clamp_to_file(frames: u64, params: &CodecParameters, file_len: u64, channels: u32) -> u64 {
    match pcm_bits(params) {
        Some(bits) if bits > 0 => {
            let frame_bits = u64::from(bits) * u64::from(channels);
            frames.min(file_len.saturating_mul(8) / frame_bits)
        }
        _ => frames,
    }
}

/// Converts a timestamp in the track's time base to frames. Most containers count in frames
/// already; Matroska counts in milliseconds (its timestamp scale).
fn to_frames(ts: u64, params: &CodecParameters, sample_rate: u32) -> u64 {
    match params.time_base {
        Some(tb) if tb.denom > 0 && !(tb.numer == 1 && tb.denom == sample_rate) => {
            let frames = u128::from(ts) * u128::from(tb.numer) * u128::from(sample_rate)
                / u128::from(tb.denom);
            u64::try_from(frames).unwrap_or(u64::MAX)
        }
        _ => ts,
    }
}

/// Counts the frames of the track by reading its packets without decoding them: the end of
/// the last packet (timestamp + duration), or the sum of the durations if larger.
fn count_frames(
    path: &Path,
    params: &CodecParameters,
    max_frames: u64,
    max_secs: u64,
    sample_rate: u32,
) -> Result<u64, MediaError> {
    let mut track = open_track(path)?;
    let (mut sum, mut end) = (0u64, 0u64);
    let mut packets = 0u64;
    loop {
        match guarded("demuxer", || track.format.next_packet())? {
            Ok(packet) if packet.track_id() == track.track_id => {
                sum = sum.saturating_add(packet.dur());
                end = end.max(packet.ts().saturating_add(packet.dur()));
                packets += 1;
                let frames = to_frames(sum.max(end), params, sample_rate);
                if frames > max_frames {
                    return Err(MediaError::InputTooLong {
                        duration_secs: frames as f64 / f64::from(sample_rate),
                        max_secs,
                    });
                }
            }
            Ok(_) => {}
            Err(e) if is_end_of_stream(&e) || matches!(e, SymError::ResetRequired) => break,
            // Garbage after some audio: a damaged tail, which decoding will skip or stop at.
            Err(_) if packets > 0 => break,
            Err(e) => return Err(sym_error(e)),
        }
    }
    if packets == 0 {
        return Err(MediaError::decode("no audio packets"));
    }
    Ok(to_frames(sum.max(end), params, sample_rate))
}

/// For containers that do not declare the channel count: decode until one packet decodes.
fn channels_of_first_packet(track: &mut OpenTrack) -> Result<u32, MediaError> {
    let mut decoder = make_decoder(&track.params)?;
    for _ in 0..64 {
        let packet = match guarded("demuxer", || track.format.next_packet())? {
            Ok(packet) if packet.track_id() == track.track_id => packet,
            Ok(_) => continue,
            Err(e) => return Err(sym_error(e)),
        };
        if let Ok(channels) = guarded("decoder", || {
            decoder
                .decode(&packet)
                .map(|buf| buf.spec().channels.count() as u32)
        })? {
            return Ok(channels);
        }
    }
    Err(MediaError::decode(
        "channel count unknown and no packet decodes",
    ))
}

/// Index of `codec` in [`PCM_NAMES`], if it is uncompressed PCM.
fn pcm_index(codec: CodecType) -> Option<u32> {
    PCM_NAMES
        .iter()
        .position(|(c, _)| *c == codec)
        .map(|i| i as u32)
}

const PCM_NAMES: [(CodecType, &str); 38] = [
    (codecs::CODEC_TYPE_PCM_S32LE, "pcm_s32le"),
    (codecs::CODEC_TYPE_PCM_S32LE_PLANAR, "pcm_s32le"),
    (codecs::CODEC_TYPE_PCM_S32BE, "pcm_s32be"),
    (codecs::CODEC_TYPE_PCM_S32BE_PLANAR, "pcm_s32be"),
    (codecs::CODEC_TYPE_PCM_S24LE, "pcm_s24le"),
    (codecs::CODEC_TYPE_PCM_S24LE_PLANAR, "pcm_s24le"),
    (codecs::CODEC_TYPE_PCM_S24BE, "pcm_s24be"),
    (codecs::CODEC_TYPE_PCM_S24BE_PLANAR, "pcm_s24be"),
    (codecs::CODEC_TYPE_PCM_S16LE, "pcm_s16le"),
    (codecs::CODEC_TYPE_PCM_S16LE_PLANAR, "pcm_s16le"),
    (codecs::CODEC_TYPE_PCM_S16BE, "pcm_s16be"),
    (codecs::CODEC_TYPE_PCM_S16BE_PLANAR, "pcm_s16be"),
    (codecs::CODEC_TYPE_PCM_S8, "pcm_s8"),
    (codecs::CODEC_TYPE_PCM_S8_PLANAR, "pcm_s8"),
    (codecs::CODEC_TYPE_PCM_U32LE, "pcm_u32le"),
    (codecs::CODEC_TYPE_PCM_U32LE_PLANAR, "pcm_u32le"),
    (codecs::CODEC_TYPE_PCM_U32BE, "pcm_u32be"),
    (codecs::CODEC_TYPE_PCM_U32BE_PLANAR, "pcm_u32be"),
    (codecs::CODEC_TYPE_PCM_U24LE, "pcm_u24le"),
    (codecs::CODEC_TYPE_PCM_U24LE_PLANAR, "pcm_u24le"),
    (codecs::CODEC_TYPE_PCM_U24BE, "pcm_u24be"),
    (codecs::CODEC_TYPE_PCM_U24BE_PLANAR, "pcm_u24be"),
    (codecs::CODEC_TYPE_PCM_U16LE, "pcm_u16le"),
    (codecs::CODEC_TYPE_PCM_U16LE_PLANAR, "pcm_u16le"),
    (codecs::CODEC_TYPE_PCM_U16BE, "pcm_u16be"),
    (codecs::CODEC_TYPE_PCM_U16BE_PLANAR, "pcm_u16be"),
    (codecs::CODEC_TYPE_PCM_U8, "pcm_u8"),
    (codecs::CODEC_TYPE_PCM_U8_PLANAR, "pcm_u8"),
    (codecs::CODEC_TYPE_PCM_F32LE, "pcm_f32le"),
    (codecs::CODEC_TYPE_PCM_F32LE_PLANAR, "pcm_f32le"),
    (codecs::CODEC_TYPE_PCM_F32BE, "pcm_f32be"),
    (codecs::CODEC_TYPE_PCM_F32BE_PLANAR, "pcm_f32be"),
    (codecs::CODEC_TYPE_PCM_F64LE, "pcm_f64le"),
    (codecs::CODEC_TYPE_PCM_F64LE_PLANAR, "pcm_f64le"),
    (codecs::CODEC_TYPE_PCM_F64BE, "pcm_f64be"),
    (codecs::CODEC_TYPE_PCM_F64BE_PLANAR, "pcm_f64be"),
    (codecs::CODEC_TYPE_PCM_ALAW, "pcm_alaw"),
    (codecs::CODEC_TYPE_PCM_MULAW, "pcm_mulaw"),
];

/// Short lower-case codec name, in ffmpeg's vocabulary where it has one.
pub(crate) fn codec_name(params: &CodecParameters) -> String {
    if let Some(index) = pcm_index(params.codec) {
        return PCM_NAMES[index as usize].1.to_string();
    }
    let name = match params.codec {
        codecs::CODEC_TYPE_FLAC => "flac",
        codecs::CODEC_TYPE_MP1 => "mp1",
        codecs::CODEC_TYPE_MP2 => "mp2",
        codecs::CODEC_TYPE_MP3 => "mp3",
        codecs::CODEC_TYPE_AAC => "aac",
        codecs::CODEC_TYPE_ALAC => "alac",
        codecs::CODEC_TYPE_VORBIS => "vorbis",
        codecs::CODEC_TYPE_OPUS => "opus",
        codecs::CODEC_TYPE_ADPCM_MS => "adpcm_ms",
        codecs::CODEC_TYPE_ADPCM_IMA_WAV => "adpcm_ima_wav",
        codecs::CODEC_TYPE_ADPCM_IMA_QT => "adpcm_ima_qt",
        other => {
            return symphonia::default::get_codecs()
                .get_codec(other)
                .map_or_else(|| "unknown".to_string(), |d| d.short_name.to_lowercase())
        }
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use audiomill_core::ErrorCode;

    #[test]
    fn a_panic_in_a_library_becomes_decode_failed() {
        let err = guarded("decoder", || -> u32 { panic!("index out of bounds") }).unwrap_err();
        assert_eq!(err.code(), ErrorCode::DecodeFailed);
        assert!(err.to_string().contains("index out of bounds"));
        assert_eq!(guarded("decoder", || 7).unwrap(), 7);
    }
}

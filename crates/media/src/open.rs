//! Opening a file with symphonia: container recognition, header checks, track choice, and
//! the panic guard every call into symphonia goes through.

use crate::codec::codec_name;
use crate::iff::{check_iff_chunks, PatchedFile};
use crate::isobmff::check_mp4_boxes;
use crate::sniff::{describe, sniff};
use crate::tags::Tags;
use crate::MediaError;
use std::fs::File;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use symphonia::core::codecs::{self, CodecParameters, DecoderOptions};
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
    /// Tags and cover art the container (or an ID3 tag) carries, within the limits of
    /// [`crate::tags`].
    pub tags: Tags,
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
    let container = match sniff(&mut file, file_len)? {
        Some(container) => container,
        None => {
            let detail = "no known container signature";
            return Err(match describe(&mut file, file_len)? {
                Some(found) => MediaError::unsupported_found(detail, found),
                None => MediaError::unsupported(detail),
            });
        }
    };
    let layout = if container == "wav" || container == "aiff" {
        check_iff_chunks(&mut file, file_len, container)?
    } else {
        Default::default()
    };
    if container == "mp4" {
        // Symphonia sizes allocations from unchecked MP4 table counts: an absurd one would
        // abort the process (found by fuzzing; see isobmff.rs).
        check_mp4_boxes(&mut file, file_len)?;
    }
    let io = |e| MediaError::io("reading the input", e);
    // ID3v1 sits at the very end of MPEG audio files, where symphonia does not look.
    let id3v1 = if container == "mp3" && file_len >= 128 {
        let mut tail = [0u8; 128];
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(-128)).map_err(io)?;
        std::io::Read::read_exact(&mut file, &mut tail).map_err(io)?;
        crate::tags::id3v1(&tail)
    } else {
        Tags::default()
    };
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
    let mut format = probed.format;
    // Tags: the container's own first, then what the probe found ahead of it (ID3v2), then
    // ID3v1; each source only fills the fields still empty.
    let mut tags = Tags::default();
    if let Some(revision) = format.metadata().current() {
        tags.merge_revision(revision);
    }
    let mut probed_metadata = probed.metadata;
    if let Some(revision) = probed_metadata.get().as_ref().and_then(|m| m.current()) {
        tags.merge_revision(revision);
    }
    tags.fill_from(id3v1);
    let codecs = crate::codec::codecs();
    let playable = |params: &CodecParameters| {
        params.codec != codecs::CODEC_TYPE_NULL && codecs.get_codec(params.codec).is_some()
    };
    let track = format
        .default_track()
        .filter(|t| playable(&t.codec_params))
        .or_else(|| format.tracks().iter().find(|t| playable(&t.codec_params)))
        .ok_or_else(|| no_playable_track(container, format.tracks()))?;
    let (track_id, params) = (track.id, track.codec_params.clone());
    Ok(OpenTrack {
        format,
        track_id,
        params,
        container,
        file_len,
        declared_frames: layout.declared_frames,
        tags,
    })
}

/// Why a container has nothing to decode: no audio track (a video or an image), or audio in a
/// codec the engine does not decode.
fn no_playable_track(container: &str, tracks: &[symphonia::core::formats::Track]) -> MediaError {
    // Demuxers fill in a sample rate for audio tracks only.
    let Some(audio) = tracks.iter().find(|t| t.codec_params.sample_rate.is_some()) else {
        return MediaError::unsupported_found(
            format!("{container}: no audio track"),
            "the file has no audio track",
        );
    };
    let params = &audio.codec_params;
    let name = match params.codec {
        codecs::CODEC_TYPE_EAC3 => Some("E-AC-3 (Dolby Digital Plus)"),
        codecs::CODEC_TYPE_AC4 => Some("AC-4"),
        codecs::CODEC_TYPE_DCA => Some("DTS"),
        codecs::CODEC_TYPE_WMA => Some("WMA"),
        codecs::CODEC_TYPE_SPEEX => Some("Speex"),
        codecs::CODEC_TYPE_MUSEPACK => Some("Musepack"),
        codecs::CODEC_TYPE_WAVPACK => Some("WavPack"),
        codecs::CODEC_TYPE_MONKEYS_AUDIO => Some("Monkey's Audio"),
        codecs::CODEC_TYPE_TTA => Some("TTA"),
        codecs::CODEC_TYPE_ATRAC1
        | codecs::CODEC_TYPE_ATRAC3
        | codecs::CODEC_TYPE_ATRAC3PLUS
        | codecs::CODEC_TYPE_ATRAC9 => Some("ATRAC"),
        _ => None,
    };
    let detail = format!("{container}: codec {} has no decoder", codec_name(params));
    match name {
        Some(name) => {
            MediaError::unsupported_found(detail, format!("{name} audio is not supported"))
        }
        None => MediaError::unsupported_found(
            detail,
            format!("the audio codec in this {container} file is not supported"),
        ),
    }
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
        crate::codec::codecs().make(params, &DecoderOptions::default())
    })?
    .map_err(sym_error)
}

/// The tags of the file at `path`, read without decoding its audio (see [`Tags`] for what is
/// read and the limits applied).
pub fn read_tags(path: &Path) -> Result<Tags, MediaError> {
    Ok(open_track(path)?.tags)
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

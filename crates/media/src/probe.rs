//! Describing an audio file from its headers, with the limits checked before any audio is
//! decoded.

use crate::codec::{codec_name, pcm_bits};
use crate::open::{guarded, is_end_of_stream, make_decoder, open_track, sym_error, OpenTrack};
use crate::MediaError;
use audiomill_core::{Limits, MediaInfo};
use std::path::Path;
use symphonia::core::audio::Channels;
use symphonia::core::codecs::{self, CodecParameters};
use symphonia::core::errors::Error as SymError;

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
    /// Tags and cover art.
    pub tags: crate::tags::Tags,
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
    let (frames, frame_cap) = opus_frames(path, &track, &params, frames)?;
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
        frame_cap,
        tags: std::mem::take(&mut track.tags),
    })
}

/// Frames of an Opus track and the cap to decode it to; other codecs pass through.
///
/// Ogg counts granule positions, which include the pre-skip the decoder drops (the demuxer
/// trims the end itself). Matroska declares a duration that covers the last packet whole,
/// and symphonia ignores the `DiscardPadding` that says how much of it is encoder padding:
/// when the last block has one, the true length is counted from the packets (demuxed, not
/// decoded) less pre-skip and padding; otherwise the declared duration is the cap.
fn opus_frames(
    path: &Path,
    track: &OpenTrack,
    params: &CodecParameters,
    frames: u64,
) -> Result<(u64, Option<u64>), MediaError> {
    let cap = track.declared_frames;
    let Some(pre_skip) = crate::opus::pre_skip(params) else {
        return Ok((frames, cap));
    };
    if track.container == "ogg" {
        return Ok((frames.saturating_sub(pre_skip), cap));
    }
    if let Some(padding) = crate::opus::matroska_discard_padding(path, u64::from(track.track_id)) {
        let mut counted = open_track(path)?;
        let mut total = 0u64;
        loop {
            match guarded("demuxer", || counted.format.next_packet())? {
                Ok(packet) if packet.track_id() == counted.track_id => {
                    let samples = opus::packet::get_nb_samples(&packet.data, 48_000);
                    total = total.saturating_add(samples.map_or(0, |n| n as u64));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        let exact = total.saturating_sub(pre_skip + padding);
        // Only trust the count when it agrees with the declared duration to a packet.
        if exact.abs_diff(frames) <= 5760 {
            return Ok((exact, Some(exact)));
        }
    }
    Ok((frames, Some(cap.map_or(frames, |cap| cap.min(frames)))))
}

/// The most frames an input may have under `limits`.
pub(crate) fn max_frames(limits: &Limits, sample_rate: u32) -> u64 {
    limits
        .max_duration_secs
        .saturating_mul(u64::from(sample_rate))
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

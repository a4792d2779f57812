//! Streaming decoding to interleaved `f32` chunks.

use crate::open::{guarded, is_end_of_stream, make_decoder, open_track, sym_error};
use crate::probe::{inspect, max_frames, Inspected};
use crate::MediaError;
use audiomill_core::{Limits, MediaInfo};
use std::path::Path;
use symphonia::core::audio::{Channels, SampleBuffer, SignalSpec};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatReader;

/// Corrupt packets at the start after which, with nothing decoded yet, the input is declared
/// undecodable (instead of trying every packet of a long garbage file).
const MAX_ERRORS_BEFORE_AUDIO: u64 = 64;

/// A decoder over one audio file, yielding interleaved `f32` samples in `[-1, 1]` chunk by
/// chunk (one codec packet at a time, so memory stays bounded whatever the file's length).
///
/// Opening probes the file and checks the limits before anything is decoded; decoding checks
/// the duration limit again against the frames actually produced.
pub struct Decoder {
    format: Box<dyn FormatReader>,
    codec: Box<dyn symphonia::core::codecs::Decoder>,
    track_id: u32,
    inspected: Inspected,
    channels: usize,
    max_frames: u64,
    max_secs: u64,
    frames: u64,
    skipped_packets: u64,
    buffer: Option<SampleBuffer<f32>>,
    buffer_spec: Option<SignalSpec>,
    chunk: std::ops::Range<usize>,
    done: bool,
}

// The worker moves a decoder onto a blocking thread.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<Decoder>();
};

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("info", &self.inspected.info)
            .field("frames", &self.frames)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// Probes `path`, checks `limits` and prepares to decode its audio track.
    pub fn open(path: &Path, limits: &Limits) -> Result<Self, MediaError> {
        let inspected = inspect(path, limits)?;
        let track = open_track(path)?;
        let codec = make_decoder(&track.params)?;
        Ok(Decoder {
            format: track.format,
            codec,
            track_id: track.track_id,
            channels: usize::from(inspected.info.channels),
            max_frames: max_frames(limits, inspected.info.sample_rate),
            max_secs: limits.max_duration_secs,
            inspected,
            frames: 0,
            skipped_packets: 0,
            buffer: None,
            buffer_spec: None,
            chunk: 0..0,
            done: false,
        })
    }

    /// What the probe found.
    pub fn info(&self) -> &MediaInfo {
        &self.inspected.info
    }

    /// Channels per frame of the chunks.
    pub fn channels(&self) -> u16 {
        self.inspected.info.channels
    }

    /// Sample rate of the chunks, in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.inspected.info.sample_rate
    }

    /// The number of frames the headers promise (a progress denominator, not a guarantee).
    pub fn expected_frames(&self) -> u64 {
        self.inspected.frames
    }

    /// Frames decoded so far.
    pub fn frames_decoded(&self) -> u64 {
        self.frames
    }

    /// Corrupt packets skipped so far.
    pub fn skipped_packets(&self) -> u64 {
        self.skipped_packets
    }

    /// Speaker positions of the channels, when the container declares them.
    pub(crate) fn layout(&self) -> Option<Channels> {
        self.inspected.layout
    }

    /// Bits per sample of a lossless source (PCM, FLAC, ALAC), if known.
    pub fn source_bits_per_sample(&self) -> Option<u32> {
        self.inspected.bits_per_sample
    }

    /// Tags and cover art of the input (see [`crate::tags`]).
    pub fn tags(&self) -> &crate::tags::Tags {
        &self.inspected.tags
    }

    /// Whether the source codec is lossless.
    pub fn is_lossless(&self) -> bool {
        self.inspected.lossless
    }

    /// The next chunk of interleaved samples, or `None` at the end of the stream.
    ///
    /// Corrupt packets are skipped, as ffmpeg does; a stream that ends early (truncated) or
    /// turns to garbage ends here too. Fails if nothing at all could be decoded, or if the
    /// decoded audio exceeds the duration limit.
    pub fn next_chunk(&mut self) -> Result<Option<&[f32]>, MediaError> {
        if self.decode_next()? {
            let samples = self.buffer.as_ref().map_or(&[][..], |b| b.samples());
            Ok(Some(&samples[self.chunk.clone()]))
        } else {
            Ok(None)
        }
    }

    /// Decodes the next packet with audio into `self.buffer`; false at the end.
    fn decode_next(&mut self) -> Result<bool, MediaError> {
        while !self.done {
            let packet = match guarded("demuxer", || self.format.next_packet()) {
                Ok(Ok(packet)) => packet,
                Ok(Err(e)) => {
                    self.done = true;
                    if is_end_of_stream(&e) || matches!(e, SymError::ResetRequired) {
                        break;
                    }
                    let error = sym_error(e);
                    if self.frames > 0 && !matches!(error, MediaError::Io { .. }) {
                        // Damaged tail after good audio: keep what decoded, like a
                        // truncated file.
                        tracing::warn!(%error, frames = self.frames, "demuxing stopped early");
                        break;
                    }
                    return Err(error);
                }
                Err(panic) => {
                    self.done = true;
                    return Err(panic);
                }
            };
            if packet.track_id() != self.track_id {
                continue;
            }
            let (codec, buffer, buffer_spec) =
                (&mut self.codec, &mut self.buffer, &mut self.buffer_spec);
            let decoded = guarded(
                "decoder",
                || -> Result<Option<(usize, SignalSpec)>, SymError> {
                    let decoded = codec.decode(&packet)?;
                    let frames = decoded.frames();
                    if frames == 0 {
                        return Ok(None);
                    }
                    let spec = *decoded.spec();
                    let capacity = decoded.capacity().max(frames);
                    let fits = buffer
                        .as_ref()
                        .is_some_and(|b| b.capacity() >= capacity * spec.channels.count());
                    if !fits || *buffer_spec != Some(spec) {
                        *buffer = Some(SampleBuffer::new(capacity as u64, spec));
                        *buffer_spec = Some(spec);
                    }
                    if let Some(buffer) = buffer.as_mut() {
                        buffer.copy_interleaved_ref(decoded);
                    }
                    Ok(Some((frames, spec)))
                },
            );
            let (frames, spec) = match decoded {
                Ok(Ok(Some(decoded))) => decoded,
                Ok(Ok(None)) => continue,
                Ok(Err(SymError::Unsupported(what))) => {
                    self.done = true;
                    return Err(MediaError::unsupported(what));
                }
                Ok(Err(SymError::IoError(e))) if e.raw_os_error().is_some() => {
                    self.done = true;
                    return Err(MediaError::io("reading the input", e));
                }
                Ok(Err(e)) => {
                    self.skipped_packets += 1;
                    tracing::debug!(error = %e, "skipping a corrupt packet");
                    if self.frames == 0 && self.skipped_packets >= MAX_ERRORS_BEFORE_AUDIO {
                        self.done = true;
                        return Err(MediaError::decode(format!(
                            "the first {} packets are corrupt: {e}",
                            self.skipped_packets
                        )));
                    }
                    continue;
                }
                Err(panic) => {
                    self.done = true;
                    return Err(panic);
                }
            };
            if spec.channels.count() != self.channels || spec.rate != self.sample_rate() {
                self.done = true;
                return Err(MediaError::decode(format!(
                    "stream changed to {} channels at {} Hz mid-way",
                    spec.channels.count(),
                    spec.rate
                )));
            }
            // Gapless trimming (encoder delay and padding) is done by symphonia's decoders
            // from the packets' trim fields.
            let frames = match self.inspected.frame_cap {
                Some(cap) => frames
                    .min(usize::try_from(cap.saturating_sub(self.frames)).unwrap_or(usize::MAX)),
                None => frames,
            };
            if frames == 0 {
                continue;
            }
            self.frames += frames as u64;
            if self.frames > self.max_frames {
                self.done = true;
                return Err(MediaError::InputTooLong {
                    duration_secs: self.frames as f64 / f64::from(self.sample_rate()),
                    max_secs: self.max_secs,
                });
            }
            self.chunk = 0..frames * self.channels;
            return Ok(true);
        }
        if self.skipped_packets > 0 {
            tracing::warn!(
                skipped = self.skipped_packets,
                frames = self.frames,
                "skipped corrupt packets"
            );
        }
        if self.frames == 0 {
            return Err(MediaError::decode(if self.skipped_packets > 0 {
                "no packet could be decoded"
            } else {
                "the input contains no audio samples"
            }));
        }
        // A stream that ends far short of the length its headers declare (FLAC STREAMINFO,
        // an MP3 Info tag, an MP4 or Ogg length) was cut off or damaged. A silently shorter
        // result would hide that from the user, so it fails. Shortfalls under 5% or 0.1 s
        // (encoder padding, container lengths that overcount by a few frames) pass. WAV/AIFF sizes that overrun the file were already clamped to it at
        // probe time, since streaming recorders legitimately leave placeholder sizes.
        let expected = self.inspected.frames;
        let shortfall = expected.saturating_sub(self.frames);
        if shortfall > (expected / 20).max(u64::from(self.sample_rate() / 10)) {
            return Err(MediaError::decode(format!(
                "truncated: the headers declare {expected} frames, only {} decode",
                self.frames
            )));
        }
        Ok(false)
    }
}

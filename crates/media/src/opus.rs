//! Opus decoding for symphonia, through libopus.
//!
//! Symphonia 0.5 demuxes Opus from Ogg and Matroska/WebM but has no Opus decoder. This
//! module plugs one into symphonia's codec registry ([`crate::codec::codecs`]), so the rest
//! of the engine decodes Opus like any other codec. It decodes at 48 kHz (Opus's own rate)
//! from the `OpusHead` the demuxers pass as extra data (Ogg's identification header,
//! Matroska's `CodecPrivate`), drops the `pre-skip` leading samples, applies the header's
//! output gain, and puts surround channels (mapping family 1, Vorbis order) in the WAV order
//! the rest of the engine expects. End trimming comes from the container: the Ogg demuxer
//! trims the last packet to the final granule position; for Matroska, whose `DiscardPadding`
//! symphonia ignores, the probe reads it itself ([`matroska_discard_padding`]) and caps
//! decoding at the true length.

use std::sync::Mutex;
use symphonia::core::audio::{
    AsAudioBufferRef, AudioBuffer, AudioBufferRef, Channels, Signal, SignalSpec,
};
use symphonia::core::codecs::{
    CodecDescriptor, CodecParameters, Decoder, DecoderOptions, FinalizeResult, CODEC_TYPE_OPUS,
};
use symphonia::core::errors::{Error, Result};
use symphonia::core::formats::Packet;

/// Opus always decodes at 48 kHz here.
pub(crate) const OPUS_RATE: u32 = 48_000;
/// The longest Opus packet: 120 ms at 48 kHz.
const MAX_PACKET_FRAMES: usize = 5760;

/// What an `OpusHead` (RFC 7845, section 5.1) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OpusHead {
    pub channels: u8,
    pub pre_skip: u16,
    pub input_rate: u32,
    /// Output gain in dB, Q7.8.
    pub gain_q8: i16,
    pub family: u8,
    pub streams: u8,
    pub coupled: u8,
    pub mapping: Vec<u8>,
}

impl OpusHead {
    /// Parses an `OpusHead` packet; `None` if it is not a valid one.
    pub(crate) fn parse(data: &[u8]) -> Option<OpusHead> {
        if data.len() < 19 || &data[..8] != b"OpusHead" || data[8] >> 4 != 0 {
            return None;
        }
        let channels = data[9];
        let pre_skip = u16::from_le_bytes([data[10], data[11]]);
        let input_rate = u32::from_le_bytes(data[12..16].try_into().ok()?);
        let gain_q8 = i16::from_le_bytes([data[16], data[17]]);
        let family = data[18];
        if channels == 0 {
            return None;
        }
        let (streams, coupled, mapping) = if family == 0 {
            if channels > 2 {
                return None;
            }
            (1, channels - 1, (0..channels).collect())
        } else {
            let streams = *data.get(19)?;
            let coupled = *data.get(20)?;
            let mapping = data.get(21..21 + usize::from(channels))?.to_vec();
            if streams == 0 || coupled > streams || u16::from(streams) + u16::from(coupled) > 255 {
                return None;
            }
            (streams, coupled, mapping)
        };
        Some(OpusHead {
            channels,
            pre_skip,
            input_rate,
            gain_q8,
            family,
            streams,
            coupled,
            mapping,
        })
    }

    /// The header of a stream the container describes but carries no `OpusHead` for (a
    /// Matroska track without `CodecPrivate`): mono or stereo, no pre-skip.
    fn fallback(params: &CodecParameters) -> Option<OpusHead> {
        let channels = params.channels.map(|c| c.count())?;
        if !(1..=2).contains(&channels) {
            return None;
        }
        let channels = channels as u8;
        Some(OpusHead {
            channels,
            pre_skip: params.delay.unwrap_or(0).min(u32::from(u16::MAX)) as u16,
            input_rate: 0,
            gain_q8: 0,
            family: 0,
            streams: 1,
            coupled: channels - 1,
            mapping: (0..channels).collect(),
        })
    }

    /// The speaker positions of the decoded (reordered) channels.
    fn layout(&self) -> Channels {
        use Channels as C;
        let (fl, fr, fc, lfe) = (C::FRONT_LEFT, C::FRONT_RIGHT, C::FRONT_CENTRE, C::LFE1);
        let (rl, rr, sl, sr, rc) = (
            C::REAR_LEFT,
            C::REAR_RIGHT,
            C::SIDE_LEFT,
            C::SIDE_RIGHT,
            C::REAR_CENTRE,
        );
        match (self.family, self.channels) {
            (0 | 1, 1) => fl,
            (0 | 1, 2) => fl | fr,
            (1, 3) => fl | fr | fc,
            (1, 4) => fl | fr | rl | rr,
            (1, 5) => fl | fr | fc | rl | rr,
            (1, 6) => fl | fr | fc | lfe | rl | rr,
            (1, 7) => fl | fr | fc | lfe | rc | sl | sr,
            (1, 8) => fl | fr | fc | lfe | rl | rr | sl | sr,
            // Other families (ambisonics, discrete): channels without positions.
            (_, n) => C::from_bits_truncate((1u32 << u32::from(n.min(31))) - 1),
        }
    }

    /// For each output channel (WAV order), the decoded channel (Vorbis order) it comes from.
    fn reorder(&self) -> Vec<usize> {
        match (self.family, self.channels) {
            (1, 3) => vec![0, 2, 1],
            (1, 5) => vec![0, 2, 1, 3, 4],
            (1, 6) => vec![0, 2, 1, 5, 3, 4],
            (1, 7) => vec![0, 2, 1, 6, 5, 3, 4],
            (1, 8) => vec![0, 2, 1, 7, 5, 6, 3, 4],
            (_, n) => (0..usize::from(n)).collect(),
        }
    }
}

/// The pre-skip (48 kHz samples) of an Opus track, from its `OpusHead`.
pub(crate) fn pre_skip(params: &CodecParameters) -> Option<u64> {
    if params.codec != CODEC_TYPE_OPUS {
        return None;
    }
    let head = params.extra_data.as_deref().and_then(OpusHead::parse)?;
    Some(u64::from(head.pre_skip))
}

/// Samples (48 kHz) of `DiscardPadding` on the last block of track `track` in the Matroska
/// file at `path`: the encoder padding to drop at the end. `None` when there is none or the
/// file cannot be walked cheaply (clusters of unknown size).
///
/// Walks element headers only: the Segment's children to the last Cluster (each skipped by
/// its size), then that Cluster's BlockGroups.
pub(crate) fn matroska_discard_padding(path: &std::path::Path, track: u64) -> Option<u64> {
    use std::io::{BufReader, Read, Seek, SeekFrom};
    const SEGMENT: u64 = 0x1853_8067;
    const CLUSTER: u64 = 0x1F43_B675;
    const BLOCK_GROUP: u64 = 0xA0;
    const BLOCK: u64 = 0xA1;
    const DISCARD_PADDING: u64 = 0x75A2;
    /// Elements visited at most (a long file has a few thousand clusters).
    const MAX_ELEMENTS: u32 = 1_000_000;

    let file = std::fs::File::open(path).ok()?;
    let file_len = file.metadata().ok()?.len();
    let mut r = BufReader::new(file);
    // An EBML variable-length integer: (value, length); the ID form keeps its marker bit.
    fn vint(r: &mut impl Read, keep_marker: bool) -> Option<(u64, u64)> {
        let mut first = [0u8; 1];
        r.read_exact(&mut first).ok()?;
        let len = first[0].leading_zeros() + 1;
        if len > 8 {
            return None;
        }
        let mut value = u64::from(if keep_marker {
            first[0]
        } else {
            first[0] & 0xffu8.checked_shr(len).unwrap_or(0)
        });
        for _ in 1..len {
            r.read_exact(&mut first).ok()?;
            value = (value << 8) | u64::from(first[0]);
        }
        Some((value, u64::from(len)))
    }
    // An element header at `pos`: (id, data start, data size; `None` size if unknown).
    fn header(r: &mut BufReader<std::fs::File>, pos: u64) -> Option<(u64, u64, Option<u64>)> {
        r.seek(SeekFrom::Start(pos)).ok()?;
        let (id, id_len) = vint(r, true)?;
        let (size, size_len) = vint(r, false)?;
        let unknown = size == (1u64 << (7 * size_len)) - 1;
        Some((id, pos + id_len + size_len, (!unknown).then_some(size)))
    }
    // EBML header, then the Segment.
    let (_, start, size) = header(&mut r, 0)?;
    let (id, segment, segment_size) = header(&mut r, start.saturating_add(size?))?;
    if id != SEGMENT {
        return None;
    }
    let segment_end = segment_size
        .map_or(file_len, |s| segment.saturating_add(s))
        .min(file_len);
    let (mut pos, mut last_cluster, mut visited) = (segment, None, 0u32);
    while pos < segment_end && visited < MAX_ELEMENTS {
        visited += 1;
        let Some((id, data, size)) = header(&mut r, pos) else {
            break;
        };
        let size = size?; // a cluster (or anything) of unknown size: give up
        if id == CLUSTER {
            last_cluster = Some((data, data.saturating_add(size).min(segment_end)));
        }
        pos = data.saturating_add(size);
    }
    let (mut pos, end) = last_cluster?;
    let mut padding = None;
    while pos < end && visited < MAX_ELEMENTS {
        visited += 1;
        let (id, data, size) = header(&mut r, pos)?;
        let size = size?;
        if id == BLOCK_GROUP {
            let (mut child, group_end) = (data, data.saturating_add(size));
            let (mut block_track, mut discard) = (None, 0i64);
            while child < group_end && visited < MAX_ELEMENTS {
                visited += 1;
                let (id, data, size) = header(&mut r, child)?;
                let size = size?;
                if id == BLOCK {
                    block_track = vint(&mut r, false).map(|(n, _)| n);
                } else if id == DISCARD_PADDING && (1..=8).contains(&size) {
                    let mut bytes = [0u8; 8];
                    r.read_exact(&mut bytes[..size as usize]).ok()?;
                    // A signed big-endian integer of `size` bytes.
                    discard = i64::from_be_bytes(bytes) >> (64 - 8 * size);
                }
                child = data.saturating_add(size);
            }
            if block_track == Some(track) {
                padding = Some(discard);
            }
        }
        pos = data.saturating_add(size);
    }
    // Nanoseconds to 48 kHz samples; more than one packet's worth is not padding.
    let padding = u64::try_from(padding?).ok()?;
    let samples = (u128::from(padding) * u128::from(OPUS_RATE) + 500_000_000) / 1_000_000_000;
    let samples = u64::try_from(samples).ok()?;
    (1..=MAX_PACKET_FRAMES as u64)
        .contains(&samples)
        .then_some(samples)
}

/// A symphonia [`Decoder`] for Opus, backed by libopus's multistream decoder (which also
/// handles plain mono and stereo streams).
pub(crate) struct OpusDecoder {
    params: CodecParameters,
    head: OpusHead,
    decoder: Mutex<opus::MSDecoder>,
    reorder: Vec<usize>,
    gain: f32,
    /// Leading samples still to drop (pre-skip).
    skip: usize,
    scratch: Vec<f32>,
    buf: AudioBuffer<f32>,
}

fn opus_error(e: opus::Error) -> Error {
    tracing::debug!(error = %e, "opus");
    Error::DecodeError("opus: invalid packet")
}

impl OpusDecoder {
    fn make_decoder(head: &OpusHead) -> Result<opus::MSDecoder> {
        opus::MSDecoder::new(OPUS_RATE, head.streams, head.coupled, &head.mapping)
            .map_err(|_| Error::Unsupported("opus: unsupported channel mapping"))
    }
}

impl Decoder for OpusDecoder {
    fn try_new(params: &CodecParameters, _options: &DecoderOptions) -> Result<Self> {
        let head = match params.extra_data.as_deref() {
            Some(extra) => OpusHead::parse(extra),
            None => OpusHead::fallback(params),
        }
        .ok_or(Error::Unsupported("opus: missing or invalid OpusHead"))?;
        let decoder = Self::make_decoder(&head)?;
        let spec = SignalSpec::new(OPUS_RATE, head.layout());
        let channels = usize::from(head.channels);
        Ok(OpusDecoder {
            params: params.clone(),
            reorder: head.reorder(),
            gain: 10f32.powf(f32::from(head.gain_q8) / 256.0 / 20.0),
            skip: usize::from(head.pre_skip),
            decoder: Mutex::new(decoder),
            scratch: vec![0.0; MAX_PACKET_FRAMES * channels],
            buf: AudioBuffer::new(MAX_PACKET_FRAMES as u64, spec),
            head,
        })
    }

    fn supported_codecs() -> &'static [CodecDescriptor] {
        &[CodecDescriptor {
            codec: CODEC_TYPE_OPUS,
            short_name: "opus",
            long_name: "Opus (libopus)",
            inst_func: |params, options| Ok(Box::new(OpusDecoder::try_new(params, options)?)),
        }]
    }

    fn reset(&mut self) {
        if let Ok(decoder) = Self::make_decoder(&self.head) {
            self.decoder = Mutex::new(decoder);
        }
    }

    fn codec_params(&self) -> &CodecParameters {
        &self.params
    }

    fn decode(&mut self, packet: &Packet) -> Result<AudioBufferRef<'_>> {
        self.buf.clear();
        let frames = {
            let mut decoder = self
                .decoder
                .lock()
                .map_err(|_| Error::DecodeError("opus: decoder poisoned"))?;
            // An empty packet would ask libopus for packet-loss concealment.
            if packet.data.is_empty() {
                return Err(Error::DecodeError("opus: empty packet"));
            }
            decoder
                .decode_float(&packet.data, &mut self.scratch, false)
                .map_err(opus_error)?
        };
        let channels = usize::from(self.head.channels);
        let end = frames.saturating_sub(packet.trim_end() as usize);
        let mut start = (packet.trim_start() as usize).min(end);
        let skip = self.skip.min(end - start);
        self.skip -= skip;
        start += skip;
        self.buf.render_reserved(Some(end - start));
        for (out, &from) in self.reorder.iter().enumerate() {
            let plane = self.buf.chan_mut(out);
            for (i, sample) in plane.iter_mut().enumerate() {
                *sample = self.scratch[(start + i) * channels + from] * self.gain;
            }
        }
        Ok(self.buf.as_audio_buffer_ref())
    }

    fn finalize(&mut self) -> FinalizeResult {
        FinalizeResult::default()
    }

    fn last_decoded(&self) -> AudioBufferRef<'_> {
        self.buf.as_audio_buffer_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opus_head_parses() {
        let mut head = b"OpusHead\x01\x02".to_vec();
        head.extend_from_slice(&312u16.to_le_bytes());
        head.extend_from_slice(&44_100u32.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes());
        head.push(0);
        let parsed = OpusHead::parse(&head).unwrap();
        assert_eq!(parsed.channels, 2);
        assert_eq!(parsed.pre_skip, 312);
        assert_eq!(parsed.input_rate, 44_100);
        assert_eq!((parsed.streams, parsed.coupled), (1, 1));
        assert_eq!(parsed.mapping, vec![0, 1]);
        // Family 0 is mono or stereo only.
        head[9] = 3;
        assert!(OpusHead::parse(&head).is_none());
        // Family 1, 5.1: 4 streams, 2 coupled.
        head[9] = 6;
        head[18] = 1;
        head.extend_from_slice(&[4, 2, 0, 4, 1, 2, 3, 5]);
        let parsed = OpusHead::parse(&head).unwrap();
        assert_eq!(parsed.layout().count(), 6);
        assert_eq!(parsed.reorder(), vec![0, 2, 1, 5, 3, 4]);
        assert!(OpusHead::parse(b"OpusHead").is_none());
    }
}

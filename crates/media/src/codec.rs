//! Short codec names and facts about symphonia's codec types.

use symphonia::core::codecs::{self, CodecParameters, CodecRegistry, CodecType};

/// Symphonia's decoders plus ours: Opus through libopus ([`crate::opus`]).
pub(crate) fn codecs() -> &'static CodecRegistry {
    static REGISTRY: std::sync::OnceLock<CodecRegistry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut registry = CodecRegistry::new();
        symphonia::default::register_enabled_codecs(&mut registry);
        registry.register_all::<crate::opus::OpusDecoder>();
        registry
    })
}

/// Bits per stored sample of uncompressed PCM; `None` for other codecs.
pub(crate) fn pcm_bits(params: &CodecParameters) -> Option<u32> {
    pcm_index(params.codec)?;
    match params.codec {
        codecs::CODEC_TYPE_PCM_ALAW | codecs::CODEC_TYPE_PCM_MULAW => Some(8),
        _ => params.bits_per_coded_sample.or(params.bits_per_sample),
    }
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
            return codecs()
                .get_codec(other)
                .map_or_else(|| "unknown".to_string(), |d| d.short_name.to_lowercase())
        }
    };
    name.to_string()
}

//! Conversions, read back by our decoder and by ffprobe/ffmpeg.

use crate::common::*;
use audiomill_core::{AudioFormat, ConvertOptions, Limits};
use audiomill_media::{analyze, convert, Decoder};
use std::path::Path;

fn options(
    format: AudioFormat,
    rate: Option<u32>,
    channels: Option<u16>,
    kbps: Option<u32>,
) -> ConvertOptions {
    ConvertOptions {
        sample_rate: rate,
        channels,
        bitrate: kbps,
        ..ConvertOptions::to_format(format)
    }
}

/// Decodes a file to 16-bit integers with our decoder.
fn decode_i16(path: &Path) -> (Vec<i16>, u16, u32) {
    let mut decoder = Decoder::open(path, &Limits::default()).unwrap();
    let mut samples = Vec::new();
    while let Some(chunk) = decoder.next_chunk().unwrap() {
        samples.extend(chunk.iter().map(|x| (x * 32768.0).round() as i16));
    }
    (samples, decoder.channels(), decoder.sample_rate())
}

/// Deterministic noise in [-1, 1).
fn noise(state: &mut u64) -> f64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    (*state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

#[test]
fn flac_round_trip_is_bit_exact() {
    let dir = tempdir();
    for (pcm, bits) in [(Pcm::I16, 16u32), (Pcm::I24, 24)] {
        let wav = file(&dir, &format!("in{bits}.wav"));
        let flac = file(&dir, &format!("out{bits}.flac"));
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        // Sine + noise, with the extreme codes at the start.
        write_wav(&wav, 44_100, 2, 44_100 + 1234, pcm, |n, c| match n {
            0 => -1.0,
            1 => 1.0 - 0.5f64.powi(bits as i32 - 1),
            _ => 0.6 * sine(441.0 + 100.0 * f64::from(c), 44_100, n) + 0.3 * noise(&mut state),
        });
        let mut progress = ProgressCheck(Vec::new());
        let info = convert(
            &wav,
            &flac,
            &ConvertOptions::to_format(AudioFormat::Flac),
            &Limits::default(),
            &mut progress.callback(),
        )
        .unwrap()
        .media;
        progress.assert_valid();
        assert_eq!(
            (info.container.as_str(), info.codec.as_str()),
            ("flac", "flac")
        );
        assert_eq!((info.sample_rate, info.channels), (44_100, 2));
        // Compare integer samples decoded by hound (source) and by symphonia (FLAC).
        let mut source = hound::WavReader::open(&wav).unwrap();
        let original: Vec<i32> = source.samples::<i32>().map(Result::unwrap).collect();
        let mut decoder = Decoder::open(&flac, &Limits::default()).unwrap();
        assert_eq!(decoder.source_bits_per_sample(), Some(bits));
        let scale = (1u64 << (bits - 1)) as f32;
        let mut decoded = Vec::new();
        while let Some(chunk) = decoder.next_chunk().unwrap() {
            decoded.extend(chunk.iter().map(|x| (x * scale).round() as i32));
        }
        assert_eq!(decoded.len(), original.len(), "{bits}-bit length");
        assert!(decoded == original, "{bits}-bit FLAC round trip differs");
        if bits == 16 && have_ffmpeg() {
            // ffmpeg decodes our FLAC to the same bytes (and checks the stream's framing).
            let raw = file(&dir, "ffmpeg.raw");
            ffmpeg(&[
                "-i",
                flac.to_str().unwrap(),
                "-f",
                "s16le",
                raw.to_str().unwrap(),
            ]);
            let bytes = std::fs::read(&raw).unwrap();
            let ffmpeg_samples: Vec<i32> = bytes
                .chunks_exact(2)
                .map(|b| i32::from(i16::from_le_bytes([b[0], b[1]])))
                .collect();
            assert!(
                ffmpeg_samples == original,
                "ffmpeg decodes our FLAC differently"
            );
        }
    }
}

/// Frames ffmpeg decodes from a file.
fn ffmpeg_decoded_frames(path: &Path, channels: u16) -> u64 {
    let dir = tempdir();
    let raw = file(&dir, "decoded.raw");
    ffmpeg(&[
        "-i",
        path.to_str().unwrap(),
        "-f",
        "s16le",
        raw.to_str().unwrap(),
    ]);
    std::fs::metadata(&raw).unwrap().len() / 2 / u64::from(channels)
}

#[test]
fn every_output_reads_back_in_ffprobe() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempdir();
    // Sources: (name, rate, channels), 2 s of tones.
    let sources = [
        ("cd", 44_100u32, 2u16),
        ("hires", 96_000, 2),
        ("phone", 8_000, 1),
        ("surround", 48_000, 6),
    ];
    for (name, rate, channels) in sources {
        let path = file(&dir, &format!("{name}.wav"));
        write_wav(
            &path,
            rate,
            channels,
            u64::from(rate) * 2,
            Pcm::I16,
            |n, c| 0.5 * sine(300.0 + 50.0 * f64::from(c), rate, n),
        );
    }
    use AudioFormat::*;
    // (source, options, expected codec, rate, channels)
    let cases = [
        ("cd", options(Wav, None, None, None), "pcm_s16le", 44_100, 2),
        (
            "cd",
            options(Wav, Some(48_000), Some(1), None),
            "pcm_s16le",
            48_000,
            1,
        ),
        (
            "phone",
            options(Wav, Some(16_000), Some(2), None),
            "pcm_s16le",
            16_000,
            2,
        ),
        (
            "surround",
            options(Wav, None, None, None),
            "pcm_s16le",
            48_000,
            6,
        ),
        ("cd", options(Flac, None, None, None), "flac", 44_100, 2),
        (
            "hires",
            options(Flac, Some(44_100), None, None),
            "flac",
            44_100,
            2,
        ),
        (
            "surround",
            options(Flac, None, Some(2), None),
            "flac",
            48_000,
            2,
        ),
        ("cd", options(Mp3, None, None, None), "mp3", 44_100, 2),
        (
            "cd",
            options(Mp3, Some(32_000), Some(1), Some(128)),
            "mp3",
            32_000,
            1,
        ),
        (
            "cd",
            options(Mp3, Some(22_050), Some(1), Some(56)),
            "mp3",
            22_050,
            1,
        ),
        (
            "hires",
            options(Mp3, None, None, Some(320)),
            "mp3",
            48_000,
            2,
        ),
        ("phone", options(Mp3, None, None, None), "mp3", 16_000, 1),
        (
            "surround",
            options(Mp3, None, None, Some(256)),
            "mp3",
            48_000,
            2,
        ),
    ];
    for (i, (source, options, codec, rate, channels)) in cases.into_iter().enumerate() {
        let input = file(&dir, &format!("{source}.wav"));
        let output = file(&dir, &format!("out{i}.{}", options.format.extension()));
        let mut progress = ProgressCheck(Vec::new());
        let info = convert(
            &input,
            &output,
            &options,
            &Limits::default(),
            &mut progress.callback(),
        )
        .unwrap_or_else(|e| panic!("case {i} {options:?}: {e}"))
        .media;
        progress.assert_valid();
        let probe = ffprobe(&output);
        let what = format!("case {i} ({source} → {options:?}): {probe:?}");
        assert_eq!(probe.codec, codec, "{what}");
        assert_eq!(
            (probe.sample_rate, probe.channels),
            (rate, channels),
            "{what}"
        );
        assert_eq!(
            (info.sample_rate, info.channels),
            (rate, channels),
            "{what}"
        );
        let frame = 1.0 / f64::from(rate);
        if options.format == Mp3 {
            // ffprobe's MP3 duration counts whole MP3 frames, so it includes LAME's encoder
            // delay (1105 samples) and the end padding (less than one MP3 frame of 1152, or
            // 576 below 32 kHz): up to 0.07 s at 32 kHz, 0.1 s at 16 kHz.
            let mp3_frame = if rate < 32_000 { 576.0 } else { 1152.0 };
            let slack = (1105.0 + mp3_frame) / f64::from(rate);
            assert!(
                probe.duration >= 2.0 - frame && probe.duration <= 2.0 + slack,
                "{what}"
            );
            // ffmpeg reads the LAME tag and trims delay and padding: exactly the input length.
            let decoded = ffmpeg_decoded_frames(&output, channels);
            let expected = 2 * u64::from(rate);
            assert!(
                decoded.abs_diff(expected) <= 1,
                "ffmpeg decodes {decoded} frames, {what}"
            );
        } else {
            assert!((probe.duration - 2.0).abs() <= frame, "{what}");
        }
        let ours = info.duration_secs.unwrap();
        assert!((ours - 2.0).abs() <= frame, "our probe: {ours} s, {what}");
        if options.format == Mp3 {
            let kbps = options.bitrate.unwrap_or(192);
            let kbps = if rate < 32_000 { kbps.min(160) } else { kbps };
            assert_eq!(probe.bit_rate, Some(u64::from(kbps) * 1000), "{what}");
        }
        eprintln!(
            "case {i}: ffprobe {:.4} s, ours {ours:.4} s",
            probe.duration
        );
    }
}

#[test]
fn resampling_keeps_level_and_length() {
    let dir = tempdir();
    let input = file(&dir, "in.wav");
    let output = file(&dir, "out.wav");
    write_wav(&input, 44_100, 1, 44_100 * 2, Pcm::F32, |n, _| {
        0.5 * sine(1000.0, 44_100, n)
    });
    let info = convert(
        &input,
        &output,
        &options(AudioFormat::Wav, Some(48_000), None, None),
        &Limits::default(),
        &mut |_| {},
    )
    .unwrap()
    .media;
    assert_eq!(info.sample_rate, 48_000);
    assert!((info.duration_secs.unwrap() - 2.0).abs() <= 1.0 / 48_000.0);
    let before = analyze(&input, &Default::default(), &Limits::default(), &mut |_| {}).unwrap();
    let after = analyze(
        &output,
        &Default::default(),
        &Limits::default(),
        &mut |_| {},
    )
    .unwrap();
    let (b, a) = (before.rms_dbfs.unwrap(), after.rms_dbfs.unwrap());
    assert!((a - b).abs() < 0.02, "rms {b} → {a}");
    let (b, a) = (
        before.integrated_lufs.unwrap(),
        after.integrated_lufs.unwrap(),
    );
    assert!((a - b).abs() < 0.02, "loudness {b} → {a}");
}

#[test]
fn channel_maps() {
    let dir = tempdir();
    let stereo = file(&dir, "stereo.wav");
    // Left full of a sine, right silent.
    write_wav(&stereo, 16_000, 2, 16_000, Pcm::I16, |n, c| {
        if c == 0 {
            0.8 * sine(500.0, 16_000, n)
        } else {
            0.0
        }
    });
    let mono = file(&dir, "mono.wav");
    convert(
        &stereo,
        &mono,
        &options(AudioFormat::Wav, None, Some(1), None),
        &Limits::default(),
        &mut |_| {},
    )
    .unwrap();
    let (samples, channels, _) = decode_i16(&mono);
    assert_eq!(channels, 1);
    let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
    assert!(
        (f64::from(peak) / 32768.0 - 0.4).abs() < 0.001,
        "mono is the average: {peak}"
    );
    let back = file(&dir, "back.wav");
    convert(
        &mono,
        &back,
        &options(AudioFormat::Wav, None, Some(2), None),
        &Limits::default(),
        &mut |_| {},
    )
    .unwrap();
    let (samples, channels, _) = decode_i16(&back);
    assert_eq!(channels, 2);
    assert!(samples.chunks_exact(2).all(|f| f[0] == f[1]), "duplicated");
}

#[test]
fn failed_conversion_leaves_no_output() {
    let dir = tempdir();
    let input = file(&dir, "text.wav");
    std::fs::write(&input, "not audio at all").unwrap();
    let output = file(&dir, "out.flac");
    let err = convert(
        &input,
        &output,
        &ConvertOptions::to_format(AudioFormat::Flac),
        &Limits::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(err.code(), audiomill_core::ErrorCode::UnsupportedFormat);
    assert!(!output.exists());
}

#[test]
fn refuses_to_overwrite_its_input() {
    let dir = tempdir();
    let input = file(&dir, "in.wav");
    write_wav(&input, 8_000, 1, 800, Pcm::I16, |n, _| {
        0.1 * sine(300.0, 8_000, n)
    });
    let before = std::fs::read(&input).unwrap();
    let err = convert(
        &input,
        &input,
        &ConvertOptions::to_format(AudioFormat::Wav),
        &Limits::default(),
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(err.code(), audiomill_core::ErrorCode::InvalidInput);
    assert_eq!(std::fs::read(&input).unwrap(), before);
}

//! Formats added to the engine: Opus in and out, MP1/MP2 and CAF in, WAV sample formats,
//! MP3 VBR, refusals naming what was found, and tags with cover art carried across formats.

use crate::common::*;
use audiomill_core::{AudioFormat, ConvertOptions, ErrorCode, Limits, SampleFormat};
use audiomill_media::{convert, probe, Decoder};
use std::path::Path;
use std::process::Command;

/// Decodes a whole file with our decoder: (interleaved samples, channels, rate).
fn decode(path: &Path) -> (Vec<f32>, u16, u32) {
    let mut decoder = Decoder::open(path, &Limits::default()).unwrap();
    let mut samples = Vec::new();
    while let Some(chunk) = decoder.next_chunk().unwrap() {
        samples.extend_from_slice(chunk);
    }
    (samples, decoder.channels(), decoder.sample_rate())
}

/// Decodes a whole file with ffmpeg to interleaved `f32`.
fn ffmpeg_decode(path: &Path) -> Vec<f32> {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "f32le", "-c:a", "pcm_f32le", "-"])
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg could not decode {path:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Signal-to-noise ratio of `test` against `reference` (dB), over their common length.
fn snr_db(reference: &[f32], test: &[f32]) -> f64 {
    let n = reference.len().min(test.len());
    let (mut signal, mut noise) = (0f64, 0f64);
    for (r, t) in reference[..n].iter().zip(&test[..n]) {
        signal += f64::from(*r).powi(2);
        noise += f64::from(r - t).powi(2);
    }
    10.0 * (signal / noise.max(1e-30)).log10()
}

/// The lag (in frames, within ±`max_lag`) at which `test` best matches `reference`, by
/// cross-correlation of the first channel.
fn best_lag(reference: &[f32], test: &[f32], channels: usize, max_lag: i64) -> i64 {
    let frames = (reference.len().min(test.len()) / channels) as i64;
    let span = (frames - 2 * max_lag).clamp(0, 48_000);
    (-max_lag..=max_lag)
        .max_by(|&a, &b| {
            let corr = |lag: i64| -> f64 {
                (max_lag..max_lag + span)
                    .map(|i| {
                        let r = reference[(i as usize) * channels];
                        let t = test[((i + lag) as usize) * channels];
                        f64::from(r) * f64::from(t)
                    })
                    .sum()
            };
            corr(a).total_cmp(&corr(b))
        })
        .unwrap_or(0)
}

fn convert_to(input: &Path, output: &Path, options: &ConvertOptions) {
    convert(input, output, options, &Limits::default(), &mut |_| {})
        .unwrap_or_else(|e| panic!("converting to {output:?}: {e}"));
}

/// A test signal that correlates at one lag only: a rising sweep (a different one per
/// channel) under a slow swell.
fn tones(rate: u32, n: u64, c: u16) -> f64 {
    let t = n as f64 / f64::from(rate);
    let (f0, rise) = (200.0 + 150.0 * f64::from(c), 400.0);
    let phase = 2.0 * std::f64::consts::PI * (f0 * t + rise * t * t / 2.0);
    (0.5 + 0.3 * sine(1.3, rate, n)) * phase.sin()
}

#[test]
fn opus_output_is_read_by_ffmpeg_and_keeps_the_signal() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempdir();
    // 48 kHz stereo, a length that is not a whole number of 20 ms frames.
    let frames = 48_000 * 2 + 1234;
    let wav = file(&dir, "in.wav");
    write_wav(&wav, 48_000, 2, frames, Pcm::F32, |n, c| {
        tones(48_000, n, c)
    });
    let opus = file(&dir, "out.opus");
    convert_to(&wav, &opus, &ConvertOptions::to_format(AudioFormat::Opus));
    let seen = ffprobe(&opus);
    assert_eq!(
        (seen.codec.as_str(), seen.sample_rate, seen.channels),
        ("opus", 48_000, 2)
    );
    let secs = frames as f64 / 48_000.0;
    assert!(
        (seen.duration - secs).abs() < 0.020,
        "{} vs {secs}",
        seen.duration
    );
    let (source, _, _) = decode(&wav);
    let theirs = ffmpeg_decode(&opus);
    // Pre-skip and end trimming: ffmpeg returns exactly the input's length.
    assert_eq!(theirs.len(), source.len(), "ffmpeg's decode length");
    let lag = best_lag(&source, &theirs, 2, 1000);
    let snr = snr_db(&source, &theirs);
    eprintln!("opus 128k stereo: ffmpeg decode SNR {snr:.1} dB, lag {lag}");
    assert_eq!(lag, 0);
    assert!(snr > 20.0, "SNR {snr:.1} dB");
    // Our own decoder agrees on length and content.
    let (ours, channels, rate) = decode(&opus);
    assert_eq!((channels, rate), (2, 48_000));
    assert_eq!(ours.len(), source.len());
    let snr = snr_db(&source, &ours);
    eprintln!("opus 128k stereo: our decode SNR {snr:.1} dB");
    assert!(snr > 20.0, "SNR {snr:.1} dB");
    let info = probe(&opus, &Limits::default()).unwrap();
    assert_eq!(
        (info.container.as_str(), info.codec.as_str()),
        ("ogg", "opus")
    );
    assert_eq!(info.duration_secs, Some(secs));
}

#[test]
fn opus_output_resamples_and_downmixes() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempdir();
    // 44.1 kHz 5.1 becomes 48 kHz stereo; mono stays mono.
    let wav = file(&dir, "surround.wav");
    write_wav(&wav, 44_100, 6, 44_100 + 500, Pcm::I16, |n, c| {
        0.3 * sine(200.0 + 100.0 * f64::from(c), 44_100, n)
    });
    let opus = file(&dir, "surround.opus");
    convert_to(&wav, &opus, &ConvertOptions::to_format(AudioFormat::Opus));
    let seen = ffprobe(&opus);
    assert_eq!((seen.sample_rate, seen.channels), (48_000, 2));
    let secs = (44_100.0 + 500.0) / 44_100.0;
    assert!((seen.duration - secs).abs() < 0.020, "{}", seen.duration);

    let mono = file(&dir, "mono.wav");
    write_wav(&mono, 22_050, 1, 22_050, Pcm::I16, |n, _| {
        0.5 * sine(300.0, 22_050, n)
    });
    let out = file(&dir, "mono.opus");
    let options = ConvertOptions {
        bitrate: Some(32),
        ..ConvertOptions::to_format(AudioFormat::Opus)
    };
    convert_to(&mono, &out, &options);
    let seen = ffprobe(&out);
    assert_eq!((seen.sample_rate, seen.channels), (48_000, 1));
    assert!((seen.duration - 1.0).abs() < 0.020, "{}", seen.duration);
    assert_eq!(ffmpeg_decode(&out).len(), 48_000);
}

#[test]
fn opus_input_from_ffmpeg_decodes_like_ffmpeg() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempdir();
    let wav = file(&dir, "in.wav");
    let frames = 48_000 * 3 + 777;
    write_wav(&wav, 48_000, 2, frames, Pcm::I16, |n, c| {
        tones(48_000, n, c)
    });
    for (name, container) in [("a.opus", "ogg"), ("a.ogg", "ogg"), ("a.webm", "webm")] {
        let path = file(&dir, name);
        ffmpeg(&[
            "-i",
            wav.to_str().unwrap(),
            "-c:a",
            "libopus",
            "-b:a",
            "96k",
            path.to_str().unwrap(),
        ]);
        let info = probe(&path, &Limits::default()).unwrap();
        assert_eq!(
            (info.container.as_str(), info.codec.as_str()),
            (container, "opus"),
            "{name}"
        );
        assert_eq!((info.sample_rate, info.channels), (48_000, 2), "{name}");
        let seen = ffprobe(&path);
        let duration = info.duration_secs.unwrap();
        assert!(
            (duration - seen.duration).abs() <= 0.020,
            "{name}: {duration} vs ffprobe {}",
            seen.duration
        );
        let (ours, _, _) = decode(&path);
        let theirs = ffmpeg_decode(&path);
        let (a, b) = (ours.len() as i64 / 2, theirs.len() as i64 / 2);
        // Pre-skip and end trimming (Ogg granule, Matroska DiscardPadding) as ffmpeg does.
        assert_eq!(a, b, "{name}: frames vs ffmpeg's");
        assert_eq!(a as u64, frames, "{name}: frames vs the source");
        let lag = best_lag(&theirs, &ours, 2, 1000);
        let snr = snr_db(&theirs, &ours);
        eprintln!("{name}: {a} frames (ffmpeg {b}), lag {lag}, SNR vs ffmpeg {snr:.1} dB");
        assert_eq!(lag, 0, "{name}");
        assert!(snr > 40.0, "{name}: SNR vs ffmpeg {snr:.1} dB");
    }
}

#[test]
fn mp2_streams_probe_and_decode() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempdir();
    let wav = file(&dir, "in.wav");
    write_wav(&wav, 48_000, 2, 48_000 * 2, Pcm::I16, |n, c| {
        tones(48_000, n, c)
    });
    let mp2 = file(&dir, "a.mp2");
    ffmpeg(&[
        "-i",
        wav.to_str().unwrap(),
        "-c:a",
        "mp2",
        "-b:a",
        "256k",
        mp2.to_str().unwrap(),
    ]);
    let info = probe(&mp2, &Limits::default()).unwrap();
    assert_eq!(
        (info.container.as_str(), info.codec.as_str()),
        ("mp3", "mp2"),
        "ffmpeg's names"
    );
    assert_eq!((info.sample_rate, info.channels), (48_000, 2));
    let seen = ffprobe(&mp2);
    let duration = info.duration_secs.unwrap();
    assert!(
        (duration - seen.duration).abs() < 0.05,
        "{duration} vs {}",
        seen.duration
    );
    let (ours, _, _) = decode(&mp2);
    let theirs = ffmpeg_decode(&mp2);
    let (a, b) = (ours.len() as i64 / 2, theirs.len() as i64 / 2);
    assert!((a - b).abs() <= 1152, "{a} frames vs ffmpeg's {b}");
    let lag = best_lag(&theirs, &ours, 2, 1200);
    let aligned = &ours[(lag.max(0) as usize) * 2..];
    let theirs = &theirs[((-lag).max(0) as usize) * 2..];
    let snr = snr_db(theirs, aligned);
    eprintln!("mp2: {a} frames (ffmpeg {b}), lag {lag}, SNR vs ffmpeg {snr:.1} dB");
    assert!(snr > 40.0, "SNR vs ffmpeg {snr:.1} dB");
}

#[test]
fn pcm_in_caf_probes_and_decodes_exactly() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempdir();
    let wav = file(&dir, "in.wav");
    let frames = 44_100 + 321;
    write_wav(&wav, 44_100, 2, frames, Pcm::I16, |n, c| {
        0.7 * tones(44_100, n, c)
    });
    let (source, _, _) = decode(&wav);
    for (name, codec, args) in [
        ("be16.caf", "pcm_s16be", &["-c:a", "pcm_s16be"][..]),
        ("le16.caf", "pcm_s16le", &["-c:a", "pcm_s16le"][..]),
        ("f32.caf", "pcm_f32le", &["-c:a", "pcm_f32le"][..]),
    ] {
        let caf = file(&dir, name);
        let mut all = vec!["-i", wav.to_str().unwrap()];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-f", "caf", caf.to_str().unwrap()]);
        ffmpeg(&all);
        let info = probe(&caf, &Limits::default()).unwrap();
        assert_eq!(
            (info.container.as_str(), info.codec.as_str()),
            ("caf", codec),
            "{name}"
        );
        assert_eq!((info.sample_rate, info.channels), (44_100, 2), "{name}");
        assert_eq!(info.duration_secs, Some(frames as f64 / 44_100.0), "{name}");
        let (decoded, _, _) = decode(&caf);
        assert_eq!(decoded, source, "{name}");
    }
}

/// The refusal of a file: its code and public message.
fn refusal(path: &Path) -> String {
    let err = probe(path, &Limits::default()).expect_err("must be refused");
    assert_eq!(err.code(), ErrorCode::UnsupportedFormat, "{err}");
    err.public_message()
}

#[test]
fn unsupported_inputs_are_named() {
    let dir = tempdir();
    let write = |name: &str, bytes: &[u8]| {
        let path = file(&dir, name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let pdf = write(
        "a.pdf",
        b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n",
    );
    assert!(refusal(&pdf).starts_with("this is a PDF document, not audio"));
    let midi = write(
        "a.mid",
        b"MThd\0\0\0\x06\0\0\0\x01\0\x60MTrk\0\0\0\x04\0\xff\x2f\0",
    );
    assert!(refusal(&midi).contains("MIDI is not supported"));
    let text = write("a.txt", b"just some notes about a song\n");
    assert!(refusal(&text).starts_with("this is a text file"));
    let random = write("a.bin", &[0x13, 0x99, 0xfe, 0x00, 0x42, 0x07, 0x88, 0x01]);
    assert!(refusal(&random).starts_with("the input is not audio in a supported format"));
    if !have_ffmpeg() {
        return;
    }
    let wav = file(&dir, "in.wav");
    write_wav(&wav, 48_000, 2, 48_000, Pcm::I16, |n, c| {
        tones(48_000, n, c)
    });
    let wav = wav.to_str().unwrap();
    let make = |name: &str, args: &[&str]| {
        let path = file(&dir, name);
        let mut all: Vec<&str> = args.to_vec();
        all.push(path.to_str().unwrap());
        ffmpeg(&all);
        path
    };
    let png = make(
        "a.png",
        &["-f", "lavfi", "-i", "color=c=red:s=16x16", "-frames:v", "1"],
    );
    assert!(refusal(&png).starts_with("this is a PNG image, not audio"));
    let ac3 = make("a.ac3", &["-i", wav, "-c:a", "ac3"]);
    assert!(refusal(&ac3).starts_with("AC-3 (Dolby Digital) audio is not supported"));
    let eac3 = make("a.eac3", &["-i", wav, "-c:a", "eac3"]);
    assert!(refusal(&eac3).starts_with("E-AC-3"));
    let dts = make("a.dts", &["-i", wav, "-c:a", "dca", "-strict", "-2"]);
    assert!(refusal(&dts).starts_with("DTS audio is not supported"));
    let wma = make("a.wma", &["-i", wav, "-c:a", "wmav2"]);
    assert!(refusal(&wma).starts_with("Windows Media (WMA/ASF) files are not supported"));
    for name in ["video.mkv", "video.mp4"] {
        let video = make(
            name,
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc=d=1:s=64x64:r=10",
                "-c:v",
                "mpeg4",
            ],
        );
        let message = refusal(&video);
        assert!(
            message.starts_with("the file has no audio track"),
            "{name}: {message}"
        );
    }
    let ac3_in_mkv = make("ac3.mka", &["-i", wav, "-c:a", "ac3"]);
    let message = refusal(&ac3_in_mkv);
    assert!(message.contains("not supported"), "{message}");
}

#[test]
fn wav_sample_formats_round_trip() {
    let dir = tempdir();
    // A 24-bit source: every sample a distinct 24-bit code, extremes included.
    let wav24 = file(&dir, "in24.wav");
    let mut state = 0x2545_f491_4f6c_dd1du64;
    write_wav(&wav24, 48_000, 2, 48_000 + 17, Pcm::I24, |n, c| match n {
        0 => -1.0,
        1 => 1.0 - 0.5f64.powi(23),
        _ => {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            0.5 * tones(48_000, n, c) + 0.1 * ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
        }
    });
    let (source24, _, _) = decode(&wav24);
    let out = file(&dir, "out24.wav");
    let options = ConvertOptions {
        sample_format: Some(SampleFormat::S24),
        ..ConvertOptions::to_format(AudioFormat::Wav)
    };
    let info = convert(&wav24, &out, &options, &Limits::default(), &mut |_| {})
        .unwrap()
        .media;
    assert_eq!(info.codec, "pcm_s24le");
    let (decoded, _, _) = decode(&out);
    assert_eq!(decoded, source24, "24-bit WAV must be exact");

    // A float source with values no integer format holds exactly (and one beyond full scale).
    let wavf = file(&dir, "inf.wav");
    write_wav(&wavf, 44_100, 1, 44_100, Pcm::F32, |n, _| match n {
        0 => 1.5,
        1 => -1e-9,
        _ => 0.8 * tones(44_100, n, 0) + 1e-7,
    });
    let (sourcef, _, _) = decode(&wavf);
    let out = file(&dir, "outf.wav");
    let options = ConvertOptions {
        sample_format: Some(SampleFormat::F32),
        ..ConvertOptions::to_format(AudioFormat::Wav)
    };
    let info = convert(&wavf, &out, &options, &Limits::default(), &mut |_| {})
        .unwrap()
        .media;
    assert_eq!(info.codec, "pcm_f32le");
    let (decoded, _, _) = decode(&out);
    assert_eq!(
        decoded.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        sourcef.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        "float WAV must be bit-exact"
    );
    // The default stays 16-bit.
    let out16 = file(&dir, "out16.wav");
    let info = convert(
        &wavf,
        &out16,
        &ConvertOptions::to_format(AudioFormat::Wav),
        &Limits::default(),
        &mut |_| {},
    )
    .unwrap()
    .media;
    assert_eq!(info.codec, "pcm_s16le");
    if have_ffmpeg() {
        for (path, codec) in [(&out, "pcm_f32le"), (&out16, "pcm_s16le")] {
            assert_eq!(ffprobe(path).codec, codec);
        }
        let out24 = file(&dir, "out24.wav");
        assert_eq!(ffprobe(&out24).codec, "pcm_s24le");
        assert_eq!(ffmpeg_decode(&out24).len(), source24.len());
    }
}

#[test]
fn flac_bits_follow_sample_format() {
    let dir = tempdir();
    let wav16 = file(&dir, "in16.wav");
    write_wav(&wav16, 44_100, 2, 44_100, Pcm::I16, |n, c| {
        tones(44_100, n, c)
    });
    let wav24 = file(&dir, "in24.wav");
    write_wav(&wav24, 44_100, 2, 44_100, Pcm::I24, |n, c| {
        tones(44_100, n, c)
    });
    let bits = |input: &Path, name: &str, format: Option<SampleFormat>| {
        let out = file(&dir, name);
        let options = ConvertOptions {
            sample_format: format,
            ..ConvertOptions::to_format(AudioFormat::Flac)
        };
        convert(input, &out, &options, &Limits::default(), &mut |_| {}).unwrap();
        let decoder = Decoder::open(&out, &Limits::default()).unwrap();
        decoder.source_bits_per_sample()
    };
    assert_eq!(bits(&wav16, "a.flac", None), Some(16));
    assert_eq!(bits(&wav24, "b.flac", None), Some(24));
    assert_eq!(bits(&wav24, "c.flac", Some(SampleFormat::S16)), Some(16));
    assert_eq!(bits(&wav16, "d.flac", Some(SampleFormat::S24)), Some(24));
}

#[test]
fn mp3_vbr_quality_sets_the_size() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempdir();
    let wav = file(&dir, "in.wav");
    let frames = 44_100 * 4;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    write_wav(&wav, 44_100, 2, frames, Pcm::I16, |n, c| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        0.5 * tones(44_100, n, c) + 0.05 * ((state >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
    });
    let mut sizes = Vec::new();
    for quality in [0u8, 9] {
        let out = file(&dir, &format!("q{quality}.mp3"));
        let options = ConvertOptions {
            quality: Some(quality),
            ..ConvertOptions::to_format(AudioFormat::Mp3)
        };
        convert_to(&wav, &out, &options);
        let seen = ffprobe(&out);
        assert_eq!(seen.codec, "mp3");
        // ffprobe counts whole MP3 frames (encoder delay and padding included); decoders
        // that read the LAME tag, ours and ffmpeg's, return the exact length.
        assert!((seen.duration - 4.0).abs() < 0.06, "{}", seen.duration);
        assert_eq!(ffmpeg_decode(&out).len() as u64, frames * 2);
        let info = probe(&out, &Limits::default()).unwrap();
        assert_eq!(info.duration_secs, Some(4.0), "gapless VBR");
        let (decoded, _, _) = decode(&out);
        assert_eq!(decoded.len() as u64, frames * 2);
        sizes.push(std::fs::metadata(&out).unwrap().len());
    }
    eprintln!(
        "mp3 VBR sizes: V0 {} bytes, V9 {} bytes",
        sizes[0], sizes[1]
    );
    assert!(sizes[0] > sizes[1] * 2, "{sizes:?}");
}

/// ffprobe's format tags (keys lower-cased) and whether an attached picture stream exists.
fn ffprobe_tags(path: &Path) -> (std::collections::BTreeMap<String, String>, bool) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format_tags:stream_tags:stream=codec_type,codec_name:stream_disposition=attached_pic",
            "-of",
            "flat",
        ])
        .arg(path)
        .output()
        .expect("run ffprobe");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut tags = std::collections::BTreeMap::new();
    let mut picture = false;
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value = value.trim_matches('"').to_string();
        if let Some(tag) = key.strip_prefix("format.tags.") {
            tags.insert(tag.to_lowercase(), value);
        } else if key.ends_with(".disposition.attached_pic") && value == "1" {
            picture = true;
        } else if key.contains(".tags.") && key.starts_with("streams.stream.0.") {
            // Ogg keeps Vorbis comments on the stream.
            let tag = key.rsplit('.').next().unwrap_or_default().to_lowercase();
            tags.entry(tag).or_insert(value);
        }
    }
    (tags, picture)
}

#[test]
fn tags_and_cover_follow_the_audio() {
    use audiomill_media::read_tags;
    if !have_ffmpeg() {
        return;
    }
    let dir = tempdir();
    let wav = file(&dir, "in.wav");
    write_wav(&wav, 44_100, 2, 44_100, Pcm::I16, |n, c| {
        tones(44_100, n, c)
    });
    let cover = file(&dir, "cover.png");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=s=32x32",
        "-frames:v",
        "1",
        cover.to_str().unwrap(),
    ]);
    let cover_bytes = std::fs::read(&cover).unwrap();
    let metadata = [
        "-metadata",
        "title=Überschrift ☃",
        "-metadata",
        "artist=The Testers",
        "-metadata",
        "album=Signals",
        "-metadata",
        "track=3/12",
        "-metadata",
        "date=2021",
    ];
    let mut sources = Vec::new();
    for (name, codec) in [("src.mp3", "libmp3lame"), ("src.flac", "flac")] {
        let path = file(&dir, name);
        let mut args = vec![
            "-i",
            wav.to_str().unwrap(),
            "-i",
            cover.to_str().unwrap(),
            "-map",
            "0",
            "-map",
            "1",
            "-c:a",
            codec,
            "-c:v",
            "copy",
            "-disposition:v",
            "attached_pic",
        ];
        args.extend_from_slice(&metadata);
        args.push(path.to_str().unwrap());
        ffmpeg(&args);
        sources.push(path);
    }
    for source in &sources {
        let tags = read_tags(source).unwrap();
        assert_eq!(tags.title.as_deref(), Some("Überschrift ☃"), "{source:?}");
        assert_eq!(tags.artist.as_deref(), Some("The Testers"));
        assert_eq!(tags.album.as_deref(), Some("Signals"));
        assert_eq!(tags.date.as_deref(), Some("2021"));
        let track = tags.track.expect("track");
        assert_eq!(track.number, 3, "{source:?}");
        let cover = tags.cover.as_ref().expect("cover");
        assert_eq!(cover.mime, "image/png");
        assert_eq!(cover.data, cover_bytes, "{source:?}");
        for format in [
            AudioFormat::Mp3,
            AudioFormat::Flac,
            AudioFormat::Opus,
            AudioFormat::Wav,
        ] {
            let stem = source.file_stem().unwrap().to_str().unwrap();
            let out = file(&dir, &format!("{stem}-out.{}", format.extension()));
            convert_to(source, &out, &ConvertOptions::to_format(format));
            let (seen, picture) = ffprobe_tags(&out);
            eprintln!("{source:?} -> {format:?}: {seen:?} picture {picture}");
            let want = |key: &str| seen.get(key).map(String::as_str);
            assert_eq!(want("title"), Some("Überschrift ☃"), "{out:?}: {seen:?}");
            assert_eq!(want("artist"), Some("The Testers"), "{out:?}: {seen:?}");
            assert_eq!(want("album"), Some("Signals"), "{out:?}: {seen:?}");
            assert_eq!(want("date"), Some("2021"), "{out:?}: {seen:?}");
            assert!(
                want("track").is_some_and(|t| t.starts_with('3')),
                "{out:?}: {seen:?}"
            );
            assert_eq!(picture, format != AudioFormat::Wav, "{out:?}: cover");
            // And our own reader gets them back, the cover byte for byte.
            let back = read_tags(&out).unwrap();
            assert_eq!(back.title, tags.title, "{out:?}");
            assert_eq!(back.track.map(|t| t.number), Some(3), "{out:?}");
            if format != AudioFormat::Wav {
                assert_eq!(back.cover, tags.cover, "{out:?}");
                assert_eq!(back.track, tags.track, "{out:?}");
            }
        }
    }
}

/// An ID3v2.3 frame.
fn id3_frame(id: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut frame = id.to_vec();
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(body);
    frame
}

#[test]
fn oversized_tags_are_cut_and_oversized_covers_dropped() {
    use audiomill_media::read_tags;
    use audiomill_media::tags::{MAX_COVER_BYTES, MAX_TEXT_BYTES};
    let dir = tempdir();
    let wav = file(&dir, "in.wav");
    write_wav(&wav, 44_100, 1, 44_100, Pcm::I16, |n, _| {
        tones(44_100, n, 0)
    });
    let mp3 = file(&dir, "plain.mp3");
    convert_to(&wav, &mp3, &ConvertOptions::to_format(AudioFormat::Mp3));
    let audio = std::fs::read(&mp3).unwrap();
    // A 3000-byte title (multi-byte characters), a JPEG-signed "cover" just over the limit.
    let title = "ü".repeat(1500);
    let mut frames = id3_frame(b"TIT2", &[&[3u8][..], title.as_bytes()].concat());
    let mut cover = vec![0x5au8; MAX_COVER_BYTES + 1];
    cover[..4].copy_from_slice(&[0xff, 0xd8, 0xff, 0xe0]);
    let mut apic = b"\0image/jpeg\0\x03\0".to_vec();
    apic.extend_from_slice(&cover);
    frames.extend(id3_frame(b"APIC", &apic));
    let size = frames.len() as u32;
    let mut tagged = b"ID3\x03\x00\x00".to_vec();
    tagged.extend([21, 14, 7, 0].map(|shift| ((size >> shift) & 0x7f) as u8));
    tagged.extend_from_slice(&frames);
    tagged.extend_from_slice(&audio);
    let path = file(&dir, "tagged.mp3");
    std::fs::write(&path, &tagged).unwrap();
    let tags = read_tags(&path).unwrap();
    let cut = tags.title.expect("title");
    assert!(cut.len() <= MAX_TEXT_BYTES && cut.len() >= MAX_TEXT_BYTES - 1);
    assert!(title.starts_with(&cut));
    assert_eq!(tags.cover, None, "a cover over the limit is dropped");
    // The audio still converts, with the cut title.
    let out = file(&dir, "out.flac");
    convert_to(&path, &out, &ConvertOptions::to_format(AudioFormat::Flac));
    assert_eq!(
        read_tags(&out).unwrap().title.as_deref(),
        Some(cut.as_str())
    );
}

#[test]
fn damaged_opus_files_fail_cleanly() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempdir();
    let wav = file(&dir, "in.wav");
    write_wav(&wav, 48_000, 2, 24_000, Pcm::I16, |n, c| {
        tones(48_000, n, c)
    });
    let mut sources = Vec::new();
    for name in ["a.webm", "a.opus"] {
        let path = file(&dir, name);
        ffmpeg(&[
            "-i",
            wav.to_str().unwrap(),
            "-c:a",
            "libopus",
            "-b:a",
            "64k",
            path.to_str().unwrap(),
        ]);
        sources.push(path);
    }
    // And ours.
    let ours = file(&dir, "ours.opus");
    convert_to(&wav, &ours, &ConvertOptions::to_format(AudioFormat::Opus));
    sources.push(ours);
    let victim = file(&dir, "victim");
    for source in &sources {
        let bytes = std::fs::read(source).unwrap();
        let mut state = 0x1234_5678_9abc_def1u64;
        for copy in 0..150u64 {
            let mut damaged = bytes.clone();
            if copy % 3 == 0 {
                damaged.truncate((bytes.len() as u64 * (copy + 1) / 151) as usize);
            } else {
                for _ in 0..=copy % 20 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    let at = (state % damaged.len() as u64) as usize;
                    damaged[at] ^= 1 << (state >> 60 & 7);
                }
            }
            std::fs::write(&victim, &damaged).unwrap();
            let outcome =
                std::panic::catch_unwind(|| -> Result<(), audiomill_media::MediaError> {
                    let mut decoder = Decoder::open(&victim, &Limits::default())?;
                    while decoder.next_chunk()?.is_some() {}
                    Ok(())
                });
            assert!(outcome.is_ok(), "{source:?} copy {copy}: a panic escaped");
        }
    }
}

#[test]
fn surround_opus_channels_come_out_in_wav_order() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempdir();
    let wav = file(&dir, "in.wav");
    write_wav(&wav, 48_000, 6, 48_000, Pcm::I16, |n, c| {
        0.4 * sine(200.0 * f64::from(c + 1), 48_000, n)
    });
    let opus = file(&dir, "surround.opus");
    ffmpeg(&[
        "-i",
        wav.to_str().unwrap(),
        "-c:a",
        "libopus",
        "-b:a",
        "256k",
        opus.to_str().unwrap(),
    ]);
    let info = probe(&opus, &Limits::default()).unwrap();
    assert_eq!((info.codec.as_str(), info.channels), ("opus", 6));
    let (ours, channels, _) = decode(&opus);
    assert_eq!(channels, 6);
    let theirs = ffmpeg_decode(&opus);
    assert_eq!(ours.len(), theirs.len());
    for c in 0..6 {
        let pick = |v: &[f32]| v.iter().skip(c).step_by(6).copied().collect::<Vec<_>>();
        let snr = snr_db(&pick(&theirs), &pick(&ours));
        eprintln!("5.1 opus channel {c}: SNR vs ffmpeg {snr:.1} dB");
        assert!(snr > 40.0, "channel {c}: {snr:.1} dB");
    }
}

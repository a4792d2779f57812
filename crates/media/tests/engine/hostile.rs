//! Hostile input: every file must give a result or an error, never a panic or a huge
//! allocation, and the obvious cases must give the right code.

use crate::common::*;
use audiomill_core::{AudioFormat, ConvertOptions, ErrorCode, Limits};
use audiomill_media::{analyze, convert, probe, MediaError};
use std::path::Path;

/// Probes, analyzes and converts `path`; returns the analyze result. Panics propagate (and
/// fail the test).
fn exercise(path: &Path) -> Result<(), MediaError> {
    let limits = Limits::default();
    let probed = probe(path, &limits);
    let analyzed = analyze(path, &Default::default(), &limits, &mut |f| {
        assert!((0.0..=1.0).contains(&f))
    });
    let out = path.with_extension("out.flac");
    let converted = convert(
        path,
        &out,
        &ConvertOptions::to_format(AudioFormat::Flac),
        &limits,
        &mut |_| {},
    );
    if converted.is_err() {
        assert!(!out.exists());
    }
    let _ = std::fs::remove_file(&out);
    // A file that probes as unsupported is unsupported everywhere.
    if let Err(e) = &probed {
        assert_eq!(analyzed.as_ref().unwrap_err().code(), e.code());
    }
    for err in [
        probed.as_ref().err(),
        analyzed.as_ref().err(),
        converted.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    {
        let message = err.public_message();
        assert!(!message.contains(path.to_str().unwrap()), "{message}");
    }
    analyzed.map(|_| ())
}

fn code(result: Result<(), MediaError>) -> ErrorCode {
    result.unwrap_err().code()
}

/// Deterministic pseudo-random bytes.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// A canonical 44-byte WAV header.
fn wav_header(channels: u16, rate: u32, bits: u16, data_len: u32) -> Vec<u8> {
    let block_align = channels.wrapping_mul(bits / 8);
    let mut h = Vec::new();
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&data_len.saturating_add(36).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&channels.to_le_bytes());
    h.extend_from_slice(&rate.to_le_bytes());
    h.extend_from_slice(&rate.wrapping_mul(u32::from(block_align)).to_le_bytes());
    h.extend_from_slice(&block_align.to_le_bytes());
    h.extend_from_slice(&bits.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

#[test]
fn not_audio_is_unsupported() {
    let dir = tempdir();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("one byte", vec![0xff]),
        (
            "text",
            b"Hello! This is a text file, not audio.\nSecond line.\n".repeat(100),
        ),
        (
            "json",
            br#"{"operation":"analyze","input":{"upload":"x"}}"#.to_vec(),
        ),
        ("zeros", vec![0; 10_000]),
        ("png", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec()),
    ];
    for (name, bytes) in cases {
        let path = file(&dir, name);
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(
            code(exercise(&path)),
            ErrorCode::UnsupportedFormat,
            "{name}"
        );
    }
    for seed in 0..40u64 {
        let path = file(&dir, &format!("random{seed}"));
        std::fs::write(
            &path,
            random_bytes(seed, 1 + (seed as usize * 997) % 70_000),
        )
        .unwrap();
        assert_eq!(
            code(exercise(&path)),
            ErrorCode::UnsupportedFormat,
            "seed {seed}"
        );
    }
    let missing = file(&dir, "missing.wav");
    assert_eq!(code(exercise(&missing)), ErrorCode::InputNotFound);
}

#[test]
fn forged_wav_headers() {
    let dir = tempdir();
    let second = |channels: u16| -> Vec<u8> { vec![0x10; 44_100 * 2 * usize::from(channels) / 2] };
    let with_data = |header: Vec<u8>, data: Vec<u8>| {
        let path = file(&dir, "forged.wav");
        let mut bytes = header;
        bytes.extend_from_slice(&data);
        std::fs::write(&path, bytes).unwrap();
        (exercise(&path), probe(&path, &Limits::default()))
    };
    // A data chunk declaring 4 GiB over a header alone: nothing to decode.
    let (result, _) = with_data(wav_header(2, 44_100, 16, 0xffff_fff0), vec![]);
    assert_eq!(code(result), ErrorCode::DecodeFailed);
    // The same over half a second of audio (what a streaming recorder leaves behind):
    // the duration is capped to the bytes present and the audio decodes.
    let (result, probed) = with_data(wav_header(2, 44_100, 16, 0xffff_fff0), second(2));
    assert!(result.is_ok(), "{result:?}");
    assert!((probed.unwrap().duration_secs.unwrap() - 0.5).abs() < 1e-3);
    // Absurd channel counts.
    let (result, _) = with_data(wav_header(65_535, 44_100, 16, 1000), vec![0; 1000]);
    assert!(result.is_err());
    let (result, _) = with_data(wav_header(20, 44_100, 16, 8000), vec![0; 8000]);
    assert_eq!(code(result), ErrorCode::TooManyChannels);
    let (result, _) = with_data(wav_header(0, 44_100, 16, 1000), vec![0; 1000]);
    assert_eq!(code(result), ErrorCode::DecodeFailed);
    // Absurd sample rates.
    let (result, _) = with_data(wav_header(2, 4_000_000_000, 16, 1000), vec![0; 1000]);
    assert_eq!(code(result), ErrorCode::SampleRateTooHigh);
    let (result, _) = with_data(wav_header(2, 0, 16, 1000), vec![0; 1000]);
    assert_eq!(code(result), ErrorCode::DecodeFailed);
    // Odd sample sizes and block alignments.
    let (result, _) = with_data(wav_header(2, 44_100, 0, 1000), vec![0; 1000]);
    assert!(result.is_err());
    let (result, _) = with_data(wav_header(2, 44_100, 13, 1000), vec![0; 1000]);
    assert!(result.is_err() || result.is_ok());
    // A metadata chunk claiming more bytes than the file has.
    let mut header = wav_header(2, 44_100, 16, 1000);
    let list = [b"LIST".as_slice(), &0xffff_0000u32.to_le_bytes(), b"INFO"].concat();
    header.splice(36..36, list);
    let (result, _) = with_data(header, vec![0; 1000]);
    assert_eq!(code(result), ErrorCode::DecodeFailed);
    // A header cut short.
    let (result, _) = with_data(wav_header(2, 44_100, 16, 1000)[..30].to_vec(), vec![]);
    assert_eq!(code(result), ErrorCode::DecodeFailed);
}

/// Real files cut short and with bits flipped: any result but a panic; cut inside the
/// header is `DecodeFailed`.
#[test]
fn truncated_and_corrupted_files() {
    let dir = tempdir();
    let wav = file(&dir, "good.wav");
    write_wav(&wav, 44_100, 2, 44_100, Pcm::I16, |n, c| {
        0.5 * sine(if c == 0 { 440.0 } else { 554.0 }, 44_100, n)
    });
    let flac = file(&dir, "good.flac");
    convert(
        &wav,
        &flac,
        &ConvertOptions::to_format(AudioFormat::Flac),
        &Limits::default(),
        &mut |_| {},
    )
    .unwrap();
    let mp3 = file(&dir, "good.mp3");
    convert(
        &wav,
        &mp3,
        &ConvertOptions::to_format(AudioFormat::Mp3),
        &Limits::default(),
        &mut |_| {},
    )
    .unwrap();
    let mut files = vec![
        ("wav", std::fs::read(&wav).unwrap()),
        ("flac", std::fs::read(&flac).unwrap()),
        ("mp3", std::fs::read(&mp3).unwrap()),
    ];
    if have_ffmpeg() {
        for (ext, codec) in [("ogg", "libvorbis"), ("m4a", "aac")] {
            let path = file(&dir, &format!("good.{ext}"));
            ffmpeg(&[
                "-i",
                wav.to_str().unwrap(),
                "-c:a",
                codec,
                path.to_str().unwrap(),
            ]);
            files.push((ext, std::fs::read(&path).unwrap()));
        }
    }
    let victim = file(&dir, "victim");
    for (name, bytes) in &files {
        // Truncations: inside the header, and at several points in the audio.
        for cut in [
            4,
            12,
            30,
            50,
            bytes.len() / 10,
            bytes.len() / 2,
            bytes.len() * 9 / 10,
            bytes.len() - 1,
        ] {
            std::fs::write(&victim, &bytes[..cut]).unwrap();
            let result = exercise(&victim);
            if cut <= 12 {
                assert!(result.is_err(), "{name} cut at {cut}");
            }
            if cut == bytes.len() - 1 && ["wav", "flac", "mp3"].contains(name) {
                // One byte short: the audio is all but whole, and it decodes.
                assert!(result.is_ok(), "{name} cut at {cut}: {result:?}");
            } else if cut >= bytes.len() / 2 && *name == "wav" {
                // A WAV whose data chunk overruns the file is read at its real size (streaming
                // recorders leave such sizes).
                assert!(result.is_ok(), "{name} cut at {cut}: {result:?}");
            } else if cut >= bytes.len() / 2
                && ["flac", "mp3"].contains(name)
                && cut < bytes.len() * 9 / 10
            {
                // Half of what the headers declare is missing: truncated, and refused.
                assert_eq!(code(result), ErrorCode::DecodeFailed, "{name} cut at {cut}");
            }
        }
        // Bit flips: 40 variants with 1 to 40 flipped bits each, anywhere in the file.
        for seed in 0..40u64 {
            let mut corrupt = bytes.clone();
            let noise = random_bytes(seed * 7919 + 1, 200);
            for i in 0..=seed as usize {
                let at = u32::from_le_bytes([
                    noise[4 * i % 196],
                    noise[4 * i % 196 + 1],
                    noise[4 * i % 196 + 2],
                    noise[4 * i % 196 + 3],
                ]) as usize
                    % corrupt.len();
                corrupt[at] ^= 1 << (noise[i % 200] % 8);
            }
            std::fs::write(&victim, &corrupt).unwrap();
            let _ = exercise(&victim);
        }
        // Random bytes after a valid start of the file.
        let mut spliced = bytes[..bytes.len() / 3].to_vec();
        spliced.extend(random_bytes(42, bytes.len() / 3));
        std::fs::write(&victim, &spliced).unwrap();
        let _ = exercise(&victim);
    }
}

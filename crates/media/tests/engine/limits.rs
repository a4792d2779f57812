//! Limits are enforced from the headers before decoding, and again while decoding.

use crate::common::*;
use audiomill_core::{AudioFormat, ConvertOptions, ErrorCode, Limits};
use audiomill_media::{analyze, convert, probe, MediaError};

fn limits(secs: u64, rate: u32, channels: u16) -> Limits {
    Limits {
        max_duration_secs: secs,
        max_sample_rate: rate,
        max_channels: channels,
        ..Limits::default()
    }
}

fn code(result: Result<impl std::fmt::Debug, MediaError>) -> ErrorCode {
    result.unwrap_err().code()
}

#[test]
fn too_long_too_fast_too_wide_fail_at_probe() {
    let dir = tempdir();
    let long = file(&dir, "long.wav");
    write_wav(&long, 8_000, 1, 8_000 * 3, Pcm::I16, |n, _| {
        0.1 * sine(400.0, 8_000, n)
    });
    assert_eq!(
        code(probe(&long, &limits(2, 48_000, 2))),
        ErrorCode::InputTooLong
    );
    assert!(probe(&long, &limits(3, 48_000, 2)).is_ok());
    let mut called = false;
    let err = analyze(
        &long,
        &Default::default(),
        &limits(2, 48_000, 2),
        &mut |_| called = true,
    )
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InputTooLong);
    assert!(!called, "failed before decoding anything");
    assert!(
        err.public_message().contains("2 s"),
        "{}",
        err.public_message()
    );

    let fast = file(&dir, "fast.wav");
    write_wav(&fast, 96_000, 1, 960, Pcm::I16, |_, _| 0.0);
    assert_eq!(
        code(probe(&fast, &limits(10, 48_000, 2))),
        ErrorCode::SampleRateTooHigh
    );

    let wide = file(&dir, "wide.wav");
    write_wav(&wide, 8_000, 3, 800, Pcm::I16, |_, _| 0.0);
    assert_eq!(
        code(probe(&wide, &limits(10, 48_000, 2))),
        ErrorCode::TooManyChannels
    );
    let output = file(&dir, "out.wav");
    let err = convert(
        &wide,
        &output,
        &ConvertOptions::to_format(AudioFormat::Wav),
        &limits(10, 48_000, 2),
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::TooManyChannels);
    assert!(!output.exists());
}

#[test]
fn mp3_without_duration_header_is_counted_against_the_limit() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempdir();
    let wav = file(&dir, "in.wav");
    write_wav(&wav, 22_050, 1, 22_050 * 3, Pcm::I16, |n, _| {
        0.3 * sine(300.0, 22_050, n)
    });
    let mp3 = file(&dir, "noxing.mp3");
    ffmpeg(&[
        "-i",
        wav.to_str().unwrap(),
        "-c:a",
        "libmp3lame",
        "-write_xing",
        "0",
        mp3.to_str().unwrap(),
    ]);
    let info = probe(&mp3, &Limits::default()).unwrap();
    assert!((info.duration_secs.unwrap() - 3.0).abs() < 0.1);
    assert_eq!(
        code(probe(&mp3, &limits(2, 48_000, 2))),
        ErrorCode::InputTooLong
    );
}

/// A FLAC whose STREAMINFO claims 0.5 s but which holds 3 s: the probe believes it, the
/// decoder stops once the real audio passes the limit.
#[test]
fn lying_header_is_caught_while_decoding() {
    let dir = tempdir();
    let wav = file(&dir, "in.wav");
    write_wav(&wav, 44_100, 1, 44_100 * 3, Pcm::I16, |n, _| {
        0.3 * sine(300.0, 44_100, n)
    });
    let flac = file(&dir, "liar.flac");
    convert(
        &wav,
        &flac,
        &ConvertOptions::to_format(AudioFormat::Flac),
        &Limits::default(),
        &mut |_| {},
    )
    .unwrap();
    let mut bytes = std::fs::read(&flac).unwrap();
    // STREAMINFO starts at byte 8; its 36-bit sample count spans bytes 13 (low nibble)..17.
    bytes[8 + 13] &= 0xf0;
    bytes[8 + 14..8 + 18].copy_from_slice(&22_050u32.to_be_bytes());
    std::fs::write(&flac, &bytes).unwrap();
    let info = probe(&flac, &limits(1, 48_000, 2)).unwrap();
    assert!((info.duration_secs.unwrap() - 0.5).abs() < 1e-6);
    let err = analyze(
        &flac,
        &Default::default(),
        &limits(1, 48_000, 2),
        &mut |_| {},
    )
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InputTooLong, "{err}");
}

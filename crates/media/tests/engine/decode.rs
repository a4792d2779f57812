//! Decoding files that ffmpeg wrote, in every supported container.

use crate::common::*;
use audiomill_core::Limits;
use audiomill_media::{probe, Decoder};
use std::path::Path;

/// A 3 s, 44.1 kHz stereo test tone (different per channel) as 16-bit WAV.
fn source(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let path = file(dir, "source.wav");
    write_wav(&path, 44_100, 2, 44_100 * 3, Pcm::I16, |n, c| {
        0.5 * sine(if c == 0 { 440.0 } else { 660.0 }, 44_100, n)
    });
    path
}

/// Decodes the whole file; returns (frames, peak).
fn decode_all(path: &Path) -> (u64, f32) {
    let mut decoder = Decoder::open(path, &Limits::default()).unwrap();
    let mut peak = 0f32;
    while let Some(chunk) = decoder.next_chunk().unwrap() {
        peak = chunk.iter().fold(peak, |p, x| p.max(x.abs()));
    }
    (decoder.frames_decoded(), peak)
}

#[test]
fn decodes_what_ffmpeg_writes() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempdir();
    let src = source(&dir);
    // (file name, ffmpeg output options, container, codec, duration tolerance in seconds)
    let cases: &[(&str, &[&str], &str, &str, f64)] = &[
        (
            "a.mp3",
            &["-c:a", "libmp3lame", "-b:a", "192k"],
            "mp3",
            "mp3",
            0.001,
        ),
        (
            "noxing.mp3",
            &["-c:a", "libmp3lame", "-write_xing", "0"],
            "mp3",
            "mp3",
            0.06,
        ),
        ("a.flac", &["-c:a", "flac"], "flac", "flac", 0.0),
        ("a.ogg", &["-c:a", "libvorbis"], "ogg", "vorbis", 0.001),
        (
            "a.m4a",
            &["-c:a", "aac", "-b:a", "128k"],
            "mp4",
            "aac",
            0.06,
        ),
        ("alac.m4a", &["-c:a", "alac"], "mp4", "alac", 0.0),
        ("a.aiff", &["-c:a", "pcm_s16be"], "aiff", "pcm_s16be", 0.0),
        ("a.caf", &["-c:a", "pcm_s24le"], "caf", "pcm_s24le", 0.0),
        ("a.mkv", &["-c:a", "flac"], "mkv", "flac", 0.001),
        ("a.adts", &["-c:a", "aac"], "aac", "aac", 0.06),
        ("a.webm", &["-c:a", "libvorbis"], "webm", "vorbis", 0.02),
        (
            "mono.wav",
            &["-ac", "1", "-ar", "22050", "-c:a", "pcm_s24le"],
            "wav",
            "pcm_s24le",
            0.0,
        ),
    ];
    for (name, options, container, codec, tolerance) in cases {
        // A misleading extension: detection must go by content.
        let out = file(&dir, &format!("{name}.bin"));
        let mut args = vec!["-i", src.to_str().unwrap()];
        args.extend_from_slice(options);
        let format = match *name {
            n if n.ends_with(".m4a") => "ipod",
            n if n.ends_with(".mkv") => "matroska",
            n if n.ends_with(".aiff") => "aiff",
            n => n.rsplit('.').next().unwrap(),
        };
        args.extend_from_slice(&["-f", format, out.to_str().unwrap()]);
        ffmpeg(&args);
        let info = probe(&out, &Limits::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mono = name.starts_with("mono");
        let rate = if mono { 22_050 } else { 44_100 };
        assert_eq!(
            (info.container.as_str(), info.codec.as_str()),
            (*container, *codec),
            "{name}"
        );
        assert_eq!(info.sample_rate, rate, "{name}");
        assert_eq!(info.channels, if mono { 1 } else { 2 }, "{name}");
        let duration = info.duration_secs.unwrap();
        assert!(
            (duration - 3.0).abs() <= tolerance + 1e-9,
            "{name}: probe says {duration} s"
        );
        assert!(info.bit_rate.is_some_and(|b| b > 0), "{name}");
        let (frames, peak) = decode_all(&out);
        let decoded = frames as f64 / f64::from(rate);
        eprintln!("{name}: probe {duration:.4} s, decoded {decoded:.4} s, peak {peak:.3}");
        assert!(
            (decoded - 3.0).abs() <= tolerance + 1e-9,
            "{name}: decoded {decoded} s"
        );
        // Lossy encoders overshoot at the abrupt start of the tone (ffmpeg's AAC by 0.25).
        assert!(peak > 0.45 && peak < 0.8, "{name}: peak {peak}");
    }
}

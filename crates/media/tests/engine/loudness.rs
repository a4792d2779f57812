//! Levels and loudness against known answers (EBU Tech 3341 / 3342) and against ffmpeg.

use crate::common::*;
use audiomill_core::Limits;
use audiomill_media::{analyze, Analysis};
use std::path::Path;

/// A test case: name, (level dBFS, seconds) segments, expected value.
type Case = (&'static str, &'static [(f64, f64)], f64);

fn measure(path: &Path) -> Analysis {
    let mut progress = ProgressCheck(Vec::new());
    let analysis = analyze(
        path,
        &Default::default(),
        &Limits::default(),
        &mut progress.callback(),
    )
    .unwrap();
    progress.assert_valid();
    analysis
}

#[test]
fn full_scale_sine_rms_and_peak() {
    let dir = tempdir();
    let path = file(&dir, "sine.wav");
    // 997 Hz fits a whole number of cycles in one second at 48 kHz.
    write_wav(&path, 48_000, 2, 48_000, Pcm::F32, |n, _| {
        sine(997.0, 48_000, n)
    });
    let a = measure(&path);
    assert_eq!(
        (a.container.as_str(), a.codec.as_str()),
        ("wav", "pcm_f32le")
    );
    assert_eq!((a.sample_rate, a.channels), (48_000, 2));
    assert!((a.duration_secs - 1.0).abs() < 1e-9, "{}", a.duration_secs);
    let rms = a.rms_dbfs.unwrap();
    assert!((rms + 3.0103).abs() <= 0.01, "rms {rms}");
    let peak = a.sample_peak_dbfs.unwrap();
    assert!(peak <= 0.0 && peak > -0.001, "peak {peak}");
    let true_peak = a.true_peak_dbtp.unwrap();
    assert!(true_peak > -0.1 && true_peak < 0.1, "true peak {true_peak}");
    assert_eq!(a.bit_rate, Some(48_000 * 2 * 32));
}

#[test]
fn digital_silence_has_no_levels() {
    let dir = tempdir();
    let path = file(&dir, "silence.wav");
    write_wav(&path, 44_100, 2, 44_100 * 4, Pcm::I16, |_, _| 0.0);
    let a = measure(&path);
    assert!((a.duration_secs - 4.0).abs() < 1e-9);
    assert_eq!(a.sample_peak_dbfs, None);
    assert_eq!(a.rms_dbfs, None);
    assert_eq!(a.integrated_lufs, None);
    assert_eq!(a.loudness_range_lu, None);
    assert_eq!(a.true_peak_dbtp, None);
    let json = serde_json::to_value(&a).unwrap();
    assert!(json["integrated_lufs"].is_null());
}

/// EBU Tech 3341 (loudness) cases 1–5, stereo 1 kHz sines, expected −23 / −33 LUFS ±0.1.
#[test]
fn ebu_tech_3341_integrated_loudness() {
    let cases: [Case; 5] = [
        ("case 1", &[(-23.0, 20.0)], -23.0),
        ("case 2", &[(-33.0, 20.0)], -33.0),
        (
            "case 3",
            &[(-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0)],
            -23.0,
        ),
        (
            "case 4",
            &[
                (-72.0, 10.0),
                (-36.0, 10.0),
                (-23.0, 60.0),
                (-36.0, 10.0),
                (-72.0, 10.0),
            ],
            -23.0,
        ),
        (
            "case 5",
            &[(-26.0, 20.0), (-20.0, 20.1), (-26.0, 20.0)],
            -23.0,
        ),
    ];
    let dir = tempdir();
    for (i, (name, segments, expected)) in cases.into_iter().enumerate() {
        let path = file(&dir, &format!("3341-{i}.wav"));
        let pcm = if i % 2 == 0 { Pcm::I24 } else { Pcm::F32 };
        write_segments(&path, segments, pcm);
        let a = measure(&path);
        let lufs = a.integrated_lufs.unwrap();
        eprintln!("EBU 3341 {name}: {lufs:.3} LUFS (expected {expected})");
        assert!((lufs - expected).abs() <= 0.1, "{name}: {lufs} LUFS");
        std::fs::remove_file(&path).unwrap();
    }
}

/// EBU Tech 3342 (loudness range) cases 1–4, stereo 1 kHz sines.
#[test]
fn ebu_tech_3342_loudness_range() {
    let cases: [Case; 4] = [
        ("case 1", &[(-20.0, 20.0), (-30.0, 20.0)], 10.0),
        ("case 2", &[(-20.0, 20.0), (-15.0, 20.0)], 5.0),
        ("case 3", &[(-40.0, 20.0), (-20.0, 20.0)], 20.0),
        (
            "case 4",
            &[
                (-50.0, 20.0),
                (-35.0, 20.0),
                (-20.0, 20.0),
                (-35.0, 20.0),
                (-50.0, 20.0),
            ],
            15.0,
        ),
    ];
    let dir = tempdir();
    for (i, (name, segments, expected)) in cases.into_iter().enumerate() {
        let path = file(&dir, &format!("3342-{i}.wav"));
        write_segments(&path, segments, Pcm::I24);
        let a = measure(&path);
        let lra = a.loudness_range_lu.unwrap();
        eprintln!("EBU 3342 {name}: LRA {lra:.3} LU (expected {expected})");
        assert!((lra - expected).abs() <= 0.1, "{name}: {lra} LU");
        std::fs::remove_file(&path).unwrap();
    }
}

/// A music-like signal (chords of harmonics, noise, level changes, stereo differences)
/// measured by us and by ffmpeg's `ebur128` filter.
#[test]
fn matches_ffmpeg_ebur128() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempdir();
    let path = file(&dir, "music.wav");
    let rate = 44_100u32;
    let levels = [-30.0, -18.0, -24.0, -12.0, -40.0, -20.0, -16.0, -28.0];
    let section = u64::from(rate) * 5;
    let mut noise = 0x2545_f491_4f6c_dd1du64;
    let mut last_noise = 0.0;
    write_wav(
        &path,
        rate,
        2,
        section * levels.len() as u64,
        Pcm::I24,
        |n, c| {
            if c == 0 {
                // xorshift: deterministic noise, one value per frame.
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                last_noise = (noise >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
            }
            let s = (n / section) as usize;
            // Smooth 50 ms ramps between sections, like a fader.
            let into = (n % section) as f64 / f64::from(rate);
            let previous = levels[s.saturating_sub(1)];
            let level = if into < 0.05 && s > 0 {
                previous + (levels[s] - previous) * into / 0.05
            } else {
                levels[s]
            };
            let root = [110.0, 146.83, 164.81, 196.0][s % 4];
            let mut x = 0.0;
            for (k, weight) in [(1.0, 1.0), (2.0, 0.5), (3.0, 0.33), (5.0, 0.2)] {
                x += weight * sine(root * k, rate, n);
                x += 0.5 * weight * sine(root * 1.25 * k, rate, n);
            }
            x = 0.3 * x + 0.2 * last_noise;
            let pan = if c == 0 { 1.0 } else { 0.8 };
            amp(level) * x * pan
        },
    );
    let ours = measure(&path);
    let (i, lra, peak) = ffmpeg_ebur128(&path);
    let (our_i, our_lra) = (
        ours.integrated_lufs.unwrap(),
        ours.loudness_range_lu.unwrap(),
    );
    let our_peak = ours.true_peak_dbtp.unwrap();
    eprintln!(
        "vs ffmpeg: I {our_i:.2} / {i:.1} LUFS, LRA {our_lra:.2} / {lra:.1} LU, true peak {our_peak:.2} / {peak:.1} dBTP"
    );
    // ffmpeg prints one decimal, so allow its rounding on top of the 0.1 LU.
    assert!((our_i - i).abs() <= 0.1 + 0.05, "I {our_i} vs {i}");
    assert!(
        (our_lra - lra).abs() <= 0.1 + 0.05,
        "LRA {our_lra} vs {lra}"
    );
    assert!(
        (our_peak - peak).abs() <= 0.5,
        "true peak {our_peak} vs {peak}"
    );
}

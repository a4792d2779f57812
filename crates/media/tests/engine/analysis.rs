//! `analyze` beyond loudness: clipping, DC offset, silence, tempo and the waveform overview.

use crate::common::*;
use audiomill_core::{AnalyzeOptions, Limits};
use audiomill_media::{analyze, render_waveform_png, Analysis};
use std::f64::consts::TAU;
use std::path::Path;

fn run(path: &Path, options: &AnalyzeOptions) -> Analysis {
    let mut progress = ProgressCheck(Vec::new());
    let analysis = analyze(path, options, &Limits::default(), &mut progress.callback()).unwrap();
    progress.assert_valid();
    analysis
}

fn defaults(path: &Path) -> Analysis {
    run(path, &AnalyzeOptions::default())
}

/// A small deterministic generator of uniform noise in −1..1 (xorshift).
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

#[test]
fn clipping_is_counted_on_flat_tops_only() {
    let dir = tempdir();
    let clipped = file(&dir, "clipped.wav");
    write_wav(&clipped, 44_100, 2, 44_100, Pcm::I16, |n, _| {
        (1.5 * sine(997.0, 44_100, n)).clamp(-1.0, 1.0)
    });
    let a = defaults(&clipped);
    // |1.5·sin| ≥ 1 over 53.5% of each cycle: about 47200 of the 88200 samples.
    assert!(
        a.clipped_samples > 46_000 && a.clipped_samples < 48_500,
        "{}",
        a.clipped_samples
    );

    let clean = file(&dir, "clean.wav");
    write_wav(&clean, 44_100, 2, 44_100, Pcm::I16, |n, _| {
        amp(-1.0) * sine(997.0, 44_100, n)
    });
    assert_eq!(defaults(&clean).clipped_samples, 0);
    // A full-scale float sine touches 1.0 at single samples: crests, not clipping.
    let full = file(&dir, "full.wav");
    write_wav(&full, 48_000, 1, 48_000, Pcm::F32, |n, _| {
        (TAU * 1000.0 * n as f64 / 48_000.0 + TAU / 4.0).sin()
    });
    assert_eq!(defaults(&full).clipped_samples, 0);
}

#[test]
fn dc_offset_is_the_mean_per_channel() {
    let dir = tempdir();
    let path = file(&dir, "dc.wav");
    write_wav(&path, 44_100, 2, 88_200, Pcm::I16, |n, c| {
        let offset = if c == 0 { 0.1 } else { -0.05 };
        0.5 * sine(997.0, 44_100, n) + offset
    });
    let a = defaults(&path);
    assert_eq!(a.dc_offset.len(), 2);
    assert!((a.dc_offset[0] - 0.1).abs() < 1e-3, "{:?}", a.dc_offset);
    assert!((a.dc_offset[1] + 0.05).abs() < 1e-3, "{:?}", a.dc_offset);
}

#[test]
fn silence_longer_than_the_minimum_is_found() {
    let dir = tempdir();
    let path = file(&dir, "gaps.wav");
    let rate = 44_100u32;
    // Tone 0-1 s, silence 1-3 s, tone 3-4 s, silence 4-4.2 s, tone 4.2-5.2 s.
    let silent = |t: f64| (1.0..3.0).contains(&t) || (4.0..4.2).contains(&t);
    let frames = (5.2 * f64::from(rate)) as u64;
    write_wav(&path, rate, 2, frames, Pcm::I16, |n, _| {
        let t = n as f64 / f64::from(rate);
        if silent(t) {
            0.0
        } else {
            0.5 * sine(440.0, rate, n)
        }
    });
    let a = defaults(&path);
    assert_eq!(a.silence.len(), 1, "{:?}", a.silence);
    let s = a.silence[0];
    assert!((s.start_secs - 1.0).abs() <= 0.01, "{s:?}");
    assert!((s.end_secs - 3.0).abs() <= 0.01, "{s:?}");
    // With a shorter minimum, the 0.2 s gap counts too; with a higher threshold, the tone at
    // −6 dBFS (RMS −9 dBFS) still does not.
    let options = AnalyzeOptions {
        silence_min_secs: 0.1,
        silence_threshold_db: -20.0,
        ..AnalyzeOptions::default()
    };
    let a = run(&path, &options);
    assert_eq!(a.silence.len(), 2, "{:?}", a.silence);
    assert!((a.silence[1].start_secs - 4.0).abs() <= 0.01);
    assert!((a.silence[1].end_secs - 4.2).abs() <= 0.01);
}

/// A click track at 44.1 kHz: `bpm` beats for `secs` seconds, each a kick-like decaying 60 Hz
/// sine or a 10 ms noise burst, over a little noise floor.
fn click_track(bpm: f64, secs: f64, kick: bool) -> Vec<f64> {
    pulses(bpm, secs, kick, 0.123)
}

/// As [`click_track`], the first beat at `offset` seconds.
fn pulses(bpm: f64, secs: f64, kick: bool, offset: f64) -> Vec<f64> {
    let rate = 44_100.0;
    let period = 60.0 / bpm;
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    (0..(secs * rate) as u64)
        .map(|n| {
            let t = n as f64 / rate;
            let since = (t - offset).rem_euclid(period);
            let floor = 0.001 * noise.next();
            let beat = if t < offset {
                0.0
            } else if kick {
                0.8 * (-since / 0.05).exp() * (TAU * 60.0 * since).sin()
            } else if since < 0.01 {
                0.5 * noise.next()
            } else {
                0.0
            };
            floor + beat
        })
        .collect()
}

/// Writes `samples` to both channels of a 16-bit 44.1 kHz WAV.
fn write_stereo(path: &Path, samples: &[f64]) {
    write_wav(path, 44_100, 2, samples.len() as u64, Pcm::I16, |n, _| {
        samples[n as usize]
    });
}

#[test]
fn tempo_of_click_tracks() {
    let dir = tempdir();
    let mut worst_confidence: f64 = 1.0;
    for (bpm, kick) in [
        (90.0, true),
        (120.0, false),
        (128.0, true),
        (140.0, false),
        (90.0, false),
        (120.0, true),
        (128.0, false),
        (140.0, true),
        (40.0, true),
        (60.0, false),
        (160.0, true),
    ] {
        let path = file(&dir, &format!("click{bpm}{kick}.wav"));
        write_stereo(&path, &click_track(bpm, 30.0, kick));
        let a = defaults(&path);
        let found = a.tempo_bpm.unwrap();
        let confidence = a.tempo_confidence.unwrap();
        eprintln!(
            "{bpm} BPM ({}): {found:.3} BPM (error {:+.3}), confidence {confidence:.3}",
            if kick { "kick" } else { "noise burst" },
            found - bpm
        );
        assert!((found - bpm).abs() <= 1.0, "{bpm} BPM measured {found}");
        assert!(confidence > 0.5, "{bpm} BPM: confidence {confidence}");
        worst_confidence = worst_confidence.min(confidence);
    }

    // Faster pulses are heard (and reported) at half tempo: the 120 BPM prior picks the octave.
    for bpm in [180.0, 220.0] {
        let path = file(&dir, &format!("fast{bpm}.wav"));
        write_stereo(&path, &click_track(bpm, 30.0, true));
        let found = defaults(&path).tempo_bpm.unwrap();
        eprintln!("{bpm} BPM: {found:.3} BPM");
        assert!(
            (found - bpm / 2.0).abs() <= 1.0,
            "{bpm} BPM measured {found}"
        );
    }

    // Kicks on the beats and quieter noise bursts (hats) on the off-beats: the beat, not the
    // eighths.
    let kicks = click_track(100.0, 30.0, true);
    let hats = pulses(100.0, 30.0, false, 0.123 + 0.3);
    let mix: Vec<f64> = kicks.iter().zip(&hats).map(|(k, h)| k + 0.4 * h).collect();
    let path = file(&dir, "pattern.wav");
    write_stereo(&path, &mix);
    let a = defaults(&path);
    eprintln!(
        "100 BPM kicks + off-beat hats: {:?} BPM, confidence {:?}",
        a.tempo_bpm, a.tempo_confidence
    );
    assert!((a.tempo_bpm.unwrap() - 100.0).abs() <= 1.0);

    // White noise has no beat: whatever it reports is less sure than any click track.
    let noise_path = file(&dir, "noise.wav");
    let mut noise = Noise(42);
    let samples: Vec<f64> = (0..30 * 44_100).map(|_| 0.3 * noise.next()).collect();
    write_stereo(&noise_path, &samples);
    let a = defaults(&noise_path);
    eprintln!(
        "white noise: {:?} BPM, confidence {:?}",
        a.tempo_bpm, a.tempo_confidence
    );
    let noise_confidence = a.tempo_confidence.unwrap_or(0.0);
    assert!(
        noise_confidence < worst_confidence && noise_confidence < 0.3,
        "noise {noise_confidence}, clicks {worst_confidence}"
    );
}

#[test]
fn a_beat_too_weak_to_trust_is_no_tempo_but_keeps_its_confidence() {
    let dir = tempdir();
    let path = file(&dir, "noise.wav");
    let mut noise = Noise(7);
    let samples: Vec<f64> = (0..20 * 44_100).map(|_| 0.3 * noise.next()).collect();
    write_stereo(&path, &samples);
    let a = defaults(&path);
    assert_eq!(a.tempo_bpm, None, "{:?}", a.tempo_confidence);
    let confidence = a.tempo_confidence.unwrap();
    assert!(
        confidence < audiomill_media::analyze::MIN_TEMPO_CONFIDENCE,
        "{confidence}"
    );
}

#[test]
fn no_tempo_when_short_silent_steady_or_not_asked() {
    let dir = tempdir();
    let short = file(&dir, "short.wav");
    write_stereo(&short, &click_track(120.0, 3.0, true));
    let a = defaults(&short);
    assert_eq!((a.tempo_bpm, a.tempo_confidence), (None, None));

    let silent = file(&dir, "silent.wav");
    write_wav(&silent, 44_100, 1, 10 * 44_100, Pcm::I16, |_, _| 0.0);
    assert_eq!(defaults(&silent).tempo_bpm, None);

    let tone = file(&dir, "tone.wav");
    write_wav(&tone, 44_100, 1, 10 * 44_100, Pcm::I16, |n, _| {
        0.5 * sine(440.0, 44_100, n)
    });
    assert_eq!(defaults(&tone).tempo_bpm, None);

    let clicks = file(&dir, "clicks.wav");
    write_stereo(&clicks, &click_track(120.0, 10.0, true));
    assert!(defaults(&clicks).tempo_bpm.is_some());
    let off = AnalyzeOptions {
        tempo: false,
        ..AnalyzeOptions::default()
    };
    let a = run(&clicks, &off);
    assert_eq!((a.tempo_bpm, a.tempo_confidence), (None, None));
}

#[test]
fn waveform_per_channel_and_png() {
    let dir = tempdir();
    let path = file(&dir, "lr.wav");
    // Left silent, right a full-scale 100 Hz sine (float, so the crests reach ±1).
    write_wav(&path, 48_000, 2, 3 * 48_000, Pcm::F32, |n, c| {
        if c == 0 {
            0.0
        } else {
            (TAU * 100.0 * n as f64 / 48_000.0 + TAU / 4.0).sin()
        }
    });
    let options = AnalyzeOptions {
        waveform_buckets: 300,
        ..AnalyzeOptions::default()
    };
    let a = run(&path, &options);
    let w = a.waveform.clone().unwrap();
    assert_eq!((w.buckets, w.channels), (300, 2));
    assert_eq!((w.min.len(), w.max.len()), (2, 2));
    for c in 0..2 {
        assert_eq!((w.min[c].len(), w.max[c].len()), (300, 300));
    }
    // Each bucket is 10 ms: a whole period of 100 Hz.
    assert!(w.min[0].iter().chain(&w.max[0]).all(|&v| v == 0.0));
    assert!(
        w.max[1].iter().all(|&v| (v - 1.0).abs() < 1e-3),
        "{:?}",
        w.max[1]
    );
    assert!(
        w.min[1].iter().all(|&v| (v + 1.0).abs() < 1e-3),
        "{:?}",
        w.min[1]
    );

    let png = render_waveform_png(&w, 600, 160);
    let decoder = png::Decoder::new(std::io::Cursor::new(&png));
    let mut reader = decoder.read_info().unwrap();
    assert_eq!((reader.info().width, reader.info().height), (600, 160));
    let mut pixels = vec![0; reader.output_buffer_size()];
    let frame = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(frame.color_type, png::ColorType::Rgba);
    // The right lane (rows 80-159) is filled top to bottom; the left one only near its middle.
    let opaque = |x: usize, y: usize| pixels[(y * 600 + x) * 4 + 3] == 0xff;
    assert!(opaque(300, 81) && opaque(300, 158));
    assert!(!opaque(300, 5) && !opaque(300, 75));
    assert!((30..50).any(|y| opaque(300, y)));

    let none = AnalyzeOptions {
        waveform_buckets: 0,
        ..AnalyzeOptions::default()
    };
    assert_eq!(run(&path, &none).waveform, None);
    // Results serialize with every new field.
    let json = serde_json::to_value(&a).unwrap();
    for key in [
        "clipped_samples",
        "dc_offset",
        "silence",
        "tempo_bpm",
        "tempo_confidence",
        "waveform",
    ] {
        assert!(json.get(key).is_some(), "{key} missing");
    }
}

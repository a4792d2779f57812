//! The edits of `convert` (trim, silence trim, gain, normalization, fades, channel pick), on
//! generated signals, read back by our decoder and `analyze`, and by ffmpeg where it helps.

use crate::common::*;
use audiomill_core::{
    AudioFormat, ConvertOptions, ErrorCode, Limits, Normalize, SampleFormat, TrimSilence,
};
use audiomill_media::{analyze, convert, Analysis, Decoder, MediaError};
use std::f64::consts::TAU;
use std::path::Path;

/// Options for float WAV output (exact samples) with everything else from the input.
fn float_wav() -> ConvertOptions {
    ConvertOptions {
        sample_format: Some(SampleFormat::F32),
        ..ConvertOptions::to_format(AudioFormat::Wav)
    }
}

fn run(input: &Path, output: &Path, options: &ConvertOptions) -> Result<(), MediaError> {
    let mut progress = ProgressCheck(Vec::new());
    let result = convert(
        input,
        output,
        options,
        &Limits::default(),
        &mut progress.callback(),
    );
    if result.is_ok() {
        progress.assert_valid();
    }
    result.map(|_| ())
}

/// Decodes a file with our decoder: (interleaved samples, channels, rate).
fn decode(path: &Path) -> (Vec<f32>, usize, u32) {
    let mut decoder = Decoder::open(path, &Limits::default()).unwrap();
    let mut samples = Vec::new();
    while let Some(chunk) = decoder.next_chunk().unwrap() {
        samples.extend_from_slice(chunk);
    }
    (
        samples,
        usize::from(decoder.channels()),
        decoder.sample_rate(),
    )
}

fn measure(path: &Path) -> Analysis {
    analyze(path, &Default::default(), &Limits::default(), &mut |_| {}).unwrap()
}

/// Amplitude of the `freq` Hz component of `x` (Goertzel-style projection).
fn tone_level(x: &[f32], rate: u32, freq: f64) -> f64 {
    let (mut re, mut im) = (0.0, 0.0);
    for (n, s) in x.iter().enumerate() {
        let phase = TAU * freq * n as f64 / f64::from(rate);
        re += f64::from(*s) * phase.cos();
        im += f64::from(*s) * phase.sin();
    }
    2.0 * (re * re + im * im).sqrt() / x.len() as f64
}

/// One channel of interleaved samples.
fn channel(samples: &[f32], channels: usize, c: usize) -> Vec<f32> {
    samples.iter().skip(c).step_by(channels).copied().collect()
}

/// Sample `n` of a sine whose frequency steps each second (300, 400, … Hz), mono 48 kHz.
fn stepped(n: u64) -> f64 {
    let second = n / 48_000;
    0.5 * sine(300.0 + 100.0 * second as f64, 48_000, n)
}

#[test]
fn trim_is_sample_accurate_and_clamped() {
    let dir = tempdir();
    let wav = file(&dir, "stepped.wav");
    write_wav(&wav, 48_000, 1, 480_000, Pcm::F32, |n, _| stepped(n));
    let out = file(&dir, "trimmed.wav");
    run(
        &wav,
        &out,
        &ConvertOptions {
            start: Some(2.5),
            end: Some(7.25),
            ..float_wav()
        },
    )
    .unwrap();
    let (samples, channels, rate) = decode(&out);
    assert_eq!((channels, rate), (1, 48_000));
    assert_eq!(samples.len(), 348_000 - 120_000);
    for (i, x) in samples.iter().enumerate() {
        assert_eq!(*x, stepped(120_000 + i as u64) as f32, "sample {i}");
    }
    // The kept part holds the tones of seconds 2 to 7 only.
    assert!(tone_level(&samples[..24_000], 48_000, 500.0) > 0.45);
    assert!(tone_level(&samples[samples.len() - 12_000..], 48_000, 1000.0) > 0.45);

    // 16-bit output, `end` past the input: clamped, exact count.
    let out16 = file(&dir, "tail.wav");
    run(
        &wav,
        &out16,
        &ConvertOptions {
            start: Some(9.0),
            end: Some(60.0),
            ..ConvertOptions::to_format(AudioFormat::Wav)
        },
    )
    .unwrap();
    let (samples, _, _) = decode(&out16);
    assert_eq!(samples.len(), 48_000);

    // Trimmed then resampled: the length of the kept part at the new rate (within a frame).
    let out44 = file(&dir, "resampled.wav");
    run(
        &wav,
        &out44,
        &ConvertOptions {
            start: Some(1.3),
            end: Some(4.7001),
            sample_rate: Some(44_100),
            ..float_wav()
        },
    )
    .unwrap();
    let (samples, _, rate) = decode(&out44);
    assert_eq!(rate, 44_100);
    let kept = (4.7001f64 * 48_000.0).round() - (1.3f64 * 48_000.0).round();
    let expected = kept * 44_100.0 / 48_000.0;
    assert!(
        (samples.len() as f64 - expected).abs() <= 1.0,
        "{} frames, expected {expected}",
        samples.len()
    );
    if have_ffmpeg() {
        let probe = ffprobe(&out44);
        assert!((probe.duration - expected / 44_100.0).abs() < 2.0 / 44_100.0);
    }
}

#[test]
fn start_after_the_end_is_refused() {
    let dir = tempdir();
    let wav = file(&dir, "short.wav");
    write_wav(&wav, 48_000, 2, 48_000, Pcm::I16, |n, _| {
        0.3 * sine(440.0, 48_000, n)
    });
    let flac = file(&dir, "short.flac");
    run(&wav, &flac, &ConvertOptions::to_format(AudioFormat::Flac)).unwrap();
    // WAV: known from the header; FLAC: found at the end of the pass. Normalizing: first pass.
    for (input, normalize) in [(&wav, false), (&flac, false), (&flac, true)] {
        let out = file(&dir, "out.wav");
        let err = run(
            input,
            &out,
            &ConvertOptions {
                start: Some(1.0),
                normalize: normalize.then_some(Normalize {
                    target_lufs: -23.0,
                    true_peak_dbtp: -1.0,
                }),
                ..ConvertOptions::to_format(AudioFormat::Wav)
            },
        )
        .unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidInput);
        assert_eq!(err.public_message(), "start is after the end of the input");
        assert!(!out.exists());
    }
}

#[test]
fn silence_is_trimmed_at_both_ends() {
    let dir = tempdir();
    let wav = file(&dir, "padded.wav");
    let rate = 48_000u32;
    let tone = |n: u64| {
        if (96_000..240_000).contains(&n) {
            0.5 * sine(440.0, rate, n - 96_000)
        } else {
            0.0
        }
    };
    // 2 s silence, 3 s tone, 1.5 s silence.
    write_wav(&wav, rate, 2, 312_000, Pcm::F32, |n, _| tone(n));
    let out = file(&dir, "trimmed.wav");
    run(
        &wav,
        &out,
        &ConvertOptions {
            trim_silence: Some(TrimSilence {
                threshold_db: -60.0,
            }),
            ..float_wav()
        },
    )
    .unwrap();
    // The threshold crossings: first and last samples above -60 dBFS.
    let threshold = 10f64.powf(-60.0 / 20.0);
    let loud: Vec<u64> = (0..312_000u64)
        .filter(|n| f64::from(tone(*n) as f32).abs() > threshold)
        .collect();
    let (first, last) = (loud[0], *loud.last().unwrap());
    let (samples, channels, _) = decode(&out);
    assert_eq!(samples.len() / channels, (last - first + 1) as usize);
    assert!(((samples.len() / channels) as f64 / 48_000.0 - 3.0).abs() < 2.0 / 48_000.0);
    assert_eq!(samples[0], tone(first) as f32);
    assert_eq!(*samples.last().unwrap(), tone(last) as f32);

    // All silence: refused, with a message saying why.
    let quiet = file(&dir, "quiet.wav");
    write_wav(&quiet, rate, 1, 48_000, Pcm::F32, |n, _| {
        0.0005 * sine(100.0, rate, n)
    });
    let err = run(
        &quiet,
        &file(&dir, "nothing.wav"),
        &ConvertOptions {
            trim_silence: Some(TrimSilence {
                threshold_db: -60.0,
            }),
            ..float_wav()
        },
    )
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    assert!(err.public_message().contains("all silence"), "{err}");
}

#[test]
fn long_pauses_are_kept_exactly_through_the_spill_file() {
    // 1 s tone, 30 s of quiet noise under the threshold (held back past the memory cap, so it
    // goes through the temporary file), 1 s tone, 20 s of quiet noise (dropped).
    let dir = tempdir();
    let wav = file(&dir, "pause.wav");
    let rate = 48_000u32;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * 0.0005
    };
    write_wav(&wav, rate, 2, 52 * 48_000, Pcm::F32, |n, _| {
        let second = n / 48_000;
        if second == 0 || second == 31 {
            0.5 * sine(1000.0, rate, n)
        } else {
            noise()
        }
    });
    let out_dir = tempdir();
    let out = file(&out_dir, "out.wav");
    run(
        &wav,
        &out,
        &ConvertOptions {
            trim_silence: Some(TrimSilence {
                threshold_db: -40.0,
            }),
            ..float_wav()
        },
    )
    .unwrap();
    let (input, _, _) = decode(&wav);
    let (samples, _, _) = decode(&out);
    // From the first loud frame (frame 1: sin(0) = 0) to the last one of second 31.
    let first = (0..input.len() / 2)
        .find(|i| input[2 * i].abs() > 0.01)
        .unwrap();
    let last = (0..input.len() / 2)
        .rfind(|i| input[2 * i].abs() > 0.01)
        .unwrap();
    assert_eq!(samples.len(), 2 * (last - first + 1));
    assert!(samples[..] == input[2 * first..2 * (last + 1)]);
    // Nothing is left behind next to the output.
    let names: Vec<_> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("out.wav")]);
}

#[test]
fn gain_scales_the_level() {
    let dir = tempdir();
    let wav = file(&dir, "tone.wav");
    write_wav(&wav, 44_100, 2, 44_100 * 3, Pcm::I24, |n, c| {
        0.5 * sine(440.0 + 220.0 * f64::from(c), 44_100, n)
    });
    let out = file(&dir, "quieter.flac");
    run(
        &wav,
        &out,
        &ConvertOptions {
            gain_db: Some(-6.0),
            ..ConvertOptions::to_format(AudioFormat::Flac)
        },
    )
    .unwrap();
    let (before, after) = (measure(&wav), measure(&out));
    let drop = before.rms_dbfs.unwrap() - after.rms_dbfs.unwrap();
    assert!((drop - 6.0).abs() < 0.01, "rms down {drop} dB");
    let drop = before.integrated_lufs.unwrap() - after.integrated_lufs.unwrap();
    assert!((drop - 6.0).abs() < 0.01, "loudness down {drop} LU");
}

#[test]
fn normalizes_to_the_target() {
    let dir = tempdir();
    // A stereo 1 kHz sine at -30 dBFS reads -30 LUFS (EBU Tech 3341).
    let wav = file(&dir, "quiet.wav");
    write_segments(&wav, &[(-30.0, 20.0)], Pcm::I24);
    assert!((measure(&wav).integrated_lufs.unwrap() + 30.0).abs() < 0.05);
    for format in [AudioFormat::Wav, AudioFormat::Flac] {
        let out = file(&dir, &format!("normalized.{}", format.extension()));
        let mut progress = ProgressCheck(Vec::new());
        convert(
            &wav,
            &out,
            &ConvertOptions {
                normalize: Some(Normalize {
                    target_lufs: -23.0,
                    true_peak_dbtp: -1.0,
                }),
                // Compensated by the normalization.
                gain_db: Some(-10.0),
                ..ConvertOptions::to_format(format)
            },
            &Limits::default(),
            &mut progress.callback(),
        )
        .unwrap();
        progress.assert_valid();
        // Both passes report: something in each half.
        assert!(
            progress.0.iter().any(|f| *f > 0.0 && *f <= 0.5),
            "{:?}",
            progress.0
        );
        assert!(
            progress.0.iter().any(|f| *f > 0.5 && *f < 1.0),
            "{:?}",
            progress.0
        );
        let loudness = measure(&out).integrated_lufs.unwrap();
        assert!(
            (loudness + 23.0).abs() <= 0.1,
            "{format:?}: {loudness} LUFS"
        );
        if have_ffmpeg() {
            let (i, _, _) = ffmpeg_ebur128(&out);
            assert!((i + 23.0).abs() <= 0.1, "ffmpeg: {i} LUFS");
        }
    }
}

#[test]
fn the_true_peak_ceiling_binds() {
    let dir = tempdir();
    let wav = file(&dir, "peaky.wav");
    let rate = 48_000u32;
    // A -20 dBFS sine with 5 ms bursts at -2 dBFS every half second: about -20 LUFS with a
    // true peak near -2 dBTP, so reaching -9 LUFS would need +11 dB and break the ceiling.
    write_wav(&wav, rate, 2, 10 * 48_000, Pcm::F32, |n, _| {
        let burst = (n % 24_000) < 240;
        let level = if burst { amp(-2.0) } else { amp(-20.0) };
        level * sine(997.0, rate, n)
    });
    let before = measure(&wav);
    let out = file(&dir, "loud.wav");
    run(
        &wav,
        &out,
        &ConvertOptions {
            normalize: Some(Normalize {
                target_lufs: -9.0,
                true_peak_dbtp: -1.0,
            }),
            ..float_wav()
        },
    )
    .unwrap();
    let after = measure(&out);
    let peak = after.true_peak_dbtp.unwrap();
    assert!(peak <= -1.0 + 0.1, "true peak {peak} dBTP");
    assert!(peak > -1.2, "the ceiling is reached: {peak} dBTP");
    let loudness = after.integrated_lufs.unwrap();
    assert!(loudness < -9.5, "{loudness} LUFS");
    // The gain is the one that puts the true peak on the ceiling.
    let gain = loudness - before.integrated_lufs.unwrap();
    let expected = -1.0 - before.true_peak_dbtp.unwrap();
    assert!(
        (gain - expected).abs() < 0.05,
        "gain {gain}, expected {expected}"
    );
    if have_ffmpeg() {
        let (_, _, tp) = ffmpeg_ebur128(&out);
        assert!(tp <= -1.0 + 0.2, "ffmpeg true peak {tp}");
    }
}

#[test]
fn digital_silence_is_not_normalized() {
    let dir = tempdir();
    let wav = file(&dir, "silence.wav");
    write_wav(&wav, 16_000, 1, 32_000, Pcm::I16, |_, _| 0.0);
    let out = file(&dir, "out.wav");
    run(
        &wav,
        &out,
        &ConvertOptions {
            normalize: Some(Normalize {
                target_lufs: -14.0,
                true_peak_dbtp: -1.0,
            }),
            fade_out: Some(0.5),
            ..ConvertOptions::to_format(AudioFormat::Wav)
        },
    )
    .unwrap();
    let (samples, _, _) = decode(&out);
    assert_eq!(samples.len(), 32_000);
    assert!(samples.iter().all(|x| *x == 0.0));
}

#[test]
fn fades_are_linear_and_reach_zero() {
    let dir = tempdir();
    let rate = 48_000u32;
    let wav = file(&dir, "tone.wav");
    write_wav(&wav, rate, 2, 4 * 48_000, Pcm::I16, |n, c| {
        0.5 * sine(440.0 * (1.0 + f64::from(c)), rate, n)
    });
    // The same audio in FLAC, whose length is not trusted from the header: the fades then
    // hold frames back, and must give the very same result.
    let flac = file(&dir, "tone.flac");
    run(&wav, &flac, &ConvertOptions::to_format(AudioFormat::Flac)).unwrap();
    let (source, _, _) = decode(&wav);
    let options = ConvertOptions {
        start: Some(0.5),
        fade_in: Some(1.0),
        fade_out: Some(1.5),
        ..float_wav()
    };
    let mut outputs = Vec::new();
    for input in [&wav, &flac] {
        let out = file(&dir, "faded.wav");
        run(input, &out, &options).unwrap();
        let (samples, channels, _) = decode(&out);
        assert_eq!(channels, 2);
        let frames = samples.len() / 2;
        assert_eq!(frames, 3 * 48_000 + 24_000);
        assert_eq!(&samples[..2], &[0.0, 0.0]);
        assert_eq!(&samples[samples.len() - 2..], &[0.0, 0.0]);
        for i in (0..frames).step_by(997) {
            let mut factor = 1.0;
            if i < 48_000 {
                factor *= i as f64 / 48_000.0;
            }
            let before_end = frames - 1 - i;
            if before_end < 72_000 {
                factor *= before_end as f64 / 72_000.0;
            }
            for c in 0..2 {
                let x = f64::from(source[2 * (24_000 + i) + c]) * factor;
                assert!(
                    (f64::from(samples[2 * i + c]) - x).abs() < 1e-6,
                    "frame {i}"
                );
            }
        }
        // The level ramps up over the fade-in: RMS per 100 ms rising.
        let rms: Vec<f64> = samples[..2 * 48_000]
            .chunks(2 * 4_800)
            .map(|w| (w.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / w.len() as f64).sqrt())
            .collect();
        assert!(rms.windows(2).all(|w| w[1] > w[0]), "{rms:?}");
        outputs.push(samples);
    }
    assert!(
        outputs[0] == outputs[1],
        "header length and held-back fades differ"
    );
}

#[test]
fn picks_one_channel() {
    let dir = tempdir();
    let rate = 44_100u32;
    let wav = file(&dir, "two-tones.wav");
    write_wav(&wav, rate, 2, 44_100, Pcm::I16, |n, c| {
        let freq = if c == 0 { 440.0 } else { 1000.0 };
        0.4 * sine(freq, rate, n)
    });
    let mono = file(&dir, "right.wav");
    run(
        &wav,
        &mono,
        &ConvertOptions {
            channel: Some(1),
            ..ConvertOptions::to_format(AudioFormat::Wav)
        },
    )
    .unwrap();
    let (samples, channels, _) = decode(&mono);
    assert_eq!((channels, samples.len()), (1, 44_100));
    assert!((tone_level(&samples, rate, 1000.0) - 0.4).abs() < 0.01);
    assert!(tone_level(&samples, rate, 440.0) < 0.001);

    let both = file(&dir, "left-twice.wav");
    run(
        &wav,
        &both,
        &ConvertOptions {
            channel: Some(0),
            channels: Some(2),
            ..ConvertOptions::to_format(AudioFormat::Wav)
        },
    )
    .unwrap();
    let (samples, channels, _) = decode(&both);
    assert_eq!(channels, 2);
    assert!(samples.chunks_exact(2).all(|f| f[0] == f[1]));
    let left = channel(&samples, 2, 0);
    assert!((tone_level(&left, rate, 440.0) - 0.4).abs() < 0.01);
    assert!(tone_level(&left, rate, 1000.0) < 0.001);

    let missing = file(&dir, "missing.wav");
    let err = run(
        &wav,
        &missing,
        &ConvertOptions {
            channel: Some(3),
            ..ConvertOptions::to_format(AudioFormat::Wav)
        },
    )
    .unwrap_err();
    assert_eq!(err.code(), ErrorCode::InvalidInput);
    assert_eq!(
        err.public_message(),
        "channel 3 does not exist: the input has 2 channels"
    );
    assert!(!missing.exists());
}

#[test]
fn composed_edits_in_one_job() {
    let dir = tempdir();
    let rate = 44_100u32;
    let wav = file(&dir, "source.wav");
    // 10 s stereo at 44.1 kHz: left a 1 kHz tone at -30 dBFS, right a 300 Hz tone.
    write_wav(&wav, rate, 2, 10 * 44_100, Pcm::I16, |n, c| {
        if c == 0 {
            amp(-30.0) * sine(1000.0, rate, n)
        } else {
            0.5 * sine(300.0, rate, n)
        }
    });
    let normalize = Some(Normalize {
        target_lufs: -16.0,
        true_peak_dbtp: -1.0,
    });
    let job = |format: AudioFormat, fades: bool| ConvertOptions {
        channel: Some(0),
        start: Some(1.0),
        end: Some(8.0),
        normalize,
        fade_in: fades.then_some(0.5),
        fade_out: fades.then_some(1.0),
        sample_rate: Some(48_000),
        ..ConvertOptions::to_format(format)
    };
    let mp3 = file(&dir, "out.mp3");
    let info = convert(
        &wav,
        &mp3,
        &job(AudioFormat::Mp3, true),
        &Limits::default(),
        &mut |_| {},
    )
    .unwrap()
    .media;
    assert_eq!((info.sample_rate, info.channels), (48_000, 1));
    let (samples, channels, rate) = decode(&mp3);
    assert_eq!((channels, rate), (1, 48_000));
    // 7 s at 48 kHz; MP3 is gapless here, within a frame.
    assert!(
        (samples.len() as i64 - 336_000).abs() <= 1,
        "{} frames",
        samples.len()
    );
    assert!(tone_level(&samples[48_000..96_000], 48_000, 300.0) < 0.001);
    // The loudness before fades is the target; the MP3 matches the same job in WAV.
    let wav_plain = file(&dir, "plain.wav");
    run(&wav, &wav_plain, &job(AudioFormat::Wav, false)).unwrap();
    let plain = measure(&wav_plain).integrated_lufs.unwrap();
    assert!((plain + 16.0).abs() <= 0.1, "{plain} LUFS");
    let wav_faded = file(&dir, "faded.wav");
    run(&wav, &wav_faded, &job(AudioFormat::Wav, true)).unwrap();
    let faded = measure(&wav_faded).integrated_lufs.unwrap();
    // LAME itself lowers a 1 kHz tone by about 0.27 dB at these settings (ffmpeg's
    // libmp3lame does the same), hence the tolerance.
    let lossy = measure(&mp3).integrated_lufs.unwrap();
    assert!(
        (lossy - faded).abs() <= 0.4,
        "mp3 {lossy}, wav {faded} LUFS"
    );
    assert!(faded < plain, "the fades lower the loudness");
    if have_ffmpeg() {
        let probe = ffprobe(&mp3);
        assert_eq!((probe.codec.as_str(), probe.sample_rate), ("mp3", 48_000));
        // ffprobe's MP3 duration counts whole frames, delay and padding included; ffmpeg
        // decodes gaplessly from the LAME tag: compare that length.
        let raw = file(&dir, "out.raw");
        ffmpeg(&[
            "-i",
            mp3.to_str().unwrap(),
            "-f",
            "f32le",
            raw.to_str().unwrap(),
        ]);
        let frames = std::fs::metadata(&raw).unwrap().len() / 4;
        assert!(
            (frames as i64 - 336_000).abs() <= 1,
            "ffmpeg decodes {frames} frames"
        );
        let (i, _, _) = ffmpeg_ebur128(&mp3);
        assert!((i - faded).abs() <= 0.45, "ffmpeg {i} LUFS, wav {faded}");
    }
}

/// Peak resident memory of this process so far, in KiB (Linux).
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Memory check on a 2-hour stereo file, run by hand (release build):
/// `cargo test --release -p audiomill-media --test engine -- --ignored --nocapture two_hours`.
/// Reports the peak RSS; not an assertion.
#[test]
#[ignore = "slow: generates a 1.3 GB WAV; run by hand to measure memory"]
fn two_hours_normalized_to_flac_in_bounded_memory() {
    let dir = tempdir();
    let wav = file(&dir, "long.wav");
    let rate = 44_100u32;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    write_wav(&wav, rate, 2, 2 * 3600 * 44_100, Pcm::I16, |n, c| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
        // Quiet lead-in and tail, for the silence trim.
        if !(44_100 * 5..=44_100 * 7195).contains(&n) {
            return 0.0;
        }
        0.2 * sine(220.0 * (1.0 + f64::from(c)), rate, n) + 0.05 * noise
    });
    eprintln!("peak RSS after writing the input: {:?} KiB", peak_rss_kib());
    let started = std::time::Instant::now();
    let flac = file(&dir, "long.flac");
    let info = convert(
        &wav,
        &flac,
        &ConvertOptions {
            normalize: Some(Normalize {
                target_lufs: -16.0,
                true_peak_dbtp: -1.0,
            }),
            trim_silence: Some(TrimSilence {
                threshold_db: -60.0,
            }),
            fade_in: Some(10.0),
            fade_out: Some(30.0),
            ..ConvertOptions::to_format(AudioFormat::Flac)
        },
        &Limits::default(),
        &mut |_| {},
    )
    .unwrap()
    .media;
    eprintln!(
        "normalize (two passes) to FLAC: {:.1?}, peak RSS {:?} KiB",
        started.elapsed(),
        peak_rss_kib()
    );
    // 5 s of silence trimmed at each end.
    let kept = info.duration_secs.unwrap();
    assert!((kept - 7190.0).abs() < 0.01, "{kept} s");
    // Without normalization, from FLAC (length not trusted): trailing silence and a
    // 10-minute fade-out are held back through the spill file.
    let started = std::time::Instant::now();
    let out = file(&dir, "faded.flac");
    let info = convert(
        &flac,
        &out,
        &ConvertOptions {
            trim_silence: Some(TrimSilence {
                threshold_db: -60.0,
            }),
            fade_out: Some(600.0),
            ..ConvertOptions::to_format(AudioFormat::Flac)
        },
        &Limits::default(),
        &mut |_| {},
    )
    .unwrap()
    .media;
    eprintln!(
        "held-back 600 s fade-out, FLAC to FLAC: {:.1?}, peak RSS {:?} KiB",
        started.elapsed(),
        peak_rss_kib()
    );
    // The end of the first fade-out is under -60 dBFS: trimmed as silence this time.
    let faded = info.duration_secs.unwrap();
    assert!(faded <= kept && faded > kept - 1.0, "{faded} s");
}

//! Signal generators, WAV writers and ffmpeg helpers shared by the tests.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A temporary directory for one test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

/// Sample format of a generated WAV.
#[derive(Clone, Copy, Debug)]
pub enum Pcm {
    I16,
    I24,
    F32,
}

/// Writes interleaved frames produced by `sample(frame_index, channel)` to a WAV file.
pub fn write_wav(
    path: &Path,
    rate: u32,
    channels: u16,
    frames: u64,
    pcm: Pcm,
    mut sample: impl FnMut(u64, u16) -> f64,
) {
    let (bits, format) = match pcm {
        Pcm::I16 => (16, hound::SampleFormat::Int),
        Pcm::I24 => (24, hound::SampleFormat::Int),
        Pcm::F32 => (32, hound::SampleFormat::Float),
    };
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: format,
    };
    let mut writer = hound::WavWriter::create(path, spec).expect("create wav");
    for n in 0..frames {
        for c in 0..channels {
            let x = sample(n, c);
            match pcm {
                Pcm::I16 => writer
                    .write_sample((x * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
                    .unwrap(),
                Pcm::I24 => writer
                    .write_sample((x * 8_388_608.0).round().clamp(-8_388_608.0, 8_388_607.0) as i32)
                    .unwrap(),
                Pcm::F32 => writer.write_sample(x as f32).unwrap(),
            }
        }
    }
    writer.finalize().unwrap();
}

/// Linear amplitude of a level in dBFS.
pub fn amp(dbfs: f64) -> f64 {
    10f64.powf(dbfs / 20.0)
}

/// A sine of `freq` Hz at frame `n` of a `rate` Hz signal.
pub fn sine(freq: f64, rate: u32, n: u64) -> f64 {
    (2.0 * PI * freq * n as f64 / f64::from(rate)).sin()
}

/// Writes a stereo 1 kHz sine at 48 kHz whose level (dBFS per channel) changes by segment:
/// `(level, seconds)` pairs, as in EBU Tech 3341/3342.
pub fn write_segments(path: &Path, segments: &[(f64, f64)], pcm: Pcm) {
    let rate = 48_000u32;
    let bounds: Vec<(u64, f64)> = segments
        .iter()
        .scan(0u64, |end, (db, secs)| {
            *end += (secs * f64::from(rate)).round() as u64;
            Some((*end, amp(*db)))
        })
        .collect();
    let total = bounds.last().map_or(0, |b| b.0);
    let mut segment = 0;
    write_wav(path, rate, 2, total, pcm, |n, _| {
        while n >= bounds[segment].0 {
            segment += 1;
        }
        bounds[segment].1 * sine(1000.0, rate, n)
    });
}

/// Whether ffmpeg and ffprobe are installed. CI installs them, so there a missing tool is an
/// error; elsewhere the cross-checks are skipped with a note.
pub fn have_ffmpeg() -> bool {
    let ok = Command::new("ffmpeg").arg("-version").output().is_ok()
        && Command::new("ffprobe").arg("-version").output().is_ok();
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "ffmpeg/ffprobe are required in CI"
        );
        eprintln!("ffmpeg not installed: skipping the cross-check");
    }
    ok
}

/// Runs ffmpeg with `args`, panicking with its stderr on failure; returns stderr.
pub fn ffmpeg(args: &[&str]) -> String {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-y"])
        .args(args)
        .output()
        .expect("run ffmpeg");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ffmpeg {args:?} failed:\n{stderr}");
    stderr
}

/// What ffprobe says about the first audio stream of a file.
#[derive(Debug)]
pub struct FfProbe {
    pub codec: String,
    pub sample_rate: u32,
    pub channels: u16,
    pub duration: f64,
    pub bit_rate: Option<u64>,
}

pub fn ffprobe(path: &Path) -> FfProbe {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=codec_name,sample_rate,channels,duration,bit_rate:format=duration",
            "-of",
            "default=noprint_wrappers=1",
        ])
        .arg(path)
        .output()
        .expect("run ffprobe");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "ffprobe failed on {path:?}: {text}");
    let get = |key: &str| {
        text.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .find(|v| *v != "N/A")
            .map(str::to_string)
    };
    FfProbe {
        codec: get("codec_name").unwrap_or_default(),
        sample_rate: get("sample_rate").and_then(|v| v.parse().ok()).unwrap_or(0),
        channels: get("channels").and_then(|v| v.parse().ok()).unwrap_or(0),
        duration: get("duration")
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN),
        bit_rate: get("bit_rate").and_then(|v| v.parse().ok()),
    }
}

/// Integrated loudness (LUFS), loudness range (LU) and true peak (dBTP) from the Summary of
/// ffmpeg's `ebur128` filter.
pub fn ffmpeg_ebur128(path: &Path) -> (f64, f64, f64) {
    let stderr = ffmpeg(&[
        "-nostats",
        "-i",
        path.to_str().unwrap(),
        "-af",
        "ebur128=peak=true",
        "-f",
        "null",
        "-",
    ]);
    let summary = stderr.rsplit("Summary:").next().expect("ebur128 summary");
    let value = |label: &str| -> f64 {
        summary
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {label} in summary:\n{summary}"))
    };
    (value("I:"), value("LRA:"), value("Peak:"))
}

/// A path in `dir`.
pub fn file(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

/// A progress callback that checks the contract: fractions in 0..=1, never decreasing,
/// ending at 1.
pub struct ProgressCheck(pub Vec<f64>);

impl ProgressCheck {
    pub fn callback(&mut self) -> impl FnMut(f64) + '_ {
        |f| self.0.push(f)
    }

    pub fn assert_valid(&self) {
        let seen = &self.0;
        assert!(seen.iter().all(|f| (0.0..=1.0).contains(f)), "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "{seen:?}");
        assert_eq!(seen.last(), Some(&1.0), "{seen:?}");
    }
}

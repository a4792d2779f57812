//! Audio the tests make for themselves.

use std::f64::consts::PI;
use std::path::Path;

/// A WAV file of interleaved samples in [-1, 1]: 16-bit PCM, or 32-bit float when `float`.
pub fn wav(rate: u32, channels: u16, samples: &[f64], float: bool) -> Vec<u8> {
    let (format, bits): (u16, u16) = if float { (3, 32) } else { (1, 16) };
    let block = channels * bits / 8;
    let data_len = samples.len() as u32 * u32::from(bits / 8);
    let mut out = Vec::with_capacity(44 + data_len as usize);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&format.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    out.extend_from_slice(&block.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for &s in samples {
        if float {
            out.extend_from_slice(&(s as f32).to_le_bytes());
        } else {
            let v = (s * 32767.0).round().clamp(-32768.0, 32767.0) as i16;
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    out
}

/// Interleaved sine of `freq` Hz at `amplitude` (linear peak) on every channel.
pub fn sine(rate: u32, channels: u16, secs: f64, freq: f64, amplitude: f64) -> Vec<f64> {
    let frames = (secs * f64::from(rate)).round() as usize;
    let mut out = Vec::with_capacity(frames * channels as usize);
    for i in 0..frames {
        let v = amplitude * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin();
        for _ in 0..channels {
            out.push(v);
        }
    }
    out
}

/// Deterministic white noise at `amplitude`.
pub fn noise(rate: u32, channels: u16, secs: f64, amplitude: f64) -> Vec<f64> {
    let n = (secs * f64::from(rate)).round() as usize * channels as usize;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            amplitude * ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        })
        .collect()
}

/// dBFS to linear amplitude.
pub fn db(level: f64) -> f64 {
    10f64.powf(level / 20.0)
}

/// Encodes a WAV with Debian's ffmpeg to another format (by the output's extension).
pub fn ffmpeg_encode(wav_bytes: &[u8], ext: &str, extra: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.wav");
    let output = dir.path().join(format!("out.{ext}"));
    std::fs::write(&input, wav_bytes).unwrap();
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-i"])
        .arg(&input)
        .args(extra)
        .arg(&output)
        .status()
        .expect("ffmpeg is installed (apt-get install ffmpeg)");
    assert!(status.success());
    std::fs::read(&output).unwrap()
}

/// `ffprobe`'s view of a file: (codec, sample rate, channels, duration).
pub fn ffprobe(bytes: &[u8]) -> (String, u32, u16, f64) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    std::fs::write(&path, bytes).unwrap();
    ffprobe_path(&path)
}

pub fn ffprobe_path(path: &Path) -> (String, u32, u16, f64) {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "a:0",
            "-show_entries",
            "stream=codec_name,sample_rate,channels:format=duration",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe is installed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["streams"][0];
    (
        s["codec_name"].as_str().unwrap_or("").to_owned(),
        s["sample_rate"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0),
        s["channels"].as_u64().unwrap_or(0) as u16,
        v["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .unwrap_or(0.0),
    )
}

/// A FLAC made by ffmpeg whose STREAMINFO declares 10 s but which holds only the first fifth
/// of its bytes: it probes fine, and must then fail to decode as truncated.
pub fn truncated_flac() -> Vec<u8> {
    let flac = ffmpeg_encode(
        &wav(44_100, 2, &sine(44_100, 2, 10.0, 440.0, 0.5), false),
        "flac",
        &[],
    );
    flac[..flac.len() / 5].to_vec()
}

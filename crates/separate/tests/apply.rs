//! `apply_model`, the separator and the streaming path: the segment grid and weights by hand,
//! against the reference (`demucs.apply.apply_model` run on stand-in networks, and the
//! fixtures' real checkpoints), and streaming against in-memory.

use audiomill_core::{AudioFormat, Limits, SampleFormat};
use audiomill_media::encode::{create_encoder, EncoderSpec};
use audiomill_media::Decoder;
use audiomill_separate::apply::{max_shift, transition_weight, Chunk, Grid, MAX_SHIFTS};
use audiomill_separate::bag::{load_model_with, resolve_signature, Segment};
use audiomill_separate::stream::{buffer_bounds, separate_file_with_stats, StreamStats};
use audiomill_separate::{
    apply_model, separate_file, separate_tensor, ApplyOptions, Bag, ModelInfo, Network,
    SeparateError, SeparateParams, ShiftOffsets, StemEncoding, StemFile,
};
use candle_core::{Device, Tensor};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

// ---------------------------------------------------------------------------------------
// A stand-in network
// ---------------------------------------------------------------------------------------

/// A network whose output depends on where its window starts, on the whole window's content
/// and (for the transformer stand-in) on the padding to its training length:
/// `y[s, c, j] = gain·(s+1)·x[c, j] + 0.25·mean(x[c]) + 0.01·(s+1)·j`. A misplaced window,
/// a wrong padding or a wrong trim all change it. Twin of the Python `ToyBase` the
/// reference values of [`TOY_REFERENCE`] were computed with.
struct Toy {
    info: ModelInfo,
    gain: f32,
    pads: bool,
    fail_at_call: Option<usize>,
    calls: AtomicUsize,
}

fn toy_info(
    class: &str,
    sources: usize,
    channels: usize,
    rate: u32,
    segment: (u64, u64),
) -> ModelInfo {
    ModelInfo {
        class: class.into(),
        sources: (0..sources).map(|s| format!("s{s}")).collect(),
        samplerate: rate,
        audio_channels: channels,
        segment,
    }
}

fn toy(
    class: &str,
    gain: f32,
    sources: usize,
    channels: usize,
    rate: u32,
    segment: (u64, u64),
) -> Toy {
    Toy {
        info: toy_info(class, sources, channels, rate, segment),
        gain,
        pads: class == "HTDemucs",
        fail_at_call: None,
        calls: AtomicUsize::new(0),
    }
}

impl Network for Toy {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn forward(&self, mix: &Tensor) -> Result<Tensor, SeparateError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if Some(call) == self.fail_at_call {
            return Err(SeparateError::Unsupported(
                "the stand-in network failed".into(),
            ));
        }
        let (batch, channels, length) = mix.dims3()?;
        assert_eq!(channels, self.info.audio_channels);
        let n = if self.pads {
            let training = self.info.segment_samples();
            assert!(length <= training, "{length} > training length {training}");
            training
        } else {
            length
        };
        let x = mix.to_vec3::<f32>()?;
        let sources = self.info.sources.len();
        let mut out = Vec::with_capacity(batch * sources * channels * length);
        for row_b in &x {
            for s in 0..sources {
                let scale = self.gain * (s + 1) as f32;
                let slope = (0.01 * (s + 1) as f64) as f32;
                for row in row_b {
                    // Zero padding up to `n` adds nothing to the sum.
                    let mean = row.iter().sum::<f32>() / n as f32;
                    for (j, v) in row.iter().enumerate() {
                        out.push(v * scale + 0.25 * mean + slope * j as f32);
                    }
                }
            }
        }
        Ok(Tensor::from_vec(
            out,
            (batch, sources, channels, length),
            mix.device(),
        )?)
    }
}

fn bag_of(toys: Vec<Toy>, weights: Option<Vec<Vec<f64>>>, segment: Option<f64>) -> Bag {
    let networks: Vec<Arc<dyn Network>> = toys.into_iter().map(|t| Arc::new(t) as _).collect();
    Bag::new(networks, weights, segment, &Device::Cpu).unwrap()
}

fn options(
    shifts: usize,
    split: bool,
    overlap: f64,
    tp: f64,
    segment: Option<f64>,
    offsets: Vec<usize>,
) -> ApplyOptions {
    ApplyOptions {
        shifts,
        split,
        overlap,
        transition_power: tp,
        segment,
        offsets: ShiftOffsets::Fixed(offsets),
    }
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

// ---------------------------------------------------------------------------------------
// Grid, weights, padding: by hand
// ---------------------------------------------------------------------------------------

#[test]
fn transition_weight_is_the_reference_triangle() {
    // th.cat([arange(1, 4), arange(4, 0, -1)]) / 4
    assert_eq!(
        transition_weight(7, 1.0),
        vec![0.25, 0.5, 0.75, 1.0, 0.75, 0.5, 0.25]
    );
    // [1, 2, 3, 3, 2, 1] / 3, squared
    let w = transition_weight(6, 2.0);
    let expected: Vec<f32> = [1.0f32, 2.0, 3.0, 3.0, 2.0, 1.0]
        .iter()
        .map(|x| (x / 3.0) * (x / 3.0))
        .collect();
    assert_eq!(w, expected);
    assert_eq!(transition_weight(1, 1.0), vec![1.0]);
    assert_eq!(transition_weight(2, 1.0), vec![1.0, 1.0]);
}

#[test]
fn max_shift_is_half_a_second_truncated() {
    assert_eq!(max_shift(44_100), 22_050);
    assert_eq!(max_shift(16), 8);
    assert_eq!(max_shift(44_101), 22_050);
}

fn chunks(grid: &Grid, length: usize) -> Vec<Chunk> {
    (0..grid.chunk_count(length))
        .map(|k| grid.chunk(length, k).unwrap())
        .collect()
}

fn chunk(offset: usize, length: usize, window_start: i64, window_length: usize) -> Chunk {
    Chunk {
        offset,
        length,
        window_start,
        window_length,
    }
}

#[test]
fn segment_grid_and_centred_padding_by_hand() {
    // Transformer stand-in: 16 Hz, 1 s segment; overlap 0.25 → stride int(0.75 · 16) = 12.
    let bag = bag_of(vec![toy("HTDemucs", 1.0, 2, 2, 16, (1, 1))], None, None);
    let member = &bag.members()[0];
    let grid = Grid::new(member, &ApplyOptions::default(), 16).unwrap();
    assert_eq!(grid.segment_and_stride(), Some((16, 12)));
    // range(0, 40, 12) = 0, 12, 24, 36; the last chunk (4 samples) is padded to the 16 of
    // valid_length, centred: 6 samples of real signal before it.
    assert_eq!(
        chunks(&grid, 40),
        vec![
            chunk(0, 16, 0, 16),
            chunk(12, 16, 12, 16),
            chunk(24, 16, 24, 16),
            chunk(36, 4, 30, 16)
        ]
    );
    assert_eq!(grid.chunk(40, 3).unwrap().trim(), 6);
    // Requested segment 0.75 s → 12 samples, stride 9, window int(0.75 · 16) = 12.
    let requested = ApplyOptions {
        segment: Some(0.75),
        ..ApplyOptions::default()
    };
    let grid = Grid::new(member, &requested, 16).unwrap();
    assert_eq!(
        chunks(&grid, 20),
        vec![
            chunk(0, 12, 0, 12),
            chunk(9, 11, 9, 12),
            chunk(18, 2, 13, 12)
        ]
    );
    // Overlap 0.75 → stride 4: the last four chunks are short, each padded from before.
    let dense = ApplyOptions {
        overlap: 0.75,
        ..ApplyOptions::default()
    };
    let grid = Grid::new(member, &dense, 16).unwrap();
    assert_eq!(
        chunks(&grid, 30)[4..],
        [
            chunk(16, 14, 15, 16),
            chunk(20, 10, 17, 16),
            chunk(24, 6, 19, 16),
            chunk(28, 2, 21, 16)
        ]
    );
    // Without split the pass is one chunk padded to the training length (centred), and a
    // pass longer than that is refused (HTDemucs.valid_length raises).
    let whole = ApplyOptions {
        split: false,
        ..ApplyOptions::default()
    };
    let grid = Grid::new(member, &whole, 16).unwrap();
    assert_eq!(chunks(&grid, 13), vec![chunk(0, 13, -1, 16)]);
    assert!(matches!(
        grid.chunk(17, 0),
        Err(SeparateError::InvalidOption(_))
    ));
    // Other models see each chunk as it is.
    let plain = bag_of(vec![toy("Toy", 1.0, 2, 2, 16, (1, 1))], None, Some(0.75));
    let grid = Grid::new(&plain.members()[0], &ApplyOptions::default(), 16).unwrap();
    assert_eq!(
        chunks(&grid, 20),
        vec![
            chunk(0, 12, 0, 12),
            chunk(9, 11, 9, 11),
            chunk(18, 2, 18, 2)
        ]
    );
}

#[test]
fn overlap_add_of_a_pointwise_network_is_exact() {
    // A network that only scales its input (per source): after weighting and normalization
    // by the summed weights, every sample must come back scaled, whatever the grid, shifts
    // and bag weights. Exact up to f32 rounding of w·x / w.
    struct Scale(ModelInfo, f32);
    impl Network for Scale {
        fn info(&self) -> &ModelInfo {
            &self.0
        }
        fn forward(&self, mix: &Tensor) -> Result<Tensor, SeparateError> {
            let sources = self.0.sources.len();
            let parts: Vec<Tensor> = (0..sources)
                .map(|s| (mix * f64::from(self.1 * (s + 1) as f32)).unwrap())
                .collect();
            Ok(Tensor::stack(&parts, 1)?)
        }
    }
    let info = toy_info("HTDemucs", 3, 2, 100, (1, 1));
    let networks: Vec<Arc<dyn Network>> = vec![
        Arc::new(Scale(info.clone(), 1.0)),
        Arc::new(Scale(info, 2.0)),
    ];
    let bag = Bag::new(
        networks,
        Some(vec![vec![1.0, 0.0, 3.0], vec![1.0, 2.0, 1.0]]),
        None,
        &Device::Cpu,
    )
    .unwrap();
    let length = 777;
    let data: Vec<f32> = (0..2 * length)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
        .collect();
    let mix = Tensor::from_vec(data.clone(), (1, 2, length), &Device::Cpu).unwrap();
    for (shifts, overlap, tp) in [(0, 0.25, 1.0), (2, 0.5, 3.0), (3, 0.9, 1.7)] {
        let opts = ApplyOptions {
            shifts,
            overlap,
            transition_power: tp,
            offsets: ShiftOffsets::Random { seed: 7 },
            ..ApplyOptions::default()
        };
        let out = flat(&apply_model(&bag, &mix, &opts, &mut |_| {}).unwrap());
        // Source gains: member 1 gives (1, 2, 3)·x, member 2 (2, 4, 6)·x; weighted:
        // s0 (1·1 + 1·2)/2 = 1.5, s1 (0·2 + 2·4)/2 = 4, s2 (3·3 + 1·6)/4 = 3.75.
        for (s, gain) in [1.5f32, 4.0, 3.75].iter().enumerate() {
            let expected: Vec<f32> = data.iter().map(|x| x * gain).collect();
            let got = &out[s * 2 * length..(s + 1) * 2 * length];
            let err = max_abs_diff(got, &expected);
            assert!(err < 2e-6, "shifts {shifts}, source {s}: {err}");
        }
    }
}

#[test]
fn options_are_validated() {
    let bag = bag_of(vec![toy("HTDemucs", 1.0, 2, 2, 16, (1, 1))], None, None);
    let ok = ApplyOptions::default();
    assert!(ok.validate(&bag).is_ok());
    let bad = [
        ApplyOptions {
            shifts: MAX_SHIFTS + 1,
            ..ok.clone()
        },
        ApplyOptions {
            overlap: 1.0,
            ..ok.clone()
        },
        ApplyOptions {
            overlap: -0.1,
            ..ok.clone()
        },
        ApplyOptions {
            overlap: f64::NAN,
            ..ok.clone()
        },
        ApplyOptions {
            transition_power: 0.5,
            ..ok.clone()
        },
        ApplyOptions {
            transition_power: 1e6,
            ..ok.clone()
        },
        ApplyOptions {
            segment: Some(0.0),
            ..ok.clone()
        },
        ApplyOptions {
            segment: Some(1.5),
            ..ok.clone()
        },
        ApplyOptions {
            segment: Some(0.01),
            ..ok.clone()
        },
        ApplyOptions {
            overlap: 0.99,
            segment: Some(0.125),
            ..ok.clone()
        },
        ApplyOptions {
            shifts: 2,
            offsets: ShiftOffsets::Fixed(vec![1]),
            ..ok.clone()
        },
        ApplyOptions {
            shifts: 1,
            offsets: ShiftOffsets::Fixed(vec![9]),
            ..ok.clone()
        },
    ];
    for options in bad {
        let err = options.validate(&bag).unwrap_err();
        assert!(
            matches!(err, SeparateError::InvalidOption(_)),
            "{options:?}: {err}"
        );
    }
    // The segment may be as long as the model's, and is unbounded for other models.
    assert!(ApplyOptions {
        segment: Some(1.0),
        ..ok.clone()
    }
    .validate(&bag)
    .is_ok());
    let plain = bag_of(vec![toy("Toy", 1.0, 2, 2, 16, (1, 1))], None, None);
    assert!(ApplyOptions {
        segment: Some(3.0),
        ..ok.clone()
    }
    .validate(&plain)
    .is_ok());
}

#[test]
fn random_offsets_are_seeded_and_in_range() {
    let a = ShiftOffsets::Random { seed: 42 }.resolve(2, 5, 8).unwrap();
    let b = ShiftOffsets::Random { seed: 42 }.resolve(2, 5, 8).unwrap();
    let c = ShiftOffsets::Random { seed: 43 }.resolve(2, 5, 8).unwrap();
    assert_eq!(a.len(), 10);
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.iter().all(|o| *o <= 8));
}

#[test]
fn bag_checks_and_segment_override() {
    let make = |class: &str, segment: (u64, u64)| toy(class, 1.0, 2, 2, 16, segment);
    // A transformer keeps its segment when the override is longer, takes it when shorter;
    // other models always take it.
    let bag = bag_of(
        vec![make("HTDemucs", (1, 1)), make("Toy", (1, 1))],
        None,
        Some(2.0),
    );
    assert_eq!(
        bag.members()[0].segment,
        Segment {
            secs: 1.0,
            samples: 16
        }
    );
    assert_eq!(
        bag.members()[1].segment,
        Segment {
            secs: 2.0,
            samples: 32
        }
    );
    let bag = bag_of(vec![make("Toy", (1, 1))], None, Some(0.5));
    assert_eq!(
        bag.members()[0].segment,
        Segment {
            secs: 0.5,
            samples: 8
        }
    );
    assert_eq!(bag.max_allowed_segment(), f64::INFINITY);
    let bag = bag_of(vec![make("HTDemucs", (1, 1))], None, Some(1.0));
    assert_eq!(bag.max_allowed_segment(), 1.0);
    // A transformer cannot be shortened by the descriptor (see `bag.rs`).
    let shortened = Bag::new(
        vec![Arc::new(make("HTDemucs", (1, 1))) as Arc<dyn Network>],
        None,
        Some(0.5),
        &Device::Cpu,
    );
    assert!(matches!(shortened, Err(SeparateError::Unsupported(_))));
    // Fractions are exact: int(Fraction(39, 5) * 44100) = 343980.
    let ht = bag_of(
        vec![toy("HTDemucs", 1.0, 4, 2, 44_100, (39, 5))],
        None,
        None,
    );
    assert_eq!(ht.members()[0].segment.samples, 343_980);

    let networks = |toys: Vec<Toy>| -> Vec<Arc<dyn Network>> {
        toys.into_iter()
            .map(|t| Arc::new(t) as Arc<dyn Network>)
            .collect()
    };
    let err = |r: Result<Bag, SeparateError>| r.unwrap_err().to_string();
    let e = err(Bag::new(
        networks(vec![
            make("HTDemucs", (1, 1)),
            toy("HTDemucs", 1.0, 3, 2, 16, (1, 1)),
        ]),
        None,
        None,
        &Device::Cpu,
    ));
    assert!(e.contains("disagree"), "{e}");
    let e = err(Bag::new(
        networks(vec![make("HTDemucs", (1, 1))]),
        Some(vec![vec![1.0]]),
        None,
        &Device::Cpu,
    ));
    assert!(e.contains("a row of 1 weights for 2 sources"), "{e}");
    let e = err(Bag::new(
        networks(vec![make("HTDemucs", (1, 1))]),
        Some(vec![vec![1.0, 1.0], vec![1.0, 1.0]]),
        None,
        &Device::Cpu,
    ));
    assert!(e.contains("2 rows of weights for 1 models"), "{e}");
    let e = err(Bag::new(
        networks(vec![make("HTDemucs", (1, 1))]),
        Some(vec![vec![1.0, 0.0]]),
        None,
        &Device::Cpu,
    ));
    assert!(e.contains("add up to zero"), "{e}");
    let e = err(Bag::new(Vec::new(), None, None, &Device::Cpu));
    assert!(e.contains("no models"), "{e}");
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn descriptors_resolve_signatures_in_their_directory() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // The name carries the first 8 hex digits of the content's SHA-256.
    let content = b"model a";
    let digest = sha256_hex(content);
    write(&d.join(format!("aaaa0001-{}.th", &digest[..8])), content);
    write(&d.join("bbbb0002.th"), b"model b");
    write(&d.join("cccc0003-00000000.th"), b"corrupt");
    write(&d.join("dddd0004-1.th"), b"x");
    write(&d.join("dddd0004.th"), b"y");
    write(
        &d.join("pair.yaml"),
        b"models: ['aaaa0001', 'bbbb0002']\nweights: [\n  [1., 0.],\n  [0.5, 1.],\n]\nsegment: 0.5\n",
    );
    write(&d.join("missing.yaml"), b"models: ['eeee0005']\n");
    write(&d.join("corrupt.yaml"), b"models: ['cccc0003']\n");
    write(&d.join("twice.yaml"), b"models: ['dddd0004']\n");
    write(&d.join("empty.yaml"), b"models: []\n");
    write(&d.join("garbage.yaml"), b"models: {a: [\n");

    let loaded = std::sync::Mutex::new(Vec::new());
    let load = |path: &Path, _: &Device| -> Result<Arc<dyn Network>, SeparateError> {
        loaded
            .lock()
            .unwrap()
            .push(path.file_name().unwrap().to_string_lossy().into_owned());
        Ok(Arc::new(toy("Toy", 1.0, 2, 2, 16, (1, 1))))
    };
    let bag = load_model_with(&d.join("pair.yaml"), &Device::Cpu, &load).unwrap();
    assert_eq!(
        *loaded.lock().unwrap(),
        vec![
            format!("aaaa0001-{}.th", &digest[..8]),
            "bbbb0002.th".to_string()
        ]
    );
    assert_eq!(bag.members().len(), 2);
    assert_eq!(bag.members()[1].weights, vec![0.5, 1.0]);
    assert_eq!(bag.members()[0].segment.samples, 8);
    // A checkpoint alone is a bag of one.
    let single = load_model_with(&d.join("bbbb0002.th"), &Device::Cpu, &load).unwrap();
    assert_eq!(single.members()[0].weights, vec![1.0, 1.0]);

    for (file, needle) in [
        ("missing.yaml", "no checkpoint for model \"eeee0005\""),
        ("corrupt.yaml", "checksum mismatch"),
        ("twice.yaml", "2 checkpoints for model \"dddd0004\""),
        ("empty.yaml", "names no models"),
        ("garbage.yaml", "garbage.yaml"),
    ] {
        let e = load_model_with(&d.join(file), &Device::Cpu, &load)
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{file}: {e}");
    }
    assert!(resolve_signature(d, "../etc").is_err());

    // The official htdemucs_ft.yaml, verbatim; and a signature listed twice, loaded once.
    for (sig, content) in [
        ("f7e0c4bc", "0"),
        ("d12395a8", "1"),
        ("92cfc3b6", "2"),
        ("04573f0d", "3"),
    ] {
        let sha = sha256_hex(content.as_bytes());
        write(
            &d.join(format!("{sig}-{}.th", &sha[..8])),
            content.as_bytes(),
        );
    }
    write(
        &d.join("htdemucs_ft.yaml"),
        b"models: ['f7e0c4bc', 'd12395a8', '92cfc3b6', '04573f0d']\nweights: [\n  [1., 0., 0., 0.],\n  \
          [0., 1., 0., 0.],\n  [0., 0., 1., 0.],\n  [0., 0., 0., 1.],\n]",
    );
    write(
        &d.join("repeated.yaml"),
        b"models: ['f7e0c4bc', 'd12395a8', 'f7e0c4bc']\nsegment: 44\n",
    );
    let load4 = |path: &Path, _: &Device| -> Result<Arc<dyn Network>, SeparateError> {
        loaded
            .lock()
            .unwrap()
            .push(path.file_name().unwrap().to_string_lossy().into_owned());
        Ok(Arc::new(toy("Toy", 1.0, 4, 2, 16, (1, 1))))
    };
    let ft = load_model_with(&d.join("htdemucs_ft.yaml"), &Device::Cpu, &load4).unwrap();
    assert_eq!(ft.members()[2].weights, vec![0.0, 0.0, 1.0, 0.0]);
    loaded.lock().unwrap().clear();
    let twice = load_model_with(&d.join("repeated.yaml"), &Device::Cpu, &load4).unwrap();
    assert_eq!(twice.members().len(), 3);
    assert_eq!(loaded.lock().unwrap().len(), 2);
    assert!(Arc::ptr_eq(
        &twice.members()[0].network,
        &twice.members()[2].network
    ));
    assert_eq!(twice.members()[0].segment.samples, 44 * 16);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// The reference on stand-in networks
// ---------------------------------------------------------------------------------------

/// `demucs.apply.apply_model` (demucs 4.1.0) run on the Python twin of [`Toy`] (`ToyHT`
/// stands in for the `HTDemucs` the module checks, `ToyPlain` has no `valid_length`), with
/// `random.randint` replaced by the listed offsets; 16 Hz, 1 s training segment, outputs
/// rounded to 7 decimals. The cases cover: plain split, overlap 0.5 with transition power 2
/// and a batch of 2, two shifts, a requested segment, no split (padded and exact), a
/// weighted bag with shifts, a bag segment override on a non-transformer, overlap 0.75 with
/// power 1.5 and 3 sources, an override longer than the transformer's; and
/// `Separator.separate_tensor` (normalization) with shifts, alone and with a bag. Generated by the
/// script below (`/opt/venvs/demucs/bin/python toy.py > reference.json`):
//
// import json, math, random
// from fractions import Fraction
// import torch as th
// from torch import nn
// import demucs.apply as A
//
// class ToyBase(nn.Module):
//     """Context-dependent output; the transformer stand-in pads to its training length inside."""
//     pads = False
//     def __init__(self, gain, sources=2, channels=2, sr=16, segment=Fraction(1, 1)):
//         super().__init__()
//         self.p = nn.Parameter(th.zeros(1))
//         self.gain = gain
//         self.sources = [f"s{i}" for i in range(sources)]
//         self.audio_channels = channels
//         self.samplerate = sr
//         self.segment = segment
//     def forward(self, x):
//         B, C, t = x.shape
//         if self.pads:
//             T = int(self.segment * self.samplerate)
//             assert t <= T, (t, T)
//             x = th.nn.functional.pad(x, (0, T - t))
//         S = len(self.sources)
//         n = x.shape[-1]
//         m = x.sum(-1) / n  # [B, C]
//         out = th.empty(B, S, C, n)
//         j = th.arange(n, dtype=th.float32)
//         for s in range(S):
//             out[:, s] = (x * (self.gain * (s + 1))) + (0.25 * m)[:, :, None] + (0.01 * (s + 1)) * j
//         return out[..., :t]
//
// class ToyPlain(ToyBase):
//     pass
//
// class ToyHT(ToyBase):
//     pads = True
//     def valid_length(self, length):
//         t = int(self.segment * self.samplerate)
//         if t < length:
//             raise ValueError("too long")
//         return t
// A.HTDemucs = ToyHT
//
// def mix(B, C, L):
//     return th.tensor([[[math.sin(0.37 * t + 1.3 * c + 0.5 * b) + 0.1 * math.cos(2.1 * t)
//                          for t in range(L)] for c in range(C)] for b in range(B)], dtype=th.float32)
//
// def describe(model):
//     if isinstance(model, A.BagOfModels):
//         ms = list(model.models)
//         bag = dict(weights=model.weights, segment=BAGSEG.get(id(model)))
//     else:
//         ms = [model]
//         bag = dict(weights=None, segment=None)
//     bag["models"] = [[type(m).__name__, m.gain, len(m.sources), m.audio_channels] for m in ms]
//     return bag
//
// BAGSEG = {}
// def mkbag(models, weights, segment):
//     b = A.BagOfModels(models, weights, segment)
//     BAGSEG[id(b)] = segment
//     return b
//
// def run(name, model, B, C, L, shifts=0, split=True, overlap=0.25, tp=1.0, segment=None, offsets=()):
//     seq = list(offsets)
//     A.random.randint = lambda a, b: seq.pop(0)
//     x = mix(B, C, L)
//     out = A.apply_model(model, x, shifts=shifts, split=split, overlap=overlap,
//                         transition_power=tp, segment=segment)
//     assert not seq
//     return dict(name=name, kind="apply", bag=describe(model), B=B, C=C, L=L, shifts=shifts, split=split, overlap=overlap, tp=tp,
//                 segment=segment, offsets=list(offsets), out=[round(float(v), 7) for v in out.flatten()])
//
// def run_sep(name, model, C, L, shifts=0, split=True, overlap=0.25, segment=None, offsets=()):
//     """Separator.separate_tensor on 0.8 * mix + 0.3 (a DC offset, so the mean matters)."""
//     import sys, types
//     for module in ("sphn", "lameenc"):  # audio file I/O only, not used here
//         sys.modules.setdefault(module, types.ModuleType(module))
//     from demucs.api import Separator
//     seq = list(offsets)
//     A.random.randint = lambda a, b: seq.pop(0)
//     sep = Separator.__new__(Separator)
//     sep._model, sep._audio_channels, sep._samplerate = model, C, 16
//     sep.update_parameter(device="cpu", shifts=shifts, overlap=overlap, split=split,
//                          segment=segment, jobs=0, progress=False, callback=None, callback_arg=None)
//     _, stems = sep.separate_tensor(mix(1, C, L)[0] * 0.8 + 0.3)
//     assert not seq
//     out = th.stack(list(stems.values()))
//     return dict(name=name, kind="separator", bag=describe(model), B=1, C=C, L=L, shifts=shifts,
//                 split=split, overlap=overlap, tp=1.0, segment=segment, offsets=list(offsets),
//                 out=[round(float(v), 7) for v in out.flatten()])
//
// cases = []
// cases.append(run("ht_plain", ToyHT(1.0), 1, 2, 40))
// cases.append(run("ht_overlap_half_tp2_batch2", ToyHT(1.0, channels=1), 2, 1, 37, overlap=0.5, tp=2.0))
// cases.append(run("ht_shifts2", ToyHT(1.0), 1, 2, 40, shifts=2, offsets=[3, 8]))
// cases.append(run("ht_user_segment", ToyHT(1.0), 1, 2, 30, shifts=1, segment=0.75, offsets=[5]))
// cases.append(run("ht_nosplit_shift", ToyHT(1.0), 1, 2, 10, shifts=1, split=False, offsets=[5]))
// cases.append(run("ht_nosplit_exact", ToyHT(1.0), 1, 2, 16, split=False))
// bag = mkbag([ToyHT(1.0), ToyHT(0.5)], [[1.0, 0.5], [0.25, 1.0]], None)
// cases.append(run("bag_shift", bag, 1, 2, 40, shifts=1, offsets=[2, 7]))
// bag = mkbag([ToyPlain(1.0)], None, 0.75)
// cases.append(run("plain_bag_segment", bag, 1, 2, 40))
// cases.append(run("plain_nosplit", ToyPlain(1.0), 1, 2, 40, split=False))
// cases.append(run("ht_overlap_075_tp15", ToyHT(2.0, sources=3), 1, 2, 33, overlap=0.75, tp=1.5))
// bag = mkbag([ToyHT(1.0), ToyHT(0.5)], None, 2.0)  # longer than HT segment: ignored
// cases.append(run("bag_long_segment_ignored", bag, 1, 2, 20, shifts=2, offsets=[0, 8, 4, 1]))
// cases.append(run_sep("separator_shift", ToyHT(1.0), 2, 40, shifts=1, offsets=[6]))
// bag = mkbag([ToyHT(1.0), ToyHT(0.5)], [[1.0, 0.5], [0.25, 1.0]], None)
// cases.append(run_sep("separator_bag", bag, 2, 45, shifts=2, overlap=0.5, offsets=[1, 2, 7, 8]))
// print("[\n" + ",\n".join(json.dumps(c, separators=(",", ":")) for c in cases) + "\n]")
const TOY_REFERENCE: &str = r#"
[
{"name":"ht_plain","kind":"apply","bag":{"weights":null,"segment":null,"models":[["ToyHT",1.0,2,2]]},"B":1,"C":2,"L":40,"shifts":0,"split":true,"overlap":0.25,"tp":1.0,"segment":null,"offsets":[],"out":[0.1070959,0.3282267,0.6523578,1.0327805,0.991048,0.9708174,0.9636049,0.5477818,0.2216244,0.0096741,-0.4775132,-0.7281398,-0.7588996,-0.959593,-0.8565251,-0.5030515,-0.3589056,0.0291838,0.5413551,0.7042859,0.9526126,1.1996868,1.0130059,0.8778784,0.7223372,0.198406,-0.1636476,-0.3884059,-0.8382021,-0.9608185,-0.8465132,-0.8943244,-0.6284593,-0.1711311,0.03758,0.4415774,0.8853543,0.9416527,1.0768404,1.1690742,1.0528272,0.9438677,0.8521716,0.7873104,0.3311045,-0.0166919,-0.2202285,-0.674562,-0.8762043,-0.8174661,-0.9244282,-0.7367547,-0.3269366,-0.147452,0.2244157,0.699407,0.8018187,0.9875233,1.1675752,0.9136031,0.7166691,0.5503887,0.0382049,-0.2905183,-0.4779176,-0.8707948,-0.9561285,-0.7954628,-0.8028052,-0.4889592,0.0003722,0.2153929,0.5963225,1.0053744,1.0090024,1.078867,1.114163,0.7347227,0.4671721,0.2454598,0.207096,0.6493576,1.2976196,2.058465,1.975,1.934539,1.9201138,1.0884677,0.4361528,0.0122522,-0.9621223,-1.4633756,-1.5262567,-1.9290047,-1.7242302,-1.0186446,-0.7317141,0.0444645,1.0688071,1.3946686,1.8913221,2.3854706,2.0121086,1.7418537,1.435662,0.3926902,-0.3265263,-0.771152,-1.6658539,-1.9110867,-1.6824762,-1.7780986,-1.2463684,-0.3317119,0.0857102,0.8937052,1.7756155,1.8825684,2.1473002,2.3261247,2.1163855,1.8984665,1.7150741,1.5853518,0.67294,-0.0226529,-0.429726,-1.338393,-1.7416775,-1.6242014,-1.8381252,-1.4627783,-0.6480282,-0.2939448,0.4449046,1.3900013,1.5899391,1.9613481,2.3214519,1.8135077,1.4196398,1.0870789,0.0627114,-0.594735,-0.9682714,-1.7527634,-1.9221684,-1.5995748,-1.6129973,-0.9853051,-0.0066423,0.423399,1.1852582,2.0033619,2.0106182,2.1503472,2.205817,1.4318148,0.8815918,0.4230452]},
{"name":"ht_overlap_half_tp2_batch2","kind":"apply","bag":{"weights":null,"segment":null,"models":[["ToyHT",1.0,2,1]]},"B":2,"C":1,"L":37,"shifts":0,"split":true,"overlap":0.5,"tp":2.0,"segment":null,"offsets":[],"out":[0.1070959,0.3282267,0.6523578,1.0327805,0.9910479,0.9708174,0.9636048,0.5477818,0.220151,0.0024464,-0.4966665,-0.7655122,-0.7946554,-0.9909292,-0.8771483,-0.5067905,-0.3424344,0.041925,0.546366,0.6974872,0.9321876,1.1674521,0.9730409,0.8341836,0.704691,0.2022805,-0.1461563,-0.3653581,-0.8131878,-0.9591385,-0.8601071,-0.9152883,-0.6522267,-0.198478,0.0028145,0.3954784,0.8325346,0.207096,0.6493576,1.2976196,2.058465,1.9749999,1.934539,1.9201138,1.0884677,0.4334486,-0.0010132,-0.9972757,-1.5319674,-1.5867927,-1.9763409,-1.7468158,-1.0051528,-0.6764737,0.091168,1.0978181,1.3966506,1.8621167,2.3292358,1.9381815,1.6593896,1.400939,0.3992818,-0.291035,-0.7194214,-1.6035227,-1.8854066,-1.680787,-1.7879856,-1.2607512,-0.3520777,0.0529448,0.8419964,1.7204053,0.5789824,0.7234012,0.9163148,1.1287744,0.905066,0.7134766,0.5687146,0.0677682,-0.280811,-0.4519894,-0.8429862,-0.9564909,-0.8042506,-0.8180748,-0.5456302,-0.0616004,0.1562478,0.526705,0.9515688,0.9679544,1.0311464,1.0817461,0.7146564,0.4382248,0.224653,-0.2970732,-0.5973719,-0.7073077,-0.999644,-0.9652199,-0.6854577,-0.5838231,-0.2083608,0.2993732,0.489875,0.8089433,1.1192584,1.1584079,1.4472455,1.8330727,2.257992,1.8105751,1.4273963,1.1378722,0.1359796,-0.561164,-0.9034624,-1.6853349,-1.9121592,-1.6074654,-1.6349289,-1.0899185,-0.1218006,0.3138503,1.0545281,1.9037657,1.9357884,2.0613086,2.1617594,1.42709,0.8739905,0.4474357,-0.5934806,-1.1888223,-1.4006642,-1.9760716,-1.8991941,-1.3344136,-1.1286083,-0.3771667,0.6377847,1.0177178,1.6542189,2.2729623]},
{"name":"ht_shifts2","kind":"apply","bag":{"weights":null,"segment":null,"models":[["ToyHT",1.0,2,2]]},"B":1,"C":2,"L":40,"shifts":2,"split":true,"overlap":0.25,"tp":1.0,"segment":null,"offsets":[3,8],"out":[0.1654186,0.3865494,0.7106805,1.0911032,1.0493706,1.0291401,1.0219276,0.5854207,0.2385794,0.0059452,-0.5019258,-0.7732363,-0.7926769,-0.982051,-0.8676637,-0.5028708,-0.3474056,0.0406837,0.552855,0.7044266,0.9413942,1.1771092,0.9790691,0.8325825,0.6914867,0.1820008,-0.1656075,-0.3759204,-0.8112713,-0.9338877,-0.8195825,-0.8768767,-0.6204945,-0.1726494,0.0265787,0.4210932,0.8680483,0.9275248,1.0658908,1.1613028,1.0832376,0.9742781,0.8825819,0.8177208,0.3615148,0.0137184,-0.1898182,-0.6556799,-0.8688505,-0.8216407,-0.9401309,-0.7639858,-0.3446107,-0.155569,0.2258557,0.710404,0.8223729,1.0080774,1.1881294,0.9200521,0.7090131,0.5286276,0.0023387,-0.3404896,-0.5152577,-0.8955038,-0.9682063,-0.7949094,-0.7896208,-0.4757746,0.0135568,0.2273194,0.6069909,1.0147848,1.0171549,1.0857613,1.1194963,0.7384951,0.4693835,0.2461103,0.2904186,0.7326803,1.3809423,2.1417878,2.0583227,2.0178616,2.0034366,1.1391065,0.4541078,-0.0024766,-1.009535,-1.5434722,-1.5830339,-1.9624627,-1.7343689,-1.005464,-0.6952142,0.0809644,1.1053071,1.4078094,1.8811038,2.3518929,1.9551718,1.6615579,1.3818115,0.365285,-0.3274862,-0.7456666,-1.6139232,-1.8591559,-1.6305454,-1.7446508,-1.2314036,-0.3352302,0.063709,0.8532209,1.7443094,1.8604405,2.1343508,2.3223534,2.1717958,1.9538767,1.7704844,1.6407622,0.7283503,0.0327575,-0.3743156,-1.3065109,-1.7333238,-1.6393759,-1.8768281,-1.5250094,-0.6887022,-0.3130618,0.4473447,1.4139984,1.6354933,2.0069022,2.3670063,1.8329568,1.4129839,1.0543177,0.0038452,-0.6797063,-1.0286114,-1.7884723,-1.9332461,-1.5860214,-1.5748127,-0.9471206,0.0315423,0.4513255,1.2029266,2.0107722,2.0077705,2.1372416,2.1971507,1.4275872,0.8818033,0.4276958]},
{"name":"ht_user_segment","kind":"apply","bag":{"weights":null,"segment":null,"models":[["ToyHT",1.0,2,2]]},"B":1,"C":2,"L":30,"shifts":1,"split":true,"overlap":0.25,"tp":1.0,"segment":0.75,"offsets":[5],"out":[0.2142418,0.4353726,0.7595037,1.1399263,1.0981938,1.0779634,1.0120218,0.5374698,0.1525833,-0.1180959,-0.6052831,-0.8559098,-0.864031,-1.0420858,-0.9163793,-0.5312821,-0.3555127,0.0415616,0.5627179,0.7256487,0.9739755,1.2210495,1.0343686,0.8992412,0.7449575,0.2222838,-0.1385123,-0.362013,-0.7829187,-0.905535,1.1234984,1.0145389,0.9228427,0.8579816,0.4017757,0.0539793,-0.1907916,-0.6863594,-0.929236,-0.9117323,-1.0186943,-0.8310208,-0.4020886,-0.2034899,0.1874919,0.6790493,0.7980273,0.9811838,1.1586879,0.9047157,0.7077818,0.5415013,0.0293176,-0.2994057,-0.5043158,-0.9147039,-1.0175484,-0.8743936,-0.8564738,-0.5426277,0.3442418,0.7865034,1.4347655,2.1956108,2.1121457,2.0716848,1.9760306,1.0631557,0.3296117,-0.1755178,-1.1498922,-1.6511456,-1.6673881,-2.0234973,-1.7720847,-1.0333753,-0.7133213,0.0493424,1.0601698,1.3860315,1.8826851,2.3768332,2.0034714,1.7332166,1.4372823,0.404568,-0.3043909,-0.7387592,-1.5805706,-1.8258033,2.2170565,1.9991379,1.8157454,1.6860231,0.7736111,0.0780183,-0.3927892,-1.3651904,-1.8322092,-1.7784674,-1.9923912,-1.6170444,-0.7591802,-0.3619827,0.4199809,1.3831437,1.6011475,1.9475087,2.2825646,1.7746205,1.3807526,1.0481915,0.023824,-0.6336224,-1.0156696,-1.8086725,-1.9865885,-1.6725055,-1.6366658,-1.0089737]},
{"name":"ht_nosplit_shift","kind":"apply","bag":{"weights":null,"segment":null,"models":[["ToyHT",1.0,2,2]]},"B":1,"C":2,"L":10,"shifts":1,"split":false,"overlap":0.25,"tp":1.0,"segment":null,"offsets":[5],"out":[0.2228758,0.4440066,0.7681376,1.1485604,1.1068279,1.0865973,1.0793848,0.6635617,0.3374042,0.1254539,1.1194869,1.0105275,0.9188313,0.8539702,0.3977642,0.0499678,-0.1535688,-0.6079022,-0.8095445,-0.7508064,0.3628758,0.8051375,1.4533995,2.2142451,2.1307797,2.0903189,2.0758936,1.2442477,0.5919327,0.1680321,2.2230451,2.0051262,1.8217338,1.6920116,0.7795997,0.0840068,-0.3230663,-1.2317332,-1.6350178,-1.5175415]},
{"name":"ht_nosplit_exact","kind":"apply","bag":{"weights":null,"segment":null,"models":[["ToyHT",1.0,2,2]]},"B":1,"C":2,"L":16,"shifts":0,"split":false,"overlap":0.25,"tp":1.0,"segment":null,"offsets":[],"out":[0.1070959,0.3282267,0.6523578,1.0327805,0.9910479,0.9708174,0.9636049,0.5477818,0.2216244,0.0096741,-0.4775132,-0.7281398,-0.7362611,-0.9143158,-0.7886093,-0.4124972,1.0528272,0.9438677,0.8521715,0.7873104,0.3311045,-0.0166919,-0.2202285,-0.674562,-0.8762043,-0.8174661,-0.9244281,-0.7367547,-0.3078225,-0.1092238,0.281758,0.7758634,0.207096,0.6493576,1.2976196,2.058465,1.9749999,1.934539,1.9201138,1.0884677,0.4361528,0.0122522,-0.9621223,-1.4633756,-1.4796181,-1.8357275,-1.5843146,-0.8320903,2.1163855,1.8984665,1.7150741,1.5853518,0.67294,-0.0226529,-0.429726,-1.338393,-1.7416775,-1.6242013,-1.8381252,-1.4627783,-0.6049141,-0.2077166,0.574247,1.5624578]},
{"name":"bag_shift","kind":"apply","bag":{"weights":[[1.0,0.5],[0.25,1.0]],"segment":null,"models":[["ToyHT",1.0,2,2],["ToyHT",0.5,2,2]]},"B":1,"C":2,"L":40,"shifts":1,"split":true,"overlap":0.25,"tp":1.0,"segment":null,"offsets":[2,7],"out":[0.2094998,0.4095176,0.7022355,1.0456159,1.0090567,0.9918491,0.9517958,0.5439928,0.2168889,-0.0074285,-0.4794591,-0.7091621,-0.7206103,-0.8849986,-0.7760018,-0.4416398,-0.2905338,0.0597466,0.504831,0.6355987,0.8432229,1.0497197,0.8658372,0.7395114,0.620815,0.1705674,-0.1339902,-0.314982,-0.692797,-0.8021517,-0.71584,-0.7754331,-0.5527175,-0.1576851,0.013592,0.3767065,0.7813434,0.8372496,0.9641562,1.0524042,1.0158098,0.9187463,0.8372197,0.7798447,0.3702593,0.0582426,-0.1454048,-0.5747695,-0.7767121,-0.7443123,-0.8610426,-0.6945476,-0.3109199,-0.1345922,0.2148803,0.657164,0.7675373,0.9356713,1.0771158,0.8279383,0.6300952,0.4598404,-0.0217275,-0.3219508,-0.4722465,-0.8074722,-0.8659088,-0.7029461,-0.6858183,-0.4023567,0.0344028,0.2242826,0.5634804,0.9279884,0.9276149,0.9920233,1.0225105,0.6797351,0.4376604,0.2368401,0.2249558,0.5264636,0.9653049,1.4792019,1.430225,1.4099178,1.3845669,0.8144019,0.363791,0.0654564,-0.5998608,-0.9604931,-0.9977848,-1.2616545,-1.1205093,-0.6454898,-0.4164437,0.1076754,0.782208,0.9910865,1.3138264,1.6348963,1.3776258,1.169086,0.9718485,0.2834245,-0.1891627,-0.4786894,-1.0332302,-1.190052,-1.0442964,-1.1146959,-0.7668603,-0.1637406,0.1078897,0.6389424,1.2315099,1.3074392,1.4885544,1.6123977,1.4629353,1.3243227,1.2087277,1.1289129,0.5273051,0.0702431,-0.2114158,-0.8274706,-1.106604,-1.0385634,-1.1914562,-0.9619287,-0.4107231,-0.1666286,0.3339767,0.9720801,1.1407813,1.3950539,1.6247889,1.275825,1.002912,0.7708704,0.0776243,-0.3879147,-0.6313386,-1.148733,-1.2560695,-1.0354068,-1.004847,-0.5797189,0.0714568,0.3568849,0.8635249,1.4076611,1.4112325,1.503487,1.5454874,1.0345061,0.6727111,0.3720339]},
{"name":"plain_bag_segment","kind":"apply","bag":{"weights":[[1.0,1.0]],"segment":0.75,"models":[["ToyPlain",1.0,2,2]]},"B":1,"C":2,"L":40,"shifts":0,"split":true,"overlap":0.25,"tp":1.0,"segment":null,"offsets":[],"out":[0.1807127,0.4018435,0.7259745,1.1063972,1.0646646,1.0444342,1.0372216,0.6213985,0.2952411,0.0227047,-0.5250685,-0.8362813,-0.9049886,-1.0830433,-0.9573368,-0.5812247,-0.4144402,-0.0263509,0.4962776,0.6696656,0.9284497,1.185981,0.9993001,0.8641726,0.7375221,0.2424816,-0.0906814,-0.3357076,-0.8057719,-0.977547,-0.9124004,-0.9602116,-0.6943465,-0.2370183,-0.0283072,0.3756902,0.8717875,0.9804061,1.167914,1.3124682,1.0462607,0.9373012,0.845605,0.7807438,0.3245379,-0.0232585,-0.2267951,-0.6811286,-0.8827708,-0.833793,-0.9505153,-0.7726021,-0.3534303,-0.1548316,0.2361502,0.7302557,0.8517815,1.0374861,1.1744599,0.8774094,0.6373973,0.4280386,-0.0841452,-0.4128684,-0.5750054,-0.9426203,-1.0026915,-0.8115718,-0.7884603,-0.4694225,0.0251006,0.2401213,0.6210509,1.0301027,1.0337309,1.1035955,1.1283774,0.7384231,0.4603587,0.2281324,0.2807127,0.7229743,1.3712363,2.1320817,2.0486166,2.0081556,1.9937305,1.1620845,0.5097694,0.0027829,-1.0546776,-1.6390171,-1.7383457,-2.0944552,-1.843042,-1.0908177,-0.7572489,0.0189299,1.0312296,1.3450484,1.8296592,2.3117647,1.9384029,1.668148,1.414847,0.4247658,-0.24156,-0.7049538,-1.6184239,-1.9353154,-1.7783636,-1.8739858,-1.3422556,-0.4275991,-0.0101769,0.7978179,1.7215484,1.8703219,2.1768739,2.3975184,2.1098189,1.8919001,1.7085075,1.5787854,0.6663734,-0.0292194,-0.4362926,-1.3449595,-1.7482442,-1.6630282,-1.9092125,-1.5661258,-0.7405218,-0.3433244,0.4386392,1.4268501,1.6699018,2.0413108,2.3358366,1.762314,1.3028679,0.9047289,-0.1196387,-0.7770852,-1.1013591,-1.8365889,-1.9567316,-1.6021837,-1.5836524,-0.9732684,-0.0119139,0.4181275,1.1799867,1.9980905,2.0053468,2.1450758,2.1795316,1.3845153,0.8132783,0.3337179]},
{"name":"plain_nosplit","kind":"apply","bag":{"weights":null,"segment":null,"models":[["ToyPlain",1.0,2,2]]},"B":1,"C":2,"L":40,"shifts":0,"split":false,"overlap":0.25,"tp":1.0,"segment":null,"offsets":[],"out":[0.1251675,0.3462983,0.6704293,1.0508521,1.0091195,0.988889,0.9816765,0.5658534,0.2396959,0.0277456,-0.4594416,-0.7100682,-0.7181895,-0.8962443,-0.7705377,-0.3944256,-0.2276411,0.1604482,0.6726195,0.8355503,1.0838771,1.3309512,1.1442703,1.0091429,0.8824924,0.3874518,0.0542888,-0.1415787,-0.5624844,-0.6851007,-0.5707954,-0.6186066,-0.3527415,0.1045866,0.3132978,0.7172952,1.1674286,1.2300833,1.3716274,1.4702177,1.0883185,0.979359,0.8876628,0.8228017,0.3665957,0.0187993,-0.1847372,-0.6390707,-0.840713,-0.7819749,-0.8889369,-0.7012634,-0.2723313,-0.0737325,0.3172492,0.8113547,0.9328806,1.1185851,1.298637,1.0446649,0.847731,0.6814505,0.1692667,-0.1594565,-0.3215934,-0.6892082,-0.7492796,-0.5633516,-0.5454317,-0.2315857,0.2577457,0.4727664,0.853696,1.262748,1.266376,1.3362405,1.3684146,0.9858524,0.7151799,0.4903457,0.2251675,0.6674291,1.3156911,2.0765367,1.9930714,1.9526105,1.9381853,1.1065394,0.4542243,0.0303238,-0.9440507,-1.445304,-1.4615465,-1.817656,-1.5662431,-0.8140187,-0.4804497,0.295729,1.3200716,1.645933,2.1425867,2.636735,2.2633729,1.993118,1.7398171,0.749736,0.0834102,-0.3083249,-1.1501362,-1.3953691,-1.1667585,-1.2623808,-0.7306507,0.1840058,0.601428,1.4094229,2.3096895,2.434999,2.7180872,2.9152679,2.1518767,1.9339577,1.7505653,1.6208431,0.7084312,0.0128384,-0.3942347,-1.3029017,-1.7061863,-1.5887101,-1.802634,-1.4272871,-0.5694228,-0.1722253,0.6097382,1.597949,1.8410008,2.2124097,2.5725138,2.0645695,1.6707016,1.3381408,0.3137732,-0.3436732,-0.6679472,-1.4031768,-1.5233195,-1.1514635,-1.1156237,-0.4879317,0.4907312,0.9207726,1.6826317,2.5007355,2.5079918,2.6477208,2.7120688,1.9469445,1.4055996,0.9559311]},
{"name":"ht_overlap_075_tp15","kind":"apply","bag":{"weights":null,"segment":null,"models":[["ToyHT",2.0,3,2]]},"B":1,"C":2,"L":33,"shifts":0,"split":true,"overlap":0.75,"tp":1.5,"segment":null,"offsets":[],"out":[0.2070959,0.6393576,1.2776195,2.028465,1.9299304,1.8745735,1.8465855,1.0023394,0.3335684,-0.1104384,-1.1048464,-1.6251194,-1.659912,-2.0353463,-1.8035854,-1.069991,-0.7539315,0.0057097,1.0129198,1.3220775,1.8009114,2.275866,1.8824345,1.5926129,1.3195125,0.3089762,-0.3785752,-0.7907415,-1.653026,-1.9191355,-1.7123003,-1.8289554,-1.3183626,2.1163855,1.8884665,1.6950741,1.555352,0.629626,-0.0791674,-0.4985698,-1.4189365,-1.8363514,-1.7353258,-1.9656308,-1.6060045,-0.7640147,-0.3835897,0.3811161,1.3526212,1.5778682,1.9301983,2.2701719,1.7424616,1.3269495,0.9703999,-0.0792375,-0.7611295,-1.1097652,-1.8699228,-2.015928,-1.6686825,-1.6554592,-1.0489032,-0.0918786,0.317645,1.0611881,0.4070959,1.2716192,2.5481434,4.0498343,3.8545506,3.7455609,3.6908395,2.0032628,0.6674788,-0.2178688,-2.2041714,-3.2425482,-3.3114667,-4.0628715,-3.6002948,-2.1343367,-1.5043892,0.01157,2.0225251,2.6376836,3.5937235,4.5434179,3.7566011,3.1772733,2.6326339,0.6144645,-0.7573608,-1.578501,-3.2988811,-3.8257627,-3.4061894,-3.6338496,-2.606601,4.2435017,3.7876639,3.4008791,3.1214347,1.2700131,-0.1475449,-0.9863287,-2.8270466,-3.6624444,-3.4613829,-3.9231317,-3.205009,-1.5230383,-0.7652766,0.7607952,2.7006507,3.1492679,3.8531468,4.5326271,3.4771111,2.6482837,1.9397651,-0.1542634,-1.5128536,-2.2040007,-3.7169399,-4.0010362,-3.2991734,-3.2663946,-2.0476859,-0.1278712,0.6963112,2.1866393,0.607096,1.9038808,3.8186672,6.0712032,5.77917,5.6165481,5.5350938,3.0041866,1.0013891,-0.3252993,-3.3034964,-4.8599768,-4.9630208,-6.0903959,-5.3970041,-3.1986823,-2.254847,0.0174302,3.0321305,3.9532897,5.3865356,6.8109698,5.6307678,4.7619328,3.9457557,0.9199529,-1.1361465,-2.3662603,-4.944736,-5.7323899,-5.1000791,-5.4387441,-3.8948393,6.3706183,5.6868615,5.1066837,4.6875176,1.9103999,-0.2159224,-1.4740876,-4.235157,-5.4885378,-5.1874394,-5.8806329,-4.8040133,-2.2820616,-1.1469636,1.1404744,4.0486798,4.7206688,5.7760954,6.7950816,5.211761,3.9696181,2.9091301,-0.2292893,-2.2645779,-3.2982357,-5.5639577,-5.9861431,-4.9296641,-4.8773298,-3.0464685,-0.1638638,1.0749773,3.3120904]},
{"name":"bag_long_segment_ignored","kind":"apply","bag":{"weights":[[1.0,1.0],[1.0,1.0]],"segment":2.0,"models":[["ToyHT",1.0,2,2],["ToyHT",0.5,2,2]]},"B":1,"C":2,"L":20,"shifts":2,"split":true,"overlap":0.25,"tp":1.0,"segment":null,"offsets":[0,8,4,1],"out":[0.181003,0.3493511,0.5949494,0.8827664,0.8431274,0.807933,0.782502,0.4506131,0.1757629,-0.0025925,-0.3756934,-0.571374,-0.5927823,-0.7314301,-0.6422569,-0.3652795,-0.2508541,0.0327946,0.4095047,0.5242846,0.857906,0.7786864,0.7124143,0.6662684,0.3178235,0.042398,-0.1248325,-0.4801607,-0.6510687,-0.617901,-0.7007208,-0.5625639,-0.2468895,-0.098867,0.1934428,0.5630954,0.6523443,0.7932124,0.9298412,0.7409517,0.303503,0.6401992,1.1313957,1.7070298,1.6325915,1.5727241,1.5323837,0.8791276,0.3451592,-0.0006589,-0.7416502,-1.1278008,-1.1617999,-1.4354888,-1.2535357,-0.6959743,-0.4609606,0.1102551,0.8675938,1.1010716,1.7030747,1.5446354,1.4120913,1.3197994,0.6257001,0.0799273,-0.2494556,-0.955034,-1.2916737,-1.2229524,-1.3884935,-1.1120816,-0.4812082,-0.1857366,0.3983096,1.1370412,1.3129345,1.589581,1.857749,1.4748802]},
{"name":"separator_shift","kind":"separator","bag":{"weights":null,"segment":null,"models":[["ToyHT",1.0,2,2]]},"B":1,"C":2,"L":40,"shifts":1,"split":true,"overlap":0.25,"tp":1.0,"segment":null,"offsets":[6],"out":[0.3963404,0.5699061,0.8258721,1.1268711,1.0901463,1.070623,1.0615139,0.7255166,0.4612517,0.2883525,-0.1210017,-0.3411075,-0.367209,-0.5292571,-0.4482963,-0.1507456,-0.0206569,0.2864757,0.6928737,0.8198794,1.0152019,1.2095222,1.042724,0.9171684,0.7983944,0.3849085,0.1009246,-0.0591084,-0.3991719,-0.5006038,-0.4124985,-0.4540864,-0.2447333,0.1177903,0.2790782,0.5965952,0.951021,0.9954638,1.1030182,1.1785514,1.1242456,1.0337392,0.9570432,0.9018155,0.5335118,0.2519357,0.0857674,-0.2810382,-0.445691,-0.4020394,-0.4966463,-0.3555449,-0.0214364,0.1284053,0.4321535,0.8240989,0.9179807,1.0632055,1.2039082,0.9973913,0.8365052,0.700142,0.2725642,-0.0082451,-0.1557854,-0.467708,-0.5335959,-0.3881924,-0.3771954,-0.1294574,0.2586688,0.4273463,0.7287511,1.0526537,1.0598609,1.1200573,1.1501012,0.8483561,0.6361229,0.4529166,0.4057781,0.7529095,1.2648413,1.8668394,1.7933897,1.7543433,1.7361251,1.0641304,0.5356006,0.1898023,-0.6238273,-1.05896,-1.1060838,-1.4251013,-1.2581009,-0.6629992,-0.4028219,0.2114432,1.0242394,1.2782507,1.6688957,2.0575366,1.7268679,1.478685,1.244065,0.4200212,-0.1450185,-0.4650844,-1.1452115,-1.3480754,-1.1718647,-1.2550405,-0.8363343,-0.111287,0.2071053,0.8379557,1.5426239,1.627326,1.8382512,1.9893179,1.9045299,1.7235169,1.5701251,1.4596695,0.723062,0.1599099,-0.1724265,-0.9060379,-1.2353433,-1.1480402,-1.3427423,-1.0660275,-0.4032988,-0.1091037,0.4929045,1.2767954,1.4645588,1.7550082,2.0364137,1.6233801,1.301608,1.0288815,0.1770312,-0.3812823,-0.6730577,-1.2935975,-1.4220678,-1.1312609,-1.109267,-0.613791,0.1624612,0.4998164,1.1026258,1.7504311,1.7506764,1.8569001,1.9028187,1.2851593,0.8465238,0.4801111]},
{"name":"separator_bag","kind":"separator","bag":{"weights":[[1.0,0.5],[0.25,1.0]],"segment":null,"models":[["ToyHT",1.0,2,2],["ToyHT",0.5,2,2]]},"B":1,"C":2,"L":45,"shifts":2,"split":true,"overlap":0.5,"tp":1.0,"segment":null,"offsets":[1,2,7,8],"out":[0.4490695,0.6008348,0.8217762,1.0832474,1.040767,1.0137681,0.9961419,0.6836399,0.4351463,0.2672317,-0.0953315,-0.2825873,-0.2952388,-0.4302426,-0.3465383,-0.0827006,0.0308463,0.3028514,0.6641828,0.7754081,0.9481187,1.1199272,0.9794321,0.8753737,0.7769907,0.4114868,0.1621617,0.0133521,-0.2974848,-0.3935535,-0.3190386,-0.3612196,-0.1767545,0.1467691,0.29439,0.5844221,0.9076722,0.9519376,1.0530033,1.1233541,0.8889298,0.7253113,0.5735542,0.1938145,-0.0163605,1.0996718,1.0151788,0.9401677,0.884478,0.5470198,0.2876166,0.1320805,-0.2042206,-0.3588122,-0.3264678,-0.4105289,-0.2795049,0.0252252,0.1641154,0.4415213,0.7927097,0.8752521,1.0015787,1.1217493,0.9299861,0.7792907,0.6506656,0.2729902,0.0270063,-0.0988318,-0.3728763,-0.4235344,-0.2944491,-0.2863295,-0.0651431,0.2823928,0.4322535,0.7017456,0.990986,0.9882171,1.033836,1.0523177,0.7721893,0.5726215,0.4056737,0.028985,-0.1649613,-0.2306438,-0.4178826,-0.357893,0.4359947,0.6677279,1.0065669,1.4054502,1.3540347,1.3255546,1.3109603,0.8568914,0.4952608,0.2540791,-0.2792212,-0.5574291,-0.5769643,-0.7777621,-0.6545479,-0.266132,-0.0995824,0.3049497,0.8418305,1.007434,1.2641264,1.5194826,1.312167,1.1561998,1.0078477,0.4671806,0.0990275,-0.1213,-0.581668,-0.7238607,-0.6133373,-0.6768428,-0.4029248,0.0782896,0.2957758,0.723004,1.1994439,1.2625732,1.4098514,1.5113329,1.1619331,0.917666,0.6921654,0.1304595,-0.1800394,1.4330902,1.3133132,1.2100377,1.1353865,0.6433005,0.2668515,0.0442797,-0.4478153,-0.6725024,-0.6203589,-0.7437545,-0.5509598,-0.1008224,0.103626,0.513283,1.0300149,1.1480324,1.334847,1.514763,1.2326391,1.0113561,0.8227701,0.2652206,-0.09934,-0.2855296,-0.6886286,-0.7628667,-0.5729277,-0.5621973,-0.2358124,0.277757,0.4969591,0.8938918,1.3222352,1.3182546,1.385901,1.4133441,0.998402,0.702809,0.4541468,-0.1053713,-0.3906845,-0.4839236,-0.7577409,-0.6652939]}
]
"#;

#[derive(serde::Deserialize)]
struct ToyBag {
    models: Vec<(String, f32, usize, usize)>,
    weights: Option<Vec<Vec<f64>>>,
    segment: Option<f64>,
}

#[derive(serde::Deserialize)]
struct ToyCase {
    name: String,
    kind: String,
    bag: ToyBag,
    #[serde(rename = "B")]
    batch: usize,
    #[serde(rename = "C")]
    channels: usize,
    #[serde(rename = "L")]
    length: usize,
    shifts: usize,
    split: bool,
    overlap: f64,
    tp: f64,
    segment: Option<f64>,
    offsets: Vec<usize>,
    out: Vec<f32>,
}

/// The mix of the Python script: `sin(0.37 t + 1.3 c + 0.5 b) + 0.1 cos(2.1 t)`.
fn toy_mix(batch: usize, channels: usize, length: usize) -> Tensor {
    let mut data = Vec::with_capacity(batch * channels * length);
    for b in 0..batch {
        for c in 0..channels {
            for t in 0..length {
                let t = t as f64;
                data.push(
                    ((0.37 * t + 1.3 * c as f64 + 0.5 * b as f64).sin() + 0.1 * (2.1 * t).cos())
                        as f32,
                );
            }
        }
    }
    Tensor::from_vec(data, (batch, channels, length), &Device::Cpu).unwrap()
}

#[test]
fn apply_model_matches_the_reference_on_stand_in_networks() {
    let cases: Vec<ToyCase> = serde_json::from_str(TOY_REFERENCE).unwrap();
    assert_eq!(cases.len(), 13);
    for case in cases {
        let toys = case
            .bag
            .models
            .iter()
            .map(|(class, gain, sources, channels)| {
                let class = if class == "ToyHT" { "HTDemucs" } else { "Toy" };
                toy(class, *gain, *sources, *channels, 16, (1, 1))
            })
            .collect();
        let bag = bag_of(toys, case.bag.weights.clone(), case.bag.segment);
        let opts = options(
            case.shifts,
            case.split,
            case.overlap,
            case.tp,
            case.segment,
            case.offsets.clone(),
        );
        let mix = toy_mix(case.batch, case.channels, case.length);
        let (out, dims) = if case.kind == "apply" {
            let out = apply_model(&bag, &mix, &opts, &mut |_| {}).unwrap();
            (
                out,
                vec![case.batch, bag.sources().len(), case.channels, case.length],
            )
        } else {
            // `0.8 * mix + 0.3`: a DC offset, so that the mean matters.
            let wav = ((mix.squeeze(0).unwrap() * 0.8).unwrap() + 0.3).unwrap();
            let out = separate_tensor(&bag, &wav, &opts, &mut |_| {}).unwrap();
            (out, vec![bag.sources().len(), case.channels, case.length])
        };
        assert_eq!(out.dims(), dims, "{}", case.name);
        let err = max_abs_diff(&flat(&out), &case.out);
        println!("stand-in parity {:<28} max abs error {err:.2e}", case.name);
        assert!(err <= 1e-5, "{}: max abs error {err}", case.name);
    }
}

// ---------------------------------------------------------------------------------------
// The reference on the fixture checkpoints
// ---------------------------------------------------------------------------------------

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn apply_and_separator_match_the_reference_on_fixture_checkpoints() {
    let dir = fixtures();
    // Committed; regenerated by tools/separation_fixtures.py.
    let text = std::fs::read_to_string(dir.join("cases.json")).expect("fixtures/cases.json");
    let cases: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let tensors =
        candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();
    let mut bags: std::collections::HashMap<String, Bag> = Default::default();
    let mut checked = 0;
    for case in &cases {
        let kind = case["kind"].as_str().unwrap();
        if kind != "apply" && kind != "separator" {
            continue;
        }
        let name = case["name"].as_str().unwrap();
        let model = case["model"].as_str().unwrap().to_string();
        if !bags.contains_key(&model) {
            let bag = audiomill_separate::load_model(&dir.join(&model), &Device::Cpu)
                .unwrap_or_else(|e| panic!("{name}: loading {model}: {e}"));
            bags.insert(model.clone(), bag);
        }
        let bag = &bags[&model];
        let o = &case["options"];
        // Absent options take `apply_model`'s defaults.
        let opts = ApplyOptions {
            shifts: o["shifts"].as_u64().unwrap_or(1) as usize,
            split: o["split"].as_bool().unwrap_or(true),
            overlap: o["overlap"].as_f64().unwrap_or(0.25),
            transition_power: o["transition_power"].as_f64().unwrap_or(1.0),
            segment: o["segment"].as_f64(),
            offsets: ShiftOffsets::Fixed(
                o["offsets"]
                    .as_array()
                    .map(|a| a.iter().map(|v| v.as_u64().unwrap() as usize).collect())
                    .unwrap_or_default(),
            ),
        };
        let input = &tensors[case["tensors"]["input"].as_str().unwrap()];
        let expected = &tensors[case["tensors"]["output"].as_str().unwrap()];
        let got = match kind {
            "apply" => apply_model(bag, input, &opts, &mut |_| {}),
            _ => separate_tensor(bag, input, &opts, &mut |_| {}),
        }
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got.dims(), expected.dims(), "{name}");
        let err = max_abs_diff(&flat(&got), &flat(expected));
        println!("fixture parity {name:<32} ({kind}, {model}) max abs error {err:.2e}");
        assert!(err <= 1e-4, "{name}: max abs error {err}");
        checked += 1;
    }
    assert!(checked > 0, "no apply or separator case in cases.json");
}

// ---------------------------------------------------------------------------------------
// Streaming
// ---------------------------------------------------------------------------------------

const RATE: u32 = 8000;

/// Transformer stand-ins at 8 kHz with a 0.75 s segment (6000 samples), 4 sources.
fn stream_bag(members: usize, weights: Option<Vec<Vec<f64>>>) -> Bag {
    let toys = (0..members)
        .map(|m| toy("HTDemucs", 1.0 / (m + 1) as f32, 4, 2, RATE, (3, 4)))
        .collect();
    bag_of(toys, weights, None)
}

/// A deterministic music-like signal with a DC offset, interleaved.
fn signal(frames: usize, channels: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(12345);
    let mut out = Vec::with_capacity(frames * channels);
    for t in 0..frames {
        let x = t as f32 / RATE as f32;
        for c in 0..channels {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            let tone = (x * (220.0 + 110.0 * c as f32) * std::f32::consts::TAU).sin();
            out.push(0.05 + 0.4 * tone * (0.5 + 0.5 * (x * 1.3).sin()) + 0.1 * noise);
        }
    }
    out
}

fn write_wav(path: &Path, rate: u32, channels: u16, interleaved: &[f32]) {
    let spec = EncoderSpec {
        format: AudioFormat::Wav,
        sample_rate: rate,
        channels,
        bitrate: None,
        quality: None,
        sample_format: Some(SampleFormat::F32),
        source_bits: None,
        tags: Default::default(),
    };
    let mut encoder = create_encoder(path, &spec).unwrap();
    encoder.write(interleaved).unwrap();
    encoder.finish().unwrap();
}

fn read_audio(path: &Path) -> (u32, usize, Vec<f32>) {
    let mut decoder = Decoder::open(path, &Limits::default()).unwrap();
    let (rate, channels) = (decoder.sample_rate(), usize::from(decoder.channels()));
    let mut out = Vec::new();
    while let Some(chunk) = decoder.next_chunk().unwrap() {
        out.extend_from_slice(chunk);
    }
    (rate, channels, out)
}

/// Planar `[channels][frames]` of interleaved samples.
fn planar(interleaved: &[f32], channels: usize) -> Vec<Vec<f32>> {
    (0..channels)
        .map(|c| {
            interleaved
                .iter()
                .skip(c)
                .step_by(channels)
                .copied()
                .collect()
        })
        .collect()
}

fn params(out_dir: &Path, apply: ApplyOptions) -> SeparateParams {
    SeparateParams {
        stems: Vec::new(),
        two_stems: None,
        apply,
        out_dir: out_dir.to_path_buf(),
        encoder: StemEncoding {
            format: AudioFormat::Wav,
            sample_format: Some(SampleFormat::F32),
            bitrate: None,
            quality: None,
        },
    }
}

struct Run {
    _dir: tempfile::TempDir,
    out_dir: PathBuf,
    files: Vec<StemFile>,
    stats: StreamStats,
    /// `separate_tensor` of the same (stereo) input: `[sources][channels][frames]`.
    expected: Vec<Vec<Vec<f32>>>,
    progress: Vec<f64>,
}

/// Writes `frames` of the test signal as float WAV, separates it with the streaming path
/// and in memory.
fn run_both(
    bag: &Bag,
    frames: usize,
    channels: u16,
    edit: impl FnOnce(&mut SeparateParams),
) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mix.wav");
    let data = signal(frames, usize::from(channels), 1);
    write_wav(&input, RATE, channels, &data);
    let out_dir = dir.path().join("stems");
    std::fs::create_dir(&out_dir).unwrap();
    let mut p = params(&out_dir, ApplyOptions::default());
    edit(&mut p);
    let mut progress = Vec::new();
    let (files, stats) = separate_file_with_stats(
        bag,
        &input,
        &p,
        &Limits::default(),
        &mut |f| progress.push(f),
        &|| false,
    )
    .unwrap();
    // In memory, on the stereo mix the model sees (mono repeated, as convert_audio_channels).
    let mut stereo = planar(&data, usize::from(channels));
    if channels == 1 {
        stereo.push(stereo[0].clone());
    }
    let wav = Tensor::from_vec(stereo.concat(), (2, frames), &Device::Cpu).unwrap();
    let out = separate_tensor(bag, &wav, &p.apply, &mut |_| {}).unwrap();
    Run {
        _dir: dir,
        out_dir,
        files,
        stats,
        expected: out.to_vec3::<f32>().unwrap(),
        progress,
    }
}

fn stem<'a>(run: &'a Run, name: &str) -> &'a StemFile {
    run.files
        .iter()
        .find(|f| f.stem == name)
        .unwrap_or_else(|| panic!("no stem {name}"))
}

/// Max abs difference between a written stem and expected planar channels.
fn stem_error(file: &StemFile, expected: &[Vec<f32>]) -> f32 {
    let (rate, channels, data) = read_audio(&file.path);
    assert_eq!(
        (rate, channels),
        (file.sample_rate, usize::from(file.channels))
    );
    assert_eq!(data.len() as u64, file.frames * channels as u64);
    let got = planar(&data, channels);
    assert_eq!(got.len(), expected.len());
    got.iter()
        .zip(expected)
        .map(|(g, e)| max_abs_diff(g, e))
        .fold(0.0, f32::max)
}

fn files_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn streaming_equals_in_memory() {
    let bag = stream_bag(1, None);
    // 5.04 s: 9 chunks of 0.75 s at stride 0.5625 s, the last ones short.
    let frames = 5 * RATE as usize + 321;
    for (shifts, offsets) in [(0, vec![]), (2, vec![1234, 4000])] {
        let run = run_both(&bag, frames, 2, |p| {
            p.apply = options(shifts, true, 0.25, 1.0, None, offsets.clone());
        });
        assert_eq!(run.files.len(), 4);
        for (k, name) in bag.sources().iter().enumerate() {
            let file = stem(&run, name);
            assert_eq!(file.path, run.out_dir.join(format!("{name}.wav")));
            assert_eq!(
                (file.frames, file.sample_rate, file.channels),
                (frames as u64, RATE, 2)
            );
            let err = stem_error(file, &run.expected[k]);
            println!("streaming vs in memory, shifts {shifts}, {name}: max abs error {err:.2e}");
            assert!(err <= 1e-6, "shifts {shifts}, {name}: {err}");
        }
        assert!(run.progress.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(run.progress.last(), Some(&1.0));
        assert_eq!(run.stats.passes, shifts.max(1));
    }
}

#[test]
fn streaming_a_bag_with_overlap_power_and_segment() {
    let bag = stream_bag(
        2,
        Some(vec![vec![1.0, 0.5, 0.0, 2.0], vec![0.25, 1.0, 1.0, 1.0]]),
    );
    let frames = 4 * RATE as usize + 77;
    let run = run_both(&bag, frames, 2, |p| {
        p.apply = options(1, true, 0.6, 2.0, Some(0.5), vec![17, 3999]);
    });
    for (k, name) in bag.sources().iter().enumerate() {
        let err = stem_error(stem(&run, name), &run.expected[k]);
        println!("streaming vs in memory, bag, {name}: max abs error {err:.2e}");
        assert!(err <= 1e-6, "{name}: {err}");
    }
}

#[test]
fn two_stems_and_skipped_networks() {
    // Like htdemucs_ft: each network is weighted towards one source.
    let weights = vec![vec![1.0, 0.0, 0.0, 0.0], vec![0.0, 1.0, 1.0, 1.0]];
    let bag = stream_bag(2, Some(weights));
    let frames = 3 * RATE as usize;
    let run = run_both(&bag, frames, 2, |p| {
        p.two_stems = Some("s1".into());
        p.apply = options(2, true, 0.25, 1.0, None, vec![5, 600, 1000, 3]);
    });
    let names: Vec<&str> = run.files.iter().map(|f| f.stem.as_str()).collect();
    assert_eq!(names, ["s1", "no_s1"]);
    assert_eq!(run.stats.passes, 4);
    let others: Vec<Vec<f32>> = (0..2)
        .map(|c| {
            (0..frames)
                .map(|t| {
                    [0, 2, 3]
                        .iter()
                        .fold(0f32, |sum, k| sum + run.expected[*k][c][t])
                })
                .collect()
        })
        .collect();
    let err = stem_error(stem(&run, "s1"), &run.expected[1])
        .max(stem_error(stem(&run, "no_s1"), &others));
    println!("two stems: max abs error {err:.2e}");
    assert!(err <= 1e-6);
    let mut names = files_in(&run.out_dir);
    names.sort();
    assert_eq!(names, ["no_s1.wav", "s1.wav"]);

    // Only s0: the second network has weight 0 for it and is not run at all; the result is
    // the same as with the whole bag.
    let run = run_both(&bag, frames, 2, |p| {
        p.stems = vec!["s0".into()];
        p.apply = options(2, true, 0.25, 1.0, None, vec![5, 600, 1000, 3]);
    });
    assert_eq!(run.stats.passes, 2);
    assert_eq!(run.files.len(), 1);
    let err = stem_error(stem(&run, "s0"), &run.expected[0]);
    assert!(err <= 1e-6, "{err}");
}

#[test]
fn mono_input_gives_mono_stems() {
    let bag = stream_bag(1, None);
    let frames = 2 * RATE as usize + 5;
    let run = run_both(&bag, frames, 1, |p| {
        p.apply = options(0, true, 0.25, 1.0, None, vec![])
    });
    for (k, name) in bag.sources().iter().enumerate() {
        let file = stem(&run, name);
        assert_eq!(file.channels, 1);
        let mono: Vec<f32> = (0..frames)
            .map(|t| 0.5 * run.expected[k][0][t] + 0.5 * run.expected[k][1][t])
            .collect();
        let err = stem_error(file, &[mono]);
        assert!(err <= 1e-6, "{name}: {err}");
    }
}

#[test]
fn stems_come_back_at_the_input_rate_and_length() {
    let bag = stream_bag(1, None);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mix.wav");
    let frames = 16_000 * 2 + 333;
    // A 16 kHz input: resampled to the model's 8 kHz and back.
    let data: Vec<f32> = signal(frames, 2, 3);
    write_wav(&input, 16_000, 2, &data);
    for (format, rate, expected_frames) in [
        (AudioFormat::Flac, 16_000, frames as u64),
        (AudioFormat::Opus, 48_000, 3 * frames as u64),
    ] {
        let out_dir = dir.path().join(format.extension());
        std::fs::create_dir(&out_dir).unwrap();
        let mut p = params(&out_dir, options(0, true, 0.25, 1.0, None, vec![]));
        p.encoder = StemEncoding {
            format,
            sample_format: None,
            bitrate: None,
            quality: None,
        };
        p.stems = vec!["s3".into()];
        let files =
            separate_file(&bag, &input, &p, &Limits::default(), &mut |_| {}, &|| false).unwrap();
        assert_eq!(files.len(), 1);
        let file = &files[0];
        assert_eq!(
            file.path,
            out_dir.join(format!("s3.{}", format.extension()))
        );
        assert_eq!(
            (file.sample_rate, file.channels, file.frames),
            (rate, 2, expected_frames)
        );
        let (r, c, decoded) = read_audio(&file.path);
        assert_eq!((r, c), (rate, 2));
        assert_eq!(decoded.len() as u64, 2 * expected_frames, "{format:?}");
    }
}

#[test]
fn memory_is_bounded_independently_of_the_length() {
    let bag = stream_bag(2, None);
    let apply = ApplyOptions {
        shifts: 2,
        offsets: ShiftOffsets::Random { seed: 11 },
        ..ApplyOptions::default()
    };
    let bounds = buffer_bounds(&bag, &apply).unwrap();
    // One WAV packet may overshoot what a chunk needs.
    let (input_bound, accumulator_bound) = (bounds.input_frames + 4096, bounds.accumulator_frames);
    let mut peaks = Vec::new();
    for seconds in [4usize, 40] {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("mix.wav");
        let frames = seconds * RATE as usize;
        write_wav(&input, RATE, 2, &signal(frames, 2, 5));
        let p = params(dir.path(), apply.clone());
        let (_, stats) =
            separate_file_with_stats(&bag, &input, &p, &Limits::default(), &mut |_| {}, &|| false)
                .unwrap();
        println!(
            "{seconds} s ({frames} frames): peak input {} frames (bound {input_bound}), peak \
             accumulator {} frames (bound {accumulator_bound}), {} passes, {} chunks",
            stats.peak_input_frames, stats.peak_accumulator_frames, stats.passes, stats.chunks
        );
        assert!(stats.peak_input_frames <= input_bound);
        assert!(stats.peak_accumulator_frames <= accumulator_bound);
        peaks.push(stats);
    }
    // Ten times longer, same buffers (the bound itself is a few segments).
    assert_eq!(
        peaks[0].peak_accumulator_frames,
        peaks[1].peak_accumulator_frames
    );
    assert!(peaks[1].peak_input_frames <= peaks[0].peak_input_frames + 4096);
    assert!(peaks[1].chunks > 8 * peaks[0].chunks);
    assert!(accumulator_bound < 2 * RATE as usize);
}

#[test]
fn cancel_and_errors_leave_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mix.wav");
    write_wav(&input, RATE, 2, &signal(6 * RATE as usize, 2, 9));
    let out_dir = dir.path().join("stems");
    std::fs::create_dir(&out_dir).unwrap();
    let p = params(&out_dir, options(1, true, 0.25, 1.0, None, vec![100]));

    // Canceled half-way: stems were being written, none is left.
    let bag = stream_bag(1, None);
    let done = std::cell::Cell::new(0.0);
    let err = separate_file(
        &bag,
        &input,
        &p,
        &Limits::default(),
        &mut |f| done.set(f),
        &|| done.get() >= 0.5,
    )
    .unwrap_err();
    assert!(matches!(err, SeparateError::Canceled), "{err}");
    assert!(done.get() >= 0.5 && done.get() < 1.0);
    assert!(files_in(&out_dir).is_empty(), "{:?}", files_in(&out_dir));

    // The network fails on its fourth chunk.
    let mut failing = toy("HTDemucs", 1.0, 4, 2, RATE, (3, 4));
    failing.fail_at_call = Some(3);
    let bag = bag_of(vec![failing], None, None);
    let err =
        separate_file(&bag, &input, &p, &Limits::default(), &mut |_| {}, &|| false).unwrap_err();
    assert!(err.to_string().contains("stand-in network failed"), "{err}");
    assert!(files_in(&out_dir).is_empty(), "{:?}", files_in(&out_dir));

    // Bad requests fail before anything is written.
    let bag = stream_bag(1, None);
    let mut bad = p.clone();
    bad.stems = vec!["vocals".into()];
    let err = separate_file(&bag, &input, &bad, &Limits::default(), &mut |_| {}, &|| {
        false
    })
    .unwrap_err();
    assert!(err.to_string().contains("no stem \"vocals\""), "{err}");
    let mut bad = p.clone();
    bad.two_stems = Some("s0".into());
    bad.stems = vec!["s1".into()];
    assert!(
        separate_file(&bag, &input, &bad, &Limits::default(), &mut |_| {}, &|| {
            false
        })
        .is_err()
    );
    let mut bad = p.clone();
    bad.out_dir = dir.path().join("nowhere");
    assert!(
        separate_file(&bag, &input, &bad, &Limits::default(), &mut |_| {}, &|| {
            false
        })
        .is_err()
    );
    let err = separate_file(
        &bag,
        &dir.path().join("missing.wav"),
        &p,
        &Limits::default(),
        &mut |_| {},
        &|| false,
    )
    .unwrap_err();
    assert!(matches!(err, SeparateError::Media(_)), "{err}");
    // The second stem's file cannot be created (a directory is in the way): the first one,
    // already created, goes.
    std::fs::create_dir(out_dir.join("s1.wav")).unwrap();
    assert!(separate_file(&bag, &input, &p, &Limits::default(), &mut |_| {}, &|| false).is_err());
    assert_eq!(files_in(&out_dir), ["s1.wav"]);
}

/// Peak resident memory of this process, from `/proc/self/status` (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// A 10-minute 44.1 kHz stereo track through the streaming path with the full-size model's
/// geometry (7.8 s segment, 4 stems, shifts 1) and a stand-in network: what the separation
/// itself holds beyond the network. Slow-ish (writes ~200 MB of float WAV); run with
/// `--ignored`.
#[test]
#[ignore]
fn ten_minutes_at_full_geometry_in_bounded_memory() {
    const FULL_RATE: u32 = 44_100;
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mix.wav");
    let frames = 600 * FULL_RATE as usize;
    {
        let spec = EncoderSpec {
            format: AudioFormat::Wav,
            sample_rate: FULL_RATE,
            channels: 2,
            bitrate: None,
            quality: None,
            sample_format: Some(SampleFormat::F32),
            source_bits: None,
            tags: Default::default(),
        };
        let mut encoder = create_encoder(&input, &spec).unwrap();
        for block in 0..frames / FULL_RATE as usize {
            encoder
                .write(&signal(FULL_RATE as usize, 2, block as u32))
                .unwrap();
        }
        encoder.finish().unwrap();
    }
    let before = peak_rss_mib();
    let bag = bag_of(
        vec![toy("HTDemucs", 1.0, 4, 2, FULL_RATE, (39, 5))],
        None,
        None,
    );
    let mut p = params(dir.path(), ApplyOptions::default());
    p.encoder.sample_format = None;
    let (files, stats) =
        separate_file_with_stats(&bag, &input, &p, &Limits::default(), &mut |_| {}, &|| false)
            .unwrap();
    assert_eq!(files.len(), 4);
    assert!(files.iter().all(|f| f.frames == frames as u64));
    println!(
        "10 min at 44.1 kHz: peak RSS {:?} MiB before, {:?} MiB after; {stats:?}; bounds {:?}",
        before,
        peak_rss_mib(),
        buffer_bounds(&bag, &p.apply).unwrap()
    );
}

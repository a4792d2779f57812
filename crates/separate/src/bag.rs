//! Bags of models: the `.yaml` descriptors Demucs publishes (`htdemucs_ft.yaml`: four
//! networks, each weighted towards one source) and the loaded set of networks.
//!
//! Mirrors `demucs.repo.BagOnlyRepo`, `LocalRepo` and `demucs.apply.BagOfModels`:
//!
//! - a descriptor names its networks by signature (`models: ['955717e8']`), optionally gives
//!   `weights` (one row of per-source weights per network; all ones when absent) and a
//!   `segment` in seconds that overrides the networks' own;
//! - a signature resolves to `<sig>-<checksum>.th` or `<sig>.th` in the descriptor's
//!   directory (the checksum, when present, is the leading hex digits of the file's SHA-256,
//!   checked as `LocalRepo` does);
//! - the override applies to a transformer model (`HTDemucs`) only when it is no longer than
//!   the model's own segment, to other models always. A transformer whose segment would be
//!   shortened this way is refused: the reference then also runs the network itself at that
//!   length, which [`Network`] does not offer (no published descriptor does this).

use crate::{ModelInfo, Network, SeparateError};
use candle_core::Device;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The class name of the transformer model, whose segment is bounded by its training length.
pub(crate) const TRANSFORMER_CLASS: &str = "HTDemucs";

/// Largest descriptor read: the official ones are a few hundred bytes.
const MAX_DESCRIPTOR_BYTES: u64 = 64 * 1024;

/// Most networks in a bag (the official bags have at most four).
const MAX_MEMBERS: usize = 64;

/// A segment length as `int(samplerate * segment)` gives it, with the segment in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// The segment in seconds (for display and for comparing with a requested segment).
    pub secs: f64,
    /// `int(samplerate * segment)`: samples per split chunk, and for a transformer model the
    /// length every chunk is padded to before the network sees it.
    pub samples: usize,
}

impl Segment {
    /// The training segment stored in the checkpoint (an exact fraction there).
    pub fn of_model(info: &ModelInfo) -> Segment {
        Segment {
            secs: info.segment_secs(),
            samples: info.segment_samples(),
        }
    }

    /// A segment given as a float, as Python computes `int(samplerate * segment)`.
    pub fn from_secs(secs: f64, samplerate: u32) -> Segment {
        Segment {
            secs,
            samples: (f64::from(samplerate) * secs) as usize,
        }
    }
}

/// One network of a bag with its per-source weights.
#[derive(Clone)]
pub struct Member {
    /// The network.
    pub network: Arc<dyn Network>,
    /// Weight of each source (in the bag's source order) in the bag's average.
    pub weights: Vec<f64>,
    /// The segment this network is run with: its own, or the descriptor's override.
    pub segment: Segment,
}

impl Member {
    /// Whether the network is the transformer model, whose chunks are always padded to its
    /// segment (`HTDemucs.valid_length`) and whose segment cannot be lengthened.
    pub fn is_transformer(&self) -> bool {
        self.network.info().class == TRANSFORMER_CLASS
    }
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("info", self.network.info())
            .field("weights", &self.weights)
            .field("segment", &self.segment)
            .finish()
    }
}

/// A set of networks whose weighted outputs are averaged (`BagOfModels`); a single
/// checkpoint is a bag of one with unit weights, which gives the same result.
#[derive(Debug, Clone)]
pub struct Bag {
    members: Vec<Member>,
    sources: Vec<String>,
    samplerate: u32,
    channels: usize,
    device: Device,
}

impl Bag {
    /// Builds a bag from loaded networks, as `BagOfModels(models, weights, segment)`: the
    /// networks must agree on sources, sample rate and channels; `weights` has one row of one
    /// weight per source for each network (all ones when `None`); `segment` (seconds)
    /// overrides each network's segment, except a transformer's when it is longer.
    pub fn new(
        networks: Vec<Arc<dyn Network>>,
        weights: Option<Vec<Vec<f64>>>,
        segment: Option<f64>,
        device: &Device,
    ) -> Result<Bag, SeparateError> {
        let first = networks
            .first()
            .ok_or_else(|| SeparateError::Descriptor("the bag has no models".into()))?
            .info()
            .clone();
        if networks.len() > MAX_MEMBERS {
            return Err(SeparateError::Descriptor(format!(
                "the bag has {} models, at most {MAX_MEMBERS} are supported",
                networks.len()
            )));
        }
        if first.sources.is_empty() || first.audio_channels == 0 || first.samplerate == 0 {
            return Err(SeparateError::Checkpoint(
                "the model has no sources, no channels or no sample rate".into(),
            ));
        }
        for network in &networks {
            let info = network.info();
            if info.sources != first.sources
                || info.samplerate != first.samplerate
                || info.audio_channels != first.audio_channels
            {
                return Err(SeparateError::Descriptor(format!(
                    "the models of the bag disagree: {:?} at {} Hz with {} channels, then {:?} \
                     at {} Hz with {} channels",
                    first.sources,
                    first.samplerate,
                    first.audio_channels,
                    info.sources,
                    info.samplerate,
                    info.audio_channels
                )));
            }
        }
        if let Some(segment) = segment {
            if !(segment.is_finite() && segment > 0.0) {
                return Err(SeparateError::Descriptor(format!(
                    "segment {segment} is not a positive number of seconds"
                )));
            }
        }
        let sources = first.sources.clone();
        let weights = match weights {
            Some(rows) => {
                if rows.len() != networks.len() {
                    return Err(SeparateError::Descriptor(format!(
                        "{} rows of weights for {} models",
                        rows.len(),
                        networks.len()
                    )));
                }
                for row in &rows {
                    if row.len() != sources.len() {
                        return Err(SeparateError::Descriptor(format!(
                            "a row of {} weights for {} sources",
                            row.len(),
                            sources.len()
                        )));
                    }
                    if row.iter().any(|w| !w.is_finite()) {
                        return Err(SeparateError::Descriptor(
                            "weights must be finite numbers".into(),
                        ));
                    }
                }
                rows
            }
            None => vec![vec![1.0; sources.len()]; networks.len()],
        };
        // The reference divides each source by its total weight: a zero total would turn the
        // source into NaN, so it is refused here instead.
        for (k, source) in sources.iter().enumerate() {
            let total: f64 = weights.iter().map(|row| row[k]).sum();
            if total == 0.0 {
                return Err(SeparateError::Descriptor(format!(
                    "the weights of source {source:?} add up to zero"
                )));
            }
        }
        let mut members = Vec::with_capacity(networks.len());
        for (network, weights) in networks.into_iter().zip(weights) {
            let info = network.info();
            let own = Segment::of_model(info);
            let transformer = info.class == TRANSFORMER_CLASS;
            let segment = match segment {
                // `BagOfModels.__init__`: a transformer keeps its own segment when the
                // override is longer than what it was trained on.
                Some(secs) if !transformer || secs <= own.secs => {
                    Segment::from_secs(secs, info.samplerate)
                }
                _ => own,
            };
            // A shorter override also changes the length the reference's transformer runs at
            // inside (`training_length`), which a `Network` cannot be asked to do: refused
            // rather than computed differently. (The `segment` option of `apply_model` does
            // not have this effect and is supported.)
            if transformer && segment.samples < own.samples {
                return Err(SeparateError::Unsupported(format!(
                    "the descriptor's segment {} s is shorter than the transformer's training                      segment {} s; use the segment option instead",
                    segment.secs, own.secs
                )));
            }
            members.push(Member {
                network,
                weights,
                segment,
            });
        }
        Ok(Bag {
            members,
            sources,
            samplerate: first.samplerate,
            channels: first.audio_channels,
            device: device.clone(),
        })
    }

    /// The networks with their weights and segments, in the descriptor's order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Source (stem) names, in the order of the outputs.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// Sample rate the networks work at, in Hz.
    pub fn samplerate(&self) -> u32 {
        self.samplerate
    }

    /// Channels the networks take and return.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Device the networks live on; chunks are sent there.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The longest segment (seconds) a caller may ask for: the shortest segment of the
    /// transformer members (`BagOfModels.max_allowed_segment`), unbounded without one.
    pub fn max_allowed_segment(&self) -> f64 {
        self.members
            .iter()
            .filter(|m| m.is_transformer())
            .map(|m| m.segment.secs)
            .fold(f64::INFINITY, f64::min)
    }
}

/// The fields of a descriptor that the reference reads (`BagOnlyRepo.get_model`).
#[derive(Debug, Deserialize)]
struct Descriptor {
    models: Vec<Signature>,
    #[serde(default)]
    weights: Option<Vec<Vec<f64>>>,
    #[serde(default)]
    segment: Option<f64>,
}

/// A signature as YAML may type it: official ones are quoted strings, but an unquoted
/// all-digit signature reads as an integer.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Signature {
    Text(String),
    Number(u64),
}

impl Signature {
    fn text(&self) -> String {
        match self {
            Signature::Text(s) => s.clone(),
            Signature::Number(n) => n.to_string(),
        }
    }
}

/// Loads one checkpoint onto a device (what [`load_model_with`] calls for each network).
pub type LoadNetwork<'a> = dyn Fn(&Path, &Device) -> Result<Arc<dyn Network>, SeparateError> + 'a;

/// Loads `path`: a bag descriptor (`.yaml`/`.yml`) whose networks sit in the same directory,
/// or a single checkpoint (anything else), onto `device`.
pub fn load_model(path: &Path, device: &Device) -> Result<Bag, SeparateError> {
    load_model_with(path, device, &|p, d| crate::checkpoint::load_network(p, d))
}

/// [`load_model`] with the network loader given: resolves and validates the descriptor,
/// then calls `load` for each checkpoint (tests use it with stand-in networks).
pub fn load_model_with(
    path: &Path,
    device: &Device,
    load: &LoadNetwork<'_>,
) -> Result<Bag, SeparateError> {
    if !is_descriptor(path) {
        return Bag::new(vec![load(path, device)?], None, None, device);
    }
    let descriptor = read_descriptor(path)?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut networks = Vec::with_capacity(descriptor.models.len());
    // A signature may be listed twice (`repro_mdx_a_hybrid_only.yaml`): loaded once.
    let mut loaded: Vec<(PathBuf, Arc<dyn Network>)> = Vec::new();
    for signature in &descriptor.models {
        let file = resolve_signature(&dir, &signature.text())?;
        let network = match loaded.iter().find(|(path, _)| *path == file) {
            Some((_, network)) => network.clone(),
            None => {
                let network = load(&file, device)?;
                loaded.push((file, network.clone()));
                network
            }
        };
        networks.push(network);
    }
    Bag::new(networks, descriptor.weights, descriptor.segment, device)
}

fn is_descriptor(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

fn read_descriptor(path: &Path) -> Result<Descriptor, SeparateError> {
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(MAX_DESCRIPTOR_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| SeparateError::Descriptor(format!("{}: {e}", path.display())))?;
    if text.len() as u64 > MAX_DESCRIPTOR_BYTES {
        return Err(SeparateError::Descriptor(format!(
            "{} is larger than {MAX_DESCRIPTOR_BYTES} bytes",
            path.display()
        )));
    }
    let descriptor: Descriptor = serde_yaml_ng::from_str(&text)
        .map_err(|e| SeparateError::Descriptor(format!("{}: {e}", path.display())))?;
    if descriptor.models.is_empty() {
        return Err(SeparateError::Descriptor(format!(
            "{} names no models",
            path.display()
        )));
    }
    Ok(descriptor)
}

/// The checkpoint of `signature` in `dir`: `<sig>.th` or `<sig>-<checksum>.th` (the part
/// before the last `-` is the signature, as `LocalRepo.scan` splits it). Exactly one file
/// must match; a checksum in the name is verified against the file's SHA-256.
pub fn resolve_signature(dir: &Path, signature: &str) -> Result<PathBuf, SeparateError> {
    let valid = !signature.is_empty()
        && signature
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        && !signature.starts_with('.');
    if !valid {
        return Err(SeparateError::Descriptor(format!(
            "{signature:?} is not a model signature"
        )));
    }
    let mut found: Vec<(PathBuf, Option<String>)> = Vec::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| SeparateError::Descriptor(format!("cannot list {}: {e}", dir.display())))?;
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("th") {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let (sig, checksum) = match stem.rsplit_once('-') {
            Some((sig, checksum)) => (sig, Some(checksum.to_owned())),
            None => (stem, None),
        };
        if sig == signature {
            found.push((path, checksum));
        }
    }
    match found.len() {
        0 => Err(SeparateError::Descriptor(format!(
            "no checkpoint for model {signature:?} in {} (expected {signature}-<checksum>.th \
             or {signature}.th)",
            dir.display()
        ))),
        1 => {
            let (path, checksum) = found.remove(0);
            if let Some(checksum) = checksum {
                verify_checksum(&path, &checksum)?;
            }
            Ok(path)
        }
        n => Err(SeparateError::Descriptor(format!(
            "{n} checkpoints for model {signature:?} in {}: keep one",
            dir.display()
        ))),
    }
}

/// `repo.check_checksum`: the name's checksum must be a prefix of the file's SHA-256 (hex).
fn verify_checksum(path: &Path, checksum: &str) -> Result<(), SeparateError> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    let actual = audiomill_core::digest::hex(&hasher.finalize());
    // Compared exactly as the reference does (`hexdigest()[:len(checksum)] == checksum`).
    if actual.starts_with(checksum) {
        Ok(())
    } else {
        Err(SeparateError::Checkpoint(format!(
            "{}: checksum mismatch (the name says {checksum}, the content hashes to {}): \
             the file is corrupt or incomplete",
            path.display(),
            &actual[..checksum.len().min(actual.len())]
        )))
    }
}

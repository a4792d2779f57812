//! Stem separation with the Demucs v4 family (Hybrid Transformer Demucs), natively on candle.
//!
//! The crate mirrors the reference implementation (the `demucs` Python package) piece by piece,
//! so that each piece can be held to it by the parity tests in `tests/`:
//!
//! - [`checkpoint`]: reads the official checkpoint files (`torch.save` zip + pickle: `klass`,
//!   `args`, `kwargs`, fp16 `state`) without Python; hyperparameters come from `kwargs`.
//! - [`htdemucs`]: the network (`HTDemucs.forward`): STFT branch, time branch, cross-domain
//!   transformer, iSTFT.
//! - [`bag`]: bag-of-models descriptors (the `.yaml` files Demucs publishes) and their weights.
//! - [`apply`]: `apply_model` semantics: split into overlapping segments with a triangular
//!   window, random time shifts, bag averaging.
//! - [`separator`]: `Separator.separate_tensor`: normalization by the mono mix's mean and
//!   standard deviation around `apply_model`.
//! - [`stream`]: the same computation over a track of any length in bounded memory, decoding
//!   through `audiomill-media` and encoding each stem as it is produced.
//!
//! Tensors are laid out as in PyTorch: a mix is `[batch, channels, time]`, a separation
//! `[batch, sources, channels, time]`.

pub mod apply;
pub mod bag;
pub mod checkpoint;
mod error;
pub mod htdemucs;
pub mod separator;
pub mod stream;

pub use apply::{apply_model, ApplyOptions, ShiftOffsets};
pub use bag::{load_model, Bag};
pub use checkpoint::{inspect_checkpoint, load_network};
pub use error::SeparateError;
pub use separator::separate_tensor;
pub use stream::{separate_file, SeparateParams, StemEncoding, StemFile, StreamStats};

use candle_core::{Device, Tensor};

/// The device separations run on: the first CUDA GPU when the crate is built with the `cuda`
/// feature and one is usable, the CPU otherwise.
pub fn default_device() -> Device {
    #[cfg(feature = "cuda")]
    if let Ok(device) = Device::new_cuda(0) {
        return device;
    }
    Device::Cpu
}

/// What a loaded network is: read from its checkpoint, never assumed.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// The Python class the checkpoint names (`HTDemucs`, `HDemucs`, …).
    pub class: String,
    /// Source (stem) names, in the order of the network's output.
    pub sources: Vec<String>,
    /// Sample rate the network works at, in Hz.
    pub samplerate: u32,
    /// Channels the network expects (2 for every published model).
    pub audio_channels: usize,
    /// Training segment in seconds, as the exact fraction stored in the checkpoint
    /// (`Fraction(39, 5)` for htdemucs): `(numerator, denominator)`.
    pub segment: (u64, u64),
}

impl ModelInfo {
    /// The training segment in seconds.
    pub fn segment_secs(&self) -> f64 {
        self.segment.0 as f64 / self.segment.1 as f64
    }

    /// `int(segment * samplerate)` exactly as Python computes it with a `Fraction`.
    pub fn segment_samples(&self) -> usize {
        (self.segment.0 * self.samplerate as u64 / self.segment.1) as usize
    }
}

/// One separation network (a single model of a bag).
pub trait Network: Send + Sync {
    /// What the checkpoint says about the network.
    fn info(&self) -> &ModelInfo;

    /// `model(mix)` of the reference: `mix` is `[batch, audio_channels, time]` at
    /// `info().samplerate`, with `time <= info().segment_samples()` (shorter input is padded to
    /// the training length inside, as the reference does, and the output cropped back).
    /// Returns `[batch, sources, audio_channels, time]`.
    fn forward(&self, mix: &Tensor) -> Result<Tensor, SeparateError>;
}

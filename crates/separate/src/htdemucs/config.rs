//! The hyperparameters of `HTDemucs.__init__` that this implementation supports.
//!
//! The family is the one of the published models (htdemucs, htdemucs_ft, htdemucs_6s): complex
//! as channels, no Wiener filtering, DConv residuals in encoder and decoder, a cross-domain
//! transformer with sinusoidal embeddings, pre-norm layers with layer scale and GELU. Sizes
//! (channels, depth, nfft, kernel, strides, heads, layers, sources, sample rate, segment) are
//! free. Any other value of a switch is refused with [`SeparateError::Unsupported`] naming the
//! key, as is a key the reference does not know.

use crate::checkpoint::{fraction, Kwargs};
use crate::SeparateError;
use candle_core::pickle::Object;

/// Sizes of an `HTDemucs` network, resolved from its kwargs (constructor defaults applied).
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub sources: usize,
    pub audio_channels: usize,
    pub channels: usize,
    pub growth: usize,
    pub nfft: usize,
    pub depth: usize,
    pub freq_emb: f64,
    pub emb_scale: f64,
    pub kernel_size: usize,
    pub time_stride: usize,
    pub stride: usize,
    pub context: usize,
    pub context_enc: usize,
    pub norm_starts: usize,
    pub norm_groups: usize,
    pub dconv_depth: usize,
    pub dconv_comp: f64,
    pub bottom_channels: usize,
    pub t_layers: usize,
    pub t_hidden_scale: f64,
    pub t_heads: usize,
    pub t_max_period: f64,
    pub t_weight_pos_embed: f64,
    /// `int(segment * samplerate)`: the length every input is padded to.
    pub training_length: usize,
}

/// How a kwarg is checked.
enum Rule {
    /// A size: an integer in the range.
    Int(usize, usize),
    /// A finite float (or integer) in the range.
    Num(f64, f64),
    /// Must equal this value.
    Exactly(Object),
    /// Must be `None` (or, for lists, empty).
    NoneOrEmpty,
    /// Read elsewhere (sources, samplerate, segment) or no effect at inference.
    Any,
}

fn rules() -> Vec<(&'static str, Rule, Option<Object>)> {
    use Object::{Bool, Float, Int, Unicode};
    let s = |v: &str| Unicode(v.into());
    // (key, rule, default of the constructor when it is used below)
    vec![
        ("sources", Rule::Any, None),
        ("audio_channels", Rule::Int(1, 64), Some(Int(2))),
        ("channels", Rule::Int(1, 4096), Some(Int(48))),
        ("channels_time", Rule::NoneOrEmpty, None),
        ("growth", Rule::Int(1, 16), Some(Int(2))),
        ("nfft", Rule::Int(16, 1 << 16), Some(Int(4096))),
        ("wiener_iters", Rule::Exactly(Int(0)), None),
        ("end_iters", Rule::Exactly(Int(0)), None),
        ("wiener_residual", Rule::Any, None),
        ("cac", Rule::Exactly(Bool(true)), None),
        ("depth", Rule::Int(1, 12), Some(Int(4))),
        ("rewrite", Rule::Exactly(Bool(true)), None),
        ("multi_freqs", Rule::NoneOrEmpty, None),
        ("multi_freqs_depth", Rule::Any, None),
        ("freq_emb", Rule::Num(0.0, 1e6), Some(Float(0.2))),
        ("emb_scale", Rule::Num(-1e6, 1e6), Some(Int(10))),
        ("emb_smooth", Rule::Any, None),
        ("kernel_size", Rule::Int(1, 64), Some(Int(8))),
        ("time_stride", Rule::Int(1, 64), Some(Int(2))),
        ("stride", Rule::Int(1, 64), Some(Int(4))),
        ("context", Rule::Int(0, 16), Some(Int(1))),
        ("context_enc", Rule::Int(0, 16), Some(Int(0))),
        ("norm_starts", Rule::Int(0, 1 << 16), Some(Int(4))),
        ("norm_groups", Rule::Int(1, 4096), Some(Int(4))),
        ("dconv_mode", Rule::Exactly(Int(3)), Some(Int(1))),
        ("dconv_depth", Rule::Int(1, 16), Some(Int(2))),
        ("dconv_comp", Rule::Num(1e-3, 1e6), Some(Int(8))),
        ("dconv_init", Rule::Any, None),
        ("bottom_channels", Rule::Int(0, 1 << 16), Some(Int(0))),
        ("t_layers", Rule::Int(0, 64), Some(Int(5))),
        ("t_emb", Rule::Exactly(s("sin")), None),
        ("t_hidden_scale", Rule::Num(1e-3, 1e3), Some(Float(4.0))),
        ("t_heads", Rule::Int(1, 1024), Some(Int(8))),
        ("t_dropout", Rule::Any, None),
        ("t_max_positions", Rule::Any, None),
        ("t_norm_in", Rule::Exactly(Bool(true)), None),
        ("t_norm_in_group", Rule::Exactly(Bool(false)), None),
        ("t_group_norm", Rule::Exactly(Bool(false)), None),
        ("t_norm_first", Rule::Exactly(Bool(true)), None),
        ("t_norm_out", Rule::Exactly(Bool(true)), None),
        ("t_max_period", Rule::Num(1.0, 1e12), Some(Float(10000.0))),
        ("t_weight_decay", Rule::Any, None),
        ("t_lr", Rule::Any, None),
        ("t_layer_scale", Rule::Exactly(Bool(true)), None),
        ("t_gelu", Rule::Exactly(Bool(true)), None),
        ("t_weight_pos_embed", Rule::Num(-1e6, 1e6), Some(Float(1.0))),
        // A shift would draw a random position offset at every forward.
        ("t_sin_random_shift", Rule::Exactly(Int(0)), None),
        ("t_cape_mean_normalize", Rule::Any, None),
        ("t_cape_augment", Rule::Any, None),
        ("t_cape_glob_loc_scale", Rule::Any, None),
        ("t_sparse_self_attn", Rule::Exactly(Bool(false)), None),
        ("t_sparse_cross_attn", Rule::Exactly(Bool(false)), None),
        ("t_mask_type", Rule::Any, None),
        ("t_mask_random_seed", Rule::Any, None),
        ("t_sparse_attn_window", Rule::Any, None),
        ("t_global_window", Rule::Any, None),
        ("t_sparsity", Rule::Any, None),
        ("t_auto_sparsity", Rule::Exactly(Bool(false)), None),
        ("t_cross_first", Rule::Exactly(Bool(false)), None),
        ("rescale", Rule::Any, None),
        ("samplerate", Rule::Any, None),
        ("segment", Rule::Any, None),
        ("use_train_segment", Rule::Exactly(Bool(true)), None),
    ]
}

fn unsupported(key: &str, value: &Object) -> SeparateError {
    SeparateError::Unsupported(format!("HTDemucs with {key} = {}", show(value)))
}

fn show(o: &Object) -> String {
    match o {
        Object::Int(i) => i.to_string(),
        Object::Long(i) => i.to_string(),
        Object::Float(f) => f.to_string(),
        Object::Bool(true) => "True".into(),
        Object::Bool(false) => "False".into(),
        Object::None => "None".into(),
        Object::Unicode(s) => format!("{s:?}"),
        Object::List(items) | Object::Tuple(items) => format!("a list of {}", items.len()),
        _ => "an object".into(),
    }
}

fn as_int(o: &Object) -> Option<i64> {
    match o {
        Object::Int(i) => Some(i64::from(*i)),
        Object::Long(i) => Some(*i),
        // Python's True == 1 (a bool passes for an int in the reference).
        Object::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

fn as_num(o: &Object) -> Option<f64> {
    match o {
        Object::Float(f) => Some(*f),
        other => as_int(other).map(|i| i as f64),
    }
}

/// Value equality as Python sees it for the switches (`0 == False`, `1.0 == 1`).
fn py_eq(a: &Object, b: &Object) -> bool {
    match (a, b) {
        (Object::Unicode(x), Object::Unicode(y)) => x == y,
        (Object::None, Object::None) => true,
        (x, y) => matches!((as_num(x), as_num(y)), (Some(x), Some(y)) if x == y),
    }
}

impl Config {
    /// Validates the kwargs of a checkpoint and resolves the sizes of the network.
    pub fn from_kwargs(kwargs: &Kwargs) -> Result<Config, SeparateError> {
        let rules = rules();
        for key in kwargs.keys() {
            if !rules.iter().any(|(k, _, _)| k == key) {
                return Err(SeparateError::Unsupported(format!(
                    "HTDemucs with the unknown hyperparameter {key}"
                )));
            }
        }
        let mut ints = std::collections::HashMap::new();
        let mut nums = std::collections::HashMap::new();
        for (key, rule, default) in &rules {
            let value = kwargs.get(*key).or(default.as_ref());
            match (rule, value) {
                (Rule::Any, _) => {}
                (_, None) => {}
                (Rule::Int(lo, hi), Some(v)) => {
                    let i = as_int(v)
                        .filter(|&i| i >= *lo as i64 && i <= *hi as i64)
                        .ok_or_else(|| unsupported(key, v))?;
                    ints.insert(*key, i as usize);
                }
                (Rule::Num(lo, hi), Some(v)) => {
                    let f = as_num(v)
                        .filter(|f| f.is_finite() && *f >= *lo && *f <= *hi)
                        .ok_or_else(|| unsupported(key, v))?;
                    nums.insert(*key, f);
                }
                (Rule::Exactly(want), Some(v)) => {
                    if !py_eq(v, want) {
                        return Err(unsupported(key, v));
                    }
                }
                (Rule::NoneOrEmpty, Some(v)) => match v {
                    Object::None => {}
                    Object::List(l) | Object::Tuple(l) if l.is_empty() => {}
                    other => return Err(unsupported(key, other)),
                },
            }
        }
        // Keys without a default that must be there because their default is refused.
        if !kwargs.contains_key("dconv_mode") {
            return Err(SeparateError::Unsupported(
                "HTDemucs with dconv_mode = 1 (the default)".into(),
            ));
        }
        let int = |k: &str| ints.get(k).copied().unwrap_or_default();
        let num = |k: &str| nums.get(k).copied().unwrap_or_default();

        let sources = match kwargs.get("sources") {
            Some(Object::List(s)) | Some(Object::Tuple(s)) if !s.is_empty() => s.len(),
            _ => {
                return Err(SeparateError::Checkpoint(
                    "kwargs has no list of sources".into(),
                ))
            }
        };
        let samplerate = match kwargs.get("samplerate") {
            None => 44100,
            Some(v) => as_int(v)
                .filter(|&r| r > 0 && r <= 1_000_000)
                .ok_or_else(|| unsupported("samplerate", v))? as u64,
        };
        let segment = match kwargs.get("segment") {
            None => (10, 1),
            // A float segment rounds differently from the fraction the published models
            // store (int(7.8 * 44100) = 343979, not 343980): only exact values are taken.
            Some(v @ Object::Float(_)) => return Err(unsupported("segment", v)),
            Some(v) => fraction(v).ok_or_else(|| unsupported("segment", v))?,
        };
        let training_length = segment
            .0
            .checked_mul(samplerate)
            .map(|n| n / segment.1)
            .filter(|&n| n > 0 && n <= 3600 * 1_000_000)
            .ok_or_else(|| {
                SeparateError::Unsupported(format!(
                    "HTDemucs with segment {}/{} s",
                    segment.0, segment.1
                ))
            })? as usize;

        let config = Config {
            sources,
            audio_channels: int("audio_channels"),
            channels: int("channels"),
            growth: int("growth"),
            nfft: int("nfft"),
            depth: int("depth"),
            freq_emb: num("freq_emb"),
            emb_scale: num("emb_scale"),
            kernel_size: int("kernel_size"),
            time_stride: int("time_stride"),
            stride: int("stride"),
            context: int("context"),
            context_enc: int("context_enc"),
            norm_starts: int("norm_starts"),
            norm_groups: int("norm_groups"),
            dconv_depth: int("dconv_depth"),
            dconv_comp: num("dconv_comp"),
            bottom_channels: int("bottom_channels"),
            t_layers: int("t_layers"),
            t_hidden_scale: num("t_hidden_scale"),
            t_heads: int("t_heads"),
            t_max_period: num("t_max_period"),
            t_weight_pos_embed: num("t_weight_pos_embed"),
            training_length,
        };
        config.check_shapes()?;
        Ok(config)
    }

    /// Constraints the reference asserts (or crashes on) at construction or in `forward`.
    fn check_shapes(&self) -> Result<(), SeparateError> {
        let no = |m: String| Err(SeparateError::Unsupported(format!("HTDemucs with {m}")));
        if self.nfft % 8 != 0 {
            // hop = nfft / 4 and the re-padding uses hop / 2 * 3.
            return no(format!("nfft = {} (not a multiple of 8)", self.nfft));
        }
        let widest = self
            .growth
            .checked_pow(self.depth as u32 - 1)
            .and_then(|g| g.checked_mul(self.channels))
            .filter(|&c| c <= 1 << 16);
        let Some(widest) = widest else {
            return no(format!(
                "channels = {}, growth = {}, depth = {} (too wide)",
                self.channels, self.growth, self.depth
            ));
        };
        // Layers whose frequency axis is exhausted merge the branches; the reference's
        // transformer only accepts that at the last layer, and no published model does it.
        let mut freqs = self.nfft / 2;
        for index in 0..self.depth {
            if freqs <= 1 {
                return no(format!(
                    "depth = {} (the frequency axis runs out at layer {index})",
                    self.depth
                ));
            }
            if freqs <= self.kernel_size {
                return no(format!(
                    "nfft = {} and depth = {} (the branches merge at layer {index})",
                    self.nfft, self.depth
                ));
            }
            freqs /= self.stride;
        }
        let dim = if self.bottom_channels > 0 {
            self.bottom_channels
        } else {
            widest
        };
        if self.t_layers > 0 {
            if dim % self.t_heads != 0 {
                return no(format!("t_heads = {} for width {dim}", self.t_heads));
            }
            if dim % 4 != 0 {
                return no(format!("transformer width {dim} (not a multiple of 4)"));
            }
        }
        Ok(())
    }

    /// Hop length of the STFT.
    pub fn hop(&self) -> usize {
        self.nfft / 4
    }

    /// Width of the transformer (`bottom_channels` when set).
    pub fn transformer_dim(&self) -> usize {
        if self.bottom_channels > 0 {
            self.bottom_channels
        } else {
            self.channels * self.growth.pow(self.depth as u32 - 1)
        }
    }
}

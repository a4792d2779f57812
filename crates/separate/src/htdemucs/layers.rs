//! The convolutional layers of HTDemucs (`demucs.hdemucs.HEncLayer` / `HDecLayer` and
//! `demucs.demucs.DConv`), for the two branches.
//!
//! Frequency-branch tensors are `[B, C, F, T]`, time-branch tensors `[B, C, T]`. The reference's
//! frequency convolutions are 2-D with `[K, 1]` kernels: they never mix time steps, so they run
//! here as 1-D convolutions over the frequency axis with the time steps folded into the batch
//! (candle's CPU 2-D transposed convolution is a naive loop; the 1-D ones are im2col + GEMM).

use super::kernels::{self, Affine, Conv2dGeom};
use crate::checkpoint::Weights;
use crate::SeparateError;
use candle_core::Tensor;

type Result<T> = std::result::Result<T, SeparateError>;

/// `x` with `bias` (`[C]`) added along dimension 1 of a tensor of any rank.
fn add_channel_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let mut shape = vec![1usize; x.rank()];
    shape[1] = bias.dim(0)?;
    Ok(x.broadcast_add(&bias.reshape(shape)?)?)
}

/// `torch.nn.functional.glu(x, dim=1)`: first half times the sigmoid of the second.
pub(crate) fn glu(x: &Tensor) -> Result<Tensor> {
    kernels::glu(x)
}

/// A 4-D CPU convolution through [`kernels::conv2d`] on `x` `[N, Cin, H, W]`.
fn conv2d_cpu(x: &Tensor, weight: &Tensor, bias: &Tensor, geom: Conv2dGeom) -> Result<Tensor> {
    let dims = x.dims4()?;
    let (out, shape) = kernels::with_slice(x, |x| {
        kernels::with_slice(weight, |w| {
            kernels::with_slice(bias, |b| kernels::conv2d(x, dims, w, b, geom))
        })
    })????;
    kernels::from_vec(out, shape)
}

/// `torch.nn.GroupNorm` (eps 1e-5) over `[N, C, ...]`.
pub(crate) struct GroupNorm {
    groups: usize,
    weight: Tensor,
    bias: Tensor,
}

impl GroupNorm {
    pub(crate) fn load(
        w: &mut Weights,
        name: &str,
        groups: usize,
        channels: usize,
    ) -> Result<Self> {
        if groups == 0 || channels % groups != 0 {
            return Err(SeparateError::Unsupported(format!(
                "{name}: GroupNorm of {channels} channels in {groups} groups"
            )));
        }
        Ok(GroupNorm {
            groups,
            weight: w.take(&format!("{name}.weight"), &[channels])?,
            bias: w.take(&format!("{name}.bias"), &[channels])?,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_act(x, false)
    }

    /// `glu(self.forward(x))` on `[N, 2C, T]`, fused for the one-group norms of DConv.
    pub(crate) fn forward_glu(&self, x: &Tensor) -> Result<Tensor> {
        if self.groups == 1 && x.rank() == 3 {
            kernels::group_norm1_glu(x, &self.weight, &self.bias)
        } else {
            glu(&self.forward(x)?)
        }
    }

    /// The norm, then the exact GELU if `gelu`, in one fused pass.
    pub(crate) fn forward_act(&self, x: &Tensor, gelu: bool) -> Result<Tensor> {
        let dims = x.dims();
        let channels = dims[1] / self.groups;
        let inner: usize = dims[2..].iter().product();
        let affine = Affine::Channels { channels, inner };
        kernels::normalize(x, channels * inner, &self.weight, &self.bias, affine, gelu)
    }
}

/// Optional GroupNorm (`nn.Identity` before `norm_starts`).
pub(crate) fn maybe_norm(norm: &Option<GroupNorm>, x: Tensor) -> Result<Tensor> {
    match norm {
        Some(n) => n.forward(&x),
        None => Ok(x),
    }
}

/// Optional GroupNorm followed by the exact GELU.
fn maybe_norm_gelu(norm: &Option<GroupNorm>, x: Tensor) -> Result<Tensor> {
    match norm {
        Some(n) => n.forward_act(&x, true),
        None => kernels::gelu(&x),
    }
}

/// `nn.Conv1d` over `[N, C, L]`.
pub(crate) struct Conv1d {
    weight: Tensor,
    bias: Tensor,
    padding: usize,
    stride: usize,
    dilation: usize,
}

impl Conv1d {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn load(
        w: &mut Weights,
        name: &str,
        cin: usize,
        cout: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        dilation: usize,
    ) -> Result<Self> {
        Ok(Conv1d {
            weight: w.take(&format!("{name}.weight"), &[cout, cin, kernel])?,
            bias: w.take(&format!("{name}.bias"), &[cout])?,
            padding,
            stride,
            dilation,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if kernels::is_cpu_f32(x) {
            // `[N, C, L]` as `[N, C, 1, L]`.
            let (n, c, l) = x.dims3()?;
            let k = self.weight.dim(2)?;
            let geom = Conv2dGeom {
                kernel: (1, k),
                stride: (1, self.stride),
                padding: (0, self.padding),
                dilation: (1, self.dilation),
            };
            let y = conv2d_cpu(&x.reshape((n, c, 1, l))?, &self.weight, &self.bias, geom)?;
            return Ok(y.squeeze(2)?);
        }
        let y =
            x.contiguous()?
                .conv1d(&self.weight, self.padding, self.stride, self.dilation, 1)?;
        add_channel_bias(&y, &self.bias)
    }

    /// The convolution along the frequency axis of `[B, C, F, T]` (a `[K, 1]` 2-D kernel).
    fn forward_freq(&self, x: &Tensor) -> Result<Tensor> {
        if kernels::is_cpu_f32(x) {
            let k = self.weight.dim(2)?;
            let geom = Conv2dGeom {
                kernel: (k, 1),
                stride: (self.stride, 1),
                padding: (self.padding, 0),
                dilation: (self.dilation, 1),
            };
            return conv2d_cpu(x, &self.weight, &self.bias, geom);
        }
        let t = x.dim(3)?;
        unfold_time(&self.forward(&fold_time(x)?)?, t)
    }
}

/// `nn.ConvTranspose1d` (no padding) over `[N, C, L]`.
pub(crate) struct ConvTr1d {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
}

impl ConvTr1d {
    fn from_weight(weight: Tensor, bias: Tensor, stride: usize) -> Self {
        ConvTr1d {
            weight,
            bias,
            stride,
        }
    }

    /// The transposed convolution along the frequency axis of `[B, C, F, T]` (or along time
    /// of `[B, C, L, 1]`).
    fn forward_h(&self, x: &Tensor) -> Result<Tensor> {
        if kernels::is_cpu_f32(x) {
            let dims = x.dims4()?;
            let k = self.weight.dim(2)?;
            let (out, shape) = kernels::with_slice(x, |xs| {
                kernels::with_slice(&self.weight, |w| {
                    kernels::with_slice(&self.bias, |b| {
                        kernels::conv_tr_h(xs, dims, w, b, k, self.stride)
                    })
                })
            })????;
            return kernels::from_vec(out, shape);
        }
        let t = x.dim(3)?;
        unfold_time(&self.forward(&fold_time(x)?)?, t)
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if kernels::is_cpu_f32(x) {
            let (n, c, l) = x.dims3()?;
            return Ok(self.forward_h(&x.reshape((n, c, l, 1))?)?.squeeze(3)?);
        }
        let (n, cin, l) = x.dims3()?;
        let (_, cout, k) = self.weight.dims3()?;
        let s = self.stride;
        let y = if k % s == 0 {
            // One GEMM for all positions, then overlap-add of the K/S stride-sized pieces
            // (candle 0.11's batched CPU conv_transpose1d mixes up batch items).
            let cols = x
                .transpose(1, 2)?
                .contiguous()?
                .reshape((n * l, cin))?
                .matmul(&self.weight.reshape((cin, cout * k))?)?
                .reshape((n, l, cout, k / s, s))?;
            let groups = k / s;
            let mut acc: Option<Tensor> = None;
            for g in 0..groups {
                let piece = cols
                    .narrow(3, g, 1)?
                    .squeeze(3)?
                    .permute((0, 2, 1, 3))?
                    .contiguous()?
                    .reshape((n, cout, l * s))?
                    .pad_with_zeros(2, g * s, (groups - 1 - g) * s)?;
                acc = Some(match acc {
                    Some(a) => (a + piece)?,
                    None => piece,
                });
            }
            acc.ok_or_else(|| SeparateError::Unsupported("empty kernel".into()))?
        } else {
            // Item by item, where candle's implementation is right.
            let items = (0..n)
                .map(|i| {
                    x.narrow(0, i, 1)?
                        .contiguous()?
                        .conv_transpose1d(&self.weight, 0, 0, s, 1, 1)
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            Tensor::cat(&items, 0)?
        };
        add_channel_bias(&y, &self.bias)
    }
}

/// `[B, C, F, T]` → `[B*T, C, F]`, the frequency axis last.
fn fold_time(x: &Tensor) -> Result<Tensor> {
    let (b, c, f, t) = x.dims4()?;
    Ok(x.permute((0, 3, 1, 2))?
        .contiguous()?
        .reshape((b * t, c, f))?)
}

/// Inverse of [`fold_time`] for `t` time steps.
fn unfold_time(y: &Tensor, t: usize) -> Result<Tensor> {
    let (bt, c, f) = y.dims3()?;
    Ok(y.reshape((bt / t, t, c, f))?
        .permute((0, 2, 3, 1))?
        .contiguous()?)
}

/// `[B, C, F, T]` → `[B*F, C, T]`, as the reference runs DConv on frequency layers.
fn fold_freq(x: &Tensor) -> Result<Tensor> {
    let (b, c, f, t) = x.dims4()?;
    Ok(x.permute((0, 2, 1, 3))?
        .contiguous()?
        .reshape((b * f, c, t))?)
}

fn unfold_freq(y: &Tensor, f: usize) -> Result<Tensor> {
    let (bf, c, t) = y.dims3()?;
    Ok(y.reshape((bf / f, f, c, t))?
        .permute((0, 2, 1, 3))?
        .contiguous()?)
}

/// `nn.Conv2d` with a square kernel, stride 1 and "same" padding (the 1×1 / 3×3 rewrites of
/// the frequency branch).
pub(crate) struct Conv2dSame {
    weight: Tensor,
    bias: Tensor,
    padding: usize,
}

impl Conv2dSame {
    fn load(w: &mut Weights, name: &str, cin: usize, cout: usize, context: usize) -> Result<Self> {
        let k = 1 + 2 * context;
        Ok(Conv2dSame {
            weight: w.take(&format!("{name}.weight"), &[cout, cin, k, k])?,
            bias: w.take(&format!("{name}.bias"), &[cout])?,
            padding: context,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, f, t) = x.dims4()?;
        let (co, _, k, _) = self.weight.dims4()?;
        if kernels::is_cpu_f32(x) {
            let geom = Conv2dGeom {
                kernel: (k, k),
                stride: (1, 1),
                padding: (self.padding, self.padding),
                dilation: (1, 1),
            };
            return conv2d_cpu(x, &self.weight, &self.bias, geom);
        }
        let y = if k == 1 {
            // 1×1: a matrix product over channels.
            let w = self.weight.reshape((co, c))?;
            w.broadcast_matmul(&x.contiguous()?.reshape((b, c, f * t))?)?
                .reshape((b, co, f, t))?
        } else {
            // One 1-D convolution over time per row of the kernel, on the frequency-shifted
            // input (zeros beyond the edges), with the frequencies folded into the batch.
            let p = self.padding;
            let padded = x.pad_with_zeros(2, p, p)?;
            let mut acc: Option<Tensor> = None;
            for kf in 0..k {
                let rows = fold_freq(&padded.narrow(2, kf, f)?)?;
                let w = self.weight.narrow(2, kf, 1)?.squeeze(2)?.contiguous()?;
                let part = rows.conv1d(&w, p, 1, 1, 1)?;
                acc = Some(match acc {
                    Some(a) => (a + part)?,
                    None => part,
                });
            }
            let acc = acc.ok_or_else(|| SeparateError::Unsupported("empty kernel".into()))?;
            unfold_freq(&acc, f)?
        };
        add_channel_bias(&y, &self.bias)
    }
}

/// `demucs.demucs.DConv`: residual branches of dilated convolutions over time.
pub(crate) struct DConv {
    layers: Vec<DConvLayer>,
}

struct DConvLayer {
    conv1: Conv1d,
    norm1: GroupNorm,
    conv2: Conv1d,
    norm2: GroupNorm,
    scale: Tensor,
}

impl DConv {
    pub(crate) fn load(
        w: &mut Weights,
        name: &str,
        channels: usize,
        depth: usize,
        compress: f64,
    ) -> Result<Self> {
        // int(channels / compress), as the reference.
        let hidden = (channels as f64 / compress) as usize;
        if hidden == 0 {
            return Err(SeparateError::Unsupported(format!(
                "dconv_comp = {compress} for {channels} channels (no hidden channel)"
            )));
        }
        let mut layers = Vec::with_capacity(depth);
        for d in 0..depth {
            let dilation = 1usize << d;
            let p = format!("{name}.layers.{d}");
            layers.push(DConvLayer {
                conv1: Conv1d::load(
                    w,
                    &format!("{p}.0"),
                    channels,
                    hidden,
                    3,
                    1,
                    dilation,
                    dilation,
                )?,
                norm1: GroupNorm::load(w, &format!("{p}.1"), 1, hidden)?,
                conv2: Conv1d::load(w, &format!("{p}.3"), hidden, 2 * channels, 1, 1, 0, 1)?,
                norm2: GroupNorm::load(w, &format!("{p}.4"), 1, 2 * channels)?,
                scale: w.take(&format!("{p}.6.scale"), &[channels])?,
            });
        }
        Ok(DConv { layers })
    }

    /// `x`: `[N, C, T]`.
    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.clone();
        for l in &self.layers {
            let y = l.norm1.forward_act(&l.conv1.forward(&x)?, true)?;
            let y = l.norm2.forward_glu(&l.conv2.forward(&y)?)?;
            x = kernels::add_scaled(&x, &y, &l.scale, true)?;
        }
        Ok(x)
    }
}

/// Layer sizes shared by the encoder and decoder constructors.
pub(crate) struct LayerSpec {
    pub chin: usize,
    pub chout: usize,
    pub kernel: usize,
    pub stride: usize,
    /// GroupNorm with this many groups (`index >= norm_starts`), else identity.
    pub norm_groups: Option<usize>,
    pub context: usize,
    pub dconv_depth: usize,
    pub dconv_comp: f64,
}

fn load_norm(
    w: &mut Weights,
    name: &str,
    groups: Option<usize>,
    ch: usize,
) -> Result<Option<GroupNorm>> {
    groups.map(|g| GroupNorm::load(w, name, g, ch)).transpose()
}

/// `HEncLayer(freq=True)` with DConv and rewrite: `[B, Cin, F, T]` → `[B, Cout, F/stride, T]`.
pub(crate) struct FreqEncoder {
    conv: Conv1d,
    norm1: Option<GroupNorm>,
    dconv: DConv,
    rewrite: Conv2dSame,
    norm2: Option<GroupNorm>,
}

impl FreqEncoder {
    pub(crate) fn load(w: &mut Weights, name: &str, s: &LayerSpec) -> Result<Self> {
        let weight = w.take(
            &format!("{name}.conv.weight"),
            &[s.chout, s.chin, s.kernel, 1],
        )?;
        let conv = Conv1d {
            weight: weight.reshape((s.chout, s.chin, s.kernel))?,
            bias: w.take(&format!("{name}.conv.bias"), &[s.chout])?,
            padding: s.kernel / 4,
            stride: s.stride,
            dilation: 1,
        };
        Ok(FreqEncoder {
            conv,
            norm1: load_norm(w, &format!("{name}.norm1"), s.norm_groups, s.chout)?,
            rewrite: Conv2dSame::load(
                w,
                &format!("{name}.rewrite"),
                s.chout,
                2 * s.chout,
                s.context,
            )?,
            norm2: load_norm(w, &format!("{name}.norm2"), s.norm_groups, 2 * s.chout)?,
            dconv: DConv::load(
                w,
                &format!("{name}.dconv"),
                s.chout,
                s.dconv_depth,
                s.dconv_comp,
            )?,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = maybe_norm_gelu(&self.norm1, self.conv.forward_freq(x)?)?;
        let f = y.dim(2)?;
        let y = unfold_freq(&self.dconv.forward(&fold_freq(&y)?)?, f)?;
        glu(&maybe_norm(&self.norm2, self.rewrite.forward(&y)?)?)
    }
}

/// `HEncLayer(freq=False)`: `[B, Cin, T]` → `[B, Cout, ceil(T/stride)]`.
pub(crate) struct TimeEncoder {
    conv: Conv1d,
    stride: usize,
    norm1: Option<GroupNorm>,
    dconv: DConv,
    rewrite: Conv1d,
    norm2: Option<GroupNorm>,
}

impl TimeEncoder {
    pub(crate) fn load(w: &mut Weights, name: &str, s: &LayerSpec) -> Result<Self> {
        let k = 1 + 2 * s.context;
        Ok(TimeEncoder {
            conv: Conv1d::load(
                w,
                &format!("{name}.conv"),
                s.chin,
                s.chout,
                s.kernel,
                s.stride,
                s.kernel / 4,
                1,
            )?,
            stride: s.stride,
            norm1: load_norm(w, &format!("{name}.norm1"), s.norm_groups, s.chout)?,
            rewrite: Conv1d::load(
                w,
                &format!("{name}.rewrite"),
                s.chout,
                2 * s.chout,
                k,
                1,
                s.context,
                1,
            )?,
            norm2: load_norm(w, &format!("{name}.norm2"), s.norm_groups, 2 * s.chout)?,
            dconv: DConv::load(
                w,
                &format!("{name}.dconv"),
                s.chout,
                s.dconv_depth,
                s.dconv_comp,
            )?,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let le = x.dim(2)?;
        // The reference pads the end with zeros to a multiple of the stride.
        let x = if le % self.stride != 0 {
            x.pad_with_zeros(2, 0, self.stride - le % self.stride)?
        } else {
            x.clone()
        };
        let y = maybe_norm_gelu(&self.norm1, self.conv.forward(&x)?)?;
        let y = self.dconv.forward(&y)?;
        glu(&maybe_norm(&self.norm2, self.rewrite.forward(&y)?)?)
    }
}

/// `HDecLayer(freq=True)`: `[B, Cin, F, T]` (+ skip) → `[B, Cout, F*stride, T]`.
pub(crate) struct FreqDecoder {
    rewrite: Conv2dSame,
    norm1: Option<GroupNorm>,
    dconv: DConv,
    conv_tr: ConvTr1d,
    norm2: Option<GroupNorm>,
    pad: usize,
    last: bool,
}

impl FreqDecoder {
    pub(crate) fn load(w: &mut Weights, name: &str, s: &LayerSpec, last: bool) -> Result<Self> {
        let weight = w.take(
            &format!("{name}.conv_tr.weight"),
            &[s.chin, s.chout, s.kernel, 1],
        )?;
        let bias = w.take(&format!("{name}.conv_tr.bias"), &[s.chout])?;
        Ok(FreqDecoder {
            conv_tr: ConvTr1d::from_weight(
                weight.reshape((s.chin, s.chout, s.kernel))?,
                bias,
                s.stride,
            ),
            norm2: load_norm(w, &format!("{name}.norm2"), s.norm_groups, s.chout)?,
            rewrite: Conv2dSame::load(
                w,
                &format!("{name}.rewrite"),
                s.chin,
                2 * s.chin,
                s.context,
            )?,
            norm1: load_norm(w, &format!("{name}.norm1"), s.norm_groups, 2 * s.chin)?,
            dconv: DConv::load(
                w,
                &format!("{name}.dconv"),
                s.chin,
                s.dconv_depth,
                s.dconv_comp,
            )?,
            pad: s.kernel / 4,
            last,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor, skip: &Tensor) -> Result<Tensor> {
        let x = (x + skip)?;
        let y = glu(&maybe_norm(&self.norm1, self.rewrite.forward(&x)?)?)?;
        let f = y.dim(2)?;
        let y = unfold_freq(&self.dconv.forward(&fold_freq(&y)?)?, f)?;
        let z = maybe_norm(&self.norm2, self.conv_tr.forward_h(&y)?)?;
        let fz = z.dim(2)?;
        let z = z.narrow(2, self.pad, fz - 2 * self.pad)?;
        Ok(if self.last { z } else { kernels::gelu(&z)? })
    }
}

/// `HDecLayer(freq=False)`: `[B, Cin, T]` (+ skip) → `[B, Cout, length]`.
pub(crate) struct TimeDecoder {
    rewrite: Conv1d,
    norm1: Option<GroupNorm>,
    dconv: DConv,
    conv_tr: ConvTr1d,
    norm2: Option<GroupNorm>,
    pad: usize,
    last: bool,
}

impl TimeDecoder {
    pub(crate) fn load(w: &mut Weights, name: &str, s: &LayerSpec, last: bool) -> Result<Self> {
        let k = 1 + 2 * s.context;
        let weight = w.take(
            &format!("{name}.conv_tr.weight"),
            &[s.chin, s.chout, s.kernel],
        )?;
        let bias = w.take(&format!("{name}.conv_tr.bias"), &[s.chout])?;
        Ok(TimeDecoder {
            conv_tr: ConvTr1d::from_weight(weight, bias, s.stride),
            norm2: load_norm(w, &format!("{name}.norm2"), s.norm_groups, s.chout)?,
            rewrite: Conv1d::load(
                w,
                &format!("{name}.rewrite"),
                s.chin,
                2 * s.chin,
                k,
                1,
                s.context,
                1,
            )?,
            norm1: load_norm(w, &format!("{name}.norm1"), s.norm_groups, 2 * s.chin)?,
            dconv: DConv::load(
                w,
                &format!("{name}.dconv"),
                s.chin,
                s.dconv_depth,
                s.dconv_comp,
            )?,
            pad: s.kernel / 4,
            last,
        })
    }

    pub(crate) fn forward(&self, x: &Tensor, skip: &Tensor, length: usize) -> Result<Tensor> {
        let x = (x + skip)?;
        let y = glu(&maybe_norm(&self.norm1, self.rewrite.forward(&x)?)?)?;
        let y = self.dconv.forward(&y)?;
        let z = maybe_norm(&self.norm2, self.conv_tr.forward(&y)?)?;
        if z.dim(2)? < self.pad + length {
            return Err(SeparateError::Unsupported(format!(
                "a time decoder produced {} samples for {length}",
                z.dim(2)?
            )));
        }
        let z = z.narrow(2, self.pad, length)?;
        Ok(if self.last { z } else { kernels::gelu(&z)? })
    }
}

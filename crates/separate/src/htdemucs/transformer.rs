//! `demucs.transformer.CrossTransformerEncoder` for the published configuration: pre-norm
//! layers (`norm_first`) with layer scale, GELU feed-forward and a one-group GroupNorm at the
//! end of each layer (`norm_out`), alternating self-attention (even layers) and cross-attention
//! between the frequency and time branches (odd layers); sinusoidal positional embeddings
//! (2-D for the frequency branch, 1-D for the time branch).

use super::kernels::{self, Affine};
use super::Config;
use crate::checkpoint::Weights;
use crate::SeparateError;
use candle_core::{Device, Tensor, D};

type Result<T> = std::result::Result<T, SeparateError>;

/// Queries per attention block of the candle fallback (non-CPU devices): bounds the
/// `[heads, queries, keys]` score tensor (the frequency branch of htdemucs has 2688 tokens:
/// 8 × 2688² floats would be 231 MB at once). The CPU path blocks much finer, see
/// [`kernels::attention`].
const QUERY_BLOCK: usize = 1024;

/// `nn.LayerNorm` over the last dimension (eps 1e-5).
struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
}

impl LayerNorm {
    fn load(w: &mut Weights, name: &str, dim: usize) -> Result<Self> {
        Ok(LayerNorm {
            weight: w.take(&format!("{name}.weight"), &[dim])?,
            bias: w.take(&format!("{name}.bias"), &[dim])?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let c = self.weight.dim(0)?;
        kernels::normalize(x, c, &self.weight, &self.bias, Affine::LastDim, false)
    }
}

/// `MyGroupNorm(1, dim)` on `[B, T, C]`: one mean and variance over all of `T × C`.
struct GroupNormAll {
    weight: Tensor,
    bias: Tensor,
}

impl GroupNormAll {
    fn load(w: &mut Weights, name: &str, dim: usize) -> Result<Self> {
        Ok(GroupNormAll {
            weight: w.take(&format!("{name}.weight"), &[dim])?,
            bias: w.take(&format!("{name}.bias"), &[dim])?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, t, c) = x.dims3()?;
        kernels::normalize(x, t * c, &self.weight, &self.bias, Affine::LastDim, false)
    }
}

/// `nn.Linear`.
struct Linear {
    weight_t: Tensor,
    bias: Tensor,
}

impl Linear {
    fn from(weight: Tensor, bias: Tensor) -> Result<Self> {
        Ok(Linear {
            // Stored transposed once so that every product is a plain row-major GEMM.
            weight_t: weight.t()?.contiguous()?,
            bias,
        })
    }

    fn load(w: &mut Weights, name: &str, din: usize, dout: usize) -> Result<Self> {
        let weight = w.take(&format!("{name}.weight"), &[dout, din])?;
        let bias = w.take(&format!("{name}.bias"), &[dout])?;
        Linear::from(weight, bias)
    }

    /// `x`: `[B, N, din]`.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        kernels::linear(x, &self.weight_t, &self.bias)
    }
}

/// `nn.MultiheadAttention(batch_first=True)` without masks.
struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
}

impl Attention {
    fn load(w: &mut Weights, name: &str, dim: usize, heads: usize) -> Result<Self> {
        let in_w = w.take(&format!("{name}.in_proj_weight"), &[3 * dim, dim])?;
        let in_b = w.take(&format!("{name}.in_proj_bias"), &[3 * dim])?;
        let part = |i: usize| -> Result<Linear> {
            Linear::from(in_w.narrow(0, i * dim, dim)?, in_b.narrow(0, i * dim, dim)?)
        };
        Ok(Attention {
            q: part(0)?,
            k: part(1)?,
            v: part(2)?,
            out: Linear::load(w, &format!("{name}.out_proj"), dim, dim)?,
            heads,
        })
    }

    /// `query`: `[B, Nq, C]`, `kv`: `[B, Nk, C]`.
    fn forward(&self, query: &Tensor, kv: &Tensor) -> Result<Tensor> {
        if !kernels::is_cpu_f32(query) {
            return self.forward_candle(query, kv);
        }
        let (b, nq, c) = query.dims3()?;
        let nk = kv.dim(1)?;
        let q = self.q.forward(query)?;
        let k = self.k.forward(kv)?;
        let v = self.v.forward(kv)?;
        let mut y = vec![0f32; b * nq * c];
        kernels::with_slice(&q, |q| {
            kernels::with_slice(&k, |k| {
                kernels::with_slice(&v, |v| {
                    // One batch item at a time; heads are read in place (no split copies).
                    for (i, out) in y.chunks_mut(nq * c).enumerate() {
                        let (qi, ki, vi) = (
                            &q[i * nq * c..(i + 1) * nq * c],
                            &k[i * nk * c..(i + 1) * nk * c],
                            &v[i * nk * c..(i + 1) * nk * c],
                        );
                        kernels::attention(qi, ki, vi, (nq, nk, c, self.heads), out)?;
                    }
                    Ok::<(), SeparateError>(())
                })
            })
        })????;
        self.out.forward(&kernels::from_vec(y, (b, nq, c))?)
    }

    /// The candle-op attention, for non-CPU devices.
    fn forward_candle(&self, query: &Tensor, kv: &Tensor) -> Result<Tensor> {
        let (b, nq, c) = query.dims3()?;
        let nk = kv.dim(1)?;
        let h = self.heads;
        let d = c / h;
        let split = |x: Tensor, n: usize| -> Result<Tensor> {
            // [B, N, H, D] → [B·H, N, D]
            Ok(x.reshape((b, n, h, d))?
                .transpose(1, 2)?
                .contiguous()?
                .reshape((b * h, n, d))?)
        };
        let scale = 1.0 / (d as f64).sqrt();
        let q = split((self.q.forward(query)? * scale)?, nq)?;
        let k_t = split(self.k.forward(kv)?, nk)?
            .transpose(1, 2)?
            .contiguous()?;
        let v = split(self.v.forward(kv)?, nk)?;
        let mut blocks = Vec::with_capacity(nq.div_ceil(QUERY_BLOCK));
        let mut start = 0;
        while start < nq {
            let len = QUERY_BLOCK.min(nq - start);
            let scores = q.narrow(1, start, len)?.matmul(&k_t)?;
            let max = scores.max_keepdim(D::Minus1)?;
            let e = scores.broadcast_sub(&max)?.exp()?;
            let p = e.broadcast_div(&e.sum_keepdim(D::Minus1)?)?;
            blocks.push(p.matmul(&v)?);
            start += len;
        }
        let y = Tensor::cat(&blocks, 1)?; // [B·H, Nq, D]
        let y = y
            .reshape((b, h, nq, d))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, nq, c))?;
        self.out.forward(&y)
    }
}

/// One layer of either branch: self-attention (`MyTransformerEncoderLayer`) or
/// cross-attention (`CrossTransformerEncoderLayer`), both pre-norm with layer scale.
struct Layer {
    attn: Attention,
    /// Norm of the queries (`norm1`).
    norm_q: LayerNorm,
    /// Norm of the keys/values of a cross layer (`norm2`); self layers reuse `norm_q`.
    norm_kv: Option<LayerNorm>,
    /// Norm before the feed-forward (`norm2` of self layers, `norm3` of cross layers).
    norm_ff: LayerNorm,
    linear1: Linear,
    linear2: Linear,
    gamma1: Tensor,
    gamma2: Tensor,
    norm_out: GroupNormAll,
}

impl Layer {
    fn load(
        w: &mut Weights,
        name: &str,
        dim: usize,
        heads: usize,
        hidden: usize,
        cross: bool,
    ) -> Result<Self> {
        let attn_name = if cross { "cross_attn" } else { "self_attn" };
        Ok(Layer {
            attn: Attention::load(w, &format!("{name}.{attn_name}"), dim, heads)?,
            norm_q: LayerNorm::load(w, &format!("{name}.norm1"), dim)?,
            norm_kv: if cross {
                Some(LayerNorm::load(w, &format!("{name}.norm2"), dim)?)
            } else {
                None
            },
            norm_ff: LayerNorm::load(
                w,
                &format!("{name}.{}", if cross { "norm3" } else { "norm2" }),
                dim,
            )?,
            linear1: Linear::load(w, &format!("{name}.linear1"), dim, hidden)?,
            linear2: Linear::load(w, &format!("{name}.linear2"), hidden, dim)?,
            gamma1: w.take(&format!("{name}.gamma_1.scale"), &[dim])?,
            gamma2: w.take(&format!("{name}.gamma_2.scale"), &[dim])?,
            norm_out: GroupNormAll::load(w, &format!("{name}.norm_out"), dim)?,
        })
    }

    /// `x`: `[B, N, C]`; `other`: the other branch for a cross layer.
    fn forward(&self, x: &Tensor, other: Option<&Tensor>) -> Result<Tensor> {
        let q = self.norm_q.forward(x)?;
        let a = match (&self.norm_kv, other) {
            (Some(norm_kv), Some(other)) => self.attn.forward(&q, &norm_kv.forward(other)?)?,
            _ => self.attn.forward(&q, &q)?,
        };
        let x = kernels::add_scaled(x, &a, &self.gamma1, false)?;
        let h = kernels::gelu(&self.linear1.forward(&self.norm_ff.forward(&x)?)?)?;
        let f = self.linear2.forward(&h)?;
        let x = kernels::add_scaled(&x, &f, &self.gamma2, false)?;
        self.norm_out.forward(&x)
    }
}

pub(crate) struct CrossTransformer {
    norm_in: LayerNorm,
    norm_in_t: LayerNorm,
    layers: Vec<Layer>,
    layers_t: Vec<Layer>,
    max_period: f64,
    weight_pos_embed: f64,
}

impl CrossTransformer {
    /// The `crosstransformer` of `config`.
    pub(crate) fn load(w: &mut Weights, name: &str, config: &Config) -> Result<Self> {
        let dim = config.transformer_dim();
        let heads = config.t_heads;
        let num_layers = config.t_layers;
        let hidden = (dim as f64 * config.t_hidden_scale) as usize;
        let mut layers = Vec::with_capacity(num_layers);
        let mut layers_t = Vec::with_capacity(num_layers);
        for idx in 0..num_layers {
            // cross_first = False: even layers attend to themselves, odd ones across.
            let cross = idx % 2 == 1;
            layers.push(Layer::load(
                w,
                &format!("{name}.layers.{idx}"),
                dim,
                heads,
                hidden,
                cross,
            )?);
            layers_t.push(Layer::load(
                w,
                &format!("{name}.layers_t.{idx}"),
                dim,
                heads,
                hidden,
                cross,
            )?);
        }
        Ok(CrossTransformer {
            norm_in: LayerNorm::load(w, &format!("{name}.norm_in"), dim)?,
            norm_in_t: LayerNorm::load(w, &format!("{name}.norm_in_t"), dim)?,
            layers,
            layers_t,
            max_period: config.t_max_period,
            weight_pos_embed: config.t_weight_pos_embed,
        })
    }

    /// `x`: `[B, C, F, T1]` (frequency branch), `xt`: `[B, C, T2]` (time branch).
    pub(crate) fn forward(&self, x: &Tensor, xt: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, c, fr, t1) = x.dims4()?;
        let device = x.device();
        // "b c fr t1 -> b (t1 fr) c"
        let mut x = x
            .permute((0, 3, 2, 1))?
            .contiguous()?
            .reshape((b, t1 * fr, c))?;
        let pos = sin_embedding_2d(c, fr, t1, self.max_period, device)?;
        x = self
            .norm_in
            .forward(&x)?
            .broadcast_add(&(pos * self.weight_pos_embed)?)?;

        let t2 = xt.dim(2)?;
        let mut xt = xt.transpose(1, 2)?.contiguous()?;
        let pos_t = sin_embedding(t2, c, self.max_period, device)?;
        xt = self
            .norm_in_t
            .forward(&xt)?
            .broadcast_add(&(pos_t * self.weight_pos_embed)?)?;

        for (layer, layer_t) in self.layers.iter().zip(&self.layers_t) {
            if layer.norm_kv.is_none() {
                x = layer.forward(&x, None)?;
                xt = layer_t.forward(&xt, None)?;
            } else {
                let old_x = x.clone();
                x = layer.forward(&x, Some(&xt))?;
                xt = layer_t.forward(&xt, Some(&old_x))?;
            }
        }
        let x = x
            .reshape((b, t1, fr, c))?
            .permute((0, 3, 2, 1))?
            .contiguous()?;
        let xt = xt.transpose(1, 2)?.contiguous()?;
        Ok((x, xt))
    }
}

/// `create_sin_embedding(length, dim)` as `[length, dim]`: cosines then sines, computed in
/// f32 step by step as torch does so that the phases round the same way.
fn sin_embedding(length: usize, dim: usize, max_period: f64, device: &Device) -> Result<Tensor> {
    let half = dim / 2;
    let max_period = max_period as f32;
    let denom: Vec<f32> = (0..half)
        .map(|a| {
            let e = a as f32 / (half as f32 - 1.0);
            max_period.powf(e)
        })
        .collect();
    let mut data = Vec::with_capacity(length * dim);
    for t in 0..length {
        let phases = denom.iter().map(|d| t as f32 / d);
        data.extend(phases.clone().map(f32::cos));
        data.extend(phases.map(f32::sin));
    }
    Ok(Tensor::from_vec(data, (length, dim), device)?)
}

/// `create_2d_sin_embedding(d_model, height=fr, width=t1)` rearranged to `[(t1 fr), d_model]`:
/// the first half of the channels encodes the time position (sin, cos interleaved), the
/// second half the frequency position.
fn sin_embedding_2d(
    d_model: usize,
    fr: usize,
    t1: usize,
    max_period: f64,
    device: &Device,
) -> Result<Tensor> {
    let half = d_model / 2;
    let k = -(max_period.ln() / half as f64) as f32;
    let div: Vec<f32> = (0..half).step_by(2).map(|i| (i as f32 * k).exp()).collect();
    let mut data = vec![0f32; t1 * fr * d_model];
    for t in 0..t1 {
        for f in 0..fr {
            let row = &mut data[(t * fr + f) * d_model..(t * fr + f + 1) * d_model];
            for (j, &d) in div.iter().enumerate() {
                let pw = t as f32 * d;
                let ph = f as f32 * d;
                row[2 * j] = pw.sin();
                row[2 * j + 1] = pw.cos();
                row[half + 2 * j] = ph.sin();
                row[half + 2 * j + 1] = ph.cos();
            }
        }
    }
    Ok(Tensor::from_vec(data, (t1 * fr, d_model), device)?)
}

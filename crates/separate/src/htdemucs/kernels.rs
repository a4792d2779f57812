//! Fused CPU kernels on raw `f32` slices for the hot paths of the network.
//!
//! candle allocates a fresh buffer and makes a full pass over memory for every op; a
//! normalization written as a chain of ops (mean, sub, sqr, mean, add, sqrt, div, mul, add)
//! therefore touches ~10 full-size temporaries, and on the large early-layer tensors the page
//! faults of those fresh allocations cost as much as the arithmetic. The kernels here make one
//! or two passes and one output allocation, and run on rayon. Each has a candle fallback for
//! non-CPU devices so that the `cuda` feature keeps working.

use crate::SeparateError;
use candle_core::{Shape, Storage, Tensor};
use rayon::prelude::*;

type Result<T> = std::result::Result<T, SeparateError>;

/// Elements per rayon task for plain elementwise passes: large enough to amortize scheduling,
/// small enough to balance two or more threads.
const CHUNK: usize = 1 << 15;

/// Runs `f` on the contiguous `f32` data of `t` (made contiguous first if it is a view).
pub(crate) fn with_slice<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let (start, end) = layout
        .contiguous_offsets()
        .ok_or_else(|| SeparateError::Unsupported("non-contiguous tensor".into()))?;
    match &*storage {
        Storage::Cpu(cpu) => Ok(f(&cpu.as_slice::<f32>()?[start..end])),
        _ => Err(SeparateError::Unsupported(
            "raw kernel on a non-CPU tensor".into(),
        )),
    }
}

/// A CPU tensor of `shape` owning `data`.
pub(crate) fn from_vec(data: Vec<f32>, shape: impl Into<Shape>) -> Result<Tensor> {
    Ok(Tensor::from_vec(data, shape, &candle_core::Device::Cpu)?)
}

/// Whether the raw kernels apply (CPU `f32` tensors).
pub(crate) fn is_cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == candle_core::DType::F32
}

/// `x · 0.5 · (1 + erf(x / √2))`, the exact GELU, with the branch-free `erf` of PyTorch's
/// vectorized GELU kernel so that loops over it vectorize.
#[inline(always)]
pub(crate) fn gelu_scalar(v: f32) -> f32 {
    (erf(v * std::f32::consts::FRAC_1_SQRT_2) + 1.) * 0.5 * v
}

/// `erf(x)` by Abramowitz & Stegun 7.1.26 (absolute error ≤ 1.5e-7), the approximation
/// ATen's `Vectorized<float>::erf` uses: `1 - t·p(t)·e^(-x²)` with `t = 1 / (1 + 0.3275911|x|)`.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let p = 1.061_405_4;
    let p = p * t - 1.453_152;
    let p = p * t + 1.421_413_8;
    let p = p * t - 0.284_496_73;
    let p = p * t + 0.254_829_6;
    let y = 1.0 - p * t * exp_approx(-a * a);
    y.copysign(x)
}

/// Defines `$name` to run the `#[inline(always)]` function `$body` inlined into a copy
/// compiled for AVX-512 (or AVX2 + FMA) when the CPU has it, so that its loops vectorize 16 (8)
/// lanes wide rather than baseline SSE2's 4. (A closure would not do: it is not reliably
/// inlined into the target-feature function.)
macro_rules! simd_fn {
    ($(#[$m:meta])* fn $name:ident($($a:ident: $t:ty),* $(,)?) $(-> $r:ty)? = $body:ident;) => {
        $(#[$m])*
        fn $name($($a: $t),*) $(-> $r)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                fn avx512($($a: $t),*) $(-> $r)? {
                    $body($($a),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($a: $t),*) $(-> $r)? {
                    $body($($a),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F (checked just above).
                    return unsafe { avx512($($a),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU supports AVX2 and FMA (checked just above).
                    return unsafe { avx2($($a),*) };
                }
            }
            $body($($a),*)
        }
    };
}

/// How the affine parameters of a normalization map onto a normalized row.
#[derive(Clone, Copy)]
pub(crate) enum Affine {
    /// Parameter `j % len` for element `j` of a row (LayerNorm; one-group norm of `[B, T, C]`).
    LastDim,
    /// Rows are groups of `[N, C, inner]` with `channels` channels per group: element `j` of
    /// row `r` takes the parameter of channel `(r % groups) · channels + j / inner`.
    Channels { channels: usize, inner: usize },
}

/// `(x - mean) / sqrt(var + 1e-5) · weight + bias` over rows of `len` elements, optionally
/// followed by the exact GELU; the mean and the biased variance of each row are accumulated
/// in `f64` (two passes, as the reference's f32 result rounds the same to within 1e-7).
pub(crate) fn normalize(
    x: &Tensor,
    len: usize,
    weight: &Tensor,
    bias: &Tensor,
    affine: Affine,
    gelu: bool,
) -> Result<Tensor> {
    if !is_cpu_f32(x) {
        return normalize_candle(x, len, weight, bias, affine, gelu);
    }
    let shape = x.shape().clone();
    let weight = weight.flatten_all()?.to_vec1::<f32>()?;
    let bias = bias.flatten_all()?.to_vec1::<f32>()?;
    let out = with_slice(x, |x| {
        let mut out = vec![0f32; x.len()];
        if len == 0 {
            return out;
        }
        let groups = match affine {
            Affine::LastDim => 1,
            Affine::Channels { channels, .. } => weight.len() / channels.max(1),
        };
        let rows = x.len() / len;
        if rows >= 2 * rayon::current_num_threads() {
            // Many rows: one task per row.
            out.par_chunks_mut(len)
                .zip(x.par_chunks(len))
                .enumerate()
                .for_each(|(r, (o, xr))| {
                    let (mean, inv) = row_stats(xr, false);
                    apply_row(
                        o,
                        xr,
                        0,
                        mean,
                        inv,
                        r % groups,
                        &weight,
                        &bias,
                        affine,
                        gelu,
                    );
                });
        } else {
            // Few long rows (the one-group norms of the time branch): split each row.
            for (r, (o, xr)) in out.chunks_mut(len).zip(x.chunks(len)).enumerate() {
                let (mean, inv) = row_stats(xr, true);
                let piece = match affine {
                    // Pieces start on a parameter boundary so each sees whole periods.
                    Affine::LastDim => CHUNK.div_ceil(weight.len()) * weight.len(),
                    Affine::Channels { inner, .. } => inner.max(1),
                };
                o.par_chunks_mut(piece)
                    .zip(xr.par_chunks(piece))
                    .enumerate()
                    .for_each(|(p, (o, xp))| {
                        let g = r % groups;
                        apply_row(o, xp, p * piece, mean, inv, g, &weight, &bias, affine, gelu);
                    });
            }
        }
        out
    })?;
    from_vec(out, shape)
}

/// Mean and `1 / sqrt(var + 1e-5)` of `x`, in parallel pieces when `par`.
fn row_stats(x: &[f32], par: bool) -> (f32, f32) {
    let n = x.len() as f64;
    let total = if par {
        x.par_chunks(CHUNK).map(sum_f64).sum::<f64>()
    } else {
        sum_f64(x)
    };
    let mean = total / n;
    let var = if par {
        x.par_chunks(CHUNK)
            .map(|s| sum_sq_dev(s, mean))
            .sum::<f64>()
    } else {
        sum_sq_dev(x, mean)
    } / n;
    (mean as f32, (1.0 / (var + 1e-5).sqrt()) as f32)
}

/// Lanes of the `f64` accumulations (one AVX-512 register).
const LANES_F64: usize = 8;

#[inline(always)]
fn sum_f64_body(x: &[f32]) -> f64 {
    // Partial sums per lane: a single running sum would serialize on the add latency.
    let mut lanes = [0f64; LANES_F64];
    let mut chunks = x.chunks_exact(LANES_F64);
    for chunk in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            *l += v as f64;
        }
    }
    let mut total = 0f64;
    for &v in chunks.remainder() {
        total += v as f64;
    }
    for l in lanes {
        total += l;
    }
    total
}

simd_fn! {
    /// `Σ x` in `f64`.
    fn sum_f64(x: &[f32]) -> f64 = sum_f64_body;
}

#[inline(always)]
fn sum_sq_dev_body(x: &[f32], mean: f64) -> f64 {
    let mut lanes = [0f64; LANES_F64];
    let mut chunks = x.chunks_exact(LANES_F64);
    for chunk in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(chunk) {
            let d = v as f64 - mean;
            *l += d * d;
        }
    }
    let mut total = 0f64;
    for &v in chunks.remainder() {
        let d = v as f64 - mean;
        total += d * d;
    }
    for l in lanes {
        total += l;
    }
    total
}

simd_fn! {
    /// `Σ (x - mean)²` in `f64`.
    fn sum_sq_dev(x: &[f32], mean: f64) -> f64 = sum_sq_dev_body;
}

/// Writes the normalized, affine (and GELU'd) `x` into `o`; `x` starts at element `offset` of
/// its row, which belongs to group `group`.
#[allow(clippy::too_many_arguments)]
fn apply_row(
    o: &mut [f32],
    x: &[f32],
    offset: usize,
    mean: f32,
    inv: f32,
    group: usize,
    weight: &[f32],
    bias: &[f32],
    affine: Affine,
    gelu: bool,
) {
    let args = (offset, mean, inv, group);
    if gelu {
        affine_row_gelu(o, x, args, weight, bias, affine)
    } else {
        affine_row_plain(o, x, args, weight, bias, affine)
    }
}

#[inline(always)]
fn affine_row_gelu_body(
    o: &mut [f32],
    x: &[f32],
    args: (usize, f32, f32, usize),
    weight: &[f32],
    bias: &[f32],
    affine: Affine,
) {
    affine_row(o, x, args, weight, bias, affine, gelu_scalar)
}

#[inline(always)]
fn affine_row_plain_body(
    o: &mut [f32],
    x: &[f32],
    args: (usize, f32, f32, usize),
    weight: &[f32],
    bias: &[f32],
    affine: Affine,
) {
    affine_row(o, x, args, weight, bias, affine, |v| v)
}

simd_fn! {
    /// [`affine_row`] followed by the GELU.
    fn affine_row_gelu(
        o: &mut [f32],
        x: &[f32],
        args: (usize, f32, f32, usize),
        weight: &[f32],
        bias: &[f32],
        affine: Affine,
    ) = affine_row_gelu_body;
}

simd_fn! {
    /// [`affine_row`] alone.
    fn affine_row_plain(
        o: &mut [f32],
        x: &[f32],
        args: (usize, f32, f32, usize),
        weight: &[f32],
        bias: &[f32],
        affine: Affine,
    ) = affine_row_plain_body;
}

/// The loops of [`apply_row`] for the activation `act` (inlined into the SIMD context).
#[inline(always)]
fn affine_row(
    o: &mut [f32],
    x: &[f32],
    (offset, mean, inv, group): (usize, f32, f32, usize),
    weight: &[f32],
    bias: &[f32],
    affine: Affine,
    act: impl Fn(f32) -> f32,
) {
    match affine {
        Affine::LastDim => {
            let c = weight.len();
            // `offset` is a multiple of `c` by construction of the pieces.
            for (o, x) in o.chunks_mut(c).zip(x.chunks(c)) {
                for (((o, &x), &w), &b) in o.iter_mut().zip(x).zip(weight).zip(bias) {
                    *o = act((x - mean) * inv * w + b);
                }
            }
        }
        Affine::Channels { channels, inner } => {
            let first = group * channels + offset / inner.max(1);
            for (i, (o, x)) in o.chunks_mut(inner).zip(x.chunks(inner)).enumerate() {
                let (w, b) = (weight[first + i], bias[first + i]);
                for (o, &x) in o.iter_mut().zip(x) {
                    *o = act((x - mean) * inv * w + b);
                }
            }
        }
    }
}

/// The candle-op version of [`normalize`] (non-CPU devices).
fn normalize_candle(
    x: &Tensor,
    len: usize,
    weight: &Tensor,
    bias: &Tensor,
    affine: Affine,
    gelu: bool,
) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let rows = x.elem_count() / len.max(1);
    let xr = x.reshape((rows, len))?;
    let mean = xr.mean_keepdim(1)?;
    let centered = xr.broadcast_sub(&mean)?;
    let var = centered.sqr()?.mean_keepdim(1)?;
    let y = centered
        .broadcast_div(&(var + 1e-5)?.sqrt()?)?
        .reshape(dims.as_slice())?;
    let mut shape = vec![1usize; dims.len()];
    match affine {
        Affine::LastDim => shape[dims.len() - 1] = weight.elem_count(),
        Affine::Channels { .. } => shape[1] = weight.elem_count(),
    }
    let y = y
        .broadcast_mul(&weight.reshape(shape.as_slice())?)?
        .broadcast_add(&bias.reshape(shape.as_slice())?)?;
    Ok(if gelu { y.gelu_erf()? } else { y })
}

/// The exact GELU of `x`.
pub(crate) fn gelu(x: &Tensor) -> Result<Tensor> {
    if !is_cpu_f32(x) {
        return Ok(x.gelu_erf()?);
    }
    let shape = x.shape().clone();
    let out = with_slice(x, |x| {
        let mut out = vec![0f32; x.len()];
        out.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(o, x)| gelu_slice(o, x));
        out
    })?;
    from_vec(out, shape)
}

#[inline(always)]
fn gelu_slice_body(o: &mut [f32], x: &[f32]) {
    for (o, &x) in o.iter_mut().zip(x) {
        *o = gelu_scalar(x);
    }
}

simd_fn! {
    /// `o = gelu(x)` elementwise.
    fn gelu_slice(o: &mut [f32], x: &[f32]) = gelu_slice_body;
}

#[inline(always)]
fn glu_slice_body(o: &mut [f32], a: &[f32], b: &[f32]) {
    for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
        // 1 / (1 + e^-b); for very negative b the reference's e^-b overflows to give 0, here
        // e^88 gives ~6e-39.
        *o = a * (1.0 / (1.0 + exp_approx(-b)));
    }
}

simd_fn! {
    /// `o = a · sigmoid(b)` elementwise.
    fn glu_slice(o: &mut [f32], a: &[f32], b: &[f32]) = glu_slice_body;
}

#[inline(always)]
fn norm_glu_slice_body(o: &mut [f32], a: &[f32], b: &[f32], stats: (f32, f32), ab: [f32; 4]) {
    let (mean, inv) = stats;
    let [wa, ba, wb, bb] = ab;
    for ((o, &a), &b) in o.iter_mut().zip(a).zip(b) {
        // The same expression as `apply_row`, so the result matches norm-then-GLU exactly.
        let a = (a - mean) * inv * wa + ba;
        let b = (b - mean) * inv * wb + bb;
        *o = a * (1.0 / (1.0 + exp_approx(-b)));
    }
}

simd_fn! {
    /// `o = norm(a) · sigmoid(norm(b))` elementwise, `norm(v) = (v - mean)·inv·w + b` with
    /// `stats = (mean, inv)` and `ab = [w_a, b_a, w_b, b_b]`: a norm and the GLU in one pass.
    fn norm_glu_slice(
        o: &mut [f32],
        a: &[f32],
        b: &[f32],
        stats: (f32, f32),
        ab: [f32; 4],
    ) = norm_glu_slice_body;
}

/// `glu(GroupNorm(1, 2C)(x))` for `x` `[N, 2C, T]` (the end of each DConv branch) in one pass
/// and one `[N, C, T]` output, instead of a normalized `[N, 2C, T]` temporary.
pub(crate) fn group_norm1_glu(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (n, c2, t) = x.dims3()?;
    if !is_cpu_f32(x) || c2 % 2 != 0 {
        let affine = Affine::Channels {
            channels: c2,
            inner: t,
        };
        return glu(&normalize(x, c2 * t, weight, bias, affine, false)?);
    }
    let half = c2 / 2;
    let weight = weight.to_vec1::<f32>()?;
    let bias = bias.to_vec1::<f32>()?;
    let out = with_slice(x, |x| {
        let mut out = vec![0f32; n * half * t];
        if t == 0 {
            return out;
        }
        // Item `xi` into `oi`; `par` splits the item over channels (few, long items).
        let item = |xi: &[f32], oi: &mut [f32], par: bool| {
            let stats = row_stats(xi, par);
            let (a, b) = xi.split_at(half * t);
            let channel = |ch: usize, o: &mut [f32], a: &[f32], b: &[f32]| {
                let ab = [weight[ch], bias[ch], weight[ch + half], bias[ch + half]];
                norm_glu_slice(o, a, b, stats, ab);
            };
            if par {
                oi.par_chunks_mut(t)
                    .zip(a.par_chunks(t).zip(b.par_chunks(t)))
                    .enumerate()
                    .for_each(|(ch, (o, (a, b)))| channel(ch, o, a, b));
            } else {
                oi.chunks_mut(t)
                    .zip(a.chunks(t).zip(b.chunks(t)))
                    .enumerate()
                    .for_each(|(ch, (o, (a, b)))| channel(ch, o, a, b));
            }
        };
        if n >= 2 * rayon::current_num_threads() {
            out.par_chunks_mut(half * t)
                .zip(x.par_chunks(c2 * t))
                .for_each(|(oi, xi)| item(xi, oi, false));
        } else {
            for (oi, xi) in out.chunks_mut(half * t).zip(x.chunks(c2 * t)) {
                item(xi, oi, true);
            }
        }
        out
    })?;
    from_vec(out, (n, half, t))
}

/// `torch.nn.functional.glu(x, dim=1)`: the first half of the channels times the sigmoid of
/// the second half, for `[N, 2C, ...]`.
pub(crate) fn glu(x: &Tensor) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let half = dims[1] / 2;
    if !is_cpu_f32(x) {
        let a = x.narrow(1, 0, half)?;
        let b = x.narrow(1, half, half)?;
        let s = (b.neg()?.exp()? + 1.0)?.recip()?;
        return Ok((a * s)?);
    }
    let inner: usize = dims[2..].iter().product();
    let n = dims[0];
    let mut out_dims = dims.clone();
    out_dims[1] = half;
    let piece = half * inner;
    let out = with_slice(x, |x| {
        let mut out = vec![0f32; n * piece];
        if piece == 0 {
            return out;
        }
        // Tasks over (item, chunk of the half): `a` and `b` are `piece` apart.
        let chunk = CHUNK.min(piece);
        out.par_chunks_mut(piece)
            .enumerate()
            .for_each(|(i, o_item)| {
                let xi = &x[i * 2 * piece..(i + 1) * 2 * piece];
                let (a, b) = xi.split_at(piece);
                o_item
                    .par_chunks_mut(chunk)
                    .zip(a.par_chunks(chunk).zip(b.par_chunks(chunk)))
                    .for_each(|(o, (a, b))| glu_slice(o, a, b));
            });
        out
    })?;
    from_vec(out, out_dims)
}

/// `x + y · scale`, with `scale` per channel: along dimension 1 (`channel_dim1`) or along the
/// last dimension. `x` and `y` have the same shape.
pub(crate) fn add_scaled(
    x: &Tensor,
    y: &Tensor,
    scale: &Tensor,
    channel_dim1: bool,
) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    if !is_cpu_f32(x) || y.dims() != dims.as_slice() {
        let mut shape = vec![1usize; dims.len()];
        let c = scale.elem_count();
        if channel_dim1 {
            shape[1] = c;
        } else {
            shape[dims.len() - 1] = c;
        }
        return Ok((x + y.broadcast_mul(&scale.reshape(shape.as_slice())?)?)?);
    }
    let scale = scale.flatten_all()?.to_vec1::<f32>()?;
    let c = scale.len();
    // Elements sharing one scale value in a run, and the period of the runs.
    let run = if channel_dim1 {
        dims[2..].iter().product::<usize>()
    } else {
        1
    };
    let out = with_slice(x, |x| {
        with_slice(y, |y| {
            let mut out = vec![0f32; x.len()];
            if run == 0 || c == 0 {
                return out;
            }
            // Pieces are whole runs, so that each knows the channel of its first run (and
            // whole rows of `c` for a last-dimension scale).
            let per_piece = if run == 1 { c } else { run };
            let piece = CHUNK.div_ceil(per_piece) * per_piece;
            out.par_chunks_mut(piece)
                .zip(x.par_chunks(piece).zip(y.par_chunks(piece)))
                .enumerate()
                .for_each(|(p, (o, (x, y)))| {
                    if run == 1 {
                        for ((o, x), y) in o.chunks_mut(c).zip(x.chunks(c)).zip(y.chunks(c)) {
                            for (((o, &x), &y), &s) in o.iter_mut().zip(x).zip(y).zip(&scale) {
                                *o = x + y * s;
                            }
                        }
                    } else {
                        let first = p * piece / run;
                        let runs = o.chunks_mut(run).zip(x.chunks(run)).zip(y.chunks(run));
                        for (i, ((o, x), y)) in runs.enumerate() {
                            let s = scale[(first + i) % c];
                            for ((o, &x), &y) in o.iter_mut().zip(x).zip(y) {
                                *o = x + y * s;
                            }
                        }
                    }
                });
            out
        })
    })??;
    from_vec(out, dims)
}

/// A read-only strided matrix over a slice: element `(i, j)` is `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl MatRef<'_> {
    /// Whether every element lies inside `data`.
    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `dst = [dst +] scale · a · b`, `dst` row-major with row stride `dst_rs`; on `parallel`, the
/// product is split over rayon's threads (else it runs on the calling thread, for callers that
/// already parallelize over independent products).
pub(crate) fn gemm(
    dst: &mut [f32],
    dst_rs: usize,
    a: MatRef,
    b: MatRef,
    scale: f32,
    accumulate: bool,
    parallel: bool,
) -> Result<()> {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return Ok(());
    }
    let dst_fits = n <= dst_rs && (m - 1) * dst_rs + n <= dst.len();
    if a.cols != b.rows || !a.fits() || !b.fits() || !dst_fits {
        return Err(SeparateError::Unsupported(format!(
            "gemm of {m}×{k} by {}×{n} out of bounds",
            b.rows
        )));
    }
    let threads = rayon::current_num_threads();
    let parallelism = if parallel && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the checks above keep every element gemm reads or writes inside `a.data`,
    // `b.data` and `dst` (the last index of each operand is below its length), and `dst` is
    // an exclusive borrow, so it aliases neither input. With `k == 0`, gemm only scales `dst`.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            scale,
            false,
            false,
            false,
            parallelism,
        );
    }
    Ok(())
}

/// `x · w_t + bias` for `x` `[..., din]` and `w_t` `[din, dout]` (a transposed `nn.Linear`
/// weight): one GEMM accumulating onto rows initialised with the bias.
pub(crate) fn linear(x: &Tensor, w_t: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let (din, dout) = w_t.dims2()?;
    let mut dims = x.dims().to_vec();
    let rows = x.elem_count() / din.max(1);
    if !is_cpu_f32(x) {
        let y = x.reshape((rows, din))?.matmul(w_t)?.broadcast_add(bias)?;
        if let Some(last) = dims.last_mut() {
            *last = dout;
        }
        return Ok(y.reshape(dims)?);
    }
    let bias = bias.to_vec1::<f32>()?;
    let mut out = bias_filled(rows, &bias, 1);
    with_slice(x, |x| {
        with_slice(w_t, |w| {
            let a = MatRef {
                data: x,
                rows,
                cols: din,
                rs: din,
                cs: 1,
            };
            let b = MatRef {
                data: w,
                rows: din,
                cols: dout,
                rs: dout,
                cs: 1,
            };
            gemm(&mut out, dout, a, b, 1.0, true, true)
        })
    })???;
    if let Some(last) = dims.last_mut() {
        *last = dout;
    }
    from_vec(out, dims)
}

/// `[N, C, H, W]`.
pub(crate) type Dims4 = (usize, usize, usize, usize);

/// `[outer, bias.len(), inner]` filled with `bias[c]` along the middle dimension, in parallel:
/// the first touch of a fresh output page faults, and serially that cost shows on large outputs.
fn bias_filled(outer: usize, bias: &[f32], inner: usize) -> Vec<f32> {
    let c = bias.len();
    let mut out = vec![0f32; outer * c * inner];
    if c == 0 || inner == 0 {
        return out;
    }
    if inner == 1 {
        // Rows of `c`: whole rows per task.
        let piece = CHUNK.div_ceil(c) * c;
        out.par_chunks_mut(piece).for_each(|o| {
            for row in o.chunks_mut(c) {
                row.copy_from_slice(bias);
            }
        });
    } else {
        out.par_chunks_mut(inner)
            .enumerate()
            .for_each(|(i, o)| o.fill(bias[i % c]));
    }
    out
}

/// Geometry of a 2-D convolution over one `[C, H, W]` item.
#[derive(Clone, Copy)]
pub(crate) struct Conv2dGeom {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
}

impl Conv2dGeom {
    fn out_len(len: usize, k: usize, s: usize, p: usize, d: usize) -> Option<usize> {
        let span = d * (k - 1) + 1;
        (len + 2 * p).checked_sub(span).map(|v| v / s + 1)
    }

    fn out_dims(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let (kh, kw) = self.kernel;
        Some((
            Self::out_len(h, kh, self.stride.0, self.padding.0, self.dilation.0)?,
            Self::out_len(w, kw, self.stride.1, self.padding.1, self.dilation.1)?,
        ))
    }

    fn is_pointwise(&self) -> bool {
        self.kernel == (1, 1) && self.stride == (1, 1) && self.padding == (0, 0)
    }
}

/// Floats of im2col buffer per block of output rows (4 MB): bounds memory while keeping each
/// GEMM large.
const COLS_BLOCK: usize = 1 << 20;

/// `nn.Conv2d` (or `Conv1d` with `H = 1`) on `x` `[N, Cin, H, W]` with `weight` `[Cout,
/// Cin·kh·kw]` (row-major over `(ci, a, b)`), as im2col + GEMM into the `[N, Cout, Ho, Wo]`
/// output directly (no transposed result to copy back), bias added by the GEMM.
pub(crate) fn conv2d(
    x: &[f32],
    dims: Dims4,
    weight: &[f32],
    bias: &[f32],
    g: Conv2dGeom,
) -> Result<(Vec<f32>, Dims4)> {
    let (n, cin, h, w) = dims;
    let cout = bias.len();
    let (kh, kw) = g.kernel;
    let kdim = cin * kh * kw;
    let (ho, wo) = g
        .out_dims(h, w)
        .ok_or_else(|| SeparateError::Unsupported("convolution input too short".into()))?;
    if weight.len() != cout * kdim || x.len() != n * cin * h * w {
        return Err(SeparateError::Unsupported("convolution shapes".into()));
    }
    let plane = ho * wo;
    let mut out = bias_filled(n, bias, plane);
    let wmat = MatRef {
        data: weight,
        rows: cout,
        cols: kdim,
        rs: kdim,
        cs: 1,
    };
    // Blocks of whole output rows, or of columns of one row when a row alone is too large (the
    // 1-D convolutions of the time branch have a single row of up to ~86k columns).
    let cols_per_block = if kdim * wo > COLS_BLOCK {
        (COLS_BLOCK / kdim).max(1)
    } else {
        wo
    };
    let rows_per_block = if cols_per_block < wo {
        1
    } else {
        (COLS_BLOCK / (kdim * wo).max(1)).clamp(1, ho.max(1))
    };
    // One item: GEMMs over blocks of outputs, im2col'ed into `cols` unless pointwise.
    let item = |xi: &[f32], oi: &mut [f32], cols: &mut Vec<f32>, par: bool| -> Result<()> {
        if g.is_pointwise() {
            let b = MatRef {
                data: xi,
                rows: cin,
                cols: plane,
                rs: plane,
                cs: 1,
            };
            return gemm(oi, plane, wmat, b, 1.0, true, par);
        }
        let mut r0 = 0;
        while r0 < ho {
            let rb = rows_per_block.min(ho - r0);
            let mut w0 = 0;
            while w0 < wo {
                let wb = cols_per_block.min(wo - w0);
                // Either whole rows (`wb == wo`) or one row: the block's outputs are contiguous.
                let ncols = rb * wb;
                cols.resize(kdim * ncols, 0.0);
                let block = (r0, rb, w0, wb);
                im2col(xi, (h, w), g, block, &mut cols[..kdim * ncols], par);
                let b = MatRef {
                    data: cols,
                    rows: kdim,
                    cols: ncols,
                    rs: ncols,
                    cs: 1,
                };
                gemm(&mut oi[r0 * wo + w0..], plane, wmat, b, 1.0, true, par)?;
                w0 += wb;
            }
            r0 += rb;
        }
        Ok(())
    };
    for_each_item(x, cin * h * w.max(1), &mut out, cout * plane, n, item)?;
    Ok((out, (n, cout, ho, wo)))
}

/// Runs a convolution's `item(input, output, scratch, parallel_inside)` for each of the `n`
/// batch items: across items on rayon when there are enough of them to keep every thread busy
/// (each thread with its own im2col scratch), else one item at a time with the parallelism
/// inside the item's GEMM.
fn for_each_item<F>(
    x: &[f32],
    x_len: usize,
    out: &mut [f32],
    out_len: usize,
    n: usize,
    item: F,
) -> Result<()>
where
    F: Fn(&[f32], &mut [f32], &mut Vec<f32>, bool) -> Result<()> + Sync,
{
    let xs = x.chunks(x_len);
    if n >= 2 * rayon::current_num_threads() {
        out.par_chunks_mut(out_len)
            .zip(xs.collect::<Vec<_>>())
            .try_for_each_init(Vec::new, |cols, (oi, xi)| item(xi, oi, cols, false))
    } else {
        let mut cols = Vec::new();
        for (oi, xi) in out.chunks_mut(out_len).zip(xs) {
            item(xi, oi, &mut cols, true)?;
        }
        Ok(())
    }
}

/// Rows `(ci, a, b)` × columns `(r0..r0+rb, w0..w0+wb)` of the im2col matrix of one `[C, H, W]`
/// item, zeros outside the input.
fn im2col(
    x: &[f32],
    (h, w): (usize, usize),
    g: Conv2dGeom,
    (r0, rb, w0, wb): (usize, usize, usize, usize),
    cols: &mut [f32],
    par: bool,
) {
    let (kh, kw) = g.kernel;
    let ncols = rb * wb;
    let fill = |(r, dst): (usize, &mut [f32])| {
        let (ci, a, b) = (r / (kh * kw), (r / kw) % kh, r % kw);
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        for (i, drow) in dst.chunks_mut(wb).enumerate() {
            let hi = ((r0 + i) * g.stride.0 + a * g.dilation.0) as isize - g.padding.0 as isize;
            if hi < 0 || hi as usize >= h {
                drow.fill(0.0);
                continue;
            }
            let src = &plane[hi as usize * w..(hi as usize + 1) * w];
            // Output column `w0 + j` reads input column `(w0 + j)·stride + off`.
            let off = (b * g.dilation.1) as isize - g.padding.1 as isize;
            if g.stride.1 == 1 {
                // A shifted copy of the input row with zeros beyond its ends.
                let off = off + w0 as isize;
                let lo = (-off).clamp(0, wb as isize) as usize;
                let hi = (w as isize - off).clamp(lo as isize, wb as isize) as usize;
                drow[..lo].fill(0.0);
                if hi > lo {
                    // lo >= -off, so the start is inside the row.
                    let start = (lo as isize + off) as usize;
                    drow[lo..hi].copy_from_slice(&src[start..start + hi - lo]);
                }
                drow[hi..].fill(0.0);
                continue;
            }
            for (j, d) in drow.iter_mut().enumerate() {
                let wi = ((w0 + j) * g.stride.1) as isize + off;
                *d = if wi >= 0 && (wi as usize) < w {
                    src[wi as usize]
                } else {
                    0.0
                };
            }
        }
    };
    if par {
        cols.par_chunks_mut(ncols).enumerate().for_each(fill);
    } else {
        cols.chunks_mut(ncols).enumerate().for_each(fill);
    }
}

/// `nn.ConvTranspose` along `H` (kernel `[K, 1]`, stride `[s, 1]`, no padding) on `x`
/// `[N, Cin, H, W]` with `weight` `[Cin, Cout, K]`: per item one GEMM `wᵀ · x` giving the
/// `[Cout·K, H·W]` contributions, overlap-added (col2im) into the `[N, Cout, (H-1)·s+K, W]`
/// output, blocks of input rows at a time to bound memory.
pub(crate) fn conv_tr_h(
    x: &[f32],
    dims: Dims4,
    weight: &[f32],
    bias: &[f32],
    kernel: usize,
    stride: usize,
) -> Result<(Vec<f32>, Dims4)> {
    let (n, cin, h, w) = dims;
    let cout = bias.len();
    let ck = cout * kernel;
    if weight.len() != cin * ck || x.len() != n * cin * h * w || h == 0 || kernel == 0 {
        return Err(SeparateError::Unsupported(
            "transposed convolution shapes".into(),
        ));
    }
    let ho = (h - 1) * stride + kernel;
    let plane = ho * w;
    let mut out = bias_filled(n, bias, plane);
    // wᵀ: `[Cout·K, Cin]`, a transposed view of the stored weight.
    let wt = MatRef {
        data: weight,
        rows: ck,
        cols: cin,
        rs: 1,
        cs: ck,
    };
    let rows_per_block = (COLS_BLOCK / (ck * w).max(1)).clamp(1, h);
    let item = |xi: &[f32], oi: &mut [f32], cols: &mut Vec<f32>, par: bool| -> Result<()> {
        let mut r0 = 0;
        while r0 < h {
            let rb = rows_per_block.min(h - r0);
            let ncols = rb * w;
            cols.resize(ck * ncols, 0.0);
            let b = MatRef {
                data: &xi[r0 * w..],
                rows: cin,
                cols: ncols,
                rs: h * w,
                cs: 1,
            };
            gemm(&mut cols[..ck * ncols], ncols, wt, b, 1.0, false, par)?;
            let cols = &cols[..ck * ncols];
            // Output channel `co` gathers rows `co·K..(co+1)·K` of the contributions.
            let add = |(co, dst): (usize, &mut [f32])| {
                for kk in 0..kernel {
                    let src = &cols[(co * kernel + kk) * ncols..(co * kernel + kk + 1) * ncols];
                    for (i, srow) in src.chunks(w).enumerate() {
                        let hy = (r0 + i) * stride + kk;
                        for (d, &s) in dst[hy * w..(hy + 1) * w].iter_mut().zip(srow) {
                            *d += s;
                        }
                    }
                }
            };
            if par {
                oi.par_chunks_mut(plane).enumerate().for_each(add);
            } else {
                oi.chunks_mut(plane).enumerate().for_each(add);
            }
            r0 += rb;
        }
        Ok(())
    };
    for_each_item(x, cin * h * w, &mut out, cout * plane, n, item)?;
    Ok((out, (n, cout, ho, w)))
}

/// Queries per attention task: a `[QUERY_BLOCK, Nk]` score buffer per thread (1.4 MB for
/// the 2688 frequency tokens of htdemucs) instead of `[heads, Nq, Nk]` score tensors. Each
/// task repacks every head's keys and values for its GEMMs, so blocks of 128 spend ~3.5% less
/// CPU than blocks of 64 (while still giving 11-21 tasks to balance over the threads).
const QUERY_BLOCK: usize = 128;

/// Multi-head scaled dot-product attention for one batch item: `q` `[Nq, C]`, `k` and `v`
/// `[Nk, C]` (heads are column groups of `C / heads`, read in place), into `out` `[Nq, C]`.
/// Each task takes a block of queries through every head: scores by GEMM, softmax in place,
/// then the GEMM with the values straight into the head's columns of `out`.
pub(crate) fn attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    (nq, nk, c, heads): (usize, usize, usize, usize),
    out: &mut [f32],
) -> Result<()> {
    let d = c / heads.max(1);
    if heads == 0 || d * heads != c || q.len() != nq * c || k.len() != nk * c || v.len() != k.len()
    {
        return Err(SeparateError::Unsupported("attention shapes".into()));
    }
    let scale = 1.0 / (d as f32).sqrt();
    out.par_chunks_mut(QUERY_BLOCK * c)
        .enumerate()
        .try_for_each_init(Vec::new, |scores: &mut Vec<f32>, (blk, o)| {
            let rb = o.len() / c;
            let r0 = blk * QUERY_BLOCK;
            scores.resize(rb * nk, 0.0);
            for hd in 0..heads {
                let col = hd * d;
                let qh = MatRef {
                    data: &q[r0 * c + col..],
                    rows: rb,
                    cols: d,
                    rs: c,
                    cs: 1,
                };
                let kt = MatRef {
                    data: &k[col..],
                    rows: d,
                    cols: nk,
                    rs: 1,
                    cs: c,
                };
                gemm(scores, nk, qh, kt, scale, false, false)?;
                softmax_rows(scores, nk);
                let p = MatRef {
                    data: scores,
                    rows: rb,
                    cols: nk,
                    rs: nk,
                    cs: 1,
                };
                let vh = MatRef {
                    data: &v[col..],
                    rows: nk,
                    cols: d,
                    rs: c,
                    cs: 1,
                };
                gemm(&mut o[col..], c, p, vh, 1.0, false, false)?;
            }
            Ok(())
        })
}

#[inline(always)]
fn softmax_rows_body(scores: &mut [f32], len: usize) {
    // Plain `for` loops here and below: iterator adapters like `for_each`/`fold` are separate
    // generic functions that may stay out of line, outside the SIMD context.
    for row in scores.chunks_mut(len) {
        softmax_in_place(row);
    }
}

simd_fn! {
    /// [`softmax_in_place`] on each row of `len` scores.
    fn softmax_rows(scores: &mut [f32], len: usize) = softmax_rows_body;
}

/// Softmax of one row of scores, in place: max, then `exp(x - max)` with partial sums per
/// lane (a single running max or sum would serialize the loops on their latency), then the
/// scaling.
#[inline(always)]
fn softmax_in_place(row: &mut [f32]) {
    let mut maxes = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (m, &v) in maxes.iter_mut().zip(chunk) {
            *m = if v > *m { v } else { *m };
        }
    }
    let mut max = f32::NEG_INFINITY;
    for &v in chunks.remainder().iter().chain(&maxes) {
        max = max.max(v);
    }
    let mut sums = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (v, s) in chunk.iter_mut().zip(sums.iter_mut()) {
            *v = exp_approx(*v - max);
            *s += *v;
        }
    }
    let mut sum = 0f32;
    for v in chunks.into_remainder() {
        *v = exp_approx(*v - max);
        sum += *v;
    }
    for s in sums {
        sum += s;
    }
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// Lanes of the unrolled softmax loops (one AVX-512 register).
const LANES: usize = 16;

/// `e^x` (NaN-free input), branch-free so that loops over it vectorize: Cephes' `expf` (range
/// reduction by `ln 2` in two parts, degree-6 polynomial), within 2 ulp of the exact value on
/// `[-87, 88]`. Outside, the argument is clamped: below -87 the result is `e^-87 ≈ 1.6e-38`
/// instead of an underflow to 0 (invisible next to a softmax row maximum's `e^0 = 1`), above
/// 88 it is `e^88` instead of infinity.
#[inline(always)]
fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2²³ rounds to the nearest integer without a libm call.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    let r2 = r * r;
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 5e-1;
    let y = p * r2 + r + 1.0;
    // 2^n from the exponent bits; n is in [-126, 127] here.
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_approx_is_within_a_few_ulp() {
        let mut worst = 0f32;
        // On [-86.9, 87.9]; outside [-87, 88] the argument is deliberately clamped.
        for i in -197_500..=199_700 {
            let x = i as f32 * 4.4e-4;
            let exact = (x as f64).exp() as f32;
            let rel = ((exp_approx(x) - exact) / exact).abs();
            worst = worst.max(rel);
        }
        assert!(worst < 4.0 * f32::EPSILON, "relative error {worst}");
        assert_eq!(exp_approx(0.0), 1.0);
        assert!(exp_approx(-1e4) < 1e-37);
        assert!(exp_approx(1e4).is_finite());
    }

    #[test]
    fn erf_is_within_5e7() {
        for i in -4000..=4000 {
            let x = i as f32 * 1e-3;
            let exact = candle_core::cpu::erf::erf_f64(x as f64);
            // A&S: 1.5e-7, plus the f32 rounding of `1 - p·t·e^(-x²)` (~4e-7 near 0).
            assert!((erf(x) as f64 - exact).abs() < 5e-7, "{x}");
        }
    }

    #[test]
    fn long_conv1d_in_column_blocks_matches_candle() {
        // 12 × 100 000 im2col floats exceed COLS_BLOCK: one output row in column blocks.
        let (cin, cout, k, l) = (4, 3, 3, 100_000);
        let dev = candle_core::Device::Cpu;
        let x = Tensor::randn(0f32, 1., (1, cin, l), &dev).unwrap();
        let w = Tensor::randn(0f32, 1., (cout, cin, k), &dev).unwrap();
        for (stride, padding, dilation) in [(1, 2, 2), (4, 1, 1)] {
            let expected = x.conv1d(&w, padding, stride, dilation, 1).unwrap();
            let geom = Conv2dGeom {
                kernel: (1, k),
                stride: (1, stride),
                padding: (0, padding),
                dilation: (1, dilation),
            };
            let xs = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let ws = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let (y, dims) = conv2d(&xs, (1, cin, 1, l), &ws, &[0.0; 3], geom).unwrap();
            assert_eq!(dims.3, expected.dim(2).unwrap());
            let e = expected.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let err = y
                .iter()
                .zip(&e)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(err < 1e-5, "{err}");
        }
    }

    #[test]
    fn softmax_sums_to_one() {
        let mut row: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin() * 5.0).collect();
        let exact: Vec<f64> = {
            let max = row.iter().copied().fold(f32::MIN, f32::max) as f64;
            let e: Vec<f64> = row.iter().map(|&v| (v as f64 - max).exp()).collect();
            let s: f64 = e.iter().sum();
            e.iter().map(|v| v / s).collect()
        };
        softmax_in_place(&mut row);
        for (a, b) in row.iter().zip(&exact) {
            assert!((*a as f64 - b).abs() < 1e-7, "{a} {b}");
        }
    }
}

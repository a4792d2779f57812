//! `apply_model` of the reference (`demucs/apply.py`), over a whole mix held in memory.
//!
//! What the reference does, and so what this does, for a mix of length `L`:
//!
//! - **Bag.** Each network runs on its own; its output is multiplied per source by its
//!   weight, the products are summed over the networks and each source is divided by its
//!   total weight.
//! - **Shifts** (`shifts > 0`). With `M = int(0.5 * samplerate)`, the mix is padded with `M`
//!   zeros on both sides; for each shift an offset `o` is drawn in `0..=M` and the network
//!   runs on the padded mix from `o` to `L + M` (that is, on the mix starting `M - o`
//!   samples early); the output is cropped back to the mix and the shifts are averaged.
//!   Offsets are consumed per network, then per shift (the order Python draws them in).
//! - **Split.** Each such run (a *pass*) is cut into chunks of `int(samplerate * segment)`
//!   samples every `int((1 - overlap) * segment_length)` samples, the last ones shorter;
//!   each chunk's output is weighted by a triangle (`1..=n/2` then down to 1, over its
//!   maximum, to the power `transition_power`, cut to the chunk's length), added up, and
//!   the sum is divided by the summed weights. Without split a pass is one chunk, unweighted.
//! - **Padding.** A chunk is extended to the network's valid length (`HTDemucs`: its
//!   segment, or the requested one; other models: the chunk itself) *centred*, reading the
//!   neighbouring samples of the mix and zeros only outside it (`TensorChunk.padded`), and
//!   the output is centre-trimmed back.
//!
//! [`Grid`] and [`Chunk`] describe that layout; the streaming path (`crate::stream`) walks the
//! same grid in bounded memory. Arithmetic is `f32` in the reference's order, so results
//! match it to rounding (the parity tests hold them to 1e-4).

use crate::bag::{Bag, Member, Segment};
use crate::SeparateError;
use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng};
use std::sync::Arc;

/// Most shifts accepted: each one is a full run of every network (the Demucs paper used 10).
pub const MAX_SHIFTS: usize = 20;

/// Where the random time shifts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShiftOffsets {
    /// Drawn uniformly in `0..=max_shift` from a generator seeded with `seed`, so that a
    /// separation is reproducible.
    Random {
        /// Seed of the generator.
        seed: u64,
    },
    /// Given: one offset per network of the bag and per shift, network-major (the order the
    /// reference draws them in), each at most `int(0.5 * samplerate)`.
    Fixed(Vec<usize>),
}

/// Options of [`apply_model`], named and defaulted as in the reference.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyOptions {
    /// Random time shifts averaged (0: none, deterministic). At most [`MAX_SHIFTS`].
    pub shifts: usize,
    /// Cut the mix into overlapping segments (required for anything longer than a segment
    /// with the transformer model).
    pub split: bool,
    /// Overlap between segments, in `[0, 1)`.
    pub overlap: f64,
    /// Exponent of the triangular cross-fade weight, at least 1 (sharper transitions above).
    pub transition_power: f64,
    /// Segment length in seconds instead of each network's own; for a transformer model at
    /// most its own segment.
    pub segment: Option<f64>,
    /// Where the shifts' offsets come from.
    pub offsets: ShiftOffsets,
}

impl Default for ApplyOptions {
    /// The reference's defaults (`shifts=1, split=True, overlap=0.25, transition_power=1`),
    /// with seed 0 for the shift.
    fn default() -> Self {
        ApplyOptions {
            shifts: 1,
            split: true,
            overlap: 0.25,
            transition_power: 1.0,
            segment: None,
            offsets: ShiftOffsets::Random { seed: 0 },
        }
    }
}

impl ApplyOptions {
    /// Checks the options against `bag`: shift count, overlap, transition power, segment
    /// (positive, at most the transformer members' segments, at least one sample), and the
    /// count and range of fixed offsets.
    pub fn validate(&self, bag: &Bag) -> Result<(), SeparateError> {
        if self.shifts > MAX_SHIFTS {
            return Err(invalid(format!(
                "shifts must be at most {MAX_SHIFTS}, not {}",
                self.shifts
            )));
        }
        if !(self.overlap.is_finite() && (0.0..1.0).contains(&self.overlap)) {
            return Err(invalid(format!(
                "overlap must be in [0, 1), not {}",
                self.overlap
            )));
        }
        if !(self.transition_power.is_finite() && self.transition_power >= 1.0) {
            return Err(invalid(format!(
                "transition_power must be at least 1, not {}",
                self.transition_power
            )));
        }
        if let Some(segment) = self.segment {
            if !(segment.is_finite() && segment > 0.0) {
                return Err(invalid(format!(
                    "segment must be a positive number of seconds, not {segment}"
                )));
            }
            let max = bag.max_allowed_segment();
            if segment > max {
                return Err(invalid(format!(
                    "segment {segment} s is longer than the model was trained for: at most \
                     {max} s"
                )));
            }
        }
        for member in bag.members() {
            Grid::new(member, self, bag.samplerate())?;
        }
        if self.shifts > 0 {
            let max_shift = max_shift(bag.samplerate());
            self.offsets
                .resolve(bag.members().len(), self.shifts, max_shift)?;
        }
        Ok(())
    }
}

impl ShiftOffsets {
    /// The offsets of every (network, shift), network-major: `members * shifts` values in
    /// `0..=max_shift`.
    pub fn resolve(
        &self,
        members: usize,
        shifts: usize,
        max_shift: usize,
    ) -> Result<Vec<usize>, SeparateError> {
        let count = members * shifts;
        match self {
            ShiftOffsets::Random { seed } => {
                let mut rng = rand::rngs::StdRng::seed_from_u64(*seed);
                Ok((0..count).map(|_| rng.gen_range(0..=max_shift)).collect())
            }
            ShiftOffsets::Fixed(offsets) => {
                if offsets.len() != count {
                    return Err(invalid(format!(
                        "{} shift offsets given, {count} needed ({members} models × {shifts} \
                         shifts)",
                        offsets.len()
                    )));
                }
                if let Some(bad) = offsets.iter().find(|o| **o > max_shift) {
                    return Err(invalid(format!(
                        "shift offset {bad} is larger than the maximum shift {max_shift}"
                    )));
                }
                Ok(offsets.clone())
            }
        }
    }
}

fn invalid(message: String) -> SeparateError {
    SeparateError::InvalidOption(message)
}

/// `int(0.5 * samplerate)`: the largest time shift, in samples.
pub fn max_shift(samplerate: u32) -> usize {
    (0.5 * f64::from(samplerate)) as usize
}

/// The cross-fade weight of a segment of `segment_length` samples: the triangle
/// `[1, 2, …, n/2, n − n/2, …, 2, 1]` divided by its maximum, to the power
/// `transition_power` (in `f32`, as the reference computes it).
pub fn transition_weight(segment_length: usize, transition_power: f64) -> Vec<f32> {
    let half = segment_length / 2;
    let max = (segment_length - half) as f32;
    let power = transition_power as f32;
    (1..=half)
        .chain((1..=segment_length - half).rev())
        .map(|w| {
            let x = w as f32 / max;
            // ATen's pow special-cases these exponents as products.
            match transition_power {
                1.0 => x,
                2.0 => x * x,
                3.0 => x * x * x,
                _ => x.powf(power),
            }
        })
        .collect()
}

/// How a network is run over one pass: the segment grid and the padding rule.
#[derive(Debug, Clone)]
pub struct Grid {
    split: Option<SplitGrid>,
    window: Window,
}

#[derive(Debug, Clone)]
struct SplitGrid {
    segment_length: usize,
    stride: usize,
    weight: Arc<[f32]>,
}

/// The length a chunk is padded to before the network sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    /// Always this length (the transformer: `HTDemucs.valid_length`, or the requested
    /// segment); a longer chunk is an error.
    Fixed(usize),
    /// The chunk's own length.
    Chunk,
}

/// One chunk of a pass. Positions are relative to the start of the pass's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    /// Where the chunk starts.
    pub offset: usize,
    /// Its length (the segment, or less at the end of the pass).
    pub length: usize,
    /// Where the padded window the network sees starts: `offset - (window - length) / 2`,
    /// possibly before the pass (read from the mix, zeros outside it).
    pub window_start: i64,
    /// The padded window's length.
    pub window_length: usize,
}

impl Chunk {
    /// Where the chunk's output starts in the network's output (`center_trim`).
    pub fn trim(&self) -> usize {
        (self.window_length - self.length) / 2
    }
}

impl Grid {
    /// The grid of `member` under `options` (at the bag's `samplerate`).
    pub fn new(
        member: &Member,
        options: &ApplyOptions,
        samplerate: u32,
    ) -> Result<Grid, SeparateError> {
        let window = if member.is_transformer() {
            Window::Fixed(match options.segment {
                // `int(segment * model.samplerate)` with the requested segment…
                Some(secs) => Segment::from_secs(secs, samplerate).samples,
                // …else `valid_length`, the (possibly overridden) training segment.
                None => member.segment.samples,
            })
        } else {
            Window::Chunk
        };
        if window == Window::Fixed(0) {
            return Err(invalid("the segment is shorter than one sample".into()));
        }
        let split = if options.split {
            let segment = options
                .segment
                .map(|secs| Segment::from_secs(secs, samplerate))
                .unwrap_or(member.segment);
            let segment_length = segment.samples;
            let stride = ((1.0 - options.overlap) * segment_length as f64) as usize;
            if stride == 0 {
                return Err(invalid(format!(
                    "a segment of {segment_length} samples with overlap {} leaves no stride",
                    options.overlap
                )));
            }
            let weight = transition_weight(segment_length, options.transition_power);
            // Every sample is covered by some chunk with at least the smallest weight; if that
            // underflows, the normalization divides by zero.
            if weight.iter().any(|w| !(*w > 0.0 && w.is_finite())) {
                return Err(invalid(format!(
                    "transition_power {} is too large for a segment of {segment_length} samples",
                    options.transition_power
                )));
            }
            Some(SplitGrid {
                segment_length,
                stride,
                weight: weight.into(),
            })
        } else {
            None
        };
        Ok(Grid { split, window })
    }

    /// Chunks in a pass of `length` samples (`len(range(0, length, stride))`).
    pub fn chunk_count(&self, length: usize) -> usize {
        match &self.split {
            Some(split) => length.div_ceil(split.stride),
            None => usize::from(length > 0),
        }
    }

    /// Chunk `index` of a pass of `length` samples. Fails if the chunk does not fit the
    /// network's fixed window (a transformer without split on input longer than a segment).
    pub fn chunk(&self, length: usize, index: usize) -> Result<Chunk, SeparateError> {
        let (offset, chunk_length) = match &self.split {
            Some(split) => {
                let offset = index * split.stride;
                (offset, split.segment_length.min(length - offset))
            }
            None => (0, length),
        };
        let window_length = match self.window {
            Window::Fixed(window) => window,
            Window::Chunk => chunk_length,
        };
        if window_length < chunk_length {
            return Err(invalid(format!(
                "{chunk_length} samples do not fit the model's {window_length}-sample window: \
                 use split"
            )));
        }
        Ok(Chunk {
            offset,
            length: chunk_length,
            window_start: offset as i64 - ((window_length - chunk_length) / 2) as i64,
            window_length,
        })
    }

    /// The cross-fade weight of sample `j` of a chunk (1 without split).
    pub fn weight(&self, j: usize) -> f32 {
        match &self.split {
            Some(split) => split.weight[j],
            None => 1.0,
        }
    }

    /// The longest window a chunk of this grid can have (for memory bounds).
    pub fn max_window(&self, length: usize) -> usize {
        let chunk = self.split.as_ref().map_or(length, |s| s.segment_length);
        match self.window {
            Window::Fixed(window) => window,
            Window::Chunk => chunk,
        }
    }

    /// Segment length and stride (for a split grid).
    pub fn segment_and_stride(&self) -> Option<(usize, usize)> {
        self.split.as_ref().map(|s| (s.segment_length, s.stride))
    }
}

/// One run of one network over the whole mix at one shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pass {
    /// Index of the network in the bag.
    pub member: usize,
    /// Where the pass's input starts in the mix (`offset - max_shift`, ≤ 0; 0 without
    /// shifts): its length is `mix length - origin`.
    pub origin: i64,
}

/// The passes of `bag`, network-major then shift, with their origins.
pub(crate) fn passes(bag: &Bag, options: &ApplyOptions) -> Result<Vec<Pass>, SeparateError> {
    let members = bag.members().len();
    if options.shifts == 0 {
        return Ok((0..members)
            .map(|member| Pass { member, origin: 0 })
            .collect());
    }
    let max_shift = max_shift(bag.samplerate());
    let offsets = options
        .offsets
        .resolve(members, options.shifts, max_shift)?;
    Ok(offsets
        .iter()
        .enumerate()
        .map(|(i, offset)| Pass {
            member: i / options.shifts,
            origin: *offset as i64 - max_shift as i64,
        })
        .collect())
}

/// Reads `window` samples of each row of `data` (rows of `length` samples) from `start`
/// (possibly negative or past the end) into `out`: the mix where it exists, zeros outside it
/// (`TensorChunk.padded`).
pub(crate) fn read_window(
    data: &[f32],
    length: usize,
    start: i64,
    window: usize,
    out: &mut Vec<f32>,
) {
    out.clear();
    let lead = (-start).clamp(0, window as i64) as usize;
    let from = start.clamp(0, length as i64) as usize;
    let to = (start + window as i64).clamp(0, length as i64) as usize;
    let present = to.saturating_sub(from);
    for row in data.chunks_exact(length) {
        out.extend(std::iter::repeat_n(0.0, lead));
        out.extend_from_slice(&row[from..from + present]);
        out.extend(std::iter::repeat_n(0.0, window - lead - present));
    }
}

/// Runs `network` on a window `[batch, channels, window]` and returns its output flattened
/// as `[batch, sources, channels, window]`, checking the shape.
pub(crate) fn forward(
    bag: &Bag,
    member: &Member,
    input: Vec<f32>,
    batch: usize,
    window: usize,
) -> Result<Vec<f32>, SeparateError> {
    let channels = bag.channels();
    let tensor = Tensor::from_vec(input, (batch, channels, window), bag.device())?;
    let out = member.network.forward(&tensor)?;
    let expected = [batch, bag.sources().len(), channels, window];
    if out.dims() != expected {
        return Err(SeparateError::Unsupported(format!(
            "the network returned shape {:?} for input {:?}, expected {expected:?}",
            out.dims(),
            tensor.dims()
        )));
    }
    Ok(out.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// `apply_model(bag, mix, …)` of the reference: `mix` is `[batch, channels, length]` at the
/// bag's sample rate; returns `[batch, sources, channels, length]`. `progress` gets the
/// fraction of chunks done. Holds the whole mix and a few copies of the output in memory;
/// for tracks, [`crate::stream::separate_file`] computes the same in bounded memory.
pub fn apply_model(
    bag: &Bag,
    mix: &Tensor,
    options: &ApplyOptions,
    progress: &mut dyn FnMut(f64),
) -> Result<Tensor, SeparateError> {
    let (batch, channels, length) = mix.dims3()?;
    if channels != bag.channels() {
        return Err(invalid(format!(
            "the mix has {channels} channels, the model takes {}",
            bag.channels()
        )));
    }
    if length == 0 {
        return Err(invalid("the mix is empty".into()));
    }
    options.validate(bag)?;
    let data = mix.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let grids = bag
        .members()
        .iter()
        .map(|m| Grid::new(m, options, bag.samplerate()))
        .collect::<Result<Vec<_>, _>>()?;
    let passes = passes(bag, options)?;
    let total_chunks: usize = passes
        .iter()
        .map(|p| grids[p.member].chunk_count((length as i64 - p.origin) as usize))
        .sum();
    let mut done = 0usize;
    let mut tick = || {
        done += 1;
        progress(done as f64 / total_chunks as f64);
    };

    let sources = bag.sources().len();
    let size = batch * sources * channels * length;
    let mut estimates = vec![0f32; size];
    let mut totals = vec![0f64; sources];
    let shifts_per_member = options.shifts.max(1);
    for (index, member) in bag.members().iter().enumerate() {
        let member_passes = &passes[index * shifts_per_member..(index + 1) * shifts_per_member];
        let mut out = vec![0f32; size];
        for pass in member_passes {
            let result = run_pass(
                bag,
                member,
                &grids[index],
                &data,
                (batch, length),
                pass.origin,
                &mut tick,
            )?;
            out.iter_mut().zip(&result).for_each(|(o, r)| *o += r);
        }
        if options.shifts > 0 {
            let shifts = options.shifts as f32;
            out.iter_mut().for_each(|o| *o /= shifts);
        }
        // `out[:, k] *= weight` over the layout [batch, sources, channels, length].
        for (row, values) in out.chunks_exact_mut(channels * length).enumerate() {
            let weight = member.weights[row % sources] as f32;
            values.iter_mut().for_each(|v| *v *= weight);
        }
        for (total, weight) in totals.iter_mut().zip(&member.weights) {
            *total += weight;
        }
        estimates.iter_mut().zip(&out).for_each(|(e, o)| *e += o);
    }
    for (row, values) in estimates.chunks_exact_mut(channels * length).enumerate() {
        let total = totals[row % sources] as f32;
        values.iter_mut().for_each(|v| *v /= total);
    }
    Ok(Tensor::from_vec(
        estimates,
        (batch, sources, channels, length),
        mix.device(),
    )?)
}

/// One pass (one network at one shift) over the whole mix: overlap-add of the chunks of a
/// pass starting at `origin`, normalized by the summed weights, cropped to the mix.
fn run_pass(
    bag: &Bag,
    member: &Member,
    grid: &Grid,
    data: &[f32],
    (batch, length): (usize, usize),
    origin: i64,
    tick: &mut dyn FnMut(),
) -> Result<Vec<f32>, SeparateError> {
    let channels = bag.channels();
    let sources = bag.sources().len();
    let pass_length = (length as i64 - origin) as usize;
    let rows = batch * sources * channels;
    let mut out = vec![0f32; rows * pass_length];
    let mut sum_weight = vec![0f32; pass_length];
    let mut window = Vec::new();
    for index in 0..grid.chunk_count(pass_length) {
        let chunk = grid.chunk(pass_length, index)?;
        read_window(
            data,
            length,
            origin + chunk.window_start,
            chunk.window_length,
            &mut window,
        );
        let y = forward(
            bag,
            member,
            std::mem::take(&mut window),
            batch,
            chunk.window_length,
        )?;
        let trim = chunk.trim();
        for (row, y_row) in y.chunks_exact(chunk.window_length).enumerate() {
            let out_row = &mut out[row * pass_length + chunk.offset..][..chunk.length];
            for (j, (o, v)) in out_row.iter_mut().zip(&y_row[trim..]).enumerate() {
                *o += grid.weight(j) * v;
            }
        }
        for (j, s) in sum_weight[chunk.offset..][..chunk.length]
            .iter_mut()
            .enumerate()
        {
            *s += grid.weight(j);
        }
        tick();
    }
    // Normalize, and crop the pass (which starts `-origin` samples before the mix) to the mix.
    let skip = (-origin) as usize;
    let mut result = Vec::with_capacity(rows * length);
    for row in out.chunks_exact(pass_length) {
        result.extend(
            row[skip..]
                .iter()
                .zip(&sum_weight[skip..])
                .map(|(o, s)| o / s),
        );
    }
    Ok(result)
}

//! The rolling overlap-add: [`crate::apply::apply_model`]'s computation over a mix read
//! front to back, in memory bounded by the segment, not the track.
//!
//! Every pass (one network at one shift, see `apply.rs`) walks its own chunk grid. The
//! engine always runs the chunk that starts first among all passes, so the passes advance
//! in lockstep. A position is final once every pass's next chunk starts after it (no later
//! chunk touches it); final positions are combined exactly as `apply_model` combines them
//! (per pass `out / sum_weight`, shifts summed in order and divided, networks weighted and
//! summed in order, divided by the total weight, then de-normalized), handed to the sink
//! and dropped. The input is kept from the earliest window a pending chunk still reads.
//!
//! Each pass's float operations happen in the same order as in `apply_model`, so for the
//! same normalized mix both give identical results.

use crate::apply::{forward, Grid, Pass};
use crate::bag::Bag;
use crate::separator::Normalization;
use crate::SeparateError;

/// A mix read front to back, already normalized, at the bag's rate and channel count.
pub(crate) trait MixSource {
    /// Appends the next frames to `rows` (one row per channel); returns how many were
    /// appended, 0 at the end.
    fn read(&mut self, rows: &mut [Vec<f32>]) -> Result<usize, SeparateError>;
}

/// Final, de-normalized output for consecutive positions of the mix.
pub(crate) struct Block<'a> {
    /// `sources × channels` rows of `frames` samples; rows of sources not asked for are empty.
    pub rows: &'a [Vec<f32>],
    /// Frames in each row.
    pub frames: usize,
}

/// Peak buffer sizes of a run: what bounds its memory (see [`crate::stream::StreamStats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Peaks {
    pub input_frames: usize,
    pub accumulator_frames: usize,
    pub passes: usize,
    pub chunks: usize,
}

struct PassState {
    member: usize,
    origin: i64,
    length: usize,
    next: usize,
    count: usize,
    /// `sources × channels` rows starting at the engine's `base`; rows of sources not asked
    /// for stay empty.
    acc: Vec<Vec<f32>>,
    sum_weight: Vec<f32>,
}

impl PassState {
    fn active(&self) -> bool {
        self.next < self.count
    }
}

/// The input kept in memory: frames `start..start + rows[0].len()` of the mix.
struct InputBuffer {
    start: usize,
    rows: Vec<Vec<f32>>,
}

impl InputBuffer {
    fn end(&self) -> usize {
        self.start + self.rows[0].len()
    }

    /// The window `[start, start + window)` of every channel, zeros outside `0..length`;
    /// the part inside must be buffered.
    fn window(&self, start: i64, window: usize, length: usize, out: &mut Vec<f32>) {
        out.clear();
        let lead = (-start).clamp(0, window as i64) as usize;
        let from = start.clamp(0, length as i64) as usize;
        let to = (start + window as i64).clamp(0, length as i64) as usize;
        let present = to.saturating_sub(from);
        debug_assert!(present == 0 || (from >= self.start && from + present <= self.end()));
        for row in &self.rows {
            out.extend(std::iter::repeat_n(0.0, lead));
            out.extend_from_slice(&row[from - self.start..][..present]);
            out.extend(std::iter::repeat_n(0.0, window - lead - present));
        }
    }

    fn drop_before(&mut self, position: usize) {
        let n = position.saturating_sub(self.start).min(self.rows[0].len());
        if n > 0 {
            self.rows.iter_mut().for_each(|r| drop(r.drain(..n)));
            self.start += n;
        }
    }
}

/// The engine for one mix of `length` frames.
pub(crate) struct Engine<'a> {
    bag: &'a Bag,
    grids: Vec<Grid>,
    passes: Vec<PassState>,
    shifts: usize,
    length: usize,
    needed: Vec<bool>,
    skipped: Vec<bool>,
    totals: Vec<f32>,
    norm: Normalization,
    input: InputBuffer,
    /// Mix position of index 0 of every accumulator (≤ 0 before the first emission).
    base: i64,
    emitted: usize,
    peaks: Peaks,
}

impl<'a> Engine<'a> {
    /// An engine for `passes` over a mix of `length` frames, producing the sources flagged in
    /// `needed`; networks whose weights are zero for every needed source are not run.
    pub fn new(
        bag: &'a Bag,
        grids: Vec<Grid>,
        passes: &[Pass],
        shifts: usize,
        length: usize,
        needed: Vec<bool>,
        norm: Normalization,
    ) -> Engine<'a> {
        let skipped: Vec<bool> = bag
            .members()
            .iter()
            .map(|m| m.weights.iter().zip(&needed).all(|(w, n)| !n || *w == 0.0))
            .collect();
        // Totals over every network, skipped ones included (their weights are 0 for what is
        // produced), summed in `f64` as the reference's Python floats.
        let totals = (0..bag.sources().len())
            .map(|k| bag.members().iter().map(|m| m.weights[k]).sum::<f64>() as f32)
            .collect();
        let rows = bag.sources().len() * bag.channels();
        let states: Vec<PassState> = passes
            .iter()
            .filter(|p| !skipped[p.member])
            .map(|p| {
                let pass_length = (length as i64 - p.origin) as usize;
                PassState {
                    member: p.member,
                    origin: p.origin,
                    length: pass_length,
                    next: 0,
                    count: grids[p.member].chunk_count(pass_length),
                    acc: vec![Vec::new(); rows],
                    sum_weight: Vec::new(),
                }
            })
            .collect();
        let base = states.iter().map(|p| p.origin).min().unwrap_or(0);
        let peaks = Peaks {
            passes: states.len(),
            chunks: states.iter().map(|p| p.count).sum(),
            ..Peaks::default()
        };
        Engine {
            bag,
            grids,
            passes: states,
            shifts,
            length,
            needed,
            skipped,
            totals,
            norm,
            input: InputBuffer {
                start: 0,
                rows: vec![Vec::new(); bag.channels()],
            },
            base,
            emitted: 0,
            peaks,
        }
    }

    /// Runs every chunk, handing final blocks to `sink` as they complete.
    pub fn run(
        mut self,
        source: &mut dyn MixSource,
        sink: &mut dyn FnMut(Block<'_>) -> Result<(), SeparateError>,
        progress: &mut dyn FnMut(f64),
        cancel: &dyn Fn() -> bool,
    ) -> Result<Peaks, SeparateError> {
        let total = self.peaks.chunks.max(1);
        let mut done = 0usize;
        let mut window = Vec::new();
        while let Some(index) = self.next_pass()? {
            if cancel() {
                return Err(SeparateError::Canceled);
            }
            let (member, origin) = (self.passes[index].member, self.passes[index].origin);
            let chunk =
                self.grids[member].chunk(self.passes[index].length, self.passes[index].next)?;
            let window_start = origin + chunk.window_start;
            let window_end =
                (window_start + chunk.window_length as i64).clamp(0, self.length as i64);
            self.fill(source, window_end as usize)?;
            self.input
                .window(window_start, chunk.window_length, self.length, &mut window);
            let member = &self.bag.members()[member];
            let y = forward(
                self.bag,
                member,
                std::mem::take(&mut window),
                1,
                chunk.window_length,
            )?;
            self.accumulate(index, &y, chunk)?;
            done += 1;
            progress(done as f64 / total as f64);
            self.advance(sink)?;
        }
        self.advance(sink)?;
        // Every frame of the mix was needed by the last chunks: the source must end there.
        let mut rest = vec![Vec::new(); self.bag.channels()];
        if self.input.end() != self.length || source.read(&mut rest)? != 0 {
            return Err(SeparateError::InvalidOption(
                "the input changed while it was being separated".into(),
            ));
        }
        Ok(self.peaks)
    }

    /// The active pass whose next chunk starts first (ties: the first in bag order).
    fn next_pass(&self) -> Result<Option<usize>, SeparateError> {
        let mut best: Option<(i64, usize)> = None;
        for (i, pass) in self.passes.iter().enumerate().filter(|(_, p)| p.active()) {
            let start = self.next_start(pass)?;
            if best.is_none_or(|(b, _)| start < b) {
                best = Some((start, i));
            }
        }
        Ok(best.map(|(_, i)| i))
    }

    fn next_start(&self, pass: &PassState) -> Result<i64, SeparateError> {
        let chunk = self.grids[pass.member].chunk(pass.length, pass.next)?;
        Ok(pass.origin + chunk.offset as i64)
    }

    /// Reads the source until frame `end` (exclusive) is buffered.
    fn fill(&mut self, source: &mut dyn MixSource, end: usize) -> Result<(), SeparateError> {
        while self.input.end() < end {
            if source.read(&mut self.input.rows)? == 0 {
                return Err(SeparateError::InvalidOption(
                    "the input ended early while it was being separated (it changed?)".into(),
                ));
            }
        }
        let frames = self.input.rows[0].len();
        self.peaks.input_frames = self.peaks.input_frames.max(frames);
        Ok(())
    }

    /// Overlap-adds a chunk's output `y` (`[1, sources, channels, window]`) into its pass.
    fn accumulate(
        &mut self,
        index: usize,
        y: &[f32],
        chunk: crate::apply::Chunk,
    ) -> Result<(), SeparateError> {
        let channels = self.bag.channels();
        let pass = &mut self.passes[index];
        let grid = &self.grids[pass.member];
        let start = usize::try_from(pass.origin + chunk.offset as i64 - self.base)
            .map_err(|_| SeparateError::InvalidOption("chunk before the emitted audio".into()))?;
        let end = start + chunk.length;
        let trim = chunk.trim();
        for (row, y_row) in y.chunks_exact(chunk.window_length).enumerate() {
            if !self.needed[row / channels] {
                continue;
            }
            let acc = &mut pass.acc[row];
            if acc.len() < end {
                acc.resize(end, 0.0);
            }
            for (j, (o, v)) in acc[start..end].iter_mut().zip(&y_row[trim..]).enumerate() {
                *o += grid.weight(j) * v;
            }
        }
        if pass.sum_weight.len() < end {
            pass.sum_weight.resize(end, 0.0);
        }
        for (j, s) in pass.sum_weight[start..end].iter_mut().enumerate() {
            *s += grid.weight(j);
        }
        self.peaks.accumulator_frames = self.peaks.accumulator_frames.max(pass.sum_weight.len());
        pass.next += 1;
        Ok(())
    }

    /// Emits every position no pending chunk touches, and drops what is no longer needed.
    fn advance(
        &mut self,
        sink: &mut dyn FnMut(Block<'_>) -> Result<(), SeparateError>,
    ) -> Result<(), SeparateError> {
        let mut frontier = self.length as i64;
        let mut keep_input = self.length as i64;
        for pass in self.passes.iter().filter(|p| p.active()) {
            let chunk = self.grids[pass.member].chunk(pass.length, pass.next)?;
            frontier = frontier.min(pass.origin + chunk.offset as i64);
            keep_input = keep_input.min(pass.origin + chunk.window_start);
        }
        if frontier > self.emitted as i64 {
            let rows = self.combine(self.emitted, frontier as usize);
            let frames = frontier as usize - self.emitted;
            sink(Block {
                rows: &rows,
                frames,
            })?;
            self.emitted = frontier as usize;
        }
        if frontier > self.base {
            let n = (frontier - self.base) as usize;
            for pass in &mut self.passes {
                for row in pass
                    .acc
                    .iter_mut()
                    .chain(std::iter::once(&mut pass.sum_weight))
                {
                    let n = n.min(row.len());
                    row.drain(..n);
                }
            }
            self.base = frontier;
        }
        self.input.drop_before(keep_input.max(0) as usize);
        Ok(())
    }

    /// The final values of positions `from..to`, combined as `apply_model` and
    /// `separate_tensor` combine them.
    fn combine(&self, from: usize, to: usize) -> Vec<Vec<f32>> {
        let channels = self.bag.channels();
        let sources = self.bag.sources().len();
        let per_member = self.shifts.max(1);
        let mut rows = vec![Vec::new(); sources * channels];
        for (k, _) in self.needed.iter().enumerate().filter(|(_, n)| **n) {
            for c in 0..channels {
                let row = k * channels + c;
                let out = &mut rows[row];
                out.reserve(to - from);
                for position in from..to {
                    let i = (position as i64 - self.base) as usize;
                    let mut estimate = 0f32;
                    let mut passes = self.passes.iter();
                    for (m, member) in self.bag.members().iter().enumerate() {
                        if self.skipped[m] {
                            continue;
                        }
                        let mut value = 0f32;
                        for pass in passes.by_ref().take(per_member) {
                            value += pass.acc[row][i] / pass.sum_weight[i];
                        }
                        if self.shifts > 0 {
                            value /= self.shifts as f32;
                        }
                        estimate += value * member.weights[k] as f32;
                    }
                    estimate /= self.totals[k];
                    out.push(self.norm.denormalize(estimate));
                }
            }
        }
        rows
    }
}

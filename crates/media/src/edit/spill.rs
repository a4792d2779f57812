//! A first-in first-out queue of interleaved samples that keeps a bounded amount in memory and
//! spills the rest to a temporary file.
//!
//! The edits that need lookahead (trailing-silence trimming holds back the current run of
//! silent frames; a fade-out of unknown position holds back the last `fade_out` frames) queue
//! frames here. A silent run or a fade can last minutes or hours, so memory cannot hold it in
//! general, and it cannot be summarized either (a "silent" run is only under the threshold,
//! not zero: re-emitting zeros would change near-silent noise). The queue therefore stores it
//! exactly: up to [`MEMORY_CAP_BYTES`] in memory, then in an anonymous file next to the
//! output (created and unlinked at once on Unix, so nothing is left behind even if the
//! process dies). Disk use is bounded by the held audio (compacted when the consumed prefix
//! grows past the live part), never by the input's length.

use crate::MediaError;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Samples kept in memory per queue before it spills: 4 MiB (≈ 11 s of stereo at 48 kHz).
pub(crate) const MEMORY_CAP_BYTES: usize = 4 << 20;
/// Most samples handed out by one [`Fifo::pop`] (256 KiB).
const BLOCK_SAMPLES: usize = 64 * 1024;
/// The file is compacted only once its consumed prefix exceeds this many bytes.
const COMPACT_MIN_BYTES: u64 = 16 << 20;

const SAMPLE_BYTES: u64 = 4;

fn spill_error(e: std::io::Error) -> MediaError {
    MediaError::io("using a temporary file", e)
}

/// The spilled, older part of a queue: bytes `read..write` of `file`.
struct Spill {
    file: File,
    /// Still to delete when the queue is dropped (if unlinking at creation failed).
    path: Option<PathBuf>,
    read: u64,
    write: u64,
}

impl Drop for Spill {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Spill {
    fn create(dir: &Path) -> Result<Self, MediaError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = format!(
            ".audiomill-spill-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(spill_error)?;
        // On Unix the open handle keeps the data; elsewhere this fails and Drop retries.
        let path = std::fs::remove_file(&path).err().map(|_| path);
        Ok(Spill {
            file,
            path,
            read: 0,
            write: 0,
        })
    }

    fn live(&self) -> u64 {
        self.write - self.read
    }

    fn append(&mut self, samples: impl Iterator<Item = f32>) -> Result<(), MediaError> {
        self.file
            .seek(SeekFrom::Start(self.write))
            .map_err(spill_error)?;
        // Written a block at a time, so the conversion needs no second copy of the queue.
        let mut bytes = Vec::with_capacity(BLOCK_SAMPLES * SAMPLE_BYTES as usize);
        let mut samples = samples.peekable();
        while samples.peek().is_some() {
            bytes.clear();
            for x in samples.by_ref().take(BLOCK_SAMPLES) {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
            self.file.write_all(&bytes).map_err(spill_error)?;
            self.write += bytes.len() as u64;
        }
        Ok(())
    }

    /// Moves up to `samples` samples from the front of the file to `out`.
    fn take(&mut self, samples: usize, out: &mut Vec<f32>) -> Result<usize, MediaError> {
        let n = samples.min((self.live() / SAMPLE_BYTES) as usize);
        let mut bytes = vec![0u8; n * SAMPLE_BYTES as usize];
        self.file
            .seek(SeekFrom::Start(self.read))
            .map_err(spill_error)?;
        self.file.read_exact(&mut bytes).map_err(spill_error)?;
        out.extend(
            bytes
                .chunks_exact(SAMPLE_BYTES as usize)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        self.read += bytes.len() as u64;
        if self.read == self.write {
            self.read = 0;
            self.write = 0;
            self.file.set_len(0).map_err(spill_error)?;
        } else if self.read > COMPACT_MIN_BYTES && self.read > self.live() {
            self.compact()?;
        }
        Ok(n)
    }

    /// Copies the live bytes to the start of the file (amortized: the live part is smaller
    /// than the consumed prefix, so each byte is copied at most about once per pass).
    fn compact(&mut self) -> Result<(), MediaError> {
        let mut buffer = vec![0u8; BLOCK_SAMPLES * SAMPLE_BYTES as usize];
        let (mut from, mut to) = (self.read, 0u64);
        while from < self.write {
            let n = (self.write - from).min(buffer.len() as u64) as usize;
            self.file.seek(SeekFrom::Start(from)).map_err(spill_error)?;
            self.file
                .read_exact(&mut buffer[..n])
                .map_err(spill_error)?;
            self.file.seek(SeekFrom::Start(to)).map_err(spill_error)?;
            self.file.write_all(&buffer[..n]).map_err(spill_error)?;
            from += n as u64;
            to += n as u64;
        }
        self.read = 0;
        self.write = to;
        self.file.set_len(to).map_err(spill_error)
    }
}

/// A FIFO of interleaved samples: the newest up to `memory_cap` samples in memory, anything
/// older beyond that in a temporary file in `dir`. Order: spilled part, then memory.
pub(crate) struct Fifo {
    channels: usize,
    memory_cap: usize,
    memory: VecDeque<f32>,
    spill: Option<Spill>,
    dir: PathBuf,
    frames: u64,
}

impl std::fmt::Debug for Fifo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fifo")
            .field("frames", &self.frames)
            .field("spilled", &self.spill.as_ref().map(Spill::live))
            .finish_non_exhaustive()
    }
}

impl Fifo {
    /// A queue of `channels`-channel frames spilling to `dir` past [`MEMORY_CAP_BYTES`].
    pub(crate) fn new(channels: usize, dir: &Path) -> Self {
        Self::with_memory_cap(channels, dir, MEMORY_CAP_BYTES / SAMPLE_BYTES as usize)
    }

    /// The same with a cap of `memory_cap` samples (rounded up to whole frames).
    pub(crate) fn with_memory_cap(channels: usize, dir: &Path, memory_cap: usize) -> Self {
        Fifo {
            channels,
            memory_cap: memory_cap.max(channels),
            memory: VecDeque::new(),
            spill: None,
            dir: dir.to_path_buf(),
            frames: 0,
        }
    }

    /// Frames queued.
    #[cfg(test)]
    pub(crate) fn frames(&self) -> u64 {
        self.frames
    }

    /// Samples currently held in memory (for tests of the bound).
    #[cfg(test)]
    pub(crate) fn memory_samples(&self) -> usize {
        self.memory.len()
    }

    /// Appends whole frames.
    pub(crate) fn push(&mut self, samples: &[f32]) -> Result<(), MediaError> {
        debug_assert_eq!(samples.len() % self.channels, 0);
        self.frames += (samples.len() / self.channels) as u64;
        self.memory.extend(samples);
        if self.memory.len() > self.memory_cap {
            // Everything in memory is newer than what is spilled: append it all.
            if self.spill.is_none() {
                self.spill = Some(Spill::create(&self.dir)?);
            }
            if let Some(spill) = self.spill.as_mut() {
                spill.append(self.memory.drain(..))?;
            }
        }
        Ok(())
    }

    /// Moves up to `max_frames` frames (and at most a block) from the front of the queue to
    /// the end of `out`; returns how many. Zero only when the queue is empty or `max_frames`
    /// is zero.
    pub(crate) fn pop(&mut self, max_frames: u64, out: &mut Vec<f32>) -> Result<u64, MediaError> {
        let block_frames = (BLOCK_SAMPLES / self.channels).max(1) as u64;
        let want = (max_frames.min(block_frames).min(self.frames) as usize) * self.channels;
        let mut taken = 0;
        if let Some(spill) = self.spill.as_mut() {
            taken = spill.take(want, out)?;
        }
        let rest = (want - taken).min(self.memory.len());
        out.extend(self.memory.drain(..rest));
        taken += rest;
        let frames = (taken / self.channels) as u64;
        self.frames -= frames;
        Ok(frames)
    }

    /// Empties the queue.
    pub(crate) fn clear(&mut self) {
        self.memory.clear();
        // Dropping the file frees its disk space.
        self.spill = None;
        self.frames = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_across_memory_and_file_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut fifo = Fifo::with_memory_cap(2, dir.path(), 100);
        let mut next_in = 0u32;
        let mut next_out = 0u32;
        let mut out = Vec::new();
        // A delay line of 500 frames (1000 samples, ten times the memory cap) over 100 000
        // frames, pushed and popped in uneven pieces.
        for round in 0..2000u32 {
            let piece: Vec<f32> = (0..(round % 37 + 1) * 2)
                .map(|_| {
                    next_in += 1;
                    next_in as f32
                })
                .collect();
            fifo.push(&piece).unwrap();
            assert!(fifo.memory_samples() <= 100 + 74);
            while fifo.frames() > 500 {
                out.clear();
                let n = fifo.pop(fifo.frames() - 500, &mut out).unwrap();
                assert!(n > 0);
                for x in &out {
                    next_out += 1;
                    assert_eq!(*x, next_out as f32);
                }
            }
        }
        loop {
            out.clear();
            if fifo.pop(u64::MAX, &mut out).unwrap() == 0 {
                break;
            }
            for x in &out {
                next_out += 1;
                assert_eq!(*x, next_out as f32);
            }
        }
        assert_eq!(next_in, next_out);
        // The unlinked file left nothing in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn compaction_bounds_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut fifo = Fifo::with_memory_cap(1, dir.path(), 1000);
        let piece = vec![0.5f32; 10_000];
        let mut out = Vec::new();
        // 40 MB pass through a 4 MB delay line.
        for _ in 0..1000 {
            fifo.push(&piece).unwrap();
            while fifo.frames() > 1_000_000 {
                out.clear();
                fifo.pop(fifo.frames() - 1_000_000, &mut out).unwrap();
            }
        }
        let spill = fifo.spill.as_ref().unwrap();
        let len = spill.file.metadata().unwrap().len();
        assert!(len <= 2 * 4_000_000 + COMPACT_MIN_BYTES + 100_000, "{len}");
        fifo.clear();
        assert_eq!(fifo.frames(), 0);
    }
}

//! Trimming to a range of frames, counted from the decoded position.

/// Keeps frames `start..end` of a stream, counting every frame that goes through (so it is
/// sample-accurate at the input rate, whatever the packet sizes).
#[derive(Debug, Clone)]
pub(crate) struct Trim {
    channels: usize,
    start: u64,
    end: u64,
    position: u64,
}

impl Trim {
    /// Keeps frames `start..end` (`end` = `u64::MAX` for "to the end").
    pub(crate) fn new(channels: usize, start: u64, end: u64) -> Self {
        Trim {
            channels,
            start,
            end,
            position: 0,
        }
    }

    /// The part of the next interleaved `frames` that lies in the range (maybe empty).
    pub(crate) fn apply<'a>(&mut self, frames: &'a [f32]) -> &'a [f32] {
        let count = (frames.len() / self.channels) as u64;
        let (first, past) = (self.position, self.position + count);
        self.position = past;
        let from = self.start.clamp(first, past) - first;
        let to = self.end.clamp(first, past) - first;
        if from >= to {
            return &[];
        }
        &frames[from as usize * self.channels..to as usize * self.channels]
    }

    /// Whether the end of the range has been passed: nothing more will be kept, so decoding
    /// can stop.
    pub(crate) fn is_done(&self) -> bool {
        self.position >= self.end
    }

    /// Frames seen so far.
    pub(crate) fn position(&self) -> u64 {
        self.position
    }

    /// First frame kept.
    pub(crate) fn start(&self) -> u64 {
        self.start
    }

    /// Frame at which keeping stops (`u64::MAX`: the end of the stream).
    pub(crate) fn end(&self) -> u64 {
        self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_range_whatever_the_chunking() {
        let input: Vec<f32> = (0..200).map(|x| x as f32).collect(); // 100 stereo frames
        for piece in [2, 6, 14, 200] {
            let mut trim = Trim::new(2, 7, 31);
            let mut kept = Vec::new();
            for chunk in input.chunks(piece) {
                kept.extend_from_slice(trim.apply(chunk));
            }
            assert_eq!(kept, (14..62).map(|x| x as f32).collect::<Vec<_>>());
            assert!(trim.is_done());
        }
        let mut open = Trim::new(2, 99, u64::MAX);
        assert_eq!(open.apply(&input), &[198.0, 199.0]);
        assert!(!open.is_done());
        let mut late = Trim::new(2, 100, u64::MAX);
        assert!(late.apply(&input).is_empty());
        assert_eq!(late.position(), 100);
    }
}

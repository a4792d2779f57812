//! Limits on inputs, enforced before any decoding.

use serde::{Deserialize, Serialize};

/// Limits that an input must respect. Checked from the probed header (duration, sample rate,
/// channels) before a single packet is decoded, and again while decoding, since headers lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted upload, in bytes (counted while streaming).
    pub max_upload_bytes: u64,
    /// Longest accepted input, in seconds.
    pub max_duration_secs: u64,
    /// Highest accepted sample rate, in Hz.
    pub max_sample_rate: u32,
    /// Most accepted channels.
    pub max_channels: u16,
    /// Most items a `download` with `playlist: true` expands into (one child job each).
    pub max_playlist_items: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_upload_bytes: 512 * 1024 * 1024,
            max_duration_secs: 3 * 60 * 60,
            max_sample_rate: 192_000,
            max_channels: 8,
            max_playlist_items: 50,
        }
    }
}

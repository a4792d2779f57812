//! Worker settings.

use audiomill_core::Limits;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of a [`crate::Worker`].
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs run at once by this process (at least 1).
    pub concurrency: usize,
    /// Lease owner name, unique per process (e.g. `hostname-pid-ulid`).
    pub owner: String,
    /// Lease taken on a claimed job; renewed by every heartbeat.
    pub lease: Duration,
    /// Interval of heartbeats (lease renewal, progress, cancel check).
    pub heartbeat: Duration,
    /// Longest wait between two claims when nobody pokes the waker.
    pub poll: Duration,
    /// First retry delay; doubles per attempt, with jitter.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// On shutdown, how long running jobs may finish before they are killed and requeued.
    pub grace_period: Duration,
    /// Wall-clock limit of one attempt, whatever its operation.
    pub job_timeout: Duration,
    /// Wall-clock limit of one attempt per operation (the lower of this and `job_timeout`
    /// applies).
    pub operation_timeouts: OperationTimeouts,
    /// Program and arguments of the job child, e.g. `[current_exe, "__run-job"]`. The child
    /// reads a [`crate::protocol::ChildTask`] on stdin and answers on stdout.
    pub child_command: Vec<OsString>,
    /// Directory the per-attempt directories are created in. Should be on the same file system
    /// as the local blob store, so artifacts move in with a rename.
    pub temp_dir: PathBuf,
    /// Resource limits of the child process.
    pub child_limits: ChildLimits,
    /// Input limits enforced by the engine in the child.
    pub limits: Limits,
    /// How long this server keeps files at most (artifacts from when their job succeeded); an
    /// account's plan may keep them shorter.
    pub retention: audiomill_core::Retention,
    /// Where separation models are installed (`<data>/models`); `separate` jobs fail with
    /// `model_not_installed` when `None` or when their model is not there.
    pub models_dir: Option<PathBuf>,
    /// Threads one job child may use for its tensor work (`RAYON_NUM_THREADS`); by default the
    /// cores shared out among the concurrent jobs, so that jobs do not oversubscribe the CPU.
    pub job_threads: usize,
    /// What URL inputs may reach: the outbound policy, applied at every connection.
    pub url_policy: audiomill_net::UrlPolicy,
    /// Hosts whose links are downloaded with yt-dlp; other links are fetched directly.
    pub sites: audiomill_net::SiteList,
    /// How yt-dlp runs; with `None`, links to sites fail with `download_failed`.
    pub ytdlp: Option<audiomill_net::YtDlpConfig>,
    /// Longest wait for the next bytes of a direct download.
    pub fetch_idle_timeout: Duration,
}

/// Time limits per operation: an analysis that takes as long as a separation is stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationTimeouts {
    pub analyze: Duration,
    pub convert: Duration,
    pub separate: Duration,
    pub download: Duration,
}

impl Default for OperationTimeouts {
    fn default() -> Self {
        Self {
            analyze: Duration::from_secs(15 * 60),
            convert: Duration::from_secs(30 * 60),
            separate: Duration::from_secs(60 * 60),
            download: Duration::from_secs(30 * 60),
        }
    }
}

impl OperationTimeouts {
    /// The limit of `operation`.
    pub fn of(&self, operation: audiomill_core::OperationKind) -> Duration {
        use audiomill_core::OperationKind;
        match operation {
            OperationKind::Analyze => self.analyze,
            OperationKind::Convert => self.convert,
            OperationKind::Separate => self.separate,
            OperationKind::Download => self.download,
        }
    }
}

/// Resource limits (rlimits) of a job's child process. A value of 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChildLimits {
    /// `RLIMIT_AS`: address space, in bytes. Allocation beyond it fails and the child aborts.
    pub address_space_bytes: u64,
    /// `RLIMIT_CPU`: CPU time, in seconds; the child gets `SIGXCPU` beyond it.
    pub cpu_seconds: u64,
    /// `RLIMIT_FSIZE`: largest file the child may write, in bytes; `SIGXFSZ` beyond it.
    pub output_file_bytes: u64,
}

impl Default for ChildLimits {
    fn default() -> Self {
        Self {
            address_space_bytes: 4 << 30,
            cpu_seconds: 3600,
            output_file_bytes: 4 << 30,
        }
    }
}

impl Default for WorkerConfig {
    fn default() -> Self {
        let program = std::env::current_exe()
            .map(PathBuf::into_os_string)
            .unwrap_or_else(|_| "audiomill".into());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            concurrency: cores,
            owner: default_owner(),
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_millis(500),
            poll: Duration::from_secs(1),
            backoff_base: Duration::from_secs(2),
            backoff_max: Duration::from_secs(5 * 60),
            grace_period: Duration::from_secs(30),
            job_timeout: Duration::from_secs(60 * 60),
            operation_timeouts: OperationTimeouts::default(),
            child_command: vec![program, "__run-job".into()],
            temp_dir: std::env::temp_dir().join("audiomill-jobs"),
            child_limits: ChildLimits::default(),
            limits: Limits::default(),
            retention: audiomill_core::Retention {
                uploads: Duration::from_secs(24 * 60 * 60),
                artifacts: Duration::from_secs(24 * 60 * 60),
            },
            models_dir: None,
            job_threads: 1,
            url_policy: audiomill_net::UrlPolicy::default(),
            sites: audiomill_net::SiteList::default(),
            ytdlp: None,
            fetch_idle_timeout: Duration::from_secs(30),
        }
    }
}

/// `hostname-pid-ulid`: unique per process, and tells an operator where a lease came from.
pub(crate) fn default_owner() -> String {
    format!(
        "{}-{}-{}",
        hostname(),
        std::process::id(),
        ulid::Ulid::new().to_string().to_ascii_lowercase()
    )
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `len` bytes; gethostname NUL-terminates on success when
    // the name fits, and we stop at the first NUL or the end of the buffer either way.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name: String = String::from_utf8_lossy(&buf[..end])
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .collect();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_sane() {
        let c = WorkerConfig::default();
        assert!(c.concurrency >= 1);
        assert!(c.heartbeat < c.lease);
        assert_eq!(c.child_command.len(), 2);
        assert_eq!(c.child_limits.address_space_bytes, 4 * 1024 * 1024 * 1024);
        let (a, b) = (default_owner(), default_owner());
        assert_ne!(a, b);
        assert!(a.contains(&std::process::id().to_string()));
    }
}

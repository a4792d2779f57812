//! Probing uploads in a sandboxed child process.
//!
//! The server never parses untrusted media itself: it runs `audiomill __probe FILE` with the
//! same resource limits and empty environment as a job, and reads one JSON line back. A probe
//! that crashes or blows its limits is a `415`, never a dead server.

use async_trait::async_trait;
use audiomill_core::{ErrorCode, JobError, Limits, MediaInfo};
use audiomill_worker::ChildLimits;
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// What the probe child prints.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ProbeOutput {
    Probed { media: MediaInfo },
    Failed { error: JobError },
}

/// Body of `audiomill __probe FILE`: limits come on stdin as JSON.
pub fn child_main(path: &Path) -> ExitCode {
    let mut input = String::new();
    let limits: Limits = match std::io::stdin()
        .read_line(&mut input)
        .ok()
        .and_then(|_| serde_json::from_str(&input).ok())
    {
        Some(l) => l,
        None => return ExitCode::from(2),
    };
    let result = std::panic::catch_unwind(|| audiomill_media::probe(path, &limits));
    let output = match result {
        Ok(Ok(media)) => ProbeOutput::Probed { media },
        Ok(Err(e)) => ProbeOutput::Failed {
            error: JobError::new(e.code(), e.public_message()),
        },
        Err(_) => ProbeOutput::Failed {
            error: JobError::new(
                ErrorCode::DecodeFailed,
                "the file could not be read as audio",
            ),
        },
    };
    match serde_json::to_string(&output) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(_) => ExitCode::FAILURE,
    }
}

/// Spawns the probe child for each upload.
pub struct ChildProber {
    program: PathBuf,
    limits: ChildLimits,
    timeout: Duration,
}

impl ChildProber {
    pub fn new(program: PathBuf, limits: ChildLimits) -> Self {
        Self {
            program,
            limits,
            timeout: Duration::from_secs(60),
        }
    }
}

#[async_trait]
impl audiomill_server::Prober for ChildProber {
    async fn probe(&self, path: &Path, limits: &Limits) -> Result<MediaInfo, JobError> {
        let internal = |what: &str| JobError::new(ErrorCode::Internal, format!("probe {what}"));
        let args: Vec<OsString> = vec!["__probe".into(), path.as_os_str().to_owned()];
        let mut command =
            audiomill_worker::sandboxed_command(self.program.as_os_str(), &args, &self.limits);
        let limits_json = serde_json::to_string(limits).map_err(|_| internal("input"))?;
        let output = tokio::time::timeout(self.timeout, run_with_stdin(&mut command, limits_json))
            .await
            .map_err(|_| JobError::new(ErrorCode::Timeout, "probing the file took too long"))?
            .map_err(|e| {
                tracing::error!(error = %e, "probe child could not run");
                internal("could not run")
            })?;
        let line = String::from_utf8_lossy(&output.stdout);
        match serde_json::from_str::<ProbeOutput>(line.trim()) {
            Ok(ProbeOutput::Probed { media }) => Ok(media),
            Ok(ProbeOutput::Failed { error }) => Err(error),
            Err(_) => {
                tracing::warn!(status = ?output.status, "probe child died");
                Err(JobError::new(
                    ErrorCode::ResourceLimit,
                    "the file could not be probed within the resource limits",
                ))
            }
        }
    }
}

async fn run_with_stdin(
    command: &mut tokio::process::Command,
    input: String,
) -> std::io::Result<std::process::Output> {
    use tokio::io::AsyncWriteExt;
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes()).await?;
        stdin.write_all(b"\n").await?;
    }
    child.wait_with_output().await
}

//! The job child: started in its sandbox with the task on stdin, watched until it ends (or
//! is killed: cancel, lost lease, time limit, shutdown), and judged by what it said and how it
//! exited.

use crate::attempt::{Attempt, RunEnd};
use crate::errors::{crashed, internal};
use crate::lease::{AbortOnDrop, LeaseState};
use crate::protocol::{ChildMessage, ChildTask, MAX_LINE_BYTES};
use crate::sandbox::{kill_group, sandboxed_command};
use audiomill_core::{ErrorCode, JobError};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStderr, ChildStdout};
use tokio::sync::watch;
use tracing::Instrument;

/// Bytes of the child's stderr kept for the logs (the end of it).
const STDERR_TAIL_BYTES: usize = 8 * 1024;
/// How long to wait for the child's pipes to close once its group is dead.
const PIPE_DRAIN: Duration = Duration::from_secs(2);
/// Longest error message accepted from the child.
const MAX_MESSAGE_CHARS: usize = 1000;

/// Runs the child on `task` in the attempt's directory until it ends. Its progress is mapped
/// onto `offset..1` (the part after a URL input's download).
pub(crate) async fn run_child(at: &Attempt<'_>, task: &ChildTask, offset: f64) -> RunEnd {
    let config = &at.shared.config;
    let Some((program, args)) = config.child_command.split_first() else {
        tracing::error!("worker child_command is empty");
        return RunEnd::Failed(internal());
    };
    // A relative program path would be looked up from the job directory (the child's cwd).
    let program = match Path::new(program) {
        p if p.is_relative() && p.components().count() > 1 => match std::path::absolute(p) {
            Ok(p) => p.into_os_string(),
            Err(_) => program.clone(),
        },
        _ => program.clone(),
    };
    let mut command = sandboxed_command(&program, args, &config.child_limits);
    command
        .env("RAYON_NUM_THREADS", config.job_threads.max(1).to_string())
        .current_dir(at.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            tracing::error!(error = %e, program = ?program, "cannot start the job child");
            return RunEnd::Failed(internal());
        }
    };
    let mut group = ProcessGroup(child.id());
    tracing::debug!(pid = ?child.id(), "job child started");

    let mut payload = serde_json::to_vec(task).expect("a task serializes to JSON");
    payload.push(b'\n');
    // Written from its own task so a child that never reads cannot stall us; errors (a child
    // that exited early) show in its exit status.
    let writer = child.stdin.take().map(|mut stdin| {
        AbortOnDrop(tokio::spawn(async move {
            let _ = stdin.write_all(&payload).await;
            let _ = stdin.shutdown().await;
        }))
    });
    let reader = child.stdout.take().map(|stdout| {
        AbortOnDrop(tokio::spawn(
            read_stdout(stdout, at.progress.clone(), offset).in_current_span(),
        ))
    });
    let stderr = child
        .stderr
        .take()
        .map(|stderr| AbortOnDrop(tokio::spawn(read_tail(stderr))));

    enum Stopped {
        Exited(std::io::Result<ExitStatus>),
        Canceled,
        Lost,
        TimedOut,
        Shutdown,
    }
    let mut lease_state = at.keeper.subscribe();
    let mut keeper_alive = true;
    let stopped = loop {
        tokio::select! {
            status = child.wait() => break Stopped::Exited(status),
            changed = lease_state.changed(), if keeper_alive => {
                if changed.is_err() {
                    keeper_alive = false;
                    continue;
                }
                let state = *lease_state.borrow_and_update();
                match state {
                    LeaseState::Held => {}
                    LeaseState::CancelRequested => break Stopped::Canceled,
                    LeaseState::Lost => break Stopped::Lost,
                }
            }
            _ = tokio::time::sleep_until(at.deadline) => break Stopped::TimedOut,
            _ = at.stop.cancelled() => break Stopped::Shutdown,
        }
    };
    // Kill the group: the child if it still runs, and anything it left behind if it exited.
    group.kill();
    if !matches!(stopped, Stopped::Exited(_)) {
        let _ = child.wait().await;
    }
    drop(writer);
    let report = match reader {
        Some(reader) => tokio::time::timeout(PIPE_DRAIN, reader.join())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| StdoutReport {
                violation: Some("stdout did not close".into()),
                ..StdoutReport::default()
            }),
        None => StdoutReport::default(),
    };
    let stderr_tail = match stderr {
        Some(tail) => tokio::time::timeout(PIPE_DRAIN, tail.join())
            .await
            .ok()
            .flatten()
            .unwrap_or_default(),
        None => Vec::new(),
    };
    let stderr_text = String::from_utf8_lossy(&stderr_tail);

    match stopped {
        Stopped::Canceled => {
            tracing::info!("cancel requested: job child killed");
            RunEnd::Canceled
        }
        Stopped::Lost => {
            tracing::warn!("lease lost: job child killed");
            RunEnd::Lost
        }
        Stopped::Shutdown => {
            tracing::info!("shutdown: job child killed");
            RunEnd::Requeue
        }
        Stopped::TimedOut => {
            tracing::warn!(stderr = %stderr_text, "job timed out: child killed");
            RunEnd::Failed(JobError::new(
                ErrorCode::Timeout,
                format!(
                    "the job ran longer than its time limit of {}",
                    human_duration(at.time_limit)
                ),
            ))
        }
        Stopped::Exited(Err(e)) => {
            tracing::error!(error = %e, "cannot wait for the job child");
            RunEnd::Failed(internal())
        }
        Stopped::Exited(Ok(status)) => {
            let end = judge(status, report);
            match &end {
                RunEnd::Done { .. } => {
                    tracing::debug!(stderr = %stderr_text, "job child succeeded")
                }
                RunEnd::Failed(error) => tracing::warn!(
                    %status,
                    code = %error.code,
                    stderr = %stderr_text,
                    "job child failed"
                ),
                _ => {}
            }
            end
        }
    }
}

/// Reads what a child that exited on its own means.
fn judge(status: ExitStatus, report: StdoutReport) -> RunEnd {
    if let Some(violation) = &report.violation {
        tracing::warn!(violation, "job child broke the protocol");
    }
    if status.success() && report.violation.is_none() {
        match report.final_message {
            Some(ChildMessage::Succeeded {
                artifacts,
                result,
                audio_seconds,
            }) => {
                return RunEnd::Done {
                    artifacts,
                    result,
                    audio_seconds,
                }
            }
            Some(ChildMessage::Failed { mut error }) => {
                if error.message.chars().count() > MAX_MESSAGE_CHARS {
                    error.message = error.message.chars().take(MAX_MESSAGE_CHARS).collect();
                }
                return RunEnd::Failed(error);
            }
            Some(ChildMessage::Progress { .. }) | None => {
                tracing::warn!("job child exited without a final line");
                return RunEnd::Failed(crashed());
            }
        }
    }
    RunEnd::Failed(error_for_status(status))
}

/// The error of a child that died (by a signal or a non-zero exit) without a usable answer.
fn error_for_status(status: ExitStatus) -> JobError {
    match status.signal() {
        Some(libc::SIGXCPU) => JobError::new(
            ErrorCode::Timeout,
            "the job used more CPU time than it is allowed",
        ),
        Some(libc::SIGXFSZ) => JobError::new(
            ErrorCode::ResourceLimit,
            "the job's output exceeded the file size limit",
        ),
        // Allocation failure under RLIMIT_AS aborts; a failed stack or mmap growth faults.
        Some(libc::SIGABRT | libc::SIGSEGV | libc::SIGBUS) => JobError::new(
            ErrorCode::ResourceLimit,
            "the job exceeded its memory limit",
        ),
        _ => crashed(),
    }
}

/// `1 h`, `90 min`, `45 s`, `300 ms`: the largest unit that states `d` exactly.
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (hours, minutes) = (secs / 3600, secs / 60);
    if hours > 0 && hours * 3600 == secs {
        format!("{hours} h")
    } else if minutes > 0 && minutes * 60 == secs {
        format!("{minutes} min")
    } else if secs >= 1 {
        format!("{secs} s")
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Kills the child's process group once, at the latest when dropped (a panic or an aborted
/// task never leaves a child running).
struct ProcessGroup(Option<u32>);

impl ProcessGroup {
    fn kill(&mut self) {
        if let Some(pid) = self.0.take() {
            kill_group(pid);
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What the child said on stdout.
#[derive(Debug, Default)]
struct StdoutReport {
    final_message: Option<ChildMessage>,
    violation: Option<String>,
}

/// Reads protocol lines: progress goes to `progress` (mapped onto `offset..1`, the part after
/// the input's download), the final line is kept. Anything off
/// protocol is noted and the rest drained.
async fn read_stdout(
    stdout: ChildStdout,
    progress: watch::Sender<Option<f64>>,
    offset: f64,
) -> StdoutReport {
    let mut reader = BufReader::new(stdout);
    let mut report = StdoutReport::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .await;
        match read {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                report
                    .violation
                    .get_or_insert(format!("stdout read error: {e}"));
                break;
            }
        }
        if line.len() > MAX_LINE_BYTES && line.last() != Some(&b'\n') {
            report.violation.get_or_insert("line too long".into());
            let _ = tokio::io::copy(&mut reader, &mut tokio::io::sink()).await;
            break;
        }
        if report.violation.is_some() {
            continue;
        }
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_slice::<ChildMessage>(text) {
            Ok(_) if report.final_message.is_some() => {
                report.violation = Some("message after the final line".into());
            }
            Ok(ChildMessage::Progress { fraction }) => {
                if fraction.is_finite() {
                    let fraction = fraction.clamp(0.0, 1.0);
                    progress.send_replace(Some(offset + (1.0 - offset) * fraction));
                }
            }
            Ok(message) => report.final_message = Some(message),
            Err(e) => report.violation = Some(format!("malformed line: {e}")),
        }
    }
    report
}

/// The last [`STDERR_TAIL_BYTES`] of the child's stderr.
async fn read_tail(mut stderr: ChildStderr) -> Vec<u8> {
    let mut tail = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                tail.extend_from_slice(&buf[..n]);
                if tail.len() > 2 * STDERR_TAIL_BYTES {
                    tail.drain(..tail.len() - STDERR_TAIL_BYTES);
                }
            }
        }
    }
    if tail.len() > STDERR_TAIL_BYTES {
        tail.drain(..tail.len() - STDERR_TAIL_BYTES);
    }
    tail
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(Duration::from_secs(3600)), "1 h");
        assert_eq!(human_duration(Duration::from_secs(5400)), "90 min");
        assert_eq!(human_duration(Duration::from_secs(45)), "45 s");
        assert_eq!(human_duration(Duration::from_millis(300)), "300 ms");
    }
}

//! One attempt of one job: input → sandboxed child → artifacts → the store.

use crate::backoff::backoff;
use crate::fetch::{self, FetchedInput};
use crate::jobdir::JobDir;
use crate::metrics::{Outcome, WorkerMetrics};
use crate::protocol::{ChildArtifact, ChildMessage, ChildTask, MAX_ARTIFACTS, MAX_LINE_BYTES};
use crate::sandbox::{kill_group, sandboxed_command};
use crate::WorkerConfig;
use audiomill_blob::{BlobError, BlobKey, BlobStore};
use audiomill_core::{
    ArtifactId, AudioFormat, DownloadOptions, ErrorCode, InputRef, InputUrl, JobError, JobId,
    Limits, Operation, OperationKind, OutputSpec, PlanLimits,
};
use audiomill_net::PlaylistMeta;
use audiomill_store::{Artifact, ClaimedJob, Heartbeat, Job, Lease, NewJob, Reservation, Store};
use chrono::Utc;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStderr, ChildStdout};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Bytes of the child's stderr kept for the logs (the end of it).
const STDERR_TAIL_BYTES: usize = 8 * 1024;
/// How long to wait for the child's pipes to close once its group is dead.
const PIPE_DRAIN: Duration = Duration::from_secs(2);
/// Longest error message accepted from the child.
const MAX_MESSAGE_CHARS: usize = 1000;

/// What every job task shares.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) blob: Arc<dyn BlobStore>,
    pub(crate) config: WorkerConfig,
    pub(crate) metrics: WorkerMetrics,
}

/// How the child phase of an attempt ended.
enum RunEnd {
    /// The child reported success; its files are still in the job directory.
    Done {
        artifacts: Vec<ChildArtifact>,
        result: Option<serde_json::Value>,
        audio_seconds: f64,
    },
    /// The attempt failed with this error (retried if the code is retryable).
    Failed(JobError),
    /// The owner asked to cancel; the child is dead.
    Canceled,
    /// The lease is no longer ours; write nothing.
    Lost,
    /// Shutdown: give the job back to the queue.
    Requeue,
    /// The input is a playlist: the job becomes the parent of one job per item.
    Expand(PlaylistMeta),
}

/// What to record in the store.
enum Final {
    Succeeded {
        rows: Vec<Artifact>,
        result: Option<serde_json::Value>,
        audio_seconds: f64,
    },
    Failed(JobError),
    Canceled,
    Lost,
    Requeue,
    Expand(PlaylistMeta, PlanLimits),
}

/// Runs one claimed job to the end of this attempt and records the outcome. `stop` kills the
/// child and requeues the job (the end of the shutdown grace period).
pub(crate) async fn run_job(
    shared: Arc<Shared>,
    claimed: ClaimedJob,
    stop: CancellationToken,
) -> Outcome {
    let started = Instant::now();
    tracing::info!("job attempt started");
    let outcome = attempt(&shared, &claimed, &stop, started).await;
    let took = started.elapsed();
    shared
        .metrics
        .finished(claimed.job.operation, outcome, took);
    tracing::info!(
        outcome = outcome.as_str(),
        duration_ms = took.as_millis() as u64,
        "job attempt finished"
    );
    outcome
}

async fn attempt(
    shared: &Shared,
    claimed: &ClaimedJob,
    stop: &CancellationToken,
    started: Instant,
) -> Outcome {
    let job = &claimed.job;
    // The account's plan, read once: it narrows the job's limits, its artifacts' retention and
    // a playlist's items.
    let plan = match shared.store.account_limits(job.account_id).await {
        Ok((_, plan)) => plan,
        Err(e) => {
            tracing::error!(error = %e, "cannot read the account's plan");
            return record(shared, claimed, Final::Failed(internal())).await;
        }
    };
    let (progress_tx, progress_rx) = watch::channel(None);
    let keeper = LeaseKeeper::spawn(shared, claimed.lease.clone(), progress_rx);
    let name = format!("{}-{}", job.id, claimed.lease.attempt);
    let end = match JobDir::create(&shared.config.temp_dir, &name) {
        Err(e) => {
            tracing::error!(error = %e, dir = %shared.config.temp_dir.display(), "cannot create job directory");
            drop(keeper);
            return record(shared, claimed, Final::Failed(internal())).await;
        }
        Ok(dir) => {
            let end = run_child(
                shared,
                claimed,
                &plan,
                &dir,
                &keeper,
                progress_tx,
                stop,
                started
                    .checked_add(time_limit(&shared.config, job.operation))
                    .unwrap_or_else(|| started + Duration::from_secs(100 * 365 * 86_400)),
            )
            .await;
            // Artifacts move into blob storage while the directory still exists; the directory
            // is gone before the job is released (a requeued job may be claimed again at once,
            // with the same directory name).
            let end = match end {
                RunEnd::Done {
                    artifacts,
                    result,
                    audio_seconds,
                } => match ingest(shared, claimed, &plan, &dir, artifacts).await {
                    Ok(rows) => Final::Succeeded {
                        rows,
                        result,
                        audio_seconds,
                    },
                    Err(error) => Final::Failed(error),
                },
                RunEnd::Failed(error) => Final::Failed(error),
                RunEnd::Canceled => Final::Canceled,
                RunEnd::Lost => Final::Lost,
                RunEnd::Requeue => Final::Requeue,
                RunEnd::Expand(list) => Final::Expand(list, plan),
            };
            drop(dir);
            end
        }
    };
    drop(keeper);
    record(shared, claimed, end).await
}

/// The limits of this job: the worker's, narrowed by the account's plan, and for an input
/// whose length was unknown when it was accepted (a link, an artifact) by the seconds it
/// reserved, so that no job can process more than its account was charged for.
fn job_limits(config: &WorkerConfig, plan: &PlanLimits, job: &Job) -> Limits {
    let mut limits = config.limits;
    limits.max_upload_bytes = limits.max_upload_bytes.min(plan.max_upload_bytes);
    limits.max_duration_secs = limits.max_duration_secs.min(plan.max_input_seconds);
    limits.max_playlist_items = limits.max_playlist_items.min(plan.max_playlist_items);
    if job.input_seconds.is_none() && job.reserved_seconds > 0.0 {
        let reserved = job.reserved_seconds.ceil() as u64;
        limits.max_duration_secs = limits.max_duration_secs.min(reserved.max(1));
    }
    limits
}

/// Runs `work` until it ends, or until the job is canceled, the lease is lost, the deadline
/// passes or the worker shuts down (then `work` is dropped, which stops it).
async fn guarded<T>(
    work: impl std::future::Future<Output = T>,
    keeper: &LeaseKeeper,
    stop: &CancellationToken,
    deadline: Instant,
) -> Result<T, RunEnd> {
    let mut lease_state = keeper.subscribe();
    let watch_lease = async {
        loop {
            if lease_state.changed().await.is_err() {
                return std::future::pending().await;
            }
            let state = *lease_state.borrow_and_update();
            match state {
                LeaseState::Held => {}
                LeaseState::CancelRequested => return RunEnd::Canceled,
                LeaseState::Lost => return RunEnd::Lost,
            }
        }
    };
    tokio::select! {
        done = work => Ok(done),
        end = watch_lease => Err(end),
        _ = tokio::time::sleep_until(deadline) => Err(RunEnd::Failed(JobError::new(
            ErrorCode::Timeout,
            "the download did not finish in the job's time limit",
        ))),
        _ = stop.cancelled() => Err(RunEnd::Requeue),
    }
}

/// Makes the job the parent of one `download` job per playlist entry that the outbound policy
/// accepts, all in one store transaction.
pub(crate) async fn expand(
    shared: &Shared,
    claimed: &ClaimedJob,
    plan: &PlanLimits,
    list: PlaylistMeta,
) -> Outcome {
    let job = &claimed.job;
    let Ok(Operation::Download(options)) = Operation::from_parts(job.operation, &job.options)
    else {
        return fail(shared, claimed, internal()).await;
    };
    let item_options = Operation::Download(DownloadOptions {
        playlist: false,
        max_items: None,
        convert: options.convert,
    })
    .options_json();
    let now = Utc::now();
    let period = audiomill_core::usage_period(now);
    let mut children = Vec::with_capacity(list.entries.len());
    let mut items = Vec::with_capacity(list.entries.len());
    let mut skipped = 0usize;
    for (i, entry) in list.entries.iter().enumerate() {
        let accepted = InputUrl::parse(&entry.url).ok().filter(|url| {
            audiomill_net::OutboundUrl::parse(url.as_str(), &shared.config.url_policy).is_ok()
        });
        let Some(url) = accepted else {
            tracing::warn!(target: "security", event = "blocked_url", item = i, "playlist item refused by the URL policy");
            skipped += 1;
            continue;
        };
        let name = entry
            .title
            .as_deref()
            .and_then(fetch::name_from_title)
            .unwrap_or_else(|| format!("item {}", i + 1));
        let id = JobId::new();
        items.push(serde_json::json!({
            "job": id,
            "title": entry.title,
            "duration_secs": entry.duration,
        }));
        children.push(NewJob {
            id,
            account_id: job.account_id,
            operation: OperationKind::Download,
            options: item_options.clone(),
            input: InputRef::Url(url),
            output: OutputSpec { name: Some(name) },
            input_seconds: entry.duration,
            max_attempts: job.max_attempts,
            created_at: now,
            parent_id: Some(job.id),
            // Each item holds its own share of the quota (its stated length, else the longest
            // input the plan allows); the parent holds the one active-job slot.
            reservation: Some(Reservation {
                period: period.clone(),
                seconds: entry
                    .duration
                    .filter(|d| d.is_finite() && *d > 0.0)
                    .unwrap_or(plan.max_input_seconds as f64),
                quota_seconds: plan.audio_seconds_per_month,
                concurrent_jobs: None,
            }),
        });
    }
    if children.is_empty() {
        return fail(
            shared,
            claimed,
            JobError::new(
                ErrorCode::MediaUnavailable,
                "the playlist has no items to download",
            ),
        )
        .await;
    }
    let result = serde_json::json!({
        "playlist": {
            "id": list.id,
            "title": list.title,
            "uploader": list.uploader,
            "truncated": list.truncated,
            "skipped": skipped,
        },
        "items": items,
    });
    match shared
        .store
        .expand_job(&claimed.lease, &children, result)
        .await
    {
        Ok(true) => {
            tracing::info!(
                items = children.len(),
                truncated = list.truncated,
                "playlist expanded"
            );
            Outcome::Succeeded
        }
        Ok(false) => Outcome::Lost,
        Err(e) => {
            tracing::error!(error = %e, "cannot record the playlist's items");
            fail(shared, claimed, internal()).await
        }
    }
}

/// How long one attempt of an `operation` job may run.
fn time_limit(config: &WorkerConfig, operation: OperationKind) -> Duration {
    config
        .job_timeout
        .min(config.operation_timeouts.of(operation))
}

pub(crate) fn internal() -> JobError {
    JobError::new(
        ErrorCode::Internal,
        "an internal error interrupted the job; it will be retried",
    )
}

fn crashed() -> JobError {
    JobError::new(
        ErrorCode::WorkerCrashed,
        "the process running the job stopped unexpectedly",
    )
}

fn input_not_found() -> JobError {
    JobError::new(ErrorCode::InputNotFound, "the job's input no longer exists")
}

/// A stored input: its blob key, and the name it came with (an upload's file name, an
/// artifact's download name), which the job's artifacts are named after.
struct StoredInput {
    key: BlobKey,
    name: Option<String>,
}

/// The input's blob key and name, from the job's account only.
async fn resolve_input(shared: &Shared, claimed: &ClaimedJob) -> Result<StoredInput, JobError> {
    let job = &claimed.job;
    let stored = match &job.input {
        &InputRef::Upload(id) => shared
            .store
            .get_upload(job.account_id, id)
            .await
            .map(|u| u.map(|u| (u.blob_key, u.filename))),
        &InputRef::Artifact(id) => shared
            .store
            .get_artifact(job.account_id, id)
            .await
            .map(|a| a.map(|a| (a.blob_key, Some(a.name)))),
        InputRef::Url(_) => {
            tracing::error!("a URL input has no stored bytes to copy");
            return Err(internal());
        }
    };
    match stored {
        Ok(Some((key, name))) => match BlobKey::from_stored(&key) {
            Some(key) => Ok(StoredInput {
                key,
                name: name.as_deref().and_then(fetch::name_from_file),
            }),
            None => {
                tracing::error!(key, "input row holds an invalid blob key");
                Err(internal())
            }
        },
        Ok(None) => Err(input_not_found()),
        Err(e) => {
            tracing::error!(error = %e, "cannot look up the job's input");
            Err(internal())
        }
    }
}

/// The descriptor of a `separate` job's model (`None` for other operations). A model removed
/// since the job was accepted fails the job for good: retrying cannot bring it back.
fn resolve_model(models_dir: Option<&Path>, job: &Job) -> Result<Option<PathBuf>, JobError> {
    if job.operation != OperationKind::Separate {
        return Ok(None);
    }
    let options = match Operation::from_parts(job.operation, &job.options) {
        Ok(Operation::Separate(options)) => options,
        Ok(_) | Err(_) => {
            return Err(JobError::new(
                ErrorCode::InvalidInput,
                "the job's options are not valid separate options",
            ))
        }
    };
    let not_installed = |detail: String| JobError::new(ErrorCode::ModelNotInstalled, detail);
    let Some(dir) = models_dir else {
        return Err(not_installed(format!(
            "model {} is not installed on this worker",
            options.model
        )));
    };
    let store = audiomill_models::ModelStore::new(dir.to_path_buf());
    match store.resolve(
        options.model.as_str(),
        &audiomill_models::Catalog::official(),
    ) {
        Ok(installed) => Ok(Some(installed.descriptor)),
        Err(e @ audiomill_models::ModelsError::NotInstalled { .. }) => {
            Err(not_installed(e.to_string()))
        }
        Err(e) => {
            tracing::error!(error = %e, model = %options.model, "cannot resolve the job's model");
            Err(not_installed(format!(
                "model {} could not be loaded on this worker",
                options.model
            )))
        }
    }
}

/// Copies the input in, runs the child and watches it until it ends.
#[allow(clippy::too_many_arguments)]
async fn run_child(
    shared: &Shared,
    claimed: &ClaimedJob,
    plan: &PlanLimits,
    dir: &JobDir,
    keeper: &LeaseKeeper,
    progress: watch::Sender<Option<f64>>,
    stop: &CancellationToken,
    deadline: Instant,
) -> RunEnd {
    let config = &shared.config;
    let job = &claimed.job;

    // Reads the model's manifest and checks its files: blocking file system work.
    let resolved = {
        let (dir, job) = (config.models_dir.clone(), job.clone());
        tokio::task::spawn_blocking(move || resolve_model(dir.as_deref(), &job)).await
    };
    let model = match resolved {
        Ok(Ok(model)) => model,
        Ok(Err(error)) => return RunEnd::Failed(error),
        Err(e) => {
            tracing::error!(error = %e, "model lookup task failed");
            return RunEnd::Failed(internal());
        }
    };
    let operation = match Operation::from_parts(job.operation, &job.options) {
        Ok(operation) => operation,
        Err(e) => return RunEnd::Failed(JobError::new(ErrorCode::InvalidInput, e.0)),
    };
    // The share of the progress bar the download of a URL input takes.
    let fetch_share = match (&job.input, &operation) {
        (InputRef::Url(_), Operation::Download(o)) if o.convert.is_none() => 0.95,
        (InputRef::Url(_), Operation::Download(_)) => 0.5,
        (InputRef::Url(_), _) => 0.3,
        _ => 0.0,
    };
    let limits = job_limits(config, plan, job);
    let mut source = None;
    // What the artifacts are named after, unless the job names them.
    let input_name;
    if let InputRef::Url(url) = &job.input {
        let playlist = match &operation {
            Operation::Download(o) if o.playlist => Some(
                o.max_items
                    .unwrap_or(limits.max_playlist_items)
                    .min(limits.max_playlist_items),
            ),
            _ => None,
        };
        let time_left = deadline.saturating_duration_since(Instant::now());
        let sender = progress.clone();
        let mut report = move |fraction: f64| {
            sender.send_replace(Some(fraction * fetch_share));
        };
        let fetching =
            fetch::fetch_input(config, &limits, url, dir, playlist, time_left, &mut report);
        match guarded(fetching, keeper, stop, deadline).await {
            Err(end) => return end,
            Ok(Err(error)) => return RunEnd::Failed(error),
            Ok(Ok(FetchedInput::Playlist(list))) => return RunEnd::Expand(list),
            Ok(Ok(FetchedInput::Media(meta))) => {
                // A site's title; for a direct link, the linked file's name (after redirects).
                input_name = match &meta.extractor {
                    Some(_) => meta.title.as_deref().and_then(fetch::name_from_title),
                    None => fetch::name_from_url(meta.webpage_url.as_deref().unwrap_or(&meta.url)),
                };
                source = Some(meta);
            }
        }
    } else {
        let stored = match resolve_input(shared, claimed).await {
            Ok(stored) => stored,
            Err(error) => return RunEnd::Failed(error),
        };
        input_name = stored.name;
        let input = dir.input();
        let copied = tokio::select! {
            copied = shared.blob.get_to_file(&stored.key, &input) => copied,
            _ = stop.cancelled() => return RunEnd::Requeue,
        };
        match copied {
            Ok(_) => {}
            Err(BlobError::NotFound(_)) => return RunEnd::Failed(input_not_found()),
            Err(e) => {
                tracing::error!(error = %e, "cannot copy the input into the job directory");
                return RunEnd::Failed(internal());
            }
        }
    }
    match keeper.state() {
        LeaseState::Held => {}
        LeaseState::CancelRequested => return RunEnd::Canceled,
        LeaseState::Lost => return RunEnd::Lost,
    }

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
        .current_dir(dir.path())
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

    let task = ChildTask {
        operation: job.operation,
        options: job.options.clone(),
        input: dir.input(),
        output_dir: dir.output_dir(),
        // Named after the input (its file name, or a link's title) unless the job names it.
        output_name: job
            .output
            .name
            .clone()
            .or(input_name)
            .unwrap_or_else(|| "output".to_owned()),
        limits,
        model,
        source,
    };
    let mut payload = serde_json::to_vec(&task).expect("a task serializes to JSON");
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
            read_stdout(stdout, progress, fetch_share).in_current_span(),
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
    let mut lease_state = keeper.subscribe();
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
            _ = tokio::time::sleep_until(deadline) => break Stopped::TimedOut,
            _ = stop.cancelled() => break Stopped::Shutdown,
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
                    human_duration(time_limit(config, job.operation))
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
pub(crate) fn error_for_status(status: ExitStatus) -> JobError {
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

/// Content types an artifact may have: what the engine writes, nothing a browser would run.
fn allowed_content_type(content_type: &str) -> bool {
    const FORMATS: [AudioFormat; 4] = [
        AudioFormat::Wav,
        AudioFormat::Flac,
        AudioFormat::Mp3,
        AudioFormat::Opus,
    ];
    // A new format must be added above: this match stops compiling until it is.
    match AudioFormat::Wav {
        AudioFormat::Wav | AudioFormat::Flac | AudioFormat::Mp3 | AudioFormat::Opus => {}
    }
    // JSON reports and PNG waveforms of `analyze`.
    const OTHERS: [&str; 2] = ["application/json", "image/png"];
    OTHERS.contains(&content_type)
        || FORMATS.iter().any(|f| f.content_type() == content_type)
        // Downloads kept as they came.
        || audiomill_core::media::STORED_CONTENT_TYPES.contains(&content_type)
}

/// A plain file name: no directories, not `.`/`..`.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
}

/// A download name as the child builds it from a validated `output.name`.
fn valid_download_name(name: &str) -> bool {
    let ok_char = |c: char| c.is_alphanumeric() || " -_.()".contains(c);
    !name.is_empty()
        && name.chars().count() <= 160
        && name.chars().all(ok_char)
        && !name.starts_with('.')
}

/// Checks the child's artifacts and moves them into blob storage. On error, removes what it
/// already moved.
async fn ingest(
    shared: &Shared,
    claimed: &ClaimedJob,
    plan: &PlanLimits,
    dir: &JobDir,
    artifacts: Vec<ChildArtifact>,
) -> Result<Vec<Artifact>, JobError> {
    let job = &claimed.job;
    let out = dir.output_dir();
    if artifacts.len() > MAX_ARTIFACTS {
        tracing::warn!(
            count = artifacts.len(),
            "job child reported too many artifacts"
        );
        return Err(crashed());
    }
    for (i, artifact) in artifacts.iter().enumerate() {
        let problem = if !plain_file_name(&artifact.file) {
            Some("file is not a plain file name")
        } else if artifacts[..i].iter().any(|a| a.file == artifact.file) {
            Some("file reported twice")
        } else if !valid_download_name(&artifact.name) {
            Some("invalid download name")
        } else if !allowed_content_type(&artifact.content_type) {
            Some("content type not allowed")
        } else {
            match tokio::fs::symlink_metadata(out.join(&artifact.file)).await {
                Ok(meta) if meta.file_type().is_file() && meta.nlink() == 1 => None,
                Ok(_) => Some("not a regular file"),
                Err(_) => Some("file missing"),
            }
        };
        if let Some(problem) = problem {
            tracing::warn!(
                file = %artifact.file.escape_debug(),
                name = %artifact.name.escape_debug(),
                content_type = %artifact.content_type.escape_debug(),
                problem,
                "job child reported an unusable artifact"
            );
            return Err(crashed());
        }
    }

    let now = Utc::now();
    // The server's retention, or the account's plan's if shorter.
    let retention = plan.retention(shared.config.retention).artifacts;
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let expires_at = now
        .checked_add_signed(retention)
        .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
    let mut rows: Vec<Artifact> = Vec::with_capacity(artifacts.len());
    // Listed by (created_at, id): ascending ids keep the order the child reported them in.
    let ids = ArtifactId::ascending(artifacts.len());
    for (artifact, id) in artifacts.into_iter().zip(ids) {
        let key = BlobKey::artifact(job.id, id);
        match shared.blob.put_file(&key, &out.join(&artifact.file)).await {
            Ok(size) => rows.push(Artifact {
                id,
                account_id: job.account_id,
                job_id: job.id,
                name: artifact.name,
                content_type: artifact.content_type,
                size,
                blob_key: key.to_string(),
                created_at: now,
                expires_at,
            }),
            Err(e) => {
                tracing::error!(error = %e, "cannot store an artifact");
                delete_blobs(shared.blob.as_ref(), &rows).await;
                return Err(internal());
            }
        }
    }
    Ok(rows)
}

async fn delete_blobs(blob: &dyn BlobStore, rows: &[Artifact]) {
    for row in rows {
        if let Some(key) = BlobKey::from_stored(&row.blob_key) {
            if let Err(e) = blob.delete(&key).await {
                tracing::warn!(error = %e, %key, "cannot delete an unrecorded artifact");
            }
        }
    }
}

/// Writes the end of the attempt, fenced on the lease.
async fn record(shared: &Shared, claimed: &ClaimedJob, end: Final) -> Outcome {
    let store = &shared.store;
    let lease = &claimed.lease;
    match end {
        Final::Succeeded {
            rows,
            result,
            audio_seconds,
        } => match store
            .succeed_job(lease, &rows, result, audio_seconds, Utc::now())
            .await
        {
            Ok(true) => {
                shared
                    .metrics
                    .audio_processed(claimed.job.operation, audio_seconds);
                Outcome::Succeeded
            }
            Ok(false) => {
                tracing::warn!("lease lost before the job could be marked succeeded");
                delete_blobs(shared.blob.as_ref(), &rows).await;
                Outcome::Lost
            }
            Err(e) => {
                // It may or may not have committed. Keep the bytes: if no row refers to them,
                // the orphan sweeper removes them; deleting them could break a committed job.
                tracing::error!(error = %e, "cannot record the job's success");
                fail(shared, claimed, internal()).await
            }
        },
        Final::Failed(error) => fail(shared, claimed, error).await,
        Final::Canceled => match store.cancel_running(lease, Utc::now()).await {
            Ok(true) => Outcome::Canceled,
            Ok(false) => Outcome::Lost,
            Err(e) => {
                tracing::error!(error = %e, "cannot record the job's cancellation");
                Outcome::Lost
            }
        },
        Final::Lost => Outcome::Lost,
        Final::Expand(list, plan) => expand(shared, claimed, &plan, list).await,
        Final::Requeue => match store.requeue(lease, Utc::now()).await {
            Ok(true) => Outcome::Requeued,
            Ok(false) => Outcome::Lost,
            Err(e) => {
                tracing::error!(error = %e, "cannot requeue the job");
                Outcome::Lost
            }
        },
    }
}

/// Records a failed attempt; retryable codes get a retry time with backoff.
async fn fail(shared: &Shared, claimed: &ClaimedJob, error: JobError) -> Outcome {
    let config = &shared.config;
    let attempt = claimed.lease.attempt;
    let now = Utc::now();
    let retry_at = error.code.is_retryable().then(|| {
        let delay = backoff(attempt, config.backoff_base, config.backoff_max);
        now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX / 2)
    });
    let retried = retry_at.is_some() && attempt < claimed.job.max_attempts;
    tracing::info!(code = %error.code, message = %error.message, retried, "job attempt failed");
    match shared
        .store
        .fail_job(&claimed.lease, &error, retry_at, now)
        .await
    {
        Ok(true) if retried => Outcome::Retried,
        Ok(true) => Outcome::Failed,
        Ok(false) => Outcome::Lost,
        Err(e) => {
            tracing::error!(error = %e, "cannot record the job's failure");
            Outcome::Lost
        }
    }
}

/// The lease as seen by the heartbeat task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LeaseState {
    Held,
    CancelRequested,
    Lost,
}

/// Heartbeats for the whole attempt: extends the lease, sends the latest progress, and reports
/// a cancel request or a lost lease. Stops when dropped.
struct LeaseKeeper {
    state: watch::Receiver<LeaseState>,
    _task: AbortOnDrop<()>,
}

impl LeaseKeeper {
    fn spawn(shared: &Shared, lease: Lease, mut progress: watch::Receiver<Option<f64>>) -> Self {
        let (tx, rx) = watch::channel(LeaseState::Held);
        let store = shared.store.clone();
        let every = shared.config.heartbeat.max(Duration::from_millis(10));
        let extend = shared.config.lease;
        let task = tokio::spawn(
            async move {
                let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut sent: Option<f64> = None;
                loop {
                    ticks.tick().await;
                    let latest = *progress.borrow_and_update();
                    let report = if latest != sent { latest } else { None };
                    match store.heartbeat(&lease, extend, report, Utc::now()).await {
                        Ok(Heartbeat::Held { cancel_requested }) => {
                            sent = latest;
                            if cancel_requested {
                                tx.send_if_modified(|s| {
                                    let changed = *s == LeaseState::Held;
                                    *s = LeaseState::CancelRequested;
                                    changed
                                });
                            }
                        }
                        Ok(Heartbeat::Lost) => {
                            tx.send_replace(LeaseState::Lost);
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                    }
                }
            }
            .in_current_span(),
        );
        Self {
            state: rx,
            _task: AbortOnDrop(task),
        }
    }

    fn state(&self) -> LeaseState {
        *self.state.borrow()
    }

    fn subscribe(&self) -> watch::Receiver<LeaseState> {
        let mut rx = self.state.clone();
        rx.mark_changed();
        rx
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

/// A task aborted when its handle is dropped.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    async fn join(mut self) -> Option<T> {
        (&mut self.0).await.ok()
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
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

    #[test]
    fn names_and_types() {
        assert!(plain_file_name("output.mp3"));
        for bad in ["", ".", "..", "a/b", "../a", "a\\b", "a\0b"] {
            assert!(!plain_file_name(bad), "{bad:?}");
        }
        assert!(valid_download_name("my song (live).mp3"));
        for bad in ["", ".hidden", "a/b.mp3", "a\"b", "a\r\nb", &"x".repeat(161)] {
            assert!(!valid_download_name(bad), "{bad:?}");
        }
        for ok in [
            "audio/wav",
            "audio/flac",
            "audio/mpeg",
            "application/json",
            "image/png",
        ] {
            assert!(allowed_content_type(ok));
        }
        assert!(!allowed_content_type("text/html"));
        assert!(!allowed_content_type("image/svg+xml"));
    }
}

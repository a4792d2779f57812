//! Tests of the runner and the queue loop with real child processes (`sh -c …` standing in for
//! `audiomill __run-job`), the real SQLite store on a temp file and a real local blob store;
//! and of the reaper.

use crate::attempt::Shared;
use crate::metrics::Outcome;
use crate::runner::run_job;
use crate::{reap_expired, ChildLimits, Worker, WorkerConfig, WorkerMetrics};
use audiomill_blob::{BlobKey, BlobStore, LocalBlobStore};
use audiomill_core::{
    AccountId, ArtifactId, ErrorCode, InputRef, JobId, JobState, MediaInfo, Operation,
    OperationKind, OutputSpec, UploadId,
};
use audiomill_store::{
    AccountStore, Artifact, ClaimedJob, FileStore, InsertJob, Job, JobFilter, JobStore, NewJob,
    Page, QueueStore, SqliteStore, Upload,
};
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

const INPUT: &[u8] = b"RIFFdata";

fn media_info() -> MediaInfo {
    MediaInfo {
        container: "wav".into(),
        codec: "pcm_s16le".into(),
        duration_secs: Some(1.0),
        sample_rate: 44_100,
        channels: 2,
        bit_rate: None,
    }
}

struct Harness {
    root: tempfile::TempDir,
    store: Arc<SqliteStore>,
    blob: Arc<LocalBlobStore>,
    config: WorkerConfig,
    account: AccountId,
}

impl Harness {
    async fn new(script: &str) -> Self {
        let root = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(&root.path().join("db.sqlite"))
                .await
                .unwrap(),
        );
        let account = store.create_account("test", None).await.unwrap().id;
        let blob = Arc::new(LocalBlobStore::open(root.path().join("blobs")).unwrap());
        let config = WorkerConfig {
            concurrency: 2,
            owner: "test-owner".into(),
            heartbeat: Duration::from_millis(50),
            poll: Duration::from_millis(100),
            grace_period: Duration::from_secs(10),
            job_timeout: Duration::from_secs(20),
            child_command: vec!["sh".into(), "-c".into(), script.into()],
            temp_dir: blob.temp_dir().join("jobs"),
            ..WorkerConfig::default()
        };
        Self {
            root,
            store,
            blob,
            config,
            account,
        }
    }

    /// Stores an upload of `account` (row and bytes).
    async fn upload(&self, account: AccountId) -> UploadId {
        let id = UploadId::new();
        let key = BlobKey::upload(id);
        let src = self.blob.temp_dir().join(format!("src-{id}"));
        std::fs::write(&src, INPUT).unwrap();
        self.blob.put_file(&key, &src).await.unwrap();
        let now = Utc::now();
        self.store
            .insert_upload(&Upload {
                id,
                account_id: account,
                blob_key: key.to_string(),
                filename: None,
                size: INPUT.len() as u64,
                sha256: String::new(),
                media: media_info(),
                created_at: now,
                expires_at: now + chrono::Duration::hours(1),
            })
            .await
            .unwrap();
        id
    }

    /// Queues a job of `account`: `operation` with `options` on `input`.
    async fn queue(
        &self,
        account: AccountId,
        operation: OperationKind,
        options: serde_json::Value,
        input: InputRef,
        output_name: Option<&str>,
    ) -> JobId {
        let id = JobId::new();
        let inserted = self
            .store
            .insert_job(
                NewJob {
                    id,
                    account_id: account,
                    // By shape only: a test may queue options that today's rules refuse.
                    operation: Operation::from_stored(operation, &options).unwrap(),
                    input,
                    output: OutputSpec {
                        name: output_name.map(Into::into),
                    },
                    input_seconds: Some(1.0),
                    max_attempts: 3,
                    created_at: Utc::now(),
                    parent_id: None,
                    reservation: None,
                },
                None,
            )
            .await
            .unwrap();
        assert!(matches!(inserted, InsertJob::Created(_)));
        id
    }

    /// Queues a convert job on `input`.
    async fn queue_convert(&self, input: InputRef, output_name: Option<&str>) -> JobId {
        let options = serde_json::json!({"format": "wav"});
        self.queue(
            self.account,
            OperationKind::Convert,
            options,
            input,
            output_name,
        )
        .await
    }

    /// Claims the one runnable job, as the worker would.
    async fn claim(&self) -> ClaimedJob {
        let mut claimed = self
            .store
            .claim_jobs(&self.config.owner, 1, self.config.lease, Utc::now())
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "{claimed:?}");
        claimed.pop().unwrap()
    }

    /// An upload and a convert job on it, claimed for its first attempt.
    async fn job(&self, output_name: Option<&str>) -> ClaimedJob {
        let upload = self.upload(self.account).await;
        self.queue_convert(InputRef::Upload(upload), output_name)
            .await;
        self.claim().await
    }

    fn shared(&self) -> Arc<Shared> {
        Arc::new(Shared {
            store: self.store.clone(),
            blob: self.blob.clone(),
            config: self.config.clone(),
            metrics: WorkerMetrics::new(),
        })
    }

    async fn run(&self, claimed: ClaimedJob) -> Outcome {
        let outcome = tokio::time::timeout(
            Duration::from_secs(30),
            run_job(self.shared(), claimed, CancellationToken::new()),
        )
        .await
        .expect("the attempt ends");
        self.assert_clean();
        outcome
    }

    /// No job directory is left behind.
    fn assert_clean(&self) {
        let left: Vec<_> = std::fs::read_dir(&self.config.temp_dir)
            .map(|dir| dir.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    /// The job's row as the store has it now.
    async fn row_of(&self, account: AccountId, id: JobId) -> Job {
        self.store.get_job(account, id).await.unwrap().unwrap()
    }

    async fn row(&self, id: JobId) -> Job {
        self.row_of(self.account, id).await
    }

    /// What the attempt recorded as its failure: code, message, and whether it was retried
    /// (queued again, with the error kept) rather than failed for good.
    async fn failure(&self, id: JobId) -> (ErrorCode, String, bool) {
        self.failure_of(self.account, id).await
    }

    async fn failure_of(&self, account: AccountId, id: JobId) -> (ErrorCode, String, bool) {
        let job = self.row_of(account, id).await;
        let error = job
            .error
            .unwrap_or_else(|| panic!("expected a failure, the job is {}", job.state));
        match job.state {
            JobState::Queued => (error.code, error.message, true),
            JobState::Failed => (error.code, error.message, false),
            other => panic!("expected a failure, the job is {other}"),
        }
    }

    async fn artifact_keys(&self) -> Vec<BlobKey> {
        let mut keys = self.blob.list_keys().await.unwrap();
        keys.retain(|k| k.as_str().starts_with("artifacts/"));
        keys
    }

    /// Waits until `done` holds for the job's row (10 s at most).
    async fn wait_row(&self, id: JobId, what: &str, done: impl Fn(&Job) -> bool) -> Job {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let job = self.row(id).await;
            if done(&job) {
                return job;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}: {job:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A child that checks what it was given and how it runs, then answers like the real one.
const GOOD_CHILD: &str = r#"
task=$(cat)
case "$task" in *'"operation":"convert"'*) ;; *) exit 11 ;; esac
case "$task" in *'"output_name":"my song"'*) ;; *) exit 12 ;; esac
[ "$(cat input)" = RIFFdata ] || exit 13
[ -z "$HOME" ] || exit 14
[ "$PATH" = /usr/bin:/bin ] || exit 15
[ "$(ulimit -c)" = 0 ] || exit 16
[ "$(ulimit -v)" = 4194304 ] || exit 17
[ "$(ulimit -t)" = 3600 ] || exit 18
set -- $(cat /proc/$$/stat)
[ "$5" = "$$" ] || exit 19
echo '{"type":"progress","fraction":0.5}'
sleep 0.3
printf abc > out/output.wav
echo '{"type":"succeeded","artifacts":[{"file":"output.wav","name":"my song.wav","content_type":"audio/wav"}],"result":{"ok":true},"audio_seconds":1.5}'
"#;

#[tokio::test]
async fn a_successful_child_yields_artifacts_in_blob_storage() {
    let h = Harness::new(GOOD_CHILD).await;
    let claimed = h.job(Some("my song")).await;
    let id = claimed.job.id;
    // Progress as the store sees it while the job runs.
    let watcher = {
        let store = h.store.clone();
        let account = h.account;
        tokio::spawn(async move {
            let mut seen = Vec::new();
            loop {
                let job = store.get_job(account, id).await.unwrap().unwrap();
                seen.push(job.progress);
                if job.state != JobState::Running {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    assert_eq!(h.run(claimed).await, Outcome::Succeeded);
    let job = h.row(id).await;
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.result, Some(serde_json::json!({"ok": true})));
    let artifacts = &job.artifacts;
    assert_eq!(artifacts.len(), 1);
    let artifact = &artifacts[0];
    assert_eq!(artifact.name, "my song.wav");
    assert_eq!(artifact.content_type, "audio/wav");
    assert_eq!(artifact.size, 3);
    assert_eq!(artifact.job_id, id);
    assert_eq!(artifact.account_id, h.account);
    assert!(artifact.expires_at > Utc::now() + chrono::Duration::hours(23));
    let key = BlobKey::from_stored(&artifact.blob_key).unwrap();
    assert_eq!(key, BlobKey::artifact(id, artifact.id));
    assert_eq!(h.blob.size(&key).await.unwrap(), 3);
    // Progress reached the store with a heartbeat.
    let seen = watcher.await.unwrap();
    assert!(seen.contains(&0.5), "{seen:?}");
}

/// A job accepted under rules that have since been tightened still runs: the worker reads
/// stored options by their shape, and hands them to the child as they were accepted.
#[tokio::test]
async fn a_job_queued_before_a_rule_tightened_still_runs() {
    let h = Harness::new(
        r#"task=$(cat)
case "$task" in *'"operation":"convert","options":{'*'"bitrate":100'*) ;; *) exit 11 ;; esac
printf abc > out/output.mp3
echo '{"type":"succeeded","artifacts":[{"file":"output.mp3","name":"a.mp3","content_type":"audio/mpeg"}],"result":null,"audio_seconds":1}'"#,
    )
    .await;
    // 100 kbit/s is not an MP3 rate today: a new request with it is refused.
    let options = serde_json::json!({"format": "mp3", "bitrate": 100});
    assert!(Operation::from_parts(OperationKind::Convert, &options).is_err());
    let upload = h.upload(h.account).await;
    let id = h
        .queue(
            h.account,
            OperationKind::Convert,
            options,
            InputRef::Upload(upload),
            None,
        )
        .await;
    let claimed = h.claim().await;
    assert_eq!(h.run(claimed).await, Outcome::Succeeded);
    assert_eq!(h.row(id).await.state, JobState::Succeeded);
}

#[tokio::test]
async fn a_failed_line_is_recorded_as_is() {
    let h = Harness::new(
        r#"cat >/dev/null; echo '{"type":"failed","error":{"code":"unsupported_format","message":"not audio"}}'"#,
    )
    .await;
    let claimed = h.job(None).await;
    let id = claimed.job.id;
    assert_eq!(h.run(claimed).await, Outcome::Failed);
    assert_eq!(
        h.failure(id).await,
        (ErrorCode::UnsupportedFormat, "not audio".into(), false)
    );
}

#[tokio::test]
async fn a_retryable_failure_is_retried_with_backoff() {
    let h = Harness::new(r#"cat >/dev/null; kill -KILL $$"#).await;
    let claimed = h.job(None).await;
    let id = claimed.job.id;
    let before = Utc::now();
    assert_eq!(h.run(claimed).await, Outcome::Retried);
    let (code, _, retried) = h.failure(id).await;
    assert_eq!((code, retried), (ErrorCode::WorkerCrashed, true));
    // First attempt: between base/2 and base (2 s) from now.
    let delay = h.row(id).await.run_at - before;
    assert!(delay >= chrono::Duration::milliseconds(900), "{delay}");
    assert!(delay <= chrono::Duration::seconds(3), "{delay}");
}

#[tokio::test]
async fn exit_statuses_map_to_error_codes() {
    let cases: [(&str, ErrorCode, bool); 8] = [
        ("kill -KILL $$", ErrorCode::WorkerCrashed, true),
        ("kill -TERM $$", ErrorCode::WorkerCrashed, true),
        ("kill -XCPU $$", ErrorCode::Timeout, false),
        ("kill -XFSZ $$", ErrorCode::ResourceLimit, false),
        ("kill -ABRT $$", ErrorCode::ResourceLimit, false),
        ("kill -SEGV $$", ErrorCode::ResourceLimit, false),
        ("exit 3", ErrorCode::WorkerCrashed, true),
        // Exit 0 without a final line.
        (
            r#"echo '{"type":"progress","fraction":0.1}'"#,
            ErrorCode::WorkerCrashed,
            true,
        ),
    ];
    for (script, code, retried) in cases {
        let h = Harness::new(&format!("cat >/dev/null; {script}")).await;
        let claimed = h.job(None).await;
        let id = claimed.job.id;
        let outcome = h.run(claimed).await;
        let (got, message, retry) = h.failure(id).await;
        assert_eq!((got, retry), (code, retried), "{script}");
        assert_eq!(
            outcome,
            if retried {
                Outcome::Retried
            } else {
                Outcome::Failed
            }
        );
        assert!(!message.contains('/'), "{message}");
    }
}

#[tokio::test]
async fn memory_errors_say_so() {
    let h = Harness::new("cat >/dev/null; kill -ABRT $$").await;
    let claimed = h.job(None).await;
    let id = claimed.job.id;
    h.run(claimed).await;
    let (_, message, _) = h.failure(id).await;
    assert_eq!(message, "the job exceeded its memory limit");
}

#[tokio::test]
async fn the_file_size_limit_is_enforced() {
    let mut h = Harness::new(
        "cat >/dev/null; exec dd if=/dev/zero of=out/big bs=1024 count=64 2>/dev/null",
    )
    .await;
    h.config.child_limits = ChildLimits {
        output_file_bytes: 4096,
        ..ChildLimits::default()
    };
    let claimed = h.job(None).await;
    let id = claimed.job.id;
    assert_eq!(h.run(claimed).await, Outcome::Failed);
    assert_eq!(h.failure(id).await.0, ErrorCode::ResourceLimit);
}

#[tokio::test]
async fn the_cpu_limit_is_enforced() {
    let mut h = Harness::new("cat >/dev/null; while :; do :; done").await;
    h.config.child_limits = ChildLimits {
        cpu_seconds: 1,
        ..ChildLimits::default()
    };
    let claimed = h.job(None).await;
    let id = claimed.job.id;
    assert_eq!(h.run(claimed).await, Outcome::Failed);
    assert_eq!(h.failure(id).await.0, ErrorCode::Timeout);
}

#[tokio::test]
async fn the_wall_clock_limit_kills_the_child() {
    let mut h = Harness::new("cat >/dev/null; exec sleep 30").await;
    h.config.job_timeout = Duration::from_millis(300);
    let claimed = h.job(None).await;
    let id = claimed.job.id;
    let started = std::time::Instant::now();
    assert_eq!(h.run(claimed).await, Outcome::Failed);
    assert!(started.elapsed() < Duration::from_secs(5));
    let (code, message, retried) = h.failure(id).await;
    assert_eq!((code, retried), (ErrorCode::Timeout, false));
    assert!(message.contains("time limit"), "{message}");
}

#[tokio::test]
async fn each_operation_has_its_own_time_limit() {
    let mut h = Harness::new("cat >/dev/null; exec sleep 30").await;
    // The claimed job is a convert: its limit applies, not the (longer) overall one.
    h.config.operation_timeouts.convert = Duration::from_millis(300);
    let claimed = h.job(None).await;
    let id = claimed.job.id;
    assert_eq!(claimed.job.operation, OperationKind::Convert);
    let started = std::time::Instant::now();
    assert_eq!(h.run(claimed).await, Outcome::Failed);
    assert!(started.elapsed() < Duration::from_secs(5));
    let (code, message, _) = h.failure(id).await;
    assert_eq!(code, ErrorCode::Timeout);
    assert!(message.contains("300 ms"), "{message}");
}

fn process_exists(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[tokio::test]
async fn cancel_kills_the_whole_process_group() {
    let mut h = Harness::new("").await;
    let pid_file = h.root.path().join("sleeper.pid");
    let script = format!(
        "cat >/dev/null; sleep 30 & echo $! > {}; wait",
        pid_file.display()
    );
    h.config.child_command[2] = script.into();
    let claimed = h.job(None).await;
    let id = claimed.job.id;
    let store = h.store.clone();
    let account = h.account;
    let pid_path = pid_file.clone();
    let canceller = tokio::spawn(async move {
        while !pid_path.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        store.request_cancel(account, id).await.unwrap();
        std::time::Instant::now()
    });
    let outcome = h.run(claimed).await;
    let asked = canceller.await.unwrap();
    assert_eq!(outcome, Outcome::Canceled);
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(h.row(id).await.state, JobState::Canceled);
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while process_exists(pid) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!process_exists(pid), "the grandchild survived");
}

#[tokio::test]
async fn a_lost_lease_writes_nothing() {
    let h = Harness::new("cat >/dev/null; exec sleep 30").await;
    let claimed = h.job(None).await;
    let id = claimed.job.id;
    // Another worker's view: the job went back to the queue, so this lease is gone.
    assert!(h.store.requeue(&claimed.lease, Utc::now()).await.unwrap());
    let before = h.row(id).await;
    assert_eq!(h.run(claimed).await, Outcome::Lost);
    assert_eq!(h.row(id).await, before);
}

#[tokio::test]
async fn artifacts_of_a_lost_lease_are_deleted() {
    let mut h = Harness::new(GOOD_CHILD).await;
    // No heartbeat during the attempt: the lost lease shows only when the success is written.
    h.config.heartbeat = Duration::from_secs(60);
    let claimed = h.job(Some("my song")).await;
    let id = claimed.job.id;
    assert!(h.store.requeue(&claimed.lease, Utc::now()).await.unwrap());
    assert_eq!(h.run(claimed).await, Outcome::Lost);
    assert!(h.artifact_keys().await.is_empty());
    assert!(h.row(id).await.artifacts.is_empty());
}

#[tokio::test]
async fn a_missing_input_is_not_retried() {
    // No such upload.
    let h = Harness::new("exit 0").await;
    let id = h
        .queue_convert(InputRef::Upload(UploadId::new()), None)
        .await;
    let claimed = h.claim().await;
    assert_eq!(h.run(claimed).await, Outcome::Failed);
    assert_eq!(h.failure(id).await.0, ErrorCode::InputNotFound);

    // Another account's upload.
    let h = Harness::new("exit 0").await;
    let upload = h.upload(h.account).await;
    let other = h.store.create_account("other", None).await.unwrap().id;
    let options = serde_json::json!({"format": "wav"});
    let id = h
        .queue(
            other,
            OperationKind::Convert,
            options,
            InputRef::Upload(upload),
            None,
        )
        .await;
    let claimed = h.claim().await;
    assert_eq!(h.run(claimed).await, Outcome::Failed);
    assert_eq!(h.failure_of(other, id).await.0, ErrorCode::InputNotFound);

    // The row is there, the bytes are gone.
    let h = Harness::new("exit 0").await;
    let claimed = h.job(None).await;
    let id = claimed.job.id;
    let InputRef::Upload(upload) = claimed.job.input else {
        unreachable!()
    };
    h.blob.delete(&BlobKey::upload(upload)).await.unwrap();
    assert_eq!(h.run(claimed).await, Outcome::Failed);
    assert_eq!(h.failure(id).await.0, ErrorCode::InputNotFound);
}

#[tokio::test]
async fn unusable_artifacts_are_refused() {
    let line = |file: &str, name: &str, content_type: &str| {
        format!(
            r#"echo '{{"type":"succeeded","artifacts":[{{"file":"{file}","name":"{name}","content_type":"{content_type}"}}],"result":null,"audio_seconds":0}}'"#
        )
    };
    let cases = [
        format!(
            "printf x > out/a; {}",
            line("../input", "a.wav", "audio/wav")
        ),
        format!(
            "printf x > out/a; {}",
            line("/etc/passwd", "a.wav", "audio/wav")
        ),
        format!("ln -s ../input out/a; {}", line("a", "a.wav", "audio/wav")),
        format!("ln input out/a; {}", line("a", "a.wav", "audio/wav")),
        format!("mkdir out/a; {}", line("a", "a.wav", "audio/wav")),
        line("missing", "a.wav", "audio/wav"),
        format!("printf x > out/a; {}", line("a", "a.html", "text/html")),
        format!("printf x > out/a; {}", line("a", "../a.wav", "audio/wav")),
    ];
    for script in cases {
        let h = Harness::new(&format!("cat >/dev/null; {script}")).await;
        let claimed = h.job(None).await;
        let id = claimed.job.id;
        assert_eq!(h.run(claimed).await, Outcome::Retried, "{script}");
        assert_eq!(h.failure(id).await.0, ErrorCode::WorkerCrashed, "{script}");
        assert!(h.artifact_keys().await.is_empty());
    }
}

#[tokio::test]
async fn protocol_violations_count_as_crashes() {
    let cases = [
        "echo 'not json'",
        r#"echo '{"type":"failed","error":{"code":"internal","message":"x"}}'; echo '{"type":"progress","fraction":1}'"#,
        // A line longer than the limit.
        "head -c 2000000 /dev/zero | tr '\\0' a",
    ];
    for script in cases {
        let h = Harness::new(&format!("cat >/dev/null; {script}")).await;
        let claimed = h.job(None).await;
        let id = claimed.job.id;
        h.run(claimed).await;
        assert_eq!(h.failure(id).await.0, ErrorCode::WorkerCrashed, "{script}");
    }
}

#[tokio::test]
async fn a_missing_program_is_an_internal_error() {
    let mut h = Harness::new("").await;
    h.config.child_command = vec!["/nonexistent/audiomill".into()];
    let claimed = h.job(None).await;
    let id = claimed.job.id;
    assert_eq!(h.run(claimed).await, Outcome::Retried);
    let (code, message, retried) = h.failure(id).await;
    assert_eq!((code, retried), (ErrorCode::Internal, true));
    assert!(!message.contains("nonexistent"));
}

#[tokio::test]
async fn the_worker_claims_runs_and_stops() {
    let mut h = Harness::new(GOOD_CHILD).await;
    h.config.poll = Duration::from_secs(60);
    let worker = Worker::new(
        h.store.clone(),
        h.blob.clone(),
        h.config.clone(),
        WorkerMetrics::new(),
    );
    let waker = worker.waker();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    // The first claim found nothing; the waker, not the 60 s poll, brings the next one.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let upload = h.upload(h.account).await;
    let id = h
        .queue_convert(InputRef::Upload(upload), Some("my song"))
        .await;
    waker.notify_one();
    h.wait_row(id, "the job to succeed", |j| j.state == JobState::Succeeded)
        .await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the worker stops")
        .unwrap();
    h.assert_clean();
}

#[tokio::test]
async fn shutdown_requeues_jobs_still_running_after_the_grace_period() {
    let mut h = Harness::new("cat >/dev/null; exec sleep 30").await;
    h.config.grace_period = Duration::from_millis(300);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let upload = h.upload(h.account).await;
        ids.push(h.queue_convert(InputRef::Upload(upload), None).await);
    }
    let worker = Worker::new(
        h.store.clone(),
        h.blob.clone(),
        h.config.clone(),
        WorkerMetrics::new(),
    );
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    for &id in &ids {
        h.wait_row(id, "both jobs to run", |j| j.state == JobState::Running)
            .await;
    }
    // A few heartbeats: the children are up.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("the worker stops")
        .unwrap();
    assert!(started.elapsed() >= Duration::from_millis(300));
    for id in ids {
        let job = h.row(id).await;
        assert_eq!((job.state, job.error), (JobState::Queued, None), "requeued");
    }
    h.assert_clean();
}

#[tokio::test]
async fn shutdown_lets_short_jobs_finish() {
    let mut h = Harness::new(GOOD_CHILD).await;
    h.config.grace_period = Duration::from_secs(10);
    let upload = h.upload(h.account).await;
    let id = h
        .queue_convert(InputRef::Upload(upload), Some("my song"))
        .await;
    let worker = Worker::new(
        h.store.clone(),
        h.blob.clone(),
        h.config.clone(),
        WorkerMetrics::new(),
    );
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(worker.run(shutdown.clone()));
    h.wait_row(id, "the job to start", |j| j.state == JobState::Running)
        .await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the worker stops")
        .unwrap();
    assert_eq!(h.row(id).await.state, JobState::Succeeded);
    h.assert_clean();
}

#[tokio::test]
async fn reaper_deletes_expired_rows_and_bytes() {
    let root = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&root.path().join("db.sqlite"))
        .await
        .unwrap();
    let blob = LocalBlobStore::open(root.path().join("blobs")).unwrap();
    let account = store.create_account("test", None).await.unwrap().id;
    let now = Utc::now();
    let hour = chrono::Duration::hours(1);

    let put = |key: BlobKey| {
        let blob = blob.clone();
        async move {
            let src = blob.temp_dir().join("src");
            std::fs::write(&src, b"bytes").unwrap();
            blob.put_file(&key, &src).await.unwrap();
            key
        }
    };
    let mut uploads = Vec::new();
    // Expired; expired with its bytes already gone; still valid.
    for (expires_at, with_bytes) in [(now - hour, true), (now - hour, false), (now + hour, true)] {
        let id = UploadId::new();
        let key = BlobKey::upload(id);
        if with_bytes {
            put(key.clone()).await;
        }
        store
            .insert_upload(&Upload {
                id,
                account_id: account,
                blob_key: key.to_string(),
                filename: Some("a.wav".into()),
                size: 5,
                sha256: String::new(),
                media: media_info(),
                created_at: now - hour * 2,
                expires_at,
            })
            .await
            .unwrap();
        uploads.push((id, key));
    }

    let job_id = JobId::new();
    let inserted = store
        .insert_job(
            NewJob {
                id: job_id,
                account_id: account,
                operation: Operation::from_stored(
                    OperationKind::Convert,
                    &serde_json::json!({"format": "wav"}),
                )
                .unwrap(),
                input: InputRef::Upload(uploads[2].0),
                output: OutputSpec::default(),
                input_seconds: Some(1.0),
                max_attempts: 3,
                created_at: now - hour * 2,
                parent_id: None,
                reservation: None,
            },
            None,
        )
        .await
        .unwrap();
    assert!(matches!(inserted, InsertJob::Created(_)));
    let claimed = store
        .claim_jobs("reaper-test", 1, Duration::from_secs(30), now)
        .await
        .unwrap()
        .pop()
        .unwrap();
    let mut artifacts = Vec::new();
    for expires_at in [now - hour, now + hour] {
        let id = ArtifactId::new();
        let key = put(BlobKey::artifact(job_id, id)).await;
        artifacts.push(Artifact {
            id,
            account_id: account,
            job_id,
            name: "a.wav".into(),
            content_type: "audio/wav".into(),
            size: 5,
            blob_key: key.to_string(),
            created_at: now - hour * 2,
            expires_at,
        });
    }
    assert!(store
        .succeed_job(&claimed.lease, &artifacts, None, 1.0, now)
        .await
        .unwrap());

    assert_eq!(reap_expired(&store, &blob, now).await.unwrap(), 3);

    assert!(store
        .get_upload(account, uploads[0].0)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .get_upload(account, uploads[1].0)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .get_upload(account, uploads[2].0)
        .await
        .unwrap()
        .is_some());
    assert!(store
        .get_artifact(account, artifacts[0].id)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .get_artifact(account, artifacts[1].id)
        .await
        .unwrap()
        .is_some());
    let mut left: Vec<String> = blob
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.to_string())
        .collect();
    left.sort();
    let mut expected = vec![uploads[2].1.to_string(), artifacts[1].blob_key.clone()];
    expected.sort();
    assert_eq!(left, expected);

    // Nothing more to do.
    assert_eq!(reap_expired(&store, &blob, now).await.unwrap(), 0);
}

#[tokio::test]
async fn reaper_keeps_rows_whose_bytes_could_not_be_deleted() {
    // A blob store that refuses every delete.
    struct Stubborn(LocalBlobStore);
    #[async_trait::async_trait]
    impl BlobStore for Stubborn {
        async fn put_file(&self, k: &BlobKey, s: &std::path::Path) -> audiomill_blob::Result<u64> {
            self.0.put_file(k, s).await
        }
        async fn get_to_file(
            &self,
            k: &BlobKey,
            d: &std::path::Path,
        ) -> audiomill_blob::Result<u64> {
            self.0.get_to_file(k, d).await
        }
        async fn size(&self, k: &BlobKey) -> audiomill_blob::Result<u64> {
            self.0.size(k).await
        }
        async fn read_range(
            &self,
            k: &BlobKey,
            o: u64,
            l: u64,
        ) -> audiomill_blob::Result<audiomill_blob::BlobReader> {
            self.0.read_range(k, o, l).await
        }
        async fn delete(&self, k: &BlobKey) -> audiomill_blob::Result<()> {
            Err(audiomill_blob::BlobError::Io {
                key: k.to_string(),
                source: std::io::Error::other("read-only"),
            })
        }
        async fn list_keys(&self) -> audiomill_blob::Result<Vec<BlobKey>> {
            self.0.list_keys().await
        }
        async fn check(&self) -> audiomill_blob::Result<()> {
            self.0.check().await
        }
    }
    let h = Harness::new("").await;
    let id = h.upload(h.account).await;
    let later = Utc::now() + chrono::Duration::hours(2);
    let stubborn = Stubborn(LocalBlobStore::open(h.root.path().join("blobs")).unwrap());
    assert_eq!(
        reap_expired(h.store.as_ref(), &stubborn, later)
            .await
            .unwrap(),
        0
    );
    assert!(h.store.get_upload(h.account, id).await.unwrap().is_some());
    // With a working blob store it goes.
    assert_eq!(
        reap_expired(h.store.as_ref(), h.blob.as_ref(), later)
            .await
            .unwrap(),
        1
    );
    assert!(h.store.get_upload(h.account, id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_playlist_becomes_one_download_job_per_accepted_item() {
    let h = Harness::new("exit 0").await;
    let url = audiomill_core::InputUrl::parse("https://soundcloud.com/a/sets/b").unwrap();
    let options = serde_json::json!({"playlist": true, "format": "mp3", "bitrate": 128});
    let parent_id = h
        .queue(
            h.account,
            OperationKind::Download,
            options,
            InputRef::Url(url),
            None,
        )
        .await;
    let parent = h.claim().await;
    let entry = |url: &str, title: &str| audiomill_net::PlaylistEntry {
        url: url.into(),
        title: Some(title.into()),
        duration: Some(60.0),
    };
    let list = audiomill_net::PlaylistMeta {
        id: Some("b".into()),
        title: Some("Set".into()),
        uploader: None,
        entries: vec![
            entry("https://soundcloud.com/a/one", "One / Live"),
            // Refused by the outbound policy: never queued.
            entry("http://10.0.0.1/two.mp3", "Two"),
            entry("https://soundcloud.com/a/three", "Three"),
        ],
        truncated: true,
    };
    let audiomill_core::Operation::Download(options) =
        audiomill_core::Operation::from_stored(parent.job.operation, &parent.job.options).unwrap()
    else {
        panic!("not a download")
    };
    let outcome = crate::ops::download::expand(
        &h.shared(),
        &parent,
        &options,
        &audiomill_core::PlanLimits::default(),
        list,
    )
    .await;
    assert_eq!(outcome, Outcome::Succeeded);
    let page = Page {
        limit: 100,
        before: None,
    };
    let children: Vec<Job> = h
        .store
        .list_jobs(h.account, JobFilter::default(), page)
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.id != parent_id)
        .collect();
    assert_eq!(children.len(), 2);
    for child in &children {
        assert_eq!(child.parent_id, Some(parent_id));
        assert_eq!(child.account_id, h.account);
        assert_eq!(child.operation, OperationKind::Download);
        assert_eq!(
            child.options,
            serde_json::json!({"format": "mp3", "bitrate": 128})
        );
    }
    let result = h.row(parent_id).await.result.unwrap();
    assert_eq!(result["playlist"]["skipped"], 1);
    assert_eq!(result["playlist"]["truncated"], true);
    // Items line up with the jobs made for them.
    let named = |i: usize| {
        let id = result["items"][i]["job"].as_str().unwrap();
        let child = children.iter().find(|c| c.id.to_string() == id).unwrap();
        child.output.name.clone()
    };
    assert_eq!(result["items"][0]["title"], "One / Live");
    assert_eq!(named(0).as_deref(), Some("One Live"));
    assert_eq!(result["items"][1]["title"], "Three");
    assert_eq!(named(1).as_deref(), Some("Three"));
}

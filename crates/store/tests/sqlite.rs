//! The SQLite store against a real database file.

use audiomill_core::{
    AccountId, ArtifactId, ErrorCode, InputRef, JobError, JobId, JobState, KeyId, MediaInfo,
    Operation, OperationKind, OutputSpec, UploadId,
};
use audiomill_store::*;
use chrono::{DateTime, TimeDelta, Utc};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;

const LEASE: Duration = Duration::from_secs(30);

/// A fixed instant, on a whole millisecond (the store's precision).
fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp_millis(1_700_000_000_000).unwrap()
}

fn at(secs: i64) -> DateTime<Utc> {
    t0() + TimeDelta::seconds(secs)
}

async fn open() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("audiomill.db"))
        .await
        .unwrap();
    (dir, store)
}

async fn account(store: &SqliteStore, name: &str) -> AccountId {
    store.create_account(name, None).await.unwrap().id
}

fn new_job(account: AccountId, max_attempts: u32) -> NewJob {
    NewJob {
        id: JobId::new(),
        account_id: account,
        operation: Operation::from_parts(
            OperationKind::Convert,
            &serde_json::json!({"format": "mp3", "bitrate": 192}),
        )
        .unwrap(),
        input: InputRef::Upload(UploadId::new()),
        output: OutputSpec {
            name: Some("song".into()),
        },
        input_seconds: Some(12.5),
        max_attempts,
        created_at: t0(),
        parent_id: None,
        reservation: None,
    }
}

async fn insert(store: &SqliteStore, account: AccountId, max_attempts: u32) -> Job {
    match store
        .insert_job(new_job(account, max_attempts), None)
        .await
        .unwrap()
    {
        InsertJob::Created(job) => job,
        other => panic!("not created: {other:?}"),
    }
}

async fn job(store: &SqliteStore, account: AccountId, id: JobId) -> Job {
    store.get_job(account, id).await.unwrap().expect("job")
}

/// Claims exactly one job.
async fn claim_one(store: &SqliteStore, owner: &str, now: DateTime<Utc>) -> ClaimedJob {
    let mut claimed = store.claim_jobs(owner, 10, LEASE, now).await.unwrap();
    assert_eq!(claimed.len(), 1, "expected one claim, got {claimed:?}");
    claimed.pop().unwrap()
}

fn media() -> MediaInfo {
    MediaInfo {
        container: "wav".into(),
        codec: "pcm_s16le".into(),
        duration_secs: Some(1.0),
        sample_rate: 44_100,
        channels: 2,
        bit_rate: Some(1_411_200),
    }
}

fn upload(account: AccountId, expires_at: DateTime<Utc>) -> Upload {
    let id = UploadId::new();
    Upload {
        id,
        account_id: account,
        blob_key: format!("uploads/{id}"),
        filename: Some("take 1.wav".into()),
        size: 1234,
        sha256: "ab".repeat(32),
        media: media(),
        created_at: t0(),
        expires_at,
    }
}

fn artifact(account: AccountId, job: JobId, expires_at: DateTime<Utc>) -> Artifact {
    let id = ArtifactId::new();
    Artifact {
        id,
        account_id: account,
        job_id: job,
        name: "song.mp3".into(),
        content_type: "audio/mpeg".into(),
        size: 4321,
        blob_key: format!("artifacts/{id}"),
        created_at: t0(),
        expires_at,
    }
}

fn key(account: AccountId, hash: &str, created_secs: i64) -> KeyRecord {
    KeyRecord {
        id: KeyId::new(),
        account_id: account,
        name: format!("key {hash}"),
        display_prefix: "am_1234abcd".into(),
        hash: hash.into(),
        created_at: at(created_secs),
        revoked_at: None,
        scopes: audiomill_core::Scope::defaults(),
        expires_at: None,
    }
}

#[tokio::test]
async fn migrations_are_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audiomill.db");
    let first = SqliteStore::open(&path).await.unwrap();
    let acme = first.create_account("acme", None).await.unwrap();
    first.migrate().await.unwrap();
    // A second handle on the same file (as the CLI beside the server) migrates to a no-op.
    let second = SqliteStore::open(&path).await.unwrap();
    second.migrate().await.unwrap();
    assert_eq!(
        second.account_by_name("acme").await.unwrap(),
        Some(acme.clone())
    );
    first.close().await;
    second.close().await;
    drop((first, second));

    let reopened = SqliteStore::open(&path).await.unwrap();
    reopened.ping().await.unwrap();
    assert_eq!(reopened.account_by_name("acme").await.unwrap(), Some(acme));
}

#[tokio::test]
async fn accounts_have_unique_names() {
    let (_dir, store) = open().await;
    let acme = store.create_account("acme", None).await.unwrap();
    assert_eq!(acme.name, "acme");
    assert!(matches!(
        store.create_account("acme", None).await,
        Err(StoreError::Conflict("account"))
    ));
    assert_eq!(store.account_by_name("acme").await.unwrap(), Some(acme));
    assert_eq!(store.account_by_name("nobody").await.unwrap(), None);
    assert_eq!(
        store
            .account_by_name("acme' OR '1'='1")
            .await
            .unwrap()
            .map(|a| a.name),
        None
    );
}

#[tokio::test]
async fn keys_insert_lookup_revoke_count() {
    let (_dir, store) = open().await;
    let acme = account(&store, "acme").await;
    let first = key(acme, "aaaa", 1);
    let second = key(acme, "bbbb", 2);
    store.insert_key(&second).await.unwrap();
    store.insert_key(&first).await.unwrap();
    assert!(matches!(
        store.insert_key(&key(acme, "aaaa", 3)).await,
        Err(StoreError::Conflict("key"))
    ));

    assert_eq!(
        store.key_by_hash("aaaa").await.unwrap(),
        Some(first.clone())
    );
    assert_eq!(store.key_by_hash("cccc").await.unwrap(), None);
    assert_eq!(
        store.list_keys().await.unwrap(),
        vec![first.clone(), second.clone()]
    );
    assert_eq!(store.count_active_keys().await.unwrap(), 2);

    assert!(store.revoke_key(first.id, at(10)).await.unwrap());
    assert!(!store.revoke_key(first.id, at(11)).await.unwrap());
    assert!(!store.revoke_key(KeyId::new(), at(11)).await.unwrap());
    assert_eq!(store.count_active_keys().await.unwrap(), 1);
    // Revoked keys are still found: the caller decides.
    let revoked = store.key_by_hash("aaaa").await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(at(10)));
}

#[tokio::test]
async fn uploads_are_scoped_by_account() {
    let (_dir, store) = open().await;
    let acme = account(&store, "acme").await;
    let other = account(&store, "other").await;
    let up = upload(acme, at(3600));
    store.insert_upload(&up).await.unwrap();
    assert!(matches!(
        store.insert_upload(&up).await,
        Err(StoreError::Conflict("upload"))
    ));
    assert_eq!(
        store.get_upload(acme, up.id).await.unwrap(),
        Some(up.clone())
    );
    assert_eq!(store.get_upload(other, up.id).await.unwrap(), None);
    assert_eq!(store.get_upload(acme, UploadId::new()).await.unwrap(), None);
}

#[tokio::test]
async fn jobs_insert_get_and_list_with_pagination() {
    let (_dir, store) = open().await;
    let acme = account(&store, "acme").await;
    let other = account(&store, "other").await;

    let mut ids = Vec::new();
    for _ in 0..23 {
        ids.push(insert(&store, acme, 3).await.id);
    }
    let foreign = insert(&store, other, 3).await;

    // What was inserted reads back.
    let spec = new_job(acme, 3);
    let got = match store.insert_job(spec.clone(), None).await.unwrap() {
        InsertJob::Created(job) => job,
        other => panic!("{other:?}"),
    };
    ids.push(got.id);
    assert_eq!(got, job(&store, acme, spec.id).await);
    assert_eq!(
        (got.operation, &got.options, got.input, &got.output),
        (
            spec.operation.kind(),
            &spec.operation.options_json(),
            spec.input,
            &spec.output
        )
    );
    assert_eq!(got.input_seconds, Some(12.5));
    assert_eq!(got.state, JobState::Queued);
    assert_eq!((got.attempt, got.max_attempts, got.progress), (0, 3, 0.0));
    assert_eq!((got.created_at, got.run_at), (t0(), t0()));
    assert!(got.started_at.is_none() && got.finished_at.is_none() && got.error.is_none());

    // Scoped by account.
    assert_eq!(store.get_job(other, got.id).await.unwrap(), None);
    assert_eq!(store.get_job(acme, foreign.id).await.unwrap(), None);

    // Walk every page: newest first, no duplicates, nothing missed.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = store
            .list_jobs(acme, JobFilter::default(), Page { limit: 5, before })
            .await
            .unwrap();
        assert!(page.len() <= 5);
        let Some(last) = page.last() else { break };
        before = Some(last.id);
        seen.extend(page.iter().map(|j| j.id));
    }
    let mut expected = ids.clone();
    expected.sort();
    expected.reverse();
    assert_eq!(seen, expected);
    assert!(store
        .list_jobs(
            acme,
            JobFilter::default(),
            Page {
                limit: 0,
                before: None
            }
        )
        .await
        .unwrap()
        .is_empty());

    // State filter, also combined with the cursor.
    let claimed = store.claim_jobs("w1", 4, LEASE, t0()).await.unwrap();
    let running: HashSet<JobId> = claimed.iter().map(|c| c.job.id).collect();
    let filter = JobFilter {
        state: Some(JobState::Running),
    };
    let listed = store
        .list_jobs(
            acme,
            filter,
            Page {
                limit: 100,
                before: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|j| j.id).collect::<HashSet<_>>(), running);
    let newest_running = listed[0].id;
    let older = store
        .list_jobs(
            acme,
            filter,
            Page {
                limit: 100,
                before: Some(newest_running),
            },
        )
        .await
        .unwrap();
    assert_eq!(older.len(), running.len() - 1);
    assert!(older.iter().all(|j| j.id < newest_running));
    let queued = store
        .list_jobs(
            acme,
            JobFilter {
                state: Some(JobState::Queued),
            },
            Page {
                limit: 100,
                before: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(queued.len(), ids.len() - running.len());
    assert!(queued.iter().all(|j| j.state == JobState::Queued));
}

#[tokio::test]
async fn listings_and_claims_carry_artifacts() {
    let (_dir, store) = open().await;
    let acme = account(&store, "acme").await;
    let a = insert(&store, acme, 3).await;
    let b = insert(&store, acme, 3).await;
    let _c = insert(&store, acme, 3).await;
    for claim in store.claim_jobs("w", 3, LEASE, t0()).await.unwrap() {
        if claim.job.id == a.id || claim.job.id == b.id {
            let n = if claim.job.id == a.id { 2 } else { 1 };
            let arts: Vec<_> = (0..n)
                .map(|_| artifact(acme, claim.job.id, at(3600)))
                .collect();
            assert!(store
                .succeed_job(&claim.lease, &arts, None, 0.0, at(1))
                .await
                .unwrap());
        }
    }
    let jobs = store
        .list_jobs(
            acme,
            JobFilter::default(),
            Page {
                limit: 10,
                before: None,
            },
        )
        .await
        .unwrap();
    for j in &jobs {
        let expected = if j.id == a.id {
            2
        } else if j.id == b.id {
            1
        } else {
            0
        };
        assert_eq!(j.artifacts.len(), expected, "{j:?}");
        assert!(j.artifacts.iter().all(|art| art.job_id == j.id));
    }
    assert_eq!(job(&store, acme, a.id).await.artifacts.len(), 2);
}

#[tokio::test]
async fn idempotency_keys() {
    let (_dir, store) = open().await;
    let acme = account(&store, "acme").await;
    let other = account(&store, "other").await;
    let idem = |hash: &str| {
        Some(Idempotency {
            key: "retry-me".into(),
            request_hash: hash.into(),
        })
    };

    let InsertJob::Created(created) = store
        .insert_job(new_job(acme, 3), idem("h1"))
        .await
        .unwrap()
    else {
        panic!("not created")
    };
    // Same key and request: the first job, nothing new.
    match store
        .insert_job(new_job(acme, 3), idem("h1"))
        .await
        .unwrap()
    {
        InsertJob::Existing(job) => assert_eq!(job, created),
        other => panic!("{other:?}"),
    }
    // Same key, another request.
    assert_eq!(
        store
            .insert_job(new_job(acme, 3), idem("h2"))
            .await
            .unwrap(),
        InsertJob::IdempotencyMismatch
    );
    let all = store
        .list_jobs(
            acme,
            JobFilter::default(),
            Page {
                limit: 10,
                before: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
    // Keys belong to an account.
    assert!(matches!(
        store
            .insert_job(new_job(other, 3), idem("h2"))
            .await
            .unwrap(),
        InsertJob::Created(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_identical_submissions_create_one_job() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audiomill.db");
    // Two handles on one file stand for two processes: each has its own writer connection.
    let stores = [
        Arc::new(SqliteStore::open(&path).await.unwrap()),
        Arc::new(SqliteStore::open(&path).await.unwrap()),
    ];
    let acme = account(&stores[0], "acme").await;
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let store = stores[i % 2].clone();
            tokio::spawn(async move {
                store
                    .insert_job(
                        new_job(acme, 3),
                        Some(Idempotency {
                            key: "same".into(),
                            request_hash: "same-body".into(),
                        }),
                    )
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut created = Vec::new();
    let mut existing = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            InsertJob::Created(job) => created.push(job.id),
            InsertJob::Existing(job) => existing.push(job.id),
            other => panic!("unexpected: {other:?}"),
        }
    }
    assert_eq!(created.len(), 1);
    assert_eq!(existing.len(), 19);
    assert!(existing.iter().all(|id| *id == created[0]));
    let all = stores[1]
        .list_jobs(
            acme,
            JobFilter::default(),
            Page {
                limit: 100,
                before: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_never_share_a_job() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audiomill.db");
    let stores = [
        Arc::new(SqliteStore::open(&path).await.unwrap()),
        Arc::new(SqliteStore::open(&path).await.unwrap()),
    ];
    let acme = account(&stores[0], "acme").await;
    for _ in 0..60 {
        insert(&stores[0], acme, 3).await;
    }
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let store = stores[i % 2].clone();
            tokio::spawn(async move {
                let owner = format!("worker-{i}");
                let mut mine = Vec::new();
                loop {
                    let claimed = store.claim_jobs(&owner, 3, LEASE, t0()).await.unwrap();
                    if claimed.is_empty() {
                        break mine;
                    }
                    for c in claimed {
                        assert_eq!(c.lease.owner, owner);
                        assert_eq!(c.lease.attempt, 1);
                        mine.push(c.job.id);
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 60);
    assert_eq!(unique.len(), 60);
    assert_eq!(stores[0].queue_depth(t0()).await.unwrap(), 0);
}

#[tokio::test]
async fn claims_follow_run_at_then_id() {
    let (_dir, store) = open().await;
    let acme = account(&store, "acme").await;
    let a = insert(&store, acme, 3).await;
    let b = insert(&store, acme, 3).await;
    // a fails and is retried later: b comes first now.
    let claim = store.claim_jobs("w", 1, LEASE, t0()).await.unwrap();
    let first = &claim[0];
    assert_eq!(first.job.id, a.id.min(b.id));
    let error = JobError::new(ErrorCode::Internal, "disk hiccup");
    assert!(store
        .fail_job(&first.lease, &error, Some(at(5)), at(1))
        .await
        .unwrap());
    let claims = store.claim_jobs("w", 5, LEASE, at(10)).await.unwrap();
    let order: Vec<_> = claims.iter().map(|c| c.job.id).collect();
    assert_eq!(order, vec![a.id.max(b.id), a.id.min(b.id)]);
}

#[tokio::test]
async fn expired_lease_is_reclaimed_and_old_owner_is_fenced() {
    let (_dir, store) = open().await;
    let acme = account(&store, "acme").await;
    let inserted = insert(&store, acme, 3).await;

    let old = claim_one(&store, "w1", t0()).await;
    assert_eq!(old.lease.attempt, 1);
    assert_eq!(old.job.state, JobState::Running);
    assert_eq!(old.job.started_at, Some(t0()));
    assert_eq!(
        store
            .heartbeat(&old.lease, LEASE, Some(0.5), at(10))
            .await
            .unwrap(),
        Heartbeat::Held {
            cancel_requested: false
        }
    );
    assert_eq!(job(&store, acme, inserted.id).await.progress, 0.5);
    // The heartbeat at 10 s extended the lease to 40 s.
    assert!(store
        .claim_jobs("w2", 10, LEASE, at(35))
        .await
        .unwrap()
        .is_empty());

    let new = claim_one(&store, "w2", at(40)).await;
    assert_eq!(new.job.id, inserted.id);
    assert_eq!(new.lease.attempt, 2);
    assert_eq!(new.job.attempt, 2);
    assert_eq!(new.job.progress, 0.0);
    assert_eq!(new.job.started_at, Some(at(40)));

    // The old owner is fenced out of every write.
    let before = job(&store, acme, inserted.id).await;
    assert_eq!(
        store
            .heartbeat(&old.lease, LEASE, Some(0.9), at(41))
            .await
            .unwrap(),
        Heartbeat::Lost
    );
    let art = artifact(acme, inserted.id, at(3600));
    assert!(!store
        .succeed_job(&old.lease, std::slice::from_ref(&art), None, 0.0, at(41))
        .await
        .unwrap());
    let error = JobError::new(ErrorCode::Internal, "boom");
    assert!(!store
        .fail_job(&old.lease, &error, Some(at(50)), at(41))
        .await
        .unwrap());
    assert!(!store
        .fail_job(&old.lease, &error, None, at(41))
        .await
        .unwrap());
    assert!(!store.cancel_running(&old.lease, at(41)).await.unwrap());
    assert!(!store.requeue(&old.lease, at(41)).await.unwrap());
    // Same owner name, wrong attempt: still fenced.
    let stale = Lease {
        owner: "w2".into(),
        ..old.lease.clone()
    };
    assert_eq!(
        store.heartbeat(&stale, LEASE, None, at(41)).await.unwrap(),
        Heartbeat::Lost
    );
    assert_eq!(job(&store, acme, inserted.id).await, before);
    assert_eq!(store.get_artifact(acme, art.id).await.unwrap(), None);

    // The new owner finishes.
    assert_eq!(
        store
            .heartbeat(&new.lease, LEASE, Some(7.0), at(45))
            .await
            .unwrap(),
        Heartbeat::Held {
            cancel_requested: false
        }
    );
    assert_eq!(job(&store, acme, inserted.id).await.progress, 1.0);
    let result = serde_json::json!({"loudness": -14.0});
    assert!(store
        .succeed_job(
            &new.lease,
            std::slice::from_ref(&art),
            Some(result.clone()),
            0.0,
            at(50)
        )
        .await
        .unwrap());
    let done = job(&store, acme, inserted.id).await;
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.progress, 1.0);
    assert_eq!(done.finished_at, Some(at(50)));
    assert_eq!(done.result, Some(result));
    assert_eq!(done.artifacts, vec![art.clone()]);
    assert_eq!(store.get_artifact(acme, art.id).await.unwrap(), Some(art));
    // Finished: the new lease is spent too.
    assert!(!store
        .succeed_job(&new.lease, &[], None, 0.0, at(51))
        .await
        .unwrap());
    assert_eq!(
        store
            .heartbeat(&new.lease, LEASE, None, at(51))
            .await
            .unwrap(),
        Heartbeat::Lost
    );
}

#[tokio::test]
async fn expiry_after_the_last_attempt_fails_the_job() {
    let (_dir, store) = open().await;
    let acme = account(&store, "acme").await;
    let inserted = insert(&store, acme, 2).await;
    assert_eq!(claim_one(&store, "w1", t0()).await.lease.attempt, 1);
    assert_eq!(claim_one(&store, "w2", at(31)).await.lease.attempt, 2);
    // Attempt 2 of 2 dies too: the next claim fails the job instead of running it again.
    assert!(store
        .claim_jobs("w3", 10, LEASE, at(62))
        .await
        .unwrap()
        .is_empty());
    let failed = job(&store, acme, inserted.id).await;
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.attempt, 2);
    assert_eq!(failed.finished_at, Some(at(62)));
    assert_eq!(
        failed.error,
        Some(JobError::new(
            ErrorCode::WorkerCrashed,
            "the job's worker stopped responding too many times"
        ))
    );
}

#[tokio::test]
async fn retries_wait_for_run_at_and_attempts_run_out() {
    let (_dir, store) = open().await;
    let acme = account(&store, "acme").await;
    let inserted = insert(&store, acme, 2).await;
    assert_eq!(store.queue_depth(t0()).await.unwrap(), 1);
    let first = claim_one(&store, "w", t0()).await;
    assert_eq!(store.queue_depth(t0()).await.unwrap(), 0);

    let error = JobError::new(ErrorCode::Internal, "storage hiccup");
    assert!(store
        .fail_job(&first.lease, &error, Some(at(60)), at(5))
        .await
        .unwrap());
    let queued = job(&store, acme, inserted.id).await;
    assert_eq!(queued.state, JobState::Queued);
    assert_eq!(queued.run_at, at(60));
    assert_eq!(queued.error, Some(error.clone()));
    assert_eq!(queued.attempt, 1);
    assert_eq!(queued.finished_at, None);

    assert!(store
        .claim_jobs("w", 10, LEASE, at(59))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.queue_depth(at(59)).await.unwrap(), 0);
    assert_eq!(store.queue_depth(at(60)).await.unwrap(), 1);

    let second = claim_one(&store, "w", at(60)).await;
    assert_eq!(second.lease.attempt, 2);
    // Last attempt: a retry is no longer possible.
    assert!(store
        .fail_job(&second.lease, &error, Some(at(120)), at(65))
        .await
        .unwrap());
    let failed = job(&store, acme, inserted.id).await;
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(failed.error, Some(error));
    assert_eq!(failed.finished_at, Some(at(65)));
    assert!(store
        .claim_jobs("w", 10, LEASE, at(200))
        .await
        .unwrap()
        .is_empty());

    // Without retry_at, failure is final at once.
    let other = insert(&store, acme, 5).await;
    let claim = claim_one(&store, "w", at(300)).await;
    assert_eq!(claim.job.id, other.id);
    let invalid = JobError::new(ErrorCode::InvalidInput, "bad input");
    assert!(store
        .fail_job(&claim.lease, &invalid, None, at(301))
        .await
        .unwrap());
    let failed = job(&store, acme, other.id).await;
    assert_eq!(
        (failed.state, failed.error),
        (JobState::Failed, Some(invalid))
    );
}

#[tokio::test]
async fn requeue_gives_the_attempt_back() {
    let (_dir, store) = open().await;
    let acme = account(&store, "acme").await;
    let inserted = insert(&store, acme, 1).await;
    let claim = claim_one(&store, "w1", t0()).await;
    assert!(store.requeue(&claim.lease, at(3)).await.unwrap());
    let queued = job(&store, acme, inserted.id).await;
    assert_eq!(queued.state, JobState::Queued);
    assert_eq!(queued.attempt, 0);
    assert_eq!(queued.run_at, at(3));
    // Even with max_attempts = 1, it runs again.
    let again = claim_one(&store, "w2", at(3)).await;
    assert_eq!(again.lease.attempt, 1);
    assert!(store.requeue(&again.lease, at(4)).await.unwrap());
    assert!(!store.requeue(&again.lease, at(4)).await.unwrap());
}

#[tokio::test]
async fn cancel_queued_running_and_finished_jobs() {
    let (_dir, store) = open().await;
    let acme = account(&store, "acme").await;
    let other = account(&store, "other").await;

    // Queued: canceled at once, never claimed.
    let queued = insert(&store, acme, 3).await;
    assert_eq!(
        store.request_cancel(other, queued.id).await.unwrap(),
        CancelOutcome::NotFound
    );
    let CancelOutcome::Canceled(canceled) = store.request_cancel(acme, queued.id).await.unwrap()
    else {
        panic!("not canceled")
    };
    assert_eq!(canceled.state, JobState::Canceled);
    assert!(canceled.finished_at.is_some());
    assert!(store
        .claim_jobs("w", 10, LEASE, at(1))
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        store.request_cancel(acme, queued.id).await.unwrap(),
        CancelOutcome::AlreadyFinished(j) if j.state == JobState::Canceled
    ));

    // Running: flagged; the worker hears it on its heartbeat and confirms.
    let running = insert(&store, acme, 3).await;
    let claim = claim_one(&store, "w", at(2)).await;
    let CancelOutcome::Requested(flagged) = store.request_cancel(acme, running.id).await.unwrap()
    else {
        panic!("not requested")
    };
    assert_eq!(flagged.state, JobState::Running);
    assert!(flagged.cancel_requested);
    assert_eq!(
        store
            .heartbeat(&claim.lease, LEASE, None, at(3))
            .await
            .unwrap(),
        Heartbeat::Held {
            cancel_requested: true
        }
    );
    assert!(store.cancel_running(&claim.lease, at(4)).await.unwrap());
    let ended = job(&store, acme, running.id).await;
    assert_eq!(ended.state, JobState::Canceled);
    assert_eq!(ended.finished_at, Some(at(4)));
    assert!(matches!(
        store.request_cancel(acme, running.id).await.unwrap(),
        CancelOutcome::AlreadyFinished(_)
    ));
    assert_eq!(
        store.request_cancel(acme, JobId::new()).await.unwrap(),
        CancelOutcome::NotFound
    );

    // Running, and its worker dies: the next claim cancels it rather than run it.
    let orphan = insert(&store, acme, 3).await;
    let _claim = claim_one(&store, "w", at(10)).await;
    store.request_cancel(acme, orphan.id).await.unwrap();
    assert!(store
        .claim_jobs("w", 10, LEASE, at(100))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(job(&store, acme, orphan.id).await.state, JobState::Canceled);

    // Running, then a retryable failure: the cancel wins over the retry.
    let retried = insert(&store, acme, 3).await;
    let claim = claim_one(&store, "w", at(200)).await;
    store.request_cancel(acme, retried.id).await.unwrap();
    let error = JobError::new(ErrorCode::Internal, "hiccup");
    assert!(store
        .fail_job(&claim.lease, &error, Some(at(260)), at(201))
        .await
        .unwrap());
    let ended = job(&store, acme, retried.id).await;
    assert_eq!(ended.state, JobState::Canceled);
    assert_eq!(ended.finished_at, Some(at(201)));

    // Running, then shutdown: requeue ends it as canceled too.
    let shut = insert(&store, acme, 3).await;
    let claim = claim_one(&store, "w", at(300)).await;
    store.request_cancel(acme, shut.id).await.unwrap();
    assert!(store.requeue(&claim.lease, at(301)).await.unwrap());
    assert_eq!(job(&store, acme, shut.id).await.state, JobState::Canceled);
}

#[tokio::test]
async fn delete_job_returns_artifacts_and_refuses_unfinished_jobs() {
    let (_dir, store) = open().await;
    let acme = account(&store, "acme").await;
    let other = account(&store, "other").await;
    let idem = Some(Idempotency {
        key: "k".into(),
        request_hash: "h".into(),
    });
    let InsertJob::Created(inserted) = store
        .insert_job(new_job(acme, 3), idem.clone())
        .await
        .unwrap()
    else {
        panic!("not created")
    };

    assert_eq!(
        store.delete_job(acme, inserted.id).await.unwrap(),
        Some(Err(JobState::Queued))
    );
    let claim = claim_one(&store, "w", t0()).await;
    assert_eq!(
        store.delete_job(acme, inserted.id).await.unwrap(),
        Some(Err(JobState::Running))
    );
    let arts = vec![
        artifact(acme, inserted.id, at(3600)),
        artifact(acme, inserted.id, at(3600)),
    ];
    assert!(store
        .succeed_job(&claim.lease, &arts, None, 0.0, at(1))
        .await
        .unwrap());

    assert_eq!(store.delete_job(other, inserted.id).await.unwrap(), None);
    let Some(Ok(mut deleted)) = store.delete_job(acme, inserted.id).await.unwrap() else {
        panic!("not deleted")
    };
    deleted.sort_by_key(|a| a.id);
    let mut expected = arts.clone();
    expected.sort_by_key(|a| a.id);
    assert_eq!(deleted, expected);

    assert_eq!(store.get_job(acme, inserted.id).await.unwrap(), None);
    for art in &arts {
        assert_eq!(store.get_artifact(acme, art.id).await.unwrap(), None);
    }
    assert_eq!(store.delete_job(acme, inserted.id).await.unwrap(), None);
    // The idempotency key went with the job.
    assert!(matches!(
        store.insert_job(new_job(acme, 3), idem).await.unwrap(),
        InsertJob::Created(_)
    ));
}

#[tokio::test]
async fn artifacts_are_scoped_and_owned_by_their_job() {
    let (_dir, store) = open().await;
    let acme = account(&store, "acme").await;
    let other = account(&store, "other").await;
    let inserted = insert(&store, acme, 3).await;
    let claim = claim_one(&store, "w", t0()).await;
    // A record naming another account is stored under the job's.
    let mut art = artifact(other, inserted.id, at(3600));
    assert!(store
        .succeed_job(&claim.lease, std::slice::from_ref(&art), None, 0.0, at(1))
        .await
        .unwrap());
    assert_eq!(store.get_artifact(other, art.id).await.unwrap(), None);
    art.account_id = acme;
    assert_eq!(store.get_artifact(acme, art.id).await.unwrap(), Some(art));
}

#[tokio::test]
async fn expired_files_and_blob_keys() {
    let (_dir, store) = open().await;
    let acme = account(&store, "acme").await;
    let uploads = [
        upload(acme, at(30)),
        upload(acme, at(10)),
        upload(acme, at(20)),
        upload(acme, at(1000)),
    ];
    for up in &uploads {
        store.insert_upload(up).await.unwrap();
    }
    let inserted = insert(&store, acme, 3).await;
    let claim = claim_one(&store, "w", t0()).await;
    let arts = [
        artifact(acme, inserted.id, at(50)),
        artifact(acme, inserted.id, at(5)),
        artifact(acme, inserted.id, at(2000)),
    ];
    assert!(store
        .succeed_job(&claim.lease, &arts, None, 0.0, at(1))
        .await
        .unwrap());

    let expired = store.expired_uploads(at(30), 10).await.unwrap();
    assert_eq!(
        expired.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![uploads[1].id, uploads[2].id, uploads[0].id]
    );
    assert_eq!(expired[0], uploads[1]);
    assert_eq!(store.expired_uploads(at(30), 2).await.unwrap().len(), 2);
    assert!(store.expired_uploads(at(9), 10).await.unwrap().is_empty());

    let expired = store.expired_artifacts(at(100), 10).await.unwrap();
    assert_eq!(
        expired.iter().map(|a| a.id).collect::<Vec<_>>(),
        vec![arts[1].id, arts[0].id]
    );

    let mut keys = store.all_blob_keys().await.unwrap();
    keys.sort();
    let mut expected: Vec<String> = uploads
        .iter()
        .map(|u| u.blob_key.clone())
        .chain(arts.iter().map(|a| a.blob_key.clone()))
        .collect();
    expected.sort();
    assert_eq!(keys, expected);

    store.delete_upload(uploads[1].id).await.unwrap();
    store.delete_artifact(arts[1].id).await.unwrap();
    assert_eq!(store.get_upload(acme, uploads[1].id).await.unwrap(), None);
    assert_eq!(store.get_artifact(acme, arts[1].id).await.unwrap(), None);
    assert_eq!(store.expired_uploads(at(30), 10).await.unwrap().len(), 2);
    assert_eq!(store.expired_artifacts(at(100), 10).await.unwrap().len(), 1);
    assert_eq!(
        store.all_blob_keys().await.unwrap().len(),
        expected.len() - 2
    );
    assert_eq!(job(&store, acme, inserted.id).await.artifacts.len(), 2);
}

/// Claims the parent, expands it into `n` children, and returns (parent lease, children).
async fn expanded(store: &SqliteStore, account: AccountId, n: usize) -> (ClaimedJob, Vec<JobId>) {
    let parent = insert(store, account, 3).await;
    let claimed = claim_one(store, "w1", at(1)).await;
    assert_eq!(claimed.job.id, parent.id);
    let children: Vec<NewJob> = (0..n)
        .map(|_| NewJob {
            parent_id: Some(parent.id),
            ..new_job(account, 1)
        })
        .collect();
    let ids = children.iter().map(|c| c.id).collect();
    assert!(store
        .expand_job(&claimed.lease, &children, serde_json::json!({"items": n}))
        .await
        .unwrap());
    (claimed, ids)
}

#[tokio::test]
async fn a_playlist_parent_waits_for_its_children_and_reports_their_progress() {
    let (_dir, store) = open().await;
    let acct = account(&store, "a").await;
    let (parent, children) = expanded(&store, acct, 3).await;
    let p = job(&store, acct, parent.job.id).await;
    assert_eq!((p.state, p.progress), (JobState::Running, 0.0));
    assert_eq!(p.result, Some(serde_json::json!({"items": 3})));
    // The old lease is gone: the worker that expanded it cannot write any more.
    assert!(!store
        .succeed_job(&parent.lease, &[], None, 0.0, at(2))
        .await
        .unwrap());
    // No reaper or claim takes the waiting parent, however late.
    let claimed = store
        .claim_jobs("w2", 10, LEASE, at(100_000_000))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    assert!(claimed
        .iter()
        .all(|c| c.job.parent_id == Some(parent.job.id)));
    let by_id = |id: JobId| claimed.iter().find(|c| c.job.id == id).unwrap();

    // Progress is the mean over the children.
    store
        .heartbeat(&by_id(children[0]).lease, LEASE, Some(0.5), at(100_000_001))
        .await
        .unwrap();
    assert!((job(&store, acct, parent.job.id).await.progress - 0.5 / 3.0).abs() < 1e-9);
    store
        .succeed_job(&by_id(children[0]).lease, &[], None, 0.0, at(100_000_002))
        .await
        .unwrap();
    store
        .fail_job(
            &by_id(children[1]).lease,
            &JobError::new(ErrorCode::MediaUnavailable, "gone"),
            None,
            at(100_000_003),
        )
        .await
        .unwrap();
    let p = job(&store, acct, parent.job.id).await;
    assert_eq!(p.state, JobState::Running);
    assert!((p.progress - 2.0 / 3.0).abs() < 1e-9);
    store
        .succeed_job(&by_id(children[2]).lease, &[], None, 0.0, at(100_000_004))
        .await
        .unwrap();
    let p = job(&store, acct, parent.job.id).await;
    assert_eq!(
        (p.state, p.progress, p.error),
        (JobState::Succeeded, 1.0, None)
    );
    assert_eq!(p.finished_at, Some(at(100_000_004)));
}

#[tokio::test]
async fn a_playlist_whose_items_all_fail_fails() {
    let (_dir, store) = open().await;
    let acct = account(&store, "a").await;
    let (parent, _) = expanded(&store, acct, 2).await;
    for claimed in store.claim_jobs("w2", 10, LEASE, at(5)).await.unwrap() {
        store
            .fail_job(
                &claimed.lease,
                &JobError::new(ErrorCode::GeoBlocked, "no"),
                None,
                at(6),
            )
            .await
            .unwrap();
    }
    let p = job(&store, acct, parent.job.id).await;
    assert_eq!(p.state, JobState::Failed);
    assert_eq!(p.error.map(|e| e.code), Some(ErrorCode::DownloadFailed));
}

#[tokio::test]
async fn canceling_a_playlist_cancels_its_items() {
    let (_dir, store) = open().await;
    let acct = account(&store, "a").await;
    let (parent, children) = expanded(&store, acct, 3).await;
    // One item runs, two wait.
    let mut running = store.claim_jobs("w2", 1, LEASE, at(5)).await.unwrap();
    let running = running.pop().unwrap();
    let outcome = store.request_cancel(acct, parent.job.id).await.unwrap();
    assert!(matches!(outcome, CancelOutcome::Requested(_)));
    for id in &children {
        let child = job(&store, acct, *id).await;
        assert!(child.cancel_requested);
        let expected = if *id == running.job.id {
            JobState::Running
        } else {
            JobState::Canceled
        };
        assert_eq!(child.state, expected);
    }
    assert_eq!(
        job(&store, acct, parent.job.id).await.state,
        JobState::Running
    );
    // The running item's worker sees the request and stops: the parent ends canceled.
    assert!(store.cancel_running(&running.lease, at(6)).await.unwrap());
    assert_eq!(
        job(&store, acct, parent.job.id).await.state,
        JobState::Canceled
    );
    // A finished parent can be deleted; its items stay, on their own.
    assert!(matches!(
        store.delete_job(acct, parent.job.id).await.unwrap(),
        Some(Ok(_))
    ));
    assert_eq!(job(&store, acct, children[0]).await.parent_id, None);
}

#[tokio::test]
async fn expand_is_fenced_on_the_lease() {
    let (_dir, store) = open().await;
    let acct = account(&store, "a").await;
    let parent = insert(&store, acct, 3).await;
    let claimed = claim_one(&store, "w1", at(1)).await;
    let stale = Lease {
        owner: "someone-else".into(),
        ..claimed.lease.clone()
    };
    let child = NewJob {
        parent_id: Some(parent.id),
        ..new_job(acct, 1)
    };
    assert!(!store
        .expand_job(&stale, std::slice::from_ref(&child), serde_json::json!({}))
        .await
        .unwrap());
    assert!(store.get_job(acct, child.id).await.unwrap().is_none());
}

//! An in-memory store for the worker's tests: queue calls are recorded, the rest is unused.

use async_trait::async_trait;
use audiomill_core::{
    AccountId, ArtifactId, InputRef, JobError, JobId, JobState, KeyId, MediaInfo, OperationKind,
    OutputSpec, PlanLimits, PlanName, UploadId,
};
use audiomill_store::{
    Account, Artifact, CancelOutcome, ClaimedJob, Heartbeat, Idempotency, InsertJob, Job,
    JobFilter, KeyRecord, Lease, NewJob, Page, Plan, Result, Store, Upload, Usage,
};
use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// A write the worker made.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Call {
    Succeed {
        artifacts: Vec<Artifact>,
        result: Option<serde_json::Value>,
    },
    Fail {
        error: JobError,
        retry_at: Option<DateTime<Utc>>,
    },
    Cancel,
    Requeue,
    Expand {
        children: Vec<NewJob>,
        result: serde_json::Value,
    },
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) claimable: VecDeque<ClaimedJob>,
    pub(crate) uploads: HashMap<UploadId, Upload>,
    pub(crate) artifacts: HashMap<ArtifactId, Artifact>,
    pub(crate) heartbeat: Option<Heartbeat>,
    pub(crate) heartbeats: Vec<Option<f64>>,
    pub(crate) succeed_returns: Option<bool>,
    pub(crate) calls: Vec<Call>,
    /// The plan limits `account_limits` answers (the default plan's when `None`).
    pub(crate) limits: Option<PlanLimits>,
}

#[derive(Default)]
pub(crate) struct FakeStore {
    pub(crate) state: Mutex<State>,
}

impl FakeStore {
    pub(crate) fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    pub(crate) fn set_heartbeat(&self, heartbeat: Heartbeat) {
        self.state.lock().unwrap().heartbeat = Some(heartbeat);
    }

    fn write(&self, call: Call) -> bool {
        self.state.lock().unwrap().calls.push(call);
        true
    }
}

pub(crate) fn media_info() -> MediaInfo {
    MediaInfo {
        container: "wav".into(),
        codec: "pcm_s16le".into(),
        duration_secs: Some(1.0),
        sample_rate: 44_100,
        channels: 2,
        bit_rate: None,
    }
}

/// A running job on `input`, claimed for its first attempt.
pub(crate) fn claimed_job(
    account: AccountId,
    input: InputRef,
    output_name: Option<&str>,
) -> ClaimedJob {
    let now = Utc::now();
    let job = Job {
        id: JobId::new(),
        account_id: account,
        operation: OperationKind::Convert,
        options: serde_json::json!({"format": "wav"}),
        input,
        output: OutputSpec {
            name: output_name.map(Into::into),
        },
        input_seconds: Some(1.0),
        state: JobState::Running,
        progress: 0.0,
        attempt: 1,
        max_attempts: 3,
        cancel_requested: false,
        error: None,
        result: None,
        created_at: now,
        run_at: now,
        started_at: Some(now),
        finished_at: None,
        parent_id: None,
        reserved_seconds: 0.0,
        artifacts: Vec::new(),
    };
    let lease = Lease {
        job_id: job.id,
        owner: "test-owner".into(),
        attempt: 1,
    };
    ClaimedJob { job, lease }
}

#[async_trait]
impl Store for FakeStore {
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
    async fn create_account(&self, _name: &str, _plan: Option<&PlanName>) -> Result<Account> {
        unreachable!("the worker never calls this store method")
    }
    async fn set_account_plan(&self, _account: AccountId, _plan: &PlanName) -> Result<bool> {
        unreachable!("the worker never calls this store method")
    }
    async fn list_accounts(&self) -> Result<Vec<Account>> {
        unreachable!("the worker never calls this store method")
    }
    async fn account_limits(&self, _account: AccountId) -> Result<(PlanName, PlanLimits)> {
        let limits = self
            .state
            .lock()
            .unwrap()
            .limits
            .clone()
            .unwrap_or_default();
        Ok((PlanName::default_plan(), limits))
    }
    async fn create_plan(&self, _name: &PlanName, _limits: &PlanLimits) -> Result<Plan> {
        unreachable!("the worker never calls this store method")
    }
    async fn update_plan(&self, _name: &PlanName, _limits: &PlanLimits) -> Result<bool> {
        unreachable!("the worker never calls this store method")
    }
    async fn list_plans(&self) -> Result<Vec<Plan>> {
        unreachable!("the worker never calls this store method")
    }
    async fn usage(&self, _account: AccountId, _period: &str) -> Result<Usage> {
        unreachable!("the worker never calls this store method")
    }
    async fn expire_key(&self, _id: KeyId, _at: DateTime<Utc>) -> Result<bool> {
        unreachable!("the worker never calls this store method")
    }
    async fn account_by_name(&self, _name: &str) -> Result<Option<Account>> {
        unreachable!("the worker never calls this store method")
    }
    async fn insert_key(&self, _key: &KeyRecord) -> Result<()> {
        unreachable!("the worker never calls this store method")
    }
    async fn key_by_hash(&self, _hash: &str) -> Result<Option<KeyRecord>> {
        unreachable!("the worker never calls this store method")
    }
    async fn list_keys(&self) -> Result<Vec<KeyRecord>> {
        unreachable!("the worker never calls this store method")
    }
    async fn revoke_key(&self, _id: KeyId, _at: DateTime<Utc>) -> Result<bool> {
        unreachable!("the worker never calls this store method")
    }
    async fn count_active_keys(&self) -> Result<u64> {
        unreachable!("the worker never calls this store method")
    }
    async fn insert_upload(&self, upload: &Upload) -> Result<()> {
        let mut state = self.state.lock().unwrap();
        state.uploads.insert(upload.id, upload.clone());
        Ok(())
    }
    async fn get_upload(&self, account: AccountId, id: UploadId) -> Result<Option<Upload>> {
        let state = self.state.lock().unwrap();
        Ok(state
            .uploads
            .get(&id)
            .filter(|u| u.account_id == account)
            .cloned())
    }
    async fn list_uploads(&self, _a: AccountId, _p: Page<UploadId>) -> Result<Vec<Upload>> {
        unreachable!("the worker never calls this store method")
    }
    async fn delete_unused_upload(
        &self,
        _a: AccountId,
        _id: UploadId,
    ) -> Result<audiomill_store::UploadDeletion> {
        unreachable!("the worker never calls this store method")
    }
    async fn insert_job(&self, _job: NewJob, _idem: Option<Idempotency>) -> Result<InsertJob> {
        unreachable!("the worker never calls this store method")
    }
    async fn get_job(&self, _account: AccountId, _id: JobId) -> Result<Option<Job>> {
        unreachable!("the worker never calls this store method")
    }
    async fn list_jobs(&self, _a: AccountId, _f: JobFilter, _p: Page) -> Result<Vec<Job>> {
        unreachable!("the worker never calls this store method")
    }
    async fn request_cancel(&self, _account: AccountId, _id: JobId) -> Result<CancelOutcome> {
        unreachable!("the worker never calls this store method")
    }
    async fn delete_job(
        &self,
        _account: AccountId,
        _id: JobId,
    ) -> Result<Option<std::result::Result<Vec<Artifact>, JobState>>> {
        unreachable!("the worker never calls this store method")
    }
    async fn claim_jobs(
        &self,
        _owner: &str,
        limit: u32,
        _lease: Duration,
        _now: DateTime<Utc>,
    ) -> Result<Vec<ClaimedJob>> {
        let mut state = self.state.lock().unwrap();
        let n = (limit as usize).min(state.claimable.len());
        Ok(state.claimable.drain(..n).collect())
    }
    async fn heartbeat(
        &self,
        _lease: &Lease,
        _extend: Duration,
        progress: Option<f64>,
        _now: DateTime<Utc>,
    ) -> Result<Heartbeat> {
        let mut state = self.state.lock().unwrap();
        state.heartbeats.push(progress);
        Ok(state.heartbeat.unwrap_or(Heartbeat::Held {
            cancel_requested: false,
        }))
    }
    async fn expand_job(
        &self,
        _lease: &Lease,
        children: &[NewJob],
        result: serde_json::Value,
    ) -> Result<bool> {
        Ok(self.write(Call::Expand {
            children: children.to_vec(),
            result,
        }))
    }
    async fn succeed_job(
        &self,
        _lease: &Lease,
        artifacts: &[Artifact],
        result: Option<serde_json::Value>,
        _charged_seconds: f64,
        _now: DateTime<Utc>,
    ) -> Result<bool> {
        let returns = self.state.lock().unwrap().succeed_returns.unwrap_or(true);
        if returns {
            self.write(Call::Succeed {
                artifacts: artifacts.to_vec(),
                result,
            });
        }
        Ok(returns)
    }
    async fn fail_job(
        &self,
        _lease: &Lease,
        error: &JobError,
        retry_at: Option<DateTime<Utc>>,
        _now: DateTime<Utc>,
    ) -> Result<bool> {
        Ok(self.write(Call::Fail {
            error: error.clone(),
            retry_at,
        }))
    }
    async fn cancel_running(&self, _lease: &Lease, _now: DateTime<Utc>) -> Result<bool> {
        Ok(self.write(Call::Cancel))
    }
    async fn requeue(&self, _lease: &Lease, _now: DateTime<Utc>) -> Result<bool> {
        Ok(self.write(Call::Requeue))
    }
    async fn queue_depth(&self, _now: DateTime<Utc>) -> Result<u64> {
        Ok(self.state.lock().unwrap().claimable.len() as u64)
    }
    async fn get_artifact(&self, account: AccountId, id: ArtifactId) -> Result<Option<Artifact>> {
        let state = self.state.lock().unwrap();
        Ok(state
            .artifacts
            .get(&id)
            .filter(|a| a.account_id == account)
            .cloned())
    }
    async fn expired_uploads(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Upload>> {
        let state = self.state.lock().unwrap();
        let mut expired: Vec<Upload> = state
            .uploads
            .values()
            .filter(|u| u.expires_at <= now)
            .cloned()
            .collect();
        expired.truncate(limit as usize);
        Ok(expired)
    }
    async fn expired_artifacts(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Artifact>> {
        let state = self.state.lock().unwrap();
        let mut expired: Vec<Artifact> = state
            .artifacts
            .values()
            .filter(|a| a.expires_at <= now)
            .cloned()
            .collect();
        expired.truncate(limit as usize);
        Ok(expired)
    }
    async fn delete_upload(&self, id: UploadId) -> Result<()> {
        self.state.lock().unwrap().uploads.remove(&id);
        Ok(())
    }
    async fn delete_artifact(&self, id: ArtifactId) -> Result<()> {
        self.state.lock().unwrap().artifacts.remove(&id);
        Ok(())
    }
    async fn all_blob_keys(&self) -> Result<Vec<String>> {
        unreachable!("the worker never calls this store method")
    }
}

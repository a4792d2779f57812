//! The last step of an attempt: the child's files checked and moved into blob storage, and
//! the end written to the store, fenced on the lease.

use crate::attempt::{RunEnd, Shared};
use crate::backoff::backoff;
use crate::errors::{crashed, internal};
use crate::jobdir::JobDir;
use crate::metrics::Outcome;
use crate::names::{plain_file_name, valid_download_name};
use crate::protocol::{ChildArtifact, MAX_ARTIFACTS};
use audiomill_blob::{BlobKey, BlobStore};
use audiomill_core::{ArtifactId, AudioFormat, JobError, PlanLimits};
use audiomill_store::{Artifact, ClaimedJob};
use chrono::Utc;
use std::os::unix::fs::MetadataExt;

/// What to record in the store.
pub(crate) enum Final {
    Succeeded {
        rows: Vec<Artifact>,
        result: Option<serde_json::Value>,
        audio_seconds: f64,
    },
    Failed(JobError),
    Canceled,
    Lost,
    Requeue,
}

impl Final {
    /// The end of an attempt's work, once a success's files are in blob storage. A playlist's
    /// expansion is not an end to record here.
    pub(crate) async fn of(
        end: RunEnd,
        shared: &Shared,
        claimed: &ClaimedJob,
        plan: &PlanLimits,
        dir: &JobDir,
    ) -> Final {
        match end {
            RunEnd::Done {
                artifacts,
                result,
                audio_seconds,
            } => match ingest(shared, claimed, plan, dir, artifacts).await {
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
            RunEnd::Expand(_) => {
                tracing::error!("a playlist expansion reached the record step");
                Final::Failed(internal())
            }
        }
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
pub(crate) async fn record(shared: &Shared, claimed: &ClaimedJob, end: Final) -> Outcome {
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
pub(crate) async fn fail(shared: &Shared, claimed: &ClaimedJob, error: JobError) -> Outcome {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
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

//! The first step of an attempt: the job's input in the job directory (`input`), copied
//! from blob storage or fetched from its link, with the name its artifacts are named after.

use crate::attempt::{Attempt, RunEnd, Shared};
use crate::errors::{input_not_found, internal};
use crate::fetch::{self, FetchedInput};
use crate::names::{name_from_file, name_from_title, name_from_url};
use crate::ops;
use crate::protocol::SourceMeta;
use audiomill_blob::{BlobError, BlobKey};
use audiomill_core::{InputRef, InputUrl, JobError};
use audiomill_store::Job;
use tokio::time::Instant;

/// The input, in place.
pub(crate) struct Input {
    /// What the artifacts are named after unless the job names them.
    pub(crate) name: Option<String>,
    /// Where a URL input came from.
    pub(crate) source: Option<SourceMeta>,
}

/// Puts the job's input at `dir.input()`. A playlist link ends the attempt here (with the
/// list to expand); so do a cancel, a lost lease, the deadline and shutdown.
pub(crate) async fn prepare(at: &Attempt<'_>) -> Result<Input, RunEnd> {
    let input = match &at.claimed.job.input {
        InputRef::Url(url) => fetched(at, url).await?,
        InputRef::Upload(_) | InputRef::Artifact(_) => copied(at).await?,
    };
    match at.lease_end() {
        Some(end) => Err(end),
        None => Ok(input),
    }
}

/// A link, fetched by this process (the child never touches the network).
async fn fetched(at: &Attempt<'_>, url: &InputUrl) -> Result<Input, RunEnd> {
    let config = &at.shared.config;
    let playlist = ops::download::playlist_items(at.operation, &at.limits);
    let share = ops::fetch_share(at.operation, &at.claimed.job.input);
    let time_left = at.deadline.saturating_duration_since(Instant::now());
    let sender = at.progress.clone();
    let mut report = move |fraction: f64| {
        sender.send_replace(Some(fraction * share));
    };
    let fetching = fetch::fetch_input(
        config,
        &at.limits,
        url,
        at.dir,
        playlist,
        time_left,
        &mut report,
    );
    match at.guarded(fetching).await? {
        Err(error) => Err(RunEnd::Failed(error)),
        Ok(FetchedInput::Playlist(list)) => Err(RunEnd::Expand(list)),
        Ok(FetchedInput::Media(meta)) => {
            // A site's title; for a direct link, the linked file's name (after redirects).
            let name = match &meta.extractor {
                Some(_) => meta.title.as_deref().and_then(name_from_title),
                None => name_from_url(meta.webpage_url.as_deref().unwrap_or(&meta.url)),
            };
            Ok(Input {
                name,
                source: Some(meta),
            })
        }
    }
}

/// An upload or an artifact, copied from blob storage.
async fn copied(at: &Attempt<'_>) -> Result<Input, RunEnd> {
    let stored = stored_input(at.shared, &at.claimed.job)
        .await
        .map_err(RunEnd::Failed)?;
    let path = at.dir.input();
    let copying = at.shared.blob.get_to_file(&stored.key, &path);
    let copied = tokio::select! {
        copied = copying => copied,
        _ = at.stop.cancelled() => return Err(RunEnd::Requeue),
    };
    match copied {
        Ok(_) => Ok(Input {
            name: stored.name,
            source: None,
        }),
        Err(BlobError::NotFound(_)) => Err(RunEnd::Failed(input_not_found())),
        Err(e) => {
            tracing::error!(error = %e, "cannot copy the input into the job directory");
            Err(RunEnd::Failed(internal()))
        }
    }
}

/// A stored input: its blob key, and the name it came with (an upload's file name, an
/// artifact's download name), which the job's artifacts are named after.
struct StoredInput {
    key: BlobKey,
    name: Option<String>,
}

/// The input's blob key and name, from the job's account only.
async fn stored_input(shared: &Shared, job: &Job) -> Result<StoredInput, JobError> {
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
                name: name.as_deref().and_then(name_from_file),
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

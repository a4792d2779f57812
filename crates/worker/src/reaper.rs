//! Retention: expired uploads and artifacts go, bytes first, then rows.

use audiomill_blob::{BlobKey, BlobStore};
use audiomill_store::{Store, StoreError};
use chrono::{DateTime, Utc};

/// Rows fetched per round.
const BATCH: u32 = 100;

/// Deletes every upload and artifact whose `expires_at` is before `now`: the bytes first, then
/// the row (so a crash in between leaves a row whose bytes are gone, which the next run deletes,
/// rather than bytes nobody refers to). A blob that is already missing is fine.
///
/// Returns how many uploads and artifacts were removed. Fails only if the store fails; a blob
/// that cannot be deleted is logged, its row kept, and retried on the next run.
pub async fn reap_expired(
    store: &dyn Store,
    blob: &dyn BlobStore,
    now: DateTime<Utc>,
) -> Result<usize, StoreError> {
    let mut removed = 0;
    loop {
        let batch = store.expired_uploads(now, BATCH).await?;
        let mut progressed = false;
        for upload in &batch {
            if delete_bytes(blob, &upload.blob_key, "upload").await {
                store.delete_upload(upload.id).await?;
                removed += 1;
                progressed = true;
            }
        }
        if batch.len() < BATCH as usize || !progressed {
            break;
        }
    }
    loop {
        let batch = store.expired_artifacts(now, BATCH).await?;
        let mut progressed = false;
        for artifact in &batch {
            if delete_bytes(blob, &artifact.blob_key, "artifact").await {
                store.delete_artifact(artifact.id).await?;
                removed += 1;
                progressed = true;
            }
        }
        if batch.len() < BATCH as usize || !progressed {
            break;
        }
    }
    Ok(removed)
}

/// Deletes the blob of a row; `true` if the row may go now.
async fn delete_bytes(blob: &dyn BlobStore, stored_key: &str, kind: &str) -> bool {
    let Some(key) = BlobKey::from_stored(stored_key) else {
        // Not a key the server could have written: there are no bytes we may address.
        tracing::warn!(
            kind,
            key = stored_key,
            "expired row has an invalid blob key"
        );
        return true;
    };
    match blob.delete(&key).await {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(kind, %key, error = %e, "cannot delete expired blob; will retry");
            false
        }
    }
}

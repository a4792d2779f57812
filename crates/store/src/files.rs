//! The files role: uploads and artifacts (their rows; the bytes are in blob storage), and
//! what retention and the orphan sweep need.

use crate::model::{Artifact, Page, Upload, UploadDeletion};
use crate::Result;
use async_trait::async_trait;
use audiomill_core::{AccountId, ArtifactId, UploadId};
use chrono::{DateTime, Utc};

/// Upload and artifact rows.
#[async_trait]
pub trait FileStore: Send + Sync + 'static {
    /// Records an upload whose bytes are already in blob storage.
    async fn insert_upload(&self, upload: &Upload) -> Result<()>;
    /// An account's upload.
    async fn get_upload(&self, account: AccountId, id: UploadId) -> Result<Option<Upload>>;
    /// An account's uploads, newest first. `page.before` is the cursor: the id of the last
    /// upload of the previous page.
    async fn list_uploads(&self, account: AccountId, page: Page<UploadId>) -> Result<Vec<Upload>>;
    /// Deletes an account's upload row unless a queued or running job reads it, in one
    /// transaction (the bytes are the caller's to delete after).
    async fn delete_unused_upload(
        &self,
        account: AccountId,
        id: UploadId,
    ) -> Result<UploadDeletion>;
    /// An account's artifact.
    async fn get_artifact(&self, account: AccountId, id: ArtifactId) -> Result<Option<Artifact>>;

    /// Uploads whose `expires_at` has passed (`<= now`), earliest expiry first.
    async fn expired_uploads(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Upload>>;
    /// Artifacts whose `expires_at` has passed (`<= now`), earliest expiry first.
    async fn expired_artifacts(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Artifact>>;
    /// Deletes an upload row.
    async fn delete_upload(&self, id: UploadId) -> Result<()>;
    /// Deletes an artifact row.
    async fn delete_artifact(&self, id: ArtifactId) -> Result<()>;
    /// Every blob key the database refers to (uploads and artifacts), for the orphan sweeper.
    async fn all_blob_keys(&self) -> Result<Vec<String>>;
}

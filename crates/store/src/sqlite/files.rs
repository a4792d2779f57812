//! The files role ([`FileStore`]) on SQLite: upload and artifact rows, retention.

use super::rows::{self, artifact_columns, json, ms, size_value, upload_columns};
use super::{conflict, SqliteStore};
use crate::model::*;
use crate::{FileStore, Result};
use async_trait::async_trait;
use audiomill_core::{AccountId, ArtifactId, UploadId};
use chrono::{DateTime, Utc};

#[async_trait]
impl FileStore for SqliteStore {
    async fn insert_upload(&self, upload: &Upload) -> Result<()> {
        sqlx::query(concat!(
            "INSERT INTO uploads (",
            upload_columns!(),
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(upload.id.to_string())
        .bind(upload.account_id.to_string())
        .bind(&upload.blob_key)
        .bind(&upload.filename)
        .bind(size_value(upload.size)?)
        .bind(&upload.sha256)
        .bind(json(&upload.media)?)
        .bind(ms(upload.created_at))
        .bind(ms(upload.expires_at))
        .execute(&self.write)
        .await
        .map_err(conflict("upload"))?;
        Ok(())
    }

    async fn get_upload(&self, account: AccountId, id: UploadId) -> Result<Option<Upload>> {
        sqlx::query(concat!(
            "SELECT ",
            upload_columns!(),
            " FROM uploads WHERE id = ? AND account_id = ?"
        ))
        .bind(id.to_string())
        .bind(account.to_string())
        .fetch_optional(&self.read)
        .await?
        .map(|row| rows::upload(&row))
        .transpose()
    }

    async fn list_uploads(&self, account: AccountId, page: Page<UploadId>) -> Result<Vec<Upload>> {
        // Ids sort by creation time: the cursor is the last id of the previous page.
        let before = page.before.map(|id| id.to_string());
        sqlx::query(concat!(
            "SELECT ",
            upload_columns!(),
            " FROM uploads WHERE account_id = ? AND (? IS NULL OR id < ?)",
            " ORDER BY id DESC LIMIT ?"
        ))
        .bind(account.to_string())
        .bind(&before)
        .bind(&before)
        .bind(i64::from(page.limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(rows::upload)
        .collect()
    }

    async fn delete_unused_upload(
        &self,
        account: AccountId,
        id: UploadId,
    ) -> Result<UploadDeletion> {
        let mut tx = self.write.begin().await?;
        let Some(row) = sqlx::query(concat!(
            "SELECT ",
            upload_columns!(),
            " FROM uploads WHERE id = ? AND account_id = ?"
        ))
        .bind(id.to_string())
        .bind(account.to_string())
        .fetch_optional(&mut *tx)
        .await?
        else {
            return Ok(UploadDeletion::NotFound);
        };
        let upload = rows::upload(&row)?;
        let reader: Option<String> = sqlx::query_scalar(
            "SELECT id FROM jobs WHERE account_id = ? AND state IN ('queued', 'running') \
             AND json_extract(input, '$.upload') = ? LIMIT 1",
        )
        .bind(account.to_string())
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(job) = reader {
            let job = job
                .parse()
                .map_err(|_| crate::StoreError::Corrupt(format!("job id {job:?}")))?;
            return Ok(UploadDeletion::InUse(job));
        }
        sqlx::query("DELETE FROM uploads WHERE id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(UploadDeletion::Deleted(Box::new(upload)))
    }

    async fn get_artifact(&self, account: AccountId, id: ArtifactId) -> Result<Option<Artifact>> {
        sqlx::query(concat!(
            "SELECT ",
            artifact_columns!(),
            " FROM artifacts WHERE id = ? AND account_id = ?"
        ))
        .bind(id.to_string())
        .bind(account.to_string())
        .fetch_optional(&self.read)
        .await?
        .map(|row| rows::artifact(&row))
        .transpose()
    }

    async fn expired_uploads(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Upload>> {
        sqlx::query(concat!(
            "SELECT ",
            upload_columns!(),
            " FROM uploads WHERE expires_at <= ? ORDER BY expires_at, id LIMIT ?"
        ))
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(rows::upload)
        .collect()
    }

    async fn expired_artifacts(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<Artifact>> {
        sqlx::query(concat!(
            "SELECT ",
            artifact_columns!(),
            " FROM artifacts WHERE expires_at <= ? ORDER BY expires_at, id LIMIT ?"
        ))
        .bind(ms(now))
        .bind(i64::from(limit))
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(rows::artifact)
        .collect()
    }

    async fn delete_upload(&self, id: UploadId) -> Result<()> {
        sqlx::query("DELETE FROM uploads WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn delete_artifact(&self, id: ArtifactId) -> Result<()> {
        sqlx::query("DELETE FROM artifacts WHERE id = ?")
            .bind(id.to_string())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    async fn all_blob_keys(&self) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT blob_key FROM uploads UNION SELECT blob_key FROM artifacts")
                .fetch_all(&self.read)
                .await?,
        )
    }
}

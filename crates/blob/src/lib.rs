//! Byte storage for uploads and artifacts.
//!
//! Owns: [`BlobKey`] (a storage key built from server-generated ids only, so no user string
//! ever becomes a path) and the [`BlobStore`] trait with its local-directory implementation,
//! [`LocalBlobStore`]. An S3 implementation will sit beside it.
//!
//! Writes are atomic: a blob is written to a temporary name in the store's own directory and
//! renamed into place, so a reader never sees half a file and a crash leaves only a temp file
//! that [`LocalBlobStore::sweep_temp`] removes at start-up.

use async_trait::async_trait;
use audiomill_core::{ArtifactId, JobId, UploadId};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};

/// An error of the blob store. May hold paths: log it, never return it to a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// No blob under this key.
    #[error("blob not found: {0}")]
    NotFound(String),
    /// The underlying storage failed.
    #[error("blob I/O error on {key}: {source}")]
    Io {
        key: String,
        #[source]
        source: std::io::Error,
    },
}

/// Result of the blob store.
pub type Result<T, E = BlobError> = std::result::Result<T, E>;

/// A storage key. Only constructible from ids, so it is always a safe relative path made of
/// `[a-z0-9_/]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobKey(String);

impl BlobKey {
    /// Where an upload's bytes live.
    pub fn upload(id: UploadId) -> Self {
        Self(format!("uploads/{id}"))
    }

    /// Where an artifact's bytes live (grouped by job, so a job's files delete together).
    pub fn artifact(job: JobId, id: ArtifactId) -> Self {
        Self(format!("artifacts/{job}/{id}"))
    }

    /// Re-reads a key stored in the database. Refuses anything a server id could not produce.
    pub fn from_stored(text: &str) -> Option<Self> {
        let valid = text.split('/').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
        (valid && (text.starts_with("uploads/") || text.starts_with("artifacts/")))
            .then(|| Self(text.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for BlobKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A readable byte range of a blob.
pub type BlobReader = Box<dyn AsyncRead + Send + Unpin>;

/// Where bytes are kept.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Moves the finished local file `src` into the store under `key` (consuming it).
    async fn put_file(&self, key: &BlobKey, src: &Path) -> Result<u64>;
    /// Copies the blob to the local file `dest`.
    async fn get_to_file(&self, key: &BlobKey, dest: &Path) -> Result<u64>;
    /// Size of the blob in bytes.
    async fn size(&self, key: &BlobKey) -> Result<u64>;
    /// Reads `len` bytes from `offset`.
    async fn read_range(&self, key: &BlobKey, offset: u64, len: u64) -> Result<BlobReader>;
    /// Deletes the blob; deleting a missing blob is not an error.
    async fn delete(&self, key: &BlobKey) -> Result<()>;
    /// All keys in the store (for the orphan sweeper).
    async fn list_keys(&self) -> Result<Vec<BlobKey>>;
    /// Checks that the store is reachable and writable.
    async fn check(&self) -> Result<()>;
}

/// Blobs as files under a directory.
#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    root: PathBuf,
}

impl LocalBlobStore {
    /// A store rooted at `root` (created if missing).
    pub fn open(root: impl Into<PathBuf>) -> std::io::Result<Self> {
        let root = root.into();
        std::fs::create_dir_all(root.join("tmp"))?;
        Ok(Self { root })
    }

    /// The directory the store keeps in-flight writes in; on the same file system as the blobs,
    /// so a finished file moves in with a rename.
    pub fn temp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Removes temp files left by a crash. Call at start-up, before anything writes.
    pub fn sweep_temp(&self) -> std::io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(self.temp_dir())? {
            let path = entry?.path();
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
            removed += 1;
        }
        Ok(removed)
    }

    fn path(&self, key: &BlobKey) -> PathBuf {
        self.root.join(&key.0)
    }

    fn io(key: &BlobKey) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
        move |source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                BlobError::NotFound(key.0.clone())
            } else {
                BlobError::Io {
                    key: key.0.clone(),
                    source,
                }
            }
        }
    }
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn put_file(&self, key: &BlobKey, src: &Path) -> Result<u64> {
        let dest = self.path(key);
        if let Some(parent) = dest.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(Self::io(key))?;
        }
        // Same file system (temp dir inside the root): an atomic rename. Otherwise copy to a
        // temp name beside the destination, then rename.
        if tokio::fs::rename(src, &dest).await.is_err() {
            let partial = self.temp_dir().join(format!("put-{}", ulid_like()));
            tokio::fs::copy(src, &partial)
                .await
                .map_err(Self::io(key))?;
            tokio::fs::rename(&partial, &dest)
                .await
                .map_err(Self::io(key))?;
            tokio::fs::remove_file(src).await.map_err(Self::io(key))?;
        }
        Ok(tokio::fs::metadata(&dest)
            .await
            .map_err(Self::io(key))?
            .len())
    }

    async fn get_to_file(&self, key: &BlobKey, dest: &Path) -> Result<u64> {
        tokio::fs::copy(self.path(key), dest)
            .await
            .map_err(Self::io(key))
    }

    async fn size(&self, key: &BlobKey) -> Result<u64> {
        Ok(tokio::fs::metadata(self.path(key))
            .await
            .map_err(Self::io(key))?
            .len())
    }

    async fn read_range(&self, key: &BlobKey, offset: u64, len: u64) -> Result<BlobReader> {
        let mut file = tokio::fs::File::open(self.path(key))
            .await
            .map_err(Self::io(key))?;
        file.seek(std::io::SeekFrom::Start(offset))
            .await
            .map_err(Self::io(key))?;
        Ok(Box::new(file.take(len)))
    }

    async fn delete(&self, key: &BlobKey) -> Result<()> {
        match tokio::fs::remove_file(self.path(key)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Self::io(key)(source)),
        }
        // Drop the job's directory once its last artifact is gone; fails harmlessly if not empty.
        if let Some(parent) = self.path(key).parent() {
            if parent != self.root.join("uploads") && parent != self.root.join("artifacts") {
                let _ = tokio::fs::remove_dir(parent).await;
            }
        }
        Ok(())
    }

    async fn list_keys(&self) -> Result<Vec<BlobKey>> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let mut keys = Vec::new();
            let mut stack = vec![root.join("uploads"), root.join("artifacts")];
            while let Some(dir) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if let Some(key) = path
                        .strip_prefix(&root)
                        .ok()
                        .and_then(|p| p.to_str())
                        .and_then(BlobKey::from_stored)
                    {
                        keys.push(key);
                    }
                }
            }
            keys
        })
        .await
        .map_err(|e| BlobError::Io {
            key: String::new(),
            source: std::io::Error::other(e),
        })
    }

    async fn check(&self) -> Result<()> {
        let probe = self.temp_dir().join(format!("check-{}", ulid_like()));
        let key = BlobKey("check".into());
        tokio::fs::write(&probe, b"ok")
            .await
            .map_err(Self::io(&key))?;
        tokio::fs::remove_file(&probe).await.map_err(Self::io(&key))
    }
}

/// A unique-enough suffix for temp names inside our own directory.
fn ulid_like() -> String {
    audiomill_core::UploadId::new().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_read_range_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalBlobStore::open(dir.path()).unwrap();
        let src = store.temp_dir().join("src");
        std::fs::write(&src, b"0123456789").unwrap();
        let key = BlobKey::artifact(JobId::new(), ArtifactId::new());
        assert_eq!(store.put_file(&key, &src).await.unwrap(), 10);
        assert!(!src.exists());
        let mut out = String::new();
        store
            .read_range(&key, 2, 3)
            .await
            .unwrap()
            .read_to_string(&mut out)
            .await
            .unwrap();
        assert_eq!(out, "234");
        assert_eq!(store.list_keys().await.unwrap(), vec![key.clone()]);
        store.delete(&key).await.unwrap();
        store.delete(&key).await.unwrap();
        assert!(matches!(
            store.size(&key).await,
            Err(BlobError::NotFound(_))
        ));
        store.check().await.unwrap();
    }

    #[test]
    fn stored_keys_are_validated() {
        assert!(BlobKey::from_stored("uploads/upl_01jd4k7v2m3q8r9s0t1v2w3x4y").is_some());
        assert!(BlobKey::from_stored("uploads/../etc/passwd").is_none());
        assert!(BlobKey::from_stored("/etc/passwd").is_none());
        assert!(BlobKey::from_stored("uploads//x").is_none());
    }
}

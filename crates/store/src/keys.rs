//! The keys role: API key records (a hash and a display prefix, never the key).

use crate::model::KeyRecord;
use crate::Result;
use async_trait::async_trait;
use audiomill_core::KeyId;
use chrono::{DateTime, Utc};

/// API key records.
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Stores a new key record (the hash, never the key).
    async fn insert_key(&self, key: &KeyRecord) -> Result<()>;
    /// The key with this SHA-256 hash (revoked or not: the caller decides).
    async fn key_by_hash(&self, hash: &str) -> Result<Option<KeyRecord>>;
    /// All keys, oldest first.
    async fn list_keys(&self) -> Result<Vec<KeyRecord>>;
    /// Revokes a key; `false` if there is no such key or it was already revoked.
    async fn revoke_key(&self, id: KeyId, at: DateTime<Utc>) -> Result<bool>;
    /// Sets when a key stops working (rotation); `false` if there is no such key.
    async fn expire_key(&self, id: KeyId, at: DateTime<Utc>) -> Result<bool>;
    /// Number of keys not revoked.
    async fn count_active_keys(&self) -> Result<u64>;
}

//! Plans, accounts and keys: the work behind `/v1/admin/…` and the CLI's `plan`, `account`
//! and `key` commands, which call the same functions.

use audiomill_core::key::ApiKey;
use audiomill_core::{KeyId, Scope};
use audiomill_store::{Account, KeyRecord, Store, StoreError};
use chrono::{DateTime, Utc};

/// Why an admin action was refused; the text is safe to show.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A key just made: the secret is shown once.
pub struct NewKey {
    pub record: KeyRecord,
    pub key: ApiKey,
    pub account: Account,
}

/// Checks an account or key name.
pub fn check_name(what: &str, name: &str) -> Result<String, AdminError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
        return Err(AdminError::Invalid(format!(
            "{what} must be 1-100 printable characters"
        )));
    }
    Ok(name.to_owned())
}

/// Makes a key for the account named `account`; with `create_account`, the account is made on
/// the default plan when it does not exist (the CLI's convenience), else it must exist.
pub async fn create_key(
    store: &dyn Store,
    name: &str,
    account: &str,
    scopes: Vec<Scope>,
    create_account: bool,
) -> Result<NewKey, AdminError> {
    let name = check_name("a key name", name)?;
    let account_name = check_name("an account name", account)?;
    if scopes.is_empty() {
        return Err(AdminError::Invalid("give at least one scope".into()));
    }
    let account = match store.account_by_name(&account_name).await? {
        Some(a) => a,
        None if create_account => match store.create_account(&account_name, None).await {
            Ok(a) => a,
            // Created by a concurrent command in the meantime.
            Err(StoreError::Conflict(_)) => store
                .account_by_name(&account_name)
                .await?
                .ok_or(AdminError::NotFound("account"))?,
            Err(e) => return Err(e.into()),
        },
        None => return Err(AdminError::NotFound("account")),
    };
    let key = ApiKey::generate();
    let record = KeyRecord {
        id: KeyId::new(),
        account_id: account.id,
        name,
        display_prefix: key.display_prefix().to_owned(),
        hash: key.hash(),
        created_at: Utc::now(),
        revoked_at: None,
        scopes,
        expires_at: None,
    };
    store.insert_key(&record).await?;
    Ok(NewKey {
        record,
        key,
        account,
    })
}

/// Replaces a key: a new key with the same account, name and scopes, and the old one expiring
/// at `old_expires_at` (rotation without downtime).
pub async fn rotate_key(
    store: &dyn Store,
    id: KeyId,
    old_expires_at: DateTime<Utc>,
) -> Result<(KeyRecord, ApiKey), AdminError> {
    let now = Utc::now();
    let old = store
        .list_keys()
        .await?
        .into_iter()
        .find(|k| k.id == id && k.is_active(now))
        .ok_or(AdminError::NotFound("active key"))?;
    let key = ApiKey::generate();
    let record = KeyRecord {
        id: KeyId::new(),
        display_prefix: key.display_prefix().to_owned(),
        hash: key.hash(),
        created_at: now,
        revoked_at: None,
        expires_at: None,
        ..old.clone()
    };
    store.insert_key(&record).await?;
    store.expire_key(old.id, old_expires_at.max(now)).await?;
    Ok((record, key))
}

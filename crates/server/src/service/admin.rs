//! Plans, accounts and keys: the work behind `/v1/admin/…` and the CLI's `plan`, `account`
//! and `key` commands, which call the same functions.

use audiomill_core::key::ApiKey;
use audiomill_core::{KeyId, PlanLimits, PlanName, Scope};
use audiomill_store::{Account, KeyRecord, Plan, Store, StoreError};
use chrono::{DateTime, Utc};

/// Longest grace period of a rotated key, in hours (30 days).
pub const MAX_ROTATION_GRACE_HOURS: u32 = 720;

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

/// Replaces a key: a new key with the same account, name and scopes, and the old one working
/// `grace_hours` more (rotation without downtime). Returns the new key and when the old one
/// stops.
pub async fn rotate_key(
    store: &dyn Store,
    id: KeyId,
    grace_hours: u32,
) -> Result<(KeyRecord, ApiKey, DateTime<Utc>), AdminError> {
    if grace_hours > MAX_ROTATION_GRACE_HOURS {
        return Err(AdminError::Invalid(format!(
            "the old key's grace period is at most {MAX_ROTATION_GRACE_HOURS} hours"
        )));
    }
    let now = Utc::now();
    let old_expires_at = now + chrono::Duration::hours(i64::from(grace_hours));
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
    store.expire_key(old.id, old_expires_at).await?;
    Ok((record, key, old_expires_at))
}

/// Revokes a key at once.
pub async fn revoke_key(store: &dyn Store, id: KeyId) -> Result<(), AdminError> {
    if store.revoke_key(id, Utc::now()).await? {
        Ok(())
    } else {
        Err(AdminError::NotFound("active key"))
    }
}

/// Every key, oldest first (never their secrets: only hashes are stored).
pub async fn list_keys(store: &dyn Store) -> Result<Vec<KeyRecord>, AdminError> {
    Ok(store.list_keys().await?)
}

/// Every plan, by name.
pub async fn list_plans(store: &dyn Store) -> Result<Vec<Plan>, AdminError> {
    Ok(store.list_plans().await?)
}

/// The plan named `name`.
pub async fn plan(store: &dyn Store, name: &PlanName) -> Result<Plan, AdminError> {
    list_plans(store)
        .await?
        .into_iter()
        .find(|p| &p.name == name)
        .ok_or(AdminError::NotFound("plan"))
}

/// Creates a plan with checked limits.
pub async fn create_plan(
    store: &dyn Store,
    name: &PlanName,
    limits: &PlanLimits,
) -> Result<Plan, AdminError> {
    limits.validate().map_err(|e| AdminError::Invalid(e.0))?;
    match store.create_plan(name, limits).await {
        Ok(plan) => Ok(plan),
        Err(StoreError::Conflict(_)) => Err(AdminError::Conflict("plan")),
        Err(e) => Err(e.into()),
    }
}

/// Replaces a plan's limits with checked ones; they apply at once (to new jobs and requests).
pub async fn update_plan(
    store: &dyn Store,
    name: &PlanName,
    limits: &PlanLimits,
) -> Result<(), AdminError> {
    limits.validate().map_err(|e| AdminError::Invalid(e.0))?;
    if store.update_plan(name, limits).await? {
        Ok(())
    } else {
        Err(AdminError::NotFound("plan"))
    }
}

/// Every account, by name.
pub async fn list_accounts(store: &dyn Store) -> Result<Vec<Account>, AdminError> {
    Ok(store.list_accounts().await?)
}

/// Creates an account on `plan`.
pub async fn create_account(
    store: &dyn Store,
    name: &str,
    plan: &PlanName,
) -> Result<Account, AdminError> {
    let name = check_name("an account name", name)?;
    match store.create_account(&name, Some(plan)).await {
        Ok(account) => Ok(account),
        Err(StoreError::Conflict(_)) => Err(AdminError::Conflict("account")),
        Err(StoreError::NotFound(_)) => Err(AdminError::NotFound("plan")),
        Err(e) => Err(e.into()),
    }
}

/// Moves the account named `name` to `plan`.
pub async fn set_account_plan(
    store: &dyn Store,
    name: &str,
    plan: &PlanName,
) -> Result<(), AdminError> {
    let account = store
        .account_by_name(name)
        .await?
        .ok_or(AdminError::NotFound("account"))?;
    match store.set_account_plan(account.id, plan).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(AdminError::NotFound("account")),
        Err(StoreError::NotFound(_)) => Err(AdminError::NotFound("plan")),
        Err(e) => Err(e.into()),
    }
}

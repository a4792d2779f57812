//! `audiomill key …`

use anyhow::{bail, Context};
use audiomill_core::key::ApiKey;
use audiomill_core::{KeyId, Scope};
use audiomill_store::{KeyRecord, Store, StoreError};
use chrono::Utc;
use std::process::ExitCode;

use crate::cli::KeyCommand;
use crate::config::Config;

pub async fn run(config: &Config, command: KeyCommand) -> anyhow::Result<ExitCode> {
    let store = crate::serve::open_store(config).await?;
    match command {
        KeyCommand::Create {
            name,
            account,
            scopes,
        } => {
            let scopes =
                Scope::parse_list(&scopes).map_err(|e| anyhow::anyhow!("--scopes: {e}"))?;
            let name = name.trim().to_owned();
            if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
                bail!("--name must be 1-100 printable characters");
            }
            let account_name = account.unwrap_or_else(|| name.clone());
            let account = match store.account_by_name(&account_name).await? {
                Some(a) => a,
                None => match store.create_account(&account_name, None).await {
                    Ok(a) => a,
                    // Created by a concurrent command in the meantime.
                    Err(StoreError::Conflict(_)) => store
                        .account_by_name(&account_name)
                        .await?
                        .context("account vanished while creating it")?,
                    Err(e) => return Err(e.into()),
                },
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
            eprintln!(
                "created {} for account {:?}; the key is shown only now:",
                record.id, account.name
            );
            println!("{}", key.expose());
        }
        KeyCommand::List => {
            let keys = store.list_keys().await?;
            println!(
                "{:<32} {:<14} {:<24} {:<10} {:<28} NAME",
                "ID", "PREFIX", "CREATED", "STATE", "SCOPES"
            );
            let now = Utc::now();
            for k in keys {
                let state = if k.revoked_at.is_some() {
                    "revoked"
                } else if !k.is_active(now) {
                    "expired"
                } else if k.expires_at.is_some() {
                    "expiring"
                } else {
                    "active"
                };
                let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
                println!(
                    "{:<32} {:<14} {:<24} {:<10} {:<28} {}",
                    k.id.to_string(),
                    format!("{}…", k.display_prefix),
                    k.created_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                    state,
                    scopes.join(","),
                    k.name
                );
            }
        }
        KeyCommand::Rotate {
            id,
            expire_old_in_hours,
        } => {
            let id: KeyId = id.parse().map_err(|_| {
                anyhow::anyhow!("{id:?} is not a key id (key_…); see `audiomill key list`")
            })?;
            let now = Utc::now();
            let old = store
                .list_keys()
                .await?
                .into_iter()
                .find(|k| k.id == id && k.is_active(now))
                .with_context(|| format!("no active key {id}"))?;
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
            let until = now + chrono::Duration::hours(i64::from(expire_old_in_hours));
            store.expire_key(old.id, until).await?;
            eprintln!(
                "created {} to replace {}, which stops working at {}; the key is shown only now:",
                record.id,
                old.id,
                until.format("%Y-%m-%dT%H:%M:%SZ")
            );
            println!("{}", key.expose());
        }
        KeyCommand::Revoke { id } => {
            let id: KeyId = id.parse().map_err(|_| {
                anyhow::anyhow!("{id:?} is not a key id (key_…); see `audiomill key list`")
            })?;
            if !store.revoke_key(id, Utc::now()).await? {
                bail!("no active key {id}");
            }
            eprintln!("revoked {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

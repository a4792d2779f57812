//! `audiomill key …`

use anyhow::bail;
use audiomill_core::{KeyId, Scope};
use audiomill_server::service::admin;
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
            let account = account.unwrap_or_else(|| name.clone());
            let made = admin::create_key(&store, &name, &account, scopes, true).await?;
            eprintln!(
                "created {} for account {:?}; the key is shown only now:",
                made.record.id, made.account.name
            );
            println!("{}", made.key.expose());
        }
        KeyCommand::List => {
            let keys = admin::list_keys(&store).await?;
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
            let (record, key, until) = admin::rotate_key(&store, id, expire_old_in_hours).await?;
            eprintln!(
                "created {} to replace {id}, which stops working at {}; the key is shown only now:",
                record.id,
                until.format("%Y-%m-%dT%H:%M:%SZ")
            );
            println!("{}", key.expose());
        }
        KeyCommand::Revoke { id } => {
            let id: KeyId = id.parse().map_err(|_| {
                anyhow::anyhow!("{id:?} is not a key id (key_…); see `audiomill key list`")
            })?;
            match admin::revoke_key(&store, id).await {
                Ok(()) => eprintln!("revoked {id}"),
                Err(admin::AdminError::NotFound(_)) => bail!("no active key {id}"),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

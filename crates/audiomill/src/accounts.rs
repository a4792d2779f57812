//! `audiomill plan …` and `audiomill account …`.

use anyhow::{bail, Context};
use audiomill_core::{OperationKind, PlanLimits, PlanName};
use audiomill_server::service::admin::{self, AdminError};
use std::process::ExitCode;

use crate::cli::{AccountCommand, PlanArgs, PlanCommand};
use crate::config::Config;

pub async fn plan(config: &Config, command: PlanCommand) -> anyhow::Result<ExitCode> {
    let store = crate::serve::open_store(config).await?;
    match command {
        PlanCommand::Create { name, limits } => {
            let name = plan_name(&name)?;
            for (flag, given) in [
                (
                    "--audio-seconds-per-month",
                    limits.audio_seconds_per_month.is_some(),
                ),
                ("--concurrent-jobs", limits.concurrent_jobs.is_some()),
                (
                    "--requests-per-minute",
                    limits.requests_per_minute.is_some(),
                ),
            ] {
                if !given {
                    bail!("plan create needs {flag}");
                }
            }
            let limits = apply(PlanLimits::default(), limits)?;
            match admin::create_plan(&store, &name, &limits).await {
                Ok(_) => eprintln!("created plan {name}"),
                Err(AdminError::Conflict(_)) => {
                    bail!("plan {name} exists; change it with `audiomill plan update {name}`")
                }
                Err(e) => return Err(e.into()),
            }
        }
        PlanCommand::Update { name, limits } => {
            let name = plan_name(&name)?;
            let current = match admin::plan(&store, &name).await {
                Ok(plan) => plan,
                Err(AdminError::NotFound(_)) => {
                    bail!("no plan {name}; see `audiomill plan list`")
                }
                Err(e) => return Err(e.into()),
            };
            let limits = apply(current.limits, limits)?;
            admin::update_plan(&store, &name, &limits).await?;
            eprintln!("updated plan {name}");
        }
        PlanCommand::List => {
            // Retention as it applies here: the plan's, capped by this server's per kind.
            println!(
                "{:<16} {:>12} {:>6} {:>8} {:>10} {:>10} {:>9} {:>11} OPERATIONS",
                "NAME",
                "SECONDS/MO",
                "JOBS",
                "REQ/MIN",
                "UPLOAD_MB",
                "INPUT_S",
                "UPLOADS_H",
                "ARTIFACTS_H"
            );
            let server = config.server_retention();
            for plan in admin::list_plans(&store).await? {
                let l = &plan.limits;
                let kept = l.retention(server);
                let ops: Vec<&str> = l.allowed_operations.iter().map(|o| o.as_str()).collect();
                println!(
                    "{:<16} {:>12} {:>6} {:>8} {:>10} {:>10} {:>9} {:>11} {}",
                    plan.name.as_str(),
                    l.audio_seconds_per_month,
                    l.concurrent_jobs,
                    l.requests_per_minute,
                    l.max_upload_bytes / 1_000_000,
                    l.max_input_seconds,
                    kept.uploads.as_secs() / 3600,
                    kept.artifacts.as_secs() / 3600,
                    ops.join(",")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn account(config: &Config, command: AccountCommand) -> anyhow::Result<ExitCode> {
    let store = crate::serve::open_store(config).await?;
    match command {
        AccountCommand::Create { name, plan } => {
            let plan = plan_name(&plan)?;
            match admin::create_account(&store, &name, &plan).await {
                Ok(account) => {
                    eprintln!("created account {} on plan {plan}", account.name);
                    println!("{}", account.id);
                }
                Err(AdminError::Conflict(_)) => bail!("account {name} exists"),
                Err(AdminError::NotFound(_)) => {
                    bail!("no plan {plan}; create it with `audiomill plan create {plan} …`")
                }
                Err(e) => return Err(e.into()),
            }
        }
        AccountCommand::SetPlan { name, plan } => {
            let plan = plan_name(&plan)?;
            match admin::set_account_plan(&store, &name, &plan).await {
                Ok(()) => eprintln!("account {name} is now on plan {plan}"),
                Err(AdminError::NotFound("account")) => {
                    bail!("no account {name:?}")
                }
                Err(AdminError::NotFound(_)) => bail!("no plan {plan}"),
                Err(e) => return Err(e.into()),
            }
        }
        AccountCommand::List => {
            println!("{:<32} {:<16} NAME", "ID", "PLAN");
            for account in admin::list_accounts(&store).await? {
                let plan = account
                    .plan
                    .map_or_else(|| PlanName::DEFAULT.to_owned(), |p| p.as_str().to_owned());
                println!(
                    "{:<32} {:<16} {}",
                    account.id.to_string(),
                    plan,
                    account.name
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn plan_name(text: &str) -> anyhow::Result<PlanName> {
    PlanName::parse(text).map_err(|e| anyhow::anyhow!("{e}"))
}

/// `limits` with every flag given set.
fn apply(mut limits: PlanLimits, args: PlanArgs) -> anyhow::Result<PlanLimits> {
    if let Some(n) = args.audio_seconds_per_month {
        limits.audio_seconds_per_month = n;
    }
    if let Some(n) = args.concurrent_jobs {
        limits.concurrent_jobs = n;
    }
    if let Some(n) = args.requests_per_minute {
        limits.requests_per_minute = n;
    }
    if let Some(mb) = args.max_upload_mb {
        limits.max_upload_bytes = mb
            .checked_mul(1_000_000)
            .context("--max-upload-mb is too large")?;
    }
    if let Some(n) = args.max_input_seconds {
        limits.max_input_seconds = n;
    }
    if let Some(list) = args.operations {
        limits.allowed_operations = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<OperationKind>()
                    .map_err(|e| anyhow::anyhow!("--operations: {e}"))
            })
            .collect::<anyhow::Result<_>>()?;
    }
    if let Some(list) = args.models {
        let models: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        for model in &models {
            audiomill_core::ModelName::parse(model)
                .map_err(|e| anyhow::anyhow!("--models: {e}"))?;
        }
        limits.allowed_models = Some(models);
    }
    if let Some(n) = args.retention_hours {
        limits.retention_hours = n;
    }
    if let Some(n) = args.max_playlist_items {
        limits.max_playlist_items = n;
    }
    Ok(limits)
}

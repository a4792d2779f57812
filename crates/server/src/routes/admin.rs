//! `/v1/admin/…`: plans, accounts and keys, for keys with the `admin` scope. The CLI's
//! `plan`, `account` and `key` commands do the same on the database directly.

use audiomill_core::{KeyId, PlanLimits, PlanName, Scope};
use audiomill_store::{Account, KeyRecord, Plan};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Tenant;
use crate::routes::{created_at, IdPath};
use crate::service::admin;
use crate::views::RetentionView;
use crate::{AppError, AppState};
use axum::response::Response;

/// A plan and its limits.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlanView {
    pub name: PlanName,
    pub limits: PlanLimits,
    /// How long its accounts' files are kept on this server: `limits.retention_hours`,
    /// capped by the server's own retention of each kind of file.
    pub retention: RetentionView,
}

impl PlanView {
    /// The plan as seen on a server that keeps files at most `server`.
    pub fn on(plan: Plan, server: audiomill_core::Retention) -> Self {
        Self {
            retention: RetentionView::from(plan.limits.retention(server)),
            name: plan.name,
            limits: plan.limits,
        }
    }
}

/// A new plan.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPlan {
    pub name: PlanName,
    pub limits: PlanLimits,
}

/// An account and its plan.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    pub id: String,
    pub name: String,
    pub plan: String,
}

impl From<Account> for AccountView {
    fn from(a: Account) -> Self {
        Self {
            id: a.id.to_string(),
            name: a.name,
            plan: a
                .plan
                .map_or_else(|| PlanName::DEFAULT.to_owned(), |p| p.to_string()),
        }
    }
}

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    pub name: String,
    #[serde(default = "PlanName::default_plan")]
    pub plan: PlanName,
}

/// An account's plan.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountPlan {
    pub plan: PlanName,
}

/// A key (never the secret).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub id: KeyId,
    pub name: String,
    pub account_id: String,
    /// The first characters of the key.
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub created_at: String,
    pub revoked_at: Option<String>,
    pub expires_at: Option<String>,
}

impl From<KeyRecord> for KeyView {
    fn from(k: KeyRecord) -> Self {
        let time =
            |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        Self {
            id: k.id,
            name: k.name,
            account_id: k.account_id.to_string(),
            prefix: k.display_prefix,
            scopes: k.scopes,
            created_at: time(k.created_at),
            revoked_at: k.revoked_at.map(time),
            expires_at: k.expires_at.map(time),
        }
    }
}

/// A new key for an existing account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKeyRequest {
    pub name: String,
    pub account: String,
    #[serde(default = "Scope::defaults")]
    pub scopes: Vec<Scope>,
}

/// A key just made: `key` is shown only in this response.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub key: String,
    #[serde(flatten)]
    pub record: KeyView,
}

/// How long the old key of a rotation keeps working.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotation {
    /// Hours (0 to 720; default 24).
    #[serde(default = "default_grace")]
    pub expire_old_in_hours: u32,
}

fn default_grace() -> u32 {
    24
}

/// Plans.
#[utoipa::path(get, path = "/v1/admin/plans", tag = "admin",
    responses((status = 200, body = Vec<PlanView>), (status = 403, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn list_plans(
    State(state): State<AppState>,
    tenant: Tenant,
) -> Result<Json<Vec<PlanView>>, AppError> {
    tenant.require(Scope::Admin)?;
    let plans = admin::list_plans(state.store()).await?;
    let server = state.config().retention;
    Ok(Json(
        plans
            .into_iter()
            .map(|plan| PlanView::on(plan, server))
            .collect(),
    ))
}

/// Create a plan.
#[utoipa::path(post, path = "/v1/admin/plans", tag = "admin", request_body = NewPlan,
    responses((status = 201, body = PlanView), (status = 409, body = crate::Problem),
        (status = 422, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn create_plan(
    State(state): State<AppState>,
    tenant: Tenant,
    body: crate::extract::JsonBody<NewPlan>,
) -> Result<Response, AppError> {
    tenant.require(Scope::Admin)?;
    let NewPlan { name, limits } = body.0;
    let plan = admin::create_plan(state.store(), &name, &limits).await?;
    Ok(created_at(
        StatusCode::CREATED,
        format!("/v1/admin/plans/{name}"),
        PlanView::on(plan, state.config().retention),
    ))
}

/// Replace a plan's limits.
#[utoipa::path(put, path = "/v1/admin/plans/{name}", tag = "admin", request_body = PlanLimits,
    params(("name" = String, Path, description = "Plan name")),
    responses((status = 204), (status = 404, body = crate::Problem), (status = 422, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn update_plan(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(name): Path<String>,
    body: crate::extract::JsonBody<PlanLimits>,
) -> Result<StatusCode, AppError> {
    tenant.require(Scope::Admin)?;
    let name = PlanName::parse(&name).map_err(|_| AppError::not_found("plan"))?;
    admin::update_plan(state.store(), &name, &body.0).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Accounts.
#[utoipa::path(get, path = "/v1/admin/accounts", tag = "admin",
    responses((status = 200, body = Vec<AccountView>), (status = 403, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn list_accounts(
    State(state): State<AppState>,
    tenant: Tenant,
) -> Result<Json<Vec<AccountView>>, AppError> {
    tenant.require(Scope::Admin)?;
    let accounts = admin::list_accounts(state.store()).await?;
    Ok(Json(accounts.into_iter().map(AccountView::from).collect()))
}

/// Create an account on a plan.
#[utoipa::path(post, path = "/v1/admin/accounts", tag = "admin", request_body = NewAccount,
    responses((status = 201, body = AccountView), (status = 409, body = crate::Problem),
        (status = 404, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn create_account(
    State(state): State<AppState>,
    tenant: Tenant,
    body: crate::extract::JsonBody<NewAccount>,
) -> Result<Response, AppError> {
    tenant.require(Scope::Admin)?;
    let account = admin::create_account(state.store(), &body.0.name, &body.0.plan).await?;
    Ok(created_at(
        StatusCode::CREATED,
        format!(
            "/v1/admin/accounts/{}",
            audiomill_core::text::path_segment(&account.name)
        ),
        AccountView::from(account),
    ))
}

/// Move an account to another plan.
#[utoipa::path(put, path = "/v1/admin/accounts/{name}/plan", tag = "admin", request_body = AccountPlan,
    params(("name" = String, Path, description = "Account name")),
    responses((status = 204), (status = 404, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn set_account_plan(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(name): Path<String>,
    body: crate::extract::JsonBody<AccountPlan>,
) -> Result<StatusCode, AppError> {
    tenant.require(Scope::Admin)?;
    admin::set_account_plan(state.store(), &name, &body.0.plan).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Keys (never their secrets).
#[utoipa::path(get, path = "/v1/admin/keys", tag = "admin",
    responses((status = 200, body = Vec<KeyView>), (status = 403, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn list_keys(
    State(state): State<AppState>,
    tenant: Tenant,
) -> Result<Json<Vec<KeyView>>, AppError> {
    tenant.require(Scope::Admin)?;
    let keys = admin::list_keys(state.store()).await?;
    Ok(Json(keys.into_iter().map(KeyView::from).collect()))
}

/// Create a key for an existing account; the key is in this response only.
#[utoipa::path(post, path = "/v1/admin/keys", tag = "admin", request_body = NewKeyRequest,
    responses((status = 201, body = CreatedKey), (status = 404, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn create_key(
    State(state): State<AppState>,
    tenant: Tenant,
    body: crate::extract::JsonBody<NewKeyRequest>,
) -> Result<Response, AppError> {
    tenant.require(Scope::Admin)?;
    let NewKeyRequest {
        name,
        account,
        mut scopes,
    } = body.0;
    scopes.sort();
    scopes.dedup();
    let made = admin::create_key(state.store(), &name, &account, scopes, false).await?;
    Ok(created_at(
        StatusCode::CREATED,
        format!("/v1/admin/keys/{}", made.record.id),
        CreatedKey {
            key: made.key.expose().to_owned(),
            record: made.record.into(),
        },
    ))
}

/// Revoke a key.
#[utoipa::path(delete, path = "/v1/admin/keys/{id}", tag = "admin",
    params(("id" = String, Path, description = "Key id (`key_…`)")),
    responses((status = 204), (status = 404, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn revoke_key(
    State(state): State<AppState>,
    tenant: Tenant,
    IdPath(id): IdPath<KeyId>,
) -> Result<StatusCode, AppError> {
    tenant.require(Scope::Admin)?;
    admin::revoke_key(state.store(), id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate a key: a new key (same account, name, scopes) now, the old one expiring later.
#[utoipa::path(post, path = "/v1/admin/keys/{id}/rotate", tag = "admin", request_body = Rotation,
    params(("id" = String, Path, description = "Key id (`key_…`)")),
    responses((status = 201, body = CreatedKey), (status = 404, body = crate::Problem)),
    security(("api_key" = [])))]
pub async fn rotate_key(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
    body: crate::extract::JsonBody<Rotation>,
) -> Result<Response, AppError> {
    tenant.require(Scope::Admin)?;
    let id: KeyId = id.parse().map_err(|_| AppError::not_found("key"))?;
    let (record, key, _) = admin::rotate_key(state.store(), id, body.0.expire_old_in_hours).await?;
    Ok(created_at(
        StatusCode::CREATED,
        format!("/v1/admin/keys/{}", record.id),
        CreatedKey {
            key: key.expose().to_owned(),
            record: record.into(),
        },
    ))
}

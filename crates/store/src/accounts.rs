//! The accounts role: accounts, the plans they are on, and their usage of those plans.

use crate::model::{Account, Plan, Usage};
use crate::Result;
use async_trait::async_trait;
use audiomill_core::{AccountId, PlanLimits, PlanName};

/// Accounts, plans and usage.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// Creates an account on `plan` (`None`: the default plan); `Conflict` if the name is
    /// taken, `NotFound` if the plan does not exist.
    async fn create_account(&self, name: &str, plan: Option<&PlanName>) -> Result<Account>;
    /// The account with this name.
    async fn account_by_name(&self, name: &str) -> Result<Option<Account>>;
    /// Moves an account to another plan; `false` if there is no such account.
    async fn set_account_plan(&self, account: AccountId, plan: &PlanName) -> Result<bool>;
    /// Every account, by name.
    async fn list_accounts(&self) -> Result<Vec<Account>>;
    /// The plan that applies to an account and its limits (the default plan's when the account
    /// has none or the default plan has no row).
    async fn account_limits(&self, account: AccountId) -> Result<(PlanName, PlanLimits)>;

    /// Creates a plan; `Conflict` if the name is taken.
    async fn create_plan(&self, name: &PlanName, limits: &PlanLimits) -> Result<Plan>;
    /// Replaces a plan's limits (the default plan is created on its first update); `false` if
    /// there is no such plan.
    async fn update_plan(&self, name: &PlanName, limits: &PlanLimits) -> Result<bool>;
    /// Every stored plan, by name (the default plan too, with its built-in limits if it has no
    /// row).
    async fn list_plans(&self) -> Result<Vec<Plan>>;
    /// An account's usage in `period` (`YYYY-MM`).
    async fn usage(&self, account: AccountId, period: &str) -> Result<Usage>;
}

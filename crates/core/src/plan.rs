//! Plans (what an account may use) and key scopes (what a key may do).
//!
//! A plan is a set of limits. Every account is on one (the `default` plan unless an operator
//! moved it); the server reads the account's plan on each request and enforces it: quotas and
//! concurrent jobs by guarded updates in the store, the rest by checks at the edge.

use crate::OperationKind;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Why a plan, plan name or scope was refused. The message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

/// A plan's name: 1-64 of `a-z`, `0-9`, `-`, `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "pro")]
pub struct PlanName(String);

impl PlanName {
    /// The plan every account is on unless moved.
    pub const DEFAULT: &'static str = "default";

    /// Checks `text`.
    pub fn parse(text: &str) -> Result<Self, PlanError> {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(PlanError(
                "a plan name is 1-64 of a-z, 0-9, '-' and '_'".into(),
            ))
        }
    }

    /// The default plan's name.
    pub fn default_plan() -> Self {
        Self(Self::DEFAULT.to_owned())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PlanName {
    type Error = PlanError;
    fn try_from(text: String) -> Result<Self, PlanError> {
        Self::parse(&text)
    }
}

impl From<PlanName> for String {
    fn from(name: PlanName) -> String {
        name.0
    }
}

impl std::fmt::Display for PlanName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The limits of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanLimits {
    /// Seconds of input audio processed per calendar month (UTC).
    pub audio_seconds_per_month: u64,
    /// Jobs queued or running at once.
    pub concurrent_jobs: u32,
    /// Requests per minute per key (reads cost 1, job submissions and uploads more).
    pub requests_per_minute: u32,
    /// Largest upload, in bytes.
    pub max_upload_bytes: u64,
    /// Longest input, in seconds.
    pub max_input_seconds: u64,
    /// Operations the plan may run.
    pub allowed_operations: Vec<OperationKind>,
    /// Separation models the plan may use; `None`: every installed model.
    pub allowed_models: Option<Vec<String>>,
    /// Longest time the account's uploads and artifacts are kept, in hours. A server keeps
    /// each kind of file at most as long as its own setting (`retention.upload_hours`,
    /// `retention.artifact_hours`) too: the shorter of the two applies, and the admin view of
    /// a plan shows both results (see [`PlanLimits::retention`]).
    pub retention_hours: u32,
    /// Most items a playlist download expands into.
    pub max_playlist_items: u32,
}

impl Default for PlanLimits {
    /// The `default` plan of a fresh install: enough to try everything, small enough that a
    /// leaked key cannot run up a machine's month.
    fn default() -> Self {
        Self {
            audio_seconds_per_month: 100 * 3600,
            concurrent_jobs: 8,
            requests_per_minute: 120,
            max_upload_bytes: 512 * 1024 * 1024,
            max_input_seconds: 3 * 3600,
            allowed_operations: OperationKind::ALL.to_vec(),
            allowed_models: None,
            retention_hours: 7 * 24,
            max_playlist_items: 50,
        }
    }
}

/// How long an account's files are kept on a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Uploads, from when they are received.
    pub uploads: std::time::Duration,
    /// Artifacts, from when their job ends.
    pub artifacts: std::time::Duration,
}

impl PlanLimits {
    /// The retention that applies to the plan's accounts on a server that keeps files at most
    /// `server`: the shorter of the plan's and the server's, for each kind.
    pub fn retention(&self, server: Retention) -> Retention {
        let plan = std::time::Duration::from_secs(u64::from(self.retention_hours) * 3600);
        Retention {
            uploads: server.uploads.min(plan),
            artifacts: server.artifacts.min(plan),
        }
    }

    /// Checks the values are usable (a plan that could run nothing is refused).
    pub fn validate(&self) -> Result<(), PlanError> {
        let positive = |name: &str, v: u64| {
            if v == 0 {
                Err(PlanError(format!("{name} must be at least 1")))
            } else {
                Ok(())
            }
        };
        positive("concurrent_jobs", self.concurrent_jobs.into())?;
        positive("requests_per_minute", self.requests_per_minute.into())?;
        positive("max_upload_bytes", self.max_upload_bytes)?;
        positive("max_input_seconds", self.max_input_seconds)?;
        positive("retention_hours", self.retention_hours.into())?;
        if self.concurrent_jobs > 10_000 || self.requests_per_minute > 1_000_000 {
            return Err(PlanError(
                "concurrent_jobs is at most 10000 and requests_per_minute at most 1000000".into(),
            ));
        }
        if self.allowed_operations.is_empty() {
            return Err(PlanError("allowed_operations cannot be empty".into()));
        }
        Ok(())
    }

    /// Whether the plan may run `operation`.
    pub fn allows(&self, operation: OperationKind) -> bool {
        self.allowed_operations.contains(&operation)
    }

    /// Whether the plan may use the separation model `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|models| models.iter().any(|m| m == model))
    }
}

/// The usage period (calendar month, UTC) that `at` falls in, as `YYYY-MM`.
pub fn usage_period(at: chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m").to_string()
}

/// When the period that `at` falls in ends: the first instant of the next month (UTC).
pub fn period_end(at: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    use chrono::{Datelike, TimeZone};
    let (year, month) = if at.month() == 12 {
        (at.year() + 1, 1)
    } else {
        (at.year(), at.month() + 1)
    };
    chrono::Utc
        .with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

/// What a key may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum Scope {
    /// Read jobs, files, uploads, usage.
    #[serde(rename = "jobs:read")]
    JobsRead,
    /// Submit and cancel jobs, upload files.
    #[serde(rename = "jobs:write")]
    JobsWrite,
    /// Manage plans, accounts and keys (`/v1/admin/…`).
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 3] = [Scope::JobsRead, Scope::JobsWrite, Scope::Admin];

    /// The name used in the API, the CLI and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::JobsRead => "jobs:read",
            Scope::JobsWrite => "jobs:write",
            Scope::Admin => "admin",
        }
    }

    /// The scopes of a key made without `--scopes`.
    pub fn defaults() -> Vec<Scope> {
        vec![Scope::JobsRead, Scope::JobsWrite]
    }

    /// Parses a comma-separated list (`jobs:read,jobs:write`); at least one, no repeats kept.
    pub fn parse_list(text: &str) -> Result<Vec<Scope>, PlanError> {
        let mut scopes = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let scope: Scope = part.parse()?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err(PlanError("give at least one scope".into()));
        }
        scopes.sort();
        Ok(scopes)
    }
}

impl std::str::FromStr for Scope {
    type Err = PlanError;
    fn from_str(s: &str) -> Result<Self, PlanError> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| PlanError("scopes are jobs:read, jobs:write and admin".into()))
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_scopes() {
        assert!(PlanName::parse("pro-2026_a").is_ok());
        for bad in ["", "Pro", "a b", "x;drop", &"a".repeat(65)] {
            assert!(PlanName::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Scope::parse_list("jobs:write, jobs:read,jobs:write").unwrap(),
            vec![Scope::JobsRead, Scope::JobsWrite]
        );
        assert!(Scope::parse_list("").is_err());
        assert!(Scope::parse_list("jobs:read,root").is_err());
        assert_eq!(serde_json::to_string(&Scope::Admin).unwrap(), "\"admin\"");
    }

    #[test]
    fn periods() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-31T23:59:59Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(usage_period(at), "2026-12");
        assert_eq!(period_end(at).to_rfc3339(), "2027-01-01T00:00:00+00:00");
    }

    #[test]
    fn limits_are_validated() {
        assert!(PlanLimits::default().validate().is_ok());
        let bad = PlanLimits {
            concurrent_jobs: 0,
            ..PlanLimits::default()
        };
        assert!(bad.validate().is_err());
        let none = PlanLimits {
            allowed_operations: vec![],
            ..PlanLimits::default()
        };
        assert!(none.validate().is_err());
        let only = PlanLimits {
            allowed_operations: vec![OperationKind::Analyze],
            allowed_models: Some(vec!["htdemucs".into()]),
            ..PlanLimits::default()
        };
        assert!(only.allows(OperationKind::Analyze) && !only.allows(OperationKind::Separate));
        assert!(only.allows_model("htdemucs") && !only.allows_model("htdemucs_6s"));
    }
}

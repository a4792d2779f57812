//! Shared state of the HTTP API.

use async_trait::async_trait;
use audiomill_blob::BlobStore;
use audiomill_core::{JobError, Limits, MediaInfo, ModelName};
use audiomill_store::Store;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use utoipa::ToSchema;

use crate::client::IpCidr;
use crate::metrics::HttpMetrics;
use crate::ratelimit::RateLimiter;

/// Reads what an uploaded file is. The binary plugs in the media engine (run in a sandboxed
/// child process), so the server itself never parses untrusted media.
#[async_trait]
pub trait Prober: Send + Sync + 'static {
    /// Probes the file at `path`, enforcing `limits` from the headers.
    async fn probe(&self, path: &Path, limits: &Limits) -> Result<MediaInfo, JobError>;
}

/// The separation models this deployment has, as the API needs them: the catalog for
/// `GET /v1/models` and a lookup when a `separate` job is submitted. The binary plugs in the
/// model store; the server knows nothing of checkpoints.
#[async_trait]
pub trait ModelRegistry: Send + Sync + 'static {
    /// Every model that is installed or can be installed.
    async fn list(&self) -> Result<Vec<ModelSummary>, String>;
    /// The installed model `name`, or how to install it.
    async fn lookup(&self, name: &ModelName) -> Result<InstalledModel, ModelLookupError>;
}

/// One entry of `GET /v1/models`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct ModelSummary {
    /// Name to pass as `options.model`.
    pub name: String,
    /// What it is.
    pub description: String,
    /// Stems it produces.
    pub stems: Vec<String>,
    /// Whether jobs can use it now.
    pub installed: bool,
    /// Whether this version of audiomill can run it.
    pub supported: bool,
    /// Size of its files on disk, when installed.
    pub size_bytes: Option<u64>,
    /// The command an operator runs to install it, when it is not installed.
    pub install_command: Option<String>,
}

/// What submission needs to know of an installed model.
#[derive(Debug, Clone, PartialEq)]
pub struct InstalledModel {
    /// Its stems, in its order.
    pub stems: Vec<String>,
    /// Longest `segment` it accepts, in seconds.
    pub max_segment_secs: f64,
}

/// Why a model cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelLookupError {
    /// Not installed; `install_command` installs it.
    #[error("model {name} is not installed; install it with: {install_command}")]
    NotInstalled {
        /// The model asked for.
        name: String,
        /// What the operator runs.
        install_command: String,
    },
    /// Installed, but its files are missing or do not match what was installed; `reason` is
    /// for the operator's log, `install_command` for the client.
    #[error("model {name} is installed but its files are missing or damaged; reinstall it with: {install_command}")]
    Unusable {
        /// The model asked for.
        name: String,
        /// What the operator runs.
        install_command: String,
        /// What is wrong (file names, never shown to clients).
        reason: String,
    },
    /// The registry could not be read (logged; a 500 to the client).
    #[error("the model registry failed: {0}")]
    Failed(String),
}

/// A registry with no models: jobs asking for one are refused with the install command.
pub struct NoModels;

#[async_trait]
impl ModelRegistry for NoModels {
    async fn list(&self) -> Result<Vec<ModelSummary>, String> {
        Ok(Vec::new())
    }
    async fn lookup(&self, name: &ModelName) -> Result<InstalledModel, ModelLookupError> {
        Err(ModelLookupError::NotInstalled {
            name: name.to_string(),
            install_command: format!("audiomill models pull {name}"),
        })
    }
}

/// Settings of the API (the binary fills them from its configuration).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Limits on inputs (upload size, duration, sample rate, channels).
    pub limits: Limits,
    /// How long this server keeps uploads and artifacts at most (a plan may keep them
    /// shorter).
    pub retention: audiomill_core::Retention,
    /// Largest JSON body of a job request.
    pub max_json_bytes: usize,
    /// Attempts a job gets before it fails for good.
    pub max_attempts: u32,
    /// Origins allowed to call the API from a browser (exact `scheme://host[:port]`); none by
    /// default.
    pub cors_origins: Vec<String>,
    /// Host names (without port) the API answers to. Empty means loopback names only
    /// (`localhost`, `127.0.0.1`, `::1`), which is safe for the laptop default and refuses
    /// DNS-rebinding; a public deployment lists its names.
    pub trusted_hosts: Vec<String>,
    /// `/readyz` fails when the data directory's file system has less free space than this.
    pub min_free_disk_bytes: u64,
    /// The data directory (checked for free space).
    pub data_dir: PathBuf,
    /// Where uploads stream to before they are probed; on the blob store's file system.
    pub upload_temp_dir: PathBuf,
    /// How often an event stream looks for changes of its job.
    pub event_poll: Duration,
    /// An event stream ends after this long even if its job has not.
    pub event_max_duration: Duration,
    /// Longest time a handler may take before it is cut off with `503`.
    pub request_timeout: Duration,
    /// The same for requests that carry a file (uploads, multipart jobs).
    pub upload_timeout: Duration,
    /// What URL inputs may point to (the same policy the worker fetches under).
    pub url_policy: audiomill_net::UrlPolicy,
    /// The version of yt-dlp found at start, shown by `/readyz`; `None` when it is missing.
    pub ytdlp_version: Option<String>,
    /// Requests per minute allowed to one API key (counted per presented key, per API node).
    pub rate_limit_per_minute: u32,
    /// Requests per minute allowed to one client address for requests without a key.
    pub rate_limit_anonymous_per_minute: u32,
    /// Failed authentications per minute per client address; beyond it, every request that
    /// presents a key from that address is refused with `429` until the budget refills.
    pub auth_failures_per_minute: u32,
    /// What `POST /v1/jobs` and `POST /v1/uploads` count against the rate limit (other
    /// requests count 1; health checks and metrics are never limited).
    pub rate_limit_expensive_cost: u32,
    /// Most clients (keys and addresses) the rate limiter tracks at once; past this, full and
    /// then least recently seen buckets are dropped.
    pub rate_limit_max_clients: usize,
    /// Proxies whose `X-Forwarded-For` is believed. Empty (the default): the TCP peer is the
    /// client, whatever the headers say.
    pub trusted_proxies: Vec<IpCidr>,
}

impl ServerConfig {
    /// Defaults for a data directory: safe limits, nothing allowed cross-origin.
    pub fn for_data_dir(data_dir: &Path, upload_temp_dir: &Path) -> Self {
        Self {
            limits: Limits::default(),
            retention: audiomill_core::Retention {
                uploads: Duration::from_secs(24 * 3600),
                artifacts: Duration::from_secs(7 * 24 * 3600),
            },
            max_json_bytes: 64 * 1024,
            max_attempts: 3,
            cors_origins: Vec::new(),
            trusted_hosts: Vec::new(),
            min_free_disk_bytes: 512 * 1024 * 1024,
            data_dir: data_dir.to_path_buf(),
            upload_temp_dir: upload_temp_dir.to_path_buf(),
            event_poll: Duration::from_millis(200),
            event_max_duration: Duration::from_secs(6 * 3600),
            request_timeout: Duration::from_secs(30),
            upload_timeout: Duration::from_secs(3600),
            url_policy: audiomill_net::UrlPolicy::default(),
            ytdlp_version: None,
            rate_limit_per_minute: 120,
            rate_limit_anonymous_per_minute: 60,
            auth_failures_per_minute: 60,
            rate_limit_expensive_cost: 5,
            rate_limit_max_clients: 100_000,
            trusted_proxies: Vec::new(),
        }
    }
}

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    store: Arc<dyn Store>,
    blob: Arc<dyn BlobStore>,
    prober: Arc<dyn Prober>,
    config: ServerConfig,
    metrics: HttpMetrics,
    registry: Arc<prometheus_client::registry::Registry>,
    job_waker: Arc<Notify>,
    models: Arc<dyn ModelRegistry>,
    rate_limiter: Arc<RateLimiter>,
    plan_limits: Arc<crate::ratelimit::PlanLimitCache>,
}

impl AppState {
    /// Builds the state. `registry` must already hold `metrics` (and the worker's metrics, if
    /// a worker runs in this process); `job_waker` is poked when a job is queued.
    pub fn new(
        store: Arc<dyn Store>,
        blob: Arc<dyn BlobStore>,
        prober: Arc<dyn Prober>,
        config: ServerConfig,
        metrics: HttpMetrics,
        registry: Arc<prometheus_client::registry::Registry>,
        job_waker: Arc<Notify>,
    ) -> Self {
        let rate_limiter = Arc::new(RateLimiter::new(config.rate_limit_max_clients));
        Self(Arc::new(Inner {
            store,
            blob,
            prober,
            config,
            metrics,
            registry,
            job_waker,
            models: Arc::new(NoModels),
            rate_limiter,
            plan_limits: Arc::default(),
        }))
    }

    /// The same state with `models` as its model registry (the default has none).
    pub fn with_models(self, models: Arc<dyn ModelRegistry>) -> Self {
        let inner = Arc::try_unwrap(self.0).unwrap_or_else(|shared| Inner {
            store: shared.store.clone(),
            blob: shared.blob.clone(),
            prober: shared.prober.clone(),
            config: shared.config.clone(),
            metrics: shared.metrics.clone(),
            registry: shared.registry.clone(),
            job_waker: shared.job_waker.clone(),
            models: shared.models.clone(),
            rate_limiter: shared.rate_limiter.clone(),
            plan_limits: shared.plan_limits.clone(),
        });
        Self(Arc::new(Inner { models, ..inner }))
    }

    /// The separation models.
    pub fn models(&self) -> &dyn ModelRegistry {
        self.0.models.as_ref()
    }

    /// The database.
    pub fn store(&self) -> &dyn Store {
        self.0.store.as_ref()
    }

    /// The byte storage.
    pub fn blob(&self) -> &dyn BlobStore {
        self.0.blob.as_ref()
    }

    /// The media prober.
    pub fn prober(&self) -> &dyn Prober {
        self.0.prober.as_ref()
    }

    /// The API settings.
    pub fn config(&self) -> &ServerConfig {
        &self.0.config
    }

    /// HTTP and security metrics.
    pub fn metrics(&self) -> &HttpMetrics {
        &self.0.metrics
    }

    /// The rate limiter of this API node.
    pub fn rate_limiter(&self) -> &RateLimiter {
        &self.0.rate_limiter
    }

    /// The remembered plan limits of keys, for the rate limiter.
    pub fn plan_limits(&self) -> &crate::ratelimit::PlanLimitCache {
        &self.0.plan_limits
    }

    /// The Prometheus registry served at `/metrics`.
    pub fn registry(&self) -> &prometheus_client::registry::Registry {
        &self.0.registry
    }

    /// Wakes the worker(s) of this process after a job was queued.
    pub fn wake_workers(&self) {
        // notify_one stores a permit if the worker is busy, so the wake-up is not lost.
        self.0.job_waker.notify_one();
    }
}

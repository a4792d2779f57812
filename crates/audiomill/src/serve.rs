//! `audiomill serve` and `audiomill worker`: open the stores, start the worker, the reaper and
//! the HTTP API, and shut down in order on SIGTERM/SIGINT.

use anyhow::Context;
use audiomill_blob::{BlobStore, LocalBlobStore};
use audiomill_server::{AppState, HttpMetrics, ServerConfig};
use audiomill_store::{SqliteStore, Store};
use audiomill_worker::{ChildLimits, Worker, WorkerConfig, WorkerMetrics};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::config::{shown, Config};

/// Opens (creating and migrating) the SQLite database in the data directory.
pub async fn open_store(config: &Config) -> anyhow::Result<SqliteStore> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data directory {}", shown(&config.data_dir)))?;
    SqliteStore::open(&config.database_path())
        .await
        .with_context(|| format!("cannot open database {}", shown(&config.database_path())))
}

fn child_limits(config: &Config) -> ChildLimits {
    const MIB: u64 = 1024 * 1024;
    ChildLimits {
        address_space_bytes: config.worker.memory_limit_mb * MIB,
        cpu_seconds: config.worker.cpu_limit_secs,
        output_file_bytes: config.worker.output_limit_mb * MIB,
    }
}

/// Runs the API (if `api`) and a worker (if `worker`) until SIGTERM or SIGINT.
pub async fn serve(config: Config, worker: bool, api: bool) -> anyhow::Result<ExitCode> {
    let store: Arc<dyn Store> = Arc::new(open_store(&config).await?);
    let local_blob = LocalBlobStore::open(config.blob_dir()).with_context(|| {
        format!(
            "cannot create file storage in {}",
            shown(&config.blob_dir())
        )
    })?;
    // Nothing runs yet: whatever is in the temp directory was left by a crash.
    let swept = local_blob
        .sweep_temp()
        .context("cannot clean the temp directory")?;
    if swept > 0 {
        tracing::info!(swept, "removed temp files left by an earlier run");
    }
    let jobs_temp = local_blob.temp_dir().join("jobs");
    std::fs::create_dir_all(&jobs_temp).context("cannot create the job temp directory")?;
    let upload_temp = local_blob.temp_dir();
    let blob: Arc<dyn BlobStore> = Arc::new(local_blob);
    let program = std::env::current_exe().context("cannot find the audiomill executable")?;

    let mut registry = prometheus_client::registry::Registry::default();
    let http_metrics = HttpMetrics::default();
    http_metrics.register(&mut registry);
    let worker_metrics = WorkerMetrics::new();
    worker_metrics.register(&mut registry);

    let shutdown = CancellationToken::new();
    // The API pokes this waker after inserting a job; with no worker in this process it wakes
    // nobody, and remote workers find the job by polling.
    let mut waker = Arc::new(tokio::sync::Notify::new());
    let mut tasks = tokio::task::JoinSet::new();

    if worker {
        let worker_config = WorkerConfig {
            concurrency: config.worker.concurrency,
            owner: format!("{}-{}", std::process::id(), audiomill_core::JobId::new()),
            lease: Duration::from_secs(config.worker.lease_secs),
            heartbeat: Duration::from_millis(500),
            poll: Duration::from_secs(1),
            backoff_base: Duration::from_secs(config.worker.backoff_base_secs),
            backoff_max: Duration::from_secs(config.worker.backoff_max_secs),
            grace_period: Duration::from_secs(config.worker.grace_period_secs),
            job_timeout: Duration::from_secs(config.worker.job_timeout_secs),
            operation_timeouts: config.worker.timeouts.to_timeouts(),
            child_command: vec![program.clone().into_os_string(), "__run-job".into()],
            temp_dir: jobs_temp,
            child_limits: child_limits(&config),
            limits: config.limits,
            retention: config.server_retention(),
            models_dir: Some(config.models_dir()),
            job_threads: config.job_threads(),
            url_policy: config.url_policy(),
            sites: audiomill_net::SiteList::new(&config.ytdlp.sites),
            ytdlp: config.ytdlp(),
            fetch_idle_timeout: Duration::from_secs(config.outbound.fetch_idle_secs),
        };
        let worker = Worker::new(
            store.clone(),
            blob.clone(),
            worker_config,
            worker_metrics.clone(),
        );
        waker = worker.waker();
        tasks.spawn(worker.run(shutdown.clone()));
        tasks.spawn(reaper(
            store.clone(),
            blob.clone(),
            Duration::from_secs(config.retention.reap_interval_secs),
            shutdown.clone(),
        ));
    }

    if api {
        let mut server_config = ServerConfig::for_data_dir(&config.data_dir, &upload_temp);
        server_config.limits = config.limits;
        server_config.retention = config.server_retention();
        server_config.max_json_bytes = config.http.max_json_bytes;
        server_config.max_attempts = config.worker.max_attempts;
        server_config.cors_origins = config.http.cors_origins.clone();
        server_config.trusted_hosts = config.http.trusted_hosts.clone();
        server_config.rate_limit_per_minute = config.http.rate_limit_per_minute;
        server_config.rate_limit_anonymous_per_minute = config.http.rate_limit_anonymous_per_minute;
        server_config.auth_failures_per_minute = config.http.auth_failures_per_minute;
        server_config.trusted_proxies = config.trusted_proxies()?;
        server_config.min_free_disk_bytes = config.http.min_free_disk_mb * 1024 * 1024;
        server_config.url_policy = config.url_policy();
        server_config.request_timeout = Duration::from_secs(config.http.request_timeout_secs);
        server_config.upload_timeout = Duration::from_secs(config.http.upload_timeout_secs);
        server_config.ytdlp_version = ytdlp_version(&config).await;
        let prober = Arc::new(crate::prober::ChildProber::new(
            program.clone(),
            child_limits(&config),
        ));
        let state = AppState::new(
            store.clone(),
            blob.clone(),
            prober,
            server_config,
            http_metrics,
            Arc::new(registry),
            waker.clone(),
        )
        .with_models(Arc::new(crate::models::Registry::new(config.models_dir())));
        let app = audiomill_server::build_router(state);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        if store.count_active_keys().await? == 0 {
            // The first key is the operator's: it may administer (plans, accounts, other
            // keys) as well as submit and read jobs.
            let hint = format!(
                "audiomill key create --name admin --scopes jobs:read,jobs:write,admin --data-dir {}",
                shown(&config.data_dir)
            );
            tracing::warn!(command = %hint, "no API keys yet: every request needs one; create one with the command shown");
            eprintln!(
                "No API keys yet. Create one that can run jobs and administer plans, accounts \
                 and keys with:\n    {hint}"
            );
        }
        if !addr.ip().is_loopback() && config.http.trusted_hosts.is_empty() {
            tracing::warn!("listening beyond loopback but http.trusted_hosts is empty: only requests for localhost will be answered");
        }
        tracing::info!(%addr, worker, "listening on http://{addr}");
        let token = shutdown.clone();
        tasks.spawn(async move {
            let served = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { token.cancelled().await })
            .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
    } else {
        tracing::info!("worker started");
    }

    wait_for_signal().await;
    tracing::info!("shutting down: no new jobs are claimed; running jobs get the grace period");
    shutdown.cancel();
    // The worker returns after its grace period; open event streams are cut after that.
    let deadline = Duration::from_secs(config.worker.grace_period_secs + 5);
    let _ = tokio::time::timeout(deadline, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

/// Deletes expired uploads and artifacts (rows and bytes together) every `every`.
/// yt-dlp's version, read once at start (shown by `/readyz`); `None` when it cannot be run.
pub async fn ytdlp_version(config: &Config) -> Option<String> {
    let ytdlp = audiomill_net::YtDlp::new(config.ytdlp()?);
    match ytdlp.version().await {
        Ok(version) => Some(version),
        Err(e) => {
            tracing::warn!(error = %e, "yt-dlp cannot be run: links to sites will fail");
            None
        }
    }
}

async fn reaper(
    store: Arc<dyn Store>,
    blob: Arc<dyn BlobStore>,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        match audiomill_worker::reap_expired(store.as_ref(), blob.as_ref(), chrono::Utc::now())
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "expired files removed"),
            Err(e) => tracing::error!(error = %e, "reaper failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

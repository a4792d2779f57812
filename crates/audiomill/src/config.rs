//! Configuration: defaults, then an optional TOML file, then `AUDIOMILL_*` environment
//! variables, then command-line flags — each overriding the one before.
//!
//! Every setting has an environment variable named after its place in the TOML file:
//! `limits.max_upload_bytes` is `AUDIOMILL_LIMITS_MAX_UPLOAD_BYTES`, `listen` is
//! `AUDIOMILL_LISTEN`. The mapping is derived from the structure itself, so a new setting gets
//! its variable for free.

use anyhow::{bail, Context};
use audiomill_core::Limits;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the API listens on.
    pub listen: SocketAddr,
    /// Where the database, files and temp files live.
    pub data_dir: PathBuf,
    /// Log format: `json` (structured, default) or `text`.
    pub log_format: LogFormat,
    /// Limits on inputs.
    pub limits: Limits,
    pub http: HttpConfig,
    pub worker: WorkerSection,
    pub retention: Retention,
    /// Outbound requests made for users (URL inputs): what they may reach.
    pub outbound: Outbound,
    /// yt-dlp, which downloads links to sites (YouTube, SoundCloud, …).
    pub ytdlp: YtDlpSection,
}

/// `[outbound]`: the policy of every request audiomill makes on a user's behalf.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Outbound {
    /// Let URL inputs reach loopback and private networks (never link-local or metadata
    /// addresses). Off: for tests and closed networks only.
    pub allow_private_networks: bool,
    /// Ports URL inputs may use besides 80 and 443.
    pub allowed_ports: Vec<u16>,
    /// Longest wait for the next bytes of a direct download, in seconds.
    pub fetch_idle_secs: u64,
}

/// `[ytdlp]`: how site links are downloaded. Set by the operator only; nothing here comes
/// from API requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct YtDlpSection {
    /// The yt-dlp program. Empty: `.tools/ytdlp/bin/yt-dlp` (installed by
    /// `scripts/setup-ytdlp`) when it exists, else `yt-dlp` on `PATH`.
    pub program: String,
    /// Hosts routed to yt-dlp besides the built-in sites (a host matches its subdomains).
    pub sites: Vec<String>,
    /// A cookies file (Netscape format) for sites that need a signed-in account.
    pub cookies_file: String,
    /// A proxy for yt-dlp's requests (`http://…`, `socks5://…`). Empty: yt-dlp goes through
    /// audiomill's own checking proxy, which holds its connections to the `[outbound]` policy;
    /// with a proxy set here, that proxy alone decides where yt-dlp may connect.
    pub proxy: String,
    /// yt-dlp's socket timeout, in seconds.
    pub socket_timeout_secs: u64,
    /// Test-only: allow yt-dlp's generic extractor, so tests can download from a local
    /// server through yt-dlp. Needs `outbound.allow_private_networks`.
    pub allow_generic_extractor: bool,
}

impl Default for Outbound {
    fn default() -> Self {
        Self {
            allow_private_networks: false,
            allowed_ports: Vec::new(),
            fetch_idle_secs: 30,
        }
    }
}

impl Default for YtDlpSection {
    fn default() -> Self {
        Self {
            program: String::new(),
            sites: Vec::new(),
            cookies_file: String::new(),
            proxy: String::new(),
            socket_timeout_secs: 30,
            allow_generic_extractor: false,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Json,
    Text,
}

/// HTTP settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Origins allowed to call the API from browsers (`https://app.example.com`). None by default.
    pub cors_origins: Vec<String>,
    /// Host names the API answers to. Empty: loopback names only.
    pub trusted_hosts: Vec<String>,
    /// `/readyz` reports unavailable below this much free disk, in MiB.
    pub min_free_disk_mb: u64,
    /// Largest JSON body of a job request, in bytes.
    pub max_json_bytes: usize,
    /// Requests per minute per API key, per API node (uploads and job submissions count 5).
    pub rate_limit_per_minute: u32,
    /// Requests per minute per client address for requests without a key.
    pub rate_limit_anonymous_per_minute: u32,
    /// Failed authentications per minute per client address before its keyed requests are
    /// refused for a while (guessing keys).
    pub auth_failures_per_minute: u32,
    /// Proxies (addresses or networks: `10.0.0.0/8`, `127.0.0.1`) whose `X-Forwarded-For` is
    /// believed for the client address. None by default: the TCP peer is the client.
    pub trusted_proxies: Vec<String>,
    /// A request whose handler has not answered in this many seconds gets `503`.
    pub request_timeout_secs: u64,
    /// The same for requests that carry a file (uploads, multipart jobs).
    pub upload_timeout_secs: u64,
}

/// `[worker.timeouts]`: seconds per operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OperationTimeoutSecs {
    pub analyze_secs: u64,
    pub convert_secs: u64,
    pub separate_secs: u64,
    pub download_secs: u64,
}

impl Default for OperationTimeoutSecs {
    fn default() -> Self {
        let d = audiomill_worker::OperationTimeouts::default();
        Self {
            analyze_secs: d.analyze.as_secs(),
            convert_secs: d.convert.as_secs(),
            separate_secs: d.separate.as_secs(),
            download_secs: d.download.as_secs(),
        }
    }
}

impl OperationTimeoutSecs {
    pub fn to_timeouts(&self) -> audiomill_worker::OperationTimeouts {
        let secs = std::time::Duration::from_secs;
        audiomill_worker::OperationTimeouts {
            analyze: secs(self.analyze_secs),
            convert: secs(self.convert_secs),
            separate: secs(self.separate_secs),
            download: secs(self.download_secs),
        }
    }
}

/// Worker settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSection {
    /// Jobs run at once by this process (default: number of cores).
    pub concurrency: usize,
    /// Attempts a job gets before failing for good.
    pub max_attempts: u32,
    /// Lease on a claimed job, renewed by heartbeats; a dead worker's job is retried after it.
    pub lease_secs: u64,
    /// On SIGTERM, how long running jobs may finish before they are requeued.
    pub grace_period_secs: u64,
    /// Wall-clock limit of one attempt.
    pub job_timeout_secs: u64,
    /// Wall-clock limits per operation (the lower of these and `job_timeout_secs` applies).
    pub timeouts: OperationTimeoutSecs,
    /// First retry delay; doubles per attempt, with jitter.
    pub backoff_base_secs: u64,
    /// Longest retry delay.
    pub backoff_max_secs: u64,
    /// Address-space limit of a job's child process, in MiB.
    pub memory_limit_mb: u64,
    /// CPU-time limit of a job's child process, in seconds.
    pub cpu_limit_secs: u64,
    /// Largest file a job's child process may write, in MiB.
    pub output_limit_mb: u64,
    /// Threads one job may use for separation (0: the cores divided by `concurrency`).
    pub job_threads: usize,
}

/// How long files are kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Retention {
    /// Uploads are deleted this long after upload.
    pub upload_hours: u64,
    /// Artifacts are deleted this long after their job finished.
    pub artifact_hours: u64,
    /// How often the reaper looks for expired files.
    pub reap_interval_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".parse().expect("a valid literal address"),
            data_dir: PathBuf::from("data"),
            log_format: LogFormat::Json,
            limits: Limits::default(),
            http: HttpConfig::default(),
            worker: WorkerSection::default(),
            retention: Retention::default(),
            outbound: Outbound::default(),
            ytdlp: YtDlpSection::default(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            cors_origins: Vec::new(),
            trusted_hosts: Vec::new(),
            min_free_disk_mb: 512,
            max_json_bytes: 64 * 1024,
            rate_limit_per_minute: 120,
            rate_limit_anonymous_per_minute: 60,
            auth_failures_per_minute: 60,
            trusted_proxies: Vec::new(),
            request_timeout_secs: 30,
            upload_timeout_secs: 3600,
        }
    }
}

impl Default for WorkerSection {
    fn default() -> Self {
        Self {
            concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_attempts: 3,
            lease_secs: 30,
            grace_period_secs: 30,
            job_timeout_secs: 3600,
            timeouts: OperationTimeoutSecs::default(),
            backoff_base_secs: 2,
            backoff_max_secs: 300,
            memory_limit_mb: 4096,
            cpu_limit_secs: 3600,
            output_limit_mb: 4096,
            job_threads: 0,
        }
    }
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            upload_hours: 24,
            artifact_hours: 24 * 7,
            reap_interval_secs: 60,
        }
    }
}

/// Settings given on the command line (they win over everything else).
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub concurrency: Option<usize>,
}

impl Config {
    /// Loads the configuration: defaults ← file ← environment ← flags.
    pub fn load(overrides: &Overrides) -> anyhow::Result<Self> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_from(overrides, &env)
    }

    /// [`Config::load`] with an explicit environment (for tests).
    pub fn load_from(overrides: &Overrides, env: &[(String, String)]) -> anyhow::Result<Self> {
        let file = overrides.config_file.clone().or_else(|| {
            env.iter()
                .find(|(k, _)| k == "AUDIOMILL_CONFIG")
                .map(|(_, v)| PathBuf::from(v))
        });
        let mut value =
            toml::Value::try_from(Config::default()).context("default configuration")?;
        if let Some(path) = &file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            let from_file: toml::Value = toml::from_str(&text)
                .with_context(|| format!("invalid config file {}", path.display()))?;
            merge(&mut value, from_file);
        }
        apply_env(&mut value, "AUDIOMILL", env)?;
        let mut config: Config = value.try_into().map_err(|e: toml::de::Error| {
            anyhow::anyhow!("invalid configuration: {}", e.message())
        })?;
        if let Some(listen) = overrides.listen {
            config.listen = listen;
        }
        if let Some(dir) = &overrides.data_dir {
            config.data_dir = dir.clone();
        }
        if let Some(n) = overrides.concurrency {
            config.worker.concurrency = n;
        }
        config.validate()?;
        config.resolve_paths()?;
        Ok(config)
    }

    /// Makes every path setting absolute, once, against the directory audiomill was started
    /// in. Job children run in their job directory, so a relative path handed to one (a model
    /// file under `data/models`, the input under `data/files/tmp`) would resolve there instead.
    fn resolve_paths(&mut self) -> anyhow::Result<()> {
        let absolute = |path: &Path, setting: &str| {
            std::path::absolute(path)
                .with_context(|| format!("{setting}: cannot resolve {}", path.display()))
        };
        self.data_dir = absolute(&self.data_dir, "data_dir")?;
        if !self.ytdlp.cookies_file.is_empty() {
            let path = absolute(Path::new(&self.ytdlp.cookies_file), "ytdlp.cookies_file")?;
            self.ytdlp.cookies_file = path.to_string_lossy().into_owned();
        }
        // A bare program name is looked up on PATH; one with a directory is a path.
        if self.ytdlp.program.contains('/') {
            let path = absolute(Path::new(&self.ytdlp.program), "ytdlp.program")?;
            self.ytdlp.program = path.to_string_lossy().into_owned();
        }
        Ok(())
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.worker.concurrency == 0 {
            bail!("worker.concurrency must be at least 1");
        }
        if self.worker.max_attempts == 0 {
            bail!("worker.max_attempts must be at least 1");
        }
        if self.http.request_timeout_secs == 0 || self.http.upload_timeout_secs == 0 {
            bail!("http.request_timeout_secs and http.upload_timeout_secs must be positive");
        }
        let t = &self.worker.timeouts;
        if [
            t.analyze_secs,
            t.convert_secs,
            t.separate_secs,
            t.download_secs,
        ]
        .contains(&0)
        {
            bail!("worker.timeouts.* must be at least 1 second");
        }
        if self.worker.lease_secs < 2 {
            bail!("worker.lease_secs must be at least 2");
        }
        if self.limits.max_upload_bytes == 0 {
            bail!("limits.max_upload_bytes must be positive");
        }
        if self.ytdlp.allow_generic_extractor && !self.outbound.allow_private_networks {
            bail!("ytdlp.allow_generic_extractor is for tests against local servers and needs outbound.allow_private_networks");
        }
        if self.ytdlp.socket_timeout_secs == 0 || self.outbound.fetch_idle_secs == 0 {
            bail!("ytdlp.socket_timeout_secs and outbound.fetch_idle_secs must be positive");
        }
        if self.http.auth_failures_per_minute == 0 {
            bail!("http.auth_failures_per_minute must be at least 1");
        }
        if self.http.rate_limit_per_minute == 0 || self.http.rate_limit_anonymous_per_minute == 0 {
            bail!("http.rate_limit_per_minute and http.rate_limit_anonymous_per_minute must be at least 1");
        }
        self.trusted_proxies()?;
        for origin in &self.http.cors_origins {
            if origin == "*" || !(origin.starts_with("https://") || origin.starts_with("http://")) {
                bail!("http.cors_origins takes exact origins like https://app.example.com, not {origin:?}");
            }
        }
        Ok(())
    }

    /// The SQLite database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("audiomill.db")
    }

    /// Root of the blob store.
    pub fn blob_dir(&self) -> PathBuf {
        self.data_dir.join("files")
    }

    /// Where separation models are installed.
    pub fn models_dir(&self) -> PathBuf {
        self.data_dir.join("models")
    }

    /// `http.trusted_proxies`, parsed.
    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<audiomill_server::IpCidr>> {
        self.http
            .trusted_proxies
            .iter()
            .map(|text| {
                text.parse()
                    .with_context(|| format!("http.trusted_proxies: cannot use {text:?}"))
            })
            .collect()
    }

    /// How long this server keeps files at most (`[retention]`); plans may keep them shorter.
    pub fn server_retention(&self) -> audiomill_core::Retention {
        audiomill_core::Retention {
            uploads: std::time::Duration::from_secs(self.retention.upload_hours * 3600),
            artifacts: std::time::Duration::from_secs(self.retention.artifact_hours * 3600),
        }
    }

    /// The outbound policy.
    pub fn url_policy(&self) -> audiomill_net::UrlPolicy {
        audiomill_net::UrlPolicy {
            extra_ports: self.outbound.allowed_ports.clone(),
            allow_private_networks: self.outbound.allow_private_networks,
        }
    }

    /// How yt-dlp runs, or `None` when no yt-dlp program can be found.
    pub fn ytdlp(&self) -> Option<audiomill_net::YtDlpConfig> {
        let program = if self.ytdlp.program.is_empty() {
            let installed = Path::new(".tools/ytdlp/bin/yt-dlp");
            if installed.is_file() {
                std::path::absolute(installed).ok()?
            } else {
                find_on_path("yt-dlp")?
            }
        } else {
            PathBuf::from(&self.ytdlp.program)
        };
        let text = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let mut ytdlp = audiomill_net::YtDlpConfig::new(program);
        ytdlp.allow_generic_extractor = self.ytdlp.allow_generic_extractor;
        ytdlp.cookies = text(&self.ytdlp.cookies_file).map(PathBuf::from);
        ytdlp.proxy = text(&self.ytdlp.proxy);
        ytdlp.policy = self.url_policy();
        ytdlp.socket_timeout = std::time::Duration::from_secs(self.ytdlp.socket_timeout_secs);
        Some(ytdlp)
    }

    /// Threads a job child may use: `worker.job_threads`, or the cores shared out among the
    /// concurrent jobs.
    pub fn job_threads(&self) -> usize {
        if self.worker.job_threads > 0 {
            return self.worker.job_threads;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / self.worker.concurrency.max(1)).max(1)
    }

    /// The effective configuration as TOML, with secrets masked.
    pub fn to_masked_toml(&self) -> String {
        let mut value = toml::Value::try_from(self).expect("the configuration serializes");
        mask_secrets(&mut value);
        toml::to_string_pretty(&value).expect("a TOML value serializes")
    }
}

/// Path of a data directory, for messages.
/// The first executable file named `name` in a `PATH` directory.
fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

pub fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// Overlays `top` on `base`, table by table.
fn merge(base: &mut toml::Value, top: toml::Value) {
    match (base, top) {
        (toml::Value::Table(base), toml::Value::Table(top)) => {
            for (k, v) in top {
                match base.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        base.insert(k, v);
                    }
                }
            }
        }
        (base, top) => *base = top,
    }
}

/// Overrides leaves of `value` from `PREFIX_PATH_TO_KEY` variables.
fn apply_env(
    value: &mut toml::Value,
    prefix: &str,
    env: &[(String, String)],
) -> anyhow::Result<()> {
    let toml::Value::Table(table) = value else {
        return Ok(());
    };
    for (key, child) in table.iter_mut() {
        let name = format!("{prefix}_{}", key.to_ascii_uppercase());
        if child.is_table() {
            apply_env(child, &name, env)?;
            continue;
        }
        let Some((_, text)) = env.iter().find(|(k, _)| *k == name) else {
            continue;
        };
        *child = match child {
            toml::Value::String(_) => toml::Value::String(text.clone()),
            toml::Value::Array(_) => toml::Value::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    // `8080,8443` is a list of numbers (ports); anything else a list of strings.
                    .map(|s| match s.parse::<i64>() {
                        Ok(n) => toml::Value::Integer(n),
                        Err(_) => toml::Value::String(s.to_owned()),
                    })
                    .collect(),
            ),
            _ => toml::from_str::<toml::Table>(&format!("v = {text}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .with_context(|| format!("{name}: cannot read {text:?} as a value"))?,
        };
    }
    Ok(())
}

fn mask_secrets(value: &mut toml::Value) {
    if let toml::Value::Table(table) = value {
        for (key, child) in table.iter_mut() {
            let secret = ["password", "secret", "token", "key"]
                .iter()
                .any(|s| key.contains(s))
                && !key.starts_with("max_");
            if secret && child.is_str() {
                *child = toml::Value::String("********".into());
            } else {
                mask_secrets(child);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn precedence_is_flags_env_file_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\n[worker]\nconcurrency = 3\nmax_attempts = 5\n[limits]\nmax_channels = 4\n").unwrap();
        let overrides = Overrides {
            config_file: Some(file),
            concurrency: Some(7),
            ..Default::default()
        };
        let c = Config::load_from(
            &overrides,
            &env(&[
                ("AUDIOMILL_WORKER_MAX_ATTEMPTS", "9"),
                ("AUDIOMILL_LISTEN", "127.0.0.1:9100"),
                (
                    "AUDIOMILL_HTTP_CORS_ORIGINS",
                    "https://a.example, https://b.example",
                ),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 9100);
        assert_eq!(c.worker.concurrency, 7);
        assert_eq!(c.worker.max_attempts, 9);
        assert_eq!(c.limits.max_channels, 4);
        assert_eq!(
            c.http.cors_origins,
            vec!["https://a.example", "https://b.example"]
        );
    }

    #[test]
    fn paths_are_made_absolute_once() {
        let o = Overrides {
            data_dir: Some(PathBuf::from("data")),
            ..Default::default()
        };
        let c = Config::load_from(
            &o,
            &env(&[
                ("AUDIOMILL_YTDLP_COOKIES_FILE", "secrets/cookies.txt"),
                ("AUDIOMILL_YTDLP_PROGRAM", "tools/yt-dlp"),
            ]),
        )
        .unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(c.data_dir, cwd.join("data"));
        assert_eq!(c.models_dir(), cwd.join("data/models"));
        assert_eq!(
            Path::new(&c.ytdlp.cookies_file),
            cwd.join("secrets/cookies.txt")
        );
        assert_eq!(Path::new(&c.ytdlp.program), cwd.join("tools/yt-dlp"));
        // A bare name stays a name, looked up on PATH.
        let c = Config::load_from(&o, &env(&[("AUDIOMILL_YTDLP_PROGRAM", "yt-dlp")])).unwrap();
        assert_eq!(c.ytdlp.program, "yt-dlp");
    }

    #[test]
    fn bad_values_are_refused() {
        let o = Overrides::default();
        assert!(Config::load_from(&o, &env(&[("AUDIOMILL_WORKER_CONCURRENCY", "lots")])).is_err());
        assert!(Config::load_from(&o, &env(&[("AUDIOMILL_HTTP_CORS_ORIGINS", "*")])).is_err());
        assert!(Config::load_from(&o, &env(&[("AUDIOMILL_WORKER_CONCURRENCY", "0")])).is_err());
        assert!(
            Config::load_from(&o, &env(&[("AUDIOMILL_HTTP_RATE_LIMIT_PER_MINUTE", "0")])).is_err()
        );
    }

    #[test]
    fn trusted_proxies_are_parsed_at_load() {
        let o = Overrides::default();
        let c = Config::load_from(
            &o,
            &env(&[
                (
                    "AUDIOMILL_HTTP_TRUSTED_PROXIES",
                    "10.0.0.0/8, 127.0.0.1,fd00::/8",
                ),
                ("AUDIOMILL_HTTP_RATE_LIMIT_PER_MINUTE", "300"),
            ]),
        )
        .unwrap();
        assert_eq!(c.http.rate_limit_per_minute, 300);
        assert_eq!(c.http.rate_limit_anonymous_per_minute, 60);
        let proxies = c.trusted_proxies().unwrap();
        assert_eq!(proxies.len(), 3);
        assert!(proxies[0].contains("10.1.2.3".parse().unwrap()));
        let e = Config::load_from(
            &o,
            &env(&[("AUDIOMILL_HTTP_TRUSTED_PROXIES", "10.0.0.0/8,10.0.0.1/33")]),
        )
        .unwrap_err();
        let text = format!("{e:#}");
        assert!(
            text.contains("http.trusted_proxies") && text.contains("10.0.0.1/33"),
            "{text}"
        );
    }
}

//! The one outbound HTTP client: every request audiomill makes for a user goes through it.
//!
//! - Names are resolved by [`crate::resolve_checked`] (through reqwest's resolver hook), so a
//!   connection only ever goes to an address that was checked; a literal address is checked by
//!   [`OutboundUrl::parse`].
//! - Every redirect hop is parsed and checked again, with a small hop limit.
//! - Proxy environment variables are ignored (`no_proxy`): a proxy would connect for us.
//! - Bytes are counted as they arrive (never trusted from `Content-Length`), with a total and
//!   an idle time limit; a failed fetch leaves no file.

use crate::resolve::{resolve_checked, Resolve, ResolveRefused, SystemResolver};
use crate::url_policy::{OutboundUrl, UrlPolicy, UrlRefused};
use futures::StreamExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Limits of one fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchLimits {
    /// Most bytes of body accepted.
    pub max_bytes: u64,
    /// Longest time for the whole fetch, redirects included.
    pub total: Duration,
    /// Longest wait for the next bytes.
    pub idle: Duration,
    /// Most redirects followed.
    pub max_redirects: usize,
}

impl Default for FetchLimits {
    fn default() -> Self {
        FetchLimits {
            max_bytes: 512 << 20,
            total: Duration::from_secs(300),
            idle: Duration::from_secs(30),
            max_redirects: 5,
        }
    }
}

/// Why a fetch failed; `Display` is safe to show to clients (no upstream text).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL, or a redirect's, is not allowed.
    #[error(transparent)]
    Refused(#[from] UrlRefused),
    /// A name resolves to a refused address, or does not resolve.
    #[error(transparent)]
    Resolve(#[from] ResolveRefused),
    /// More redirects than allowed.
    #[error("too many redirects")]
    TooManyRedirects,
    /// The body is larger than allowed.
    #[error("the file is larger than the allowed {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: u64,
    },
    /// The server was too slow.
    #[error("the server took too long")]
    Timeout,
    /// The server answered with an error status.
    #[error("the server answered {0}")]
    Status(u16),
    /// The connection failed.
    #[error("the server could not be reached")]
    Network,
    /// Writing the file failed.
    #[error("the download could not be stored")]
    Io(#[source] std::io::Error),
}

/// What was fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The URL the body came from, after redirects.
    pub final_url: String,
    /// Bytes written.
    pub bytes: u64,
    /// The `Content-Type` the server declared (informative only: content is probed).
    pub content_type: Option<String>,
}

/// The outbound client.
pub struct Fetcher {
    client: reqwest::Client,
    policy: UrlPolicy,
    limits: FetchLimits,
}

/// reqwest's resolver hook over [`resolve_checked`].
struct CheckedResolver {
    inner: Arc<dyn Resolve + Send + Sync>,
    allow_private_networks: bool,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let inner = self.inner.clone();
        let allow = self.allow_private_networks;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // getaddrinfo blocks: off the async threads.
            let checked = tokio::task::spawn_blocking(move || {
                // The port is set by the connector; 0 here.
                resolve_checked(inner.as_ref(), &host, 0, allow)
            })
            .await
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let addrs: reqwest::dns::Addrs = Box::new(checked?.into_iter());
            Ok(addrs)
        })
    }
}

impl Fetcher {
    /// A client under `policy` and `limits`, resolving with the system resolver.
    pub fn new(policy: UrlPolicy, limits: FetchLimits) -> Result<Fetcher, FetchError> {
        Self::with_resolver(policy, limits, Arc::new(SystemResolver))
    }

    /// [`Fetcher::new`] with another resolver (tests give fixed answers).
    pub fn with_resolver(
        policy: UrlPolicy,
        limits: FetchLimits,
        resolver: Arc<dyn Resolve + Send + Sync>,
    ) -> Result<Fetcher, FetchError> {
        let hop_policy = policy.clone();
        let max_redirects = limits.max_redirects;
        let redirect = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max_redirects {
                return attempt.error(FetchError::TooManyRedirects);
            }
            match OutboundUrl::parse(attempt.url().as_str(), &hop_policy) {
                Ok(_) => attempt.follow(),
                Err(refused) => attempt.error(refused),
            }
        });
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(redirect)
            .dns_resolver(Arc::new(CheckedResolver {
                inner: resolver,
                allow_private_networks: policy.allow_private_networks,
            }))
            .connect_timeout(limits.idle)
            .read_timeout(limits.idle)
            .user_agent(concat!("audiomill/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|_| FetchError::Network)?;
        Ok(Fetcher {
            client,
            policy,
            limits,
        })
    }

    /// The policy URLs are checked against.
    pub fn policy(&self) -> &UrlPolicy {
        &self.policy
    }

    /// Downloads `url` into `dest` (created; removed again on any failure).
    pub async fn fetch_to_file(
        &self,
        url: &OutboundUrl,
        dest: &Path,
    ) -> Result<Fetched, FetchError> {
        self.fetch_with_progress(url, dest, &mut |_, _| {}).await
    }

    /// [`Fetcher::fetch_to_file`], calling `progress(received, declared_length)` as bytes
    /// arrive.
    pub async fn fetch_with_progress(
        &self,
        url: &OutboundUrl,
        dest: &Path,
        progress: &mut (dyn FnMut(u64, Option<u64>) + Send),
    ) -> Result<Fetched, FetchError> {
        let result =
            tokio::time::timeout(self.limits.total, self.fetch_inner(url, dest, progress)).await;
        let result = result.unwrap_or(Err(FetchError::Timeout));
        if result.is_err() {
            let _ = tokio::fs::remove_file(dest).await;
        }
        result
    }

    async fn fetch_inner(
        &self,
        url: &OutboundUrl,
        dest: &Path,
        progress: &mut (dyn FnMut(u64, Option<u64>) + Send),
    ) -> Result<Fetched, FetchError> {
        let response = self
            .client
            .get(url.as_url().clone())
            .send()
            .await
            .map_err(classify)?;
        let status = response.status();
        if !status.is_success() {
            return Err(FetchError::Status(status.as_u16()));
        }
        let limit = self.limits.max_bytes;
        // A declared length over the cap fails at once; a smaller one is not trusted.
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(FetchError::TooLarge { limit });
        }
        let declared = response.content_length();
        let final_url = response.url().to_string();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut file = tokio::fs::File::create(dest)
            .await
            .map_err(FetchError::Io)?;
        let mut body = response.bytes_stream();
        let mut bytes = 0u64;
        loop {
            let next = tokio::time::timeout(self.limits.idle, body.next())
                .await
                .map_err(|_| FetchError::Timeout)?;
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(classify)?;
            bytes += chunk.len() as u64;
            if bytes > limit {
                return Err(FetchError::TooLarge { limit });
            }
            file.write_all(&chunk).await.map_err(FetchError::Io)?;
            progress(bytes, declared);
        }
        file.flush().await.map_err(FetchError::Io)?;
        Ok(Fetched {
            final_url,
            bytes,
            content_type,
        })
    }
}

/// Our own refusals travel inside reqwest's errors (from the redirect policy and the
/// resolver): found by walking the source chain.
fn classify(error: reqwest::Error) -> FetchError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = source {
        if let Some(refused) = e.downcast_ref::<UrlRefused>() {
            return FetchError::Refused(refused.clone());
        }
        if let Some(refused) = e.downcast_ref::<ResolveRefused>() {
            return FetchError::Resolve(refused.clone());
        }
        if let Some(FetchError::TooManyRedirects) = e.downcast_ref::<FetchError>() {
            return FetchError::TooManyRedirects;
        }
        source = e.source();
    }
    if error.is_timeout() {
        FetchError::Timeout
    } else {
        FetchError::Network
    }
}

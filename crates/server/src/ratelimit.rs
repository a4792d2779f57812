//! Rate limits: an in-memory limiter per API node and the middleware that applies it.
//!
//! Who is limited: the presented API key (by the SHA-256 of its text, without a database
//! lookup, so an unknown key is limited like a known one and rejected later by [`Tenant`]), or
//! the client address when no key is presented. The client address is the TCP peer, unless the
//! peer is a trusted proxy: then it is the right-most `X-Forwarded-For` entry that is not a
//! trusted proxy itself. The resolved address is put on the request as [`ClientAddr`] for the
//! auth and security logs (see [`crate::client`]).
//!
//! The limiter is a token bucket per subject with continuous refill: a bucket holds at most
//! `limit` tokens and regains `limit` per minute; a request takes its cost in tokens. The limit
//! is passed with every check, so a caller may give each subject its own (per-plan limits).
//! The buckets live in a sharded map whose size is bounded: a full bucket carries no more
//! information than a missing one, so full buckets are dropped by a periodic sweep, and when a
//! shard is at its bound the sweep runs at once and, if it frees nothing, the least recently
//! seen bucket is evicted. Clients rotating made-up keys cannot grow memory without bound.
//!
//! [`Tenant`]: crate::Tenant

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::client::{resolve_client, ClientAddr};
use crate::{AppError, AppState};

/// What a bucket is kept for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A presented key, by the SHA-256 of its text.
    Key([u8; 32]),
    /// An anonymous client. IPv6 clients are grouped by /64, the block one host usually holds,
    /// so a client cannot rotate addresses within its own network to get more budget.
    Addr(IpAddr),
    /// Failed authentications from a client address (grouped like `Addr`): made-up keys each
    /// have a budget of their own, so guessing is limited by where it comes from.
    AuthFailures(IpAddr),
}

impl Subject {
    /// The subject of a presented key text.
    pub fn key(text: &str) -> Self {
        Subject::Key(Sha256::digest(text.as_bytes()).into())
    }

    /// The subject of an anonymous client.
    pub fn addr(ip: IpAddr) -> Self {
        Subject::Addr(network_of(ip))
    }

    /// The subject of a client address's failed authentications.
    pub fn auth_failures(ip: IpAddr) -> Self {
        Subject::AuthFailures(network_of(ip))
    }
}

/// An address as limits see it: IPv4 as is, IPv6 by its /64.
fn network_of(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64))),
        v4 => v4,
    }
}

/// The result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on (its cost was taken).
    pub allowed: bool,
    /// Requests per minute allowed to this subject.
    pub limit: u32,
    /// Whole tokens left after this request.
    pub remaining: u32,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
    /// When refused, seconds until this request would be allowed (at least 1); else 0.
    pub retry_after_secs: u64,
    /// When refused, how many refusals in a row this subject has had (this one included);
    /// else 0. The middleware logs the 1st, 2nd, 4th, 8th… so a flood is not a log flood.
    pub refusals_in_a_row: u32,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    /// When `tokens` was computed.
    updated: Instant,
    /// The limit of the last check, to tell when the bucket is full without one.
    limit: u32,
    refusals_in_a_row: u32,
}

impl Bucket {
    fn tokens_at(&self, limit: u32, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        (self.tokens + elapsed * per_second(limit)).min(f64::from(limit))
    }

    fn is_full(&self, now: Instant) -> bool {
        self.tokens_at(self.limit, now) >= f64::from(self.limit)
    }
}

fn per_second(limit: u32) -> f64 {
    f64::from(limit) / 60.0
}

struct Shard {
    buckets: HashMap<Subject, Bucket>,
    last_sweep: Option<Instant>,
}

/// Token buckets per subject, in memory, bounded in size. Safe to share between threads.
pub struct RateLimiter {
    shards: Vec<Mutex<Shard>>,
    hasher: RandomState,
    max_per_shard: usize,
}

const SHARDS: usize = 16;
/// How often a shard drops its full buckets.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl RateLimiter {
    /// A limiter that tracks at most about `max_subjects` subjects at once.
    pub fn new(max_subjects: usize) -> Self {
        Self::with_shards(max_subjects, SHARDS)
    }

    fn with_shards(max_subjects: usize, shards: usize) -> Self {
        Self {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        buckets: HashMap::new(),
                        last_sweep: None,
                    })
                })
                .collect(),
            hasher: RandomState::new(),
            max_per_shard: max_subjects.div_ceil(shards).max(1),
        }
    }

    /// Takes `cost` tokens from `subject`'s bucket of `limit_per_minute` if it holds them.
    /// A cost above the limit is capped at the limit (such a request needs a full bucket);
    /// a limit of 0 counts as 1.
    pub fn check(
        &self,
        subject: Subject,
        cost: u32,
        limit_per_minute: u32,
        now: Instant,
    ) -> Decision {
        let limit = limit_per_minute.max(1);
        let cost = f64::from(cost.min(limit));
        let shard = &self.shards[self.hasher.hash_one(subject) as usize % self.shards.len()];
        // A panic while holding the lock cannot leave a bucket half-written: use it anyway.
        let mut shard = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if shard
            .last_sweep
            .is_none_or(|t| now.saturating_duration_since(t) >= SWEEP_EVERY)
        {
            shard.sweep(now);
        }
        if !shard.buckets.contains_key(&subject) && shard.buckets.len() >= self.max_per_shard {
            shard.sweep(now);
            if shard.buckets.len() >= self.max_per_shard {
                shard.evict_least_recent();
            }
        }
        let bucket = shard.buckets.entry(subject).or_insert(Bucket {
            tokens: f64::from(limit),
            updated: now,
            limit,
            refusals_in_a_row: 0,
        });
        let rate = per_second(limit);
        let mut tokens = bucket.tokens_at(limit, now);
        let allowed = tokens >= cost;
        let retry_after_secs = if allowed {
            tokens -= cost;
            bucket.refusals_in_a_row = 0;
            0
        } else {
            bucket.refusals_in_a_row = bucket.refusals_in_a_row.saturating_add(1);
            ((cost - tokens) / rate).ceil().max(1.0) as u64
        };
        bucket.tokens = tokens;
        bucket.updated = now;
        bucket.limit = limit;
        Decision {
            allowed,
            limit,
            remaining: tokens.floor() as u32,
            reset_secs: ((f64::from(limit) - tokens) / rate).ceil() as u64,
            retry_after_secs,
            refusals_in_a_row: if allowed { 0 } else { bucket.refusals_in_a_row },
        }
    }

    /// Whether `subject`'s bucket of `limit_per_minute` holds a whole token now, without taking
    /// it (a subject with no bucket has a full one).
    pub fn has_token(&self, subject: Subject, limit_per_minute: u32, now: Instant) -> bool {
        let limit = limit_per_minute.max(1);
        let shard = &self.shards[self.hasher.hash_one(subject) as usize % self.shards.len()];
        let shard = shard
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        shard
            .buckets
            .get(&subject)
            .is_none_or(|bucket| bucket.tokens_at(limit, now) >= 1.0)
    }

    /// Drops every bucket that is full at `now` (they are the same as no bucket). Each shard
    /// also does this by itself every minute and when it is at its bound.
    pub fn sweep(&self, now: Instant) {
        for shard in &self.shards {
            shard
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .sweep(now);
        }
    }

    /// Subjects tracked now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.buckets.len()))
            .sum()
    }

    /// Whether no subject is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Shard {
    /// Drops the buckets that are full: they are the same as no bucket.
    fn sweep(&mut self, now: Instant) {
        self.buckets.retain(|_, b| !b.is_full(now));
        self.last_sweep = Some(now);
    }

    fn evict_least_recent(&mut self) {
        let oldest = self
            .buckets
            .iter()
            .min_by_key(|(_, b)| b.updated)
            .map(|(subject, _)| *subject);
        if let Some(subject) = oldest {
            self.buckets.remove(&subject);
        }
    }
}

/// The cost of a request: expensive operations count more than reads; `None` for the health
/// and metrics endpoints, which are never limited.
fn cost(method: &Method, path: &str, config: &crate::ServerConfig) -> Option<u32> {
    match (method, path) {
        (_, "/healthz" | "/readyz" | "/metrics") => None,
        (&Method::POST, "/v1/jobs" | "/v1/uploads") => Some(config.rate_limit_expensive_cost),
        _ => Some(1),
    }
}

/// The requests per minute of each key's plan, remembered for a little while so that the
/// limiter does not ask the database on every request. Bounded: when full it starts over.
pub struct PlanLimitCache {
    entries: std::sync::Mutex<HashMap<String, (Option<u32>, Instant)>>,
}

/// How long a key's plan limit is remembered (a plan change applies within this).
const PLAN_LIMIT_TTL: std::time::Duration = std::time::Duration::from_secs(30);
/// Most keys remembered.
const PLAN_LIMIT_ENTRIES: usize = 10_000;

impl Default for PlanLimitCache {
    fn default() -> Self {
        Self {
            entries: std::sync::Mutex::new(HashMap::new()),
        }
    }
}

impl PlanLimitCache {
    /// The plan's requests per minute of the key with SHA-256 `hash`; `None` for a key that
    /// is not (or no longer) valid, which the auth extractor refuses anyway.
    pub async fn limit(&self, state: &AppState, hash: &str) -> Option<u32> {
        let now = Instant::now();
        if let Some((limit, at)) = self.lock().get(hash).copied() {
            if now.duration_since(at) < PLAN_LIMIT_TTL {
                return limit;
            }
        }
        let limit = match state.store().key_by_hash(hash).await {
            Ok(Some(key)) if key.is_active(chrono::Utc::now()) => {
                match state.store().account_limits(key.account_id).await {
                    Ok((_, plan)) => Some(plan.requests_per_minute),
                    Err(_) => return None,
                }
            }
            Ok(_) => None,
            // The database is down: no plan limit now, and nothing remembered.
            Err(_) => return None,
        };
        let mut entries = self.lock();
        if entries.len() >= PLAN_LIMIT_ENTRIES {
            entries.clear();
        }
        entries.insert(hash.to_owned(), (limit, now));
        limit
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Option<u32>, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Middleware: resolves the client address, then limits the request by its key or address.
pub async fn limit(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let config = state.config();
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| resolve_client(c.0.ip(), request.headers(), &config.trusted_proxies));
    if let Some(ip) = client {
        request.extensions_mut().insert(ClientAddr(ip));
    }
    let Some(cost) = cost(request.method(), request.uri().path(), config) else {
        return next.run(request).await;
    };
    let (subject, limit) = match crate::credentials::presented_key(request.headers()) {
        Some(text) if !text.is_empty() => {
            // The node's limit per key, or the key's plan's if lower.
            let (hash, _) = crate::credentials::key_hash(text);
            let plan = state.plan_limits().limit(&state, &hash).await;
            let limit = plan.map_or(config.rate_limit_per_minute, |p| {
                p.min(config.rate_limit_per_minute)
            });
            (Subject::key(text), limit)
        }
        // Without a connection address (in-process tests) every anonymous request is one client.
        _ => (
            Subject::addr(client.unwrap_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED))),
            config.rate_limit_anonymous_per_minute,
        ),
    };
    // A client that keeps presenting keys that fail is stopped before any lookup.
    let failures = match (&subject, client) {
        (Subject::Key(_), Some(ip)) => Some(Subject::auth_failures(ip)),
        _ => None,
    };
    let guessing = failures.is_some_and(|f| {
        !state
            .rate_limiter()
            .has_token(f, config.auth_failures_per_minute, Instant::now())
    });
    let decision = if guessing {
        state.rate_limiter().check(
            failures.unwrap_or(subject),
            1,
            config.auth_failures_per_minute,
            Instant::now(),
        )
    } else {
        state
            .rate_limiter()
            .check(subject, cost, limit, Instant::now())
    };
    let mut response = if decision.allowed {
        let response = next.run(request).await;
        if let (Some(f), axum::http::StatusCode::UNAUTHORIZED) = (failures, response.status()) {
            state
                .rate_limiter()
                .check(f, 1, config.auth_failures_per_minute, Instant::now());
        }
        response
    } else {
        state.metrics().security_event("rate_limited");
        if decision.refusals_in_a_row.is_power_of_two() {
            let request_id = request
                .headers()
                .get(crate::http::REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            tracing::warn!(
                target: "security",
                event = "rate_limited",
                client = %client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
                request_id,
                keyed = matches!(subject, Subject::Key(_)),
                path = %request.uri().path(),
                refusals_in_a_row = decision.refusals_in_a_row,
                retry_after_secs = decision.retry_after_secs,
                "request refused: rate limit exceeded"
            );
        }
        let has_body = request.headers().contains_key(header::TRANSFER_ENCODING)
            || request
                .headers()
                .get(header::CONTENT_LENGTH)
                .is_some_and(|v| v.as_bytes() != b"0");
        let mut refusal = AppError::rate_limited(decision.retry_after_secs).into_response();
        if has_body {
            // As for a 413: read a little of an unread body so the client, still sending,
            // sees the 429 rather than a broken pipe; the connection is not reused.
            let mut body = request.into_body().into_data_stream();
            crate::body::linger(&mut body).await;
            refusal
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        refusal
    };
    let headers = response.headers_mut();
    for (name, value) in [
        ("ratelimit-limit", u64::from(decision.limit)),
        ("ratelimit-remaining", u64::from(decision.remaining)),
        ("ratelimit-reset", decision.reset_secs),
    ] {
        headers.insert(name, HeaderValue::from(value));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn subject(n: u32) -> Subject {
        Subject::key(&format!("am_test_{n}"))
    }

    #[test]
    fn a_full_bucket_allows_the_limit_then_refuses() {
        let limiter = RateLimiter::new(1000);
        let t0 = Instant::now();
        for i in 0..60 {
            let d = limiter.check(subject(1), 1, 60, t0);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 59 - i);
            assert_eq!(d.limit, 60);
        }
        let d = limiter.check(subject(1), 1, 60, t0);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        // 60 per minute: one token a second; the bucket is full again after a minute.
        assert_eq!(d.retry_after_secs, 1);
        assert_eq!(d.reset_secs, 60);
        assert_eq!(d.refusals_in_a_row, 1);
        assert_eq!(limiter.check(subject(1), 1, 60, t0).refusals_in_a_row, 2);
        // Other subjects have their own buckets.
        assert!(limiter.check(subject(2), 1, 60, t0).allowed);
    }

    #[test]
    fn buckets_refill_continuously() {
        let limiter = RateLimiter::new(1000);
        let t0 = Instant::now();
        for _ in 0..120 {
            limiter.check(subject(1), 1, 120, t0);
        }
        assert!(!limiter.check(subject(1), 1, 120, t0).allowed);
        // 120 per minute: a token every half second.
        let d = limiter.check(subject(1), 1, 120, t0 + Duration::from_millis(500));
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        assert!(
            !limiter
                .check(subject(1), 1, 120, t0 + Duration::from_millis(700))
                .allowed
        );
        // 0.4 tokens at 0.7 s, plus 20 in the next 10 s, less this request.
        let d = limiter.check(subject(1), 1, 120, t0 + Duration::from_millis(10_700));
        assert!(d.allowed);
        assert_eq!(d.remaining, 19);
        // Never more than the limit, however long the wait.
        let d = limiter.check(subject(1), 1, 120, t0 + Duration::from_secs(3600));
        assert_eq!(d.remaining, 119);
        assert_eq!(d.reset_secs, 1);
    }

    #[test]
    fn expensive_requests_cost_more_and_say_when_to_retry() {
        let limiter = RateLimiter::new(1000);
        let t0 = Instant::now();
        let d = limiter.check(subject(1), 5, 12, t0);
        assert!(d.allowed);
        assert_eq!(d.remaining, 7);
        // 12 per minute: a token every 5 s; 5 missing tokens refill in 25 s.
        assert_eq!(d.reset_secs, 25);
        assert!(limiter.check(subject(1), 5, 12, t0).allowed);
        let d = limiter.check(subject(1), 5, 12, t0);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 2);
        // 3 tokens missing at 5 s each.
        assert_eq!(d.retry_after_secs, 15);
        assert_eq!(d.reset_secs, 50);
        // A cheap request still fits.
        assert!(limiter.check(subject(1), 1, 12, t0).allowed);
        // A cost above the limit needs the whole bucket, not more.
        let d = limiter.check(subject(2), 5, 3, t0);
        assert!(d.allowed);
        assert_eq!(d.remaining, 0);
        let d = limiter.check(subject(2), 5, 3, t0 + Duration::from_secs(1));
        assert!(!d.allowed);
        assert!(d.retry_after_secs >= 1);
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        let limiter = RateLimiter::new(1000);
        let t0 = Instant::now();
        for _ in 0..6000 {
            limiter.check(subject(1), 1, 6000, t0);
        }
        // 100 tokens a second: the next one is 10 ms away, but Retry-After counts seconds.
        let d = limiter.check(subject(1), 1, 6000, t0);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_secs, 1);
    }

    #[test]
    fn the_limit_is_given_per_check() {
        let limiter = RateLimiter::new(1000);
        let t0 = Instant::now();
        assert_eq!(limiter.check(subject(1), 1, 10, t0).remaining, 9);
        // A lower limit caps what is left; a higher one refills towards it.
        assert_eq!(limiter.check(subject(1), 1, 5, t0).remaining, 4);
        let d = limiter.check(subject(1), 1, 600, t0 + Duration::from_secs(1));
        assert_eq!(d.limit, 600);
        assert_eq!(d.remaining, 4 + 10 - 1);
    }

    #[test]
    fn the_number_of_buckets_is_bounded() {
        let limiter = RateLimiter::new(160);
        let t0 = Instant::now();
        // Made-up keys, each used once, never fill memory past the bound.
        for n in 0..10_000 {
            assert!(limiter.check(subject(n), 1, 60, t0).allowed);
            assert!(limiter.len() <= 160);
        }
        // A minute later every bucket is full again, the same as none: a sweep drops them all.
        let later = t0 + Duration::from_secs(60);
        limiter.check(subject(0), 10, 60, later - Duration::from_secs(1));
        limiter.sweep(later);
        assert_eq!(
            limiter.len(),
            1,
            "only the bucket used a second ago is kept"
        );
        limiter.sweep(later + Duration::from_secs(9));
        assert!(limiter.is_empty());
    }

    #[test]
    fn inserting_past_the_bound_drops_full_buckets_before_busy_ones() {
        let limiter = RateLimiter::with_shards(4, 1);
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        // A is full again after a second; B, C and D emptied their buckets.
        limiter.check(subject(1), 1, 60, at(0));
        for n in 2..=4 {
            limiter.check(subject(n), 60, 60, at(u64::from(n)));
        }
        // E is one past the bound: the sweep drops A, no busy bucket is lost.
        limiter.check(subject(5), 1, 60, at(2000));
        assert_eq!(limiter.len(), 4);
        assert!(!limiter.check(subject(2), 60, 60, at(2000)).allowed);
        // F: nothing is full, so the least recently seen (C) goes.
        limiter.check(subject(6), 1, 60, at(2001));
        assert_eq!(limiter.len(), 4);
        assert!(!limiter.check(subject(4), 60, 60, at(2002)).allowed);
        assert!(
            limiter.check(subject(3), 60, 60, at(2003)).allowed,
            "C was evicted"
        );
    }

    #[test]
    fn ipv6_clients_are_grouped_by_64() {
        assert_eq!(
            Subject::addr(ip("2001:db8:1:2::1")),
            Subject::addr(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            Subject::addr(ip("2001:db8:1:2::1")),
            Subject::addr(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            Subject::addr(ip("::ffff:192.0.2.7")),
            Subject::addr(ip("192.0.2.7"))
        );
        assert_ne!(
            Subject::addr(ip("192.0.2.7")),
            Subject::addr(ip("192.0.2.8"))
        );
    }

    #[test]
    fn health_and_metrics_are_free_and_expensive_operations_cost_more() {
        let config = crate::ServerConfig::for_data_dir(
            std::path::Path::new("/tmp"),
            std::path::Path::new("/tmp"),
        );
        for path in ["/healthz", "/readyz", "/metrics"] {
            assert_eq!(cost(&Method::GET, path, &config), None);
        }
        assert_eq!(cost(&Method::POST, "/v1/jobs", &config), Some(5));
        assert_eq!(cost(&Method::POST, "/v1/uploads", &config), Some(5));
        assert_eq!(cost(&Method::GET, "/v1/jobs", &config), Some(1));
        assert_eq!(cost(&Method::GET, "/v1/uploads/upl_x", &config), Some(1));
        assert_eq!(cost(&Method::GET, "/nothing", &config), Some(1));
    }

    #[test]
    fn has_token_looks_without_taking() {
        let limiter = RateLimiter::new(100);
        let now = Instant::now();
        let subject = Subject::auth_failures(ip("2001:db8::1"));
        assert!(limiter.has_token(subject, 2, now));
        assert!(limiter.check(subject, 1, 2, now).allowed);
        assert!(limiter.has_token(subject, 2, now));
        assert!(limiter.check(subject, 1, 2, now).allowed);
        assert!(!limiter.has_token(subject, 2, now));
        // Addresses of one /64 share the budget; failures and requests are separate budgets.
        assert!(!limiter.has_token(Subject::auth_failures(ip("2001:db8::2")), 2, now));
        assert!(limiter.has_token(Subject::addr(ip("2001:db8::1")), 2, now));
        assert!(limiter.has_token(subject, 2, now + Duration::from_secs(30)));
    }
}

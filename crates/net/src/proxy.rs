//! A checking HTTP proxy for the programs that make their own connections (yt-dlp).
//!
//! yt-dlp resolves names and connects by itself, so the URL a client gave is not the only one
//! it fetches: a site's JSON names format URLs, and any response may redirect. Each yt-dlp run
//! therefore gets its own [`CheckingProxy`] on `127.0.0.1:<ephemeral>` (`--proxy`), and every
//! connection yt-dlp makes is judged here by the same policy as ours:
//!
//! - `CONNECT host:port` (HTTPS tunnels) and absolute-form requests (`GET http://host:port/…`,
//!   any method) are the only requests accepted; anything else is `400`;
//! - the port must be 80, 443 or one of [`UrlPolicy::extra_ports`];
//! - a literal address is normalized (every numeric form, as in [`OutboundUrl`]) and checked
//!   with [`address::check_with`]; a name is resolved once with [`resolve_checked`] and the
//!   connection goes only to the addresses that passed (no second lookup to rebind);
//! - a refusal is `403` (logged as a `security` `blocked_url` event: host, port and reason,
//!   never the path or query), a name that does not resolve or an address that cannot be
//!   reached is `502`;
//! - a tunnel is `200 Connection established` and then bytes both ways; an absolute-form
//!   request is forwarded in origin-form with its `Proxy-*`, `Connection` and `Keep-Alive`
//!   headers dropped and `Connection: close` added, and the response relayed until the server
//!   closes;
//! - the request head is bounded ([`MAX_HEAD_BYTES`]), so is the time without traffic
//!   ([`IDLE_TIMEOUT`]) and the number of connections at once ([`MAX_CONNECTIONS`], `503`
//!   beyond).
//!
//! Dropping the proxy stops it: the accept loop and every connection it serves are aborted.
//!
//! [`OutboundUrl`]: crate::OutboundUrl

use crate::address;
use crate::resolve::{resolve_checked, Resolve, ResolveRefused, SystemResolver};
use crate::url_policy::UrlPolicy;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use url::{Host, Url};

/// Longest request head (request line and headers) accepted, in bytes.
pub const MAX_HEAD_BYTES: usize = 16 << 10;
/// Longest time a connection may go without a byte either way (and longest wait for the head).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest wait for the connection to the destination.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Most connections served at once; more are answered `503`.
pub const MAX_CONNECTIONS: usize = 32;
/// The ports every destination may use.
const DEFAULT_PORTS: [u16; 2] = [80, 443];

/// The resolver the proxy uses (shared with the blocking lookups).
pub type SharedResolver = Arc<dyn Resolve + Send + Sync>;

/// A running checking proxy; dropping it stops it.
pub struct CheckingProxy {
    addr: SocketAddr,
    blocked: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for CheckingProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckingProxy")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl CheckingProxy {
    /// Starts a proxy on `127.0.0.1:0` judging destinations by `policy`, names resolved by the
    /// system resolver.
    pub async fn start(policy: UrlPolicy) -> io::Result<CheckingProxy> {
        Self::with_resolver(policy, Arc::new(SystemResolver)).await
    }

    /// [`CheckingProxy::start`] with another resolver (tests give fixed answers).
    pub async fn with_resolver(
        policy: UrlPolicy,
        resolver: SharedResolver,
    ) -> io::Result<CheckingProxy> {
        let listener = TcpListener::bind((IpAddr::from([127, 0, 0, 1]), 0)).await?;
        let addr = listener.local_addr()?;
        let blocked = Arc::new(AtomicU64::new(0));
        let shared = Arc::new(Shared {
            policy,
            resolver,
            blocked: blocked.clone(),
        });
        let task = tokio::spawn(accept_loop(listener, shared));
        Ok(CheckingProxy {
            addr,
            blocked,
            task,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The proxy URL to give a client (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests it refused by the policy so far.
    pub fn blocked(&self) -> u64 {
        self.blocked.load(Ordering::Relaxed)
    }
}

impl Drop for CheckingProxy {
    fn drop(&mut self) {
        // The connection tasks live in the loop's `JoinSet`: aborting it aborts them too.
        self.task.abort();
    }
}

/// What every connection needs.
struct Shared {
    policy: UrlPolicy,
    resolver: SharedResolver,
    blocked: Arc<AtomicU64>,
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut stream, _)) = accepted else {
                    // Out of descriptors and the like: wait a little rather than spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Ok(permit) = permits.clone().try_acquire_owned() else {
                    connections.spawn(async move {
                        let _ = reply(&mut stream, "503 Service Unavailable").await;
                    });
                    continue;
                };
                let shared = shared.clone();
                connections.spawn(async move {
                    serve(stream, &shared).await;
                    drop(permit);
                });
            }
            Some(_) = connections.join_next() => {}
        }
    }
}

/// Why a request is not carried out.
#[derive(Debug)]
enum Refusal {
    /// Not a request this proxy handles (`400`).
    Malformed(&'static str),
    /// The head is too long (`431`).
    HeadTooLarge,
    /// The port is not allowed (`403`).
    Port(u16),
    /// The address, or one the name resolves to, is refused (`403`).
    Address(&'static str),
    /// The name does not resolve (`502`).
    NoAddress,
    /// No checked address accepted a connection (`502`).
    Unreachable,
}

impl Refusal {
    fn status(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "400 Bad Request",
            Refusal::HeadTooLarge => "431 Request Header Fields Too Large",
            Refusal::Port(_) | Refusal::Address(_) => "403 Forbidden",
            Refusal::NoAddress | Refusal::Unreachable => "502 Bad Gateway",
        }
    }

    fn reason(&self) -> String {
        match self {
            Refusal::Malformed(what) => format!("malformed request: {what}"),
            Refusal::HeadTooLarge => "request head too large".to_owned(),
            Refusal::Port(port) => format!("port {port} is not allowed"),
            Refusal::Address(range) => format!("{range} address"),
            Refusal::NoAddress => "the host name does not resolve".to_owned(),
            Refusal::Unreachable => "no address accepted a connection".to_owned(),
        }
    }
}

/// A parsed request head.
struct Head {
    /// Everything before the blank line, as text.
    text: String,
    /// Bytes read after the head (the start of a body, or of TLS).
    rest: Vec<u8>,
}

/// Where a request goes.
struct Target {
    host: Host<String>,
    port: u16,
}

impl Target {
    /// The host as written in logs and `Host` headers.
    fn host_text(&self) -> String {
        match &self.host {
            Host::Ipv6(ip) => format!("[{ip}]"),
            other => other.to_string(),
        }
    }
}

async fn serve(mut client: TcpStream, shared: &Shared) {
    let head = match tokio::time::timeout(IDLE_TIMEOUT, read_head(&mut client)).await {
        Ok(Ok(head)) => head,
        Ok(Err(Some(refusal))) => {
            let _ = reply(&mut client, refusal.status()).await;
            return;
        }
        // Closed, failed or silent before a whole head: nothing to answer.
        Ok(Err(None)) | Err(_) => return,
    };
    let result = handle(&mut client, head, shared).await;
    if let Err((target, refusal)) = result {
        log_refusal(target.as_ref(), &refusal, shared);
        let _ = reply(&mut client, refusal.status()).await;
    }
}

/// Carries out one request; on refusal, the target (when known) and why.
async fn handle(
    client: &mut TcpStream,
    head: Head,
    shared: &Shared,
) -> Result<(), (Option<Target>, Refusal)> {
    let mut lines = head.text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err((None, Refusal::Malformed("request line")));
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() {
        return Err((None, Refusal::Malformed("request line")));
    }
    if method.eq_ignore_ascii_case("CONNECT") {
        let target = parse_authority(target).map_err(|r| (None, r))?;
        let mut upstream = match connect_checked(&target, shared).await {
            Ok(stream) => stream,
            Err(refusal) => return Err((Some(target), refusal)),
        };
        if client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_err()
        {
            return Ok(());
        }
        if !head.rest.is_empty() && upstream.write_all(&head.rest).await.is_err() {
            return Ok(());
        }
        let _ = relay(client, &mut upstream).await;
        return Ok(());
    }

    let (target, path) = parse_absolute(target).map_err(|r| (None, r))?;
    let mut forwarded = format!("{method} {path} {version}\r\n");
    let mut has_host = false;
    for line in lines {
        let Some((name, _)) = line.split_once(':') else {
            return Err((None, Refusal::Malformed("header line")));
        };
        let name = name.trim().to_ascii_lowercase();
        if name.starts_with("proxy-") || name == "connection" || name == "keep-alive" {
            continue;
        }
        has_host |= name == "host";
        forwarded.push_str(line);
        forwarded.push_str("\r\n");
    }
    if !has_host {
        let host = target.host_text();
        match target.port {
            80 => forwarded.push_str(&format!("Host: {host}\r\n")),
            port => forwarded.push_str(&format!("Host: {host}:{port}\r\n")),
        }
    }
    forwarded.push_str("Connection: close\r\n\r\n");
    let mut upstream = match connect_checked(&target, shared).await {
        Ok(stream) => stream,
        Err(refusal) => return Err((Some(target), refusal)),
    };
    let mut first = forwarded.into_bytes();
    first.extend_from_slice(&head.rest);
    if upstream.write_all(&first).await.is_err() {
        let _ = reply(client, Refusal::Unreachable.status()).await;
        return Ok(());
    }
    let _ = relay(client, &mut upstream).await;
    Ok(())
}

/// Reads up to the blank line ending the head. `Err(None)`: the client went away or failed.
async fn read_head(stream: &mut TcpStream) -> Result<Head, Option<Refusal>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await.map_err(|_| None)?;
        if n == 0 {
            return Err(None);
        }
        // Search from a little before the new bytes: the terminator may straddle reads.
        let from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(at) = find_blank_line(&buf[from..]) {
            let end = from + at;
            if end > MAX_HEAD_BYTES {
                return Err(Some(Refusal::HeadTooLarge));
            }
            let text = std::str::from_utf8(&buf[..end])
                .map_err(|_| Some(Refusal::Malformed("head is not UTF-8")))?
                .to_owned();
            return Ok(Head {
                text,
                rest: buf[end + 4..].to_vec(),
            });
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(Some(Refusal::HeadTooLarge));
        }
    }
}

fn find_blank_line(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n")
}

/// The `host:port` of a `CONNECT` (the port is required).
fn parse_authority(authority: &str) -> Result<Target, Refusal> {
    let (_, port) = authority
        .rsplit_once(':')
        .filter(|(host, port)| {
            !host.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
        })
        .ok_or(Refusal::Malformed("CONNECT target"))?;
    if authority.contains(['@', '/', '?', '#', '\\']) {
        return Err(Refusal::Malformed("CONNECT target"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| Refusal::Malformed("CONNECT port"))?;
    // The WHATWG parser normalizes the host as for URLs (numeric IPv4 forms, IPv6, case).
    let url = Url::parse(&format!("http://{authority}/"))
        .map_err(|_| Refusal::Malformed("CONNECT target"))?;
    let host = url
        .host()
        .ok_or(Refusal::Malformed("CONNECT target"))?
        .to_owned();
    Ok(Target { host, port })
}

/// The destination and origin-form target of an absolute-form request (`http://` only).
fn parse_absolute(target: &str) -> Result<(Target, String), Refusal> {
    let url = Url::parse(target).map_err(|_| Refusal::Malformed("request target"))?;
    if url.scheme() != "http" {
        return Err(Refusal::Malformed("only http:// targets (use CONNECT)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refusal::Malformed("credentials in the target"));
    }
    let host = url
        .host()
        .ok_or(Refusal::Malformed("request target"))?
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(80);
    let mut path = url.path().to_owned();
    if let Some(query) = url.query() {
        path.push('?');
        path.push_str(query);
    }
    Ok((Target { host, port }, path))
}

/// Checks the port and the addresses of `target`, then connects to the first checked address
/// that answers.
async fn connect_checked(target: &Target, shared: &Shared) -> Result<TcpStream, Refusal> {
    let policy = &shared.policy;
    if !DEFAULT_PORTS.contains(&target.port) && !policy.extra_ports.contains(&target.port) {
        return Err(Refusal::Port(target.port));
    }
    let allow_private = policy.allow_private_networks;
    let addrs = match &target.host {
        Host::Ipv4(ip) => literal(IpAddr::V4(*ip), target.port, allow_private)?,
        Host::Ipv6(ip) => literal(IpAddr::V6(*ip), target.port, allow_private)?,
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_owned();
            let resolver = shared.resolver.clone();
            let port = target.port;
            tokio::task::spawn_blocking(move || {
                resolve_checked(resolver.as_ref(), &name, port, allow_private)
            })
            .await
            .map_err(|_| Refusal::NoAddress)?
            .map_err(|e| match e {
                ResolveRefused::NoAddress => Refusal::NoAddress,
                ResolveRefused::Address(range) => Refusal::Address(range),
            })?
        }
    };
    for addr in addrs {
        if let Ok(Ok(stream)) =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await
        {
            return Ok(stream);
        }
    }
    Err(Refusal::Unreachable)
}

fn literal(ip: IpAddr, port: u16, allow_private: bool) -> Result<Vec<SocketAddr>, Refusal> {
    let checked = address::check_with(ip, allow_private).map_err(|e| Refusal::Address(e.0))?;
    Ok(vec![SocketAddr::new(checked, port)])
}

fn log_refusal(target: Option<&Target>, refusal: &Refusal, shared: &Shared) {
    let host = target.map(Target::host_text).unwrap_or_default();
    let port = target.map(|t| t.port);
    match refusal {
        Refusal::Port(_) | Refusal::Address(_) => {
            shared.blocked.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                target: "security",
                event = "blocked_url",
                host = %host,
                port,
                reason = %refusal.reason(),
                "connection refused by the checking proxy"
            );
        }
        _ => tracing::info!(
            host = %host,
            port,
            reason = %refusal.reason(),
            "checking proxy could not carry a request"
        ),
    }
}

/// A bodiless answer, then the end of the connection.
async fn reply(stream: &mut TcpStream, status: &str) -> io::Result<()> {
    let text = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    stream.write_all(text.as_bytes()).await?;
    stream.shutdown().await
}

/// Copies bytes both ways until both sides have finished, or nothing moved for
/// [`IDLE_TIMEOUT`]. The end of one side's bytes is passed on as a write shutdown.
async fn relay(a: &mut TcpStream, b: &mut TcpStream) -> io::Result<()> {
    let (mut a_read, mut a_write) = a.split();
    let (mut b_read, mut b_write) = b.split();
    let mut a_buf = vec![0u8; 16 << 10];
    let mut b_buf = vec![0u8; 16 << 10];
    let (mut a_open, mut b_open) = (true, true);
    while a_open || b_open {
        tokio::select! {
            read = a_read.read(&mut a_buf), if a_open => {
                a_open = pass(read, &a_buf, &mut b_write).await?;
            }
            read = b_read.read(&mut b_buf), if b_open => {
                b_open = pass(read, &b_buf, &mut a_write).await?;
            }
            _ = tokio::time::sleep(IDLE_TIMEOUT) => {
                return Err(io::ErrorKind::TimedOut.into());
            }
        }
    }
    Ok(())
}

/// Writes what a read gave to `to`; `false` when the reading side has ended.
async fn pass(
    read: io::Result<usize>,
    buf: &[u8],
    to: &mut (impl AsyncWrite + Unpin),
) -> io::Result<bool> {
    let n = read?;
    if n == 0 {
        let _ = to.shutdown().await;
        return Ok(false);
    }
    tokio::time::timeout(IDLE_TIMEOUT, to.write_all(&buf[..n]))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_targets_are_normalized_and_need_a_port() {
        let t = parse_authority("Example.COM:443").unwrap();
        assert_eq!(t.host_text(), "example.com");
        assert_eq!(t.port, 443);
        let t = parse_authority("2130706433:80").unwrap();
        assert_eq!(t.host, Host::<String>::Ipv4([127, 0, 0, 1].into()));
        let t = parse_authority("[::ffff:7f00:1]:443").unwrap();
        assert_eq!(t.host_text(), "[::ffff:127.0.0.1]");
        for bad in [
            "example.com",
            ":443",
            "example.com:",
            "a@example.com:443",
            "example.com:443/x",
            "example.com:99999",
            "[::1]",
        ] {
            assert!(parse_authority(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn absolute_targets_become_origin_form() {
        let (t, path) = parse_absolute("http://0x7f.1:8080/a.wav?x=1#frag").unwrap();
        assert_eq!(t.host, Host::<String>::Ipv4([127, 0, 0, 1].into()));
        assert_eq!(t.port, 8080);
        assert_eq!(path, "/a.wav?x=1");
        let (t, path) = parse_absolute("http://example.com").unwrap();
        assert_eq!((t.port, path.as_str()), (80, "/"));
        assert!(parse_absolute("/relative").is_err());
        assert!(parse_absolute("https://example.com/").is_err());
        assert!(parse_absolute("http://u:p@example.com/").is_err());
    }
}

//! The checking proxy against local servers on 127.0.0.1, names given by a stub resolver.

use audiomill_net::{CheckingProxy, Resolve, UrlPolicy};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Fixed answers.
struct Stub(HashMap<&'static str, Vec<IpAddr>>);

impl Resolve for Stub {
    fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        self.0
            .get(host)
            .cloned()
            .ok_or_else(|| std::io::Error::other("NXDOMAIN"))
    }
}

fn stub() -> Arc<Stub> {
    Arc::new(Stub(HashMap::from([
        ("internal.test", vec!["10.0.0.1".parse().unwrap()]),
        ("metadata.test", vec!["169.254.169.254".parse().unwrap()]),
        ("local.test", vec!["127.0.0.1".parse().unwrap()]),
    ])))
}

fn open_policy(ports: &[u16]) -> UrlPolicy {
    UrlPolicy {
        extra_ports: ports.to_vec(),
        allow_private_networks: true,
    }
}

async fn proxy(policy: UrlPolicy) -> CheckingProxy {
    CheckingProxy::with_resolver(policy, stub()).await.unwrap()
}

/// Sends `request` to the proxy and reads everything until it closes.
async fn exchange(proxy: &CheckingProxy, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("the proxy answers and closes")
        .unwrap();
    out
}

fn status(response: &[u8]) -> String {
    let text = String::from_utf8_lossy(response);
    text.lines().next().unwrap_or_default().to_owned()
}

/// A server that must never be reached: counts its connections.
fn untouchable() -> (u16, Arc<Mutex<u32>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(Mutex::new(0));
    let count = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            if stream.is_ok() {
                *count.lock().unwrap() += 1;
            }
        }
    });
    (port, hits)
}

/// A large body with every byte value, to check it arrives intact.
fn body() -> Vec<u8> {
    (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

/// An HTTP server answering every request with `body()`; returns its port and the heads it
/// received.
fn http_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            seen.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).into_owned());
            let body = body();
            let _ = stream.write_all(
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            let _ = stream.write_all(&body);
        }
    });
    (port, heads)
}

/// A TCP echo server.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn loopback_is_refused_without_the_private_switch() {
    let (port, hits) = untouchable();
    let policy = UrlPolicy {
        extra_ports: vec![port],
        allow_private_networks: false,
    };
    let proxy = proxy(policy).await;
    let got = exchange(
        &proxy,
        format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status(&got), "HTTP/1.1 403 Forbidden");
    // Other spellings of loopback are normalized first.
    for host in ["2130706433", "0x7f.1", "[::ffff:127.0.0.1]", "local.test"] {
        let got = exchange(
            &proxy,
            format!("CONNECT {host}:{port} HTTP/1.1\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(status(&got), "HTTP/1.1 403 Forbidden", "{host}");
        let got = exchange(
            &proxy,
            format!("GET http://{host}:{port}/x HTTP/1.1\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(status(&got), "HTTP/1.1 403 Forbidden", "{host}");
    }
    assert_eq!(proxy.blocked(), 9);
    assert_eq!(*hits.lock().unwrap(), 0);
}

#[tokio::test]
async fn names_resolving_to_refused_addresses_are_refused() {
    // Even with private networks open, link-local (cloud metadata) stays shut.
    for (policy, host) in [
        (UrlPolicy::default(), "internal.test"),
        (open_policy(&[]), "metadata.test"),
    ] {
        let proxy = proxy(policy).await;
        let got = exchange(
            &proxy,
            format!("CONNECT {host}:443 HTTP/1.1\r\n\r\n").as_bytes(),
        )
        .await;
        assert_eq!(status(&got), "HTTP/1.1 403 Forbidden", "{host}");
        let got = exchange(
            &proxy,
            format!("GET http://{host}/latest/meta-data/ HTTP/1.1\r\nHost: {host}\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert_eq!(status(&got), "HTTP/1.1 403 Forbidden", "{host}");
        assert_eq!(proxy.blocked(), 2);
    }
    let proxy = proxy(open_policy(&[])).await;
    let got = exchange(
        &proxy,
        b"GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\n\r\n",
    )
    .await;
    assert_eq!(status(&got), "HTTP/1.1 403 Forbidden");
}

#[tokio::test]
async fn ports_must_be_allowed_and_names_must_resolve() {
    let port = echo_server();
    let proxy = proxy(open_policy(&[])).await;
    let got = exchange(
        &proxy,
        format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status(&got), "HTTP/1.1 403 Forbidden");
    let got = exchange(&proxy, b"CONNECT nowhere.test:443 HTTP/1.1\r\n\r\n").await;
    assert_eq!(status(&got), "HTTP/1.1 502 Bad Gateway");
    let got = exchange(&proxy, b"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status(&got), "HTTP/1.1 400 Bad Request");
    let got = exchange(&proxy, b"GET https://example.com/ HTTP/1.1\r\n\r\n").await;
    assert_eq!(status(&got), "HTTP/1.1 400 Bad Request");
    let mut huge = b"GET http://example.com/ HTTP/1.1\r\n".to_vec();
    huge.extend(std::iter::repeat_n(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 1000).flatten());
    huge.extend_from_slice(b"\r\n");
    let got = exchange(&proxy, &huge).await;
    assert_eq!(status(&got), "HTTP/1.1 431 Request Header Fields Too Large");
    assert_eq!(proxy.blocked(), 1, "only policy refusals count as blocked");
}

#[tokio::test]
async fn an_absolute_form_request_is_forwarded_in_origin_form() {
    let (port, heads) = http_server();
    let proxy = proxy(open_policy(&[port])).await;
    let request = format!(
        "GET http://local.test:{port}/media/a.wav?x=1 HTTP/1.1\r\nHost: local.test:{port}\r\n\
         Proxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n\
         Connection: keep-alive\r\nUser-Agent: test\r\n\r\n"
    );
    let got = exchange(&proxy, request.as_bytes()).await;
    assert_eq!(status(&got), "HTTP/1.1 200 OK");
    let split = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    assert!(got[split..] == body()[..], "the body arrives intact");
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1);
    let head = heads[0].to_ascii_lowercase();
    assert!(
        head.starts_with("get /media/a.wav?x=1 http/1.1\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("host: local.test:{port}\r\n")),
        "{head}"
    );
    assert!(head.contains("user-agent: test\r\n"), "{head}");
    assert!(head.contains("connection: close\r\n"), "{head}");
    assert!(
        !head.contains("proxy-") && !head.contains("keep-alive"),
        "{head}"
    );
    assert_eq!(proxy.blocked(), 0);
}

#[tokio::test]
async fn a_connect_tunnel_carries_bytes_both_ways() {
    let port = echo_server();
    let proxy = proxy(open_policy(&[port])).await;
    let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    stream
        .write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let established = b"HTTP/1.1 200 Connection established\r\n\r\n";
    let mut head = vec![0u8; established.len()];
    stream.read_exact(&mut head).await.unwrap();
    assert_eq!(head, established);
    let payload = body();
    let (mut read, mut write) = stream.into_split();
    let sent = payload.clone();
    let writer = tokio::spawn(async move {
        write.write_all(&sent).await.unwrap();
        write.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), read.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert!(back == payload, "echoed intact ({} bytes)", back.len());
}

#[tokio::test]
async fn dropping_the_proxy_stops_it() {
    let port = echo_server();
    let proxy = proxy(open_policy(&[port])).await;
    let addr = proxy.local_addr();
    let mut tunnel = TcpStream::connect(addr).await.unwrap();
    tunnel
        .write_all(format!("CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 39];
    tunnel.read_exact(&mut head).await.unwrap();
    drop(proxy);
    tokio::task::yield_now().await;
    // The open tunnel ends and no new connection is accepted.
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), tunnel.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "the tunnel is closed");
    assert!(TcpStream::connect(addr).await.is_err());
}

/// Refusals are `security` events naming host, port and reason, never the path or query.
#[tokio::test]
async fn refusals_are_logged_without_the_query() {
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);
    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let proxy = proxy(UrlPolicy::default()).await;
    let got = exchange(
        &proxy,
        b"GET http://internal.test/a.wav?token=sekrit HTTP/1.1\r\n\r\n",
    )
    .await;
    assert_eq!(status(&got), "HTTP/1.1 403 Forbidden");
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("security"), "{log}");
    assert!(log.contains("blocked_url"), "{log}");
    assert!(
        log.contains("internal.test") && log.contains("private"),
        "{log}"
    );
    assert!(!log.contains("sekrit") && !log.contains("a.wav"), "{log}");
}

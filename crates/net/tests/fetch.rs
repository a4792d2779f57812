//! The outbound client against a local HTTP server on 127.0.0.1 (reached only through the
//! `allow_private_networks` switch, and refused without it).

use audiomill_net::{
    FetchError, FetchLimits, Fetcher, OutboundUrl, Resolve, ResolveRefused, UrlPolicy, UrlRefused,
};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A body of `n` bytes.
fn body(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

/// A server whose answer depends on the path; returns its port and the paths it saw.
fn server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let log = log.clone();
            std::thread::spawn(move || answer(stream, port, &log));
        }
    });
    (port, seen)
}

fn answer(mut stream: TcpStream, port: u16, log: &Mutex<Vec<String>>) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
    log.lock().unwrap().push(path.clone());
    let head = |status: &str, extra: &str| {
        format!("HTTP/1.1 {status}\r\n{extra}Connection: close\r\n\r\n")
    };
    let _ = match path.as_str() {
        "/with-length" => {
            let b = body(100_000);
            stream
                .write_all(
                    head(
                        "200 OK",
                        &format!("Content-Length: {}\r\nContent-Type: audio/wav\r\n", b.len()),
                    )
                    .as_bytes(),
                )
                .and_then(|_| stream.write_all(&b))
        }
        "/no-length" => stream
            .write_all(head("200 OK", "").as_bytes())
            .and_then(|_| stream.write_all(&body(70_000))),
        "/big" => stream
            .write_all(head("200 OK", "").as_bytes())
            .and_then(|_| stream.write_all(&body(3_000_000))),
        "/big-declared" => {
            stream.write_all(head("200 OK", "Content-Length: 50000000\r\n").as_bytes())
        }
        "/slow" => {
            let _ = stream.write_all(head("200 OK", "").as_bytes());
            for _ in 0..50 {
                if stream.write_all(b"x").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(())
        }
        "/to-metadata" => stream.write_all(
            head(
                "302 Found",
                "Location: http://169.254.169.254/latest/meta-data/\r\nContent-Length: 0\r\n",
            )
            .as_bytes(),
        ),
        "/to-file" => stream.write_all(
            head(
                "302 Found",
                "Location: file:///etc/passwd\r\nContent-Length: 0\r\n",
            )
            .as_bytes(),
        ),
        "/loop" => stream
            .write_all(head("302 Found", "Location: /loop\r\nContent-Length: 0\r\n").as_bytes()),
        "/to-ok" => stream.write_all(
            head(
                "302 Found",
                &format!("Location: http://127.0.0.1:{port}/with-length\r\nContent-Length: 0\r\n"),
            )
            .as_bytes(),
        ),
        _ => stream.write_all(head("404 Not Found", "Content-Length: 0\r\n").as_bytes()),
    };
}

fn local_policy(port: u16) -> UrlPolicy {
    UrlPolicy {
        extra_ports: vec![port],
        allow_private_networks: true,
    }
}

fn limits() -> FetchLimits {
    FetchLimits {
        max_bytes: 1_000_000,
        total: Duration::from_secs(2),
        idle: Duration::from_millis(1500),
        max_redirects: 3,
    }
}

async fn fetch(
    policy: &UrlPolicy,
    url: &str,
) -> (Result<audiomill_net::Fetched, FetchError>, bool) {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("download");
    let fetcher = Fetcher::new(policy.clone(), limits()).unwrap();
    let url = OutboundUrl::parse(url, policy).unwrap();
    let result = fetcher.fetch_to_file(&url, &dest).await;
    (result, dest.exists())
}

#[tokio::test]
async fn direct_links_with_and_without_a_length() {
    let (port, _) = server();
    let policy = local_policy(port);
    let (got, exists) = fetch(&policy, &format!("http://127.0.0.1:{port}/with-length")).await;
    let got = got.unwrap();
    assert!(exists);
    assert_eq!(got.bytes, 100_000);
    assert_eq!(got.content_type.as_deref(), Some("audio/wav"));
    let (got, _) = fetch(&policy, &format!("http://127.0.0.1:{port}/no-length")).await;
    assert_eq!(got.unwrap().bytes, 70_000);
    let (got, _) = fetch(&policy, &format!("http://127.0.0.1:{port}/to-ok")).await;
    let got = got.unwrap();
    assert!(got.final_url.ends_with("/with-length"), "{}", got.final_url);
}

#[tokio::test]
async fn the_same_local_url_is_refused_without_the_switch() {
    let (port, seen) = server();
    let url = format!("http://127.0.0.1:{port}/with-length");
    let closed = UrlPolicy {
        extra_ports: vec![port],
        allow_private_networks: false,
    };
    assert_eq!(
        OutboundUrl::parse(&url, &closed).err(),
        Some(UrlRefused::Address("loopback"))
    );
    // A name that resolves to loopback is refused by the resolver before any connection.
    let fetcher = Fetcher::new(closed.clone(), limits()).unwrap();
    let by_name = OutboundUrl::parse(
        &format!("http://localhost:{port}/x"),
        &UrlPolicy {
            extra_ports: vec![port],
            allow_private_networks: true,
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = fetcher
        .fetch_to_file(&by_name, &dir.path().join("d"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Resolve(ResolveRefused::Address("loopback"))
        ),
        "{err:?}"
    );
    assert!(seen.lock().unwrap().is_empty(), "the server was contacted");
}

#[tokio::test]
async fn caps_on_bytes_and_time_leave_nothing_behind() {
    let (port, _) = server();
    let policy = local_policy(port);
    let (got, exists) = fetch(&policy, &format!("http://127.0.0.1:{port}/big")).await;
    assert!(
        matches!(got, Err(FetchError::TooLarge { limit: 1_000_000 })),
        "{got:?}"
    );
    assert!(!exists, "a partial download was left");
    let (got, exists) = fetch(&policy, &format!("http://127.0.0.1:{port}/big-declared")).await;
    assert!(matches!(got, Err(FetchError::TooLarge { .. })), "{got:?}");
    assert!(!exists);
    // One byte every 100 ms never trips the idle limit, but the total limit (2 s) stops it.
    let started = std::time::Instant::now();
    let (got, exists) = fetch(&policy, &format!("http://127.0.0.1:{port}/slow")).await;
    assert!(matches!(got, Err(FetchError::Timeout)), "{got:?}");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(!exists);
    let (got, _) = fetch(&policy, &format!("http://127.0.0.1:{port}/missing")).await;
    assert!(matches!(got, Err(FetchError::Status(404))), "{got:?}");
}

#[tokio::test]
async fn every_redirect_hop_is_checked() {
    let (port, seen) = server();
    let policy = local_policy(port);
    let (got, exists) = fetch(&policy, &format!("http://127.0.0.1:{port}/to-metadata")).await;
    assert!(
        matches!(
            got,
            Err(FetchError::Refused(UrlRefused::Address("link-local")))
        ),
        "{got:?}"
    );
    assert!(!exists);
    let (got, _) = fetch(&policy, &format!("http://127.0.0.1:{port}/to-file")).await;
    // reqwest follows only http(s) redirects: the 302 itself is the answer, and it fails.
    assert!(matches!(got, Err(FetchError::Status(302))), "{got:?}");
    let (got, _) = fetch(&policy, &format!("http://127.0.0.1:{port}/loop")).await;
    assert!(matches!(got, Err(FetchError::TooManyRedirects)), "{got:?}");
    let loops = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|p| *p == "/loop")
        .count();
    assert_eq!(loops, 4, "the first request and 3 redirects");
}

/// Names resolve through our resolver: a stub maps `audio.test` to the local server.
struct Stub(IpAddr);

impl Resolve for Stub {
    fn lookup(&self, host: &str) -> std::io::Result<Vec<IpAddr>> {
        match host {
            "audio.test" => Ok(vec![self.0]),
            "metadata.test" => Ok(vec!["169.254.169.254".parse().unwrap()]),
            _ => Err(std::io::Error::other("NXDOMAIN")),
        }
    }
}

#[tokio::test]
async fn names_resolve_through_the_checked_resolver() {
    let (port, _) = server();
    let policy = local_policy(port);
    let stub = Arc::new(Stub("127.0.0.1".parse().unwrap()));
    let fetcher = Fetcher::with_resolver(policy.clone(), limits(), stub.clone()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url =
        OutboundUrl::parse(&format!("http://audio.test:{port}/with-length"), &policy).unwrap();
    let got = fetcher
        .fetch_to_file(&url, &dir.path().join("a"))
        .await
        .unwrap();
    assert_eq!(got.bytes, 100_000);
    let url = OutboundUrl::parse(&format!("http://metadata.test:{port}/"), &policy).unwrap();
    let err = fetcher
        .fetch_to_file(&url, &dir.path().join("b"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::Resolve(ResolveRefused::Address("link-local"))
        ),
        "{err:?}"
    );
    let url = OutboundUrl::parse(&format!("http://nowhere.test:{port}/"), &policy).unwrap();
    let err = fetcher
        .fetch_to_file(&url, &dir.path().join("c"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::Resolve(ResolveRefused::NoAddress)),
        "{err:?}"
    );
}

//! Rate limits: per key, with the `RateLimit-*` headers, a `429` problem and a security event;
//! health checks never limited.

use crate::support::{assert_problem, create_key, Options, TestServer};
use std::time::{Duration, Instant};

fn header(r: &reqwest::Response, name: &str) -> u64 {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number"))
}

#[tokio::test]
async fn a_key_over_its_limit_gets_429_and_others_and_health_checks_do_not() {
    let server = TestServer::start_with(
        Options::default().env("AUDIOMILL_HTTP_RATE_LIMIT_PER_MINUTE", "10"),
    )
    .await;
    // The bucket holds 10 and regains one every 6 s: about 10 requests pass at once.
    let mut allowed = 0;
    let refused = loop {
        let r = server.get("/v1/jobs").send().await.unwrap();
        assert_eq!(header(&r, "ratelimit-limit"), 10);
        if r.status() == 429 {
            break r;
        }
        assert_eq!(r.status(), 200);
        allowed += 1;
        assert!(header(&r, "ratelimit-remaining") < 10);
        assert!(header(&r, "ratelimit-reset") <= 60);
        assert!(allowed <= 12, "no 429 after {allowed} requests");
    };
    assert!(allowed >= 10, "only {allowed} requests passed");
    assert_eq!(header(&refused, "ratelimit-remaining"), 0);
    let retry_after = header(&refused, "retry-after");
    assert!((1..=6).contains(&retry_after), "Retry-After {retry_after}");
    assert!(header(&refused, "ratelimit-reset") >= retry_after);
    let request_id = refused.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_problem(refused, 429, "rate_limited").await;
    // A refused upload is answered too: its body is read, not left to break the pipe.
    let r = server
        .post("/v1/uploads")
        .body(vec![0u8; 1 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["connection"], "close");
    assert_problem(r, 429, "rate_limited").await;

    // Health checks are never limited, with or without the spent key, and carry no headers.
    for _ in 0..30 {
        let r = server
            .http
            .get(server.url("/healthz"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(!r.headers().contains_key("ratelimit-limit"));
    }
    let r = server.get("/healthz").send().await.unwrap();
    assert_eq!(r.status(), 200);

    // Another key has its own budget; a job submission costs 5.
    let other = create_key(&server.data_dir, "other", None);
    let r = server
        .http
        .get(server.url("/v1/jobs"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "ratelimit-remaining"), 9);
    let r = server
        .http
        .post(server.url("/v1/jobs"))
        .header("x-api-key", &other)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 429);
    assert_eq!(header(&r, "ratelimit-remaining"), 4);

    // The refusal is a security event, logged with the client and the request id.
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let found = server.logs().into_iter().find(|l| {
            l.contains("\"target\":\"security\"") && l.contains("\"event\":\"rate_limited\"")
        });
        if let Some(line) = found {
            break line;
        }
        assert!(
            Instant::now() < deadline,
            "no rate_limited security log line"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(line.contains(&request_id), "{line}");
    assert!(line.contains("127.0.0.1"), "{line}");
    assert!(
        !line.contains(&server.key),
        "the key is never logged: {line}"
    );
    let metrics = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("audiomill_security_events_total{event=\"rate_limited\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn guessing_keys_from_one_address_is_stopped() {
    let server = TestServer::start_with(
        Options::default().env("AUDIOMILL_HTTP_AUTH_FAILURES_PER_MINUTE", "5"),
    )
    .await;
    let mut statuses = Vec::new();
    for _ in 0..8 {
        // A fresh made-up key each time: each has a rate budget of its own.
        let guess = audiomill_core::key::ApiKey::generate().expose().to_owned();
        let r = server
            .http
            .get(server.url("/v1/jobs"))
            .bearer_auth(&guess)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 401, 401, 429, 429, 429]);
    // The address is held back for a while, whatever key it presents; health checks still pass.
    let r = server.get("/v1/jobs").send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let r = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

//! Operability: health, readiness, metrics, OpenAPI, docs, headers, error bodies.

use crate::support::audio::{sine, wav};
use crate::support::{assert_problem, TestServer};
use serde_json::json;

#[tokio::test]
async fn readiness_and_metrics() {
    let server = TestServer::start().await;
    let ready: serde_json::Value = server
        .http
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["database"], "ok");
    assert_eq!(ready["storage"], "ok");
    assert!(ready["disk_free_bytes"].as_u64().unwrap() > 0);

    let upload = server
        .upload(wav(8_000, 1, &sine(8_000, 1, 1.0, 440.0, 0.5), false))
        .await;
    let job = server
        .submit(json!({"operation": "analyze", "input": {"upload": upload["id"]}}))
        .await;
    server.finish(job["id"].as_str().unwrap()).await;
    let _ = server
        .http
        .get(server.url("/v1/jobs"))
        .send()
        .await
        .unwrap();
    let text = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "audiomill_http_requests_total{method=\"POST\",route=\"/v1/uploads\",status=\"201\"} 1",
        "audiomill_http_requests_total{method=\"GET\",route=\"/v1/jobs\",status=\"401\"} 1",
        "audiomill_job_duration_seconds_count{operation=\"analyze\",outcome=\"succeeded\"} 1",
        "audiomill_audio_seconds_processed_total{operation=\"analyze\"} 1",
        "audiomill_queue_depth 0",
        "audiomill_workers_busy",
        "audiomill_security_events_total{event=\"auth_failed\"} 1",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
}

#[tokio::test]
async fn readiness_fails_when_the_disk_is_full() {
    let server = TestServer::start_with(
        crate::support::Options::default().env("AUDIOMILL_HTTP_MIN_FREE_DISK_MB", "999999999"),
    )
    .await;
    let r = server.http.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["disk"], "low");
}

#[tokio::test]
async fn openapi_matches_the_committed_snapshot() {
    let server = TestServer::start().await;
    let served: serde_json::Value = server
        .http
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json");
    let pretty = serde_json::to_string_pretty(&served).unwrap() + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &pretty).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == pretty, "docs/openapi.json is stale: run `UPDATE_SNAPSHOTS=1 cargo test -p audiomill --test tests openapi` and review the diff");
    for path in [
        "/v1/uploads",
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/events",
        "/v1/files/{id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            served["paths"][path].is_object(),
            "{path} missing from the spec"
        );
    }
}

#[tokio::test]
async fn every_response_has_an_id_and_security_headers_and_errors_are_problems() {
    let server = TestServer::start().await;
    let r = server.get("/v1/nothing-here").send().await.unwrap();
    for header in [
        "x-request-id",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
        "content-security-policy",
    ] {
        assert!(r.headers().contains_key(header), "{header}");
    }
    assert_problem(r, 404, "not_found").await;
    let r = server
        .http
        .patch(server.url("/v1/jobs"))
        .bearer_auth(&server.key)
        .send()
        .await
        .unwrap();
    assert_problem(r, 405, "method_not_allowed").await;
    // A client's own request id is echoed back when it is plain.
    let r = server
        .get("/v1/jobs")
        .header("x-request-id", "client-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "client-123");
    let r = server
        .get("/v1/jobs")
        .header("x-request-id", "bad id\twith junk")
        .send()
        .await
        .unwrap();
    assert!(r.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    // Unknown hosts are refused; no CORS headers without configured origins.
    let r = server
        .http
        .get(server.url("/healthz"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_problem(r, 400, "bad_request").await;
    let r = server
        .get("/v1/jobs")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!r.headers().contains_key("access-control-allow-origin"));
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let server = TestServer::start_with(
        crate::support::Options::default()
            .env("AUDIOMILL_HTTP_CORS_ORIGINS", "https://app.example"),
    )
    .await;
    let preflight = |origin: &'static str| {
        server
            .http
            .request(reqwest::Method::OPTIONS, server.url("/v1/jobs"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let ok = preflight("https://app.example").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert!(!ok
        .headers()
        .contains_key("access-control-allow-credentials"));
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(!refused
        .headers()
        .contains_key("access-control-allow-origin"));
}

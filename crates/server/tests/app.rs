//! The server in-process: `build_router` over a temp SQLite store, a local blob store and
//! stand-ins for the prober and the model registry (a `TestApp`). Auth, rate limits,
//! problems and submission are tested here in milliseconds; what crosses processes (the
//! worker, the job child, the CLI) is the end-to-end suite's.

use async_trait::async_trait;
use audiomill_blob::LocalBlobStore;
use audiomill_core::{ErrorCode, JobError, Limits, MediaInfo, ModelName, Scope};
use audiomill_server::service::admin;
use audiomill_server::{
    build_router, AppState, HttpMetrics, InstalledModel, ModelLookupError, ModelRegistry,
    ModelSummary, Prober, ServerConfig,
};
use audiomill_store::{FileStore, JobStore, SqliteStore};
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

/// Says every file is two seconds of stereo WAV, unless it starts with `not audio`.
struct StandInProber;

#[async_trait]
impl Prober for StandInProber {
    async fn probe(&self, path: &Path, _limits: &Limits) -> Result<MediaInfo, JobError> {
        let bytes = std::fs::read(path).unwrap_or_default();
        if bytes.starts_with(b"not audio") {
            return Err(JobError::new(
                ErrorCode::UnsupportedFormat,
                "this is not audio",
            ));
        }
        Ok(MediaInfo {
            container: "wav".into(),
            codec: "pcm_s16le".into(),
            duration_secs: Some(2.0),
            sample_rate: 44_100,
            channels: 2,
            bit_rate: None,
        })
    }
}

/// One installed model, `tiny`, with four stems.
struct StandInModels;

#[async_trait]
impl ModelRegistry for StandInModels {
    async fn list(&self) -> Result<Vec<ModelSummary>, String> {
        Ok(vec![])
    }
    async fn lookup(&self, name: &ModelName) -> Result<InstalledModel, ModelLookupError> {
        match name.as_str() {
            "tiny" => Ok(InstalledModel {
                stems: ["drums", "bass", "other", "vocals"]
                    .map(String::from)
                    .to_vec(),
                max_segment_secs: 1.2,
            }),
            other => Err(ModelLookupError::NotInstalled {
                name: other.into(),
                install_command: format!("audiomill models pull {other}"),
            }),
        }
    }
}

struct TestApp {
    router: Router,
    store: Arc<SqliteStore>,
    /// A key with `jobs:read` and `jobs:write`.
    key: String,
    _dir: tempfile::TempDir,
}

/// A response, read whole.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Asserts a problem+json answer of `status` and `kind`; returns its body.
    fn problem(&self, status: u16, kind: &str) -> Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.json());
        let content_type = self.headers["content-type"].to_str().unwrap();
        assert!(
            content_type.starts_with("application/problem+json"),
            "{content_type}"
        );
        let body = self.json();
        assert_eq!(body["type"], kind, "{body}");
        assert_eq!(body["status"], status);
        assert_eq!(
            body["request_id"],
            self.headers["x-request-id"].to_str().unwrap()
        );
        body
    }
}

impl TestApp {
    async fn new() -> Self {
        Self::with(|_| {}).await
    }

    async fn with(configure: impl FnOnce(&mut ServerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(&dir.path().join("db.sqlite"))
                .await
                .unwrap(),
        );
        let blob = LocalBlobStore::open(dir.path().join("files")).unwrap();
        let mut config = ServerConfig::for_data_dir(dir.path(), &blob.temp_dir());
        config.rate_limit_per_minute = 100_000;
        config.rate_limit_anonymous_per_minute = 100_000;
        config.auth_failures_per_minute = 100_000;
        config.min_free_disk_bytes = 0;
        configure(&mut config);
        let state = AppState::new(
            store.clone(),
            Arc::new(blob),
            Arc::new(StandInProber),
            config,
            HttpMetrics::default(),
            Arc::new(prometheus_client::registry::Registry::default()),
            Arc::new(tokio::sync::Notify::new()),
        )
        .with_models(Arc::new(StandInModels));
        let key = Self::make_key(&store, "app", &[Scope::JobsRead, Scope::JobsWrite]).await;
        TestApp {
            router: build_router(state),
            store,
            key,
            _dir: dir,
        }
    }

    async fn make_key(store: &SqliteStore, name: &str, scopes: &[Scope]) -> String {
        let made = admin::create_key(store, name, "acme", scopes.to_vec(), true)
            .await
            .unwrap();
        made.key.expose().to_owned()
    }

    /// A request from 127.0.0.1 (as the TCP listener would say), for a loopback host.
    fn request(method: Method, path: &str) -> axum::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .extension(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))))
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn call(&self, method: Method, path: &str, key: Option<&str>, body: Body) -> Answer {
        let mut request = Self::request(method, path);
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        self.send(request.body(body).unwrap()).await
    }

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, Some(&self.key), Body::empty())
            .await
    }

    async fn post_json(&self, path: &str, body: &Value) -> Answer {
        let request = Self::request(Method::POST, path)
            .header("authorization", format!("Bearer {}", self.key))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(request).await
    }

    async fn upload(&self) -> String {
        let answer = self
            .call(
                Method::POST,
                "/v1/uploads",
                Some(&self.key),
                Body::from("RIFF…"),
            )
            .await;
        assert_eq!(answer.status, 201, "{}", answer.json());
        answer.json()["id"].as_str().unwrap().to_owned()
    }

    async fn job_count(&self) -> usize {
        let account = self.store.account_by_name_for_tests().await;
        self.store
            .list_jobs(
                account,
                audiomill_store::JobFilter::default(),
                audiomill_store::Page {
                    limit: 1000,
                    before: None,
                },
            )
            .await
            .unwrap()
            .len()
    }
}

/// The test account's id.
trait AccountOf {
    async fn account_by_name_for_tests(&self) -> audiomill_core::AccountId;
}

impl AccountOf for SqliteStore {
    async fn account_by_name_for_tests(&self) -> audiomill_core::AccountId {
        use audiomill_store::AccountStore;
        self.account_by_name("acme").await.unwrap().unwrap().id
    }
}

/// A multipart body with the given parts (name, file name, bytes).
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "test-boundary-7";
    let mut body = Vec::new();
    for (name, file, bytes) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let disposition = match file {
            Some(file) => format!("form-data; name=\"{name}\"; filename=\"{file}\""),
            None => format!("form-data; name=\"{name}\""),
        };
        body.extend_from_slice(format!("Content-Disposition: {disposition}\r\n\r\n").as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn every_failure_to_authenticate_is_the_same_401() {
    let app = TestApp::new().await;
    let malformed = "am_not-a-key";
    let unknown = "am_0123456789012345678901234567890123456789012abcdef";
    let mut details = Vec::new();
    for key in [None, Some(malformed), Some(unknown)] {
        let answer = app.call(Method::GET, "/v1/jobs", key, Body::empty()).await;
        let problem = answer.problem(401, "unauthorized");
        details.push(problem["detail"].clone());
        assert!(answer.headers.contains_key("www-authenticate"));
    }
    assert!(details.windows(2).all(|w| w[0] == w[1]), "{details:?}");
    // Revoked: the same answer.
    let old = TestApp::make_key(&app.store, "old", &[Scope::JobsRead]).await;
    let keys = admin::list_keys(app.store.as_ref()).await.unwrap();
    let id = keys.iter().find(|k| k.name == "old").unwrap().id;
    admin::revoke_key(app.store.as_ref(), id).await.unwrap();
    app.call(Method::GET, "/v1/jobs", Some(&old), Body::empty())
        .await
        .problem(401, "unauthorized");
    // Ops routes need no key.
    let health = app.call(Method::GET, "/healthz", None, Body::empty()).await;
    assert_eq!(health.status, 200);
}

#[tokio::test]
async fn scopes_decide_what_a_key_may_do() {
    let app = TestApp::new().await;
    let reader = TestApp::make_key(&app.store, "reader", &[Scope::JobsRead]).await;
    let answer = app
        .call(
            Method::POST,
            "/v1/uploads",
            Some(&reader),
            Body::from("RIFF"),
        )
        .await;
    let problem = answer.problem(403, "insufficient_scope");
    assert!(
        problem["detail"].as_str().unwrap().contains("jobs:write"),
        "{problem}"
    );
    assert_eq!(
        app.call(Method::GET, "/v1/jobs", Some(&reader), Body::empty())
            .await
            .status,
        200
    );
    app.get("/v1/admin/plans")
        .await
        .problem(403, "insufficient_scope");
    let admin_key = TestApp::make_key(&app.store, "ops", &[Scope::Admin]).await;
    let plans = app
        .call(
            Method::GET,
            "/v1/admin/plans",
            Some(&admin_key),
            Body::empty(),
        )
        .await;
    assert_eq!(plans.status, 200);
    assert_eq!(plans.json()[0]["name"], "default");
}

#[tokio::test]
async fn anything_that_goes_wrong_is_problem_json() {
    let app = TestApp::new().await;
    app.get("/v1/nowhere").await.problem(404, "not_found");
    app.get("/v1/jobs/job_nonsense")
        .await
        .problem(404, "not_found");
    app.get("/v1/jobs?limit=0")
        .await
        .problem(400, "bad_request");
    app.get("/v1/jobs?status=DROP%20TABLE")
        .await
        .problem(400, "bad_request");
    app.get("/v1/uploads?color=red")
        .await
        .problem(400, "bad_request");
    let wrong_method = app
        .call(Method::PATCH, "/v1/jobs", Some(&app.key), Body::empty())
        .await;
    assert_eq!(wrong_method.status, 405);
    assert!(wrong_method.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/problem+json"));
    // A host the server does not answer to.
    let request = Request::builder()
        .uri("/healthz")
        .header("host", "evil.example")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(request).await.status, 400);
}

#[tokio::test]
async fn rate_limits_answer_429_with_their_headers() {
    let app = TestApp::with(|c| c.rate_limit_per_minute = 3).await;
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let answer = app.get("/v1/jobs").await;
        statuses.push(answer.status.as_u16());
        assert_eq!(answer.headers["ratelimit-limit"], "3");
        if answer.status == 429 {
            let problem = answer.problem(429, "rate_limited");
            assert!(problem["detail"].as_str().unwrap().contains("retry"));
            assert!(answer.headers.contains_key("retry-after"));
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    // Health checks are free.
    assert_eq!(
        app.call(Method::GET, "/healthz", None, Body::empty())
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn a_json_job_is_accepted_once_and_replayed_by_its_idempotency_key() {
    let app = TestApp::new().await;
    let upload = app.upload().await;
    let spec = json!({"operation": "convert", "input": {"upload": upload},
                      "options": {"format": "mp3", "bitrate": 192}});
    let send = |key: &'static str, spec: Value| {
        let request = TestApp::request(Method::POST, "/v1/jobs")
            .header("authorization", format!("Bearer {}", app.key))
            .header("content-type", "application/json")
            .header("idempotency-key", key)
            .body(Body::from(spec.to_string()))
            .unwrap();
        app.send(request)
    };
    let first = send("k1", spec.clone()).await;
    assert_eq!(first.status, 202, "{}", first.json());
    let id = first.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(first.headers["location"], format!("/v1/jobs/{id}").as_str());
    // The same request, written differently (key order, whitespace, a default spelled out).
    let same = json!({"options": {"bitrate": 192, "format": "mp3"},
                      "input": {"upload": upload}, "operation": "convert", "output": {}});
    let replay = send("k1", same).await;
    assert_eq!(replay.status, 202);
    assert_eq!(replay.json()["id"], id.as_str());
    assert_eq!(replay.headers["idempotent-replayed"], "true");
    let other = json!({"operation": "convert", "input": {"upload": upload},
                       "options": {"format": "mp3", "bitrate": 320}});
    send("k1", other).await.problem(422, "idempotency_mismatch");
    assert_eq!(app.job_count().await, 1);
}

#[tokio::test]
async fn refused_submissions_say_why_and_queue_nothing() {
    let app = TestApp::new().await;
    let upload = app.upload().await;
    let cases = [
        (
            json!({"operation": "convert", "input": {"upload": upload},
                   "options": {"format": "mp3", "bitrate": "loud"}}),
            "invalid_job",
            "options.bitrate: expected a whole number",
        ),
        (
            json!({"operation": "convert", "input": {"upload": upload},
                   "options": {"format": "wav", "start": 2.0}}),
            "invalid_job",
            "past the end of the input",
        ),
        (
            json!({"operation": "convert", "options": {"format": "wav"}}),
            "invalid_job",
            "\"input\" is required",
        ),
        (
            json!({"operation": "separate", "input": {"upload": upload},
                   "options": {"model": "htdemucs"}}),
            "model_not_installed",
            "audiomill models pull htdemucs",
        ),
        (
            json!({"operation": "separate", "input": {"upload": upload},
                   "options": {"model": "tiny", "stems": ["guitar"]}}),
            "invalid_job",
            "no stem guitar",
        ),
        (
            json!({"operation": "analyze", "input": {"upload": "upl_01jd4k7v2m3q8r9s0t1v2w3x4y"}}),
            "input_not_found",
            "not found",
        ),
    ];
    for (spec, kind, says) in cases {
        let problem = app.post_json("/v1/jobs", &spec).await.problem(422, kind);
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{spec}: {detail}");
    }
    assert_eq!(app.job_count().await, 0);
}

#[tokio::test]
async fn bodies_over_their_cap_are_413_everywhere() {
    let app = TestApp::with(|c| c.max_json_bytes = 1024).await;
    let big = json!({"operation": "analyze", "input": {"upload": "upl_x"},
                     "output": {"name": "x".repeat(4096)}});
    app.post_json("/v1/jobs", &big)
        .await
        .problem(413, "payload_too_large");
    let admin_key = TestApp::make_key(&app.store, "ops", &[Scope::Admin]).await;
    let request = TestApp::request(Method::POST, "/v1/admin/accounts")
        .header("authorization", format!("Bearer {admin_key}"))
        .header("content-type", "application/json")
        .body(Body::from(json!({"name": "a".repeat(4096)}).to_string()))
        .unwrap();
    app.send(request).await.problem(413, "payload_too_large");
    // A multipart spec part over the cap, whatever comes after it.
    let spec = json!({"operation": "analyze", "output": {"name": "y".repeat(4096)}}).to_string();
    let (content_type, body) = multipart(&[
        ("spec", None, spec.as_bytes()),
        ("file", Some("a.wav"), b"RIFF"),
    ]);
    let request = TestApp::request(Method::POST, "/v1/jobs")
        .header("authorization", format!("Bearer {}", app.key))
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap();
    app.send(request).await.problem(413, "payload_too_large");
    let account = app.store.account_by_name_for_tests().await;
    let page = audiomill_store::Page {
        limit: 10,
        before: None,
    };
    assert!(app
        .store
        .list_uploads(account, page)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_multipart_job_stores_its_file_only_when_the_spec_is_good() {
    let app = TestApp::new().await;
    let account = app.store.account_by_name_for_tests().await;
    let page = audiomill_store::Page {
        limit: 10,
        before: None,
    };
    let submit = |spec: Value, file: &'static [u8]| {
        let (content_type, body) = multipart(&[
            ("file", Some("take one.wav"), file),
            ("spec", None, spec.to_string().as_bytes()),
        ]);
        let request = TestApp::request(Method::POST, "/v1/jobs")
            .header("authorization", format!("Bearer {}", app.key))
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap();
        app.send(request)
    };
    // The spec names an input: a form's input is its file.
    submit(
        json!({"operation": "analyze", "input": {"url": "https://example.com/a.mp3"}}),
        b"RIFF",
    )
    .await
    .problem(422, "invalid_job");
    submit(
        json!({"operation": "convert", "options": {"format": "aac"}}),
        b"RIFF",
    )
    .await
    .problem(422, "invalid_job");
    submit(json!({"operation": "analyze"}), b"not audio at all")
        .await
        .problem(415, "unsupported_media");
    assert!(app
        .store
        .list_uploads(account, page)
        .await
        .unwrap()
        .is_empty());
    let accepted = submit(json!({"operation": "analyze"}), b"RIFF").await;
    assert_eq!(accepted.status, 202, "{}", accepted.json());
    let uploads = app.store.list_uploads(account, page).await.unwrap();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].filename.as_deref(), Some("take one.wav"));
    assert_eq!(
        accepted.json()["input"]["upload"],
        uploads[0].id.to_string().as_str()
    );
}

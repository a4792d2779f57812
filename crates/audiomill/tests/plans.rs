//! Plans and quotas under concurrency: many simultaneous submissions against one account,
//! with the worker held back (`serve --no-worker`) so that nothing finishes while they race,
//! then a separate `audiomill worker` process settles them.

use crate::support::audio::{sine, wav};
use crate::support::{assert_problem, cli, Options, TestServer, BIN};
use serde_json::json;
use std::time::Duration;

/// Two seconds of audio: every job on it reserves 2 s.
fn two_seconds() -> Vec<u8> {
    wav(8_000, 1, &sine(8_000, 1, 2.0, 440.0, 0.5), false)
}

fn run_cli(server: &TestServer, args: &[&str]) -> String {
    let (status, stdout, stderr) = cli(args, &server.data_dir);
    assert!(status.success(), "{args:?}: {stderr}");
    stdout
}

/// A key of a new account on a new plan.
fn account_on_plan(server: &TestServer, plan: &str, plan_args: &[&str], scopes: &str) -> String {
    let mut args = vec!["plan", "create", plan];
    args.extend_from_slice(plan_args);
    run_cli(server, &args);
    run_cli(server, &["account", "create", plan, "--plan", plan]);
    let (status, stdout, stderr) = cli(
        &[
            "key",
            "create",
            "--name",
            plan,
            "--account",
            plan,
            "--scopes",
            scopes,
        ],
        &server.data_dir,
    );
    assert!(status.success(), "{stderr}");
    stdout.trim().to_owned()
}

/// Starts `audiomill worker` on the server's data directory; killed when dropped.
struct WorkerProcess(std::process::Child);

impl WorkerProcess {
    fn start(server: &TestServer) -> Self {
        let child = std::process::Command::new(BIN)
            .args(["worker", "--data-dir"])
            .arg(&server.data_dir)
            .env("AUDIOMILL_WORKER_CONCURRENCY", "2")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        Self(child)
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn upload_as(server: &TestServer, key: &str, bytes: Vec<u8>) -> String {
    let r = server
        .http
        .post(server.url("/v1/uploads"))
        .bearer_auth(key)
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Fires `specs` at once; returns (status, body) of each.
async fn burst(
    server: &TestServer,
    key: &str,
    specs: Vec<serde_json::Value>,
    idempotency_key: Option<&str>,
) -> Vec<(u16, serde_json::Value)> {
    let tasks: Vec<_> = specs
        .into_iter()
        .map(|spec| {
            let mut request = server
                .http
                .post(server.url("/v1/jobs"))
                .bearer_auth(key)
                .json(&spec);
            if let Some(k) = idempotency_key {
                request = request.header("idempotency-key", k);
            }
            tokio::spawn(async move {
                let r = request.send().await.unwrap();
                let status = r.status().as_u16();
                (status, r.json::<serde_json::Value>().await.unwrap())
            })
        })
        .collect();
    let mut out = Vec::new();
    for task in tasks {
        out.push(task.await.unwrap());
    }
    out
}

async fn usage(server: &TestServer, key: &str) -> serde_json::Value {
    server
        .http
        .get(server.url("/v1/usage"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_settled(server: &TestServer, key: &str) -> serde_json::Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let u = usage(server, key).await;
        if u["reserved_seconds"] == 0.0 && u["active_jobs"] == 0 {
            return u;
        }
        assert!(std::time::Instant::now() < deadline, "not settled: {u}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_quota_for_ten_jobs_accepts_exactly_ten_of_fifty_and_settles_exactly() {
    let server = TestServer::start_with(Options::default().arg("--no-worker")).await;
    let key = account_on_plan(
        &server,
        "ten",
        &[
            "--audio-seconds-per-month",
            "20",
            "--concurrent-jobs",
            "1000",
            "--requests-per-minute",
            "100000",
        ],
        "jobs:read,jobs:write",
    );
    let upload = upload_as(&server, &key, two_seconds()).await;
    // Two seconds of digital silence: accepted, but a job trimming its silence has nothing
    // left to write and fails when it runs.
    let silence = upload_as(&server, &key, wav(8_000, 1, &vec![0.0; 16_000], false)).await;
    // Two in five fail when they run: they are charged nothing.
    let specs: Vec<_> = (0..50)
        .map(|i| {
            if i % 5 == 0 {
                json!({"operation": "convert", "input": {"upload": silence},
                       "options": {"format": "wav", "trim_silence": {}}})
            } else {
                json!({"operation": "convert", "input": {"upload": upload},
                       "options": {"format": "wav", "start": 0.0}})
            }
        })
        .collect();
    let answers = burst(&server, &key, specs, None).await;
    let accepted: Vec<&serde_json::Value> = answers
        .iter()
        .filter(|(status, _)| *status == 202)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(accepted.len(), 10, "{answers:?}");
    for (status, body) in answers.iter().filter(|(s, _)| *s != 202) {
        assert_eq!(*status, 429, "{body}");
        assert_eq!(body["type"], "quota_exceeded", "{body}");
        assert!(
            body["detail"].as_str().unwrap().contains("resets at"),
            "{body}"
        );
    }
    let u = usage(&server, &key).await;
    assert_eq!(u["plan"], "ten");
    assert_eq!(u["used_seconds"], 0.0);
    assert_eq!(u["reserved_seconds"], 20.0, "{u}");
    assert_eq!(u["remaining_seconds"], 0.0);
    assert_eq!(u["active_jobs"], 10);

    let _worker = WorkerProcess::start(&server);
    let settled = wait_settled(&server, &key).await;
    let mut succeeded = 0;
    for job in &accepted {
        let done = server
            .http
            .get(server.url(&format!("/v1/jobs/{}", job["id"].as_str().unwrap())))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap();
        match done["status"].as_str() {
            Some("succeeded") => succeeded += 1,
            Some("failed") => {}
            other => panic!("unexpected {other:?}: {done}"),
        }
    }
    assert!(
        succeeded > 0 && succeeded < 10,
        "some fail, some succeed: {succeeded}"
    );
    assert_eq!(settled["used_seconds"], 2.0 * succeeded as f64, "{settled}");
    assert_eq!(settled["remaining_seconds"], 20.0 - 2.0 * succeeded as f64);
    assert_eq!(settled["by_operation"][0]["operation"], "convert");
    assert_eq!(settled["by_operation"][0]["jobs"], succeeded);
    assert!(server
        .logs()
        .iter()
        .any(|l| l.contains("\"security\"") && l.contains("quota_exceeded")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_job_limits_and_idempotent_retries_hold_under_a_burst() {
    let server = TestServer::start_with(Options::default().arg("--no-worker")).await;
    let key = account_on_plan(
        &server,
        "three",
        &[
            "--audio-seconds-per-month",
            "100000",
            "--concurrent-jobs",
            "3",
            "--requests-per-minute",
            "100000",
        ],
        "jobs:read,jobs:write",
    );
    let upload = upload_as(&server, &key, two_seconds()).await;
    let spec = json!({"operation": "analyze", "input": {"upload": upload}});

    // Fifty identical retries with one Idempotency-Key: one job, reserved once.
    let answers = burst(&server, &key, vec![spec.clone(); 50], Some("retry-1")).await;
    let ids: std::collections::HashSet<&str> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, 202, "{body}");
            body["id"].as_str().unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 1);
    let u = usage(&server, &key).await;
    assert_eq!(
        (u["reserved_seconds"].as_f64(), u["active_jobs"].as_u64()),
        (Some(2.0), Some(1))
    );

    // Fifty distinct submissions: two more slots.
    let answers = burst(&server, &key, vec![spec.clone(); 50], None).await;
    let accepted = answers.iter().filter(|(s, _)| *s == 202).count();
    assert_eq!(accepted, 2, "{answers:?}");
    let refused = answers.iter().find(|(s, _)| *s == 429).unwrap();
    assert_eq!(refused.1["type"], "too_many_jobs");
    let u = usage(&server, &key).await;
    assert_eq!(
        (u["reserved_seconds"].as_f64(), u["active_jobs"].as_u64()),
        (Some(6.0), Some(3))
    );

    // Once they run and end, the slots and the seconds come back.
    let _worker = WorkerProcess::start(&server);
    let settled = wait_settled(&server, &key).await;
    assert_eq!(settled["used_seconds"], 6.0, "{settled}");
    let r = server
        .http
        .post(server.url("/v1/jobs"))
        .bearer_auth(&key)
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
}

#[tokio::test]
async fn scopes_plans_and_rotation_are_enforced() {
    let server = TestServer::start().await;
    let upload = server.upload(two_seconds()).await;
    let spec = json!({"operation": "analyze", "input": {"upload": upload["id"]}});

    // A read-only key reads but cannot submit or upload.
    let reader = create_key_with(&server, "reader", "jobs:read");
    let r = server
        .http
        .post(server.url("/v1/jobs"))
        .bearer_auth(&reader)
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_problem(r, 403, "insufficient_scope").await;
    let r = server
        .http
        .post(server.url("/v1/uploads"))
        .bearer_auth(&reader)
        .body(two_seconds())
        .send()
        .await
        .unwrap();
    assert_problem(r, 403, "insufficient_scope").await;
    let r = server
        .http
        .get(server.url("/v1/usage"))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A plan without separation, and with short inputs only.
    let key = account_on_plan(
        &server,
        "basic",
        &[
            "--audio-seconds-per-month",
            "1000",
            "--concurrent-jobs",
            "5",
            "--requests-per-minute",
            "1000",
            "--max-input-seconds",
            "1",
            "--operations",
            "analyze,convert",
        ],
        "jobs:read,jobs:write",
    );
    // Inputs longer than the plan allows are refused at upload.
    let r = server
        .http
        .post(server.url("/v1/uploads"))
        .bearer_auth(&key)
        .body(two_seconds())
        .send()
        .await
        .unwrap();
    assert_problem(r, 422, "input_too_long").await;
    let short = wav(8_000, 1, &sine(8_000, 1, 0.5, 440.0, 0.5), false);
    let mine = upload_as(&server, &key, short).await;
    let r = server
        .http
        .post(server.url("/v1/jobs"))
        .bearer_auth(&key)
        .json(&json!({"operation": "separate", "input": {"upload": mine}}))
        .send()
        .await
        .unwrap();
    assert_problem(r, 403, "operation_not_allowed").await;
    assert_eq!(
        usage(&server, &key).await["reserved_seconds"],
        0.0,
        "refusals reserve nothing"
    );

    // Rotation: the new key works; the old one stops when its grace period ends.
    let list = run_cli(&server, &["key", "list"]);
    let reader_id = list
        .lines()
        .find(|l| l.ends_with(" reader"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let (status, stdout, stderr) = cli(
        &["key", "rotate", &reader_id, "--expire-old-in-hours", "0"],
        &server.data_dir,
    );
    assert!(status.success(), "{stderr}");
    let new_key = stdout.trim().to_owned();
    let get = |k: String| {
        let request = server.http.get(server.url("/v1/usage")).bearer_auth(k);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(get(new_key.clone()).await, 200);
    assert_eq!(get(reader.clone()).await, 401);
    let r = server
        .http
        .post(server.url("/v1/jobs"))
        .bearer_auth(&new_key)
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert_problem(r, 403, "insufficient_scope").await;
}

fn create_key_with(server: &TestServer, name: &str, scopes: &str) -> String {
    let (status, stdout, stderr) = cli(
        &[
            "key",
            "create",
            "--name",
            name,
            "--account",
            "test",
            "--scopes",
            scopes,
        ],
        &server.data_dir,
    );
    assert!(status.success(), "{stderr}");
    stdout.trim().to_owned()
}

#[tokio::test]
async fn the_admin_api_does_what_the_cli_does() {
    let server = TestServer::start().await;
    let admin = create_key_with(&server, "ops", "admin");
    let call = |method: reqwest::Method, path: &str, key: &str, body: Option<serde_json::Value>| {
        let mut request = server
            .http
            .request(method, server.url(path))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send()
    };
    // Ordinary keys are refused.
    let r = call(reqwest::Method::GET, "/v1/admin/plans", &server.key, None)
        .await
        .unwrap();
    assert_problem(r, 403, "insufficient_scope").await;

    let mut limits = serde_json::to_value(audiomill_core::PlanLimits::default()).unwrap();
    limits["audio_seconds_per_month"] = json!(600);
    limits["allowed_operations"] = json!(["analyze"]);
    let r = call(
        reqwest::Method::POST,
        "/v1/admin/plans",
        &admin,
        Some(json!({"name": "small", "limits": limits})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    // Invalid input is refused with a clear problem, and nothing is written.
    let r = call(
        reqwest::Method::POST,
        "/v1/admin/plans",
        &admin,
        Some(json!({"name": "Bad Name", "limits": limits})),
    )
    .await
    .unwrap();
    assert_problem(r, 422, "invalid_request").await;
    let r = call(
        reqwest::Method::POST,
        "/v1/admin/accounts",
        &admin,
        Some(json!({"name": "acme", "plan": "nope"})),
    )
    .await
    .unwrap();
    assert_problem(r, 404, "not_found").await;

    let r = call(
        reqwest::Method::POST,
        "/v1/admin/accounts",
        &admin,
        Some(json!({"name": "acme", "plan": "small"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let r = call(
        reqwest::Method::POST,
        "/v1/admin/keys",
        &admin,
        Some(json!({"name": "acme-app", "account": "acme"})),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let created: serde_json::Value = r.json().await.unwrap();
    let acme_key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(created["scopes"], json!(["jobs:read", "jobs:write"]));

    let u = usage(&server, &acme_key).await;
    assert_eq!(
        (u["plan"].as_str(), u["quota_seconds"].as_u64()),
        (Some("small"), Some(600))
    );
    // The CLI sees what the API made.
    let listed = run_cli(&server, &["account", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.contains("small") && l.ends_with("acme")),
        "{listed}"
    );

    // Plan changes apply at once; a key revoked by the API stops working.
    limits["audio_seconds_per_month"] = json!(1200);
    let r = call(
        reqwest::Method::PUT,
        "/v1/admin/plans/small",
        &admin,
        Some(limits.clone()),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(usage(&server, &acme_key).await["quota_seconds"], 1200);
    let id = created["id"].as_str().unwrap();
    let r = call(
        reqwest::Method::DELETE,
        &format!("/v1/admin/keys/{id}"),
        &admin,
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 204);
    let r = server
        .http
        .get(server.url("/v1/usage"))
        .bearer_auth(&acme_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn a_plans_requests_per_minute_limit_its_keys() {
    let server = TestServer::start().await;
    let key = account_on_plan(
        &server,
        "slow",
        &[
            "--audio-seconds-per-month",
            "100",
            "--concurrent-jobs",
            "1",
            "--requests-per-minute",
            "3",
        ],
        "jobs:read",
    );
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let r = server
            .http
            .get(server.url("/v1/usage"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert_eq!(r.headers()["ratelimit-limit"], "3");
            assert!(r.headers().contains_key("retry-after"));
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    // Another account's key is not affected.
    let r = server.get("/v1/usage").send().await.unwrap();
    assert_eq!(r.status(), 200);
}

//! Every way a request can fail to authenticate, and the routes that need no key.

use crate::support::{assert_problem, cli, create_key, TestServer};

#[tokio::test]
async fn every_auth_failure_is_a_uniform_401_logged_without_the_key() {
    let server = TestServer::start().await;
    let revoked = create_key(&server.data_dir, "old", None);
    let (_, list, _) = cli(&["key", "list"], &server.data_dir);
    let old_id = list
        .lines()
        .find(|l| l.trim_end().ends_with(" old"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let (status, _, _) = cli(&["key", "revoke", &old_id], &server.data_dir);
    assert!(status.success());
    assert!(cli(&["key", "list"], &server.data_dir)
        .1
        .contains("revoked"));

    let checksum_broken = {
        let mut k = server.key.clone().into_bytes();
        k[10] = if k[10] == b'a' { b'b' } else { b'a' };
        String::from_utf8(k).unwrap()
    };
    let unknown = audiomill_core::key::ApiKey::generate();
    let cases: Vec<(&str, Option<(&str, String)>)> = vec![
        ("missing", None),
        (
            "malformed",
            Some(("authorization", "Bearer not-a-key".to_owned())),
        ),
        (
            "malformed",
            Some(("authorization", format!("Basic {}", server.key))),
        ),
        ("malformed", Some(("x-api-key", checksum_broken.clone()))),
        (
            "unknown",
            Some(("authorization", format!("Bearer {}", unknown.expose()))),
        ),
        ("revoked", Some(("x-api-key", revoked.clone()))),
    ];
    for (reason, header) in &cases {
        let mut request = server.http.get(server.url("/v1/jobs"));
        if let Some((name, value)) = header {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"audiomill\"",
            "{reason}"
        );
        let body = assert_problem(response, 401, "unauthorized").await;
        assert!(
            !body.to_string().contains(&server.key[3..]),
            "the key is never echoed"
        );
    }
    // Both header forms work with a valid key.
    assert_eq!(server.get("/v1/jobs").send().await.unwrap().status(), 200);
    let r = server
        .http
        .get(server.url("/v1/jobs"))
        .header("x-api-key", &server.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let logs = server.logs();
    let security: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("\"target\":\"security\""))
        .collect();
    assert!(
        security.len() >= cases.len(),
        "security log lines: {security:?}"
    );
    for reason in ["missing", "malformed", "unknown", "revoked"] {
        assert!(
            security
                .iter()
                .any(|l| l.contains(&format!("\"reason\":\"{reason}\""))
                    && l.contains("\"client\":\"127.0.0.1\"")),
            "no {reason} line"
        );
    }
    for line in &logs {
        for secret in [
            &server.key,
            &revoked,
            &checksum_broken,
            &unknown.expose().to_owned(),
        ] {
            assert!(
                !line.contains(&secret[10..]),
                "a key leaked into the log: {line}"
            );
        }
    }
}

#[tokio::test]
async fn ops_routes_need_no_key() {
    let server = TestServer::start().await;
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"] {
        let r = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    for path in [
        "/v1/jobs",
        "/v1/uploads/upl_01jd4k7v2m3q8r9s0t1v2w3x4y",
        "/v1/files/art_01jd4k7v2m3q8r9s0t1v2w3x4y",
    ] {
        let r = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
}

#[tokio::test]
async fn first_start_without_keys_prints_the_command_to_create_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut child = std::process::Command::new(crate::support::BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut text = String::new();
    use std::io::BufRead;
    for line in std::io::BufReader::new(stderr)
        .lines()
        .map_while(Result::ok)
    {
        text.push_str(&line);
        text.push('\n');
        if line.contains("listening on") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let hint = format!(
        "audiomill key create --name admin --scopes jobs:read,jobs:write,admin --data-dir {}",
        data.display()
    );
    assert!(text.contains(&hint), "{text}");
    assert!(text.contains("administer"), "{text}");
    // The command, run as printed, makes a key that can administer and run jobs.
    let args: Vec<&str> = hint.split(' ').skip(1).collect();
    let out = std::process::Command::new(crate::support::BIN)
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let server = TestServer::spawn(data, key, Vec::new());
    let plans = server.get("/v1/admin/plans").send().await.unwrap();
    assert_eq!(plans.status(), 200);
    let jobs = server.get("/v1/jobs").send().await.unwrap();
    assert_eq!(jobs.status(), 200);
}

/// Median of `samples`, in microseconds.
fn median(mut samples: Vec<u128>) -> u128 {
    samples.sort_unstable();
    samples[samples.len() / 2]
}

#[tokio::test]
async fn failed_key_checks_take_the_same_time_whatever_the_key() {
    let server = TestServer::start().await;
    let revoked = create_key(&server.data_dir, "old", None);
    let list = cli(&["key", "list"], &server.data_dir).1;
    let revoked_id = list
        .lines()
        .find(|l| l.ends_with(" old"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    assert!(cli(&["key", "revoke", &revoked_id], &server.data_dir)
        .0
        .success());
    let unknown = audiomill_core::key::ApiKey::generate().expose().to_owned();
    // The valid key's first 20 characters, then junk: same prefix, bad checksum.
    let valid_prefix = format!("{}{}", &server.key[..20], "x".repeat(server.key.len() - 20));
    let candidates = [unknown, valid_prefix, revoked];
    let mut samples: Vec<Vec<u128>> = vec![Vec::new(); candidates.len()];
    // Interleaved, so that noise from the machine falls on every kind alike.
    for round in 0..300 {
        for (i, key) in candidates.iter().enumerate() {
            let started = std::time::Instant::now();
            let r = server
                .http
                .get(server.url("/v1/jobs"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
            let took = started.elapsed().as_micros();
            assert_eq!(r.status(), 401);
            if round >= 20 {
                samples[i].push(took);
            }
        }
    }
    let medians: Vec<u128> = samples.into_iter().map(median).collect();
    let (low, high) = (
        *medians.iter().min().unwrap(),
        *medians.iter().max().unwrap(),
    );
    // No kind of failure answers measurably faster than another: the medians agree within a
    // generous band (a lookup skipped for one kind would show as a large, stable gap).
    assert!(
        high <= low * 3 / 2 + 500,
        "medians (unknown, valid prefix, revoked) in µs: {medians:?}"
    );
}

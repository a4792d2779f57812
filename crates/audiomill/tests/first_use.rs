//! What a new user meets first: names, messages, listings and headers a client relies on.

use crate::support::audio::{db, sine, wav};
use crate::support::{assert_problem, TestServer};
use serde_json::json;

fn tone(secs: f64, channels: u16) -> Vec<u8> {
    wav(
        44_100,
        channels,
        &sine(44_100, channels, secs, 440.0, db(-12.0)),
        false,
    )
}

#[tokio::test]
async fn artifacts_are_named_after_the_input_unless_the_job_names_them() {
    let server = TestServer::start().await;
    // A multipart upload keeps its file name; a raw body may give one in the query.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(tone(1.0, 1)).file_name("Take 3 (final).wav"),
    );
    let r = server
        .post("/v1/uploads")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let from_form: serde_json::Value = r.json().await.unwrap();
    let r = server
        .post("/v1/uploads?filename=My%20Song.flac")
        .body(tone(1.0, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let from_query: serde_json::Value = r.json().await.unwrap();
    assert_eq!(from_query["filename"], "My Song.flac");
    let unnamed = server.upload(tone(1.0, 1)).await;

    let mut names = Vec::new();
    for (upload, output) in [
        (&from_form, None),
        (&from_query, None),
        (&unnamed, None),
        (&from_form, Some("chosen")),
    ] {
        let mut spec = json!({"operation": "convert", "input": {"upload": upload["id"]},
                              "options": {"format": "mp3"}});
        if let Some(name) = output {
            spec["output"] = json!({ "name": name });
        }
        let job = server.submit(spec).await;
        let done = server.finish(job["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        names.push(done["artifacts"][0]["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        names,
        [
            "Take 3 (final).mp3",
            "My Song.mp3",
            "output.mp3",
            "chosen.mp3"
        ]
    );

    // An artifact as input passes its name on.
    let first = server
        .submit(
            json!({"operation": "convert", "input": {"upload": from_query["id"]},
                       "options": {"format": "flac"}}),
        )
        .await;
    let first = server.finish(first["id"].as_str().unwrap()).await;
    let chained = server
        .submit(json!({"operation": "analyze",
                       "input": {"artifact": first["artifacts"][0]["id"]}}))
        .await;
    let chained = server.finish(chained["id"].as_str().unwrap()).await;
    assert_eq!(chained["artifacts"][0]["name"], "My Song.json", "{chained}");
}

#[tokio::test]
async fn error_details_read_as_sentences() {
    let server = TestServer::start().await;
    let upload = server.upload(tone(1.0, 2)).await;
    let id = upload["id"].as_str().unwrap();
    let cases = [
        (
            json!({"operation": "convert", "input": {"upload": id},
                   "options": {"format": "mp3", "bitrate": "320k"}}),
            "options.bitrate: expected a whole number, 0 or more, got the string \"320k\"",
        ),
        (
            json!({"operation": "convert", "input": {"upload": id},
                   "options": {"format": "wav", "normalize": true}}),
            "options.normalize: expected an object, got true",
        ),
        (
            json!({"operation": "analyze", "input": {"upload": id, "url": "https://example.com/a.mp3"}}),
            "input: an input is one upload, one artifact or one url, not upload and url together",
        ),
        (
            json!({"operation": "convert", "input": {"upload": id},
                   "options": {"format": "wav", "start": 1.0}}),
            "options.start: 1 s is at or past the end of the input, which lasts 1 s",
        ),
        (
            json!({"operation": "convert", "input": {"upload": id},
                   "options": {"format": "wav", "channel": 2}}),
            "options.channel: the input has 2 channels, numbered from 0; there is no channel 2",
        ),
    ];
    for (spec, detail) in cases {
        let r = server.post("/v1/jobs").json(&spec).send().await.unwrap();
        let problem = assert_problem(r, 422, "invalid_job").await;
        assert_eq!(problem["detail"], detail, "{spec}");
    }
    // Broken JSON: no parser positions.
    let r = server
        .post("/v1/jobs")
        .header("content-type", "application/json")
        .body(r#"{"operation": "analyze", "input": "#)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(r, 422, "invalid_job").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        !detail.contains("line") && !detail.contains("column"),
        "{detail}"
    );
    // Nothing was queued.
    let jobs = server.get_json("/v1/jobs").await;
    assert_eq!(jobs["jobs"], json!([]), "{jobs}");
    // A multipart job refused by what the probe knows keeps no upload.
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(tone(1.0, 1)))
        .part(
            "spec",
            reqwest::multipart::Part::text(
                json!({"operation": "convert", "options": {"format": "wav", "start": 5}})
                    .to_string(),
            ),
        );
    let r = server
        .post("/v1/jobs")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_problem(r, 422, "invalid_job").await;
    let uploads = server.get_json("/v1/uploads").await;
    assert_eq!(uploads["uploads"].as_array().unwrap().len(), 1, "{uploads}");
}

#[tokio::test]
async fn normalize_reports_the_loudness_reached_and_the_ceiling() {
    let server = TestServer::start().await;
    let upload = server.upload(tone(3.0, 2)).await;
    let run = |target: f64, ceiling: f64| {
        let spec = json!({"operation": "convert", "input": {"upload": upload["id"]},
                          "options": {"format": "wav",
                                      "normalize": {"target_lufs": target, "true_peak_dbtp": ceiling}}});
        let server = &server;
        async move {
            let job = server.submit(spec).await;
            let done = server.finish(job["id"].as_str().unwrap()).await;
            assert_eq!(done["status"], "succeeded", "{done}");
            done["result"]["normalization"].clone()
        }
    };
    // A sine peaking at -12 dBFS (about -12.7 LUFS): -23 LUFS is reachable under -1 dBTP;
    // -5 LUFS is not under a -9 dBTP ceiling, which stops the gain at +3 dB.
    let reached = run(-23.0, -1.0).await;
    assert_eq!(reached["limited_by_true_peak"], false, "{reached}");
    assert!(
        (reached["output_lufs"].as_f64().unwrap() + 23.0).abs() < 0.2,
        "{reached}"
    );
    let gain = reached["gain_db"].as_f64().unwrap();
    let input = reached["input_lufs"].as_f64().unwrap();
    assert!((input + gain + 23.0).abs() < 0.01, "{reached}");
    assert!(
        reached["summary"].as_str().unwrap().contains("LUFS"),
        "{reached}"
    );

    let limited = run(-5.0, -9.0).await;
    assert_eq!(limited["limited_by_true_peak"], true, "{limited}");
    assert!(limited["output_lufs"].as_f64().unwrap() < -9.0, "{limited}");
    assert!(
        limited["output_true_peak_dbtp"].as_f64().unwrap() <= -8.9,
        "{limited}"
    );
    let summary = limited["summary"].as_str().unwrap();
    assert!(
        summary.contains("ceiling") && summary.contains("-5.0 LUFS"),
        "{summary}"
    );
}

#[tokio::test]
async fn uploads_list_in_pages_and_delete_unless_a_job_reads_them() {
    let server =
        TestServer::start_with(crate::support::Options::default().arg("--no-worker")).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            server.upload(tone(0.5, 1)).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let page = server.get_json("/v1/uploads?limit=2").await;
    let listed: Vec<&str> = page["uploads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[2].as_str(), ids[1].as_str()], "newest first");
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = server
        .get_json(&format!("/v1/uploads?limit=2&cursor={cursor}"))
        .await;
    assert_eq!(rest["uploads"][0]["id"], ids[0].as_str());
    assert!(rest["next_cursor"].is_null(), "{rest}");
    for bad in ["limit=0", "cursor=job_x", "status=queued"] {
        let r = server
            .get(&format!("/v1/uploads?{bad}"))
            .send()
            .await
            .unwrap();
        assert_problem(r, 400, "bad_request").await;
    }

    // A queued job reads the first upload: it stays until the job ends.
    let job = server
        .submit(json!({"operation": "analyze", "input": {"upload": ids[0]}}))
        .await;
    let r = server
        .delete(&format!("/v1/uploads/{}", ids[0]))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(r, 409, "conflict").await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains(job["id"].as_str().unwrap()),
        "{problem}"
    );
    let stored = server.stored_files().len();
    let r = server
        .delete(&format!("/v1/uploads/{}", ids[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        server.stored_files().len(),
        stored - 1,
        "the bytes went too"
    );
    let r = server
        .get(&format!("/v1/uploads/{}", ids[1]))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not_found").await;
    let r = server
        .delete(&format!("/v1/uploads/{}", ids[1]))
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not_found").await;
    // Once the job is canceled, its upload can go.
    let r = server
        .delete(&format!("/v1/jobs/{}", job["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = server
        .delete(&format!("/v1/uploads/{}", ids[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // Another tenant's upload is not found.
    let other = crate::support::create_key(&server.data_dir, "other", None);
    let r = server
        .http
        .delete(server.url(&format!("/v1/uploads/{}", ids[2])))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_problem(r, 404, "not_found").await;
}

#[tokio::test]
async fn created_resources_carry_location_and_files_answer_conditional_requests() {
    let server = TestServer::start().await;
    let r = server
        .post("/v1/uploads")
        .body(tone(1.0, 1))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let upload: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/uploads/{}", upload["id"].as_str().unwrap())
    );
    assert_eq!(server.get_json(&location).await["id"], upload["id"]);

    let r = server
        .post("/v1/jobs")
        .json(
            &json!({"operation": "convert", "input": {"upload": upload["id"]},
                      "options": {"format": "flac"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let job: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/jobs/{}", job["id"].as_str().unwrap())
    );
    let done = server.finish(job["id"].as_str().unwrap()).await;
    let url = done["artifacts"][0]["url"].as_str().unwrap();

    let full = server.get(url).send().await.unwrap();
    assert_eq!(full.status(), 200);
    let etag = full.headers()["etag"].to_str().unwrap().to_owned();
    let modified = full.headers()["last-modified"].to_str().unwrap().to_owned();
    let size = full.bytes().await.unwrap().len();
    assert!(etag.starts_with("\"art_"), "{etag}");
    assert!(modified.ends_with(" GMT"), "{modified}");

    let get = |headers: Vec<(&'static str, String)>| {
        let mut request = server.get(url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let r = get(vec![("if-none-match", etag.clone())]).await.unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"], etag.as_str());
    assert!(r.bytes().await.unwrap().is_empty());
    let r = get(vec![("if-modified-since", modified.clone())])
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = get(vec![("if-none-match", "\"art_other\"".into())])
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = get(vec![("if-match", "\"art_other\"".into())])
        .await
        .unwrap();
    assert_problem(r, 412, "precondition_failed").await;
    // If-Range: the range only while the client's copy is this one.
    let r = get(vec![
        ("range", "bytes=0-3".into()),
        ("if-range", etag.clone()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"fLaC");
    let r = get(vec![
        ("range", "bytes=0-3".into()),
        ("if-range", "\"art_old\"".into()),
    ])
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().len(), size);
}

#[tokio::test]
async fn plans_say_how_long_files_are_kept_and_admin_creations_have_a_location() {
    let server = TestServer::start().await;
    let (status, stdout, stderr) = crate::support::cli(
        &[
            "key",
            "create",
            "--name",
            "ops",
            "--account",
            "test",
            "--scopes",
            "admin",
        ],
        &server.data_dir,
    );
    assert!(status.success(), "{stderr}");
    let admin = stdout.trim().to_owned();
    let post = |path: &str, body: serde_json::Value| {
        server
            .http
            .post(server.url(path))
            .bearer_auth(&admin)
            .json(&body)
            .send()
    };
    let mut limits = serde_json::to_value(audiomill_core::PlanLimits::default()).unwrap();
    // Longer than the server keeps anything: the server's retention applies.
    limits["retention_hours"] = json!(720);
    let r = post(
        "/v1/admin/plans",
        json!({"name": "archive", "limits": limits}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], "/v1/admin/plans/archive");
    let view: serde_json::Value = r.json().await.unwrap();
    assert_eq!(view["limits"]["retention_hours"], 720);
    assert_eq!(
        view["retention"],
        json!({"upload_hours": 24, "artifact_hours": 168}),
        "{view}"
    );
    // Shorter than the server's: the plan's applies to both.
    limits["retention_hours"] = json!(12);
    let r = post(
        "/v1/admin/plans",
        json!({"name": "brief", "limits": limits}),
    )
    .await
    .unwrap();
    let view: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        view["retention"],
        json!({"upload_hours": 12, "artifact_hours": 12})
    );

    let r = post(
        "/v1/admin/accounts",
        json!({"name": "Acme Corp", "plan": "brief"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], "/v1/admin/accounts/Acme%20Corp");
    let r = post(
        "/v1/admin/keys",
        json!({"name": "app", "account": "Acme Corp"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let key: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        location,
        format!("/v1/admin/keys/{}", key["id"].as_str().unwrap())
    );

    // The account sees what applies to it; an upload expires accordingly.
    let usage: serde_json::Value = server
        .http
        .get(server.url("/v1/usage"))
        .bearer_auth(key["key"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        usage["retention"],
        json!({"upload_hours": 12, "artifact_hours": 12})
    );

    // The CLI shows the same.
    let (_, listed, _) = crate::support::cli(&["plan", "list"], &server.data_dir);
    let line = |name: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert!(
        listed.contains("UPLOADS_H") && listed.contains("ARTIFACTS_H"),
        "{listed}"
    );
    assert_eq!(line("archive")[6..8], ["24", "168"], "{listed}");
    assert_eq!(line("brief")[6..8], ["12", "12"], "{listed}");
}

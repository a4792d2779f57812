//! Shared test helpers: the engine's tiny fixture models and a local HTTP server that
//! serves them the way the official download server does (with `Range`), and misbehaves
//! on request.

#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../separate/tests/fixtures");

pub const TINY1: &str = "tiny0001-813ac4c4.th";
pub const TINY2: &str = "tiny0002-48622ffa.th";
pub const TINY6: &str = "tiny0006-bfa2ba32.th";

pub fn fixture(name: &str) -> PathBuf {
    Path::new(FIXTURES).join(name)
}

/// Names of the entries of `dir` (sorted), for "nothing was left behind" checks.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

/// How the server misbehaves.
#[derive(Debug, Default, Clone)]
pub struct Behaviour {
    /// Send only this many bytes of the next response body, then cut the connection
    /// (applies once).
    pub cut_after: Option<usize>,
    /// Flip a byte in the middle of every file served.
    pub flip: bool,
    /// Declare a Content-Length this much larger than what is sent.
    pub extra_length: u64,
    /// Answer a range request with a range starting at 0.
    pub wrong_range_start: bool,
}

#[derive(Default)]
pub struct ServerState {
    pub files: HashMap<String, Vec<u8>>,
    pub behaviour: Behaviour,
    /// `(file, Range header)` of every request.
    pub requests: Vec<(String, Option<String>)>,
}

#[derive(Clone)]
pub struct TestServer {
    pub base_url: String,
    pub state: Arc<Mutex<ServerState>>,
}

impl TestServer {
    /// Serves the given fixture files on 127.0.0.1, on a random port.
    pub async fn start(fixtures: &[&str]) -> TestServer {
        let mut files = HashMap::new();
        for name in fixtures {
            files.insert((*name).to_owned(), std::fs::read(fixture(name)).unwrap());
        }
        let state = Arc::new(Mutex::new(ServerState {
            files,
            ..ServerState::default()
        }));
        let app = axum::Router::new()
            .route("/models/{file}", axum::routing::get(serve))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestServer {
            base_url: format!("http://{addr}/models/"),
            state,
        }
    }

    pub fn set(&self, behaviour: Behaviour) {
        self.state.lock().unwrap().behaviour = behaviour;
    }

    pub fn requests(&self) -> Vec<(String, Option<String>)> {
        self.state.lock().unwrap().requests.clone()
    }
}

async fn serve(
    State(state): State<Arc<Mutex<ServerState>>>,
    UrlPath(file): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (mut data, behaviour) = {
        let mut state = state.lock().unwrap();
        state.requests.push((file.clone(), range.clone()));
        let Some(data) = state.files.get(&file).cloned() else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let behaviour = state.behaviour.clone();
        state.behaviour.cut_after = None;
        (data, behaviour)
    };
    if behaviour.flip {
        let middle = data.len() / 2;
        data[middle] ^= 0xff;
    }
    let len = data.len() as u64;
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|r| r.parse::<u64>().ok());
    let (status, body, content_range) = match start {
        Some(start) if start >= len => {
            return Response::builder()
                .status(StatusCode::RANGE_NOT_SATISFIABLE)
                .header(header::CONTENT_RANGE, format!("bytes */{len}"))
                .body(Body::empty())
                .unwrap();
        }
        Some(_) if behaviour.wrong_range_start => (
            StatusCode::PARTIAL_CONTENT,
            data.clone(),
            Some(format!("bytes 0-{}/{len}", len - 1)),
        ),
        Some(start) => (
            StatusCode::PARTIAL_CONTENT,
            data[start as usize..].to_vec(),
            Some(format!("bytes {start}-{}/{len}", len - 1)),
        ),
        None => (StatusCode::OK, data, None),
    };
    let declared = body.len() as u64 + behaviour.extra_length;
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_LENGTH, declared)
        .header(header::ACCEPT_RANGES, "bytes");
    if let Some(content_range) = content_range {
        builder = builder.header(header::CONTENT_RANGE, content_range);
    }
    let cut = behaviour.cut_after;
    // Sent in small chunks so that a cut lands mid-file; an error item makes hyper abort the
    // connection (the client sees an incomplete body).
    let mut chunks: Vec<Result<Bytes, std::io::Error>> = Vec::new();
    let limit = cut.unwrap_or(usize::MAX).min(body.len());
    for chunk in body[..limit].chunks(16 * 1024) {
        chunks.push(Ok(Bytes::copy_from_slice(chunk)));
    }
    use futures::StreamExt;
    let body = futures::stream::iter(chunks);
    if cut.is_some() {
        // The error comes after a pause, once the bytes before it have reached the client.
        let cut = futures::stream::once(async {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            Err(std::io::Error::other("cut"))
        });
        builder.body(Body::from_stream(body.chain(cut))).unwrap()
    } else {
        builder.body(Body::from_stream(body)).unwrap()
    }
}

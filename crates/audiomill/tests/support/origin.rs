//! A local HTTP server (127.0.0.1, random port) that URL-input tests download from: fixed
//! bodies with or without `Content-Length`, redirects, and a server that stalls.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a path answers.
#[derive(Clone)]
pub enum Reply {
    /// 200 with this body and content type; `length: false` sends it chunked.
    Body {
        content_type: &'static str,
        body: Vec<u8>,
        length: bool,
    },
    /// 302 to this location.
    Redirect(String),
    /// 200 headers and a few bytes, then nothing for a minute.
    Stall,
}

/// The server; stopped when dropped.
pub struct Origin {
    pub port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Origin {
    /// Starts the server; `routes` gets its port (for bodies that link back to it).
    pub async fn start(routes: impl FnOnce(u16) -> Vec<(String, Reply)>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let routes: Arc<HashMap<String, Reply>> = Arc::new(routes(port).into_iter().collect());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(serve(stream, routes.clone()));
            }
        });
        Origin { port, task }
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

async fn serve(mut stream: TcpStream, routes: Arc<HashMap<String, Reply>>) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
        if request.len() > 64 * 1024 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&request);
    let mut first = text.lines().next().unwrap_or("").split(' ');
    let method = first.next().unwrap_or("").to_owned();
    let path = first.next().unwrap_or("/").to_owned();
    let head_only = method == "HEAD";
    let reply = routes.get(&path).cloned();
    let _ = match reply {
        None => {
            stream
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await
        }
        Some(Reply::Redirect(to)) => {
            stream
                .write_all(
                    format!(
                        "HTTP/1.1 302 Found\r\nlocation: {to}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await
        }
        Some(Reply::Stall) => {
            let _ = stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: audio/wav\r\ncontent-length: 100000\r\nconnection: close\r\n\r\nRIFF",
                )
                .await;
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(())
        }
        Some(Reply::Body {
            content_type,
            body,
            length,
        }) => {
            let mut head = format!("HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\nconnection: close\r\n");
            if length {
                head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
            } else {
                head.push_str("transfer-encoding: chunked\r\n\r\n");
            }
            if stream.write_all(head.as_bytes()).await.is_err() || head_only {
                return;
            }
            if length {
                stream.write_all(&body).await
            } else {
                let mut result = Ok(());
                for chunk in body.chunks(16 * 1024) {
                    let framed = [
                        format!("{:x}\r\n", chunk.len()).into_bytes(),
                        chunk.to_vec(),
                        b"\r\n".to_vec(),
                    ]
                    .concat();
                    result = stream.write_all(&framed).await;
                    if result.is_err() {
                        break;
                    }
                }
                match result {
                    Ok(()) => stream.write_all(b"0\r\n\r\n").await,
                    e => e,
                }
            }
        }
    };
    let _ = stream.shutdown().await;
}

/// The pinned yt-dlp installed by `scripts/setup-ytdlp` (or `AUDIOMILL_YTDLP`).
pub fn ytdlp_program() -> String {
    if let Ok(program) = std::env::var("AUDIOMILL_YTDLP") {
        return program;
    }
    let installed =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/ytdlp/bin/yt-dlp");
    assert!(
        installed.is_file(),
        "yt-dlp is not installed: run scripts/setup-ytdlp (scripts/test does)"
    );
    installed.to_string_lossy().into_owned()
}

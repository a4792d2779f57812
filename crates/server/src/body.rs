//! Request bodies read with a bound: every body or part the server reads whole (JSON job
//! requests, admin bodies, the `spec` part of a multipart job) goes through here, is counted
//! as it arrives, and is refused with `413` as soon as it passes its cap, without buffering
//! more than the cap.

use axum::body::{Body, Bytes};
use axum::extract::multipart::Field;
use futures::{Stream, StreamExt};

use crate::AppError;

/// Reads a whole body of at most `limit` bytes; `what` names it in the `413`.
pub async fn read_capped(body: Body, limit: usize, what: &str) -> Result<Bytes, AppError> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|_| AppError::bad_request("the request body could not be read"))?;
        if bytes.len() + chunk.len() > limit {
            linger(&mut stream).await;
            return Err(AppError::body_too_large(what, limit as u64));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.into())
}

/// Reads a whole multipart field of at most `limit` bytes; `what` names it in the `413`.
pub async fn read_field_capped(
    field: &mut Field<'_>,
    limit: usize,
    what: &str,
) -> Result<Bytes, AppError> {
    let mut bytes = Vec::new();
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > limit {
                    return Err(AppError::body_too_large(what, limit as u64));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(bytes.into()),
            Err(_) => return Err(AppError::bad_request("malformed multipart body")),
        }
    }
}

/// Most bytes read and thrown away after a body passed the cap, and for how long.
const LINGER_BYTES: u64 = 4 << 20;
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Reads and discards a little more of a refused body before the `413` (or `429`) goes out. A client
/// still sending would otherwise hit a closed connection (a broken pipe) and never read the
/// answer; the drain is bounded in bytes and time, so it costs an abuser nothing he can use.
pub(crate) async fn linger<S, E>(stream: &mut S)
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
{
    let drain = async {
        let mut drained = 0u64;
        while let Some(Ok(chunk)) = stream.next().await {
            drained += chunk.len() as u64;
            if drained > LINGER_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

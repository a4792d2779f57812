//! Downloading catalog models: resumable, size-checked, checksum-verified, then installed
//! through the same staging path as imports.
//!
//! Each file is streamed to `<models_dir>/.partial/<file>.part`. An interrupted download
//! leaves the `.part`, and the next pull asks for the rest with `Range`; a server that
//! answers the whole file instead (`200`) restarts it from zero. A finished file is checked
//! against the checksum in its name before it is renamed to `.partial/<file>`, from where
//! the install links it. A corrupt download is deleted (resuming it would only extend the
//! corruption).

use crate::catalog::{unsupported_reason, CatalogEntry, OFFICIAL_BASE_URL};
use crate::error::{ModelsError, Result};
use crate::name::{is_safe_checkpoint_name, split_checkpoint_name, ModelName};
use crate::store::{hash_file, InstalledModel, ModelStore, Origin, StageFile, StageSource};
use futures::StreamExt;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// No model file is anywhere near this large (the official ones are under 100 MB): a
/// larger declared or received size means a wrong URL or a hostile server.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// How a pull talks to the server.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Directory URL the catalog's file names are appended to.
    pub base_url: String,
    /// Time allowed to establish a connection.
    pub connect_timeout: Duration,
    /// Time allowed without receiving any data, once connected (a stalled transfer fails
    /// instead of hanging; its `.part` is kept for the next attempt).
    pub idle_timeout: Duration,
    /// Hard cap on a file's size.
    pub max_file_bytes: u64,
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions {
            base_url: OFFICIAL_BASE_URL.to_owned(),
            connect_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_file_bytes: MAX_FILE_BYTES,
        }
    }
}

/// Progress of a pull, for a progress bar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullProgress {
    /// A file starts downloading; `resume_from` is the size of the partial download kept
    /// from an earlier attempt (0 for a fresh download).
    Started {
        /// The file.
        file: String,
        /// Its position among the model's files (0-based).
        index: usize,
        /// How many files the model has.
        count: usize,
        /// Bytes already on disk.
        resume_from: u64,
    },
    /// Bytes received (called for every chunk).
    Downloading {
        /// The file.
        file: String,
        /// Bytes on disk so far, including a resumed part.
        downloaded: u64,
        /// The file's size, when the server said.
        total: Option<u64>,
    },
    /// A file was already downloaded completely by an earlier attempt.
    AlreadyDownloaded {
        /// The file.
        file: String,
    },
    /// Checking a file's checksum.
    Verifying {
        /// The file.
        file: String,
    },
    /// Staging the files and loading the model to validate it.
    Installing,
}

/// Downloads and installs `entry` from `base_url` with default timeouts and limits.
pub async fn pull(
    store: &ModelStore,
    entry: &CatalogEntry,
    base_url: &str,
    progress: impl FnMut(PullProgress),
) -> Result<InstalledModel> {
    let options = PullOptions {
        base_url: base_url.to_owned(),
        ..PullOptions::default()
    };
    pull_with(store, entry, &options, progress).await
}

/// [`pull`] with every option given.
pub async fn pull_with(
    store: &ModelStore,
    entry: &CatalogEntry,
    options: &PullOptions,
    mut progress: impl FnMut(PullProgress),
) -> Result<InstalledModel> {
    // Before anything touches the network or the disk.
    if !entry.supported {
        return Err(ModelsError::Unsupported {
            name: entry.name.clone(),
            reason: unsupported_reason(entry),
        });
    }
    let name = ModelName::parse(&entry.name)?;
    let mut expected = Vec::with_capacity(entry.files.len());
    for file in &entry.files {
        let (_, checksum) = split_checkpoint_name(&file.file_name);
        match checksum {
            Some(checksum) if is_safe_checkpoint_name(&file.file_name) => {
                expected.push(checksum.to_owned())
            }
            _ => {
                return Err(ModelsError::Invalid(format!(
                    "catalog file {:?} is not <signature>-<checksum>.th: it cannot be verified",
                    file.file_name
                )))
            }
        }
    }
    if entry.files.is_empty() {
        return Err(ModelsError::Invalid(format!(
            "catalog model {} has no files",
            entry.name
        )));
    }
    if store.manifest(name.as_str())?.is_some() {
        return Err(ModelsError::AlreadyInstalled {
            name: name.to_string(),
        });
    }

    let partial = store.partial_dir();
    tokio::fs::create_dir_all(&partial)
        .await
        .map_err(|e| ModelsError::io("create", &partial, e))?;
    // One pull of a model at a time (across processes): two would write the same `.part`.
    let _lock = PullLock::acquire(&partial.join(format!("{name}.lock")), name.as_str())?;

    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(options.connect_timeout)
        .read_timeout(options.idle_timeout)
        .user_agent(concat!("audiomill/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ModelsError::Download {
            file: entry.files[0].file_name.clone(),
            message: format!("cannot set up the HTTP client: {}", error_chain(&e)),
        })?;
    let base = if options.base_url.ends_with('/') {
        options.base_url.clone()
    } else {
        format!("{}/", options.base_url)
    };

    let count = entry.files.len();
    let mut downloaded: Vec<(PathBuf, String, String)> = Vec::with_capacity(count);
    for (index, (file, checksum)) in entry.files.iter().zip(&expected).enumerate() {
        let file_name = &file.file_name;
        let complete = partial.join(file_name);
        let sha256 = if tokio::fs::try_exists(&complete).await.unwrap_or(false) {
            progress(PullProgress::AlreadyDownloaded {
                file: file_name.clone(),
            });
            progress(PullProgress::Verifying {
                file: file_name.clone(),
            });
            verify(&complete, file_name, checksum).await?
        } else {
            let part = partial.join(format!("{file_name}.part"));
            let url = format!("{base}{file_name}");
            download(
                &client,
                &url,
                &part,
                file_name,
                options,
                index,
                count,
                &mut progress,
            )
            .await?;
            progress(PullProgress::Verifying {
                file: file_name.clone(),
            });
            let sha256 = verify(&part, file_name, checksum).await?;
            tokio::fs::rename(&part, &complete)
                .await
                .map_err(|e| ModelsError::io("rename", &part, e))?;
            sha256
        };
        downloaded.push((complete, file_name.clone(), sha256));
    }

    progress(PullProgress::Installing);
    let store_clone = store.clone();
    let descriptor = entry.descriptor_yaml.clone();
    let links = downloaded.clone();
    let installed = tokio::task::spawn_blocking(move || {
        let files: Vec<StageFile<'_>> = links
            .iter()
            .map(|(path, file_name, sha256)| StageFile {
                source: StageSource::Link {
                    path,
                    sha256: sha256.clone(),
                },
                file_name: file_name.clone(),
            })
            .collect();
        store_clone.install(&name, Origin::Catalog, &descriptor, &files, None)
    })
    .await
    .map_err(|e| ModelsError::Invalid(format!("the install task failed: {e}")))??;
    // Installed (linked or copied): the downloads are no longer needed.
    for (path, _, _) in &downloaded {
        let _ = tokio::fs::remove_file(path).await;
    }
    Ok(installed)
}

/// Downloads `url` into `part`, resuming what is there. Returns when `part` holds as many
/// bytes as the server declared.
#[allow(clippy::too_many_arguments)]
async fn download(
    client: &reqwest::Client,
    url: &str,
    part: &Path,
    file_name: &str,
    options: &PullOptions,
    index: usize,
    count: usize,
    progress: &mut impl FnMut(PullProgress),
) -> Result<()> {
    let failed = |message: String| ModelsError::Download {
        file: file_name.to_owned(),
        message,
    };
    // At most one restart: after a `416` for a part that is not the whole file.
    for _attempt in 0..2 {
        let mut offset = match tokio::fs::metadata(part).await {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(ModelsError::io("read", part, e)),
        };
        if offset > options.max_file_bytes {
            remove_part(part).await;
            offset = 0;
        }
        progress(PullProgress::Started {
            file: file_name.to_owned(),
            index,
            count,
            resume_from: offset,
        });
        let mut request = client.get(url);
        if offset > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let response = request.send().await.map_err(|e| failed(error_chain(&e)))?;
        let status = response.status();
        let content_range = response
            .headers()
            .get(reqwest::header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (append, total) = match status.as_u16() {
            206 => {
                let Some((start, end, total)) =
                    content_range.as_deref().and_then(parse_content_range)
                else {
                    remove_part(part).await;
                    return Err(failed(format!(
                        "the server answered a range without a valid Content-Range ({content_range:?}) from {url}"
                    )));
                };
                if start != offset {
                    // Not the continuation of our part: it cannot be trusted any more.
                    remove_part(part).await;
                    return Err(ModelsError::SizeMismatch {
                        file: file_name.to_owned(),
                        expected: offset,
                        actual: start,
                    });
                }
                // The range must run to the end of the file (we asked for `<offset>-`).
                let total = total.or(Some(end + 1));
                (offset > 0, total)
            }
            200 => (false, response.content_length()),
            416 if offset > 0 => {
                // Our part is at least as long as the file: complete, or garbage.
                let total = content_range.as_deref().and_then(parse_unsatisfied_range);
                if total == Some(offset) {
                    return Ok(());
                }
                remove_part(part).await;
                continue;
            }
            _ => {
                let what = match status.as_u16() {
                    404 | 410 => "the file is not on the server".to_owned(),
                    401 | 403 => "access denied".to_owned(),
                    s if (500..600).contains(&s) => "server error, try again later".to_owned(),
                    _ => "unexpected answer".to_owned(),
                };
                return Err(failed(format!("{what} (HTTP {status} from {url})")));
            }
        };
        if let Some(total) = total {
            if total > options.max_file_bytes {
                return Err(ModelsError::TooLarge {
                    file: file_name.to_owned(),
                    bytes: total,
                    limit: options.max_file_bytes,
                });
            }
        }
        let mut output = if append {
            tokio::fs::OpenOptions::new().append(true).open(part).await
        } else {
            offset = 0;
            tokio::fs::File::create(part).await
        }
        .map_err(|e| ModelsError::io("write", part, e))?;

        let mut written = offset;
        let mut body = response.bytes_stream();
        loop {
            let chunk = match tokio::time::timeout(options.idle_timeout, body.next()).await {
                Err(_) => {
                    let _ = output.flush().await;
                    return Err(failed(format!(
                        "no data for {} s after {written} bytes; run the command again to resume",
                        options.idle_timeout.as_secs()
                    )));
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => {
                    let _ = output.flush().await;
                    let of = total.map(|t| format!(" of {t}")).unwrap_or_default();
                    return Err(failed(format!(
                        "interrupted after {written}{of} bytes ({}); run the command again to resume",
                        error_chain(&e)
                    )));
                }
                Ok(Some(Ok(chunk))) => chunk,
            };
            written += chunk.len() as u64;
            if written > options.max_file_bytes {
                drop(output);
                remove_part(part).await;
                return Err(ModelsError::TooLarge {
                    file: file_name.to_owned(),
                    bytes: written,
                    limit: options.max_file_bytes,
                });
            }
            if let Some(total) = total {
                if written > total {
                    drop(output);
                    remove_part(part).await;
                    return Err(ModelsError::SizeMismatch {
                        file: file_name.to_owned(),
                        expected: total,
                        actual: written,
                    });
                }
            }
            output
                .write_all(&chunk)
                .await
                .map_err(|e| ModelsError::io("write", part, e))?;
            progress(PullProgress::Downloading {
                file: file_name.to_owned(),
                downloaded: written,
                total,
            });
        }
        output
            .flush()
            .await
            .and(output.sync_all().await)
            .map_err(|e| ModelsError::io("write", part, e))?;
        let on_disk = tokio::fs::metadata(part)
            .await
            .map_err(|e| ModelsError::io("read", part, e))?
            .len();
        if let Some(total) = total {
            if on_disk != total {
                // Shorter than declared (kept: what is there is the start of the file, and
                // the next attempt resumes it; the checksum catches anything else).
                return Err(ModelsError::SizeMismatch {
                    file: file_name.to_owned(),
                    expected: total,
                    actual: on_disk,
                });
            }
        }
        return Ok(());
    }
    Err(failed(format!(
        "the server refuses to resume and to restart the download from {url}"
    )))
}

/// Checks the checksum in the file name against the content; a mismatch deletes the file.
/// Returns the full hex SHA-256.
async fn verify(path: &Path, file_name: &str, checksum: &str) -> Result<String> {
    let owned = path.to_path_buf();
    let (_, sha256) = tokio::task::spawn_blocking(move || hash_file(&owned))
        .await
        .map_err(|e| ModelsError::Invalid(format!("the checksum task failed: {e}")))??;
    if sha256.starts_with(checksum) {
        Ok(sha256)
    } else {
        remove_part(path).await;
        Err(ModelsError::Checksum {
            file: file_name.to_owned(),
            expected: checksum.to_owned(),
            actual: sha256[..checksum.len().min(sha256.len())].to_owned(),
        })
    }
}

async fn remove_part(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove a partial download");
        }
    }
}

/// `bytes <start>-<end>/<total or *>` → `(start, end, total)`.
fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    if end < start || total.is_some_and(|t| end >= t) {
        return None;
    }
    Some((start, end, total))
}

/// `bytes */<total>` of a `416` → the file's size.
fn parse_unsatisfied_range(value: &str) -> Option<u64> {
    value.trim().strip_prefix("bytes */")?.trim().parse().ok()
}

/// An error and its causes on one line (reqwest's own message is only the outer layer).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// An exclusive `flock` on a lock file, released when dropped (or when the process dies,
/// so a crash never leaves a stale lock). The file is removed when the lock is released, so
/// a finished or failed pull leaves no lock file behind.
struct PullLock {
    path: PathBuf,
    _file: std::fs::File,
}

impl PullLock {
    fn acquire(path: &Path, name: &str) -> Result<PullLock> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        // A holder removes the file as it lets go: a lock taken on a file that was removed
        // meanwhile guards nothing, so the lock is only ours once the path still names the
        // file we locked. Each retry means another pull just finished.
        for _ in 0..8 {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
                .map_err(|e| ModelsError::io("create", path, e))?;
            // SAFETY: flock on a file descriptor we own and keep open for the lock's lifetime.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::WouldBlock {
                    return Err(ModelsError::Busy {
                        name: name.to_owned(),
                    });
                }
                return Err(ModelsError::io("lock", path, e));
            }
            let locked = file
                .metadata()
                .map_err(|e| ModelsError::io("lock", path, e))?;
            let same = std::fs::metadata(path)
                .is_ok_and(|now| now.dev() == locked.dev() && now.ino() == locked.ino());
            if same {
                return Ok(PullLock {
                    path: path.to_owned(),
                    _file: file,
                });
            }
        }
        Err(ModelsError::Busy {
            name: name.to_owned(),
        })
    }
}

impl Drop for PullLock {
    fn drop(&mut self) {
        // Removed while still held: whoever opens the path next makes a new file.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 10-99/100"),
            Some((10, 99, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 10-99/*"), Some((10, 99, None)));
        assert_eq!(parse_content_range("bytes 10-100/100"), None);
        assert_eq!(parse_content_range("bytes 10-9/100"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_unsatisfied_range("bytes */100"), Some(100));
    }
}

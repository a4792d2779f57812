//! The per-attempt working directory.

use std::io;
use std::path::{Path, PathBuf};

/// `temp_dir/<job_id>-<attempt>`, holding `input` and the `out/` directory; removed with
/// everything in it when dropped, whatever the way out (success, error, cancellation of the
/// task, panic, shutdown).
#[derive(Debug)]
pub(crate) struct JobDir {
    path: PathBuf,
}

impl JobDir {
    /// Creates the directory (and `out/` inside it), replacing a stale one left by a crash.
    /// Its path is absolute: the child runs inside it and gets paths into it.
    pub(crate) fn create(parent: &Path, name: &str) -> io::Result<Self> {
        std::fs::create_dir_all(parent)?;
        let path = std::path::absolute(parent.join(name))?;
        match std::fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir(&path)?;
        // From here on, `Drop` cleans up even if creating `out/` fails.
        let dir = Self { path };
        std::fs::create_dir(dir.output_dir())?;
        Ok(dir)
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Where the input is copied: always `input`, never a name from a user.
    pub(crate) fn input(&self) -> PathBuf {
        self.path.join("input")
    }

    /// Where the child writes its outputs.
    pub(crate) fn output_dir(&self) -> PathBuf {
        self.path.join("out")
    }
}

impl Drop for JobDir {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot remove job directory")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_on_drop_with_contents() {
        let root = tempfile::tempdir().unwrap();
        let dir = JobDir::create(root.path(), "job_x-1").unwrap();
        let path = dir.path().to_owned();
        std::fs::write(dir.input(), b"abc").unwrap();
        std::fs::write(dir.output_dir().join("output.wav"), b"abc").unwrap();
        std::fs::create_dir(dir.output_dir().join("nested")).unwrap();
        assert!(path.is_absolute());
        assert!(path.join("out/output.wav").exists());
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn removed_when_a_panic_unwinds() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("job_y-2");
        let result = std::panic::catch_unwind(|| {
            let dir = JobDir::create(root.path(), "job_y-2").unwrap();
            std::fs::write(dir.input(), b"abc").unwrap();
            panic!("boom");
        });
        assert!(result.is_err());
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn removed_when_the_task_is_aborted() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("job_z-3");
        let (created_tx, created_rx) = tokio::sync::oneshot::channel();
        let parent = root.path().to_owned();
        let task = tokio::spawn(async move {
            let _dir = JobDir::create(&parent, "job_z-3").unwrap();
            let _ = created_tx.send(());
            std::future::pending::<()>().await;
        });
        created_rx.await.unwrap();
        assert!(path.exists());
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        assert!(!path.exists());
    }

    #[test]
    fn replaces_a_stale_directory() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("job_w-1/out")).unwrap();
        std::fs::write(root.path().join("job_w-1/out/old"), b"x").unwrap();
        let dir = JobDir::create(root.path(), "job_w-1").unwrap();
        assert!(!dir.output_dir().join("old").exists());
        assert!(dir.output_dir().is_dir());
    }
}

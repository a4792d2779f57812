//! `audiomill doctor`: what this installation can do, checked one line at a time, so that an
//! operator sees a missing piece before a user's job does.
//!
//! Exits non-zero when something the service cannot run without is broken (the data
//! directory, the database); a missing yt-dlp or model is a warning, since everything else
//! works without it.

use crate::config::{shown, Config};
use std::process::ExitCode;

/// The yt-dlp version audiomill is tested with (`tools/ytdlp-requirements.txt`).
pub fn pinned_ytdlp() -> &'static str {
    const REQUIREMENTS: &str = include_str!("../../../tools/ytdlp-requirements.txt");
    REQUIREMENTS
        .lines()
        .find_map(|line| line.strip_prefix("yt-dlp=="))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("unknown")
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Report {
    failed: bool,
}

impl Report {
    fn line(&mut self, level: Level, what: &str, detail: impl std::fmt::Display) {
        let tag = match level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        self.failed |= level == Level::Fail;
        println!("{tag}  {what:<14} {detail}");
    }
}

pub async fn doctor(config: &Config) -> ExitCode {
    let mut report = Report { failed: false };
    report.line(Level::Ok, "audiomill", env!("CARGO_PKG_VERSION"));

    let data = &config.data_dir;
    match std::fs::create_dir_all(data).and_then(|()| {
        let probe = data.join(".doctor-write-check");
        std::fs::write(&probe, b"ok")?;
        std::fs::remove_file(&probe)
    }) {
        Ok(()) => report.line(Level::Ok, "data dir", format!("{} (writable)", shown(data))),
        Err(e) => report.line(Level::Fail, "data dir", format!("{}: {e}", shown(data))),
    }

    match crate::serve::open_store(config).await {
        Ok(_) => report.line(
            Level::Ok,
            "database",
            format!("{} (schema up to date)", shown(&config.database_path())),
        ),
        Err(e) => report.line(Level::Fail, "database", format!("{e:#}")),
    }

    let pinned = pinned_ytdlp();
    match config.ytdlp() {
        None => report.line(
            Level::Warn,
            "yt-dlp",
            format!("not found: links to sites will fail; run scripts/setup-ytdlp (pins {pinned})"),
        ),
        Some(ytdlp) => {
            let program = ytdlp.program.display().to_string();
            match audiomill_net::YtDlp::new(ytdlp).version().await {
                Ok(version) if version == pinned => {
                    report.line(Level::Ok, "yt-dlp", format!("{version} ({program})"))
                }
                Ok(version) => report.line(
                    Level::Warn,
                    "yt-dlp",
                    format!("{version} ({program}); audiomill is tested with {pinned}"),
                ),
                Err(e) => report.line(Level::Warn, "yt-dlp", format!("{program}: {e}")),
            }
        }
    }
    let policy = if config.outbound.allow_private_networks {
        (
            Level::Warn,
            "private networks ALLOWED (tests and closed networks only)",
        )
    } else {
        (Level::Ok, "public addresses only")
    };
    report.line(policy.0, "url inputs", policy.1);

    let store = audiomill_models::ModelStore::new(config.models_dir());
    let catalog = audiomill_models::Catalog::official();
    match store.list(&catalog) {
        Ok(models) => {
            let installed: Vec<String> = models
                .into_iter()
                .filter(|m| m.installed)
                .map(|m| m.name)
                .collect();
            if installed.is_empty() {
                report.line(
                    Level::Warn,
                    "models",
                    "none installed: separate jobs will fail; audiomill models pull htdemucs \
                     (or models import on an offline machine)",
                );
            }
            // Each model is loaded as a job would load it: a file that went missing or was
            // changed since the install shows here, not in a user's job.
            for name in installed {
                match model_loads(&store, &catalog, &name) {
                    Ok(stems) => report.line(Level::Ok, "model", format!("{name} ({stems})")),
                    Err(reason) => report.line(
                        Level::Warn,
                        "model",
                        format!(
                            "{name} does not load: {reason}; reinstall it: {}",
                            crate::models::reinstall_command(&name)
                        ),
                    ),
                }
            }
        }
        Err(e) => report.line(Level::Warn, "models", e),
    }

    if report.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Resolves an installed model and loads its networks with the engine; its stems, or why not.
fn model_loads(
    store: &audiomill_models::ModelStore,
    catalog: &audiomill_models::Catalog,
    name: &str,
) -> Result<String, String> {
    let model = store.resolve(name, catalog).map_err(|e| e.to_string())?;
    audiomill_separate::load_model(&model.descriptor, &audiomill_separate::default_device())
        .map_err(|e| e.to_string())?;
    Ok(model.stems.join(", "))
}

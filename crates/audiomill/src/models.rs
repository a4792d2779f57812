//! `audiomill models …` and the model registry the API consults: both over the model store of
//! the data directory (`<data>/models`, see the `audiomill-models` crate).

use anyhow::bail;
use async_trait::async_trait;
use audiomill_core::ModelName;
use audiomill_models::{Catalog, ModelStore, ModelsError, PullProgress};
use audiomill_server::{InstalledModel, ModelLookupError, ModelRegistry, ModelSummary};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::cli::ModelsCommand;
use crate::config::Config;

pub fn run(config: &Config, command: ModelsCommand) -> anyhow::Result<ExitCode> {
    let store = ModelStore::new(config.models_dir());
    let catalog = Catalog::official();
    match command {
        ModelsCommand::List => {
            let models = store.list(&catalog)?;
            println!(
                "{:<16} {:<11} {:>9}  {:<40} DESCRIPTION",
                "NAME", "STATUS", "SIZE", "STEMS"
            );
            for m in models {
                let status = match (m.installed, m.supported) {
                    (true, _) => "installed",
                    (false, true) => "available",
                    (false, false) => "unsupported",
                };
                let size = m
                    .size_bytes
                    .map(|b| format!("{:.1} MB", b as f64 / 1e6))
                    .unwrap_or_default();
                println!(
                    "{:<16} {:<11} {:>9}  {:<40} {}",
                    m.name,
                    status,
                    size,
                    m.stems.join(","),
                    m.description
                );
            }
        }
        ModelsCommand::Pull { name, from } => {
            let entry = catalog.entry(&name)?;
            let base = from.unwrap_or_else(|| audiomill_models::OFFICIAL_BASE_URL.to_owned());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let mut shown = String::new();
            let pulled = runtime.block_on(audiomill_models::pull(
                &store,
                entry,
                &base,
                |p: PullProgress| {
                    let line = progress_line(&p);
                    if line != shown {
                        eprintln!("{line}");
                        shown = line;
                    }
                },
            ));
            let installed = pulled.map_err(|e| match e {
                // Most often a machine that cannot reach the download site at all.
                ModelsError::Download { .. } => anyhow::anyhow!(
                    "{e}; on a machine without internet access, copy the model's files from one \
                     that has it and install them with `audiomill models import PATH --name {name}`"
                ),
                e => e.into(),
            })?;
            println!(
                "installed {} ({})",
                installed.name,
                installed.stems.join(", ")
            );
        }
        ModelsCommand::Import { path, name } => {
            if !path.is_file() {
                bail!("{}: no such file", path.display());
            }
            let installed = store.import(&path, name.as_deref())?;
            println!(
                "installed {} ({})",
                installed.name,
                installed.stems.join(", ")
            );
        }
        ModelsCommand::Rm { name } => {
            store.remove(&name)?;
            println!("removed {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line of pull progress; downloads report every 10%, so the lines stay few.
fn progress_line(p: &PullProgress) -> String {
    match p {
        PullProgress::Started {
            file,
            index,
            count,
            resume_from,
        } if *resume_from > 0 => format!(
            "[{}/{count}] {file}: resuming after {:.1} MB",
            index + 1,
            *resume_from as f64 / 1e6
        ),
        PullProgress::Started {
            file, index, count, ..
        } => format!("[{}/{count}] {file}: downloading", index + 1),
        PullProgress::Downloading {
            file,
            downloaded,
            total: Some(total),
        } if *total > 0 => format!(
            "{file}: {}%",
            (*downloaded as f64 / *total as f64 * 10.0).floor() * 10.0
        ),
        PullProgress::Downloading { file, .. } => format!("{file}: downloading"),
        PullProgress::AlreadyDownloaded { file } => format!("{file}: already downloaded"),
        PullProgress::Verifying { file } => format!("{file}: verifying the checksum"),
        PullProgress::Installing => "installing (loading the model to check it)".into(),
    }
}

/// How an operator puts a damaged model back: pull a catalog model again, or import it again.
pub fn reinstall_command(name: &str) -> String {
    format!(
        "audiomill models rm {name} && {}",
        Catalog::official().install_command(name)
    )
}

/// The API's view of the model store. File system reads run off the async threads.
pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    pub fn new(dir: PathBuf) -> Self {
        Registry { dir }
    }
}

#[async_trait]
impl ModelRegistry for Registry {
    async fn list(&self) -> Result<Vec<ModelSummary>, String> {
        let dir = self.dir.clone();
        let listed = tokio::task::spawn_blocking(move || {
            let catalog = Catalog::official();
            ModelStore::new(dir).list(&catalog)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        Ok(listed
            .into_iter()
            .map(|m| ModelSummary {
                install_command: (!m.installed && m.supported)
                    .then(|| format!("audiomill models pull {}", m.name)),
                name: m.name,
                description: m.description,
                stems: m.stems,
                installed: m.installed,
                supported: m.supported,
                size_bytes: m.size_bytes,
            })
            .collect())
    }

    async fn lookup(&self, name: &ModelName) -> Result<InstalledModel, ModelLookupError> {
        let dir = self.dir.clone();
        let name = name.clone();
        let resolved = tokio::task::spawn_blocking(move || {
            let catalog = Catalog::official();
            ModelStore::new(dir).resolve(name.as_str(), &catalog)
        })
        .await
        .map_err(|e| ModelLookupError::Failed(e.to_string()))?;
        match resolved {
            Ok(model) => Ok(InstalledModel {
                stems: model.stems,
                max_segment_secs: model.max_segment_secs,
            }),
            Err(ModelsError::NotInstalled {
                name,
                install_command,
            }) => Err(ModelLookupError::NotInstalled {
                name,
                install_command,
            }),
            Err(ModelsError::Damaged { name, reason }) => Err(ModelLookupError::Unusable {
                install_command: reinstall_command(&name),
                name,
                reason,
            }),
            Err(e) => Err(ModelLookupError::Failed(e.to_string())),
        }
    }
}

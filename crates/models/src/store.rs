//! The models directory: what is installed, installing (atomically), removing.
//!
//! Layout of `<models_dir>`:
//!
//! - `<name>/`: an installed model: `<name>.yaml` (the bag descriptor the engine loads),
//!   its `.th` checkpoints, and `manifest.json`. A directory counts as installed only when
//!   its manifest exists and parses; the manifest is written inside the staging directory,
//!   so a model directory appears complete or not at all.
//! - `.staging-<random>/`: an install in progress, renamed to `<name>/` as its last step.
//!   Left behind only by a crash; removed by a later install once stale.
//! - `.trash-<random>/`: a model being removed (renamed out of the way first, so a crash
//!   half-way through a removal never leaves a half model under its name).
//! - `.partial/`: downloads in progress (`<file>.part`), kept to be resumed.

use crate::catalog::Catalog;
use crate::error::{ModelsError, Result};
use crate::name::{is_safe_checkpoint_name, is_valid_name, split_checkpoint_name, ModelName};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// File name of a model's manifest.
pub const MANIFEST_FILE: &str = "manifest.json";

/// Largest descriptor imported (the engine refuses larger ones too).
const MAX_DESCRIPTOR_BYTES: u64 = 64 * 1024;

/// Largest manifest read: a few hundred bytes in practice.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// A staging directory older than this belongs to a crashed install (an install stages only
/// after its downloads are done: copying and validating take seconds to minutes).
const STALE_STAGING: Duration = Duration::from_secs(3600);

/// How a model was installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Downloaded from the catalog (`audiomill models pull`).
    Catalog,
    /// Copied from local files (`audiomill models import`).
    Import,
}

/// One file of an installed model, as recorded at install time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// File name inside the model directory.
    pub file_name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Full hex SHA-256 of the content.
    pub sha256: String,
}

/// `manifest.json` of an installed model: what was installed, from where, and what the
/// loaded model said about itself (so listing does not load networks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The model's name (its directory's name).
    pub name: String,
    /// How it was installed.
    pub origin: Origin,
    /// For an import, the file name it was imported from (no directory: listings are shown
    /// to API clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imported_from: Option<String>,
    /// Stems, in output order, from the loaded model.
    pub sources: Vec<String>,
    /// Sample rate of the networks, in Hz.
    pub samplerate: u32,
    /// Channels of the networks.
    pub audio_channels: usize,
    /// Longest `segment` a separation may ask for, in seconds: a transformer network's
    /// training segment (`f64::INFINITY`, stored as `null`, when no member limits it).
    #[serde(with = "finite_or_null")]
    pub max_segment_secs: f64,
    /// File name of the bag descriptor (`<name>.yaml`).
    pub descriptor: String,
    /// The checkpoints.
    pub files: Vec<ManifestFile>,
    /// When it was installed (RFC 3339, UTC).
    pub installed_at: String,
}

impl Manifest {
    /// Bytes of the checkpoints.
    pub fn size_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// A model of the catalog or an installed one, for listings (`GET /v1/models`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelStatus {
    /// The model's name.
    pub name: String,
    /// One line.
    pub description: String,
    /// Stems it separates, in output order.
    pub stems: Vec<String>,
    /// Whether it is installed and can be used.
    pub installed: bool,
    /// How it was installed (`None` when not installed).
    pub origin: Option<Origin>,
    /// Whether the separation engine can run it.
    pub supported: bool,
    /// Installed: bytes on disk; not installed: approximate download size, when known.
    pub size_bytes: Option<u64>,
}

/// An installed model, ready to be loaded with `audiomill_separate::load_model(&descriptor)`.
#[derive(Debug, Clone, PartialEq)]
pub struct InstalledModel {
    /// The model's name.
    pub name: String,
    /// The bag descriptor (`<models_dir>/<name>/<name>.yaml`).
    pub descriptor: PathBuf,
    /// Stems, in output order.
    pub stems: Vec<String>,
    /// Sample rate of the networks, in Hz.
    pub samplerate: u32,
    /// Channels of the networks.
    pub audio_channels: usize,
    /// Longest `segment` a separation may ask for, in seconds (see [`Manifest`]).
    pub max_segment_secs: f64,
}

/// JSON has no infinity: an unbounded segment is stored as `null`.
mod finite_or_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
        if value.is_finite() {
            s.serialize_f64(*value)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
    }
}

/// Where a staged file comes from.
pub(crate) enum StageSource<'a> {
    /// A user's file: copied (hashed on the way).
    Copy(&'a Path),
    /// A verified download in `.partial/`: hard-linked (copied if linking fails), kept there
    /// until the install is done so a failed validation does not cost the download.
    Link { path: &'a Path, sha256: String },
}

/// One file to stage.
pub(crate) struct StageFile<'a> {
    pub source: StageSource<'a>,
    pub file_name: String,
}

/// The models installed under one directory.
#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
}

impl ModelStore {
    /// The store of `models_dir` (`<data_dir>/models`); the directory is created by the
    /// first install.
    pub fn new(models_dir: PathBuf) -> ModelStore {
        ModelStore { dir: models_dir }
    }

    /// The models directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn model_dir(&self, name: &ModelName) -> PathBuf {
        self.dir.join(name.as_str())
    }

    pub(crate) fn partial_dir(&self) -> PathBuf {
        self.dir.join(".partial")
    }

    /// The manifest of `name` when installed (`None` when not installed, or when its
    /// directory is a leftover without a readable manifest).
    pub fn manifest(&self, name: &str) -> Result<Option<Manifest>> {
        let name = ModelName::parse(name)?;
        self.read_manifest(&name)
    }

    fn read_manifest(&self, name: &ModelName) -> Result<Option<Manifest>> {
        let path = self.model_dir(name).join(MANIFEST_FILE);
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    || e.kind() == std::io::ErrorKind::NotADirectory =>
            {
                return Ok(None)
            }
            Err(e) => return Err(ModelsError::io("read", &path, e)),
        };
        let mut text = String::new();
        if let Err(e) = file.take(MAX_MANIFEST_BYTES).read_to_string(&mut text) {
            tracing::warn!(path = %path.display(), error = %e, "unreadable model manifest");
            return Ok(None);
        }
        match serde_json::from_str::<Manifest>(&text) {
            Ok(manifest) if manifest.name == name.as_str() => Ok(Some(manifest)),
            Ok(manifest) => {
                tracing::warn!(path = %path.display(), manifest_name = %manifest.name,
                    "model manifest names another model; ignored");
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "invalid model manifest; ignored");
                Ok(None)
            }
        }
    }

    /// Every catalog model (installed or not) and every other installed model, by name.
    pub fn list(&self, catalog: &Catalog) -> Result<Vec<ModelStatus>> {
        let mut installed = self.installed_manifests()?;
        let mut out = Vec::new();
        for entry in catalog.entries() {
            let manifest = installed.remove(&entry.name);
            out.push(ModelStatus {
                name: entry.name.clone(),
                description: entry.description.clone(),
                stems: match &manifest {
                    Some(m) => m.sources.clone(),
                    None => entry.stems.clone(),
                },
                installed: manifest.is_some(),
                origin: manifest.as_ref().map(|m| m.origin),
                supported: entry.supported,
                size_bytes: match &manifest {
                    Some(m) => Some(m.size_bytes()),
                    None => entry.approx_bytes(),
                },
            });
        }
        for (name, manifest) in installed {
            out.push(ModelStatus {
                name,
                description: match &manifest.imported_from {
                    Some(file) => format!("imported from {file}"),
                    None => "imported model".into(),
                },
                stems: manifest.sources.clone(),
                installed: true,
                origin: Some(manifest.origin),
                supported: true,
                size_bytes: Some(manifest.size_bytes()),
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Installed models by name.
    fn installed_manifests(&self) -> Result<std::collections::BTreeMap<String, Manifest>> {
        let mut out = std::collections::BTreeMap::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(ModelsError::io("list", &self.dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| ModelsError::io("list", &self.dir, e))?;
            // Staging, trash and partial directories start with a dot: never valid names.
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !is_valid_name(&name) {
                continue;
            }
            let name = ModelName::parse(&name)?;
            if let Some(manifest) = self.read_manifest(&name)? {
                out.insert(name.as_str().to_owned(), manifest);
            }
        }
        Ok(out)
    }

    /// The installed model `name`, ready to load. A model that is not installed is a
    /// [`ModelsError::NotInstalled`] carrying the command that installs it.
    pub fn resolve(&self, name: &str, catalog: &Catalog) -> Result<InstalledModel> {
        let name = ModelName::parse(name)?;
        let Some(manifest) = self.read_manifest(&name)? else {
            return Err(ModelsError::NotInstalled {
                name: name.to_string(),
                install_command: catalog.install_command(name.as_str()),
            });
        };
        let dir = self.model_dir(&name);
        let damaged = |reason: String| ModelsError::Damaged {
            name: name.to_string(),
            reason,
        };
        // The manifest was written by us, but its file names still must not escape the
        // directory if someone edited it.
        if manifest.descriptor != format!("{name}.yaml") {
            return Err(damaged(format!(
                "the manifest names descriptor {:?}",
                manifest.descriptor
            )));
        }
        let descriptor = dir.join(&manifest.descriptor);
        if !descriptor.is_file() {
            return Err(damaged(format!("{} is missing", manifest.descriptor)));
        }
        // Sizes only (cheap): the engine verifies checksums when it loads.
        for file in &manifest.files {
            if !is_safe_checkpoint_name(&file.file_name) {
                return Err(damaged(format!(
                    "the manifest names file {:?}",
                    file.file_name
                )));
            }
            match std::fs::metadata(dir.join(&file.file_name)) {
                Ok(meta) if meta.len() == file.bytes => {}
                Ok(meta) => {
                    return Err(damaged(format!(
                        "{} is {} bytes, {} were installed",
                        file.file_name,
                        meta.len(),
                        file.bytes
                    )))
                }
                Err(e) => return Err(damaged(format!("{}: {e}", file.file_name))),
            }
        }
        Ok(InstalledModel {
            name: name.to_string(),
            descriptor,
            stems: manifest.sources,
            samplerate: manifest.samplerate,
            audio_channels: manifest.audio_channels,
            max_segment_secs: manifest.max_segment_secs,
        })
    }

    /// Installs local files: `path` is a checkpoint (`.th`), or a bag descriptor
    /// (`.yaml`/`.yml`) whose checkpoints sit beside it (only those it names are copied).
    /// The name defaults to the file's stem, lowercased. The copy is loaded with the
    /// separation engine before it is installed, so a model that would fail at separation
    /// time fails here, and nothing is left behind.
    ///
    /// Blocking (copies and loads the networks): call it from a blocking context.
    pub fn import(&self, path: &Path, name: Option<&str>) -> Result<InstalledModel> {
        let meta = std::fs::metadata(path).map_err(|e| ModelsError::io("read", path, e))?;
        if !meta.is_file() {
            return Err(ModelsError::Invalid(format!(
                "{} is not a file (give a .th checkpoint or a .yaml descriptor)",
                path.display()
            )));
        }
        let name = match name {
            Some(name) => ModelName::parse(name)?,
            None => {
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let lower = stem.to_lowercase();
                if !is_valid_name(&lower) {
                    return Err(ModelsError::NeedsName { stem });
                }
                ModelName::parse(&lower)?
            }
        };
        if self.read_manifest(&name)?.is_some() {
            return Err(ModelsError::AlreadyInstalled {
                name: name.to_string(),
            });
        }
        let original = path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let is_descriptor = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"));
        if is_descriptor {
            let text = read_descriptor_text(path)?;
            let dir = match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let mut sources: Vec<PathBuf> = Vec::new();
            for signature in descriptor_signatures(&text, path)? {
                let file = audiomill_separate::bag::resolve_signature(&dir, &signature)?;
                if !sources.contains(&file) {
                    sources.push(file);
                }
            }
            let mut files = Vec::with_capacity(sources.len());
            for source in &sources {
                let file_name = source
                    .file_name()
                    .and_then(|s| s.to_str())
                    .filter(|s| is_safe_checkpoint_name(s))
                    .ok_or_else(|| {
                        ModelsError::Invalid(format!(
                            "{}: unusable checkpoint file name",
                            source.display()
                        ))
                    })?;
                files.push(StageFile {
                    source: StageSource::Copy(source),
                    file_name: file_name.to_owned(),
                });
            }
            self.install(&name, Origin::Import, &text, &files, Some(original))
        } else {
            // Kept under its own name when that resolves (and carries its checksum);
            // otherwise renamed to a plain signature the engine can find.
            let file_name = if is_safe_checkpoint_name(&original) {
                original.clone()
            } else {
                "model.th".to_owned()
            };
            let (signature, _) = split_checkpoint_name(&file_name);
            let yaml = format!("models: ['{signature}']\n");
            let files = [StageFile {
                source: StageSource::Copy(path),
                file_name,
            }];
            self.install(&name, Origin::Import, &yaml, &files, Some(original))
        }
    }

    /// Removes the installed model `name` (a leftover directory without a manifest is
    /// removed too).
    pub fn remove(&self, name: &str) -> Result<()> {
        let name = ModelName::parse(name)?;
        let dir = self.model_dir(&name);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(ModelsError::Damaged {
                    name: name.to_string(),
                    reason: format!("{} is not a directory", dir.display()),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ModelsError::NothingToRemove {
                    name: name.to_string(),
                })
            }
            Err(e) => return Err(ModelsError::io("read", &dir, e)),
        }
        // Out of the way first (atomic), then deleted: a crash in between leaves only trash.
        let trash = self.dir.join(format!(".trash-{}", random_suffix()));
        std::fs::rename(&dir, &trash).map_err(|e| ModelsError::io("remove", &dir, e))?;
        std::fs::remove_dir_all(&trash).map_err(|e| ModelsError::io("remove", &trash, e))?;
        Ok(())
    }

    /// Stages `files` and the descriptor in a fresh staging directory, validates the result
    /// by loading it, writes the manifest, and renames the directory into place.
    pub(crate) fn install(
        &self,
        name: &ModelName,
        origin: Origin,
        descriptor_yaml: &str,
        files: &[StageFile<'_>],
        imported_from: Option<String>,
    ) -> Result<InstalledModel> {
        if self.read_manifest(name)?.is_some() {
            return Err(ModelsError::AlreadyInstalled {
                name: name.to_string(),
            });
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| ModelsError::io("create", &self.dir, e))?;
        self.clean_stale();
        let staging = Staging::create(&self.dir)?;
        let mut recorded = Vec::with_capacity(files.len());
        for file in files {
            let target = staging.path.join(&file.file_name);
            let (bytes, sha256) = match &file.source {
                StageSource::Copy(source) => copy_hashing(source, &target)?,
                StageSource::Link { path, sha256 } => {
                    if std::fs::hard_link(path, &target).is_err() {
                        copy_hashing(path, &target)?;
                    }
                    let bytes = std::fs::metadata(&target)
                        .map_err(|e| ModelsError::io("read", &target, e))?
                        .len();
                    (bytes, sha256.clone())
                }
            };
            recorded.push(ManifestFile {
                file_name: file.file_name.clone(),
                bytes,
                sha256,
            });
        }
        let descriptor_name = format!("{name}.yaml");
        let descriptor = staging.path.join(&descriptor_name);
        write_synced(&descriptor, descriptor_yaml.as_bytes())?;
        let bag = audiomill_separate::load_model(&descriptor, &candle_core::Device::Cpu)?;
        let manifest = Manifest {
            name: name.to_string(),
            origin,
            imported_from,
            sources: bag.sources().to_vec(),
            samplerate: bag.samplerate(),
            audio_channels: bag.channels(),
            max_segment_secs: bag.max_allowed_segment(),
            descriptor: descriptor_name.clone(),
            files: recorded,
            installed_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        drop(bag);
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| ModelsError::Invalid(format!("cannot write the manifest: {e}")))?;
        write_synced(&staging.path.join(MANIFEST_FILE), &json)?;
        sync_dir(&staging.path);

        let target = self.model_dir(name);
        // A directory without a manifest is a leftover (not installed): moved away first.
        if std::fs::symlink_metadata(&target).is_ok() {
            let trash = self.dir.join(format!(".trash-{}", random_suffix()));
            std::fs::rename(&target, &trash).map_err(|e| ModelsError::io("replace", &target, e))?;
            let _ = std::fs::remove_dir_all(&trash);
        }
        staging.commit(&target, name)?;
        sync_dir(&self.dir);
        Ok(InstalledModel {
            name: name.to_string(),
            descriptor: target.join(descriptor_name),
            stems: manifest.sources,
            samplerate: manifest.samplerate,
            audio_channels: manifest.audio_channels,
            max_segment_secs: manifest.max_segment_secs,
        })
    }

    /// Removes trash and stale staging directories left by crashed operations. Best effort:
    /// a failure here must not fail the install that triggered it.
    fn clean_stale(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let stale = if name.starts_with(".trash-") {
                true
            } else if name.starts_with(".staging-") {
                entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age > STALE_STAGING)
            } else {
                false
            };
            if stale {
                tracing::info!(dir = %entry.path().display(), "removing leftover of an interrupted operation");
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// A staging directory, removed when dropped unless committed.
struct Staging {
    path: PathBuf,
    committed: bool,
}

impl Staging {
    fn create(models_dir: &Path) -> Result<Staging> {
        let path = models_dir.join(format!(".staging-{}", random_suffix()));
        std::fs::create_dir(&path).map_err(|e| ModelsError::io("create", &path, e))?;
        Ok(Staging {
            path,
            committed: false,
        })
    }

    fn commit(mut self, target: &Path, name: &ModelName) -> Result<()> {
        match std::fs::rename(&self.path, target) {
            Ok(()) => {
                self.committed = true;
                Ok(())
            }
            // Another install of the same name won the race.
            Err(e) if target.exists() => {
                tracing::debug!(error = %e, "install lost a race");
                Err(ModelsError::AlreadyInstalled {
                    name: name.to_string(),
                })
            }
            Err(e) => Err(ModelsError::io("install", target, e)),
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// 16 random hex digits for staging and trash directory names.
pub(crate) fn random_suffix() -> String {
    format!("{:016x}", rand::random::<u64>())
}

pub(crate) use audiomill_core::digest::hex;

/// SHA-256 (hex) and size of a file.
pub(crate) fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut file = std::fs::File::open(path).map_err(|e| ModelsError::io("read", path, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| ModelsError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex(&hasher.finalize())))
}

/// Copies `from` to a new file `to`, returning its size and SHA-256; the copy is synced.
fn copy_hashing(from: &Path, to: &Path) -> Result<(u64, String)> {
    let mut input = std::fs::File::open(from).map_err(|e| ModelsError::io("read", from, e))?;
    let mut output = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)
        .map_err(|e| ModelsError::io("create", to, e))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = input
            .read(&mut buffer)
            .map_err(|e| ModelsError::io("read", from, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        output
            .write_all(&buffer[..n])
            .map_err(|e| ModelsError::io("write", to, e))?;
        bytes += n as u64;
    }
    output
        .sync_all()
        .map_err(|e| ModelsError::io("write", to, e))?;
    Ok((bytes, hex(&hasher.finalize())))
}

/// Writes a new file and syncs it, so the rename that publishes it publishes its content.
fn write_synced(path: &Path, content: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| ModelsError::io("create", path, e))?;
    file.write_all(content)
        .and_then(|()| file.sync_all())
        .map_err(|e| ModelsError::io("write", path, e))
}

/// Syncs a directory's entries (best effort: not every file system supports it).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(file) = std::fs::File::open(dir) {
        let _ = file.sync_all();
    }
}

/// A descriptor's text, bounded.
fn read_descriptor_text(path: &Path) -> Result<String> {
    let file = std::fs::File::open(path).map_err(|e| ModelsError::io("read", path, e))?;
    let mut text = String::new();
    file.take(MAX_DESCRIPTOR_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| ModelsError::io("read", path, e))?;
    if text.len() as u64 > MAX_DESCRIPTOR_BYTES {
        return Err(ModelsError::Invalid(format!(
            "{} is larger than {MAX_DESCRIPTOR_BYTES} bytes: not a model descriptor",
            path.display()
        )));
    }
    Ok(text)
}

/// The signatures a descriptor names (`models: [...]`), as the engine reads them (strings,
/// or numbers for unquoted all-digit signatures).
fn descriptor_signatures(text: &str, path: &Path) -> Result<Vec<String>> {
    let invalid = |what: String| ModelsError::Invalid(format!("{}: {what}", path.display()));
    let value: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| invalid(e.to_string()))?;
    let models = value
        .get("models")
        .and_then(|m| m.as_sequence())
        .ok_or_else(|| invalid("no `models` list: not a Demucs bag descriptor".into()))?;
    if models.is_empty() {
        return Err(invalid("the `models` list is empty".into()));
    }
    models
        .iter()
        .map(|m| match m {
            serde_yaml_ng::Value::String(s) => Ok(s.clone()),
            serde_yaml_ng::Value::Number(n) => Ok(n.to_string()),
            other => Err(invalid(format!("{other:?} is not a model signature"))),
        })
        .collect()
}

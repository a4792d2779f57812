//! The catalog: models audiomill knows how to download, with the descriptors Demucs ships.
//!
//! The descriptors are embedded verbatim (they are what `demucs.pretrained` reads from its
//! package), so an installed catalog model is laid out exactly like a Demucs repository and
//! loads through the same code path as an imported one.

/// Where the official Demucs v4 checkpoints are published.
pub const OFFICIAL_BASE_URL: &str = "https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/";

/// `htdemucs.yaml` of the Demucs package.
pub const HTDEMUCS_YAML: &str = "models: ['955717e8']\n";

/// `htdemucs_ft.yaml` of the Demucs package: four networks, each one weighted towards its
/// own source.
pub const HTDEMUCS_FT_YAML: &str = "models: ['f7e0c4bc', 'd12395a8', '92cfc3b6', '04573f0d']
weights: [
  [1., 0., 0., 0.],
  [0., 1., 0., 0.],
  [0., 0., 1., 0.],
  [0., 0., 0., 1.],
]
";

/// `htdemucs_6s.yaml` of the Demucs package.
pub const HTDEMUCS_6S_YAML: &str = "models: ['5c90dfd2']\n";

/// `hdemucs_mmi.yaml` of the Demucs package.
pub const HDEMUCS_MMI_YAML: &str = "models: ['75fc33f5']\n";

/// One checkpoint file of a catalog model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogFile {
    /// `<signature>-<checksum>.th`: the checksum (a prefix of the hex SHA-256 of the content)
    /// is what the download is verified against.
    pub file_name: String,
    /// Approximate size, for display before downloading (`None` when not known).
    pub approx_bytes: Option<u64>,
}

/// A model that can be pulled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The model's name (also its directory and descriptor name once installed).
    pub name: String,
    /// One line for listings.
    pub description: String,
    /// Stems it separates, in output order.
    pub stems: Vec<String>,
    /// The checkpoints to download.
    pub files: Vec<CatalogFile>,
    /// The bag descriptor written as `<name>.yaml` beside the checkpoints.
    pub descriptor_yaml: String,
    /// Whether the separation engine can run it; unsupported models are listed (so users
    /// know of them) but `pull` refuses them before downloading anything.
    pub supported: bool,
}

impl CatalogEntry {
    /// The approximate download size, when every file's is known.
    pub fn approx_bytes(&self) -> Option<u64> {
        self.files.iter().map(|f| f.approx_bytes).sum()
    }
}

/// The models that can be pulled.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Catalog {
    entries: Vec<CatalogEntry>,
}

fn stems(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn files(names: &[&str]) -> Vec<CatalogFile> {
    names
        .iter()
        .map(|f| CatalogFile {
            file_name: (*f).to_owned(),
            approx_bytes: None,
        })
        .collect()
}

impl Catalog {
    /// A catalog of the given entries (tests use models served locally).
    pub fn new(entries: Vec<CatalogEntry>) -> Catalog {
        Catalog { entries }
    }

    /// The official Demucs v4 models.
    pub fn official() -> Catalog {
        let four = ["drums", "bass", "other", "vocals"];
        Catalog::new(vec![
            CatalogEntry {
                name: "htdemucs".into(),
                description: "Hybrid Transformer Demucs v4, the default 4-stem model".into(),
                stems: stems(&four),
                files: files(&["955717e8-8726e21a.th"]),
                descriptor_yaml: HTDEMUCS_YAML.into(),
                supported: true,
            },
            CatalogEntry {
                name: "htdemucs_ft".into(),
                description: "htdemucs fine-tuned per source: better quality, 4x slower".into(),
                stems: stems(&four),
                files: files(&[
                    "f7e0c4bc-ba3fe64a.th",
                    "d12395a8-e57c48e6.th",
                    "92cfc3b6-ef3bcb9c.th",
                    "04573f0d-f3cf25b2.th",
                ]),
                descriptor_yaml: HTDEMUCS_FT_YAML.into(),
                supported: true,
            },
            CatalogEntry {
                name: "htdemucs_6s".into(),
                description: "htdemucs with guitar and piano stems (piano is weak)".into(),
                stems: stems(&["drums", "bass", "other", "vocals", "guitar", "piano"]),
                files: files(&["5c90dfd2-34c22ccb.th"]),
                descriptor_yaml: HTDEMUCS_6S_YAML.into(),
                supported: true,
            },
            CatalogEntry {
                name: "hdemucs_mmi".into(),
                description: "Hybrid Demucs v3 retrained on MusDB + 800 songs".into(),
                stems: stems(&four),
                files: files(&["75fc33f5-1941ce65.th"]),
                descriptor_yaml: HDEMUCS_MMI_YAML.into(),
                supported: false,
            },
        ])
    }

    /// All entries, in catalog order.
    pub fn entries(&self) -> &[CatalogEntry] {
        &self.entries
    }

    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&CatalogEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The entry to pull for `name`: the name is checked first, then looked up.
    pub fn entry(&self, name: &str) -> crate::Result<&CatalogEntry> {
        crate::name::ModelName::parse(name)?;
        self.get(name)
            .ok_or_else(|| crate::ModelsError::UnknownModel {
                name: name.to_owned(),
            })
    }

    /// The command that installs `name`: a pull for a catalog model, an import otherwise.
    pub fn install_command(&self, name: &str) -> String {
        if self.get(name).is_some() {
            format!("audiomill models pull {name}")
        } else {
            format!("audiomill models import PATH --name {name}")
        }
    }
}

/// Why the engine cannot run an unsupported catalog model (the message of `pull`).
pub(crate) fn unsupported_reason(entry: &CatalogEntry) -> String {
    format!(
        "the separation engine only runs the transformer models (htdemucs family) for now; \
         {} is not one of them",
        entry.name
    )
}

//! Import, list, resolve, remove on real files (the engine's tiny fixture models).

mod common;

use audiomill_models::{Catalog, ModelStore, ModelsError, Origin, MANIFEST_FILE};
use common::{entries, fixture, TINY1, TINY2, TINY6};
use std::path::Path;

fn store() -> (tempfile::TempDir, ModelStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path().join("models"));
    (dir, store)
}

/// Loads what resolve returns exactly as the worker will.
fn load(descriptor: &Path) -> audiomill_separate::Bag {
    audiomill_separate::load_model(descriptor, &candle_core::Device::Cpu).unwrap()
}

#[test]
fn import_single_checkpoint() {
    let (_tmp, store) = store();
    let model = store.import(&fixture(TINY1), Some("tiny")).unwrap();
    assert_eq!(model.name, "tiny");
    assert_eq!(model.stems, ["drums", "bass", "other", "vocals"]);
    assert_eq!(model.samplerate, 8000);
    assert_eq!(model.audio_channels, 2);
    assert_eq!(model.descriptor, store.dir().join("tiny/tiny.yaml"));
    assert_eq!(
        std::fs::read_to_string(&model.descriptor).unwrap(),
        "models: ['tiny0001']\n"
    );
    assert_eq!(
        entries(&store.dir().join("tiny")),
        [MANIFEST_FILE, "tiny.yaml", TINY1]
    );
    // Only the model directory: no staging left.
    assert_eq!(entries(store.dir()), ["tiny"]);
    let manifest = store.manifest("tiny").unwrap().unwrap();
    assert_eq!(manifest.origin, Origin::Import);
    assert_eq!(manifest.imported_from.as_deref(), Some(TINY1));
    assert_eq!(manifest.files.len(), 1);
    assert_eq!(manifest.files[0].bytes, 299533);
    assert_eq!(
        manifest.files[0].sha256,
        "813ac4c4bea1fb9bbb17fee0465df76a3110c69ed1a095f1cd23cafe689c9db9"
    );
    assert!(chrono::DateTime::parse_from_rfc3339(&manifest.installed_at).is_ok());
    let bag = load(&model.descriptor);
    assert_eq!(bag.sources(), ["drums", "bass", "other", "vocals"]);
}

#[test]
fn import_default_name_is_the_file_stem() {
    let (_tmp, store) = store();
    let model = store.import(&fixture(TINY6), None).unwrap();
    assert_eq!(model.name, "tiny0006-bfa2ba32");
    assert_eq!(
        model.stems,
        ["drums", "bass", "other", "vocals", "guitar", "piano"]
    );
}

#[test]
fn import_default_name_lowercased_and_invalid_stem_needs_name() {
    let (tmp, store) = store();
    let upper = tmp.path().join("MyModel.th");
    std::fs::copy(fixture(TINY1), &upper).unwrap();
    let model = store.import(&upper, None).unwrap();
    assert_eq!(model.name, "mymodel");
    // Not a checksum-carrying name: staged as a plain signature, still loads.
    load(&model.descriptor);

    let spaced = tmp.path().join("my model.th");
    std::fs::copy(fixture(TINY1), &spaced).unwrap();
    let err = store.import(&spaced, None).unwrap_err();
    assert!(matches!(err, ModelsError::NeedsName { .. }), "{err}");
    assert!(err.to_string().contains("--name"), "{err}");
    let model = store.import(&spaced, Some("spaced")).unwrap();
    load(&model.descriptor);
}

#[test]
fn import_bag_copies_only_the_named_checkpoints() {
    let (_tmp, store) = store();
    let model = store.import(&fixture("tiny_bag.yaml"), None).unwrap();
    assert_eq!(model.name, "tiny_bag");
    assert_eq!(
        entries(&store.dir().join("tiny_bag")),
        [MANIFEST_FILE, TINY1, TINY2, "tiny_bag.yaml"]
    );
    // The descriptor is copied verbatim (weights included).
    assert_eq!(
        std::fs::read_to_string(&model.descriptor).unwrap(),
        std::fs::read_to_string(fixture("tiny_bag.yaml")).unwrap()
    );
    let bag = load(&model.descriptor);
    assert_eq!(bag.members().len(), 2);

    // A one-model bag beside three checkpoints copies one.
    let model = store.import(&fixture("tiny_6s.yaml"), Some("six")).unwrap();
    assert_eq!(
        entries(&store.dir().join("six")),
        [MANIFEST_FILE, "six.yaml", TINY6]
    );
    assert_eq!(model.stems.len(), 6);
}

#[test]
fn list_shows_catalog_and_imported_models() {
    let (_tmp, store) = store();
    let catalog = Catalog::official();
    let before = store.list(&catalog).unwrap();
    let names: Vec<&str> = before.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        ["hdemucs_mmi", "htdemucs", "htdemucs_6s", "htdemucs_ft"]
    );
    assert!(before.iter().all(|m| !m.installed && m.origin.is_none()));
    let mmi = &before[0];
    assert!(!mmi.supported);
    assert!(before[1..].iter().all(|m| m.supported));
    assert_eq!(before[2].stems.len(), 6);

    store.import(&fixture(TINY1), Some("zeta")).unwrap();
    store.import(&fixture(TINY6), Some("alpha")).unwrap();
    let after = store.list(&catalog).unwrap();
    let names: Vec<&str> = after.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "alpha",
            "hdemucs_mmi",
            "htdemucs",
            "htdemucs_6s",
            "htdemucs_ft",
            "zeta"
        ]
    );
    let alpha = &after[0];
    assert!(alpha.installed);
    assert_eq!(alpha.origin, Some(Origin::Import));
    assert_eq!(alpha.stems.len(), 6);
    assert_eq!(alpha.size_bytes, Some(410909));
    assert!(!after[2].installed);

    // An import under a catalog name shows as installed in the catalog row.
    store.import(&fixture(TINY1), Some("htdemucs")).unwrap();
    let list = store.list(&catalog).unwrap();
    let row = list.iter().find(|m| m.name == "htdemucs").unwrap();
    assert!(row.installed);
    assert_eq!(row.origin, Some(Origin::Import));
    assert_eq!(list.len(), 6);

    // Serializes for the HTTP API.
    let json = serde_json::to_value(&list).unwrap();
    assert_eq!(json[0]["name"], "alpha");
    assert_eq!(json[0]["origin"], "import");
    assert_eq!(json[1]["origin"], serde_json::Value::Null);
}

#[test]
fn list_ignores_leftovers() {
    let (_tmp, store) = store();
    std::fs::create_dir_all(store.dir().join("broken")).unwrap();
    std::fs::write(store.dir().join("broken/manifest.json"), "{not json").unwrap();
    std::fs::create_dir_all(store.dir().join("empty")).unwrap();
    std::fs::create_dir_all(store.dir().join(".staging-0123")).unwrap();
    let list = store.list(&Catalog::new(vec![])).unwrap();
    assert!(list.is_empty(), "{list:?}");
    // A leftover does not block an install of that name.
    store.import(&fixture(TINY1), Some("broken")).unwrap();
    assert_eq!(store.list(&Catalog::new(vec![])).unwrap().len(), 1);
}

#[test]
fn resolve_gives_a_loadable_descriptor() {
    let (_tmp, store) = store();
    let catalog = Catalog::official();
    let imported = store
        .import(&fixture("tiny_bag.yaml"), Some("bag"))
        .unwrap();
    let resolved = store.resolve("bag", &catalog).unwrap();
    assert_eq!(resolved, imported);
    let bag = load(&resolved.descriptor);
    assert_eq!(bag.sources(), resolved.stems.as_slice());
    assert_eq!(bag.samplerate(), resolved.samplerate);
    assert_eq!(bag.channels(), resolved.audio_channels);
}

#[test]
fn resolve_not_installed_says_how_to_install() {
    let (_tmp, store) = store();
    let catalog = Catalog::official();
    let err = store.resolve("htdemucs", &catalog).unwrap_err();
    match &err {
        ModelsError::NotInstalled {
            name,
            install_command,
        } => {
            assert_eq!(name, "htdemucs");
            assert_eq!(install_command, "audiomill models pull htdemucs");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        err.to_string(),
        "model \"htdemucs\" is not installed; install it with: audiomill models pull htdemucs"
    );
    let err = store.resolve("mine", &catalog).unwrap_err();
    assert_eq!(
        err.to_string(),
        "model \"mine\" is not installed; install it with: audiomill models import PATH --name mine"
    );
}

#[test]
fn resolve_reports_a_damaged_model() {
    let (_tmp, store) = store();
    store.import(&fixture(TINY1), Some("tiny")).unwrap();
    std::fs::remove_file(store.dir().join("tiny").join(TINY1)).unwrap();
    let err = store.resolve("tiny", &Catalog::official()).unwrap_err();
    assert!(matches!(err, ModelsError::Damaged { .. }), "{err}");
    assert!(
        err.to_string().contains("audiomill models rm tiny"),
        "{err}"
    );
}

#[test]
fn invalid_names_are_refused_and_nothing_is_written() {
    let (_tmp, store) = store();
    let catalog = Catalog::official();
    let long = "a".repeat(65);
    for bad in ["../x", "A", "", long.as_str(), "x/y", ".staging-x", "a b"] {
        let err = store.import(&fixture(TINY1), Some(bad)).unwrap_err();
        assert!(
            matches!(err, ModelsError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
        assert!(err.to_string().contains("invalid model name"), "{err}");
        let err = store.resolve(bad, &catalog).unwrap_err();
        assert!(
            matches!(err, ModelsError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
        let err = store.remove(bad).unwrap_err();
        assert!(
            matches!(err, ModelsError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
        assert!(store.manifest(bad).is_err());
        let err = catalog.entry(bad).unwrap_err();
        assert!(
            matches!(err, ModelsError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
    }
    assert!(!store.dir().exists(), "{:?}", entries(store.dir()));
}

#[test]
fn import_refuses_corrupt_and_truncated_files_leaving_nothing() {
    let (tmp, store) = store();
    // Truncated, under its checksum-carrying name: the checksum check fails.
    let data = std::fs::read(fixture(TINY1)).unwrap();
    let truncated = tmp.path().join(TINY1);
    std::fs::write(&truncated, &data[..data.len() / 2]).unwrap();
    let err = store.import(&truncated, Some("trunc")).unwrap_err();
    assert!(matches!(err, ModelsError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("checksum"), "{err}");
    // Truncated without a checksum in the name: the checkpoint does not parse.
    let plain = tmp.path().join("plain.th");
    std::fs::write(&plain, &data[..data.len() / 2]).unwrap();
    let err = store.import(&plain, None).unwrap_err();
    assert!(matches!(err, ModelsError::Invalid(_)), "{err}");
    // Not a checkpoint at all.
    let junk = tmp.path().join("junk.th");
    std::fs::write(&junk, b"hello").unwrap();
    assert!(store.import(&junk, None).is_err());
    // A bag whose checkpoint is missing.
    let lonely = tmp.path().join("lonely.yaml");
    std::fs::write(&lonely, "models: ['nothere']\n").unwrap();
    let err = store.import(&lonely, None).unwrap_err();
    assert!(matches!(err, ModelsError::Invalid(_)), "{err}");
    // A yaml that is not a descriptor.
    let other = tmp.path().join("other.yaml");
    std::fs::write(&other, "hello: world\n").unwrap();
    assert!(store.import(&other, None).is_err());
    // A missing file.
    let err = store
        .import(&tmp.path().join("missing.th"), None)
        .unwrap_err();
    assert!(matches!(err, ModelsError::Io { .. }), "{err}");

    // Nothing left: no staging directory, no model directory.
    let left: Vec<String> = entries(store.dir())
        .into_iter()
        .filter(|e| e != ".partial")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(store.list(&Catalog::new(vec![])).unwrap().is_empty());
}

#[test]
fn import_refuses_to_overwrite() {
    let (_tmp, store) = store();
    store.import(&fixture(TINY1), Some("tiny")).unwrap();
    let err = store.import(&fixture(TINY6), Some("tiny")).unwrap_err();
    assert!(matches!(err, ModelsError::AlreadyInstalled { .. }), "{err}");
    assert!(
        err.to_string().contains("audiomill models rm tiny"),
        "{err}"
    );
    // The installed one is untouched.
    let model = store.resolve("tiny", &Catalog::official()).unwrap();
    assert_eq!(model.stems.len(), 4);
    assert_eq!(entries(store.dir()), ["tiny"]);
}

#[test]
fn remove_uninstalls() {
    let (_tmp, store) = store();
    let catalog = Catalog::official();
    store.import(&fixture(TINY1), Some("tiny")).unwrap();
    store.remove("tiny").unwrap();
    assert!(
        entries(store.dir()).is_empty(),
        "{:?}",
        entries(store.dir())
    );
    assert!(matches!(
        store.resolve("tiny", &catalog),
        Err(ModelsError::NotInstalled { .. })
    ));
    let err = store.remove("tiny").unwrap_err();
    assert!(matches!(err, ModelsError::NothingToRemove { .. }), "{err}");
    // Reinstallable after removal.
    store.import(&fixture(TINY1), Some("tiny")).unwrap();
}

#[test]
fn stale_staging_is_cleaned_by_the_next_install() {
    let (_tmp, store) = store();
    std::fs::create_dir_all(store.dir()).unwrap();
    let stale = store.dir().join(".staging-deadbeef");
    std::fs::create_dir(&stale).unwrap();
    std::fs::write(stale.join("x.th"), b"half").unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
    std::fs::File::open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let trash = store.dir().join(".trash-cafe");
    std::fs::create_dir(&trash).unwrap();
    let fresh = store.dir().join(".staging-fresh");
    std::fs::create_dir(&fresh).unwrap();
    store.import(&fixture(TINY1), Some("tiny")).unwrap();
    // The fresh one may belong to a concurrent install: kept.
    assert_eq!(entries(store.dir()), [".staging-fresh", "tiny"]);
}

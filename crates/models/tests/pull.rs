//! Pulls from a local HTTP server (127.0.0.1, random port) serving the engine's tiny
//! fixture models: full pull, resume after a cut, corrupted and mis-sized downloads,
//! unsupported entries. No test touches the internet.

mod common;

use audiomill_models::{
    pull, pull_with, Catalog, CatalogEntry, CatalogFile, ModelStore, ModelsError, Origin,
    PullOptions, PullProgress,
};
use common::{entries, Behaviour, TestServer, TINY1, TINY2};

fn tiny_entry() -> CatalogEntry {
    CatalogEntry {
        name: "tiny".into(),
        description: "tiny test model".into(),
        stems: vec![
            "drums".into(),
            "bass".into(),
            "other".into(),
            "vocals".into(),
        ],
        files: vec![CatalogFile {
            file_name: TINY1.into(),
            approx_bytes: Some(300_000),
        }],
        descriptor_yaml: "models: ['tiny0001']\n".into(),
        supported: true,
    }
}

fn tiny_bag_entry() -> CatalogEntry {
    CatalogEntry {
        name: "tiny_bag".into(),
        description: "two tiny test models".into(),
        stems: vec![
            "drums".into(),
            "bass".into(),
            "other".into(),
            "vocals".into(),
        ],
        files: vec![
            CatalogFile {
                file_name: TINY1.into(),
                approx_bytes: None,
            },
            CatalogFile {
                file_name: TINY2.into(),
                approx_bytes: None,
            },
        ],
        descriptor_yaml: std::fs::read_to_string(common::fixture("tiny_bag.yaml")).unwrap(),
        supported: true,
    }
}

fn store() -> (tempfile::TempDir, ModelStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::new(dir.path().join("models"));
    (dir, store)
}

/// The store's directory without the (kept) lock files.
fn partial_files(store: &ModelStore) -> Vec<String> {
    entries(&store.dir().join(".partial"))
        .into_iter()
        .filter(|e| !e.ends_with(".lock"))
        .collect()
}

#[tokio::test]
async fn pull_installs_a_model() {
    let server = TestServer::start(&[TINY1]).await;
    let (_tmp, store) = store();
    let entry = tiny_entry();
    let catalog = Catalog::new(vec![entry.clone()]);
    let mut events = Vec::new();
    let model = pull(&store, &entry, &server.base_url, |p| events.push(p))
        .await
        .unwrap();
    assert_eq!(model.name, "tiny");
    assert_eq!(model.stems, ["drums", "bass", "other", "vocals"]);
    assert_eq!(model.samplerate, 8000);
    let resolved = store.resolve("tiny", &catalog).unwrap();
    assert_eq!(resolved, model);
    let bag =
        audiomill_separate::load_model(&resolved.descriptor, &candle_core::Device::Cpu).unwrap();
    assert_eq!(bag.sources().len(), 4);
    let manifest = store.manifest("tiny").unwrap().unwrap();
    assert_eq!(manifest.origin, Origin::Catalog);
    assert_eq!(manifest.files[0].bytes, 299533);
    assert!(manifest.files[0].sha256.starts_with("813ac4c4"));
    // Downloads are cleaned up; no staging left.
    assert!(partial_files(&store).is_empty());
    assert_eq!(entries(store.dir()), [".partial", "tiny"]);
    // Progress: started, bytes up to the total, verifying, installing.
    assert!(matches!(
        &events[0],
        PullProgress::Started {
            resume_from: 0,
            index: 0,
            count: 1,
            ..
        }
    ));
    assert!(events.contains(&PullProgress::Downloading {
        file: TINY1.into(),
        downloaded: 299533,
        total: Some(299533),
    }));
    assert_eq!(events.last(), Some(&PullProgress::Installing));
    // One plain request.
    assert_eq!(server.requests(), [(TINY1.to_owned(), None)]);

    let list = store.list(&catalog).unwrap();
    assert!(list[0].installed);
    assert_eq!(list[0].origin, Some(Origin::Catalog));

    // A second pull refuses before downloading.
    let err = pull(&store, &entry, &server.base_url, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ModelsError::AlreadyInstalled { .. }), "{err}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn pull_installs_a_bag() {
    let server = TestServer::start(&[TINY1, TINY2]).await;
    let (_tmp, store) = store();
    let model = pull(&store, &tiny_bag_entry(), &server.base_url, |_| {})
        .await
        .unwrap();
    assert_eq!(
        entries(&store.dir().join("tiny_bag")),
        ["manifest.json", TINY1, TINY2, "tiny_bag.yaml"]
    );
    let bag = audiomill_separate::load_model(&model.descriptor, &candle_core::Device::Cpu).unwrap();
    assert_eq!(bag.members().len(), 2);
}

#[tokio::test]
async fn pull_resumes_an_interrupted_download() {
    let server = TestServer::start(&[TINY1]).await;
    let (_tmp, store) = store();
    let entry = tiny_entry();
    server.set(Behaviour {
        cut_after: Some(100_000),
        ..Behaviour::default()
    });
    let err = pull(&store, &entry, &server.base_url, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ModelsError::Download { .. }), "{err}");
    assert!(err.to_string().contains("resume"), "{err}");
    let part = store.dir().join(".partial").join(format!("{TINY1}.part"));
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept > 0 && kept < 299533, "{kept}");
    assert!(store.manifest("tiny").unwrap().is_none());

    let mut events = Vec::new();
    pull(&store, &entry, &server.base_url, |p| events.push(p))
        .await
        .unwrap();
    assert!(matches!(
        &events[0],
        PullProgress::Started { resume_from, .. } if *resume_from == kept
    ));
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1].1.as_deref(),
        Some(format!("bytes={kept}-").as_str())
    );
    let manifest = store.manifest("tiny").unwrap().unwrap();
    assert_eq!(manifest.files[0].bytes, 299533);
    assert!(partial_files(&store).is_empty());
}

#[tokio::test]
async fn pull_restarts_when_the_server_ignores_the_range() {
    let server = TestServer::start(&[TINY1]).await;
    let (_tmp, store) = store();
    // A part that is not the start of the file: the server answers 200, it is replaced.
    let partial = store.dir().join(".partial");
    std::fs::create_dir_all(&partial).unwrap();
    std::fs::write(partial.join(format!("{TINY1}.part")), vec![7u8; 300_000]).unwrap();
    // 300000 > file size: the server answers 416, the part is dropped and fetched again.
    pull(&store, &tiny_entry(), &server.base_url, |_| {})
        .await
        .unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(requests[0].1.as_deref(), Some("bytes=300000-"));
    assert_eq!(requests[1].1, None);
}

#[tokio::test]
async fn corrupted_download_is_discarded() {
    let server = TestServer::start(&[TINY1]).await;
    let (_tmp, store) = store();
    server.set(Behaviour {
        flip: true,
        ..Behaviour::default()
    });
    let err = pull(&store, &tiny_entry(), &server.base_url, |_| {})
        .await
        .unwrap_err();
    match &err {
        ModelsError::Checksum {
            file,
            expected,
            actual,
        } => {
            assert_eq!(file, TINY1);
            assert_eq!(expected, "813ac4c4");
            assert_eq!(actual.len(), 8);
            assert_ne!(actual, "813ac4c4");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        partial_files(&store).is_empty(),
        "{:?}",
        partial_files(&store)
    );
    assert!(store.manifest("tiny").unwrap().is_none());
    assert_eq!(entries(store.dir()), [".partial"]);
}

#[tokio::test]
async fn truncated_body_is_not_installed() {
    let server = TestServer::start(&[TINY1]).await;
    let (_tmp, store) = store();
    // Declares more bytes than it sends.
    server.set(Behaviour {
        extra_length: 1000,
        ..Behaviour::default()
    });
    let err = pull(&store, &tiny_entry(), &server.base_url, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ModelsError::Download { .. } | ModelsError::SizeMismatch { .. }
        ),
        "{err}"
    );
    assert!(store.manifest("tiny").unwrap().is_none());
    assert_eq!(entries(store.dir()), [".partial"]);
    // What did arrive is kept and resumed; a well-behaved server then completes it.
    server.set(Behaviour::default());
    pull(&store, &tiny_entry(), &server.base_url, |_| {})
        .await
        .unwrap();
}

#[tokio::test]
async fn range_that_does_not_continue_the_part_is_a_size_mismatch() {
    let server = TestServer::start(&[TINY1]).await;
    let (_tmp, store) = store();
    let partial = store.dir().join(".partial");
    std::fs::create_dir_all(&partial).unwrap();
    let data = std::fs::read(common::fixture(TINY1)).unwrap();
    let part = partial.join(format!("{TINY1}.part"));
    std::fs::write(&part, &data[..1000]).unwrap();
    server.set(Behaviour {
        wrong_range_start: true,
        ..Behaviour::default()
    });
    let err = pull(&store, &tiny_entry(), &server.base_url, |_| {})
        .await
        .unwrap_err();
    match err {
        ModelsError::SizeMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, 1000);
            assert_eq!(actual, 0);
        }
        other => panic!("{other:?}"),
    }
    assert!(!part.exists());
    assert!(store.manifest("tiny").unwrap().is_none());
}

#[tokio::test]
async fn oversized_file_is_refused() {
    let server = TestServer::start(&[TINY1]).await;
    let (_tmp, store) = store();
    let options = PullOptions {
        base_url: server.base_url.clone(),
        max_file_bytes: 1000,
        ..PullOptions::default()
    };
    let err = pull_with(&store, &tiny_entry(), &options, |_| {})
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ModelsError::TooLarge {
                bytes: 299533,
                limit: 1000,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        partial_files(&store).is_empty(),
        "{:?}",
        partial_files(&store)
    );
}

#[tokio::test]
async fn missing_file_is_a_clear_http_error() {
    let server = TestServer::start(&[]).await;
    let (_tmp, store) = store();
    let err = pull(&store, &tiny_entry(), &server.base_url, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ModelsError::Download { .. }), "{err}");
    assert!(err.to_string().contains("404"), "{err}");
    assert!(store.manifest("tiny").unwrap().is_none());
}

#[tokio::test]
async fn unreachable_server_is_a_download_error() {
    // A port nobody listens on (bound, then released).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let (_tmp, store) = store();
    let err = pull(&store, &tiny_entry(), &format!("http://{addr}/"), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ModelsError::Download { .. }), "{err}");
    // The https client (rustls, compiled-in roots) sets up without a system CA store.
    let err = pull(&store, &tiny_entry(), &format!("https://{addr}/"), |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ModelsError::Download { .. }), "{err}");
}

#[tokio::test]
async fn unsupported_entry_is_refused_without_contacting_the_server() {
    let server = TestServer::start(&[TINY1]).await;
    let (_tmp, store) = store();
    let mut entry = tiny_entry();
    entry.supported = false;
    let err = pull(&store, &entry, &server.base_url, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ModelsError::Unsupported { .. }), "{err}");
    assert!(server.requests().is_empty());
    assert!(!store.dir().exists());

    // The official catalog's hdemucs_mmi is refused the same way (no network at all).
    let official = Catalog::official();
    let mmi = official.entry("hdemucs_mmi").unwrap();
    let err = pull(&store, mmi, "http://127.0.0.1:9/", |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ModelsError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("not supported"), "{err}");
}

#[tokio::test]
async fn unknown_catalog_name() {
    let err = Catalog::official().entry("nosuch").unwrap_err();
    assert!(matches!(err, ModelsError::UnknownModel { .. }), "{err}");
}

#[tokio::test]
async fn catalog_file_without_checksum_is_refused() {
    let server = TestServer::start(&[TINY1]).await;
    let (_tmp, store) = store();
    let mut entry = tiny_entry();
    entry.files[0].file_name = "../evil.th".into();
    let err = pull(&store, &entry, &server.base_url, |_| {})
        .await
        .unwrap_err();
    assert!(matches!(err, ModelsError::Invalid(_)), "{err}");
    assert!(server.requests().is_empty());
}

#[test]
fn official_catalog() {
    let catalog = Catalog::official();
    let names: Vec<&str> = catalog.entries().iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        ["htdemucs", "htdemucs_ft", "htdemucs_6s", "hdemucs_mmi"]
    );
    let ft = catalog.get("htdemucs_ft").unwrap();
    assert_eq!(ft.files.len(), 4);
    assert_eq!(ft.descriptor_yaml, audiomill_models::HTDEMUCS_FT_YAML);
    assert!(ft.descriptor_yaml.starts_with(
        "models: ['f7e0c4bc', 'd12395a8', '92cfc3b6', '04573f0d']\nweights: [\n  [1., 0., 0., 0.],"
    ));
    assert_eq!(
        catalog.get("htdemucs").unwrap().files[0].file_name,
        "955717e8-8726e21a.th"
    );
    assert!(!catalog.get("hdemucs_mmi").unwrap().supported);
    assert_eq!(
        audiomill_models::OFFICIAL_BASE_URL,
        "https://dl.fbaipublicfiles.com/demucs/hybrid_transformer/"
    );
}

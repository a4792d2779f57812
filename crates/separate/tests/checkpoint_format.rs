//! Reading official-format checkpoints: the committed fixtures (written by the reference's
//! `serialize_model` + `save_with_checksum`) inspect and load with the hyperparameters
//! `models.json` lists, and damaged or foreign files give clean errors.

use audiomill_separate::{inspect_checkpoint, load_network, SeparateError};
use candle_core::Device;
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn models() -> serde_json::Map<String, Value> {
    let text = std::fs::read_to_string(fixtures().join("models.json")).expect("models.json");
    match serde_json::from_str(&text).expect("models.json") {
        Value::Object(m) => m,
        _ => panic!("models.json is not an object"),
    }
}

#[test]
fn fixture_checkpoints_inspect_and_load() {
    let models = models();
    assert_eq!(models.len(), 3, "three fixture models");
    for (signature, model) in &models {
        let path = fixtures().join(model["file"].as_str().expect("file"));
        let info = inspect_checkpoint(&path).unwrap_or_else(|e| panic!("{signature}: {e}"));
        let klass = model["klass"].as_str().expect("klass");
        assert_eq!(
            Some(info.class.as_str()),
            klass.rsplit('.').next(),
            "{signature}"
        );
        let kwargs = &model["kwargs"];
        let sources: Vec<String> = kwargs["sources"]
            .as_array()
            .expect("sources")
            .iter()
            .map(|s| s.as_str().expect("source").to_owned())
            .collect();
        assert_eq!(info.sources, sources, "{signature}");
        assert_eq!(
            u64::from(info.samplerate),
            kwargs["samplerate"].as_u64().unwrap()
        );
        assert_eq!(
            info.audio_channels as u64,
            kwargs["audio_channels"].as_u64().unwrap()
        );
        let segment = kwargs["segment"].as_array().expect("segment fraction");
        assert_eq!(
            info.segment,
            (segment[0].as_u64().unwrap(), segment[1].as_u64().unwrap()),
            "{signature}"
        );
        let network =
            load_network(&path, &Device::Cpu).unwrap_or_else(|e| panic!("{signature}: {e}"));
        assert_eq!(network.info(), &info);
    }
}

/// The fixture bytes, the name of the pickle entry and each entry's content.
fn entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut f = zip.by_index(i).unwrap();
            let mut data = Vec::new();
            f.read_to_end(&mut data).unwrap();
            (f.name().unwrap().into_owned(), data)
        })
        .collect()
}

/// A torch-like zip (stored entries) from `(name, content)` pairs.
fn write_zip(path: &Path, entries: &[(String, Vec<u8>)]) {
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, data) in entries {
        w.start_file(name.as_str(), options).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap();
}

fn first_fixture() -> PathBuf {
    let models = models();
    let model = models.values().next().expect("a model");
    fixtures().join(model["file"].as_str().expect("file"))
}

fn assert_checkpoint_error(path: &Path, what: &str) {
    match inspect_checkpoint(path) {
        Err(SeparateError::Checkpoint(m)) => println!("{what}: {m}"),
        other => panic!("{what}: expected a checkpoint error, got {other:?}"),
    }
    match load_network(path, &Device::Cpu) {
        Err(SeparateError::Checkpoint(_)) => {}
        Err(other) => panic!("{what}: expected a checkpoint error, got {other}"),
        Ok(_) => panic!("{what}: loaded"),
    }
}

#[test]
fn damaged_and_foreign_files_are_clean_errors() {
    let dir = tempfile::tempdir().unwrap();
    let original = std::fs::read(first_fixture()).unwrap();

    let truncated = dir.path().join("truncated.th");
    for len in [
        0,
        10,
        original.len() / 3,
        original.len() / 2,
        original.len() - 30,
    ] {
        std::fs::write(&truncated, &original[..len]).unwrap();
        assert_checkpoint_error(&truncated, &format!("truncated to {len} bytes"));
    }

    let not_zip = dir.path().join("not_zip.th");
    std::fs::write(&not_zip, b"models: ['tiny0001']\n").unwrap();
    assert_checkpoint_error(&not_zip, "not a zip");

    let all = entries(&first_fixture());
    let no_pickle = dir.path().join("no_pickle.th");
    let without: Vec<_> = all
        .iter()
        .filter(|(n, _)| !n.ends_with("data.pkl"))
        .cloned()
        .collect();
    assert_eq!(without.len() + 1, all.len());
    write_zip(&no_pickle, &without);
    assert_checkpoint_error(&no_pickle, "zip without data.pkl");

    // A flipped bit in the stored pickle: the zip's CRC-32 no longer matches.
    let (pickle_name, pickle) = all.iter().find(|(n, _)| n.ends_with("data.pkl")).unwrap();
    let at = original
        .windows(pickle.len().min(64))
        .position(|w| w == &pickle[..pickle.len().min(64)])
        .expect("the pickle is stored uncompressed");
    let mut flipped = original.clone();
    flipped[at + pickle.len() / 2] ^= 0x10;
    let bit_flipped = dir.path().join("bit_flipped.th");
    std::fs::write(&bit_flipped, &flipped).unwrap();
    assert_checkpoint_error(&bit_flipped, &format!("bit flipped in {pickle_name}"));

    // Removing or adding a weight, or changing a shape, is caught against the kwargs.
    let state_key = b"encoder.0.conv.bias";
    let pos = pickle
        .windows(state_key.len())
        .position(|w| w == state_key)
        .expect("a state key");
    let mut renamed = pickle.clone();
    renamed[pos] = b'x';
    let mut changed = all.clone();
    changed
        .iter_mut()
        .find(|(n, _)| n.ends_with("data.pkl"))
        .unwrap()
        .1 = renamed;
    let renamed_path = dir.path().join("renamed.th");
    write_zip(&renamed_path, &changed);
    assert!(
        inspect_checkpoint(&renamed_path).is_ok(),
        "kwargs are intact"
    );
    match load_network(&renamed_path, &Device::Cpu) {
        Err(SeparateError::Checkpoint(m)) => {
            assert!(m.contains("missing weight encoder.0.conv.bias"), "{m}")
        }
        Err(e) => panic!("renamed weight: {e}"),
        Ok(_) => panic!("renamed weight loaded"),
    }
}

/// Corruption that keeps the zip valid (the CRC recomputed) reaches the pickle reader and the
/// loader: every outcome must be an error or a model, never a panic or a runaway allocation.
#[test]
fn corrupted_pickles_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let all = entries(&first_fixture());
    let index = all
        .iter()
        .position(|(n, _)| n.ends_with("data.pkl"))
        .unwrap();
    let pickle = all[index].1.clone();
    let path = dir.path().join("corrupt.th");
    let mut state = 0x2545_f491_u32;
    let mut errors = 0;
    let rounds = 300;
    for round in 0..rounds {
        // xorshift: deterministic positions and values.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let mut corrupt = pickle.clone();
        let at = state as usize % corrupt.len();
        corrupt[at] = if round % 2 == 0 {
            corrupt[at] ^ (1 << (state >> 29))
        } else {
            (state >> 8) as u8
        };
        if round % 7 == 0 {
            corrupt.truncate(at);
        }
        let mut files = all.clone();
        files[index].1 = corrupt;
        write_zip(&path, &files);
        let inspected = inspect_checkpoint(&path);
        let loaded = load_network(&path, &Device::Cpu);
        if inspected.is_err() || loaded.is_err() {
            errors += 1;
        }
    }
    println!("{errors} of {rounds} corruptions refused");
    assert!(errors > rounds / 2);
}

/// A checkpoint outside the supported family is refused as unsupported, naming what.
#[test]
fn other_models_are_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let all = entries(&first_fixture());
    let index = all
        .iter()
        .position(|(n, _)| n.ends_with("data.pkl"))
        .unwrap();
    let pickle = &all[index].1;
    let find = |needle: &[u8]| {
        pickle
            .windows(needle.len())
            .position(|w| w == needle)
            .expect("in the pickle")
    };
    let write = |name: &str, pickle: Vec<u8>| {
        let mut files = all.clone();
        files[index].1 = pickle;
        let path = dir.path().join(name);
        write_zip(&path, &files);
        path
    };

    // klass = demucs.hdemucs.HDemucs (hdemucs_mmi): inspects, does not load.
    let global = b"cdemucs.htdemucs\nHTDemucs\n";
    let at = find(global);
    let mut hdemucs = pickle[..at].to_vec();
    hdemucs.extend_from_slice(b"cdemucs.hdemucs\nHDemucs\n");
    hdemucs.extend_from_slice(&pickle[at + global.len()..]);
    let path = write("hdemucs.th", hdemucs);
    assert_eq!(inspect_checkpoint(&path).unwrap().class, "HDemucs");
    match load_network(&path, &Device::Cpu) {
        Err(SeparateError::Unsupported(m)) => assert!(m.contains("HDemucs"), "{m}"),
        other => panic!("HDemucs: {:?}", other.err()),
    }

    // dconv_mode = 1 (DConv in the encoder only): `X len "dconv_mode" q id K 3`.
    let key = b"dconv_mode";
    let at = find(key) + key.len();
    assert_eq!(
        (pickle[at], pickle[at + 2], pickle[at + 3]),
        (b'q', b'K', 3)
    );
    let mut mode1 = pickle.clone();
    mode1[at + 3] = 1;
    let path = write("dconv_mode.th", mode1);
    match load_network(&path, &Device::Cpu) {
        Err(SeparateError::Unsupported(m)) => assert!(m.contains("dconv_mode"), "{m}"),
        other => panic!("dconv_mode 1: {:?}", other.err()),
    }
}

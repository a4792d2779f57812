//! `probe_decode`: any bytes, as a file, through `probe` and a full decode with [`Decoder`]
//! under tight limits. Neither may panic (outside symphonia, whose panics the engine catches),
//! and the two must agree with each other.
//!
//! The engine reads paths, not memory, so each input is written to one file per process (in
//! `/dev/shm` when there is one) and read back from there.
//!
//! # Which panics are findings
//! libfuzzer-sys installs a panic hook that aborts on *every* panic, even one that is caught.
//! The engine runs each call into symphonia under `catch_unwind` and turns a panic there into
//! `DecodeFailed` (lib.rs, "Errors, never panics"), so a panic raised inside symphonia is
//! handled behaviour, not a crash. The hook installed here lets those unwind to the engine's
//! guard (and prints each distinct location once, as a note about symphonia), and aborts —
//! a crash for libFuzzer — on any other panic: one from audiomill's own code is a bug.

#![no_main]

use audiomill_core::Limits;
use audiomill_media::{probe, Decoder};
use libfuzzer_sys::fuzz_target;
use std::collections::HashSet;
use std::panic::PanicHookInfo;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

/// Ten minutes, eight channels, 192 kHz: what a small deployment might allow.
fn limits() -> Limits {
    Limits {
        max_duration_secs: 600,
        max_sample_rate: 192_000,
        max_channels: 8,
        ..Limits::default()
    }
}

/// The file each input is written to.
fn input_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let shm = PathBuf::from("/dev/shm");
        let dir = if shm.is_dir() {
            shm
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("audiomill-fuzz-{}", std::process::id()))
    })
}

/// Whether the panic was raised inside symphonia: at a source location of one of its crates,
/// or, for a panic located in the standard library (an allocation size overflow, say), with a
/// symphonia frame nearer to it on the stack than any audiomill frame.
fn raised_in_symphonia(info: &PanicHookInfo<'_>) -> bool {
    let file = info.location().map_or("", |l| l.file());
    if file.contains("/symphonia") {
        return true;
    }
    if file.contains("/audiomill") || file.contains("/crates/") {
        return false;
    }
    let trace = std::backtrace::Backtrace::force_capture().to_string();
    for line in trace.lines() {
        let line = line.trim_start();
        if line.starts_with("at ") {
            continue;
        }
        if line.contains("symphonia") {
            return true;
        }
        if line.contains("audiomill_media") || line.contains("probe_decode") {
            return false;
        }
    }
    false
}

fn install_panic_hook() {
    let abort_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if raised_in_symphonia(info) {
            static SEEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);
            let location = info
                .location()
                .map_or_else(|| "?".to_string(), |l| format!("{}:{}", l.file(), l.line()));
            let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
            if seen
                .get_or_insert_with(HashSet::new)
                .insert(location.clone())
            {
                eprintln!("note: symphonia panicked (caught by the engine) at {location}");
            }
            return;
        }
        // libfuzzer-sys's hook: prints the panic, then aborts.
        abort_hook(info);
    }));
}

fuzz_target!(
    init: {
        install_panic_hook();
    },
    |data: &[u8]| {
        let path = input_path();
        std::fs::write(path, data).expect("write the input file");
        let limits = limits();
        let probed = probe(path, &limits);
        let mut decoder = match Decoder::open(path, &limits) {
            Ok(decoder) => decoder,
            Err(e) => {
                // Opening probes first: a refused probe is refused the same way.
                if let Err(p) = &probed {
                    assert_eq!(p.code(), e.code(), "probe: {p}; open: {e}");
                }
                return;
            }
        };
        let info = probed.expect("the decoder opened a file that does not probe");
        assert_eq!(&info, decoder.info());
        assert!(info.channels >= 1 && info.channels <= limits.max_channels);
        assert!(info.sample_rate >= 1 && info.sample_rate <= limits.max_sample_rate);
        let channels = usize::from(decoder.channels());
        let max_frames = limits.max_duration_secs * u64::from(decoder.sample_rate());
        let mut frames = 0u64;
        loop {
            match decoder.next_chunk() {
                Ok(Some(chunk)) => {
                    assert!(!chunk.is_empty(), "empty chunk");
                    assert_eq!(chunk.len() % channels, 0, "partial frame in a chunk");
                    frames += (chunk.len() / channels) as u64;
                    assert!(frames <= max_frames, "decoded past the duration limit");
                    assert_eq!(frames, decoder.frames_decoded());
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
);

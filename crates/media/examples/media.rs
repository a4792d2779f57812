//! Runs the engine on local files, for manual checks:
//!
//! ```text
//! cargo run --release -p audiomill-media --example media -- probe IN
//! cargo run --release -p audiomill-media --example media -- analyze IN
//! cargo run --release -p audiomill-media --example media -- convert IN OUT wav|flac|mp3 [RATE [CHANNELS [KBPS]]]
//! ```

use audiomill_core::{AudioFormat, ConvertOptions, Limits};
use std::path::Path;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let limits = Limits::default();
    let started = Instant::now();
    let mut progress = |f: f64| eprint!("\r{:5.1}%", f * 100.0);
    let arg = |i: usize| args.get(i).map(String::as_str);
    let result = match (arg(0), arg(1)) {
        (Some("probe"), Some(input)) => {
            audiomill_media::probe(Path::new(input), &limits).map(|i| format!("{i:#?}"))
        }
        (Some("analyze"), Some(input)) => audiomill_media::analyze(
            Path::new(input),
            &Default::default(),
            &limits,
            &mut progress,
        )
        .map(|a| format!("{a:#?}")),
        (Some("convert"), Some(input)) if args.len() >= 4 => {
            let format = match args[3].as_str() {
                "flac" => AudioFormat::Flac,
                "mp3" => AudioFormat::Mp3,
                _ => AudioFormat::Wav,
            };
            let number = |i: usize| arg(i).and_then(|v| v.parse().ok());
            let options = ConvertOptions {
                sample_rate: number(4),
                channels: number(5).map(|c: u32| c as u16),
                bitrate: number(6),
                ..ConvertOptions::to_format(format)
            };
            audiomill_media::convert(
                Path::new(input),
                Path::new(&args[2]),
                &options,
                &limits,
                &mut progress,
            )
            .map(|i| format!("{i:#?}"))
        }
        _ => {
            eprintln!("usage: media probe|analyze IN | media convert IN OUT wav|flac|mp3 [RATE [CHANNELS [KBPS]]]");
            std::process::exit(2);
        }
    };
    eprintln!();
    match result {
        Ok(text) => println!("{text}\nin {:.2?}", started.elapsed()),
        Err(e) => {
            println!(
                "error [{}]: {}\n(detail: {e})",
                e.code(),
                e.public_message()
            );
            std::process::exit(1);
        }
    }
}

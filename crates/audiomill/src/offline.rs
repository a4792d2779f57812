//! `audiomill analyze FILE` and `audiomill convert IN OUT`: the engines without a server.

use anyhow::{bail, Context};
use audiomill_core::{Operation, OperationKind};
use std::process::ExitCode;

use crate::cli::{AnalyzeArgs, ConvertArgs};
use crate::config::Config;

pub fn analyze(config: &Config, args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    // Through the same validation as the API.
    let mut options = serde_json::json!({});
    if let Some(buckets) = args.waveform_buckets {
        options["waveform_buckets"] = buckets.into();
    }
    if args.no_tempo {
        options["tempo"] = false.into();
    }
    let Operation::Analyze(options) = Operation::from_parts(OperationKind::Analyze, &options)
        .map_err(|e| anyhow::anyhow!("{e}"))?
    else {
        unreachable!("parsed as analyze")
    };
    let analysis = audiomill_media::analyze(&args.file, &options, &config.limits, &mut |_| {})
        .map_err(|e| anyhow::anyhow!("{}: {}", args.file.display(), e.public_message()))?;
    println!("{}", serde_json::to_string_pretty(&analysis)?);
    Ok(ExitCode::SUCCESS)
}

pub fn convert(config: &Config, args: ConvertArgs) -> anyhow::Result<ExitCode> {
    let format = match &args.format {
        Some(f) => f.clone(),
        None => args
            .output
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .context("give --format, or an output name ending in .wav, .flac or .mp3")?,
    };
    // Build the options through the same validation as the API, so both refuse the same things.
    let options = serde_json::json!({
        "format": format,
        "sample_rate": args.sample_rate,
        "channels": args.channels,
        "bitrate": args.bitrate,
    });
    let operation = Operation::from_parts(OperationKind::Convert, &options)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let Operation::Convert(options) = operation else {
        unreachable!("parsed as convert")
    };
    if args.output.exists() && same_file(&args.input, &args.output) {
        bail!("the output would overwrite the input");
    }
    let info = audiomill_media::convert(
        &args.input,
        &args.output,
        &options,
        &config.limits,
        &mut |_| {},
    )
    .map_err(|e| {
        let _ = std::fs::remove_file(&args.output);
        anyhow::anyhow!("{}: {}", args.input.display(), e.public_message())
    })?;
    eprintln!(
        "wrote {} ({}, {} Hz, {} ch, {:.2} s)",
        args.output.display(),
        info.codec,
        info.sample_rate,
        info.channels,
        info.duration_secs.unwrap_or(0.0)
    );
    Ok(ExitCode::SUCCESS)
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

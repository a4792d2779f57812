//! `audiomill analyze FILE`, `audiomill convert IN OUT` and `audiomill separate IN --out-dir
//! DIR`: the engines without a server.

use anyhow::{bail, Context};
use audiomill_core::{AudioFormat, Operation, OperationKind};
use std::process::ExitCode;

use crate::cli::{AnalyzeArgs, ConvertArgs, SeparateArgs};
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
    const NAMES: &str = "wav, flac, mp3 or opus";
    let format = match &args.format {
        // `ogg` names Opus here too; anything unknown is refused by the options' parse.
        Some(f) => AudioFormat::from_extension(f)
            .map_or_else(|| f.clone(), |format| format.extension().to_owned()),
        None => {
            let ext = args.output.extension().and_then(|e| e.to_str());
            match ext.and_then(AudioFormat::from_extension) {
                Some(format) => format.extension().to_owned(),
                None => bail!(
                    "cannot tell the output format from {}: give --format ({NAMES}), or an output \
                     name ending in .wav, .flac, .mp3, .opus or .ogg",
                    args.output.display()
                ),
            }
        }
    };
    // Build the options through the same validation as the API, so both refuse the same things.
    let mut options = serde_json::json!({
        "format": format,
        "sample_rate": args.sample_rate,
        "channels": args.channels,
        "channel": args.channel,
        "bitrate": args.bitrate,
        "quality": args.quality,
        "sample_format": args.sample_format,
        "start": args.start,
        "end": args.end,
        "gain_db": args.gain_db,
        "fade_in": args.fade_in,
        "fade_out": args.fade_out,
    });
    if let Some(threshold_db) = args.trim_silence {
        options["trim_silence"] = serde_json::json!({ "threshold_db": threshold_db });
    }
    if let Some(target_lufs) = args.normalize {
        options["normalize"] = serde_json::json!({ "target_lufs": target_lufs });
        if let Some(ceiling) = args.true_peak {
            options["normalize"]["true_peak_dbtp"] = ceiling.into();
        }
    }
    if let Some(object) = options.as_object_mut() {
        object.retain(|_, v| !v.is_null());
    }
    let operation = Operation::from_parts(OperationKind::Convert, &options)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let Operation::Convert(options) = operation else {
        unreachable!("parsed as convert")
    };
    if args.output.exists() && same_file(&args.input, &args.output) {
        bail!("the output would overwrite the input");
    }
    let converted = audiomill_media::convert(
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
    let info = &converted.media;
    eprintln!(
        "wrote {} ({}, {} Hz, {} ch, {:.2} s)",
        args.output.display(),
        info.codec,
        info.sample_rate,
        info.channels,
        info.duration_secs.unwrap_or(0.0)
    );
    if let Some(normalization) = &converted.normalization {
        eprintln!("normalized: {}", normalization.summary);
    }
    Ok(ExitCode::SUCCESS)
}

fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

pub fn separate(config: &Config, args: SeparateArgs) -> anyhow::Result<ExitCode> {
    // Through the same validation as the API's `separate` options.
    let mut options = serde_json::json!({ "model": args.model });
    if !args.stems.is_empty() {
        options["stems"] = args.stems.clone().into();
    }
    let optional = [
        ("two_stems", args.two_stems.clone().map(Into::into)),
        ("shifts", args.shifts.map(Into::into)),
        ("overlap", args.overlap.map(Into::into)),
        ("segment", args.segment.map(Into::into)),
        ("format", args.format.clone().map(Into::into)),
        ("sample_format", args.sample_format.clone().map(Into::into)),
        ("bitrate", args.bitrate.map(Into::into)),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            options[key] = value;
        }
    }
    let Operation::Separate(options) = Operation::from_parts(OperationKind::Separate, &options)
        .map_err(|e| anyhow::anyhow!("{e}"))?
    else {
        unreachable!("parsed as separate")
    };
    if !args.input.is_file() {
        bail!("{}: no such file", args.input.display());
    }
    let store = audiomill_models::ModelStore::new(config.models_dir());
    let model = store.resolve(
        options.model.as_str(),
        &audiomill_models::Catalog::official(),
    )?;
    let bag =
        audiomill_separate::load_model(&model.descriptor, &audiomill_separate::default_device())
            .map_err(|e| anyhow::anyhow!("model {}: {e}", options.model))?;
    let created = !args.out_dir.exists();
    std::fs::create_dir_all(&args.out_dir)
        .with_context(|| format!("cannot create {}", args.out_dir.display()))?;
    let params = audiomill_separate::SeparateParams::from_options(
        &options,
        args.out_dir.clone(),
        rand::random(),
    );
    let mut shown = -1i64;
    let mut progress = |fraction: f64| {
        let percent = (fraction * 100.0).floor() as i64;
        if percent != shown {
            shown = percent;
            eprint!("\rseparating: {percent:>3}%");
        }
    };
    let stems = audiomill_separate::separate_file(
        &bag,
        &args.input,
        &params,
        &config.limits,
        &mut progress,
        &|| false,
    );
    eprintln!();
    let stems = stems.map_err(|e| {
        if created {
            // Nothing of ours is left in a directory we made (the engine removed its files).
            let _ = std::fs::remove_dir(&args.out_dir);
        }
        anyhow::anyhow!("{}: {}", args.input.display(), e)
    })?;
    for stem in stems {
        eprintln!(
            "wrote {} ({} Hz, {} ch, {:.2} s)",
            stem.path.display(),
            stem.sample_rate,
            stem.channels,
            stem.frames as f64 / f64::from(stem.sample_rate.max(1))
        );
    }
    Ok(ExitCode::SUCCESS)
}

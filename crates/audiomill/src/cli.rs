//! Command-line interface.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::Overrides;

/// Self-hosted audio processing: upload, convert, analyze, separate into stems.
#[derive(Debug, Parser)]
#[command(name = "audiomill", version, about)]
pub struct Cli {
    /// Data directory: database, files, temp files [env: AUDIOMILL_DATA_DIR] [default: data]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Optional TOML configuration file [env: AUDIOMILL_CONFIG]
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The settings given as flags.
    pub fn overrides(&self) -> Overrides {
        let (listen, concurrency) = match &self.command {
            Command::Serve(args) => (args.listen, args.workers),
            _ => (None, None),
        };
        Overrides {
            config_file: self.config.clone(),
            listen,
            data_dir: self.data_dir.clone(),
            concurrency,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the HTTP API with an embedded worker.
    Serve(ServeArgs),
    /// Run only a worker (for scaled-out deployments).
    Worker,
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Manage plans (quotas and limits).
    #[command(subcommand)]
    Plan(PlanCommand),
    /// Manage accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Create or upgrade the database schema.
    Migrate,
    /// Print the effective configuration (secrets masked).
    Config,
    /// Check this installation: data directory, database, yt-dlp, URL policy, models.
    Doctor,
    /// Analyze a local file (no server needed); prints JSON.
    Analyze(AnalyzeArgs),
    /// Convert a local file (no server needed).
    Convert(ConvertArgs),
    /// Separate a local file into stems with an installed model (no server needed).
    Separate(SeparateArgs),
    /// Manage separation models: list, pull (download), import, rm.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Internal: run one job in a sandboxed child process.
    #[command(name = "__run-job", hide = true)]
    RunJob,
    /// Internal: probe one file in a sandboxed child process.
    #[command(name = "__probe", hide = true)]
    Probe { path: PathBuf },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [env: AUDIOMILL_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<SocketAddr>,
    /// Do not run jobs in this process (run `audiomill worker` elsewhere).
    #[arg(long)]
    pub no_worker: bool,
    /// Jobs run at once [env: AUDIOMILL_WORKER_CONCURRENCY] [default: number of cores]
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create a key and print it (only this once) on stdout.
    Create {
        /// A label for the key.
        #[arg(long)]
        name: String,
        /// Account the key belongs to; created on the default plan if missing. Default: an
        /// account named like the key.
        #[arg(long)]
        account: Option<String>,
        /// What the key may do: `jobs:read`, `jobs:write`, `admin`, comma-separated.
        #[arg(long, default_value = "jobs:read,jobs:write")]
        scopes: String,
    },
    /// Replace a key: a new key (same account, name and scopes) is printed, and the old one
    /// stops working after a grace period.
    Rotate {
        /// The key's id, as `key list` shows it.
        id: String,
        /// Hours the old key keeps working (0: at once).
        #[arg(long, default_value_t = 24)]
        expire_old_in_hours: u32,
    },
    /// List keys (never the secret).
    List,
    /// Revoke a key by its id (`key_…`).
    Revoke {
        /// The key's id, as `key list` shows it.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Create a plan.
    Create {
        name: String,
        #[command(flatten)]
        limits: PlanArgs,
    },
    /// Change a plan's limits; flags not given keep their value.
    Update {
        name: String,
        #[command(flatten)]
        limits: PlanArgs,
    },
    /// List plans.
    List,
}

/// The limits of a plan, as flags.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Seconds of input audio per calendar month.
    #[arg(long, value_name = "N")]
    pub audio_seconds_per_month: Option<u64>,
    /// Jobs queued or running at once.
    #[arg(long, value_name = "N")]
    pub concurrent_jobs: Option<u32>,
    /// Requests per minute per key.
    #[arg(long, value_name = "N")]
    pub requests_per_minute: Option<u32>,
    /// Largest upload, in MB (10^6 bytes).
    #[arg(long, value_name = "N")]
    pub max_upload_mb: Option<u64>,
    /// Longest input, in seconds.
    #[arg(long, value_name = "N")]
    pub max_input_seconds: Option<u64>,
    /// Operations allowed, comma-separated (default: all).
    #[arg(long, value_name = "LIST")]
    pub operations: Option<String>,
    /// Separation models allowed, comma-separated (default: all installed).
    #[arg(long, value_name = "LIST")]
    pub models: Option<String>,
    /// Longest time, in hours, that uploads and artifacts are kept. The server's own
    /// retention (retention.upload_hours, 24 by default; retention.artifact_hours, 168) caps
    /// it: the shorter applies, and `plan list` shows what results for each kind.
    #[arg(long, value_name = "N")]
    pub retention_hours: Option<u32>,
    /// Most items of a playlist download.
    #[arg(long, value_name = "N")]
    pub max_playlist_items: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Create an account on a plan.
    Create {
        name: String,
        /// The plan (default: `default`).
        #[arg(long, default_value = "default")]
        plan: String,
    },
    /// Move an account to another plan.
    SetPlan { name: String, plan: String },
    /// List accounts with their plans.
    List,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// The audio file.
    pub file: PathBuf,
    /// Buckets of the waveform overview (0 for none; default 1000).
    #[arg(long, value_name = "N")]
    pub waveform_buckets: Option<u32>,
    /// Skip the tempo estimate.
    #[arg(long)]
    pub no_tempo: bool,
}

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// The input audio file.
    pub input: PathBuf,
    /// The output file (`.wav`, `.flac`, `.mp3`, `.opus` or `.ogg` for Opus in Ogg).
    pub output: PathBuf,
    /// Output format: wav, flac, mp3 or opus [default: from the output's extension]
    #[arg(long)]
    pub format: Option<String>,
    /// Output sample rate in Hz (opus: 48000 only).
    #[arg(long)]
    pub sample_rate: Option<u32>,
    /// Output channels (1 or 2).
    #[arg(long)]
    pub channels: Option<u16>,
    /// Use only this input channel (0 = first/left).
    #[arg(long, value_name = "INDEX")]
    pub channel: Option<u16>,
    /// Bit rate in kbit/s: mp3 (CBR, 32 to 320) or opus (6 to 510).
    #[arg(long)]
    pub bitrate: Option<u32>,
    /// MP3 VBR quality, 0 (best) to 9, instead of --bitrate.
    #[arg(long, value_name = "0-9")]
    pub quality: Option<u8>,
    /// PCM sample format: s16, s24 or f32 (wav); s16 or s24 (flac).
    #[arg(long, value_name = "FORMAT")]
    pub sample_format: Option<String>,
    /// Start of the kept audio, in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub start: Option<f64>,
    /// End of the kept audio, in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub end: Option<f64>,
    /// Remove leading and trailing silence quieter than this many dBFS (e.g. -60).
    #[arg(long, value_name = "DBFS", allow_hyphen_values = true)]
    pub trim_silence: Option<f64>,
    /// Gain in dB (-60 to 24), before normalization.
    #[arg(long, value_name = "DB", allow_hyphen_values = true)]
    pub gain_db: Option<f64>,
    /// Normalize the integrated loudness to this many LUFS (EBU R128; e.g. -14, -23).
    #[arg(long, value_name = "LUFS", allow_hyphen_values = true)]
    pub normalize: Option<f64>,
    /// True-peak ceiling of --normalize, in dBTP (-9 to 0) [default: -1]
    #[arg(
        long,
        value_name = "DBTP",
        allow_hyphen_values = true,
        requires = "normalize"
    )]
    pub true_peak: Option<f64>,
    /// Fade-in length, in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub fade_in: Option<f64>,
    /// Fade-out length, in seconds.
    #[arg(long, value_name = "SECONDS")]
    pub fade_out: Option<f64>,
}

#[derive(Debug, Args)]
pub struct SeparateArgs {
    /// The input audio file.
    pub input: PathBuf,
    /// Installed model (see `audiomill models list`).
    #[arg(long, default_value = audiomill_core::separation::DEFAULT_MODEL)]
    pub model: String,
    /// Directory the stems are written to, as `<stem>.<ext>` (created if missing).
    #[arg(long, value_name = "DIR")]
    pub out_dir: PathBuf,
    /// Stems to write, comma-separated (default: all of the model's).
    #[arg(long, value_delimiter = ',', value_name = "STEM,…")]
    pub stems: Vec<String>,
    /// Write STEM and `no_STEM` (the sum of the others), e.g. `vocals` for karaoke.
    #[arg(long, value_name = "STEM")]
    pub two_stems: Option<String>,
    /// Passes with a random time shift, averaged (0 = deterministic) [default: 1]
    #[arg(long, value_name = "N")]
    pub shifts: Option<u32>,
    /// Overlap of consecutive chunks, 0 to 0.99 [default: 0.25]
    #[arg(long, value_name = "F")]
    pub overlap: Option<f64>,
    /// Chunk length in seconds (default: the model's; at most the model's for transformers).
    #[arg(long, value_name = "SECONDS")]
    pub segment: Option<f64>,
    /// Output format: wav, flac, mp3 or opus [default: wav]
    #[arg(long)]
    pub format: Option<String>,
    /// PCM sample format for wav/flac: s16, s24 or f32 [default: s16]
    #[arg(long)]
    pub sample_format: Option<String>,
    /// Bit rate in kbit/s (mp3, opus).
    #[arg(long)]
    pub bitrate: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Show installed models and those that can be pulled.
    List,
    /// Download an official model into the data directory (resumes; checks size and checksum).
    Pull {
        /// Model name, e.g. `htdemucs`, `htdemucs_ft`, `htdemucs_6s`.
        name: String,
        /// Where the checkpoint files are fetched from [env: AUDIOMILL_MODELS_URL]
        /// [default: Demucs's official download root]
        #[arg(long, value_name = "URL", env = "AUDIOMILL_MODELS_URL")]
        from: Option<String>,
    },
    /// Install model files you already have: a `.th` checkpoint, or a bag `.yaml` with its
    /// `.th` files beside it.
    Import {
        /// The `.th` or `.yaml` file.
        path: PathBuf,
        /// Name to install it under (default: the file's stem).
        #[arg(long)]
        name: Option<String>,
    },
    /// Remove an installed model.
    Rm {
        /// The model's name.
        name: String,
    },
}

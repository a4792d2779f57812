//! Command-line interface.

use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::config::Overrides;

/// Self-hosted audio processing: upload, convert, analyze.
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
    /// Create or upgrade the database schema.
    Migrate,
    /// Print the effective configuration (secrets masked).
    Config,
    /// Analyze a local file (no server needed); prints JSON.
    Analyze(AnalyzeArgs),
    /// Convert a local file (no server needed).
    Convert(ConvertArgs),
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
        /// Account the key belongs to; created if missing. Default: an account named like the key.
        #[arg(long)]
        account: Option<String>,
    },
    /// List keys (never the secret).
    List,
    /// Revoke a key by its id (`key_…`).
    Revoke {
        /// The key's id, as `key list` shows it.
        id: String,
    },
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
    /// The output file.
    pub output: PathBuf,
    /// Output format: wav, flac or mp3 (default: from the output's extension).
    #[arg(long)]
    pub format: Option<String>,
    /// Output sample rate in Hz.
    #[arg(long)]
    pub sample_rate: Option<u32>,
    /// Output channels (1 or 2).
    #[arg(long)]
    pub channels: Option<u16>,
    /// MP3 bit rate in kbit/s.
    #[arg(long)]
    pub bitrate: Option<u32>,
}

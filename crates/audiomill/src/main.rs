//! The `audiomill` binary: the server, the worker, key management and the offline CLI.
//!
//! Everything here is wiring: it reads the configuration, opens the store and the blob store,
//! and hands them to the `server` and `worker` crates; the offline commands call the `media`
//! engine directly. Errors end the process with a one-line message and a non-zero exit.

mod accounts;
mod cli;
mod config;
mod doctor;
mod keys;
mod logging;
mod models;
mod offline;
mod prober;
mod serve;

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // The job child speaks a line protocol on stdout: it gets no logging setup and no runtime.
    if let cli::Command::RunJob = cli.command {
        tune_allocator();
        return audiomill_worker::child_main();
    }
    if let cli::Command::Probe { path } = &cli.command {
        return prober::child_main(path);
    }
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // One line, the cause chain joined: what went wrong and why.
            let chain: Vec<String> = e.chain().map(|c| c.to_string()).collect();
            eprintln!("audiomill: {}", chain.join(": "));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    let overrides = cli.overrides();
    match cli.command {
        cli::Command::Serve(args) => {
            let config = config::Config::load(&overrides)?;
            logging::init(config.log_format);
            runtime()?.block_on(serve::serve(config, !args.no_worker, true))
        }
        cli::Command::Worker => {
            let config = config::Config::load(&overrides)?;
            logging::init(config.log_format);
            runtime()?.block_on(serve::serve(config, true, false))
        }
        cli::Command::Key(cmd) => {
            let config = config::Config::load(&overrides)?;
            runtime()?.block_on(keys::run(&config, cmd))
        }
        cli::Command::Plan(cmd) => {
            let config = config::Config::load(&overrides)?;
            runtime()?.block_on(accounts::plan(&config, cmd))
        }
        cli::Command::Account(cmd) => {
            let config = config::Config::load(&overrides)?;
            runtime()?.block_on(accounts::account(&config, cmd))
        }
        cli::Command::Migrate => {
            let config = config::Config::load(&overrides)?;
            runtime()?.block_on(async {
                serve::open_store(&config).await?;
                println!(
                    "database at {} is up to date",
                    config::shown(&config.database_path())
                );
                Ok(ExitCode::SUCCESS)
            })
        }
        cli::Command::Doctor => {
            let config = config::Config::load(&overrides)?;
            Ok(runtime()?.block_on(doctor::doctor(&config)))
        }
        cli::Command::Config => {
            let config = config::Config::load(&overrides)?;
            print!("{}", config.to_masked_toml());
            Ok(ExitCode::SUCCESS)
        }
        cli::Command::Analyze(args) => {
            let config = config::Config::load(&overrides)?;
            offline::analyze(&config, args)
        }
        cli::Command::Convert(args) => {
            let config = config::Config::load(&overrides)?;
            offline::convert(&config, args)
        }
        cli::Command::Separate(args) => {
            tune_allocator();
            let config = config::Config::load(&overrides)?;
            offline::separate(&config, args)
        }
        cli::Command::Models(cmd) => {
            let config = config::Config::load(&overrides)?;
            models::run(&config, cmd)
        }
        cli::Command::RunJob | cli::Command::Probe { .. } => {
            unreachable!("handled before logging setup")
        }
    }
}

/// glibc malloc settings for the processes that run the engines. The separation network
/// allocates and frees tensors of tens of MB per layer; by default glibc serves each from a
/// fresh `mmap` and unmaps it on free, so every layer page-faults its output in again (about
/// 15% of a separation's CPU time). Keeping freed memory in the heap for reuse costs no peak
/// memory: the next layer takes the same blocks. Called before any thread starts.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called while the process is
    // single-threaded, before the engines allocate.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

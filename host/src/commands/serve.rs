//! `ehrgate serve`: run the gateway until SIGTERM or SIGINT; SIGHUP reloads the config.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tracing_subscriber::EnvFilter;

#[derive(clap::Args)]
pub struct Args {
    /// The gateway's TOML configuration.
    #[arg(long, short)]
    config: PathBuf,
    /// Log format: `json` (one object a line, for log shippers) or `text`.
    #[arg(long, default_value = "json", value_parser = ["json", "text"])]
    log_format: String,
    /// Log filter, as `RUST_LOG` (for example `info,ehrgate::decision=warn`).
    #[arg(long, env = "EHRGATE_LOG", default_value = "info")]
    log: String,
    /// Worker threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let filter = EnvFilter::try_new(&args.log).context("bad `--log` filter")?;
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_format == "json" {
        subscriber.json().flatten_event(true).init();
    } else {
        subscriber.init();
    }
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(workers) = args.workers {
        runtime.worker_threads(workers.max(1));
    }
    runtime
        .build()
        .context("cannot start the async runtime")?
        .block_on(ehrgate::proxy::server::serve(args.config))?;
    Ok(ExitCode::SUCCESS)
}

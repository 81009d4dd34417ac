//! `ehrgate check`: everything `serve` does before it listens — parse and validate the
//! config, read keys, load and initialize every policy with its config — and report every
//! problem.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use ehrgate::config;
use ehrgate::engine::PolicyEngine;
use ehrgate::proxy::Gateway;
use ehrgate::state::GatewayState;

#[derive(clap::Args)]
pub struct Args {
    /// The gateway's TOML configuration.
    #[arg(long, short)]
    config: PathBuf,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = match config::load(&args.config) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "\n{} problem(s) in `{}`",
                errors.problems.len(),
                args.config.display()
            );
            return Ok(ExitCode::FAILURE);
        }
    };
    // A runtime for the Redis client (its connections live on one) and the reachability
    // check below.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let _entered = runtime.enter();
    let state = Arc::new(GatewayState::open(
        config.state,
        config.state_redis.as_ref(),
        &config.base_dir,
        &config.state_partitions,
    )?);
    if let Some(redis) = state.redis()
        && let Err(error) = runtime.block_on(redis.ping())
    {
        eprintln!(
            "{}: `state.redis`: cannot reach {}: {error}",
            args.config.display(),
            redis.describe()
        );
        return Ok(ExitCode::FAILURE);
    }
    let engine = PolicyEngine::new(config.sandbox.clone(), state)?;
    let routes = config.routes.len();
    let policies: usize = config.routes.iter().map(|r| r.policies.len()).sum();
    let warnings = config.warnings();
    if let Some(tls) = &config.tls
        && let Err(error) = ehrgate::proxy::server::tls_acceptor(tls)
    {
        eprintln!("{}: {error:#}", args.config.display());
        return Ok(ExitCode::FAILURE);
    }
    match Gateway::build(config, &engine) {
        Ok(_) => {
            for warning in &warnings {
                eprintln!("{}: warning: {warning}", args.config.display());
            }
            println!(
                "{}: ok ({}, {} loaded)",
                args.config.display(),
                count(routes, "route", "routes"),
                count(policies, "policy", "policies"),
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            for problem in &problems {
                eprintln!("{}: {problem}", args.config.display());
            }
            eprintln!(
                "\n{} problem(s) in `{}`",
                problems.len(),
                args.config.display()
            );
            Ok(ExitCode::FAILURE)
        }
    }
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

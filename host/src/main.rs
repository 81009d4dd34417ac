//! The `ehrgate` command: flags are parsed here and each subcommand lives in `commands/`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

/// A gateway for EHR and billing APIs that enforces sandboxed WebAssembly policies.
#[derive(Parser)]
#[command(name = "ehrgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(commands::serve::Args),
    /// Load and check a configuration (every policy initialized with its config) and list
    /// every problem; exits non-zero when there is any.
    Check(commands::check::Args),
    /// Make an Ed25519 key pair: for the audit log's checkpoints, or for signing policy
    /// modules (`--name policy-signing`).
    Keygen(commands::keygen::Args),
    /// Verify, query, report on and export the audit log.
    Audit(commands::audit::Args),
    /// Tools for policy authors: create a policy crate, test a module against fixture
    /// cases, sign it, inspect it.
    Policy(commands::policy::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => commands::serve::run(args),
        Command::Check(args) => commands::check::run(args),
        Command::Keygen(args) => commands::keygen::run(args),
        Command::Audit(args) => commands::audit::run(args),
        Command::Policy(args) => commands::policy::run_command(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

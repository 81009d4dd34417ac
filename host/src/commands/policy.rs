//! `ehrgate policy`: tools for policy authors.
//!
//! - `test MODULE.wasm FIXTURES.toml` runs fixture cases through the gateway's real request
//!   path (canonicalize, classify, build the canonical request) and the real engine, prints a
//!   pass/fail table with what differed, and exits non-zero when any case fails.
//! - `sign MODULE.wasm --key KEY` writes the detached signature `MODULE.wasm.sig` that
//!   `[sandbox] require_signed_modules` asks for.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::anyhow;
use ehrgate::engine::fixture::{CaseResult, load_fixture_file, run};
use ehrgate::engine::{PolicyEngine, SandboxSettings};
use ehrgate::state::MemoryState;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(clap::Subcommand)]
enum PolicyCommand {
    /// Run fixture cases against a compiled policy module.
    Test(TestArgs),
    /// Sign a compiled module (writes `MODULE.sig`).
    Sign(SignArgs),
}

#[derive(clap::Args)]
struct SignArgs {
    /// The compiled component to sign.
    module: PathBuf,
    /// The private key (`ehrgate keygen --name policy-signing --out DIR`).
    #[arg(long)]
    key: PathBuf,
}

#[derive(clap::Args)]
struct TestArgs {
    /// The compiled component (`target/wasm32-wasip2/release/<crate>.wasm`).
    module: PathBuf,
    /// The fixture file (TOML: a `config` table and `[[case]]` entries).
    fixtures: PathBuf,
    /// Per-call deadline in milliseconds (the gateway's default is 5; fixtures run on
    /// developer machines, so the default here is roomier).
    #[arg(long, default_value_t = 100)]
    deadline_ms: u64,
    /// Print only failing cases.
    #[arg(long)]
    failures_only: bool,
}

pub fn run_command(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        PolicyCommand::Test(args) => test(args),
        PolicyCommand::Sign(args) => sign(args),
    }
}

fn sign(args: SignArgs) -> anyhow::Result<ExitCode> {
    let key = ehrgate::audit::keys::read_signing_key(&args.key)?;
    let bytes = std::fs::read(&args.module)
        .map_err(|e| anyhow!("cannot read `{}`: {e}", args.module.display()))?;
    let signature = ehrgate::engine::signature::sign(&bytes, &key);
    let path = ehrgate::engine::signature::signature_path(&args.module);
    std::fs::write(&path, serde_json::to_string_pretty(&signature)? + "\n")
        .map_err(|e| anyhow!("cannot write `{}`: {e}", path.display()))?;
    println!(
        "signed {} (sha256 {})",
        args.module.display(),
        signature.sha256
    );
    println!("signature {} by key {}", path.display(), signature.key_id);
    Ok(ExitCode::SUCCESS)
}

fn test(args: TestArgs) -> anyhow::Result<ExitCode> {
    let fixtures = load_fixture_file(&args.fixtures).map_err(|e| anyhow!("{e}"))?;
    let settings = SandboxSettings {
        deadline_ms: args.deadline_ms,
        ..SandboxSettings::default()
    };
    let engine = PolicyEngine::new(settings, Arc::new(MemoryState::default()))?;
    let results = run(&engine, &args.module, &fixtures);
    print_table(&results, args.failures_only);
    let failed: Vec<&CaseResult> = results.iter().filter(|r| !r.passed).collect();
    for result in &failed {
        println!("\nFAILED {}\n{}", result.name, result.detail);
    }
    println!(
        "\n{} passed, {} failed",
        results.len() - failed.len(),
        failed.len()
    );
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_table(results: &[CaseResult], failures_only: bool) {
    let shown: Vec<&CaseResult> = results
        .iter()
        .filter(|r| !failures_only || !r.passed)
        .collect();
    let name_width = shown
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .clamp(4, 70);
    let expected_width = shown
        .iter()
        .map(|r| r.expected.len())
        .max()
        .unwrap_or(8)
        .max(8);
    println!(
        "{:<6} {:<name_width$} {:<expected_width$} actual",
        "result", "case", "expected"
    );
    for result in shown {
        let mark = if result.passed { "pass" } else { "FAIL" };
        let name: String = result.name.chars().take(name_width).collect();
        println!(
            "{mark:<6} {name:<name_width$} {:<expected_width$} {}",
            result.expected, result.actual
        );
    }
}

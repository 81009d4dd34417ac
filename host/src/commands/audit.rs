//! `ehrgate audit`: the privacy officer's tools over an audit log directory: `verify` the
//! chain and signatures, `query` records, `report` what needs review, `export` to FHIR.

use std::process::ExitCode;

pub mod export;
pub mod query;
pub mod report;
pub mod verify;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Check the hash chain and every checkpoint signature; report the first record that was
    /// edited, deleted, reordered, inserted or cut off. Exits 1 when the log was tampered
    /// with, 0 when it is intact (a line torn by a crash is a warning).
    Verify(verify::Args),
    /// Find records by user, patient, client, decision, rule, risk or time; a table, or
    /// the records as JSON lines with `--json`.
    Query(query::Args),
    /// What to review first: flagged accesses, break-the-glass, top users by distinct
    /// patients, refusals by rule, and one patient's accounting of disclosures.
    Report(report::Args),
    /// FHIR R4 AuditEvent resources, as NDJSON or a Bundle.
    Export(export::Args),
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Verify(args) => verify::run(args),
        Command::Query(args) => query::run(args),
        Command::Report(args) => report::run(args),
        Command::Export(args) => export::run(args),
    }
}

/// Whether an error is only the reader of our output going away (`| head`).
pub fn is_broken_pipe(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::BrokenPipe
}

//! `ehrgate audit export`: the log as FHIR R4 AuditEvent resources, NDJSON by default or one
//! Bundle of type `collection`, to a file or standard output.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ehrgate::audit::export::{self, ExportError, ExportFormat};

use super::is_broken_pipe;

#[derive(clap::Args)]
pub struct Args {
    /// The audit log directory.
    #[arg(long)]
    dir: PathBuf,
    /// The output format; `fhir` (FHIR R4 AuditEvent) is the one there is.
    #[arg(long, value_parser = ["fhir"])]
    format: String,
    /// One Bundle (type `collection`) instead of one AuditEvent per line.
    #[arg(long)]
    bundle: bool,
    /// Write to this file instead of standard output.
    #[arg(long)]
    out: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let format = if args.bundle {
        ExportFormat::Bundle
    } else {
        ExportFormat::Ndjson
    };
    let mut out: Box<dyn Write> = match &args.out {
        Some(path) => {
            Box::new(BufWriter::new(File::create(path).with_context(|| {
                format!("cannot create `{}`", path.display())
            })?))
        }
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    match export::export(&args.dir, format, &mut out) {
        Ok(stats) => {
            eprintln!(
                "exported {} AuditEvent(s) from {} record(s) ({})",
                stats.events, stats.records, args.format
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(ExportError::Io(error)) if is_broken_pipe(&error) => Ok(ExitCode::SUCCESS),
        Err(error) => Err(error.into()),
    }
}

//! `ehrgate audit report`: the report a privacy officer starts with, as text, JSON, or a
//! self-contained HTML page.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ehrgate::audit::report::{self, ReportOptions};

#[derive(clap::Args)]
pub struct Args {
    /// The audit log directory.
    #[arg(long)]
    dir: PathBuf,
    /// Add the accounting of disclosures for this patient id: every access to their record.
    #[arg(long)]
    patient: Option<String>,
    /// Write an HTML page (inline CSS and SVG charts, no external assets) to this file.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Print the report as JSON.
    #[arg(long, conflicts_with = "html")]
    json: bool,
    /// Rows shown per list (the most recent); totals always count everything.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    /// Users in the top-users table.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let options = ReportOptions {
        patient: args.patient,
        limit: args.limit,
        top: args.top,
    };
    let report = report::build(&args.dir, &options)?;
    if let Some(path) = &args.html {
        std::fs::write(path, report::html::render(&report))
            .with_context(|| format!("cannot write `{}`", path.display()))?;
        println!(
            "wrote {} ({} records, {} flagged for review)",
            path.display(),
            report.records,
            report.flagged.total
        );
    } else if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report::text::render(&report));
    }
    Ok(ExitCode::SUCCESS)
}

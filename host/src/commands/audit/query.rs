//! `ehrgate audit query`: records that match every filter given, streamed from the files
//! oldest first; a table by default, the records themselves (JSON lines) with `--json`.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use ehrgate::audit::query::{self, DecisionFilter, Filter, QueryError, RecordView};
use ehrgate::audit::report::text::clip;
use ehrgate::audit::time;

use super::is_broken_pipe;

#[derive(clap::Args)]
pub struct Args {
    /// The audit log directory.
    #[arg(long)]
    dir: PathBuf,
    /// The user: the token's subject or its `fhirUser` (`Practitioner/123`).
    #[arg(long)]
    user: Option<String>,
    /// A patient id the request touched.
    #[arg(long)]
    patient: Option<String>,
    /// The OAuth client id.
    #[arg(long)]
    client: Option<String>,
    /// `allow`, `deny`, `reject`, `policy-error`, `upstream-error`, or `shadow-deny`.
    #[arg(long, value_parser = parse_decision)]
    decision: Option<DecisionFilter>,
    /// A rule id: the one that refused, a finding's, or a shadow denial's.
    #[arg(long)]
    rule: Option<String>,
    /// Records with at least this risk score (0-100).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    min_risk: Option<u8>,
    /// Records at or after this time: `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM[:SS[.mmm]][Z]`, UTC.
    #[arg(long, value_parser = parse_time)]
    since: Option<u64>,
    /// Records before this time (same forms as `--since`).
    #[arg(long, value_parser = parse_time)]
    until: Option<u64>,
    /// Only records flagged for review.
    #[arg(long)]
    review: bool,
    /// Print the matching records as JSON lines, exactly as stored.
    #[arg(long)]
    json: bool,
    /// Stop after this many matches.
    #[arg(long)]
    limit: Option<u64>,
}

fn parse_decision(text: &str) -> Result<DecisionFilter, String> {
    text.parse()
}

fn parse_time(text: &str) -> Result<u64, String> {
    time::parse(text).ok_or_else(|| {
        format!("`{text}` is not a time; expected `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM[:SS[.mmm]][Z]` (UTC)")
    })
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let filter = Filter {
        user: args.user,
        patient: args.patient,
        client: args.client,
        decision: args.decision,
        rule: args.rule,
        min_risk: args.min_risk,
        since_ms: args.since,
        until_ms: args.until,
        review: args.review,
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let json = args.json;
    if !json {
        header(&mut out)?;
    }
    let result = query::run(&args.dir, &filter, args.limit, |record, line| {
        if json {
            out.write_all(line)?;
            out.write_all(b"\n")?;
        } else {
            row(&mut out, record)?;
        }
        Ok(true)
    });
    let flushed = out.flush();
    match result {
        Ok(stats) => {
            if let Err(error) = flushed
                && !is_broken_pipe(&error)
            {
                return Err(error.into());
            }
            eprintln!(
                "{} of {} records read matched ({} file(s) in range)",
                stats.matched, stats.records, stats.files
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(QueryError::Io(error)) if is_broken_pipe(&error) => Ok(ExitCode::SUCCESS),
        Err(error) => Err(error.into()),
    }
}

fn header(out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "{:<24} {:>8} {:<36} {:<24} {:<14} {:<14} {:<22} {:>6} {:>4}  {:<28} PATIENTS",
        "TIME",
        "SEQ",
        "REQUEST",
        "USER",
        "CLIENT",
        "DECISION",
        "RULE",
        "STATUS",
        "RISK",
        "RESOURCE"
    )
}

fn row(out: &mut impl Write, record: &RecordView<'_>) -> io::Result<()> {
    let client = record.principal.as_ref().map_or("-", |p| &p.client);
    let mut decision = record.decision.as_str().to_owned();
    if !record.shadow_denials.is_empty() {
        decision.push_str("+shadow");
    }
    writeln!(
        out,
        "{:<24} {:>8} {:<36} {:<24} {:<14} {:<14} {:<22} {:>6} {:>4}  {:<28} {}",
        record.time,
        record.seq,
        clip(&record.request_id, 36),
        clip(record.user().unwrap_or("anonymous"), 24),
        clip(client, 14),
        decision,
        clip(record.rule.as_deref().unwrap_or("-"), 22),
        record.status,
        record.risk,
        clip(
            &format!(
                "{} {}",
                record.interaction.as_deref().unwrap_or(&record.method),
                record.resource()
            ),
            28
        ),
        record.patients.join(",")
    )
}

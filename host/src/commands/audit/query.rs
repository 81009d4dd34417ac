//! `ehrgate audit query`: records that match every filter given, streamed from the files
//! oldest first; a table by default, the records themselves (JSON lines) with `--json`.
//! Request records by default; protocol refusals (connections and requests refused below
//! the request handler) with `--refusals`.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use ehrgate::audit::query::{
    self, DecisionFilter, Filter, QueryError, QueryStats, RecordView, RefusalFilter,
};
use ehrgate::audit::refusal::RefusalRecord;
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
    /// The client's address as seen on the socket.
    #[arg(long)]
    source: Option<String>,
    /// Protocol-refusal records instead of request records: connections and requests the
    /// gateway refused below the request handler (`--source`, `--cause`, `--since`,
    /// `--until` and `--limit` apply).
    #[arg(long, conflicts_with_all = ["user", "patient", "client", "decision", "rule", "min_risk", "review"])]
    refusals: bool,
    /// With `--refusals`: a cause (`http1-malformed`, `http2-stream-reset`, `tls-handshake`,
    /// ...), of the record or counted in an aggregate.
    #[arg(long, requires = "refusals")]
    cause: Option<String>,
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
    if args.refusals {
        return run_refusals(args);
    }
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
        source: args.source,
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
    finish(result, flushed, "records")
}

fn run_refusals(args: Args) -> anyhow::Result<ExitCode> {
    let filter = RefusalFilter {
        source: args.source,
        cause: args.cause,
        since_ms: args.since,
        until_ms: args.until,
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let json = args.json;
    if !json {
        refusal_header(&mut out)?;
    }
    let result = query::run_refusals(&args.dir, &filter, args.limit, |record, line| {
        if json {
            out.write_all(line)?;
            out.write_all(b"\n")?;
        } else {
            refusal_row(&mut out, record)?;
        }
        Ok(true)
    });
    let flushed = out.flush();
    finish(result, flushed, "protocol-refusal records")
}

fn finish(
    result: Result<QueryStats, QueryError>,
    flushed: io::Result<()>,
    what: &str,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok(stats) => {
            if let Err(error) = flushed
                && !is_broken_pipe(&error)
            {
                return Err(error.into());
            }
            eprintln!(
                "{} of {} {what} read matched ({} file(s) in range)",
                stats.matched, stats.records, stats.files
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(QueryError::Io(error)) if is_broken_pipe(&error) => Ok(ExitCode::SUCCESS),
        Err(error) => Err(error.into()),
    }
}

fn refusal_header(out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "{:<24} {:>8} {:<40} {:<9} {:<26} {:>6} {:>7}  DETAIL",
        "TIME", "SEQ", "SOURCE", "PROTOCOL", "CAUSE", "STATUS", "COUNT"
    )
}

fn refusal_row(out: &mut impl Write, record: &RefusalRecord) -> io::Result<()> {
    let source = match (&record.source_address, record.source_port) {
        (Some(address), Some(port)) if address.contains(':') => format!("[{address}]:{port}"),
        (Some(address), Some(port)) => format!("{address}:{port}"),
        (Some(address), None) => address.clone(),
        (None, _) => "(other addresses)".to_owned(),
    };
    let (cause, detail) = match &record.aggregate {
        Some(aggregate) => {
            let causes: Vec<String> = aggregate
                .causes
                .iter()
                .map(|(cause, count)| format!("{cause}={count}"))
                .collect();
            (
                "aggregate".to_owned(),
                format!("until {}: {}", aggregate.until, causes.join(" ")),
            )
        }
        None => (
            record.cause.clone().unwrap_or_else(|| "-".into()),
            record.detail.clone().unwrap_or_default(),
        ),
    };
    writeln!(
        out,
        "{:<24} {:>8} {:<40} {:<9} {:<26} {:>6} {:>7}  {}",
        record.time,
        record.seq,
        clip(&source, 40),
        record.protocol.as_deref().unwrap_or("-"),
        clip(&cause, 26),
        record
            .status
            .map_or_else(|| "-".to_owned(), |s| s.to_string()),
        record.count(),
        detail
    )
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

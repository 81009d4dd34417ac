//! `ehrgate audit verify`: the chain, the checkpoints and the log's end, checked with the
//! public key only. Exit status 0: intact (torn lines and records not yet covered by a
//! checkpoint are warnings); 1: tampered with, or unreadable.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ehrgate::audit::files;
use ehrgate::audit::keys;
use ehrgate::audit::verify::{self, ProblemKind, VerifyOptions, VerifyReport};

#[derive(clap::Args)]
pub struct Args {
    /// The audit log directory.
    #[arg(long)]
    dir: PathBuf,
    /// The public key checkpoints are signed with (`audit-signing.pub`); repeat it for logs
    /// that span a key change.
    #[arg(long = "public-key", required = true)]
    public_keys: Vec<PathBuf>,
    /// A checkpoint kept outside the log (a copy of `audit-head.json` taken earlier): the log
    /// must still reach it, which proves nothing was cut off its end. Repeatable.
    #[arg(long = "head")]
    heads: Vec<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let keys = args
        .public_keys
        .iter()
        .map(|path| keys::read_public_key(path))
        .collect::<Result<Vec<_>, _>>()?;
    let mut anchors = Vec::new();
    for path in &args.heads {
        let checkpoint = files::read_head_file(path)
            .with_context(|| format!("`--head {}` is not a checkpoint file", path.display()))?
            .with_context(|| format!("`--head {}` does not exist", path.display()))?;
        anchors.push((path.display().to_string(), checkpoint));
    }
    let report = verify::verify(&args.dir, &VerifyOptions { keys, anchors });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
    }
    Ok(if report.is_intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_summary(report: &VerifyReport) {
    println!(
        "{} records in {} file(s), {} checkpoint(s); last seq {}",
        report.records, report.files, report.checkpoints, report.last_seq
    );
    if let Some(last) = &report.last_checkpoint {
        println!(
            "last checkpoint: seq {} signed {} by key {} at {}",
            last.checkpoint.seq, last.checkpoint.time, last.checkpoint.key_id, last.location
        );
    }
    for torn in &report.torn {
        println!(
            "warning: torn line at {} ({} bytes): a write cut short by a crash, never acknowledged; not tampering",
            torn.location, torn.bytes
        );
    }
    if let Some(uncovered) = &report.uncovered {
        println!(
            "warning: records {} to {} are not yet covered by a checkpoint",
            uncovered.from_seq, uncovered.to_seq
        );
    }
    if report.anchors.is_empty() && report.problem.is_none() {
        println!(
            "warning: no head checkpoint (`audit-head.json`, `--head`): records cut off the end of the log would go unnoticed"
        );
    }
    match &report.problem {
        None => println!("ok: the log is intact (head {})", report.head_hash),
        Some(problem) => {
            let location = problem
                .location
                .as_ref()
                .map_or_else(String::new, |l| format!(" at {l}"));
            let seq = problem
                .seq
                .map_or_else(String::new, |s| format!(" (seq {s})"));
            let verdict = if problem.kind == ProblemKind::Unreadable {
                "error"
            } else {
                "TAMPERED"
            };
            println!(
                "{verdict}: {}{location}{seq}: {}",
                problem.kind.as_str(),
                problem.message
            );
        }
    }
}

//! Verification: walks every file in order, recomputes every record's hash and link, checks
//! every checkpoint's signature and head, and stops at the first problem, which it locates
//! (file, line, seq) and names: a record edited, deleted, reordered or inserted, the log
//! truncated, a checkpoint forged or contradicted.
//!
//! How each is told apart:
//! - a record whose bytes do not hash to its `hash` was edited in place;
//! - a record that hashes right but does not link to the previous one means the previous
//!   record was edited and rehashed;
//! - a `seq` beyond the next expected one is a deletion, or a reordering when the expected
//!   `seq` follows right after; a `seq` already passed is an insertion;
//! - an attacker who rewrites and rehashes everything after a point is caught by the next
//!   checkpoint, whose signature they cannot make;
//! - records cut off the end of the log are caught by a checkpoint that covers more than the
//!   log holds: the head file beside the log (`audit-head.json`) or a copy given with `--head`.
//!
//! A torn last line of a file (a crash during a write) is reported as a warning, not as
//! tampering: it was never acknowledged, and the chain continues after it. Records after the
//! last checkpoint are reported as not yet covered.

use std::path::{Path, PathBuf};

use ed25519_dalek::VerifyingKey;
use serde::Serialize;

use super::chain::{self, ChainHead, GENESIS};
use super::checkpoint::Checkpoint;
use super::files::{self, HEAD_FILE};
use super::reader::{LineKind, LogReader};

/// What to verify against.
pub struct VerifyOptions {
    /// The public keys checkpoints may be signed with.
    pub keys: Vec<VerifyingKey>,
    /// Checkpoints kept outside the log (`--head`), each with where it came from.
    pub anchors: Vec<(String, Checkpoint)>,
}

/// A place in the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Location {
    pub file: String,
    pub line: u64,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProblemKind {
    Edited,
    Deleted,
    Reordered,
    Inserted,
    Truncated,
    /// A line that is neither a record nor a checkpoint.
    Malformed,
    /// A checkpoint whose signature does not verify with any of the keys.
    ForgedCheckpoint,
    /// A validly signed checkpoint that disagrees with the records before it: they were
    /// rewritten (and rehashed) after it was signed.
    CheckpointMismatch,
    /// A file could not be read.
    Unreadable,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Edited => "edited",
            ProblemKind::Deleted => "deleted",
            ProblemKind::Reordered => "reordered",
            ProblemKind::Inserted => "inserted",
            ProblemKind::Truncated => "truncated",
            ProblemKind::Malformed => "malformed",
            ProblemKind::ForgedCheckpoint => "forged-checkpoint",
            ProblemKind::CheckpointMismatch => "checkpoint-mismatch",
            ProblemKind::Unreadable => "unreadable",
        }
    }
}

/// The first sign of tampering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: ProblemKind,
    pub location: Option<Location>,
    /// The `seq` of the record concerned, when known.
    pub seq: Option<u64>,
    pub message: String,
}

/// A line torn by a crash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TornLine {
    pub location: Location,
    pub bytes: u64,
}

/// The newest checkpoint seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeenCheckpoint {
    pub location: Location,
    pub checkpoint: Checkpoint,
}

/// Records after the last checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Uncovered {
    pub from_seq: u64,
    pub to_seq: u64,
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub dir: String,
    pub files: usize,
    pub records: u64,
    pub checkpoints: u64,
    pub last_seq: u64,
    pub head_hash: String,
    pub last_checkpoint: Option<SeenCheckpoint>,
    pub uncovered: Option<Uncovered>,
    pub torn: Vec<TornLine>,
    /// Where the checkpoints that prove the log's end came from (head file, `--head`).
    pub anchors: Vec<String>,
    pub problem: Option<Problem>,
}

impl VerifyReport {
    /// No sign of tampering (torn lines and uncovered records are warnings).
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// A `seq` beyond the expected one, classified once the next line is seen.
struct Gap {
    expected: u64,
    found: u64,
    location: Location,
}

struct Walk {
    head: ChainHead,
    head_location: Option<Location>,
    report: VerifyReport,
    gap: Option<Gap>,
    /// Anchors to check against the chain: (source, checkpoint, matched).
    anchors: Vec<(String, Checkpoint, bool)>,
}

/// Verifies the log in `dir`.
pub fn verify(dir: &Path, options: &VerifyOptions) -> VerifyReport {
    let mut walk = Walk {
        head: ChainHead::GENESIS,
        head_location: None,
        report: VerifyReport {
            dir: dir.display().to_string(),
            files: 0,
            records: 0,
            checkpoints: 0,
            last_seq: 0,
            head_hash: hex::encode(GENESIS),
            last_checkpoint: None,
            uncovered: None,
            torn: Vec::new(),
            anchors: Vec::new(),
            problem: None,
        },
        gap: None,
        anchors: Vec::new(),
    };
    if let Err(problem) = walk.load_anchors(dir, options) {
        walk.report.problem = Some(problem);
        return walk.report;
    }
    if let Err(problem) = walk.run(dir, options) {
        walk.report.problem = Some(problem);
    }
    walk.report.last_seq = walk.head.seq;
    walk.report.head_hash = hex::encode(walk.head.hash);
    let covered = walk
        .report
        .last_checkpoint
        .as_ref()
        .map_or(0, |c| c.checkpoint.seq);
    if walk.report.problem.is_none() && walk.head.seq > covered {
        walk.report.uncovered = Some(Uncovered {
            from_seq: covered + 1,
            to_seq: walk.head.seq,
        });
    }
    walk.report
}

fn problem(
    kind: ProblemKind,
    location: Option<Location>,
    seq: Option<u64>,
    message: String,
) -> Problem {
    Problem {
        kind,
        location,
        seq,
        message,
    }
}

impl Walk {
    fn load_anchors(&mut self, dir: &Path, options: &VerifyOptions) -> Result<(), Problem> {
        let head_file: PathBuf = dir.join(HEAD_FILE);
        let unreadable = |e: std::io::Error| {
            problem(
                ProblemKind::Malformed,
                None,
                None,
                format!("`{}` is not a checkpoint: {e}", head_file.display()),
            )
        };
        let mut anchors: Vec<(String, Checkpoint)> = Vec::new();
        if let Some(checkpoint) = files::read_head_file(&head_file).map_err(unreadable)? {
            anchors.push((HEAD_FILE.to_owned(), checkpoint));
        }
        anchors.extend(options.anchors.iter().cloned());
        for (source, checkpoint) in anchors {
            if let Err(error) = checkpoint.verify(&options.keys) {
                return Err(problem(
                    ProblemKind::ForgedCheckpoint,
                    Some(Location {
                        file: source,
                        line: 1,
                    }),
                    Some(checkpoint.seq),
                    format!("the checkpoint {error}"),
                ));
            }
            self.report.anchors.push(source.clone());
            self.anchors.push((source, checkpoint, false));
        }
        Ok(())
    }

    fn run(&mut self, dir: &Path, options: &VerifyOptions) -> Result<(), Problem> {
        let unreadable = |e: std::io::Error| {
            problem(
                ProblemKind::Unreadable,
                None,
                None,
                format!("cannot read the log: {e}"),
            )
        };
        let mut reader = LogReader::open(dir).map_err(unreadable)?;
        self.report.files = reader.files().len();
        if self.report.files == 0 {
            return Err(problem(
                ProblemKind::Unreadable,
                None,
                None,
                format!(
                    "no audit files (`audit-YYYYMMDD-NNNN.jsonl`) in `{}`",
                    dir.display()
                ),
            ));
        }
        while let Some(line) = reader.next_line().map_err(unreadable)? {
            let location = Location {
                file: line.file.name(),
                line: line.number,
            };
            match line.kind {
                LineKind::Torn => self.report.torn.push(TornLine {
                    location,
                    bytes: line.bytes.len() as u64,
                }),
                LineKind::Record => self.record(line.bytes, location)?,
                LineKind::Checkpoint => self.checkpoint(line.bytes, location, options)?,
            }
        }
        if let Some(gap) = self.gap.take() {
            return Err(deleted(&gap));
        }
        for (source, checkpoint, matched) in &self.anchors {
            if checkpoint.seq > self.head.seq {
                return Err(problem(
                    ProblemKind::Truncated,
                    self.head_location.clone(),
                    Some(self.head.seq),
                    format!(
                        "the log ends at seq {} but the checkpoint in `{source}` covers seq {}: records {} to {} were cut off",
                        self.head.seq,
                        checkpoint.seq,
                        self.head.seq + 1,
                        checkpoint.seq
                    ),
                ));
            }
            if !matched {
                return Err(problem(
                    ProblemKind::CheckpointMismatch,
                    None,
                    Some(checkpoint.seq),
                    format!(
                        "the checkpoint in `{source}` covers seq {} with a hash that no record of the log has: the log was rewritten",
                        checkpoint.seq
                    ),
                ));
            }
        }
        Ok(())
    }

    fn record(&mut self, bytes: &[u8], location: Location) -> Result<(), Problem> {
        let linked = chain::read_line(bytes).map_err(|e| {
            problem(
                ProblemKind::Malformed,
                Some(location.clone()),
                None,
                format!("the line {e}"),
            )
        })?;
        let seq = linked.seq;
        if let Some(gap) = self.gap.take() {
            return Err(if seq == gap.expected {
                problem(
                    ProblemKind::Reordered,
                    Some(gap.location.clone()),
                    Some(gap.found),
                    format!(
                        "record seq {} at {} comes before seq {} at {location}: records were reordered",
                        gap.found, gap.location, gap.expected
                    ),
                )
            } else {
                deleted(&gap)
            });
        }
        if linked.computed != linked.hash {
            return Err(problem(
                ProblemKind::Edited,
                Some(location),
                Some(seq),
                format!(
                    "record seq {seq} does not match its hash: it was changed after it was written"
                ),
            ));
        }
        let expected = self.head.seq + 1;
        if seq > expected {
            if self.head.seq == 0 {
                return Err(problem(
                    ProblemKind::Deleted,
                    Some(location),
                    Some(seq),
                    format!(
                        "the log starts at seq {seq}: records 1 to {} are missing",
                        seq - 1
                    ),
                ));
            }
            self.gap = Some(Gap {
                expected,
                found: seq,
                location,
            });
            return Ok(());
        }
        if seq < expected {
            let previous = self
                .head_location
                .as_ref()
                .map_or_else(String::new, |l| format!(" (after {l})"));
            return Err(problem(
                ProblemKind::Inserted,
                Some(location),
                Some(seq),
                format!(
                    "record seq {seq} appears where seq {expected} belongs{previous}, after a record with seq {}: a record was inserted",
                    self.head.seq
                ),
            ));
        }
        if linked.prev_hash != self.head.hash {
            return Err(match &self.head_location {
                None => problem(
                    ProblemKind::Edited,
                    Some(location),
                    Some(seq),
                    "the first record does not start the chain (its `prev_hash` is not 64 zeros): it was changed".into(),
                ),
                Some(previous) => problem(
                    ProblemKind::Edited,
                    Some(previous.clone()),
                    Some(self.head.seq),
                    format!(
                        "record seq {} was changed and rehashed: record seq {seq} at {location} does not link to it",
                        self.head.seq
                    ),
                ),
            });
        }
        self.head = ChainHead {
            seq,
            hash: linked.hash,
        };
        self.head_location = Some(location);
        self.report.records += 1;
        for (_, checkpoint, matched) in &mut self.anchors {
            if checkpoint.seq == seq {
                *matched = checkpoint.head_hash == hex::encode(linked.hash);
            }
        }
        Ok(())
    }

    fn checkpoint(
        &mut self,
        bytes: &[u8],
        location: Location,
        options: &VerifyOptions,
    ) -> Result<(), Problem> {
        let checkpoint = Checkpoint::parse_line(bytes).map_err(|e| {
            problem(
                ProblemKind::Malformed,
                Some(location.clone()),
                None,
                format!("the line {e}"),
            )
        })?;
        if let Err(error) = checkpoint.verify(&options.keys) {
            return Err(problem(
                ProblemKind::ForgedCheckpoint,
                Some(location),
                Some(checkpoint.seq),
                format!("the checkpoint {error}: it was forged or altered"),
            ));
        }
        if let Some(gap) = self.gap.take() {
            return Err(deleted(&gap));
        }
        let covers = |what: &str| {
            format!(
                "the checkpoint at {location} covers seq {} but {what}",
                checkpoint.seq
            )
        };
        let head_hash = hex::encode(self.head.hash);
        if checkpoint.seq > self.head.seq {
            return Err(problem(
                ProblemKind::Deleted,
                Some(location.clone()),
                Some(self.head.seq + 1),
                covers(&format!(
                    "the records before it end at seq {}: records {} to {} were deleted",
                    self.head.seq,
                    self.head.seq + 1,
                    checkpoint.seq
                )),
            ));
        }
        if checkpoint.seq < self.head.seq {
            return Err(problem(
                ProblemKind::Inserted,
                Some(location.clone()),
                Some(checkpoint.seq + 1),
                covers(&format!(
                    "records up to seq {} come before it: records were inserted",
                    self.head.seq
                )),
            ));
        }
        if checkpoint.head_hash != head_hash {
            return Err(problem(
                ProblemKind::CheckpointMismatch,
                Some(location.clone()),
                Some(checkpoint.seq),
                covers(&format!(
                    "with another hash than the records before it have: records after {} were rewritten",
                    self.report.last_checkpoint.as_ref().map_or_else(
                        || "the start of the log".to_owned(),
                        |c| format!("seq {} ({})", c.checkpoint.seq, c.location)
                    )
                )),
            ));
        }
        self.report.checkpoints += 1;
        self.report.last_checkpoint = Some(SeenCheckpoint {
            location,
            checkpoint,
        });
        Ok(())
    }
}

fn deleted(gap: &Gap) -> Problem {
    let missing = if gap.found - gap.expected == 1 {
        format!("record seq {} is missing", gap.expected)
    } else {
        format!("records {} to {} are missing", gap.expected, gap.found - 1)
    };
    problem(
        ProblemKind::Deleted,
        Some(gap.location.clone()),
        Some(gap.expected),
        format!(
            "{missing} before record seq {} at {}: deleted",
            gap.found, gap.location
        ),
    )
}

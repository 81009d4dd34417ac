//! Tampering: every way of changing a written log is detected, named and located, and an
//! untouched log of 100,000 records verifies.

use std::path::Path;

use super::*;
use crate::audit::chain::{self, ChainHead};
use crate::audit::checkpoint::Checkpoint;
use crate::audit::files::{self, HEAD_FILE};
use crate::audit::verify::{Location, ProblemKind};

/// A log of 1,200 records over several files, checkpointed every 100 records, and the
/// directory holding it.
struct Fixture {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    key: VerifyingKey,
}

fn fixture() -> Fixture {
    let temp = tempfile::tempdir().unwrap();
    let (mut settings, key) = settings(temp.path());
    settings.rotate_bytes = 256 << 10;
    write_records(&settings, 0, 1200);
    let dir = settings.dir.clone();
    let report = verify_with(&dir, &key);
    assert!(report.is_intact() && report.files >= 3, "{report:?}");
    Fixture {
        _temp: temp,
        dir,
        key,
    }
}

impl Fixture {
    fn verify(&self) -> VerifyReport {
        verify_with(&self.dir, &self.key)
    }

    fn file(&self, index: usize) -> PathBuf {
        files::list(&self.dir).unwrap()[index].path.clone()
    }

    fn lines(&self, index: usize) -> Vec<String> {
        read_lines(&self.file(index))
    }

    fn rewrite(&self, index: usize, edit: impl FnOnce(&mut Vec<String>)) {
        let path = self.file(index);
        let mut lines = read_lines(&path);
        edit(&mut lines);
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&path, text).unwrap();
    }

    fn location(&self, index: usize, line: usize) -> Location {
        Location {
            file: self
                .file(index)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            line: line as u64 + 1,
        }
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn seq_of(line: &str) -> u64 {
    chain::read_line(line.as_bytes()).unwrap().seq
}

fn record_lines(lines: &[String]) -> Vec<usize> {
    (0..lines.len())
        .filter(|&i| lines[i].starts_with("{\"seq\""))
        .collect()
}

/// Re-encodes `line` (a record) after `head`, as an attacker without the key can.
fn rehash(line: &str, head: &ChainHead) -> (String, ChainHead) {
    let mut record: AuditRecord = serde_json::from_str(line).unwrap();
    let mut out = Vec::new();
    let next = chain::append_line(&mut record, head, &mut out).unwrap();
    (String::from_utf8(out).unwrap().trim_end().to_owned(), next)
}

fn head_before(line: &str) -> ChainHead {
    let linked = chain::read_line(line.as_bytes()).unwrap();
    ChainHead {
        seq: linked.seq - 1,
        hash: linked.prev_hash,
    }
}

fn assert_problem(report: &VerifyReport, kind: ProblemKind, location: &Location, seq: u64) {
    let problem = report
        .problem
        .as_ref()
        .unwrap_or_else(|| panic!("not detected: {report:?}"));
    assert_eq!(problem.kind, kind, "{problem:?}");
    assert_eq!(problem.location.as_ref(), Some(location), "{problem:?}");
    assert_eq!(problem.seq, Some(seq), "{problem:?}");
    assert!(!problem.message.is_empty());
}

#[test]
fn an_edited_field_is_located() {
    let log = fixture();
    let lines = log.lines(1);
    let target = record_lines(&lines)[40];
    let seq = seq_of(&lines[target]);
    log.rewrite(1, |lines| {
        lines[target] = lines[target].replace(
            "\"source_address\":\"10.1.2.3\"",
            "\"source_address\":\"10.9.9.9\"",
        );
    });
    assert_problem(
        &log.verify(),
        ProblemKind::Edited,
        &log.location(1, target),
        seq,
    );
}

#[test]
fn an_edited_and_rehashed_record_is_located() {
    let log = fixture();
    let lines = log.lines(1);
    let target = record_lines(&lines)[10];
    let seq = seq_of(&lines[target]);
    log.rewrite(1, |lines| {
        let edited = lines[target].replace("\"tls\":true", "\"tls\":false");
        lines[target] = rehash(&edited, &head_before(&lines[target])).0;
    });
    assert_problem(
        &log.verify(),
        ProblemKind::Edited,
        &log.location(1, target),
        seq,
    );
}

#[test]
fn a_deleted_record_is_located() {
    let log = fixture();
    let lines = log.lines(2);
    let target = record_lines(&lines)[30];
    let seq = seq_of(&lines[target]);
    log.rewrite(2, |lines| {
        lines.remove(target);
    });
    // Reported where the gap shows: the record that now follows it.
    assert_problem(
        &log.verify(),
        ProblemKind::Deleted,
        &log.location(2, target),
        seq,
    );
}

#[test]
fn swapped_records_are_located() {
    let log = fixture();
    let lines = log.lines(1);
    let first = (20..lines.len() - 1)
        .find(|&i| lines[i].starts_with("{\"seq\"") && lines[i + 1].starts_with("{\"seq\""))
        .unwrap();
    let second = first + 1;
    let later_seq = seq_of(&lines[second]);
    log.rewrite(1, |lines| lines.swap(first, second));
    assert_problem(
        &log.verify(),
        ProblemKind::Reordered,
        &log.location(1, first),
        later_seq,
    );
}

#[test]
fn a_copied_record_inserted_later_is_located() {
    let log = fixture();
    let lines = log.lines(1);
    let records = record_lines(&lines);
    let copied = lines[records[5]].clone();
    let at = records[60] + 1;
    log.rewrite(1, |lines| lines.insert(at, copied.clone()));
    assert_problem(
        &log.verify(),
        ProblemKind::Inserted,
        &log.location(1, at),
        seq_of(&copied),
    );
}

#[test]
fn a_forged_record_inserted_with_a_valid_hash_is_detected() {
    let log = fixture();
    let lines = log.lines(1);
    let records = record_lines(&lines);
    let after = records[60];
    let linked = chain::read_line(lines[after].as_bytes()).unwrap();
    let head = ChainHead {
        seq: linked.seq,
        hash: linked.hash,
    };
    let forged = rehash(&lines[records[61]].replace("req-", "forged-"), &head).0;
    log.rewrite(1, |lines| lines.insert(after + 1, forged));
    // The forged record links perfectly; the real one after it repeats its seq.
    assert_problem(
        &log.verify(),
        ProblemKind::Inserted,
        &log.location(1, after + 2),
        linked.seq + 1,
    );
}

#[test]
fn a_rewritten_and_rehashed_tail_is_caught_by_the_next_checkpoint() {
    let log = fixture();
    let lines = log.lines(1);
    let records = record_lines(&lines);
    let start = records[3];
    let next_checkpoint = (start..lines.len())
        .find(|&i| lines[i].starts_with("{\"checkpoint\""))
        .unwrap();
    let covered = Checkpoint::parse_line(lines[next_checkpoint].as_bytes())
        .unwrap()
        .seq;
    log.rewrite(1, |lines| {
        // Change one record and rehash everything after it: the chain is consistent again,
        // but the signed checkpoint still names the original head.
        let mut head = head_before(&lines[start]);
        for line in lines.iter_mut().skip(start) {
            if line.starts_with("{\"seq\"") {
                let edited = line.replace("\"tls\":true", "\"tls\":false");
                let (rewritten, next) = rehash(&edited, &head);
                *line = rewritten;
                head = next;
            }
        }
    });
    assert_problem(
        &log.verify(),
        ProblemKind::CheckpointMismatch,
        &log.location(1, next_checkpoint),
        covered,
    );
}

#[test]
fn a_truncated_tail_is_caught_by_the_head_checkpoint() {
    let log = fixture();
    let last = files::list(&log.dir).unwrap().len() - 1;
    let lines = log.lines(last);
    assert!(lines.len() > 50);
    let keep = lines.len() - 50;
    let kept_seq = (0..keep)
        .rev()
        .find_map(|i| lines[i].starts_with("{\"seq\"").then(|| seq_of(&lines[i])))
        .unwrap();
    let kept_record = (0..keep)
        .rev()
        .find(|&i| lines[i].starts_with("{\"seq\""))
        .unwrap();
    log.rewrite(last, |lines| lines.truncate(keep));
    assert_problem(
        &log.verify(),
        ProblemKind::Truncated,
        &log.location(last, kept_record),
        kept_seq,
    );
}

#[test]
fn a_truncated_tail_with_the_head_file_removed_is_caught_by_a_kept_copy() {
    let log = fixture();
    let copy = log.dir.parent().unwrap().join("head-copy.json");
    std::fs::copy(log.dir.join(HEAD_FILE), &copy).unwrap();
    std::fs::remove_file(log.dir.join(HEAD_FILE)).unwrap();
    let last = files::list(&log.dir).unwrap().len() - 1;
    let keep = log.lines(last).len() - 50;
    log.rewrite(last, |lines| lines.truncate(keep));

    // Without any checkpoint from outside the log, a cut at a checkpoint looks like an end.
    let unanchored = log.verify();
    assert!(
        unanchored.is_intact() && unanchored.anchors.is_empty(),
        "{unanchored:?}"
    );

    let anchor = files::read_head_file(&copy).unwrap().unwrap();
    let report = verify::verify(
        &log.dir,
        &VerifyOptions {
            keys: vec![log.key],
            anchors: vec![("head-copy.json".into(), anchor)],
        },
    );
    assert_eq!(report.problem.map(|p| p.kind), Some(ProblemKind::Truncated));
}

#[test]
fn a_deleted_file_is_located() {
    let log = fixture();
    let next = log.lines(2);
    let first_seq_after = seq_of(&next[0]);
    let removed = log.lines(1);
    let first_removed = seq_of(&removed[record_lines(&removed)[0]]);
    std::fs::remove_file(log.file(1)).unwrap();
    // File 2 is now file 1.
    assert_problem(
        &log.verify(),
        ProblemKind::Deleted,
        &log.location(1, 0),
        first_removed,
    );
    assert!(first_seq_after > first_removed);
}

#[test]
fn a_checkpoint_with_a_bad_signature_is_forged() {
    let log = fixture();
    let lines = log.lines(0);
    let at = (0..lines.len())
        .find(|&i| lines[i].starts_with("{\"checkpoint\""))
        .unwrap();
    let checkpoint = Checkpoint::parse_line(lines[at].as_bytes()).unwrap();
    log.rewrite(0, |lines| {
        let mut forged = checkpoint.clone();
        let flipped = if forged.signature.starts_with('0') {
            "1"
        } else {
            "0"
        };
        forged.signature.replace_range(0..1, flipped);
        lines[at] = String::from_utf8(forged.to_line())
            .unwrap()
            .trim_end()
            .to_owned();
    });
    assert_problem(
        &log.verify(),
        ProblemKind::ForgedCheckpoint,
        &log.location(0, at),
        checkpoint.seq,
    );
}

#[test]
fn a_checkpoint_signed_with_another_key_is_forged() {
    let log = fixture();
    let lines = log.lines(1);
    let at = (0..lines.len())
        .find(|&i| lines[i].starts_with("{\"checkpoint\""))
        .unwrap();
    let original = Checkpoint::parse_line(lines[at].as_bytes()).unwrap();
    let other = keys::generate();
    let head = original.head().unwrap();
    // Signed with the attacker's key under its own id, and under the real key's id.
    let own_id = Checkpoint::sign(&head, 1_767_225_600_000, &other);
    let mut claimed_id = own_id.clone();
    claimed_id.key_id = original.key_id.clone();
    let message = crate::audit::checkpoint::message(
        head.seq,
        &head.hash,
        &claimed_id.time,
        &claimed_id.key_id,
    );
    claimed_id.signature = hex::encode(ed25519_dalek::Signer::sign(&other, &message).to_bytes());
    for forged in [own_id, claimed_id] {
        log.rewrite(1, |lines| {
            lines[at] = String::from_utf8(forged.to_line())
                .unwrap()
                .trim_end()
                .to_owned()
        });
        assert_problem(
            &log.verify(),
            ProblemKind::ForgedCheckpoint,
            &log.location(1, at),
            original.seq,
        );
    }
}

#[test]
fn an_untouched_log_of_100k_records_verifies() {
    let temp = tempfile::tempdir().unwrap();
    let (mut settings, key) = settings(temp.path());
    settings.checkpoint_every = 1000;
    settings.rotate_bytes = 32 << 20;
    write_records(&settings, 0, 100_000);
    let report = verify_with(&settings.dir, &key);
    assert!(report.is_intact(), "{report:?}");
    assert_eq!((report.records, report.last_seq), (100_000, 100_000));
    // Every 1,000 records, and one more at each rotation.
    assert!(report.checkpoints >= 100 && report.files >= 2, "{report:?}");
    assert!(report.torn.is_empty() && report.uncovered.is_none());
}

//! The log's files on disk: their names and order, the head file, and finding the chain's
//! head again after a restart or a crash by reading the newest file's tail.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::chain::{self, ChainHead};
use super::checkpoint::Checkpoint;
use super::time;

/// The newest checkpoint, kept beside the log files.
pub const HEAD_FILE: &str = "audit-head.json";

/// One log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    pub path: PathBuf,
    /// The UTC day it was created on, in days since the epoch.
    pub day: u64,
    /// Its number within the day, from 1.
    pub number: u32,
}

impl LogFile {
    /// The file's name, for messages.
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// `audit-YYYYMMDD-NNNN.jsonl`.
pub fn file_name(day: u64, number: u32) -> String {
    format!("audit-{}-{number:04}.jsonl", time::compact_date(day))
}

/// The day and number of a log file's name.
pub fn parse_name(name: &str) -> Option<(u64, u32)> {
    let stem = name.strip_prefix("audit-")?.strip_suffix(".jsonl")?;
    let (date, number) = stem.split_once('-')?;
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((time::day_of_compact_date(date)?, number.parse().ok()?))
}

/// The log files in `dir`, oldest first. Other files are ignored.
pub fn list(dir: &Path) -> io::Result<Vec<LogFile>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if let Some((day, number)) = name.to_str().and_then(parse_name) {
            files.push(LogFile {
                path: entry.path(),
                day,
                number,
            });
        }
    }
    files.sort_by_key(|f| (f.day, f.number));
    Ok(files)
}

/// The end of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// The last line that ends with a newline (without it).
    pub last_line: Option<Vec<u8>>,
    /// Bytes after the last newline: a line torn by a crash.
    pub torn_bytes: u64,
    /// The file's length.
    pub len: u64,
}

/// Reads the end of `path`: its last complete line and any torn bytes after it.
pub fn read_tail(path: &Path) -> io::Result<Tail> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut window: u64 = 64 << 10;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::with_capacity((len - start) as usize);
        Read::by_ref(&mut file)
            .take(len - start)
            .read_to_end(&mut bytes)?;
        let last_newline = bytes.iter().rposition(|&b| b == b'\n');
        let line_start = last_newline.and_then(|end| {
            bytes[..end]
                .iter()
                .rposition(|&b| b == b'\n')
                .map(|p| p + 1)
                .or((start == 0).then_some(0))
        });
        match (last_newline, line_start) {
            (Some(end), Some(begin)) => {
                return Ok(Tail {
                    last_line: Some(bytes[begin..end].to_vec()),
                    torn_bytes: (bytes.len() - end - 1) as u64,
                    len,
                });
            }
            _ if start == 0 => {
                return Ok(Tail {
                    last_line: None,
                    torn_bytes: match last_newline {
                        Some(end) => (bytes.len() - end - 1) as u64,
                        None => len,
                    },
                    len,
                });
            }
            _ => window = window.saturating_mul(4),
        }
    }
}

/// Why the chain's head could not be found.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error("cannot read `{path}`: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "the last line of `{path}` {problem}\n  help: run `ehrgate audit verify --dir {dir}` to see what happened to the log"
    )]
    Corrupt {
        path: PathBuf,
        dir: String,
        problem: String,
    },
}

/// Where the chain stands on disk.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub head: ChainHead,
    /// Whether the last line is a checkpoint (no records wait to be covered).
    pub covered: bool,
    /// The newest file, its length, and whether it ends with a torn line.
    pub newest: Option<(LogFile, u64, bool)>,
}

/// Finds the chain's head: the last complete line of the newest file that has one.
pub fn recover(dir: &Path) -> Result<Recovered, RecoverError> {
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| RecoverError::Io { path, source }
    };
    let files = list(dir).map_err(io_error(dir))?;
    let mut recovered = Recovered {
        head: ChainHead::GENESIS,
        covered: true,
        newest: None,
    };
    for (index, file) in files.iter().enumerate().rev() {
        let tail = read_tail(&file.path).map_err(io_error(&file.path))?;
        if index + 1 == files.len() {
            recovered.newest = Some((file.clone(), tail.len, tail.torn_bytes > 0));
        }
        let Some(line) = tail.last_line else {
            continue;
        };
        let corrupt = |problem: String| RecoverError::Corrupt {
            path: file.path.clone(),
            dir: dir.display().to_string(),
            problem,
        };
        if chain::is_checkpoint_line(&line) {
            let checkpoint = Checkpoint::parse_line(&line).map_err(|e| corrupt(e.to_string()))?;
            recovered.head = checkpoint.head().map_err(|e| corrupt(e.to_string()))?;
            recovered.covered = true;
        } else {
            let linked = chain::read_line(&line).map_err(|e| corrupt(e.to_string()))?;
            if linked.computed != linked.hash {
                return Err(corrupt(
                    "does not match its own hash (it was changed)".into(),
                ));
            }
            recovered.head = ChainHead {
                seq: linked.seq,
                hash: linked.hash,
            };
            recovered.covered = false;
        }
        return Ok(recovered);
    }
    Ok(recovered)
}

/// Replaces the head file with `checkpoint` atomically (write, fsync, rename, fsync dir).
pub fn write_head_file(dir: &Path, checkpoint: &Checkpoint) -> io::Result<()> {
    let temporary = dir.join(format!("{HEAD_FILE}.tmp"));
    let mut file = File::create(&temporary)?;
    file.write_all(&checkpoint.to_line())?;
    file.sync_all()?;
    fs::rename(&temporary, dir.join(HEAD_FILE))?;
    sync_dir(dir)
}

/// Reads a head file (or any file holding one checkpoint line).
pub fn read_head_file(path: &Path) -> io::Result<Option<Checkpoint>> {
    match fs::read(path) {
        Ok(bytes) => {
            let line = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
            Checkpoint::parse_line(line)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Makes a directory's entries (a new or renamed file) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

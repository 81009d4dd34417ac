//! Reading the log back line by line, across its files in order, with one reused buffer:
//! `verify`, `query`, `report` and `export` stream the log this way and never hold more than
//! one line of it.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use super::chain;
use super::files::{self, LogFile};

/// What a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Record,
    Checkpoint,
    /// The last bytes of a file, without a newline: a write torn by a crash.
    Torn,
}

/// One line, borrowed from the reader until the next call.
pub struct Line<'a> {
    pub file: &'a LogFile,
    /// 1-based line number within the file.
    pub number: u64,
    pub kind: LineKind,
    /// The line without its newline.
    pub bytes: &'a [u8],
}

/// A line that should be an audit record and is not; `query`, `report` and `export` stop on
/// it and send the auditor to `verify`.
#[derive(Debug, thiserror::Error)]
#[error(
    "{file}:{line}: not an audit record: {message}\n  help: run `ehrgate audit verify` on the directory"
)]
pub struct BadRecord {
    pub file: String,
    pub line: u64,
    pub message: String,
}

impl<'a> Line<'a> {
    /// Parses the line as a record (owned, or borrowing from the line).
    pub fn parse<T: serde::Deserialize<'a>>(&self) -> Result<T, BadRecord> {
        serde_json::from_slice(self.bytes).map_err(|e| BadRecord {
            file: self.file.name(),
            line: self.number,
            message: e.to_string(),
        })
    }
}

/// Reads the lines of a log's files in order.
pub struct LogReader {
    files: Vec<LogFile>,
    next_file: usize,
    current: Option<BufReader<File>>,
    line_number: u64,
    buffer: Vec<u8>,
}

impl LogReader {
    /// Reads every log file in `dir`.
    pub fn open(dir: &Path) -> io::Result<LogReader> {
        Ok(LogReader::with_files(files::list(dir)?))
    }

    /// Reads `files`, in the order given.
    pub fn with_files(files: Vec<LogFile>) -> LogReader {
        LogReader {
            files,
            next_file: 0,
            current: None,
            line_number: 0,
            buffer: Vec::with_capacity(4096),
        }
    }

    pub fn files(&self) -> &[LogFile] {
        &self.files
    }

    /// The next line, or `None` after the last line of the last file.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        loop {
            let reader = match &mut self.current {
                Some(reader) => reader,
                None => {
                    let Some(file) = self.files.get(self.next_file) else {
                        return Ok(None);
                    };
                    let opened = File::open(&file.path).map_err(|e| {
                        io::Error::new(e.kind(), format!("`{}`: {e}", file.path.display()))
                    })?;
                    self.next_file += 1;
                    self.line_number = 0;
                    self.current
                        .insert(BufReader::with_capacity(1 << 20, opened))
                }
            };
            self.buffer.clear();
            if reader.read_until(b'\n', &mut self.buffer)? == 0 {
                self.current = None;
                continue;
            }
            self.line_number += 1;
            let file = &self.files[self.next_file - 1];
            let (kind, bytes) = match self.buffer.strip_suffix(b"\n") {
                None => (LineKind::Torn, &self.buffer[..]),
                Some(line) if chain::is_checkpoint_line(line) => (LineKind::Checkpoint, line),
                Some(line) => (LineKind::Record, line),
            };
            return Ok(Some(Line {
                file,
                number: self.line_number,
                kind,
                bytes,
            }));
        }
    }
}

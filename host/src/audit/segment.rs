//! The file the writer appends to: created with mode 0600 (the log holds protected health
//! information), written with whole lines, fsynced on demand.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::files::{self, LogFile};

pub(super) struct Segment {
    file: File,
    pub(super) path: PathBuf,
    /// Bytes in the file.
    pub(super) len: u64,
    /// The UTC day (since the epoch) in its name.
    pub(super) day: u64,
    /// Bytes written since the last fsync.
    pub(super) dirty: bool,
}

impl Segment {
    /// Creates the next file of `day` in `dir`: number one more than any file of that day.
    pub(super) fn create(dir: &Path, day: u64) -> io::Result<Segment> {
        let number = files::list(dir)?
            .iter()
            .filter(|f| f.day == day)
            .map(|f| f.number)
            .max()
            .unwrap_or(0)
            + 1;
        let path = dir.join(files::file_name(day, number));
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        files::sync_dir(dir)?;
        Ok(Segment {
            file,
            path,
            len: 0,
            day,
            dirty: false,
        })
    }

    /// Reopens an existing file that ends with a complete line, to append to it.
    pub(super) fn reopen(file: &LogFile, len: u64) -> io::Result<Segment> {
        let handle = OpenOptions::new().append(true).open(&file.path)?;
        Ok(Segment {
            file: handle,
            path: file.path.clone(),
            len,
            day: file.day,
            dirty: false,
        })
    }

    pub(super) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.dirty = true;
        self.file.write_all(bytes)?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// fsync (data only: the length change is data for this purpose, see fdatasync(2)).
    pub(super) fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }
}

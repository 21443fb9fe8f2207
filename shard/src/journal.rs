//! The journal: `journal.log`, one record per line as
//! `<crc32 of the JSON, 8 hex digits> <JSON>\n`.
//!
//! Replay applies every intact line in order. The first line whose checksum
//! does not match, or a last line without its newline, is a write torn by a
//! crash when no intact line follows it: no reply was sent for anything
//! from there on, so the file is truncated at that line. When intact lines
//! do follow, the file was damaged some other way, and replay stops with
//! [`Error::Damaged`] without changing it, because those lines hold
//! records that were acknowledged.
//!
//! The file is grown ahead of its records by [`PREALLOCATE`] bytes of
//! zeros, synced once. Records then overwrite zeros in place, so the
//! `fdatasync` after each batch leaves the file size alone and writes no
//! inode. Replay reads the zeros after the last record as free space, not
//! as a torn write, and cuts them off before the writer grows the file
//! again.
//!
//! TODO: the journal grows without bound and replay reads all of it; a
//! snapshot of the state plus truncation of the journal before it belongs
//! here once restarts get slow.

pub(crate) mod writer;

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::record::Record;
use crate::state::{ApplyError, State};

/// Errors while replaying the journal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read, truncated or opened.
    #[error("journal {path}: {source}")]
    Io {
        /// The journal file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line with a valid checksum is not a record this version reads.
    #[error("journal {path} line {line}: unreadable record: {reason}; this journal was written by another version of trecho-shard")]
    Unreadable {
        /// The journal file.
        path: PathBuf,
        /// Line number, from 1.
        line: u64,
        /// The parser's message.
        reason: String,
    },
    /// A line is damaged but intact records follow it, so it is not a
    /// write cut short by a crash.
    #[error("journal {path} is damaged at line {line} (byte {offset}) and {intact_after} intact records follow it, so this is not a write cut short by a crash; nothing was changed: restore the data directory from a backup, or truncate the journal at byte {offset} to give up the records after it")]
    Damaged {
        /// The journal file.
        path: PathBuf,
        /// Number of the damaged line, from 1.
        line: u64,
        /// Byte offset where the damaged line starts.
        offset: u64,
        /// Lines with a valid checksum after it.
        intact_after: u64,
    },
    /// A record contradicts the state built so far.
    #[error("journal {path} line {line}: {source}; the journal does not match segments.json")]
    Apply {
        /// The journal file.
        path: PathBuf,
        /// Line number, from 1.
        line: u64,
        /// What contradicted.
        source: ApplyError,
    },
}

/// Appends `record` to `buf` as one journal line.
pub(crate) fn encode(record: &Record, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(b"00000000 ");
    let json_start = buf.len();
    if serde_json::to_writer(&mut *buf, record).is_err() {
        // Records hold only strings, numbers and lists, so serializing
        // cannot fail; drop the partial line rather than journal garbage.
        buf.truncate(start);
        return;
    }
    let crc = crc32fast::hash(&buf[json_start..]);
    let mut hex = [0u8; 8];
    for (index, digit) in hex.iter_mut().enumerate() {
        let nibble = (crc >> (28 - 4 * index)) & 0xf;
        *digit = b"0123456789abcdef"[nibble as usize];
    }
    buf[start..start + 8].copy_from_slice(&hex);
    buf.push(b'\n');
}

/// Checks one line (without its newline) and returns its JSON, or `None`
/// when the checksum does not match.
fn decode_line(line: &[u8]) -> Option<&[u8]> {
    if line.len() < 10 || line[8] != b' ' {
        return None;
    }
    let hex = std::str::from_utf8(&line[..8]).ok()?;
    let expected = u32::from_str_radix(hex, 16).ok()?;
    let json = &line[9..];
    (crc32fast::hash(json) == expected).then_some(json)
}

/// Bytes of zeros the journal is grown by whenever records reach its end.
pub(crate) const PREALLOCATE: u64 = 1 << 20;

/// The journal opened for writing: records go at `end`, over the zeros
/// written ahead of them.
#[derive(Debug)]
pub(crate) struct JournalFile {
    file: File,
    /// Offset of the next record: the end of the last one.
    end: u64,
    /// The file's length: `end` plus the zeros after it.
    len: u64,
}

impl JournalFile {
    /// Writes `records` after the last record, growing the file first when
    /// they do not fit in the zeros left. Nothing is durable before
    /// [`JournalFile::sync`].
    pub fn write(&mut self, records: &[u8]) -> std::io::Result<()> {
        let end = self.end + records.len() as u64;
        if end > self.len {
            let len = end + PREALLOCATE;
            write_zeros(&self.file, self.len, len)?;
            self.len = len;
        }
        self.file.write_all_at(records, self.end)?;
        self.end = end;
        Ok(())
    }

    /// Makes everything written so far durable.
    pub fn sync(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

/// Writes zeros from `from` to `to`, which become the new end of the file.
fn write_zeros(file: &File, from: u64, to: u64) -> std::io::Result<()> {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    let mut at = from;
    while at < to {
        let count = (to - at).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..count], at)?;
        at += count as u64;
    }
    Ok(())
}

/// Counts from one replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplayStats {
    /// Records applied.
    pub records: u64,
    /// Bytes kept.
    pub bytes: u64,
    /// Bytes other than zero in the torn tail that was cut off.
    pub truncated: u64,
    /// Bytes of zeros after the last record that were cut off.
    pub preallocated: u64,
}

/// Replays `path` into `state`, truncating a torn tail and the zeros after
/// the last record, and returns the file opened for writing records.
pub(crate) fn replay(path: &Path, state: &mut State) -> Result<(JournalFile, ReplayStats), Error> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let started = Instant::now();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    let total = file.metadata().map_err(io)?.len();
    let mut reader = BufReader::with_capacity(1 << 20, &file);
    let stats = apply_lines(path, &mut reader, state, total)?;
    drop(reader);
    if stats.truncated > 0 {
        tracing::warn!(
            shard.id = state.shard_id(),
            bytes = stats.truncated,
            kept = stats.bytes,
            "journal had a torn tail; truncated it"
        );
    }
    if stats.truncated > 0 || stats.preallocated > 0 {
        file.set_len(stats.bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    drop(file);
    let file = OpenOptions::new().write(true).open(path).map_err(io)?;
    let file = JournalFile {
        file,
        end: stats.bytes,
        len: stats.bytes,
    };
    tracing::info!(
        shard.id = state.shard_id(),
        records = stats.records,
        bytes = stats.bytes,
        segments = state.segment_count(),
        bookings = state.booking_count(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "journal replayed"
    );
    Ok((file, stats))
}

fn apply_lines(
    path: &Path,
    reader: &mut impl BufRead,
    state: &mut State,
    total: u64,
) -> Result<ReplayStats, Error> {
    let mut stats = ReplayStats {
        records: 0,
        bytes: 0,
        truncated: 0,
        preallocated: 0,
    };
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        let read = reader
            .read_until(b'\n', &mut line)
            .map_err(|source| Error::Io {
                path: path.to_owned(),
                source,
            })?;
        if read == 0 {
            return Ok(stats);
        }
        let json = match line.split_last() {
            Some((b'\n', body)) => decode_line(body),
            _ => None,
        };
        let Some(json) = json else {
            let io = |source| Error::Io {
                path: path.to_owned(),
                source,
            };
            let tail = inspect_tail(reader, &line).map_err(io)?;
            if tail.intact_lines > 0 {
                return Err(Error::Damaged {
                    path: path.to_owned(),
                    line: stats.records + 1,
                    offset: stats.bytes,
                    intact_after: tail.intact_lines,
                });
            }
            let rest = total - stats.bytes;
            stats.truncated = tail.written;
            stats.preallocated = rest.saturating_sub(tail.written);
            return Ok(stats);
        };
        let number = stats.records + 1;
        let record: Record = serde_json::from_slice(json).map_err(|e| Error::Unreadable {
            path: path.to_owned(),
            line: number,
            reason: e.to_string(),
        })?;
        state.apply(&record).map_err(|source| Error::Apply {
            path: path.to_owned(),
            line: number,
            source,
        })?;
        stats.records += 1;
        stats.bytes += read as u64;
    }
}

/// The part of the journal after the first line that is not an intact
/// record.
struct Tail {
    /// Bytes other than zero, which a write put there; the zeros were
    /// written ahead of the records.
    written: u64,
    /// Intact records after it, including one that starts right after a
    /// run of zeros inside a line.
    intact_lines: u64,
}

/// Reads the rest of the journal after the start of `first`, the first
/// line that is not an intact record.
fn inspect_tail(reader: &mut impl BufRead, first: &[u8]) -> std::io::Result<Tail> {
    let mut tail = Tail {
        written: 0,
        intact_lines: 0,
    };
    let inspect = |line: &[u8], tail: &mut Tail| {
        tail.written += line.iter().filter(|&&byte| byte != 0).count() as u64;
        // A record written after a hole of zeros shares its "line" with
        // the zeros; it starts after the last of them.
        let after_zeros = match line.iter().rposition(|&byte| byte == 0) {
            Some(at) => &line[at + 1..],
            None => line,
        };
        if let Some((b'\n', body)) = after_zeros.split_last() {
            if decode_line(body).is_some() {
                tail.intact_lines += 1;
            }
        }
    };
    // The first line failed as a whole, but may hide a record after zeros.
    if first.contains(&0) {
        inspect(first, &mut tail);
    } else {
        tail.written += first.len() as u64;
    }
    let mut line = Vec::with_capacity(4096);
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(tail);
        }
        inspect(&line, &mut tail);
    }
}

/// Appends records to a journal and syncs it; for tests and tools that
/// write without the journal thread.
#[cfg(test)]
pub(crate) fn append(file: &mut JournalFile, records: &[Record]) -> std::io::Result<()> {
    let mut buf = Vec::new();
    for record in records {
        encode(record, &mut buf);
    }
    file.write(&buf)?;
    file.sync()
}

#[cfg(test)]
mod tests;

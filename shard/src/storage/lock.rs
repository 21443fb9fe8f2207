//! The exclusive lock that keeps a second shard process out of a data
//! directory.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::path::Path;

use super::{io_error, Error};

/// Name of the lock file in the data directory.
pub(crate) const LOCK_FILE: &str = "LOCK";

/// An exclusive lock on a data directory, held until it is dropped.
///
/// The lock is `File::try_lock` on the `LOCK` file, which std (1.89 and
/// later) implements with `flock` on Linux, macOS and the BSDs and with
/// `LockFileEx` on Windows. The operating system releases it when the
/// process exits, even after SIGKILL. A `flock` lock is advisory, so it
/// keeps out other shards but not other programs.
#[derive(Debug)]
pub(crate) struct DataDirLock {
    // Closing this file releases the lock.
    _file: File,
}

impl DataDirLock {
    /// Takes the lock on `dir`, which must exist, and writes this process's
    /// id into the lock file so a rejected shard can name the holder.
    ///
    /// # Errors
    ///
    /// Returns [`Error::Locked`] when another open handle, in this process
    /// or another one, holds the lock, and [`Error::Io`] when the lock file
    /// cannot be opened, locked or written.
    pub(crate) fn acquire(dir: &Path) -> Result<DataDirLock, Error> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: dir.to_owned(),
                    holder_pid: read_holder_pid(&path),
                })
            }
            Err(TryLockError::Error(source)) => return Err(io_error(&path)(source)),
        }
        // Truncate only once the lock is held, so the holder's id is never
        // erased by a process that is about to be rejected.
        file.set_len(0)
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(io_error(&path))?;
        Ok(DataDirLock { _file: file })
    }
}

/// Reads the process id that the lock holder wrote, or `None` when the file
/// cannot be read or holds no id.
fn read_holder_pid(path: &Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

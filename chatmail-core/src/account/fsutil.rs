//! File helpers shared by the maildir-layout account and token stores: atomic replace,
//! cross-process file locks with a timeout, mtimes as unix seconds.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::fs::{flock, FlockOperation};

/// How long to wait for another process's lock, as the reference does (5 s).
pub(crate) const LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// Replaces `dir/name` with `contents` atomically: a uniquely named temp file in the same
/// directory is written, fsynced and renamed over the target, then the directory is
/// fsynced, so readers see the old or the new content, never a partial one.
pub fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> io::Result<()> {
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(|e| io::Error::other(e.to_string()))?;
    let tmp = dir.join(format!(".{name}.{:016x}.tmp", u64::from_le_bytes(suffix)));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        // Best effort: a leftover temp file is harmless but untidy.
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Makes directory entries (new files, renames) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(test)]
    synced::record(dir);
    File::open(dir)?.sync_all()
}

/// Creates `dir` and any missing ancestors (with `mode` on Unix, else the default), then fsyncs the parent
/// of every directory it created: a new directory's own entry lives in its parent, and
/// without that fsync a crash can lose a directory (an account) already acknowledged.
pub fn create_dir_all_durable(dir: &Path, mode: Option<u32>) -> io::Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|p| !p.as_os_str().is_empty() && !p.exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    if let Some(mode) = mode {
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    builder.create(dir)?;
    for created in missing {
        match created.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => sync_dir(parent)?,
            _ => sync_dir(Path::new("."))?,
        }
    }
    Ok(())
}

/// The directories passed to [`sync_dir`] on this thread, for tests of durability.
#[cfg(test)]
pub(crate) mod synced {
    use std::cell::RefCell;
    use std::path::{Path, PathBuf};

    thread_local! {
        static SYNCED: RefCell<Vec<PathBuf>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn record(dir: &Path) {
        SYNCED.with(|s| s.borrow_mut().push(dir.to_path_buf()));
    }

    /// The directories synced since the last call.
    pub(crate) fn take() -> Vec<PathBuf> {
        SYNCED.with(|s| std::mem::take(&mut *s.borrow_mut()))
    }
}

/// An exclusive `flock` on a lock file, released when dropped (the descriptor closes).
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

/// Why a lock was not taken.
#[derive(Debug)]
pub(crate) enum LockError {
    /// Another holder kept it longer than the timeout.
    Timeout,
    /// The lock file could not be opened or locked.
    Io(io::Error),
}

/// Takes an exclusive lock on `path` (created if missing), polling until `timeout`.
pub(crate) fn lock_file(path: &Path, timeout: Duration) -> Result<FileLock, LockError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(LockError::Io)?;
    let start = Instant::now();
    loop {
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(FileLock { _file: file }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK || e == rustix::io::Errno::INTR => {
                if start.elapsed() >= timeout {
                    return Err(LockError::Timeout);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(LockError::Io(e.into())),
        }
    }
}

/// A file time as unix seconds (times before 1970 count as 0).
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Unix seconds as a file time.
pub(crate) fn system_time(unix: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix)
}

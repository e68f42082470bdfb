//! What the crate's unit tests share.

use std::fs::{File, FileTimes};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

/// Sets the access and modification times of the file at `path` to `unix` seconds.
pub(crate) fn set_mtime(path: &Path, unix: u64) {
    let t = UNIX_EPOCH + Duration::from_secs(unix);
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_times(FileTimes::new().set_accessed(t).set_modified(t))
        .unwrap();
}

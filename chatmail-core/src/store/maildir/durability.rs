//! How a delivery becomes durable: [`Durability`], the group commit of appends.
//!
//! An append needs two things on disk before its answer: the message file's data (before
//! its name appears in `new/`, so that a crash never leaves a named but empty message),
//! then its name and its index record. Synced one file at a time that is three fsyncs per
//! message, and on a virtual disk each costs a flush request and a trip to the host:
//! the profile of issue 14 (BENCHMARKS.md) found half of the relay's CPU in them.
//!
//! In group mode, concurrent appends share their syncs instead: each append joins the
//! open group and waits; one of them (the leader) closes the group and runs one
//! `syncfs(2)` for the file system holding `mailboxes_dir`, which makes every file, name
//! and record written before it durable; the members return when their group's sync
//! has returned. While one sync runs, the next group fills, so the number of syncs per
//! second stays that of one syncer while the messages per sync grow with the load:
//! classic group commit (as PostgreSQL's WAL flush or a journal's commit). Every append
//! still waits for its own data to be durable; only the flush is shared.
//!
//! `syncfs` flushes the whole file system, including other programs' dirty data: on a
//! file system shared with heavy writers a sync can take longer. Each-file mode (the
//! store's [`with_group_commit(false)`](super::MaildirStore::with_group_commit), and the
//! only mode off Linux) keeps the per-file fsyncs. A mailbox on another file system than
//! `mailboxes_dir` (a symlinked account) is synced file by file in either mode.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use crate::store::lock::lock;

/// The store's sync policy and, in group mode, the groups of appends waiting for a sync.
pub(super) struct Durability {
    group: Option<GroupSync>,
}

/// Shared syncs of one file system.
struct GroupSync {
    /// A descriptor on the file system to sync (`mailboxes_dir`).
    root: File,
    /// Its device, to tell files on other file systems.
    device: u64,
    state: Mutex<GroupState>,
    done: Condvar,
}

struct GroupState {
    /// The group new members join; the leader replaces it when its sync starts.
    open: Arc<Group>,
    /// Whether a sync is running (then a member waits for it instead of leading).
    syncing: bool,
}

/// One group of appends and, once its sync returned, the outcome they share.
#[derive(Default)]
struct Group {
    outcome: OnceLock<Result<(), io::ErrorKind>>,
}

impl Durability {
    /// Syncs of the file system holding `root` shared between appends when `group`
    /// (and the platform has `syncfs`), else one file at a time.
    pub(super) fn new(root: &Path, group: bool) -> io::Result<Self> {
        if !group || !cfg!(target_os = "linux") {
            return Ok(Durability { group: None });
        }
        let root = File::open(root)?;
        let device = device_of(&root)?;
        Ok(Durability {
            group: Some(GroupSync {
                root,
                device,
                state: Mutex::new(GroupState {
                    open: Arc::new(Group::default()),
                    syncing: false,
                }),
                done: Condvar::new(),
            }),
        })
    }

    /// File-by-file syncs, whatever the store's mode (for the rare paths that sync their
    /// directories themselves, such as COPY).
    pub(super) fn each_file() -> Self {
        Durability { group: None }
    }

    /// Whether syncs are shared (then appends go through the committer).
    pub(super) fn is_grouped(&self) -> bool {
        self.group.is_some()
    }

    /// Whether `file` (just written) is made durable by [`Durability::barrier`]: group
    /// mode and on the synced file system. Otherwise its writer syncs it itself.
    pub(super) fn covers(&self, file: &File) -> io::Result<bool> {
        match &self.group {
            Some(group) => Ok(device_of(file)? == group.device),
            None => Ok(false),
        }
    }

    /// Returns once everything written before the call is durable: joins the open group
    /// and waits for its sync, leading it when no sync is running. In each-file mode it
    /// returns at once (the writers synced their files).
    pub(super) fn barrier(&self) -> io::Result<()> {
        let Some(sync) = &self.group else {
            return Ok(());
        };
        let mut state = lock(&sync.state);
        let mine = state.open.clone();
        loop {
            if let Some(outcome) = mine.outcome.get() {
                return outcome.map_err(io::Error::from);
            }
            if state.syncing {
                state = sync.done.wait(state).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            // Lead: close the open group (ours, or a later one if ours is done: then
            // the check above returned) and sync for all its members.
            state.syncing = true;
            let group = std::mem::replace(&mut state.open, Arc::new(Group::default()));
            drop(state);
            let outcome = syncfs(&sync.root).map_err(|e| e.kind());
            let _ = group.outcome.set(outcome);
            state = lock(&sync.state);
            state.syncing = false;
            sync.done.notify_all();
        }
    }
}

fn device_of(file: &File) -> io::Result<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(file.metadata()?.dev())
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        Ok(0)
    }
}

#[cfg(target_os = "linux")]
fn syncfs(root: &File) -> io::Result<()> {
    // Since Linux 5.8 syncfs reports write-back errors of the file system (errseq), so
    // a failed write of any member fails the group rather than passing silently.
    rustix::fs::syncfs(root).map_err(io::Error::from)
}

#[cfg(not(target_os = "linux"))]
fn syncfs(_root: &File) -> io::Result<()> {
    // Unreachable: group mode is only built on Linux (`Durability::new`).
    Err(io::Error::from(io::ErrorKind::Unsupported))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn concurrent_barriers_all_return() {
        let dir = tempfile::tempdir().unwrap();
        let durability = Arc::new(Durability::new(dir.path(), true).unwrap());
        assert!(durability.group.is_some());
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let durability = durability.clone();
                let path = dir.path().join(format!("m{i}"));
                std::thread::spawn(move || {
                    for round in 0..20 {
                        let mut file = File::create(&path).unwrap();
                        writeln!(file, "round {round}").unwrap();
                        assert!(durability.covers(&file).unwrap());
                        durability.barrier().unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let state = lock(&durability.group.as_ref().unwrap().state);
        assert!(!state.syncing, "no sync left running");
        assert!(
            state.open.outcome.get().is_none(),
            "the open group is empty"
        );
    }

    #[test]
    fn each_file_mode_covers_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let durability = Durability::new(dir.path(), false).unwrap();
        let file = File::create(dir.path().join("m")).unwrap();
        assert!(!durability.covers(&file).unwrap());
        durability.barrier().unwrap();
    }
}

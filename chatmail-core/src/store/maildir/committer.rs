//! The delivery committer: in group-commit mode, appends are made durable in batches by
//! one thread, so a delivery costs no blocking thread of its own and shares its syncs.
//!
//! With a blocking job per append, each delivery woke a pool thread, and every member of
//! a sync group slept on the group and was woken again: the profile of issue 14 counted
//! about 19 context switches per delivered message, most of the relay's CPU per message
//! (BENCHMARKS.md). Here an append is a queued [`AppendJob`]; the committer thread takes
//! every job queued, then for the whole batch:
//!
//! 1. writes each message into `tmp/` (no sync);
//! 2. one barrier ([`Durability::barrier`](super::durability::Durability::barrier)): the data of every file is durable;
//! 3. renames each into `new/` (or `cur/`);
//! 4. locks each mailbox of the batch, gives the messages their UIDs and appends their
//!    index records (no sync);
//! 5. a second barrier: names and records are durable;
//! 6. publishes the changes, unlocks, and answers each job.
//!
//! The guarantees are those of a single append: the data is durable before its name,
//! and a UID is durable before anyone can see it (the mailboxes stay locked from step 4
//! to 6). While one batch syncs, the next one queues, so the batch grows with the load.
//! A job that fails alone (a name, a size, a write) is answered alone; a failed barrier
//! fails every job of the batch, removes their files, and marks the touched mailboxes
//! for a reload from disk.

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use bytes::Bytes;
use futures::channel::oneshot;

use super::files::{self, Sub};
use super::inner::{read_guard, AccountDir, Batch, Inner, MailboxState, Scan};
use super::uidlist::FileRef;
use crate::store::error::StoreError;
use crate::store::index::check_keywords;
use crate::store::lock::lock;
use crate::store::mail_store::AppendOutcome;
use crate::store::name::validate_mailbox_name;
use crate::types::{Address, Flags};

/// At most this many jobs per batch: bounds the locks held and the memory of one batch.
const MAX_BATCH: usize = 256;

/// One append waiting for the committer.
pub(super) struct AppendJob {
    pub(super) account: Address,
    pub(super) mailbox: String,
    pub(super) message: Bytes,
    pub(super) flags: Flags,
    pub(super) internal_date: i64,
    pub(super) reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// The queue between the store's async face and the committer thread. It holds one job
/// per caller awaiting its answer, so the callers bound it (in the relay: the connection
/// limits and the message memory budget, whose reservation a session keeps until its
/// delivery is answered).
pub(super) struct Committer {
    queue: Mutex<Queue>,
    wake: Condvar,
}

struct Queue {
    jobs: Vec<AppendJob>,
    /// The store was dropped: the thread answers what is queued and ends.
    closed: bool,
}

impl Committer {
    /// Starts the committer thread for `inner`'s appends.
    pub(super) fn start(inner: Arc<Inner>) -> std::io::Result<Arc<Committer>> {
        let committer = Arc::new(Committer {
            queue: Mutex::new(Queue {
                jobs: Vec::new(),
                closed: false,
            }),
            wake: Condvar::new(),
        });
        let worker = committer.clone();
        std::thread::Builder::new()
            .name("chatmail-commit".into())
            .spawn(move || worker.run(&inner))?;
        Ok(committer)
    }

    /// Queues `job`; its reply comes from the committer thread. After [`Committer::close`]
    /// the job is dropped, which its awaiting side reports as [`StoreError::ExecutorGone`].
    pub(super) fn submit(&self, job: AppendJob) {
        let mut queue = lock(&self.queue);
        if queue.closed {
            return;
        }
        queue.jobs.push(job);
        drop(queue);
        self.wake.notify_one();
    }

    /// Lets the thread end once the queued jobs are answered.
    pub(super) fn close(&self) {
        lock(&self.queue).closed = true;
        self.wake.notify_one();
    }

    fn run(&self, inner: &Inner) {
        loop {
            let batch = {
                let mut queue = lock(&self.queue);
                while queue.jobs.is_empty() && !queue.closed {
                    queue = self.wake.wait(queue).unwrap_or_else(|p| p.into_inner());
                }
                if queue.jobs.is_empty() {
                    return; // closed and drained
                }
                let take = queue.jobs.len().min(MAX_BATCH);
                queue.jobs.drain(..take).collect::<Vec<_>>()
            };
            // A bug in one batch must not stop every later delivery: its jobs are dropped
            // (their callers get `ExecutorGone`, a temporary failure) and the thread goes on.
            let run = std::panic::AssertUnwindSafe(|| inner.commit_appends(batch));
            if std::panic::catch_unwind(run).is_err() {
                tracing::error!("the committer's batch panicked; its appends failed");
            }
        }
    }
}

/// Where a job's message was written (step 1).
struct Placed {
    account: Arc<AccountDir>,
    /// The mailbox name, validated.
    mailbox: String,
    size: u64,
    file: FileRef,
    base: String,
    tmp_path: PathBuf,
    final_path: PathBuf,
}

/// A job and where its message went.
struct Written {
    job: AppendJob,
    placed: Placed,
}

impl Inner {
    /// Steps 1–6 above for one batch; every job is answered.
    fn commit_appends(&self, jobs: Vec<AppendJob>) {
        // The accounts' layout locks (shared) for the whole batch, as a single append
        // holds its account's: no DELETE or RENAME of a mailbox meanwhile. One guard per
        // account: a second shared lock by the same thread could wait behind a writer.
        let mut accounts: Vec<Arc<AccountDir>> = Vec::new();
        for job in &jobs {
            if !accounts.iter().any(|a| a.address == job.account) {
                accounts.push(self.account(&job.account));
            }
        }
        let _layouts: Vec<_> = accounts.iter().map(|a| read_guard(&a.layout)).collect();
        let account_of = |address: &Address| {
            accounts
                .iter()
                .find(|a| &a.address == address)
                .cloned()
                .ok_or_else(|| StoreError::Corrupt("account missing from its batch".into()))
        };

        // Step 1: write each message into tmp/.
        let mut written: Vec<Written> = Vec::with_capacity(jobs.len());
        for job in jobs {
            match account_of(&job.account).and_then(|a| self.write_tmp(a, &job)) {
                Ok(placed) => written.push(Written { job, placed }),
                Err(e) => answer(job.reply, Err(e)),
            }
        }
        if written.is_empty() {
            return;
        }
        // Step 2: the data of every file is durable before any of its names.
        if let Err(e) = self.durability.barrier() {
            for w in written {
                let _ = std::fs::remove_file(&w.placed.tmp_path);
                self.give_up(w, StoreError::io("writing message", e.kind().into()));
            }
            return;
        }
        // Step 3: the names.
        let mut renamed: Vec<Written> = Vec::with_capacity(written.len());
        for w in written {
            match std::fs::rename(&w.placed.tmp_path, &w.placed.final_path) {
                Ok(()) => renamed.push(w),
                Err(e) => {
                    let _ = std::fs::remove_file(&w.placed.tmp_path);
                    self.give_up(w, StoreError::io("writing message", e));
                }
            }
        }
        self.index_appends(renamed);
    }

    /// Step 1 for one job: checks, then its message in `tmp/`, not synced.
    fn write_tmp(&self, account: Arc<AccountDir>, job: &AppendJob) -> Result<Placed, StoreError> {
        let mailbox = validate_mailbox_name(&job.mailbox)?;
        check_keywords(&job.flags, self.limits.max_keywords)?;
        let size = job.message.len() as u64;
        self.check_size(size)?;
        let base = self.new_base(size);
        let sub = if job.flags.is_empty() {
            Sub::New
        } else {
            Sub::Cur
        };
        let file = FileRef {
            sub,
            name: files::file_name(&base, sub, &job.flags),
        };
        let dir = account.with_mailbox(self, &mailbox, Scan::No, |state| {
            state.ensure_on_disk()?;
            state.pending.insert(base.clone());
            Ok(state.dir.clone())
        })?;
        let tmp = dir.join("tmp").join(&base);
        let final_path = dir.join(sub.dir()).join(&file.name);
        let outcome = (|| {
            let mut out = files::create_new_file(&tmp)?;
            out.write_all(&job.message)?;
            out.set_modified(files::system_time(job.internal_date))?;
            // A mailbox on another file system (a symlinked account) is not covered
            // by the barrier: its file is synced here, its directory after the rename.
            if !self.durability.covers(&out)? {
                out.sync_all()?;
            }
            Ok(())
        })();
        if let Err(e) = outcome {
            let _ = std::fs::remove_file(&tmp);
            let _ = account.with_mailbox(self, &mailbox, Scan::No, |state| {
                state.pending.remove(&base);
                Ok(())
            });
            return Err(StoreError::io("writing message", e));
        }
        Ok(Placed {
            account,
            mailbox,
            size,
            file,
            base,
            tmp_path: tmp,
            final_path,
        })
    }

    /// Steps 4–6: UIDs and index records per mailbox under its lock, the second barrier,
    /// then the changes published and the jobs answered.
    fn index_appends(&self, renamed: Vec<Written>) {
        // The batch's mailboxes, each loaded and checked once.
        let mut by_mailbox: Vec<(Arc<AccountDir>, String, Vec<Written>)> = Vec::new();
        for w in renamed {
            let p = &w.placed;
            match by_mailbox
                .iter_mut()
                .find(|(a, m, _)| Arc::ptr_eq(a, &p.account) && *m == p.mailbox)
            {
                Some((_, _, members)) => members.push(w),
                None => by_mailbox.push((p.account.clone(), p.mailbox.clone(), vec![w])),
            }
        }
        let mut states: Vec<Arc<Mutex<MailboxState>>> = Vec::with_capacity(by_mailbox.len());
        let mut groups: Vec<(Arc<AccountDir>, Vec<Written>)> = Vec::new();
        for (account, mailbox, members) in by_mailbox {
            match usable_state(self, &account, &mailbox) {
                Ok(state) => {
                    states.push(state);
                    groups.push((account, members));
                }
                Err(e) => {
                    let reason = e.to_string();
                    for w in members {
                        let _ = std::fs::remove_file(&w.placed.final_path);
                        let e =
                            StoreError::io("loading the mailbox", io::Error::other(reason.clone()));
                        self.give_up(w, e);
                    }
                }
            }
        }
        // Step 4, all mailboxes locked until their changes are published (step 6). The
        // locks are taken in batch order by this thread alone; every other thread holds
        // at most one mailbox lock at a time, so no cycle can form.
        let mut guards: Vec<MutexGuard<'_, MailboxState>> =
            states.iter().map(|s| lock(s)).collect();
        let mut pending: Vec<(Batch, Vec<(Written, AppendOutcome)>)> = Vec::new();
        let mut failed_groups: Vec<Vec<Written>> = Vec::new();
        for (state, (_, members)) in guards.iter_mut().zip(groups) {
            let mut batch = Batch::default();
            let mut added = Vec::with_capacity(members.len());
            let mut failure = None;
            for w in members {
                state.pending.remove(&w.placed.base);
                if failure.is_some() {
                    added.push((w, None));
                    continue;
                }
                let meta = (w.placed.size, w.job.internal_date, w.job.flags.clone());
                match state.add(meta, w.placed.file.clone(), &mut batch) {
                    Ok(meta) => {
                        let outcome = AppendOutcome {
                            uid_validity: state.index.uid_validity,
                            uid: meta.uid,
                            modseq: meta.modseq,
                        };
                        added.push((w, Some(outcome)));
                    }
                    Err(e) => {
                        failure = Some(e);
                        added.push((w, None));
                    }
                }
            }
            let written = match failure {
                Some(e) => Err(e),
                None => state.write_records(&batch).map(drop),
            };
            match written {
                Ok(()) => pending.push((
                    batch,
                    added
                        .into_iter()
                        .filter_map(|(w, o)| o.map(|o| (w, o)))
                        .collect(),
                )),
                Err(_) => {
                    // Memory and disk may differ now: reloaded before the next use.
                    state.broken = true;
                    pending.push((Batch::default(), Vec::new()));
                    failed_groups.push(added.into_iter().map(|(w, _)| w).collect());
                }
            }
        }
        // Step 5: names and records durable.
        let synced = self.durability.barrier();
        // Step 6.
        for (state, (batch, members)) in guards.iter_mut().zip(pending) {
            if members.is_empty() {
                continue;
            }
            match &synced {
                Ok(()) => {
                    let address = members[0].0.placed.account.address.clone();
                    state.publish_commit(self, &address, batch);
                    for (w, outcome) in members {
                        answer(w.job.reply, Ok(outcome));
                    }
                }
                Err(e) => {
                    // The records may or may not be on disk: reloaded before next use.
                    state.broken = true;
                    for (w, _) in members {
                        let _ = std::fs::remove_file(&w.placed.final_path);
                        let e = StoreError::io("syncing the mailbox", e.kind().into());
                        answer(w.job.reply, Err(e));
                    }
                }
            }
        }
        drop(guards);
        for members in failed_groups {
            for w in members {
                let _ = std::fs::remove_file(&w.placed.final_path);
                let e = StoreError::Corrupt("writing the mailbox index failed".into());
                answer(w.job.reply, Err(e));
            }
        }
    }

    /// Answers a job given up before it got a UID; its name is no longer pending.
    fn give_up(&self, w: Written, e: StoreError) {
        let p = &w.placed;
        let _ = p.account.with_mailbox(self, &p.mailbox, Scan::No, |state| {
            state.pending.remove(&p.base);
            Ok(())
        });
        answer(w.job.reply, Err(e));
    }
}

/// A mailbox's state, loaded and not marked broken (a broken one is reloaded once).
fn usable_state(
    inner: &Inner,
    account: &AccountDir,
    mailbox: &str,
) -> Result<Arc<Mutex<MailboxState>>, StoreError> {
    for _ in 0..2 {
        let state = account.mailbox(inner, mailbox)?;
        if !lock(&state).broken {
            return Ok(state);
        }
        account.forget(mailbox, &state);
    }
    Err(StoreError::Corrupt(format!(
        "index of mailbox {mailbox:?} cannot be reloaded"
    )))
}

/// Sends a job's answer; its caller may have gone (nothing to tell then).
fn answer(
    reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
    outcome: Result<AppendOutcome, StoreError>,
) {
    let _ = reply.send(outcome);
}

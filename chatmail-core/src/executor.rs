//! Handing CPU-bound or blocking work (password hashes, file-system calls, SEARCH scans)
//! to a thread where blocking is allowed, so async workers stay free.
//!
//! Every component of the crate that blocks (the `maildir` stores of accounts, device
//! tokens and mail, the account service) is built with an `Arc<dyn BlockingExecutor>`
//! and awaits its jobs with [`run_blocking`]. A tokio embedder passes an executor that
//! calls `tokio::task::spawn_blocking`:
//!
//! ```
//! use chatmail_core::BlockingExecutor;
//!
//! struct TokioBlocking;
//! impl BlockingExecutor for TokioBlocking {
//!     fn spawn_blocking(&self, job: Box<dyn FnOnce() + Send + 'static>) {
//!         // In a tokio program: `tokio::task::spawn_blocking(job);`
//!         std::thread::spawn(job);
//!     }
//! }
//! ```
//!
//! Programs without a runtime (tests, command-line tools) use [`InlineExecutor`], which
//! runs the job on the calling thread, and drive the futures with any `block_on`.

use futures::channel::oneshot;

/// The executor dropped a job without running it (it is shutting down): the awaiting
/// operation cannot complete. Accounts and stores report it as their own
/// `ExecutorGone` error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the blocking executor dropped the job")]
pub struct ExecutorGone;

/// Runs blocking jobs somewhere other than the async worker that awaits them.
///
/// Implementations must run every job they are given exactly once, or drop it (the
/// awaiting future then fails with [`ExecutorGone`]); they must not run
/// it on an async worker thread if they serve an async runtime.
pub trait BlockingExecutor: Send + Sync {
    /// Starts `job`; returns without waiting for it.
    fn spawn_blocking(&self, job: Box<dyn FnOnce() + Send + 'static>);
}

/// Runs each job immediately on the calling thread: for tests, command-line tools and
/// embedders that call the async API from their own blocking threads.
#[derive(Debug, Clone, Copy, Default)]
pub struct InlineExecutor;

impl BlockingExecutor for InlineExecutor {
    fn spawn_blocking(&self, job: Box<dyn FnOnce() + Send + 'static>) {
        job()
    }
}

/// Runs each job on a new OS thread: runtime-agnostic, but a thread per job is only
/// reasonable at low rates. Runtimes with a blocking pool should use that instead.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThreadExecutor;

impl BlockingExecutor for ThreadExecutor {
    fn spawn_blocking(&self, job: Box<dyn FnOnce() + Send + 'static>) {
        // If the OS refuses a thread the job (and its result sender) is dropped, which
        // the awaiting side reports as `ExecutorGone`.
        let _ = std::thread::Builder::new()
            .name("chatmail-blocking".into())
            .spawn(job);
    }
}

std::thread_local! {
    /// Whether this thread is running a job started by [`run_blocking`].
    static IN_JOB: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` through `executor` and awaits its result.
///
/// Called from inside a job (a thread where blocking is allowed already), `f` runs at
/// once on that thread instead: a caller may wrap several store calls in one job and
/// drive them there with a `block_on`, so that they cost one hand-over between threads
/// instead of one each (the relay's local delivery does; issue 14 counted ~22 context
/// switches per message before).
pub async fn run_blocking<T, F>(executor: &dyn BlockingExecutor, f: F) -> Result<T, ExecutorGone>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    if IN_JOB.with(|flag| flag.get()) {
        return Ok(f());
    }
    let (job, rx) = job_with_reply(f);
    executor.spawn_blocking(job);
    rx.await.map_err(|_| ExecutorGone)
}

/// Marks the current thread as running a job while `f` runs (restoring the previous
/// mark after, also when `f` panics).
fn as_job<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            IN_JOB.with(|flag| flag.set(self.0));
        }
    }
    let _restore = Restore(IN_JOB.with(|flag| flag.replace(true)));
    f()
}

/// Wraps `f` into a job that sends its result to the returned receiver (which reports
/// an error if the job is dropped without running).
pub(crate) fn job_with_reply<T, F>(
    f: F,
) -> (Box<dyn FnOnce() + Send + 'static>, oneshot::Receiver<T>)
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let job = Box::new(move || {
        // The receiver may be gone if the caller was abandoned; nothing to report then.
        let _ = tx.send(as_job(f));
    });
    (job, rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// Runs jobs on new threads and counts them.
    struct Counting(Arc<AtomicUsize>);
    impl BlockingExecutor for Counting {
        fn spawn_blocking(&self, job: Box<dyn FnOnce() + Send + 'static>) {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(job);
        }
    }

    #[test]
    fn a_job_started_inside_a_job_runs_inline() {
        let jobs = Arc::new(AtomicUsize::new(0));
        let executor: Arc<dyn BlockingExecutor> = Arc::new(Counting(jobs.clone()));
        let inner_executor = executor.clone();
        let (outer_thread, inner_thread) =
            futures::executor::block_on(run_blocking(&*executor, move || {
                let outer = std::thread::current().id();
                let inner = futures::executor::block_on(run_blocking(&*inner_executor, || {
                    std::thread::current().id()
                }))
                .unwrap();
                (outer, inner)
            }))
            .unwrap();
        assert_eq!(outer_thread, inner_thread);
        assert_eq!(jobs.load(Ordering::SeqCst), 1, "one hand-over, not two");
        // Outside a job, the executor is used again.
        let here = std::thread::current().id();
        let there =
            futures::executor::block_on(run_blocking(&*executor, || std::thread::current().id()))
                .unwrap();
        assert_ne!(here, there);
        assert_eq!(jobs.load(Ordering::SeqCst), 2);
    }
}

//! Handing CPU-bound or blocking work (password hashes, file-system calls) to a thread
//! where blocking is allowed, so async workers stay free.

use futures::channel::oneshot;

use super::AccountError;

/// Runs blocking jobs somewhere other than the async worker that awaits them.
///
/// Implementations must run every job they are given exactly once, or drop it (the
/// awaiting future then fails with [`AccountError::ExecutorGone`]); they must not run
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

/// Runs each job on a new OS thread: runtime-agnostic, but a thread per login is only
/// reasonable at low login rates. Runtimes with a blocking pool should use it instead.
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

/// Runs `f` through `executor` and awaits its result.
pub async fn run_blocking<T, F>(executor: &dyn BlockingExecutor, f: F) -> Result<T, AccountError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (job, rx) = job_with_reply(f);
    executor.spawn_blocking(job);
    rx.await.map_err(|_| AccountError::ExecutorGone)
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
        // The receiver may be gone if the login was abandoned; nothing to report then.
        let _ = tx.send(f());
    });
    (job, rx)
}

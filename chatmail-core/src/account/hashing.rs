//! A pool of threads of its own for password hashes, with a bounded queue
//! ([`HashingPool`]).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Every thread and queue place of the pool is taken; try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("every password hashing thread is busy and the queue is full")]
pub struct PoolBusy;

/// A pool of threads of its own for password hashes, with a bounded queue.
///
/// Hashes are CPU work that a client can ask for at will, while the file-system work of
/// deliveries (the fsyncs before each `250`) waits on the [`crate::BlockingExecutor`]. On a
/// shared executor a flood of logins would queue ahead of those fsyncs; here, hashes run
/// on at most `threads` threads, at most `queue` more wait, and any further one is
/// refused at once with [`PoolBusy`] (the login gets a temporary failure: SMTP `454
/// 4.7.0`, IMAP `NO [UNAVAILABLE]`), so neither CPU nor memory grows with the flood.
///
/// Threads start on demand, up to `threads`, and end when the pool is dropped.
pub struct HashingPool {
    sender: SyncSender<Job>,
    receiver: Arc<Mutex<Receiver<Job>>>,
    threads: usize,
    queue: usize,
    started: AtomicUsize,
    accepted: AtomicU64,
}

impl std::fmt::Debug for HashingPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashingPool")
            .field("threads", &self.threads)
            .field("queue", &self.queue)
            .field("accepted", &self.jobs_accepted())
            .finish_non_exhaustive()
    }
}

impl HashingPool {
    /// A pool of `threads` threads (0: one per CPU core) with room for `queue` waiting
    /// jobs (at least 1).
    pub fn new(threads: usize, queue: usize) -> HashingPool {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let queue = queue.max(1);
        let (sender, receiver) = mpsc::sync_channel(queue);
        HashingPool {
            sender,
            receiver: Arc::new(Mutex::new(receiver)),
            threads,
            queue,
            started: AtomicUsize::new(0),
            accepted: AtomicU64::new(0),
        }
    }

    /// The pool of `config`'s `password_hash_threads` and `password_hash_queue`.
    pub fn from_config(config: &crate::config::Config) -> HashingPool {
        HashingPool::new(config.password_hash_threads, config.password_hash_queue)
    }

    /// Threads the pool may run.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Jobs the pool has taken since it was made (a counter for tests and metrics).
    pub fn jobs_accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Queues `job`, or refuses it at once when every thread and queue place is taken.
    pub fn try_spawn(&self, job: Job) -> Result<(), PoolBusy> {
        self.start_thread_if_needed();
        match self.sender.try_send(job) {
            Ok(()) => {
                self.accepted.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(PoolBusy),
        }
    }

    /// Runs `f` on the pool and awaits its result. `Err(PoolBusy)` when the pool is full
    /// (nothing ran), or when the pool went away before running it.
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolBusy>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (job, rx) = crate::executor::job_with_reply(f);
        self.try_spawn(job)?;
        rx.await.map_err(|_| PoolBusy)
    }

    /// Starts one more worker while fewer than `threads` run: each worker takes jobs until
    /// the pool is dropped, so a burst never starts more than `threads`.
    fn start_thread_if_needed(&self) {
        let mut started = self.started.load(Ordering::Relaxed);
        while started < self.threads {
            match self.started.compare_exchange(
                started,
                started + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let receiver = self.receiver.clone();
                    let spawned = std::thread::Builder::new()
                        .name("chatmail-hash".into())
                        .spawn(move || worker(&receiver));
                    if spawned.is_err() {
                        // The OS refused a thread: give the slot back and try next time.
                        self.started.fetch_sub(1, Ordering::AcqRel);
                        tracing::warn!("cannot start a password hashing thread");
                    }
                    return;
                }
                Err(now) => started = now,
            }
        }
    }
}

/// Takes jobs until every sender is gone.
fn worker(receiver: &Mutex<Receiver<Job>>) {
    loop {
        let job = {
            let receiver = receiver.lock().unwrap_or_else(|e| e.into_inner());
            receiver.recv()
        };
        match job {
            // A panicking job (a bug) must not take the thread with it: the pool would
            // shrink with every panic until nothing hashes any more.
            Ok(job) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use std::sync::mpsc::channel;

    #[test]
    fn runs_jobs_and_counts_them() {
        let pool = HashingPool::new(2, 4);
        let results: Vec<u32> = (0..10)
            .map(|i| block_on(pool.run(move || i * 2)).unwrap())
            .collect();
        assert_eq!(results, (0..10).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(pool.jobs_accepted(), 10);
        assert!(pool.started.load(Ordering::Relaxed) <= 2);
    }

    #[test]
    fn a_full_pool_refuses_at_once() {
        let pool = HashingPool::new(1, 1);
        let (started_tx, started_rx) = channel();
        let (release_tx, release_rx) = channel::<()>();
        pool.try_spawn(Box::new(move || {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv();
        }))
        .unwrap();
        started_rx.recv().unwrap();
        // The thread is busy: one job may wait, the next is refused.
        let (done_tx, done_rx) = channel();
        pool.try_spawn(Box::new(move || done_tx.send(()).unwrap()))
            .unwrap();
        assert_eq!(pool.try_spawn(Box::new(|| {})), Err(PoolBusy));
        assert_eq!(block_on(pool.run(|| 1)), Err(PoolBusy));
        assert_eq!(pool.jobs_accepted(), 2);
        release_tx.send(()).unwrap();
        done_rx.recv().unwrap();
        assert_eq!(block_on(pool.run(|| 7)), Ok(7));
    }

    #[test]
    fn a_panicking_job_does_not_kill_the_pool() {
        let pool = HashingPool::new(1, 1);
        assert_eq!(
            block_on(pool.run(|| -> u8 { panic!("bug") })),
            Err(PoolBusy)
        );
        assert_eq!(block_on(pool.run(|| 3)), Ok(3));
    }
}

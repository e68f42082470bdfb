//! [`lock`]: the one way the stores take their mutexes.

/// Locks a mutex even if a thread panicked while holding it. Every store keeps its state
/// consistent at each step that can panic, and a mail server must not stop serving an
/// account because one request panicked.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

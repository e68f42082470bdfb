//! [`Signal`]: wakes the one task that runs the delivery queue, with any runtime.

use futures::task::AtomicWaker;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

/// A flag that one waiter awaits and anyone raises: "the queue changed, look again".
/// Raising it before the waiter waits is not lost (the next wait returns at once).
#[derive(Default)]
pub(crate) struct Signal {
    raised: AtomicBool,
    waker: AtomicWaker,
}

impl Signal {
    /// Raises the flag and wakes the waiter, if any.
    pub(crate) fn raise(&self) {
        self.raised.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Completes once the flag is raised (at once if it already is), lowering it.
    pub(crate) fn wait(&self) -> impl Future<Output = ()> + '_ {
        Wait { signal: self }
    }
}

struct Wait<'a> {
    signal: &'a Signal,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.raised.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.signal.waker.register(cx.waker());
        // Raised between the first check and the registration: do not miss it.
        if self.signal.raised.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn a_raise_before_the_wait_is_not_lost() {
        let s = Signal::default();
        assert!(s.wait().now_or_never().is_none());
        s.raise();
        assert!(s.wait().now_or_never().is_some());
        assert!(s.wait().now_or_never().is_none(), "one raise wakes once");
    }
}

//! [`ShutdownSignal`]: how the server tells its connections that shutdown has begun.

/// Fires once when the server shuts down; every connection task holds one.
#[derive(Clone)]
pub(crate) struct ShutdownSignal(pub(super) tokio::sync::watch::Receiver<bool>);

impl ShutdownSignal {
    /// Completes when shutdown has begun.
    pub(crate) async fn wait(&mut self) {
        while !*self.0.borrow() {
            if self.0.changed().await.is_err() {
                return;
            }
        }
    }
}

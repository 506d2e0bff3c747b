//! The task's lock as the pipeline sees it: kept alive by the manager's heartbeat until the
//! Completion block releases it, just before it reports.
//!
//! Releasing stops the heartbeat *and waits for an extendLock already on the wire*, so that no
//! extension lands after the report: after a `failure`, a late extension would replace the
//! engine's retry timeout with a full lock duration; after an `unlock`, it would take back a
//! task procos just gave away.

use std::sync::Arc;

use tokio::sync::{Mutex, MutexGuard};
use tokio_util::sync::CancellationToken;

/// Shared between a task's heartbeat and its pipeline.
#[derive(Debug, Clone, Default)]
pub struct Lease {
    stop: CancellationToken,
    busy: Arc<Mutex<()>>,
}

impl Lease {
    /// A lease whose heartbeat has not been stopped.
    pub fn new() -> Self {
        Self::default()
    }

    /// For the heartbeat: permission to send one extension, or `None` once released.
    /// Hold the guard for the whole call.
    pub async fn permit(&self) -> Option<MutexGuard<'_, ()>> {
        let guard = self.busy.lock().await;
        (!self.stop.is_cancelled()).then_some(guard)
    }

    /// Fires when the lease is released.
    pub fn released(&self) -> &CancellationToken {
        &self.stop
    }

    /// Stops the heartbeat and waits until no extension is in flight.
    pub async fn release(&self) {
        self.stop.cancel();
        drop(self.busy.lock().await);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn release_waits_for_the_extension_in_flight() {
        let lease = Lease::new();
        let heartbeat = lease.clone();
        let in_flight = tokio::spawn(async move {
            let _guard = heartbeat.permit().await.expect("not released yet");
            tokio::time::sleep(Duration::from_secs(2)).await; // a slow extendLock
        });
        tokio::task::yield_now().await;
        let started = tokio::time::Instant::now();
        lease.release().await;
        assert!(
            started.elapsed() >= Duration::from_secs(2),
            "release waited for the call"
        );
        assert!(lease.permit().await.is_none(), "no extension after release");
        in_flight.await.expect("joined");
    }
}

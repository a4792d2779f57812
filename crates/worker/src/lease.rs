//! The lease of a running attempt: kept alive by heartbeats (which also carry progress and
//! bring cancel requests), and the end of any step that must stop when it is lost.

use audiomill_store::{Heartbeat, Lease, Store};
use chrono::Utc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

/// The lease as seen by the heartbeat task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseState {
    Held,
    CancelRequested,
    Lost,
}

/// Heartbeats for the whole attempt: extends the lease, sends the latest progress, and reports
/// a cancel request or a lost lease. Stops when dropped.
pub(crate) struct LeaseKeeper {
    state: watch::Receiver<LeaseState>,
    _task: AbortOnDrop<()>,
}

impl LeaseKeeper {
    /// Heartbeats `lease` in `store` every `every`, extending it by `extend` each time.
    pub(crate) fn spawn(
        store: Arc<dyn Store>,
        lease: Lease,
        every: Duration,
        extend: Duration,
        mut progress: watch::Receiver<Option<f64>>,
    ) -> Self {
        let (tx, rx) = watch::channel(LeaseState::Held);
        let every = every.max(Duration::from_millis(10));
        let task = tokio::spawn(
            async move {
                let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut sent: Option<f64> = None;
                loop {
                    ticks.tick().await;
                    let latest = *progress.borrow_and_update();
                    let report = if latest != sent { latest } else { None };
                    match store.heartbeat(&lease, extend, report, Utc::now()).await {
                        Ok(Heartbeat::Held { cancel_requested }) => {
                            sent = latest;
                            if cancel_requested {
                                tx.send_if_modified(|s| {
                                    let changed = *s == LeaseState::Held;
                                    *s = LeaseState::CancelRequested;
                                    changed
                                });
                            }
                        }
                        Ok(Heartbeat::Lost) => {
                            tx.send_replace(LeaseState::Lost);
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                    }
                }
            }
            .in_current_span(),
        );
        Self {
            state: rx,
            _task: AbortOnDrop(task),
        }
    }

    pub(crate) fn state(&self) -> LeaseState {
        *self.state.borrow()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<LeaseState> {
        let mut rx = self.state.clone();
        rx.mark_changed();
        rx
    }
}

/// A task aborted when its handle is dropped.
pub(crate) struct AbortOnDrop<T>(pub(crate) JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    pub(crate) async fn join(mut self) -> Option<T> {
        (&mut self.0).await.ok()
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

//! `last_cursor` bookkeeping off the request path.
//!
//! Every List Activity (and v1 events) response hands out a cursor, and the subscription's
//! `last_cursor` / `last_cursor_updated_at` must track the newest one (seed 003). Writing that
//! in the request costs a store write per page, serialized with every other writer, and it was
//! the largest part of what HTTP added to a page's latency (BENCHMARKS.md, `bench api`).
//! Instead the newest cursor per subscription is kept here and written in batches a moment
//! later; reads of a subscription on this node see the pending value at once. A crash can lose
//! at most the last [`FLUSH_DELAY`] of `last_cursor` updates, which is advisory by nature:
//! clients store the cursors they receive.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tidemark_model::{Subscription, SubscriptionId};
use tidemark_store::{Store, StoreError};
use tokio::sync::Notify;

/// How long a handed-out cursor may wait before it is written.
pub const FLUSH_DELAY: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
struct Pending {
    cursor: String,
    position: u64,
    at: DateTime<Utc>,
}

/// The newest cursor handed out per subscription, not yet written to the store.
#[derive(Debug, Default)]
pub struct CursorLog {
    pending: Mutex<HashMap<SubscriptionId, Pending>>,
    wake: Notify,
}

impl CursorLog {
    /// Notes that `cursor` (at stream `position`) was handed out for `subscription`.
    pub fn record(&self, subscription: SubscriptionId, cursor: &str, position: u64) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let newer = pending
            .get(&subscription)
            .is_none_or(|known| position >= known.position);
        if newer {
            pending.insert(
                subscription,
                Pending {
                    cursor: cursor.to_owned(),
                    position,
                    at: Utc::now(),
                },
            );
            self.wake.notify_one();
        }
    }

    /// `subscription` with its `last_cursor` as this node last handed it out.
    pub fn overlay(&self, mut subscription: Subscription) -> Subscription {
        if let Ok(pending) = self.pending.lock() {
            if let Some(known) = pending.get(&subscription.id) {
                subscription.last_cursor = Some(known.cursor.clone());
                subscription.last_cursor_updated_at = Some(known.at);
            }
        }
        subscription
    }

    /// Writes everything pending to the store.
    pub async fn flush(&self, store: &dyn Store) {
        let batch: Vec<(SubscriptionId, Pending)> = match self.pending.lock() {
            Ok(pending) => pending.iter().map(|(id, p)| (*id, p.clone())).collect(),
            Err(_) => return,
        };
        for (subscription, entry) in batch {
            match store
                .record_last_cursor(subscription, &entry.cursor, entry.position)
                .await
            {
                Ok(()) | Err(StoreError::NotFound(_)) => {
                    if let Ok(mut pending) = self.pending.lock() {
                        // Keep anything newer that arrived meanwhile.
                        if pending.get(&subscription).is_some_and(|p| {
                            p.position == entry.position && p.cursor == entry.cursor
                        }) {
                            pending.remove(&subscription);
                        }
                    }
                }
                Err(error) => {
                    tracing::warn!(subscription, %error, "could not record last_cursor; will retry")
                }
            }
        }
    }

    /// Writes pending cursors shortly after they appear, until `shutdown`; then writes the
    /// rest.
    pub async fn run(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {
                    tokio::time::sleep(FLUSH_DELAY).await;
                    self.flush(&*store).await;
                }
            }
        }
        self.flush(&*store).await;
    }
}

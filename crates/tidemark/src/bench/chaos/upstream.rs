//! The upstreams of a chaos run: one Jive simulator per account, and the workload that changes
//! them while writing down, per simulator, the activity ids the `jive` connector must emit.
//!
//! The workload only makes changes that are events in Jive's API, so the expected stream is
//! exact: a new content item (`add`, id `<content id>@<updated ms>`) or the deletion of an item
//! that existed before the subscription began (`delete`, id `deleted:<deletedObject id>`). Edits
//! are left out on purpose: polling sees states, and two edits between polls are one `update`.
//! Each simulator's timestamps strictly increase (at least 1 ms apart), so the expected order
//! is the order of the changes. Now and then a simulator is also told to misbehave on its next
//! request (rate limit, 5xx, slow or broken answers), which must delay activity, never lose,
//! repeat or reorder it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{json, Value};
use tidemark_simulators::jive::ContentSpec;
use tidemark_simulators::{Fault, JiveSimulator};

/// Items each simulator holds before its subscription begins (the ones the workload deletes).
const OLD_ITEMS: usize = 10;

/// Of the workload's changes, about this share are deletions (while old items remain).
const DELETE_SHARE: f64 = 0.25;

/// After about this share of changes, the simulator's next request misbehaves (see
/// [`random_fault`]).
const FAULT_SHARE: f64 = 0.03;

/// A misbehaviour of the upstream that the connector must survive without losing its place:
/// 429 with `Retry-After`, a 5xx, an answer slower than half a lease (the poll times out), a
/// truncated body, or items without a required field.
fn random_fault(rng: &mut StdRng) -> Fault {
    match rng.random_range(0..5) {
        0 => Fault::RateLimited {
            retry_after_secs: 1,
        },
        1 => Fault::ServerError {
            status: if rng.random_bool(0.5) { 500 } else { 503 },
        },
        2 => Fault::Slow {
            delay: Duration::from_millis(rng.random_range(100..4000)),
        },
        3 => Fault::MalformedJson,
        _ => Fault::MissingField,
    }
}

/// One simulator and what has been done to it.
pub(super) struct Upstream {
    /// The simulator.
    pub sim: JiveSimulator,
    /// Activity ids the connector must emit, in order.
    pub expected: Vec<String>,
    /// Ids of items from before the subscription that are not deleted yet.
    old_live: Vec<String>,
    /// The last change's timestamp, epoch milliseconds.
    last_ms: i64,
}

/// The run's simulators, shared between the workload and the checks.
pub(super) type Upstreams = Arc<Vec<Mutex<Upstream>>>;

/// Locks one upstream (a panic elsewhere does not hide the state from the checks).
pub(super) fn lock(upstream: &Mutex<Upstream>) -> std::sync::MutexGuard<'_, Upstream> {
    upstream
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts `count` simulators, each with [`OLD_ITEMS`] items from an hour ago.
pub(super) async fn start(count: usize) -> anyhow::Result<Upstreams> {
    let hour_ago = Utc::now() - chrono::Duration::hours(1);
    let mut upstreams = Vec::with_capacity(count);
    for _ in 0..count {
        let sim = JiveSimulator::start().await?;
        let old_live = (0..OLD_ITEMS)
            .map(|index| sim.create_content(ContentSpec::new(format!("old {index}"), hour_ago)))
            .collect();
        upstreams.push(Mutex::new(Upstream {
            sim,
            expected: Vec::new(),
            old_live,
            last_ms: hour_ago.timestamp_millis(),
        }));
    }
    Ok(Arc::new(upstreams))
}

impl Upstream {
    /// The account config reaching this simulator: polled every second, with a one-second
    /// safety lag (the workload's items are visible the moment they are timestamped).
    pub fn account_config(&self) -> Value {
        json!({
            "base_url": self.sim.base_url(),
            "credentials": {"username": "admin", "password": "password"},
            "poll_interval_seconds": 1,
            "safety_lag_seconds": 1,
            "page_size": 100,
        })
    }

    /// One change, timestamped now (or 1 ms after the previous one), sometimes followed by a
    /// scripted fault; returns whether one was.
    fn change(&mut self, rng: &mut StdRng) -> bool {
        self.make_change(rng);
        if rng.random_bool(FAULT_SHARE) {
            self.sim.push_fault(random_fault(rng));
            return true;
        }
        false
    }

    fn make_change(&mut self, rng: &mut StdRng) {
        let millis = Utc::now().timestamp_millis().max(self.last_ms + 1);
        self.last_ms = millis;
        let Some(at) = DateTime::<Utc>::from_timestamp_millis(millis) else {
            return;
        };
        if !self.old_live.is_empty() && rng.random_bool(DELETE_SHARE) {
            let id = self
                .old_live
                .swap_remove(rng.random_range(0..self.old_live.len()));
            if let Some(deleted) = self.sim.delete_content(&id, at) {
                self.expected.push(format!("deleted:{deleted}"));
            }
            return;
        }
        let number = self.expected.len();
        let id = self
            .sim
            .create_content(ContentSpec::new(format!("item {number}"), at));
        self.expected.push(format!("{id}@{millis}"));
    }
}

/// Changes random upstreams at about `rate` changes a second until `stop` turns true.
///
/// # Returns
/// How many changes were made, and how many upstream faults were scripted.
pub(super) async fn generate(
    upstreams: Upstreams,
    rate: f64,
    seed: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (u64, u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let tick = Duration::from_millis(10);
    let started = Instant::now();
    let mut made = 0u64;
    let mut faults = 0u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = stop.wait_for(|stopped| *stopped) => return (made, faults),
        }
        // Catch up to the rate (a late tick makes up for the changes it owes).
        let owed = (started.elapsed().as_secs_f64() * rate) as u64;
        while made < owed && !upstreams.is_empty() {
            let index = rng.random_range(0..upstreams.len());
            if lock(&upstreams[index]).change(&mut rng) {
                faults += 1;
            }
            made += 1;
        }
    }
}

//! The upstreams of a chaos run: one simulator per account (Jive and Onna in turn), and the
//! workload that changes them while writing down, per simulator, the activity ids the
//! connector must emit.
//!
//! The workload only makes changes that are events in the upstream's API, so the expected
//! stream is exact:
//! - Jive: a new content item (`add`, id `<content id>@<updated ms>`), sometimes a burst of
//!   them with one timestamp (ties, split across pages of 5), or the deletion of an item that
//!   existed before the subscription began (`delete`, id `deleted:<deletedObject
//!   id>`). Edits are left out on purpose: polling sees states, and two edits between polls
//!   are one `update`.
//! - Onna: a record in the activity log (`activity:<_id>`, whole seconds) or in the audit log
//!   (`audit:<_id>`, microseconds); the connector merges the two logs by time.
//!
//! Each simulator's changes are timestamped later than the one before (at least 1 ms, and an
//! activity-log record on the next whole second), the items of a Jive burst alike, which Jive
//! orders by id: the expected order is the order of the changes. Now and then a simulator is also told to misbehave on its next
//! request (rate limit, 5xx, slow or broken answers), which must delay activity, never lose,
//! repeat or reorder it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::{json, Value};
use tidemark_simulators::jive::ContentSpec;
use tidemark_simulators::onna::{ActivityLogSpec, AuditLogSpec};
use tidemark_simulators::{Fault, JiveSimulator, OnnaSimulator};

/// Items each simulator holds before its subscription begins (the ones the workload deletes).
const OLD_ITEMS: usize = 10;

/// Of the workload's changes, about this share are deletions (while old items remain).
const DELETE_SHARE: f64 = 0.25;

/// Of Jive's new content, about this share comes in a burst of 2 to [`MAX_BURST`] items with
/// one timestamp.
const BURST_SHARE: f64 = 0.2;

/// The largest burst: more than a page, so ties are split across pages.
const MAX_BURST: usize = 12;

/// Items per request of the Jive accounts (small, so polls take several pages).
const JIVE_PAGE_SIZE: u64 = 5;

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

/// A simulator of either kind.
pub(super) enum Sim {
    /// Jive REST v3.
    Jive(JiveSimulator),
    /// Onna's activity and audit logs.
    Onna(OnnaSimulator),
}

/// One simulator and what has been done to it.
pub(super) struct Upstream {
    /// The simulator.
    pub sim: Sim,
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

/// Starts `count` simulators, Jive and Onna in turn (`onna`: false for Jive only); each Jive
/// one holds [`OLD_ITEMS`] items from an hour ago.
pub(super) async fn start(count: usize, onna: bool) -> anyhow::Result<Upstreams> {
    let hour_ago = Utc::now() - chrono::Duration::hours(1);
    let mut upstreams = Vec::with_capacity(count);
    for index in 0..count {
        let (sim, old_live) = if onna && index % 2 == 1 {
            (Sim::Onna(OnnaSimulator::start().await?), Vec::new())
        } else {
            let sim = JiveSimulator::start().await?;
            let old_live = (0..OLD_ITEMS)
                .map(|n| sim.create_content(ContentSpec::new(format!("old {n}"), hour_ago)))
                .collect();
            (Sim::Jive(sim), old_live)
        };
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
    /// The service name of the account.
    pub fn service(&self) -> &'static str {
        match &self.sim {
            Sim::Jive(_) => "jive",
            Sim::Onna(_) => "onna",
        }
    }

    /// The account config reaching this simulator: polled every second, with a one-second
    /// safety lag (the workload's items are visible the moment they are timestamped).
    pub fn account_config(&self) -> Value {
        match &self.sim {
            Sim::Jive(sim) => json!({
                "base_url": sim.base_url(),
                "credentials": {"username": "admin", "password": "password"},
                "poll_interval_seconds": 1,
                "safety_lag_seconds": 1,
                "page_size": JIVE_PAGE_SIZE,
            }),
            Sim::Onna(sim) => json!({
                "base_url": sim.base_url(),
                "credentials": {"token": "sim-token"},
                "poll_interval_seconds": 1,
                "safety_lag_seconds": 1,
                "page_size": 100,
            }),
        }
    }

    /// One change, timestamped now (or 1 ms after the previous one), sometimes followed by a
    /// scripted fault; returns whether one was.
    fn change(&mut self, rng: &mut StdRng) -> bool {
        match &self.sim {
            Sim::Jive(sim) => {
                let sim = sim.clone();
                self.change_jive(&sim, rng);
            }
            Sim::Onna(sim) => {
                let sim = sim.clone();
                self.change_onna(&sim, rng);
            }
        }
        if rng.random_bool(FAULT_SHARE) {
            let fault = random_fault(rng);
            match &self.sim {
                Sim::Jive(sim) => sim.push_fault(fault),
                Sim::Onna(sim) => sim.push_fault(fault),
            }
            return true;
        }
        false
    }

    /// A record in Onna's activity log (on the next whole second) or its audit log.
    fn change_onna(&mut self, sim: &OnnaSimulator, rng: &mut StdRng) {
        let earliest = Utc::now().timestamp_millis().max(self.last_ms + 1);
        if rng.random_bool(0.5) {
            // The activity log keeps whole seconds: the first whole second not before `earliest`.
            let millis = (earliest + 999) / 1000 * 1000;
            self.last_ms = millis;
            let Some(at) = DateTime::<Utc>::from_timestamp_millis(millis) else {
                return;
            };
            let id = sim.add_activity(ActivityLogSpec::new("login", "acmeuser@acmecorp.com", at));
            self.expected.push(format!("activity:{id}"));
        } else {
            self.last_ms = earliest;
            let Some(at) = DateTime::<Utc>::from_timestamp_millis(earliest) else {
                return;
            };
            let number = self.expected.len();
            let id = sim.add_audit(AuditLogSpec::new(
                "add",
                format!("Added source {number}"),
                at,
            ));
            self.expected.push(format!("audit:{id}"));
        }
    }

    /// New content, or the deletion of content from before the subscription.
    fn change_jive(&mut self, sim: &JiveSimulator, rng: &mut StdRng) {
        let millis = Utc::now().timestamp_millis().max(self.last_ms + 1);
        self.last_ms = millis;
        let Some(at) = DateTime::<Utc>::from_timestamp_millis(millis) else {
            return;
        };
        if !self.old_live.is_empty() && rng.random_bool(DELETE_SHARE) {
            let id = self
                .old_live
                .swap_remove(rng.random_range(0..self.old_live.len()));
            if let Some(deleted) = sim.delete_content(&id, at) {
                self.expected.push(format!("deleted:{deleted}"));
            }
            return;
        }
        // Sometimes a burst of items with one timestamp (a bulk upload): ties, split across
        // pages of JIVE_PAGE_SIZE, which Jive orders by content id, i.e. in creation order.
        let burst = if rng.random_bool(BURST_SHARE) {
            rng.random_range(2..=MAX_BURST)
        } else {
            1
        };
        for _ in 0..burst {
            let number = self.expected.len();
            let id = sim.create_content(ContentSpec::new(format!("item {number}"), at));
            self.expected.push(format!("{id}@{millis}"));
        }
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

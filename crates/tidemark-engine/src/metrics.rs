//! The engine's metrics, defined in one place (Prometheus names, `tidemark_engine_*`).

use std::time::Duration;

/// Polls finished, by service and outcome.
pub const POLLS_TOTAL: &str = "tidemark_engine_polls_total";
/// Poll duration, by service.
pub const POLL_DURATION_SECONDS: &str = "tidemark_engine_poll_duration_seconds";
/// Activities appended to streams, by service.
pub const ACTIVITIES_COMMITTED_TOTAL: &str = "tidemark_engine_activities_committed_total";
/// Re-delivered activities absorbed by de-duplication, by service.
pub const DUPLICATES_ABSORBED_TOTAL: &str = "tidemark_engine_duplicates_absorbed_total";
/// Activities deleted by retention.
pub const ACTIVITIES_PRUNED_TOTAL: &str = "tidemark_engine_activities_pruned_total";
/// Subscription leases this node holds right now (polls in progress).
pub const LEASES_HELD: &str = "tidemark_engine_leases_held";
/// Leases this node has taken.
pub const LEASES_ACQUIRED_TOTAL: &str = "tidemark_engine_leases_acquired_total";

/// Registers descriptions with the installed recorder (idempotent).
pub fn describe() {
    metrics::describe_counter!(
        POLLS_TOTAL,
        "Connector polls finished, by service and outcome"
    );
    metrics::describe_histogram!(
        POLL_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Duration of one leased poll (all its pages)"
    );
    metrics::describe_counter!(
        ACTIVITIES_COMMITTED_TOTAL,
        "Activities appended to subscription streams"
    );
    metrics::describe_counter!(
        DUPLICATES_ABSORBED_TOTAL,
        "Re-delivered activities absorbed by de-duplication"
    );
    metrics::describe_counter!(ACTIVITIES_PRUNED_TOTAL, "Activities deleted by retention");
    metrics::describe_gauge!(
        LEASES_HELD,
        "Subscription leases this node holds (polls in progress)"
    );
    metrics::describe_counter!(
        LEASES_ACQUIRED_TOTAL,
        "Subscription leases this node has taken"
    );
}

pub(crate) fn poll_finished(service: &str, outcome: &'static str, elapsed: Duration) {
    metrics::counter!(POLLS_TOTAL, "service" => service.to_owned(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!(POLL_DURATION_SECONDS, "service" => service.to_owned())
        .record(elapsed.as_secs_f64());
}

pub(crate) fn committed(service: &str, appended: usize, duplicates: usize) {
    metrics::counter!(ACTIVITIES_COMMITTED_TOTAL, "service" => service.to_owned())
        .increment(appended as u64);
    if duplicates > 0 {
        metrics::counter!(DUPLICATES_ABSORBED_TOTAL, "service" => service.to_owned())
            .increment(duplicates as u64);
    }
}

pub(crate) fn pruned(rows: u64) {
    metrics::counter!(ACTIVITIES_PRUNED_TOTAL).increment(rows);
}

/// Counts a lease as held until the guard is dropped.
pub(crate) struct LeaseHeld;

impl LeaseHeld {
    pub(crate) fn new() -> Self {
        metrics::counter!(LEASES_ACQUIRED_TOTAL).increment(1);
        metrics::gauge!(LEASES_HELD).increment(1.0);
        LeaseHeld
    }
}

impl Drop for LeaseHeld {
    fn drop(&mut self) {
        metrics::gauge!(LEASES_HELD).decrement(1.0);
    }
}

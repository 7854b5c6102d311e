//! Notification metrics (Prometheus names, `tidemark_notify_*`).

use std::time::Duration;

/// Webhook attempts, by result.
pub const ATTEMPTS_TOTAL: &str = "tidemark_notify_webhook_attempts_total";
/// Webhook attempt latency.
pub const ATTEMPT_DURATION_SECONDS: &str = "tidemark_notify_attempt_duration_seconds";

/// Registers descriptions with the installed recorder.
pub fn describe() {
    metrics::describe_counter!(ATTEMPTS_TOTAL, "Webhook delivery attempts, by result");
    metrics::describe_histogram!(
        ATTEMPT_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Webhook attempt latency"
    );
}

pub(crate) fn attempt(success: bool, latency: Duration) {
    metrics::counter!(ATTEMPTS_TOTAL, "result" => if success { "delivered" } else { "failed" })
        .increment(1);
    metrics::histogram!(ATTEMPT_DURATION_SECONDS).record(latency.as_secs_f64());
}

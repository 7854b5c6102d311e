//! Notification metrics (Prometheus names, `tidemark_notify_*`).

use std::time::Duration;

/// Webhook attempts, by result.
pub const ATTEMPTS_TOTAL: &str = "tidemark_notify_webhook_attempts_total";
/// Webhook attempt latency.
pub const ATTEMPT_DURATION_SECONDS: &str = "tidemark_notify_attempt_duration_seconds";

/// Broker publishes, by broker kind and result (`acked`, `duplicate`, `retriable`, `permanent`).
pub const BROKER_PUBLISHES_TOTAL: &str = "tidemark_notify_broker_publishes_total";
/// Broker publish latency, until the broker's acknowledgement or the error, by broker kind.
pub const BROKER_PUBLISH_DURATION_SECONDS: &str = "tidemark_notify_broker_publish_duration_seconds";

/// Registers descriptions with the installed recorder.
pub fn describe() {
    metrics::describe_counter!(
        BROKER_PUBLISHES_TOTAL,
        "Broker publishes, by broker kind and result"
    );
    metrics::describe_histogram!(
        BROKER_PUBLISH_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "Broker publish latency until the acknowledgement or the error"
    );
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

/// Records one broker publish: `result` is `acked`, `duplicate`, `retriable` or `permanent`.
#[cfg(feature = "brokers")]
pub(crate) fn broker_publish(kind: &'static str, result: &'static str, latency: Duration) {
    metrics::counter!(BROKER_PUBLISHES_TOTAL, "kind" => kind, "result" => result).increment(1);
    metrics::histogram!(BROKER_PUBLISH_DURATION_SECONDS, "kind" => kind)
        .record(latency.as_secs_f64());
}

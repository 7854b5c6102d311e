//! The HTTP API's metrics (Prometheus names, `tidemark_http_*`).

use std::time::Duration;

use axum::http::StatusCode;

/// Requests answered, by route template, method and status.
pub const REQUESTS_TOTAL: &str = "tidemark_http_requests_total";
/// Request latency, by route template and method.
pub const REQUEST_DURATION_SECONDS: &str = "tidemark_http_request_duration_seconds";

/// Registers descriptions with the installed recorder.
pub fn describe() {
    metrics::describe_counter!(
        REQUESTS_TOTAL,
        "HTTP requests answered, by route, method and status"
    );
    metrics::describe_histogram!(
        REQUEST_DURATION_SECONDS,
        metrics::Unit::Seconds,
        "HTTP request latency, by route and method"
    );
}

pub(crate) fn request_finished(route: &str, method: &str, status: StatusCode, elapsed: Duration) {
    metrics::counter!(REQUESTS_TOTAL, "route" => route.to_owned(), "method" => method.to_owned(),
        "status" => status.as_u16().to_string())
    .increment(1);
    metrics::histogram!(REQUEST_DURATION_SECONDS, "route" => route.to_owned(), "method" => method.to_owned())
        .record(elapsed.as_secs_f64());
}

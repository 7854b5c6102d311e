//! The HTTP endpoints `serve` has before the API server exists: `/healthz` and `/metrics`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tidemark_store::Store;

#[derive(Clone)]
struct HttpState {
    store: Arc<dyn Store>,
    metrics: PrometheusHandle,
}

/// `/healthz` (store reachable) and `/metrics` (Prometheus text).
pub fn router(store: Arc<dyn Store>, metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(render_metrics))
        .with_state(HttpState { store, metrics })
}

async fn healthz(State(state): State<HttpState>) -> impl IntoResponse {
    match state.store.list_applications().await {
        Ok(_) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"status":"ok"}"#.to_owned(),
        ),
        Err(error) => {
            tracing::warn!(%error, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"status":"unavailable","reason":"store unreachable"}"#.to_owned(),
            )
        }
    }
}

async fn render_metrics(State(state): State<HttpState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

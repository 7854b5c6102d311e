//! `/healthz` and `/metrics`: for operators and load balancers; no authentication.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;

use crate::error::ApiError;
use crate::AppState;

/// The health answer.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    status: &'static str,
    /// Why it is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
}

/// `GET /healthz`: 200 when the store answers.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The store answers", body = Health), (status = 503, description = "The store does not answer", body = Health)))]
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.list_applications().await {
        Ok(_) => (
            StatusCode::OK,
            axum::Json(Health {
                status: "ok",
                reason: None,
            }),
        ),
        Err(error) => {
            tracing::warn!(%error, "health check failed");
            let health = Health {
                status: "unavailable",
                reason: Some("store unreachable"),
            };
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(health))
        }
    }
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let handle = state
        .metrics
        .as_ref()
        .ok_or_else(|| ApiError::not_found("metrics"))?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    ))
}

/// `GET /openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object)))]
pub async fn openapi_json() -> impl IntoResponse {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let document = DOCUMENT.get_or_init(|| {
        crate::openapi()
            .to_json()
            .unwrap_or_else(|_| "{}".to_owned())
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        document.clone(),
    )
}

//! The one place errors become HTTP responses.
//!
//! Every error a client sees has the Kloudless shape
//! `{"type": "error", "status_code": 400, "error_code": "invalid_parameters", "message": "...",
//! "id": "<request id>"}` and `Content-Type: application/json`. Handlers return [`ApiError`];
//! its response carries the error in an extension, and [`request_context`] (which knows the
//! request id) writes the body. Internal causes are logged, never sent.

use axum::extract::{MatchedPath, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tidemark_store::StoreError;

/// The response header carrying the request id (also the `id` of error bodies).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// An error for the client: a status, a stable machine-readable code and a precise message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// Any status and code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `invalid_parameters`: the request is malformed or a value is out of range.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_parameters", message)
    }

    /// 401 `unauthorized`: missing or unknown credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    /// 404 `not_found`: no such object *for this caller* (another tenant's objects included).
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    /// 409 `conflict`: the request conflicts with the current state (a limit, a rule).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 501 `not_implemented`: a documented capability Tidemark does not have yet.
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, "not_implemented", message)
    }

    /// 500 `internal_server_error`; the cause is logged here and not sent.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_server_error",
            "the server failed to handle the request; it has been logged",
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The error code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict(message) => ApiError::conflict(message),
            StoreError::LeaseLost(_) | StoreError::Corrupt(_) | StoreError::Backend(_) => {
                ApiError::internal(&error)
            }
        }
    }
}

/// The error body, as sent.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"type": "error", "status_code": 400, "error_code": "invalid_parameters",
    "message": "`page_size` must be a whole number from 1 to 1000, got `0`", "id": "5f0c9b1e2d3a4f6e7a8b9c0d"}))]
pub struct ErrorBody {
    /// Always `error`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "error")]
    pub kind: &'static str,
    /// The HTTP status code.
    pub status_code: u16,
    /// A stable, machine-readable code: `invalid_parameters`, `unauthorized`, `not_found`,
    /// `conflict`, `payload_too_large`, `unsupported_media_type`, `method_not_allowed`,
    /// `not_implemented`, `internal_server_error`.
    pub error_code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// The request id (also in the `X-Request-Id` header).
    pub id: String,
}

/// The errors any authenticated route may answer (documentation for the OpenAPI document).
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum CommonErrors {
    /// Invalid input: malformed JSON, wrong types, unknown fields, values out of range.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// Missing or unknown credentials.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// No such object for this caller (objects of other tenants included).
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// The request body is too large.
    #[response(status = 413)]
    PayloadTooLarge(ErrorBody),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// Renders an error body (used by the middleware, and for errors raised outside handlers).
pub fn render(error: &ApiError, request_id: &str) -> Response {
    let body = ErrorBody {
        kind: "error",
        status_code: error.status.as_u16(),
        error_code: error.code.to_owned(),
        message: error.message.clone(),
        id: request_id.to_owned(),
    };
    let json = serde_json::to_vec(&body).unwrap_or_else(|_| b"{\"type\":\"error\"}".to_vec());
    let mut response = (error.status, json).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// Gives every request an id (the `X-Request-Id` response header), renders [`ApiError`]s with
/// it, and records the request's metrics.
pub async fn request_context(request: Request, next: Next) -> Response {
    let request_id = new_request_id();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let mut response = next.run(request).await;
    if let Some(error) = response.extensions_mut().remove::<ApiError>() {
        if error.status.is_server_error() {
            tracing::warn!(request_id, status = error.status.as_u16(), %route, "request failed");
        }
        response = render(&error, &request_id);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    crate::metrics::request_finished(
        &route,
        method.as_str(),
        response.status(),
        started.elapsed(),
    );
    response
}

fn new_request_id() -> String {
    let bytes: [u8; 12] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

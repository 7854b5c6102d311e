//! The HTTP API: Kloudless-compatible accounts, subscriptions, List Activity and v1 events,
//! application settings and API keys, with authentication, tenant isolation and one error
//! shape for every failure.
//!
//! This crate owns everything between the socket and the [`Store`]: routing (under `/v1` and
//! `/v2`, with or without a trailing slash), credentials, input validation, rendering, and the
//! operational endpoints (`/healthz`, `/metrics`). It does not poll upstreams (the engine does)
//! and it keeps no state of its own: any number of API nodes can serve one store.
//!
//! # Layout
//! - [`error`]: [`ApiError`] and the middleware that renders it with the request id.
//! - [`extract`]: extractors whose rejections are [`ApiError`]s; the [`extract::Caller`]
//!   (API key or bearer token).
//! - [`credentials`]: minting and digesting API keys and bearer tokens.
//! - `routes`: one module per resource.
//!
//! # Tenant isolation
//! Every object is reached through its owner: an account through the caller's application
//! (API key) or as the caller itself (bearer token), a subscription through its account. An
//! object of another tenant is answered exactly like a missing one (404), so ids cannot be
//! probed.

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tidemark_store::Store;
use tower::Layer as _;
use tower_http::normalize_path::NormalizePathLayer;

pub mod credentials;
pub mod cursor_log;
pub mod error;
pub mod extract;
pub mod metrics;
mod openapi;
mod routes;
mod views;

pub use error::ApiError;
pub use routes::application::bootstrap_application;

/// Largest request body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The store.
    pub store: Arc<dyn Store>,
    /// Renders `/metrics` (absent: `/metrics` answers 404).
    pub metrics: Option<PrometheusHandle>,
    /// Cursors handed out, written to the store in batches by [`serve`].
    pub cursors: Arc<cursor_log::CursorLog>,
    /// Recently verified API keys and bearer tokens.
    pub credentials: Arc<credentials::CredentialCache>,
    /// How webhook requests are sent (timeouts, trusted roots): the test request on creating
    /// an endpoint uses it, so it should be the notifier's.
    pub webhook_config: Arc<tidemark_notify::webhooks::NotifierConfig>,
}

impl AppState {
    /// State over `store`; `metrics` renders `/metrics`.
    pub fn new(store: Arc<dyn Store>, metrics: Option<PrometheusHandle>) -> Self {
        AppState {
            store,
            metrics,
            cursors: Arc::default(),
            credentials: Arc::default(),
            webhook_config: Arc::default(),
        }
    }

    /// The same state, sending webhook requests as `config` says.
    pub fn with_webhook_config(
        mut self,
        config: tidemark_notify::webhooks::NotifierConfig,
    ) -> Self {
        self.webhook_config = Arc::new(config);
        self
    }
}

/// The whole API as a service that also accepts paths with a trailing slash.
pub fn app(state: AppState) -> tower_http::normalize_path::NormalizePath<Router> {
    metrics::describe();
    NormalizePathLayer::trim_trailing_slash().layer(router(state))
}

/// Every route, with its OpenAPI description: one registration serves both, so the document
/// cannot drift from what is served.
fn documented_routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa::OpenApi as _;
    let per_version = routes::account_routes();
    utoipa_axum::router::OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .nest(
            "/v1",
            routes::application_routes()
                .merge(routes::events_routes())
                .merge(per_version.clone()),
        )
        .nest("/v2", per_version)
        .merge(routes::operational_routes())
}

/// The OpenAPI document of the API (also served at `/openapi.json`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut document = documented_routes().split_for_parts().1;
    // One handler serves several paths (`/v1` and `/v2`): name each operation after its method
    // and path, so operation ids are unique, as OpenAPI requires.
    for (path, item) in document.paths.paths.iter_mut() {
        let operations = [
            ("get", &mut item.get),
            ("post", &mut item.post),
            ("patch", &mut item.patch),
            ("put", &mut item.put),
            ("delete", &mut item.delete),
        ];
        for (method, operation) in operations {
            if let Some(operation) = operation {
                let name: String = path
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                    .collect();
                let name = name
                    .split('_')
                    .filter(|part| !part.is_empty())
                    .collect::<Vec<_>>()
                    .join("_");
                operation.operation_id = Some(format!("{method}_{name}"));
            }
        }
    }
    document
}

/// The API's routes (paths must not end with `/`; [`app`] takes care of that).
pub fn router(state: AppState) -> Router {
    let (routes, _) = documented_routes().split_for_parts();
    routes
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this route",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::internal(&"a handler panicked"))
        }))
        .layer(axum::middleware::from_fn(error::request_context))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` resolves, writing handed-out cursors
/// ([`cursor_log`]) meanwhile and once more at the end.
///
/// # Errors
/// Returns the server's I/O error.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel::<()>();
    let cursors = tokio::spawn(Arc::clone(&state.cursors).run(
        Arc::clone(&state.store),
        async move {
            let _ = stopped_rx.await;
        },
    ));
    let service = axum::ServiceExt::<axum::extract::Request>::into_make_service(app(state));
    let served = axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await;
    // The last cursors handed out are written before returning.
    let _ = stopped_tx.send(());
    let _ = cursors.await;
    served
}

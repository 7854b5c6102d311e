//! `/v1/application`, `/v1/keys` and `/v1/oauth/token`: the tenant's own settings and
//! credentials.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;

use super::PathParams;
use crate::credentials;
use crate::error::{ApiError, CommonErrors, ErrorBody};
use crate::extract::{Caller, JsonBody, Params};
use crate::views::{ApiKeyView, ApplicationView, ListView};
use crate::AppState;

/// `PATCH /v1/application` body. `retention_days: null` keeps activity forever.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApplication {
    /// A new name (1 to 200 characters).
    #[serde(default)]
    name: Option<String>,
    /// Give newly connected accounts a default `changes` subscription.
    #[serde(default)]
    track_activity: Option<bool>,
    /// Days of activity to retain (1..=36500); `null` keeps everything.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<u32>)]
    retention_days: Option<Option<u32>>,
    /// Subscriptions one account may have (1..=100).
    #[serde(default)]
    max_subscriptions_per_account: Option<u32>,
    /// Whether webhooks may target private and loopback addresses (`false` refuses them, so
    /// webhooks cannot be used to probe internal networks).
    #[serde(default)]
    allow_private_webhook_targets: Option<bool>,
}

/// What a bearer token is (`GET /v1/oauth/token`).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// The application the token was granted to, as a string (the Kloudless SDK compares it
    /// with the application id it was given).
    client_id: String,
    /// The account the token reaches.
    account_id: i64,
    /// What the token may do.
    scope: String,
    /// Always `Bearer`.
    token_type: &'static str,
}

/// Tells "absent" (`None`) from "null" (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<u32>>, D::Error> {
    Option::<u32>::deserialize(deserializer).map(Some)
}

/// `GET /v1/oauth/token`: what a bearer token is (the Kloudless SDK's `verify_token`).
#[utoipa::path(get, path = "/oauth/token", tag = "application", security(("bearer" = [])),
    responses((status = 200, description = "What a bearer token is", body = TokenInfo), CommonErrors))]
pub async fn token_info(caller: Caller) -> Result<impl IntoResponse, ApiError> {
    match caller {
        Caller::Account(account) => Ok(Json(TokenInfo {
            client_id: account.application_id.to_string(),
            account_id: account.id,
            scope: format!("{}:normal.activity", account.service),
            token_type: "Bearer",
        })),
        Caller::Application { .. } => Err(ApiError::unauthorized(
            "this route describes a bearer token; send `Authorization: Bearer <token>`",
        )),
    }
}

/// `GET /v1/application`.
#[utoipa::path(get, path = "/application", tag = "application", security(("api_key" = [])),
    responses((status = 200, body = ApplicationView), CommonErrors))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    let application = state
        .store
        .get_application(caller.require_api_key()?)
        .await?;
    Ok(Json(
        serde_json::to_value(ApplicationView::from(&application))
            .map_err(|e| ApiError::internal(&e))?,
    ))
}

/// `PATCH /v1/application`.
#[utoipa::path(patch, path = "/application", tag = "application", request_body = UpdateApplication, security(("api_key" = [])),
    responses((status = 200, body = ApplicationView), CommonErrors))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<UpdateApplication>,
) -> Result<impl IntoResponse, ApiError> {
    let mut application = state
        .store
        .get_application(caller.require_api_key()?)
        .await?;
    if let Some(name) = body.name {
        if name.trim().is_empty() || name.chars().count() > 200 {
            return Err(ApiError::invalid("`name` must be 1 to 200 characters"));
        }
        application.name = name;
    }
    if let Some(track) = body.track_activity {
        application.track_activity = track;
    }
    if let Some(retention) = body.retention_days {
        if retention.is_some_and(|days| !(1..=36_500).contains(&days)) {
            return Err(ApiError::invalid(
                "`retention_days` must be from 1 to 36500, or null to keep activity forever",
            ));
        }
        application.retention_days = retention;
    }
    if let Some(limit) = body.max_subscriptions_per_account {
        if !(1..=100).contains(&limit) {
            return Err(ApiError::invalid(
                "`max_subscriptions_per_account` must be from 1 to 100",
            ));
        }
        application.max_subscriptions_per_account = limit;
    }
    if let Some(allow) = body.allow_private_webhook_targets {
        application.allow_private_webhook_targets = allow;
    }
    let updated = state.store.update_application(&application).await?;
    Ok(Json(
        serde_json::to_value(ApplicationView::from(&updated))
            .map_err(|e| ApiError::internal(&e))?,
    ))
}

/// `GET /v1/keys`: the application's API keys (hints only; keys are shown once).
#[utoipa::path(get, path = "/keys", tag = "application", params(("page" = Option<u64>, Query, description = "Page number, from 1 (default 1)"), ("page_size" = Option<u64>, Query, description = "Objects per page, 1..=1000 (default 100)")), security(("api_key" = [])),
    responses((status = 200, body = ListView<ApiKeyView>), CommonErrors))]
pub async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<impl IntoResponse, ApiError> {
    let (page, page_size) = params.pagination()?;
    let keys = state.store.list_api_keys(caller.require_api_key()?).await?;
    let views = keys.iter().map(|key| ApiKeyView::new(key, None)).collect();
    Ok(Json(ListView::paginate(views, page, page_size, "meta")))
}

/// `POST /v1/keys`: a new API key, shown once.
#[utoipa::path(post, path = "/keys", tag = "application", security(("api_key" = [])),
    responses((status = 201, description = "A new key; `key` is shown only here", body = ApiKeyView), CommonErrors))]
pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    let application_id = caller.require_api_key()?;
    let secret = credentials::mint("tmk_");
    let key = state
        .store
        .create_api_key(
            application_id,
            credentials::digest(&secret),
            &credentials::hint(&secret),
            &secret,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(ApiKeyView::new(&key, Some(secret))),
    ))
}

/// `DELETE /v1/keys/{key}`.
#[utoipa::path(delete, path = "/keys/{key}", tag = "application", params(("key" = i64, Path, description = "The key's id")), security(("api_key" = [])),
    responses((status = 204, description = "Deleted"), (status = 409, description = "The application's last key", body = ErrorBody), CommonErrors))]
pub async fn delete_key(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(key): PathParams<String>,
) -> Result<impl IntoResponse, ApiError> {
    let application_id = caller.require_api_key()?;
    let key_id: i64 = key.parse().map_err(|_| ApiError::not_found("API key"))?;
    state.store.delete_api_key(application_id, key_id).await?;
    state.credentials.clear();
    Ok(StatusCode::NO_CONTENT)
}

/// Creates an application with one API key: `secret` if given (scripted set-ups), else a new
/// one. Returns the application id and the key.
///
/// # Errors
/// Store failures.
pub async fn bootstrap_application(
    store: &dyn tidemark_store::Store,
    name: &str,
    secret: Option<String>,
) -> Result<(i64, String), tidemark_store::StoreError> {
    let secret = secret.unwrap_or_else(|| credentials::mint("tmk_"));
    let (application, _) = store
        .create_application_with_key(
            name,
            credentials::digest(&secret),
            &credentials::hint(&secret),
            &secret,
        )
        .await?;
    Ok((application.id, secret))
}

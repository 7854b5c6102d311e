//! `/accounts/{account}/subscriptions`: what is watched, and how.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use tidemark_model::{MonitoredResource, Subscription, SubscriptionType};
use tidemark_store::NewSubscription;

use super::{resolve_account, resolve_subscription, PathParams};
use crate::error::{ApiError, CommonErrors, ErrorBody};
use crate::extract::{Caller, JsonBody, Params};
use crate::views::{listed_subscription, ListView};
use crate::AppState;

/// `POST .../subscriptions` body (seed 003, "Create a Subscription"); an empty body creates an
/// active `changes` subscription.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscription {
    /// Whether monitoring starts active (default `true`).
    #[serde(default)]
    active: Option<bool>,
    /// `changes` (default), `crawl` or `analytics`.
    #[serde(default)]
    #[schema(example = "changes")]
    subscription_type: Option<String>,
    /// Resources to monitor, `[{"resource": "...", "user"?: "..."}]`, where the service supports it.
    #[serde(default)]
    #[schema(value_type = Option<Vec<MonitoredResource>>)]
    monitored_resources: Option<Value>,
    /// Become the account's default (default: if it has none).
    #[serde(default)]
    default: Option<bool>,
    /// Kloudless subscription state to import: not supported (501).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    internal_state: Option<Value>,
}

/// `PATCH .../subscriptions/{subscription}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubscription {
    /// Activate, or deactivate (`disable_reason` becomes `deactivated_by_user`).
    #[serde(default)]
    active: Option<bool>,
    /// `true` makes this the account's default.
    #[serde(default)]
    default: Option<bool>,
    /// Immutable: sending it is a 400.
    #[serde(default)]
    #[schema(value_type = Option<Vec<MonitoredResource>>)]
    monitored_resources: Option<Value>,
    /// Immutable: sending it is a 400.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    subscription_type: Option<Value>,
    /// Kloudless subscription state to import: not supported (501).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    internal_state: Option<Value>,
}

fn refuse_internal_state(internal_state: &Option<Value>) -> Result<(), ApiError> {
    match internal_state {
        None | Some(Value::Null) => Ok(()),
        Some(_) => Err(ApiError::not_implemented(
            "importing a Kloudless subscription's `internal_state` is not supported",
        )),
    }
}

/// `GET .../subscriptions`.
#[utoipa::path(get, path = "/accounts/{account}/subscriptions", tag = "subscriptions", params(("account" = String, Path, description = "The account: its numeric id, or `me` with a bearer token"), ("page" = Option<u64>, Query, description = "Page number, from 1 (default 1)"), ("page_size" = Option<u64>, Query, description = "Objects per page, 1..=1000 (default 100)")), security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "Subscriptions, without `last_cursor` (seed 003)", body = ListView<Subscription>), CommonErrors))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(reference): PathParams<String>,
    params: Params,
) -> Result<impl IntoResponse, ApiError> {
    let account = resolve_account(&state, &caller, &reference).await?;
    let (page, page_size) = params.pagination()?;
    let subscriptions = state.store.list_subscriptions(account.id).await?;
    let views = subscriptions.iter().map(listed_subscription).collect();
    Ok(Json(ListView::paginate(views, page, page_size, "activity")))
}

/// `POST .../subscriptions`.
#[utoipa::path(post, path = "/accounts/{account}/subscriptions", tag = "subscriptions", params(("account" = String, Path, description = "The account: its numeric id, or `me` with a bearer token")), request_body(content = CreateSubscription, description = "An empty body creates an active `changes` subscription"), security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, body = Subscription), (status = 409, description = "The account has as many subscriptions as the application allows", body = ErrorBody), (status = 501, description = "`internal_state` import", body = ErrorBody), CommonErrors))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(reference): PathParams<String>,
    JsonBody(body): JsonBody<CreateSubscription>,
) -> Result<impl IntoResponse, ApiError> {
    let account = resolve_account(&state, &caller, &reference).await?;
    refuse_internal_state(&body.internal_state)?;
    let subscription_type = match body.subscription_type.as_deref() {
        None => SubscriptionType::Changes,
        Some(text) => {
            SubscriptionType::parse(text).map_err(|e| ApiError::invalid(e.to_string()))?
        }
    };
    let monitored_resources = match &body.monitored_resources {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => {
            MonitoredResource::parse_list(value).map_err(|e| ApiError::invalid(e.to_string()))?
        }
    };
    let connector = tidemark_connectors::build(&account.service, &account.config)
        .map_err(|e| ApiError::invalid(format!("the account's connector cannot start: {e}")))?;
    let capabilities = connector.capabilities();
    match subscription_type {
        SubscriptionType::Changes => {}
        SubscriptionType::Crawl if capabilities.crawl => {}
        other => {
            return Err(ApiError::invalid(format!(
                "`{}` does not support `{}` subscriptions",
                account.service,
                other.as_str()
            )))
        }
    }
    connector
        .check_monitored_resources(&monitored_resources)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let (resource_api, resource_type) = connector.monitored_resource_kind();
    let subscription = state
        .store
        .create_subscription(NewSubscription {
            account_id: account.id,
            subscription_type,
            monitored_resources,
            active: body.active.unwrap_or(true),
            default: body.default,
            monitored_resource_api: resource_api.map(str::to_owned),
            monitored_resource_object_type: resource_type.map(str::to_owned),
        })
        .await?;
    tracing::info!(
        account_id = account.id,
        subscription_id = subscription.id,
        "subscription created"
    );
    Ok((StatusCode::CREATED, Json(subscription)))
}

/// `GET .../subscriptions/{subscription|default}`.
#[utoipa::path(get, path = "/accounts/{account}/subscriptions/{subscription}", tag = "subscriptions", params(("account" = String, Path, description = "The account: its numeric id, or `me` with a bearer token"), ("subscription" = String, Path, description = "The subscription: its numeric id, or `default`")), security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Subscription), CommonErrors))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((account_ref, subscription_ref)): PathParams<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let account = resolve_account(&state, &caller, &account_ref).await?;
    Ok(Json(
        resolve_subscription(&state, &account, &subscription_ref).await?,
    ))
}

/// `PATCH .../subscriptions/{subscription|default}`: `active` and `default`; the rest is
/// immutable.
#[utoipa::path(patch, path = "/accounts/{account}/subscriptions/{subscription}", tag = "subscriptions", params(("account" = String, Path, description = "The account: its numeric id, or `me` with a bearer token"), ("subscription" = String, Path, description = "The subscription: its numeric id, or `default`")), request_body = UpdateSubscription, security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = Subscription), (status = 501, description = "`internal_state` import", body = ErrorBody), CommonErrors))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((account_ref, subscription_ref)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<UpdateSubscription>,
) -> Result<impl IntoResponse, ApiError> {
    let account = resolve_account(&state, &caller, &account_ref).await?;
    let mut subscription = resolve_subscription(&state, &account, &subscription_ref).await?;
    refuse_internal_state(&body.internal_state)?;
    if body.monitored_resources.is_some() {
        return Err(ApiError::invalid(
            "`monitored_resources` cannot be changed once written; delete and re-create the subscription",
        ));
    }
    if body.subscription_type.is_some() {
        return Err(ApiError::invalid(
            "`subscription_type` cannot be changed; delete and re-create the subscription",
        ));
    }
    if body.default == Some(false) && subscription.default {
        return Err(ApiError::invalid(
            "an account keeps one default subscription: set `default: true` on another one instead",
        ));
    }
    if let Some(active) = body.active {
        if active != subscription.active {
            subscription = state
                .store
                .set_subscription_active(subscription.id, active, "deactivated_by_user")
                .await?;
        }
    }
    if body.default == Some(true) && !subscription.default {
        subscription = state
            .store
            .set_default_subscription(subscription.id)
            .await?;
    }
    Ok(Json(subscription))
}

/// `DELETE .../subscriptions/{subscription|default}`: the subscription and all its activity.
#[utoipa::path(delete, path = "/accounts/{account}/subscriptions/{subscription}", tag = "subscriptions", params(("account" = String, Path, description = "The account: its numeric id, or `me` with a bearer token"), ("subscription" = String, Path, description = "The subscription: its numeric id, or `default`")), security(("api_key" = []), ("bearer" = [])),
    responses((status = 204, description = "Deleted with all its activity"), CommonErrors))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((account_ref, subscription_ref)): PathParams<(String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let account = resolve_account(&state, &caller, &account_ref).await?;
    let subscription = resolve_subscription(&state, &account, &subscription_ref).await?;
    state.store.delete_subscription(subscription.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

//! Routes, one module per resource, and the lookups that enforce tenancy.

use tidemark_model::{Account, Subscription};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::extract::Caller;
use crate::AppState;

mod accounts;
mod activity;
pub mod application;
mod backfill;
mod destinations;
mod events;
mod operational;
mod subscriptions;
mod webhooks;

/// Routes under both `/v1` and `/v2`: accounts, subscriptions, activity.
pub fn account_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(accounts::list, accounts::create))
        .routes(routes!(accounts::get, accounts::update, accounts::delete))
        .routes(routes!(subscriptions::list, subscriptions::create))
        .routes(routes!(
            subscriptions::get,
            subscriptions::update,
            subscriptions::delete
        ))
        .routes(routes!(activity::list))
        .routes(routes!(backfill::create))
        .routes(routes!(backfill::get))
}

/// The v1 event stream (under `/v1` only).
pub fn events_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(events::list))
        .routes(routes!(events::latest))
}

/// Application administration and token introspection (under `/v1` only).
pub fn application_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(application::token_info))
        .routes(routes!(application::get, application::update))
        .routes(routes!(application::list_keys, application::create_key))
        .routes(routes!(application::delete_key))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::get, webhooks::update, webhooks::delete))
        .routes(routes!(webhooks::attempts))
        .routes(routes!(webhooks::recover))
        .routes(routes!(destinations::list, destinations::create))
        .routes(routes!(
            destinations::get,
            destinations::update,
            destinations::delete
        ))
        .routes(routes!(destinations::attempts))
}

/// `/healthz`, `/metrics`, `/openapi.json` (no authentication).
pub fn operational_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(operational::healthz))
        .routes(routes!(operational::metrics))
        .routes(routes!(operational::openapi_json))
}

/// The account named in a path (`me` or a numeric id), as the caller may see it.
///
/// # Errors
/// 404 for an account that does not exist *or belongs to someone else*; 400 for `me` with an
/// API key (which account would that be?).
pub async fn resolve_account(
    state: &AppState,
    caller: &Caller,
    reference: &str,
) -> Result<Account, ApiError> {
    match (caller, reference) {
        (Caller::Account(account), "me") => Ok((**account).clone()),
        (Caller::Application { .. }, "me") => Err(ApiError::invalid(
            "`me` names the account of a bearer token; with an API key, use the account's numeric id",
        )),
        (Caller::Account(account), id) => match id.parse::<i64>() {
            Ok(id) if id == account.id => Ok((**account).clone()),
            _ => Err(ApiError::not_found("account")),
        },
        (Caller::Application { application_id }, id) => {
            let id: i64 = id.parse().map_err(|_| ApiError::not_found("account"))?;
            match state.store.get_account(id).await {
                Ok(account) if account.application_id == *application_id => Ok(account),
                Ok(_) | Err(tidemark_store::StoreError::NotFound(_)) => Err(ApiError::not_found("account")),
                Err(error) => Err(error.into()),
            }
        }
    }
}

/// The subscription named in a path (`default` or a numeric id) of `account`.
///
/// # Errors
/// 404 when the account has no such subscription (or no default).
pub async fn resolve_subscription(
    state: &AppState,
    account: &Account,
    reference: &str,
) -> Result<Subscription, ApiError> {
    if reference == "default" {
        return state
            .store
            .list_subscriptions(account.id)
            .await?
            .into_iter()
            .find(|subscription| subscription.default)
            .map(|subscription| state.cursors.overlay(subscription))
            .ok_or_else(|| ApiError::not_found("default subscription"));
    }
    let id: i64 = reference
        .parse()
        .map_err(|_| ApiError::not_found("subscription"))?;
    match state.store.get_subscription(id).await {
        Ok(subscription) if subscription.account == account.id => {
            Ok(state.cursors.overlay(subscription))
        }
        Ok(_) | Err(tidemark_store::StoreError::NotFound(_)) => {
            Err(ApiError::not_found("subscription"))
        }
        Err(error) => Err(error.into()),
    }
}

/// Path parameters, with a rejection that is an [`ApiError`].
pub struct PathParams<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for PathParams<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| PathParams(value))
            .map_err(|rejection| {
                ApiError::invalid(format!("invalid path: {}", rejection.body_text()))
            })
    }
}

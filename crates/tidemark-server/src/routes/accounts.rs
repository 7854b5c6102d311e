//! `/accounts`: connect, list, read, change and disconnect upstream accounts.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use tidemark_connectors::ConnectorError;
use tidemark_store::{AccountPatch, NewAccount};

use super::{resolve_account, PathParams};
use crate::credentials;
use crate::error::{ApiError, CommonErrors};
use crate::extract::{Caller, JsonBody, Params};
use crate::views::{AccountView, ListView};
use crate::AppState;

/// Longest string accepted anywhere in an account config.
const MAX_CONFIG_STRING: usize = 4096;
/// How long connecting may take to check the account with its upstream.
const VALIDATE_TIMEOUT: Duration = Duration::from_secs(15);

/// `POST /accounts` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    /// Service name, e.g. `local`.
    #[schema(example = "local")]
    service: String,
    /// Whether the account yields org-wide audit activity.
    #[serde(default)]
    admin: bool,
    /// Connection config: `base_url`, `credentials` (write-only), `poll_interval_seconds`, and
    /// the connector's own fields (`local`: `{"path": "/some/dir"}`).
    #[serde(default)]
    #[schema(value_type = Option<Object>, example = json!({"path": "/srv/shared"}))]
    config: Option<Value>,
}

/// `PATCH /accounts/{account}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAccount {
    /// New `admin` flag.
    #[serde(default)]
    admin: Option<bool>,
    /// A new config, replacing the old one (checked like a new account's).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
}

/// The `disable_reason` of a subscription whose upstream refused the account's credentials.
const INVALID_CREDENTIALS: &str = "invalid_credentials";

/// Credentials are write-only, so a client cannot send back what it never saw: a new config
/// without `credentials` keeps the old ones.
fn keep_credentials(mut config: Value, old: &Value) -> Value {
    if let (Some(object), Some(credentials)) = (config.as_object_mut(), old.get("credentials")) {
        object
            .entry("credentials")
            .or_insert_with(|| credentials.clone());
    }
    config
}

/// Checks a config's shape, then builds and validates the connector with it.
async fn check_config(service: &str, config: &Value) -> Result<(), ApiError> {
    if !config.is_object() {
        return Err(ApiError::invalid("`config` must be a JSON object"));
    }
    check_string_lengths(config, "config")?;
    let connector = tidemark_connectors::build(service, config).map_err(connector_error)?;
    tidemark_connectors::poll_interval(config, &*connector).map_err(connector_error)?;
    match tokio::time::timeout(VALIDATE_TIMEOUT, connector.validate()).await {
        Ok(result) => result.map_err(connector_error),
        Err(_) => Err(ApiError::invalid(format!(
            "could not reach the upstream within {}s to check the account",
            VALIDATE_TIMEOUT.as_secs()
        ))),
    }
}

fn connector_error(error: ConnectorError) -> ApiError {
    match error {
        ConnectorError::UnknownService(service) => ApiError::invalid(format!(
            "unknown service `{}`; supported: {}",
            crate::extract::truncate(&service, 64),
            tidemark_connectors::services()
                .collect::<Vec<_>>()
                .join(", ")
        )),
        ConnectorError::Unauthorized(message) => ApiError::invalid(format!(
            "the upstream rejected the account's credentials: {message}"
        )),
        other => ApiError::invalid(other.to_string()),
    }
}

fn check_string_lengths(value: &Value, path: &str) -> Result<(), ApiError> {
    match value {
        Value::String(text) if text.len() > MAX_CONFIG_STRING => Err(ApiError::invalid(format!(
            "`{path}` is longer than {MAX_CONFIG_STRING} bytes"
        ))),
        Value::Object(map) => map.iter().try_for_each(|(key, item)| {
            if key.len() > 256 {
                return Err(ApiError::invalid(format!(
                    "a key in `{path}` is longer than 256 bytes"
                )));
            }
            check_string_lengths(item, &format!("{path}.{key}"))
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(index, item)| check_string_lengths(item, &format!("{path}[{index}]"))),
        _ => Ok(()),
    }
}

/// `GET /accounts`: the application's accounts (with a bearer token: that account).
#[utoipa::path(get, path = "/accounts", tag = "accounts", params(("page" = Option<u64>, Query, description = "Page number, from 1 (default 1)"), ("page_size" = Option<u64>, Query, description = "Objects per page, 1..=1000 (default 100)")), security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, description = "The application's accounts (a bearer token sees its own)", body = ListView<AccountView>), CommonErrors))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<impl IntoResponse, ApiError> {
    let (page, page_size) = params.pagination()?;
    let accounts = match &caller {
        Caller::Application { application_id } => {
            state.store.list_accounts(*application_id).await?
        }
        Caller::Account(account) => vec![(**account).clone()],
    };
    let views = accounts
        .iter()
        .map(|account| AccountView::new(account, None))
        .collect();
    Ok(Json(ListView::paginate(views, page, page_size, "meta")))
}

/// `POST /accounts`: connects an account and mints its bearer token (shown once).
#[utoipa::path(post, path = "/accounts", tag = "accounts", request_body = CreateAccount, security(("api_key" = [])),
    responses((status = 201, description = "Connected; `bearer_token` is shown only here", body = AccountView), CommonErrors))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateAccount>,
) -> Result<impl IntoResponse, ApiError> {
    let application_id = caller.require_api_key()?;
    if body.service.is_empty() || body.service.len() > 64 {
        return Err(ApiError::invalid(
            "`service` must be a service name of 1 to 64 characters",
        ));
    }
    let config = body
        .config
        .unwrap_or_else(|| Value::Object(Default::default()));
    check_config(&body.service, &config).await?;
    let token = credentials::mint("tmb_");
    let account = state
        .store
        .create_account(NewAccount {
            application_id,
            service: body.service,
            admin: body.admin,
            config,
            token_digest: Some(credentials::digest(&token)),
        })
        .await?;
    tracing::info!(account_id = account.id, service = %account.service, "account connected");
    Ok((
        StatusCode::CREATED,
        Json(AccountView::new(&account, Some(token))),
    ))
}

/// `GET /accounts/{account}`.
#[utoipa::path(get, path = "/accounts/{account}", tag = "accounts", params(("account" = String, Path, description = "The account: its numeric id, or `me` with a bearer token")), security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AccountView), CommonErrors))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(reference): PathParams<String>,
) -> Result<impl IntoResponse, ApiError> {
    let account = resolve_account(&state, &caller, &reference).await?;
    Ok(Json(AccountView::new(&account, None)))
}

/// `PATCH /accounts/{account}`: changes `admin` or replaces `config` (checked like a new one;
/// `credentials` are kept when the new config omits them). A config that validates re-enables
/// the account's subscriptions disabled with `invalid_credentials`.
#[utoipa::path(patch, path = "/accounts/{account}", tag = "accounts", params(("account" = String, Path, description = "The account: its numeric id, or `me` with a bearer token")), request_body = UpdateAccount, security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = AccountView), CommonErrors))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(reference): PathParams<String>,
    JsonBody(body): JsonBody<UpdateAccount>,
) -> Result<impl IntoResponse, ApiError> {
    let account = resolve_account(&state, &caller, &reference).await?;
    let config = body
        .config
        .map(|config| keep_credentials(config, &account.config));
    if let Some(config) = &config {
        check_config(&account.service, config).await?;
    }
    let reconfigured = config.is_some();
    let updated = state
        .store
        .update_account(
            account.id,
            AccountPatch {
                admin: body.admin,
                config,
            },
        )
        .await?;
    if reconfigured {
        // The new config reached the upstream: subscriptions stopped because it refused the
        // old credentials run again.
        for subscription in state.store.list_subscriptions(account.id).await? {
            if !subscription.active && subscription.disable_reason == INVALID_CREDENTIALS {
                state
                    .store
                    .set_subscription_active(subscription.id, true, "")
                    .await?;
                tracing::info!(
                    account_id = account.id,
                    subscription_id = subscription.id,
                    "credentials fixed; subscription re-enabled"
                );
            }
        }
    }
    state.credentials.clear();
    Ok(Json(AccountView::new(&updated, None)))
}

/// `DELETE /accounts/{account}`: disconnects it; its token, subscriptions and activity go too.
#[utoipa::path(delete, path = "/accounts/{account}", tag = "accounts", params(("account" = String, Path, description = "The account: its numeric id, or `me` with a bearer token")), security(("api_key" = []), ("bearer" = [])),
    responses((status = 204, description = "Deleted, with its token, subscriptions and activity"), CommonErrors))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(reference): PathParams<String>,
) -> Result<impl IntoResponse, ApiError> {
    let account = resolve_account(&state, &caller, &reference).await?;
    state.store.delete_account(account.id).await?;
    state.credentials.clear();
    tracing::info!(account_id = account.id, "account deleted");
    Ok(StatusCode::NO_CONTENT)
}

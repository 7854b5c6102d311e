//! `/v1/webhooks`: JSON webhook endpoints, their attempts, and recovery.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tidemark_notify::filter::EventPattern;
use tidemark_notify::webhooks::{check_target, check_url, PostOptions, Sender};
use tidemark_store::{
    AttemptQuery, NewWebhookEndpoint, WebhookAttempt, WebhookEndpoint, WebhookPatch,
};

use super::PathParams;
use crate::error::{ApiError, CommonErrors, ErrorBody};
use crate::extract::{truncate, Caller, JsonBody, Params};
use crate::views::ListView;
use crate::AppState;

/// A webhook endpoint. `secret` (Standard Webhooks, `whsec_...`) is only in the response that
/// created it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Webhook)]
pub struct WebhookView {
    /// Numeric id.
    id: i64,
    /// Where notifications are POSTed.
    url: String,
    /// EventBridge-style event pattern; `null` notifies for all activity.
    #[schema(value_type = Option<Object>)]
    filter: Option<Value>,
    /// Disabled endpoints are not notified.
    enabled: bool,
    /// The Standard Webhooks signing secret: only when created.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    /// When the endpoint was created.
    #[serde(with = "tidemark_model::time::iso")]
    #[schema(value_type = String, format = DateTime)]
    created: DateTime<Utc>,
    /// When it last changed.
    #[serde(with = "tidemark_model::time::iso")]
    #[schema(value_type = String, format = DateTime)]
    modified: DateTime<Utc>,
    /// Always `webhook`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "webhook")]
    kind: &'static str,
    /// Always `meta`.
    #[schema(value_type = String, example = "meta")]
    api: &'static str,
}

impl WebhookView {
    fn new(endpoint: &WebhookEndpoint, show_secret: bool) -> Self {
        WebhookView {
            id: endpoint.id,
            url: endpoint.url.clone(),
            filter: endpoint.filter.clone(),
            enabled: endpoint.enabled,
            secret: show_secret.then(|| endpoint.secret.clone()),
            created: endpoint.created,
            modified: endpoint.modified,
            kind: "webhook",
            api: "meta",
        }
    }
}

/// One delivery attempt.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = WebhookAttempt)]
pub struct AttemptView {
    /// Numeric id (newer attempts have larger ids).
    id: i64,
    /// The account notified about.
    account: i64,
    /// The subscription notified about.
    subscription: i64,
    /// When the attempt started.
    #[serde(with = "tidemark_model::time::iso")]
    #[schema(value_type = String, format = DateTime)]
    started_at: DateTime<Utc>,
    /// How long it took, in milliseconds.
    latency_ms: f64,
    /// The HTTP status, if the endpoint answered.
    status_code: Option<u16>,
    /// `success` (a status below 500) or `failure`.
    #[schema(example = "success")]
    status: &'static str,
    /// What went wrong.
    error: Option<String>,
}

impl From<&WebhookAttempt> for AttemptView {
    fn from(attempt: &WebhookAttempt) -> Self {
        AttemptView {
            id: attempt.id,
            account: attempt.account_id,
            subscription: attempt.subscription_id,
            started_at: attempt.started_at,
            latency_ms: attempt.latency.as_secs_f64() * 1000.0,
            status_code: attempt.status_code,
            status: if attempt.success {
                "success"
            } else {
                "failure"
            },
            error: attempt.error.clone(),
        }
    }
}

/// A page of attempts, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AttemptList {
    /// The attempts.
    objects: Vec<AttemptView>,
    /// Attempts on this page.
    count: usize,
    /// Pass as `before` for the next (older) page; `null` when there is none.
    next_before: Option<i64>,
    /// Always `object_list`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "object_list")]
    kind: &'static str,
    /// Always `meta`.
    #[schema(value_type = String, example = "meta")]
    api: &'static str,
}

/// `POST /v1/webhooks` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where to POST notifications (http or https).
    #[schema(example = "https://example.com/kloudless-webhook")]
    url: String,
    /// An EventBridge-style event pattern over `{"detail": {"account", "subscription",
    /// "activity": {"v1", "v2"}}}`, e.g. `{"detail": {"activity": {"v1": {"type": ["add"]}}}}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    filter: Option<Value>,
}

/// `PATCH /v1/webhooks/{webhook}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    /// A new URL (tested like a new endpoint's).
    #[serde(default)]
    url: Option<String>,
    /// A new filter; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    filter: Option<Option<Value>>,
    /// Enable or disable the endpoint.
    #[serde(default)]
    enabled: Option<bool>,
}

/// `POST /v1/webhooks/{webhook}/recover` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverWebhook {
    /// Re-send what failed at or after this time (ISO 8601).
    #[schema(example = "2026-11-22T00:00:00Z")]
    since: String,
}

/// How many notifications recovery made due again.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Recovered {
    /// Subscriptions whose failed notification will be sent again.
    recovered: u64,
}

pub(super) fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Option<Value>>, D::Error> {
    Option::<Value>::deserialize(deserializer).map(Some)
}

pub(super) fn check_filter(filter: &Option<Value>) -> Result<(), ApiError> {
    match filter {
        None | Some(Value::Null) => Ok(()),
        Some(pattern) => EventPattern::parse(pattern)
            .map(|_| ())
            .map_err(|e| ApiError::invalid(format!("invalid `filter`: {e}"))),
    }
}

/// The seed's test on creation: POST `{}`, expect 200 whose body is the application id.
/// `allow_private_targets` is the application's setting, checked again as the request
/// connects.
async fn test_endpoint(
    state: &AppState,
    application_id: i64,
    allow_private_targets: bool,
    url: &str,
    secret: &str,
) -> Result<(), ApiError> {
    let sender = Sender::new(&state.webhook_config).map_err(|e| ApiError::internal(&e))?;
    let api_key = state.store.signing_key(application_id).await?;
    let message_id = format!("msg_test_{}", rand::random::<u64>());
    let result = sender
        .post_with(
            url,
            b"{}".to_vec(),
            api_key.as_deref(),
            secret,
            &message_id,
            PostOptions {
                allow_private_targets,
                ..PostOptions::default()
            },
        )
        .await;
    let expected = application_id.to_string();
    let failure = |what: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "webhook_test_failed",
            format!("the test request to the endpoint {what}; it must answer 200 with the application id `{expected}` as its body"),
        )
    };
    match result.status {
        Some(200) if result.body.trim() == expected => Ok(()),
        Some(status) => Err(failure(format!(
            "got {status} with body `{}`",
            truncate(&result.body, 100)
        ))),
        None => Err(failure(format!(
            "failed: {}",
            result.error.unwrap_or_default()
        ))),
    }
}

/// The filters and page of an attempts listing (webhooks and destinations alike): `status`,
/// `since`, `until`, `before` and `page_size`. Asks for one attempt more than the page, to
/// tell whether there is a next one.
pub(super) fn attempt_query(params: &Params) -> Result<(AttemptQuery, usize), ApiError> {
    let page_size = params.integer("page_size", 1..=1000, 100)? as usize;
    let success = match params.get("status") {
        None => None,
        Some("success") => Some(true),
        Some("failure") => Some(false),
        Some(other) => {
            return Err(ApiError::invalid(format!(
                "`status` must be `success` or `failure`, got `{}`",
                truncate(other, 20)
            )))
        }
    };
    let time = |name: &str| -> Result<Option<DateTime<Utc>>, ApiError> {
        params
            .get(name)
            .map(|text| {
                tidemark_model::time::parse(text).map_err(|_| {
                    ApiError::invalid(format!(
                        "`{name}` must be an ISO 8601 timestamp, got `{}`",
                        truncate(text, 64)
                    ))
                })
            })
            .transpose()
    };
    let before_id = params
        .get("before")
        .map(|text| {
            text.parse::<i64>()
                .map_err(|_| ApiError::invalid("`before` must be an attempt id"))
        })
        .transpose()?;
    let query = AttemptQuery {
        success,
        since: time("since")?,
        until: time("until")?,
        before_id,
        limit: page_size + 1,
    };
    Ok((query, page_size))
}

/// One page of attempts, fetched with [`attempt_query`] (one more than the page), as views,
/// and the `next_before` cursor when there are older ones.
pub(super) fn attempt_page<A, V>(
    mut attempts: Vec<A>,
    page_size: usize,
    id: impl Fn(&A) -> i64,
    view: impl Fn(&A) -> V,
) -> (Vec<V>, Option<i64>) {
    let more = attempts.len() > page_size;
    attempts.truncate(page_size);
    let next_before = if more { attempts.last().map(&id) } else { None };
    (attempts.iter().map(view).collect(), next_before)
}

async fn owned_webhook(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<WebhookEndpoint, ApiError> {
    let application_id = caller.require_api_key()?;
    let id: i64 = id.parse().map_err(|_| ApiError::not_found("webhook"))?;
    match state.store.get_webhook(id).await {
        Ok(endpoint) if endpoint.application_id == application_id => Ok(endpoint),
        Ok(_) | Err(tidemark_store::StoreError::NotFound(_)) => Err(ApiError::not_found("webhook")),
        Err(error) => Err(error.into()),
    }
}

/// `GET /v1/webhooks`.
#[utoipa::path(get, path = "/webhooks", tag = "webhooks", params(("page" = Option<u64>, Query, description = "Page number, from 1"), ("page_size" = Option<u64>, Query, description = "1..=1000 (default 100)")), security(("api_key" = [])),
    responses((status = 200, body = ListView<WebhookView>), CommonErrors))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<impl IntoResponse, ApiError> {
    let (page, page_size) = params.pagination()?;
    let endpoints = state.store.list_webhooks(caller.require_api_key()?).await?;
    let views = endpoints
        .iter()
        .map(|e| WebhookView::new(e, false))
        .collect();
    Ok(Json(ListView::paginate(views, page, page_size, "meta")))
}

/// `POST /v1/webhooks`: tests the endpoint, then saves it.
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", request_body = CreateWebhook, security(("api_key" = [])),
    responses((status = 201, description = "Saved; `secret` is shown only here", body = WebhookView), (status = 400, description = "Invalid, or `webhook_test_failed`", body = ErrorBody), CommonErrors))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateWebhook>,
) -> Result<impl IntoResponse, ApiError> {
    let application_id = caller.require_api_key()?;
    let target = check_url(&body.url).map_err(ApiError::invalid)?;
    let application = state.store.get_application(application_id).await?;
    check_target(&target, application.allow_private_webhook_targets)
        .await
        .map_err(ApiError::invalid)?;
    check_filter(&body.filter)?;
    let secret = tidemark_notify::signing::new_endpoint_secret();
    test_endpoint(
        &state,
        application_id,
        application.allow_private_webhook_targets,
        &body.url,
        &secret,
    )
    .await?;
    let filter = body.filter.filter(|f| !f.is_null());
    let endpoint = state
        .store
        .create_webhook(NewWebhookEndpoint {
            application_id,
            url: body.url,
            filter,
            secret,
        })
        .await?;
    tracing::info!(webhook_id = endpoint.id, "webhook endpoint created");
    Ok((StatusCode::CREATED, Json(WebhookView::new(&endpoint, true))))
}

/// `GET /v1/webhooks/{webhook}`.
#[utoipa::path(get, path = "/webhooks/{webhook}", tag = "webhooks", params(("webhook" = i64, Path, description = "The endpoint's id")), security(("api_key" = [])),
    responses((status = 200, body = WebhookView), CommonErrors))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(WebhookView::new(
        &owned_webhook(&state, &caller, &id).await?,
        false,
    )))
}

/// `PATCH /v1/webhooks/{webhook}`: URL (re-tested), filter, enabled.
#[utoipa::path(patch, path = "/webhooks/{webhook}", tag = "webhooks", params(("webhook" = i64, Path, description = "The endpoint's id")), request_body = UpdateWebhook, security(("api_key" = [])),
    responses((status = 200, body = WebhookView), CommonErrors))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<UpdateWebhook>,
) -> Result<impl IntoResponse, ApiError> {
    let endpoint = owned_webhook(&state, &caller, &id).await?;
    if let Some(url) = &body.url {
        let target = check_url(url).map_err(ApiError::invalid)?;
        let application = state.store.get_application(endpoint.application_id).await?;
        check_target(&target, application.allow_private_webhook_targets)
            .await
            .map_err(ApiError::invalid)?;
        test_endpoint(
            &state,
            endpoint.application_id,
            application.allow_private_webhook_targets,
            url,
            &endpoint.secret,
        )
        .await?;
    }
    if let Some(filter) = &body.filter {
        check_filter(filter)?;
    }
    let patch = WebhookPatch {
        url: body.url,
        filter: body.filter.map(|f| f.filter(|f| !f.is_null())),
        enabled: body.enabled,
    };
    Ok(Json(WebhookView::new(
        &state.store.update_webhook(endpoint.id, patch).await?,
        false,
    )))
}

/// `DELETE /v1/webhooks/{webhook}`.
#[utoipa::path(delete, path = "/webhooks/{webhook}", tag = "webhooks", params(("webhook" = i64, Path, description = "The endpoint's id")), security(("api_key" = [])),
    responses((status = 204, description = "Deleted with its delivery state and attempts"), CommonErrors))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<impl IntoResponse, ApiError> {
    let endpoint = owned_webhook(&state, &caller, &id).await?;
    state.store.delete_webhook(endpoint.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/webhooks/{webhook}/attempts`: newest first.
#[utoipa::path(get, path = "/webhooks/{webhook}/attempts", tag = "webhooks",
    params(("webhook" = i64, Path, description = "The endpoint's id"),
        ("status" = Option<String>, Query, description = "`success` or `failure`"),
        ("since" = Option<String>, Query, description = "ISO 8601: attempts started at or after"),
        ("until" = Option<String>, Query, description = "ISO 8601: attempts started before"),
        ("before" = Option<i64>, Query, description = "Only attempts older than this id (the previous page's `next_before`)"),
        ("page_size" = Option<u64>, Query, description = "1..=1000 (default 100)")),
    security(("api_key" = [])), responses((status = 200, body = AttemptList), CommonErrors))]
pub async fn attempts(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    params: Params,
) -> Result<impl IntoResponse, ApiError> {
    let endpoint = owned_webhook(&state, &caller, &id).await?;
    let (query, page_size) = attempt_query(&params)?;
    let attempts = state
        .store
        .list_webhook_attempts(endpoint.id, query)
        .await?;
    let (objects, next_before) =
        attempt_page(attempts, page_size, |a| a.id, |a| AttemptView::from(a));
    Ok(Json(AttemptList {
        count: objects.len(),
        objects,
        next_before,
        kind: "object_list",
        api: "meta",
    }))
}

/// `POST /v1/webhooks/{webhook}/recover`: send again what failed since a time.
#[utoipa::path(post, path = "/webhooks/{webhook}/recover", tag = "webhooks", params(("webhook" = i64, Path, description = "The endpoint's id")), request_body = RecoverWebhook, security(("api_key" = [])),
    responses((status = 200, body = Recovered), CommonErrors))]
pub async fn recover(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<RecoverWebhook>,
) -> Result<impl IntoResponse, ApiError> {
    let endpoint = owned_webhook(&state, &caller, &id).await?;
    let since = tidemark_model::time::parse(&body.since).map_err(|_| {
        ApiError::invalid(format!(
            "`since` must be an ISO 8601 timestamp, got `{}`",
            truncate(&body.since, 64)
        ))
    })?;
    let recovered = state.store.recover_webhook(endpoint.id, since).await?;
    Ok(Json(Recovered { recovered }))
}

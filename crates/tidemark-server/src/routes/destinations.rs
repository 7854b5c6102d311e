//! `/v1/destinations`: message-broker destinations (NATS JetStream, RabbitMQ, Redis Streams)
//! and their attempts.
//!
//! A destination is checked when it is created or its target changes: Tidemark connects to
//! the broker and checks the target (the JetStream stream exists and captures the subjects, or
//! is created when `create_stream` is asked; the exchange exists, or is declared when
//! `declare` is asked; Redis answers). A target that does not pass is a 400 saying why, and
//! nothing is saved. URLs are shown without their passwords.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tidemark_notify::brokers::{
    BrokerPublisher, BrokerTarget, ConnectError, DestinationKind, PayloadFormat, PublisherOptions,
};
use tidemark_store::{Destination, DestinationAttempt, DestinationPatch, NewDestination};

use super::webhooks::{attempt_page, attempt_query, check_filter, present};
use super::PathParams;
use crate::error::{ApiError, CommonErrors, ErrorBody};
use crate::extract::{truncate, Caller, JsonBody, Params};
use crate::views::ListView;
use crate::AppState;

/// Activities in one message unless the destination says otherwise.
const DEFAULT_BATCH_SIZE: u32 = 100;
/// The most a destination may put in one message.
const MAX_BATCH_SIZE: u32 = 1000;
/// How long checking a target may take on creation.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// A broker destination.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Destination)]
pub struct DestinationView {
    /// Numeric id.
    id: i64,
    /// `nats`, `rabbitmq` or `redis`.
    #[schema(example = "nats")]
    kind: String,
    /// The broker settings (the URL without its password).
    #[schema(value_type = Object)]
    target: Value,
    /// EventBridge-style event pattern, applied per activity; `null` publishes all activity.
    #[schema(value_type = Option<Object>)]
    filter: Option<Value>,
    /// `v1`, `v2` or `both`: which forms of the activity messages carry.
    #[schema(example = "both")]
    payload: String,
    /// Most activities in one message.
    batch_size: u32,
    /// Disabled destinations are not published to (their positions are kept).
    enabled: bool,
    /// When the destination was created.
    #[serde(with = "tidemark_model::time::iso")]
    #[schema(value_type = String, format = DateTime)]
    created: DateTime<Utc>,
    /// When it last changed.
    #[serde(with = "tidemark_model::time::iso")]
    #[schema(value_type = String, format = DateTime)]
    modified: DateTime<Utc>,
    /// Always `destination`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "destination")]
    object_type: &'static str,
    /// Always `meta`.
    #[schema(value_type = String, example = "meta")]
    api: &'static str,
}

impl From<&Destination> for DestinationView {
    fn from(destination: &Destination) -> Self {
        let mut target = destination.target.clone();
        if target.get("url").is_some() {
            // Stored targets were checked when saved; one that no longer parses shows no URL
            // rather than a password.
            let shown = parse_kind(&destination.kind)
                .ok()
                .and_then(|kind| BrokerTarget::parse_kind(kind, &destination.target).ok())
                .map_or_else(|| "***".to_owned(), |parsed| parsed.redacted_url());
            target["url"] = Value::String(shown);
        }
        DestinationView {
            id: destination.id,
            kind: destination.kind.clone(),
            target,
            filter: destination.filter.clone(),
            payload: destination.payload.clone(),
            batch_size: destination.batch_size,
            enabled: destination.enabled,
            created: destination.created,
            modified: destination.modified,
            object_type: "destination",
            api: "meta",
        }
    }
}

/// One publish attempt: a failed publish, or a run of up to 16 messages a publisher had
/// acknowledged in a row.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = DestinationAttempt)]
pub struct DestinationAttemptView {
    /// Numeric id (newer attempts have larger ids).
    id: i64,
    /// The account published from.
    account: i64,
    /// The subscription published from.
    subscription: i64,
    /// The first sequence number the message (or run) covered.
    first_sequence: u64,
    /// The last sequence number the message (or run) covered.
    last_sequence: u64,
    /// Activities carried (those that matched the filter).
    published: u32,
    /// When the attempt started.
    #[serde(with = "tidemark_model::time::iso")]
    #[schema(value_type = String, format = DateTime)]
    started_at: DateTime<Utc>,
    /// How long until the broker answered, in milliseconds (for a run, added up).
    latency_ms: f64,
    /// `success` (acknowledged by the broker) or `failure`.
    #[schema(example = "success")]
    status: &'static str,
    /// What went wrong.
    error: Option<String>,
}

impl From<&DestinationAttempt> for DestinationAttemptView {
    fn from(attempt: &DestinationAttempt) -> Self {
        DestinationAttemptView {
            id: attempt.id,
            account: attempt.account_id,
            subscription: attempt.subscription_id,
            first_sequence: attempt.first_sequence,
            last_sequence: attempt.last_sequence,
            published: attempt.published,
            started_at: attempt.started_at,
            latency_ms: attempt.latency.as_secs_f64() * 1000.0,
            status: if attempt.success {
                "success"
            } else {
                "failure"
            },
            error: attempt.error.clone(),
        }
    }
}

/// A page of publish attempts, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DestinationAttemptList {
    /// The attempts.
    objects: Vec<DestinationAttemptView>,
    /// Attempts on this page.
    count: usize,
    /// Pass as `before` for the next (older) page; `null` when there is none.
    next_before: Option<i64>,
    /// Always `object_list`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "object_list")]
    object_type: &'static str,
    /// Always `meta`.
    #[schema(value_type = String, example = "meta")]
    api: &'static str,
}

/// `POST /v1/destinations` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDestination {
    /// `nats`, `rabbitmq` or `redis`.
    #[schema(example = "nats")]
    kind: String,
    /// The broker settings. `nats`: `{"url", "stream", "subject_prefix", "create_stream"?}`;
    /// `rabbitmq`: `{"url", "exchange", "routing_key_prefix", "declare"?}`; `redis`: `{"url",
    /// "stream_key", "max_len"?}`. Messages of one subscription go to the subject or routing
    /// key suffixed with `.{subscription id}`, in order.
    #[schema(value_type = Object, example = json!({"url": "nats://127.0.0.1:4222", "stream": "TIDEMARK", "subject_prefix": "tidemark.activity", "create_stream": true}))]
    target: Value,
    /// An EventBridge-style event pattern over `{"detail": {"account", "subscription",
    /// "activity": {"v1", "v2"}}}`, evaluated per activity.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    filter: Option<Value>,
    /// `v1`, `v2` or `both` (the default).
    #[serde(default)]
    payload: Option<String>,
    /// Most activities in one message, 1..=1000 (default 100).
    #[serde(default)]
    batch_size: Option<u32>,
}

/// `PATCH /v1/destinations/{destination}` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDestination {
    /// New broker settings (checked like a new destination's).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    target: Option<Value>,
    /// A new filter; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    filter: Option<Option<Value>>,
    /// `v1`, `v2` or `both`.
    #[serde(default)]
    payload: Option<String>,
    /// Most activities in one message, 1..=1000.
    #[serde(default)]
    batch_size: Option<u32>,
    /// Enable or disable publishing.
    #[serde(default)]
    enabled: Option<bool>,
}

fn parse_kind(kind: &str) -> Result<DestinationKind, ApiError> {
    DestinationKind::from_name(kind).ok_or_else(|| {
        ApiError::invalid(format!(
            "`kind` must be `nats`, `rabbitmq` or `redis`, got `{}`",
            truncate(kind, 32)
        ))
    })
}

fn check_payload(payload: &str) -> Result<(), ApiError> {
    match PayloadFormat::from_name(payload) {
        Some(_) => Ok(()),
        None => Err(ApiError::invalid(format!(
            "`payload` must be `v1`, `v2` or `both`, got `{}`",
            truncate(payload, 32)
        ))),
    }
}

fn check_batch_size(batch_size: u32) -> Result<(), ApiError> {
    if (1..=MAX_BATCH_SIZE).contains(&batch_size) {
        Ok(())
    } else {
        Err(ApiError::invalid(format!(
            "`batch_size` must be in 1..={MAX_BATCH_SIZE}, got {batch_size}"
        )))
    }
}

/// Parses the target and checks it against the broker: 400 with the reason when it does not
/// pass.
async fn check_target(kind: DestinationKind, target: &Value) -> Result<(), ApiError> {
    let parsed = BrokerTarget::parse_kind(kind, target)
        .map_err(|e| ApiError::invalid(format!("invalid `target`: {e}")))?;
    let options = PublisherOptions {
        connect_timeout: CHECK_TIMEOUT,
        ..PublisherOptions::default()
    };
    match BrokerPublisher::connect(&parsed, options).await {
        Ok(_) => Ok(()),
        Err(error) => {
            let reason = match &error {
                ConnectError::Unreachable { .. } => "could not be reached",
                ConnectError::Target { .. } => "refused the target",
            };
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "destination_check_failed",
                format!(
                    "the {} broker at {} {reason}: {error}",
                    kind.as_str(),
                    parsed.redacted_url()
                ),
            ))
        }
    }
}

async fn owned_destination(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<Destination, ApiError> {
    let application_id = caller.require_api_key()?;
    let id: i64 = id.parse().map_err(|_| ApiError::not_found("destination"))?;
    match state.store.get_destination(id).await {
        Ok(destination) if destination.application_id == application_id => Ok(destination),
        Ok(_) | Err(tidemark_store::StoreError::NotFound(_)) => {
            Err(ApiError::not_found("destination"))
        }
        Err(error) => Err(error.into()),
    }
}

/// `GET /v1/destinations`.
#[utoipa::path(get, path = "/destinations", tag = "destinations", params(("page" = Option<u64>, Query, description = "Page number, from 1"), ("page_size" = Option<u64>, Query, description = "1..=1000 (default 100)")), security(("api_key" = [])),
    responses((status = 200, body = ListView<DestinationView>), CommonErrors))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    params: Params,
) -> Result<impl IntoResponse, ApiError> {
    let (page, page_size) = params.pagination()?;
    let destinations = state
        .store
        .list_destinations(caller.require_api_key()?)
        .await?;
    let views = destinations.iter().map(DestinationView::from).collect();
    Ok(Json(ListView::paginate(views, page, page_size, "meta")))
}

/// `POST /v1/destinations`: checks the target against the broker, then saves it. It publishes
/// activity committed from now on.
#[utoipa::path(post, path = "/destinations", tag = "destinations", request_body = CreateDestination, security(("api_key" = [])),
    responses((status = 201, body = DestinationView), (status = 400, description = "Invalid, or `destination_check_failed`", body = ErrorBody), CommonErrors))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateDestination>,
) -> Result<impl IntoResponse, ApiError> {
    let application_id = caller.require_api_key()?;
    let kind = parse_kind(&body.kind)?;
    let payload = body.payload.unwrap_or_else(|| "both".to_owned());
    check_payload(&payload)?;
    let batch_size = body.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
    check_batch_size(batch_size)?;
    check_filter(&body.filter)?;
    check_target(kind, &body.target).await?;
    let destination = state
        .store
        .create_destination(NewDestination {
            application_id,
            kind: kind.as_str().to_owned(),
            target: body.target,
            filter: body.filter.filter(|f| !f.is_null()),
            payload,
            batch_size,
        })
        .await?;
    tracing::info!(destination_id = destination.id, kind = %destination.kind, "destination created");
    Ok((
        StatusCode::CREATED,
        Json(DestinationView::from(&destination)),
    ))
}

/// `GET /v1/destinations/{destination}`.
#[utoipa::path(get, path = "/destinations/{destination}", tag = "destinations", params(("destination" = i64, Path, description = "The destination's id")), security(("api_key" = [])),
    responses((status = 200, body = DestinationView), CommonErrors))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(DestinationView::from(
        &owned_destination(&state, &caller, &id).await?,
    )))
}

/// `PATCH /v1/destinations/{destination}`: target (checked again), filter, payload, batch
/// size, enabled.
#[utoipa::path(patch, path = "/destinations/{destination}", tag = "destinations", params(("destination" = i64, Path, description = "The destination's id")), request_body = UpdateDestination, security(("api_key" = [])),
    responses((status = 200, body = DestinationView), (status = 400, description = "Invalid, or `destination_check_failed`", body = ErrorBody), CommonErrors))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<UpdateDestination>,
) -> Result<impl IntoResponse, ApiError> {
    let destination = owned_destination(&state, &caller, &id).await?;
    if let Some(payload) = &body.payload {
        check_payload(payload)?;
    }
    if let Some(batch_size) = body.batch_size {
        check_batch_size(batch_size)?;
    }
    if let Some(filter) = &body.filter {
        check_filter(filter)?;
    }
    if let Some(target) = &body.target {
        check_target(parse_kind(&destination.kind)?, target).await?;
    }
    let patch = DestinationPatch {
        target: body.target,
        filter: body.filter.map(|f| f.filter(|f| !f.is_null())),
        payload: body.payload,
        batch_size: body.batch_size,
        enabled: body.enabled,
    };
    Ok(Json(DestinationView::from(
        &state
            .store
            .update_destination(destination.id, patch)
            .await?,
    )))
}

/// `DELETE /v1/destinations/{destination}`.
#[utoipa::path(delete, path = "/destinations/{destination}", tag = "destinations", params(("destination" = i64, Path, description = "The destination's id")), security(("api_key" = [])),
    responses((status = 204, description = "Deleted with its positions and attempts"), CommonErrors))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
) -> Result<impl IntoResponse, ApiError> {
    let destination = owned_destination(&state, &caller, &id).await?;
    state.store.delete_destination(destination.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /v1/destinations/{destination}/attempts`: newest first.
#[utoipa::path(get, path = "/destinations/{destination}/attempts", tag = "destinations",
    params(("destination" = i64, Path, description = "The destination's id"),
        ("status" = Option<String>, Query, description = "`success` or `failure`"),
        ("since" = Option<String>, Query, description = "ISO 8601: attempts started at or after"),
        ("until" = Option<String>, Query, description = "ISO 8601: attempts started before"),
        ("before" = Option<i64>, Query, description = "Only attempts older than this id (the previous page's `next_before`)"),
        ("page_size" = Option<u64>, Query, description = "1..=1000 (default 100)")),
    security(("api_key" = [])), responses((status = 200, body = DestinationAttemptList), CommonErrors))]
pub async fn attempts(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(id): PathParams<String>,
    params: Params,
) -> Result<impl IntoResponse, ApiError> {
    let destination = owned_destination(&state, &caller, &id).await?;
    let (query, page_size) = attempt_query(&params)?;
    let attempts = state
        .store
        .list_destination_attempts(destination.id, query)
        .await?;
    let (objects, next_before) = attempt_page(
        attempts,
        page_size,
        |a| a.id,
        |a| DestinationAttemptView::from(a),
    );
    Ok(Json(DestinationAttemptList {
        count: objects.len(),
        objects,
        next_before,
        object_type: "object_list",
        api: "meta",
    }))
}

//! `.../subscriptions/{subscription}/backfill`: fetch a time range of upstream history into the
//! stream, as a job whose progress can be read.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use tidemark_store::{BackfillJob, StoreError};

use super::{resolve_account, resolve_subscription, PathParams};
use crate::error::{ApiError, CommonErrors};
use crate::extract::{truncate, Caller, JsonBody};
use crate::AppState;

/// `POST .../backfill` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBackfill {
    /// Start of the range of upstream history (ISO 8601, inclusive).
    #[schema(example = "2026-11-01T00:00:00Z")]
    from: String,
    /// End of the range (ISO 8601, exclusive), after `from`.
    #[schema(example = "2026-11-02T00:00:00Z")]
    until: String,
}

/// A backfill job.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BackfillView {
    /// Numeric id.
    id: i64,
    /// Always `backfill`.
    #[serde(rename = "type")]
    #[schema(example = "backfill")]
    kind: &'static str,
    /// The subscription whose stream it fills.
    subscription: i64,
    /// Start of the range (inclusive).
    from: String,
    /// End of the range (exclusive).
    until: String,
    /// `pending`, `running`, `done` or `failed`.
    #[schema(example = "running")]
    state: &'static str,
    /// Activities fetched from the upstream so far.
    fetched: u64,
    /// Of those, how many were new to the stream (the rest were there already).
    appended: u64,
    /// The last failure (a `running` job retries after a transient one).
    error: Option<String>,
    /// When the job was created.
    created: String,
    /// When it last changed.
    modified: String,
}

impl From<&BackfillJob> for BackfillView {
    fn from(job: &BackfillJob) -> Self {
        let iso = |at: chrono::DateTime<chrono::Utc>| {
            at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        };
        BackfillView {
            id: job.id,
            kind: "backfill",
            subscription: job.subscription_id,
            from: iso(job.from),
            until: iso(job.until),
            state: job.state.as_str(),
            fetched: job.fetched,
            appended: job.appended,
            error: job.error.clone(),
            created: iso(job.created),
            modified: iso(job.modified),
        }
    }
}

fn parse_time(name: &str, text: &str) -> Result<chrono::DateTime<chrono::Utc>, ApiError> {
    tidemark_model::time::parse(text).map_err(|_| {
        ApiError::invalid(format!(
            "`{name}` must be an ISO 8601 timestamp such as 2026-01-31T12:00:00Z, got `{}`",
            truncate(text, 64)
        ))
    })
}

/// `POST .../subscriptions/{subscription}/backfill`: starts fetching `[from, until)` of the
/// upstream's history into the stream (de-duplicated by activity id, so overlapping backfills
/// and live polling never duplicate). Only connectors that can fetch history by time range
/// support it; the others answer 400 `not_supported`.
#[utoipa::path(post, path = "/accounts/{account}/subscriptions/{subscription}/backfill", tag = "activity",
    params(("account" = String, Path, description = "The account: its numeric id, or `me` with a bearer token"), ("subscription" = String, Path, description = "The subscription: its numeric id, or `default`")),
    request_body = CreateBackfill, security(("api_key" = []), ("bearer" = [])),
    responses((status = 201, description = "The job, started", body = BackfillView), CommonErrors))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((account_ref, subscription_ref)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<CreateBackfill>,
) -> Result<impl IntoResponse, ApiError> {
    let from = parse_time("from", &body.from)?;
    let until = parse_time("until", &body.until)?;
    if from >= until {
        return Err(ApiError::invalid("`from` must be before `until`"));
    }
    let account = resolve_account(&state, &caller, &account_ref).await?;
    let subscription = resolve_subscription(&state, &account, &subscription_ref).await?;
    let connector = tidemark_connectors::build(&account.service, &account.config)
        .map_err(|error| ApiError::invalid(error.to_string()))?;
    if !connector.capabilities().time_range {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_supported",
            format!(
                "the `{}` service cannot fetch history by time range, so it cannot be backfilled",
                account.service
            ),
        ));
    }
    let job = state
        .store
        .create_backfill(subscription.id, from, until)
        .await?;
    tracing::info!(job = job.id, subscription_id = subscription.id, %from, %until, "backfill requested");
    Ok((StatusCode::CREATED, Json(BackfillView::from(&job))))
}

/// `GET .../subscriptions/{subscription}/backfill/{job}`: a backfill job's progress.
#[utoipa::path(get, path = "/accounts/{account}/subscriptions/{subscription}/backfill/{job}", tag = "activity",
    params(("account" = String, Path, description = "The account: its numeric id, or `me` with a bearer token"), ("subscription" = String, Path, description = "The subscription: its numeric id, or `default`"), ("job" = i64, Path, description = "The backfill job's id")),
    security(("api_key" = []), ("bearer" = [])),
    responses((status = 200, body = BackfillView), CommonErrors))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    PathParams((account_ref, subscription_ref, job_ref)): PathParams<(String, String, String)>,
) -> Result<impl IntoResponse, ApiError> {
    let account = resolve_account(&state, &caller, &account_ref).await?;
    let subscription = resolve_subscription(&state, &account, &subscription_ref).await?;
    let id: i64 = job_ref
        .parse()
        .map_err(|_| ApiError::not_found("backfill job"))?;
    let job = match state.store.get_backfill(id).await {
        Ok(job) if job.subscription_id == subscription.id => job,
        Ok(_) | Err(StoreError::NotFound(_)) => return Err(ApiError::not_found("backfill job")),
        Err(error) => return Err(error.into()),
    };
    Ok(Json(BackfillView::from(&job)))
}

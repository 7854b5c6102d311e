//! The v1 event stream (seed 004): the default subscription's activity in v1 form.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;
use tidemark_model::V1Event;

use super::activity::{hand_out_cursor, start_position};
use super::{resolve_account, resolve_subscription, PathParams};
use crate::error::ApiError;
use crate::extract::{Caller, Params};
use crate::AppState;

/// Stream pages one v1 request may read while looking for activity that has a v1 form (v2
/// activity such as `access` has none): a page is returned empty only at the end of the
/// stream, or after this many pages without one, so clients that stop on an empty page
/// (the Kloudless SDK does) do not stop early in practice.
const MAX_PAGES_SCANNED: usize = 20;

/// `GET /v1/accounts/{account}/events?cursor=&page_size=`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(account_ref): PathParams<String>,
    params: Params,
) -> Result<impl IntoResponse, ApiError> {
    let page_size = params.integer("page_size", 1..=1000, 1000)? as usize;
    let account = resolve_account(&state, &caller, &account_ref).await?;
    let subscription = resolve_subscription(&state, &account, "default").await?;
    let mut position = start_position(&state, &subscription, params.get("cursor"))?;
    let mut events = Vec::with_capacity(page_size);
    for _ in 0..MAX_PAGES_SCANNED {
        let page = state
            .store
            .read_page(subscription.id, position, page_size - events.len())
            .await?;
        if page.activities.is_empty() {
            break;
        }
        for row in &page.activities {
            position = row.sequence;
            if let Some(event) = V1Event::from_activity(&row.activity()?) {
                events.push(event);
            }
        }
        if events.len() >= page_size {
            break;
        }
    }
    let cursor = hand_out_cursor(&state, &subscription, position).await?;
    Ok(Json(json!({
        "objects": events,
        "cursor": cursor,
        "count": events.len(),
        "type": "object_list",
        "api": "activity",
    })))
}

/// `GET /v1/accounts/{account}/events/latest`: a cursor at the end of the stream.
pub async fn latest(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(account_ref): PathParams<String>,
) -> Result<impl IntoResponse, ApiError> {
    let account = resolve_account(&state, &caller, &account_ref).await?;
    let subscription = resolve_subscription(&state, &account, "default").await?;
    let position = state.store.latest_sequence(subscription.id).await?;
    let cursor = hand_out_cursor(&state, &subscription, position).await?;
    Ok(Json(json!({ "cursor": cursor })))
}

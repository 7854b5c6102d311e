//! How objects are written on the wire (Kloudless shapes).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tidemark_model::{Account, Application, Subscription};
use tidemark_store::ApiKey;

/// An account as clients see it: its config without credentials (write-only).
#[derive(Debug, Serialize)]
pub struct AccountView {
    pub id: i64,
    pub service: String,
    pub admin: bool,
    pub active: bool,
    pub config: Value,
    #[serde(with = "tidemark_model::time::iso")]
    pub created: DateTime<Utc>,
    #[serde(with = "tidemark_model::time::iso")]
    pub modified: DateTime<Utc>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub api: &'static str,
    /// Present once: in the response that created the account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<TokenView>,
}

/// A freshly minted bearer token.
#[derive(Debug, Serialize)]
pub struct TokenView {
    pub key: String,
}

impl AccountView {
    pub fn new(account: &Account, bearer_token: Option<String>) -> Self {
        let mut config = account.config.clone();
        if let Some(object) = config.as_object_mut() {
            object.remove("credentials");
        }
        AccountView {
            id: account.id,
            service: account.service.clone(),
            admin: account.admin,
            active: true,
            config,
            created: account.created,
            modified: account.modified,
            kind: "account",
            api: "meta",
            bearer_token: bearer_token.map(|key| TokenView { key }),
        }
    }
}

/// A subscription as listed: `last_cursor` and `last_cursor_updated_at` are left out of lists
/// (seed 003).
pub fn listed_subscription(subscription: &Subscription) -> Value {
    let mut value = serde_json::to_value(subscription).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.remove("last_cursor");
        object.remove("last_cursor_updated_at");
    }
    value
}

/// The application's settings.
#[derive(Debug, Serialize)]
pub struct ApplicationView<'a> {
    pub id: i64,
    pub name: &'a str,
    pub track_activity: bool,
    pub retention_days: Option<u32>,
    pub max_subscriptions_per_account: u32,
    #[serde(with = "tidemark_model::time::iso")]
    pub created: DateTime<Utc>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub api: &'static str,
}

impl<'a> From<&'a Application> for ApplicationView<'a> {
    fn from(application: &'a Application) -> Self {
        ApplicationView {
            id: application.id,
            name: &application.name,
            track_activity: application.track_activity,
            retention_days: application.retention_days,
            max_subscriptions_per_account: application.max_subscriptions_per_account,
            created: application.created,
            kind: "application",
            api: "meta",
        }
    }
}

/// An API key; `key` only in the response that created it.
#[derive(Debug, Serialize)]
pub struct ApiKeyView {
    pub id: i64,
    pub hint: String,
    #[serde(with = "tidemark_model::time::iso")]
    pub created: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub api: &'static str,
}

impl ApiKeyView {
    pub fn new(key: &ApiKey, secret: Option<String>) -> Self {
        ApiKeyView {
            id: key.id,
            hint: key.hint.clone(),
            created: key.created,
            key: secret,
            kind: "api_key",
            api: "meta",
        }
    }
}

/// A page of a non-stream list (`page`, `next_page` let the Kloudless SDK's iterator stop).
#[derive(Debug, Serialize)]
pub struct ListView<T: Serialize> {
    pub objects: Vec<T>,
    pub count: usize,
    pub total: usize,
    pub page: u64,
    pub next_page: Option<u64>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub api: &'static str,
}

impl<T: Serialize> ListView<T> {
    /// Page `page` (from 1) of `page_size` out of `all`.
    pub fn paginate(all: Vec<T>, page: u64, page_size: u64, api: &'static str) -> Self {
        let total = all.len();
        let start = usize::try_from((page - 1).saturating_mul(page_size)).unwrap_or(usize::MAX);
        let objects: Vec<T> = all
            .into_iter()
            .skip(start)
            .take(page_size as usize)
            .collect();
        let next_page = (start.saturating_add(objects.len()) < total).then_some(page + 1);
        ListView {
            count: objects.len(),
            objects,
            total,
            page,
            next_page,
            kind: "object_list",
            api,
        }
    }
}

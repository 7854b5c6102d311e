//! How objects are written on the wire (Kloudless shapes).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use tidemark_model::{Account, Application, Subscription};
use tidemark_store::ApiKey;

/// A connected upstream account. `config` never includes `credentials` (write-only).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Account)]
pub struct AccountView {
    /// Numeric id.
    pub id: i64,
    /// Service name (`local`, `jive`, `onna`, ...).
    pub service: String,
    /// Whether the account yields org-wide audit activity.
    pub admin: bool,
    /// Always `true` while the account exists.
    pub active: bool,
    /// Connection config, without `credentials`.
    #[schema(value_type = Object)]
    pub config: Value,
    /// When the account was connected.
    #[serde(with = "tidemark_model::time::iso")]
    #[schema(value_type = String, format = DateTime)]
    pub created: DateTime<Utc>,
    /// When the account last changed.
    #[serde(with = "tidemark_model::time::iso")]
    #[schema(value_type = String, format = DateTime)]
    pub modified: DateTime<Utc>,
    /// Always `account`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "account")]
    pub kind: &'static str,
    /// Always `meta`.
    #[schema(value_type = String, example = "meta")]
    pub api: &'static str,
    /// The account's bearer token: only in the response that created the account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<TokenView>,
}

/// A freshly minted bearer token (shown once).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenView {
    /// The token: send it as `Authorization: Bearer <key>`.
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

/// The application (tenant) and its settings.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Application)]
pub struct ApplicationView {
    /// Numeric id (the bearer tokens' `client_id`).
    pub id: i64,
    /// Name.
    pub name: String,
    /// Give every newly connected account a default `changes` subscription.
    pub track_activity: bool,
    /// Prune activity committed more than this many days ago; `null` keeps everything.
    pub retention_days: Option<u32>,
    /// Subscriptions one account may have.
    pub max_subscriptions_per_account: u32,
    /// Whether webhooks may target private and loopback addresses.
    pub allow_private_webhook_targets: bool,
    /// When the application was created.
    #[serde(with = "tidemark_model::time::iso")]
    #[schema(value_type = String, format = DateTime)]
    pub created: DateTime<Utc>,
    /// Always `application`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "application")]
    pub kind: &'static str,
    /// Always `meta`.
    #[schema(value_type = String, example = "meta")]
    pub api: &'static str,
}

impl From<&Application> for ApplicationView {
    fn from(application: &Application) -> Self {
        ApplicationView {
            id: application.id,
            name: application.name.clone(),
            track_activity: application.track_activity,
            retention_days: application.retention_days,
            max_subscriptions_per_account: application.max_subscriptions_per_account,
            allow_private_webhook_targets: application.allow_private_webhook_targets,
            created: application.created,
            kind: "application",
            api: "meta",
        }
    }
}

/// An API key of the application.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ApiKey)]
pub struct ApiKeyView {
    /// Numeric id.
    pub id: i64,
    /// The key's last characters, to tell keys apart.
    pub hint: String,
    /// When the key was created (the oldest active key signs webhooks).
    #[serde(with = "tidemark_model::time::iso")]
    #[schema(value_type = String, format = DateTime)]
    pub created: DateTime<Utc>,
    /// The key itself: only in the response that created it. Send it as
    /// `Authorization: APIKey <key>`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Always `api_key`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "api_key")]
    pub kind: &'static str,
    /// Always `meta`.
    #[schema(value_type = String, example = "meta")]
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

/// A page of a list (`page` and `next_page` let the Kloudless SDK's iterator stop).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListView<T: Serialize> {
    /// The objects on this page.
    pub objects: Vec<T>,
    /// Objects on this page.
    pub count: usize,
    /// Objects on all pages.
    pub total: usize,
    /// This page's number (from 1).
    pub page: u64,
    /// The next page's number; `null` on the last page.
    pub next_page: Option<u64>,
    /// Always `object_list`.
    #[serde(rename = "type")]
    #[schema(value_type = String, example = "object_list")]
    pub kind: &'static str,
    /// The API the objects belong to.
    #[schema(value_type = String)]
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

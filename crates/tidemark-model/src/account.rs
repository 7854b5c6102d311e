//! Tenancy and monitoring objects: [`Application`], [`Account`], [`Subscription`].
//!
//! These are plain data; the store persists them and the server renders them. Fields a client
//! sends are checked here ([`SubscriptionType::parse`], [`MonitoredResource::parse_list`]) so
//! every entry point rejects bad input the same way.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Numeric id of an [`Application`].
pub type ApplicationId = i64;
/// Numeric id of an [`Account`] (numbers keep Kloudless clients' `accounts/(\d+|me)` working).
pub type AccountId = i64;
/// Numeric id of a [`Subscription`].
pub type SubscriptionId = i64;

/// Longest `resource` / `user` string accepted in a monitored resource.
pub const MAX_RESOURCE_ID_LEN: usize = 1024;
/// Most monitored resources one subscription may list.
pub const MAX_MONITORED_RESOURCES: usize = 64;

/// A client-input problem, with a message meant for the person who sent it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// `subscription_type` is not one of `changes`, `crawl`, `analytics`.
    #[error("unknown subscription_type `{0}`: expected one of changes, crawl, analytics")]
    UnknownSubscriptionType(String),
    /// `monitored_resources` is not a list of `{"resource": "...", "user"?: "..."}`.
    #[error("malformed monitored_resources: {0}")]
    MalformedMonitoredResources(String),
}

/// A tenant: the developer's application. Sees only its own accounts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Application {
    /// Numeric id.
    pub id: ApplicationId,
    /// Human-readable name.
    pub name: String,
    /// Create a default `changes` subscription for every newly connected account (seed 000,
    /// option 1).
    pub track_activity: bool,
    /// Prune activity committed more than this many days ago; `None` keeps everything.
    pub retention_days: Option<u32>,
    /// How many subscriptions one account may have (Kloudless: 1).
    pub max_subscriptions_per_account: u32,
    /// Whether webhooks may target private and loopback addresses (true by default, for
    /// self-hosting; false keeps webhooks from probing internal networks).
    #[serde(default = "allowed")]
    pub allow_private_webhook_targets: bool,
    /// When the application was created.
    #[serde(with = "crate::time::iso")]
    pub created: DateTime<Utc>,
}

fn allowed() -> bool {
    true
}

/// One connected upstream account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// Numeric id.
    pub id: AccountId,
    /// The application this account belongs to.
    pub application_id: ApplicationId,
    /// Service name (`local`, `jive`, `onna`, `gdrive`, ...).
    pub service: String,
    /// Admin accounts yield org-wide audit activity.
    pub admin: bool,
    /// Connection config (`base_url`, `credentials`, `poll_interval_seconds`, connector fields).
    /// Holds credentials: never render it to a client as is.
    pub config: Value,
    /// When the account was connected.
    #[serde(with = "crate::time::iso")]
    pub created: DateTime<Utc>,
    /// When the account last changed.
    #[serde(with = "crate::time::iso")]
    pub modified: DateTime<Utc>,
}

/// `subscription_type` (seed 003).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionType {
    /// Monitor new activity (the default).
    Changes,
    /// One-time retrieval of all file and folder metadata, published as activity.
    Crawl,
    /// Analytics activity (email opens and clicks).
    Analytics,
}

impl SubscriptionType {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionType::Changes => "changes",
            SubscriptionType::Crawl => "crawl",
            SubscriptionType::Analytics => "analytics",
        }
    }

    /// Parses the wire string.
    ///
    /// # Errors
    /// [`ValidationError::UnknownSubscriptionType`] for anything else (`sync` included: the seed
    /// lists it as planned, and it is not implemented).
    pub fn parse(text: &str) -> Result<Self, ValidationError> {
        match text {
            "changes" => Ok(SubscriptionType::Changes),
            "crawl" => Ok(SubscriptionType::Crawl),
            "analytics" => Ok(SubscriptionType::Analytics),
            other => Err(ValidationError::UnknownSubscriptionType(other.to_owned())),
        }
    }
}

/// A resource a subscription watches (seed 003, "Monitored Resource").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MonitoredResource {
    /// The resource's id, a reserved identifier (`root`, `primary`) or an object name.
    pub resource: String,
    /// For multi-user (admin) accounts: the user through whom the resource is reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl MonitoredResource {
    /// Validates a client-sent `monitored_resources` value.
    ///
    /// # Errors
    /// [`ValidationError::MalformedMonitoredResources`] naming the first problem: not a list,
    /// an element that is not an object, a missing/empty/non-string `resource`, an unknown
    /// field, an over-long id, or too many entries.
    pub fn parse_list(value: &Value) -> Result<Vec<MonitoredResource>, ValidationError> {
        let bad = |message: String| ValidationError::MalformedMonitoredResources(message);
        let items = value
            .as_array()
            .ok_or_else(|| bad("expected a list of {\"resource\": \"...\"} objects".into()))?;
        if items.len() > MAX_MONITORED_RESOURCES {
            return Err(bad(format!(
                "at most {MAX_MONITORED_RESOURCES} resources may be monitored, got {}",
                items.len()
            )));
        }
        items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let object = item
                    .as_object()
                    .ok_or_else(|| bad(format!("element {index} is not an object")))?;
                if let Some(field) = object.keys().find(|k| *k != "resource" && *k != "user") {
                    return Err(bad(format!("element {index} has unknown field `{field}`")));
                }
                let text = |field: &str| -> Result<Option<String>, ValidationError> {
                    match object.get(field) {
                        None | Some(Value::Null) => Ok(None),
                        Some(Value::String(text)) if text.is_empty() => {
                            Err(bad(format!("element {index}: `{field}` is empty")))
                        }
                        Some(Value::String(text)) if text.len() > MAX_RESOURCE_ID_LEN => Err(bad(
                            format!("element {index}: `{field}` is longer than {MAX_RESOURCE_ID_LEN} bytes"),
                        )),
                        Some(Value::String(text)) => Ok(Some(text.clone())),
                        Some(_) => Err(bad(format!("element {index}: `{field}` must be a string"))),
                    }
                };
                let resource = text("resource")?
                    .ok_or_else(|| bad(format!("element {index} has no `resource`")))?;
                Ok(MonitoredResource { resource, user: text("user")? })
            })
            .collect()
    }
}

/// Writes the fixed `"type": "subscription", "api": "activity"` pair of every subscription
/// object; accepts (and ignores) whatever a client echoes back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionLiterals;

impl Serialize for SubscriptionLiterals {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("type", "subscription")?;
        map.serialize_entry("api", "activity")?;
        map.end()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for SubscriptionLiterals {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::Type;
        use utoipa::openapi::ObjectBuilder;
        let literal = |value: &'static str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some([value]))
        };
        ObjectBuilder::new()
            .property("type", literal("subscription"))
            .property("api", literal("activity"))
            .required("type")
            .required("api")
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for SubscriptionLiterals {}

impl<'de> Deserialize<'de> for SubscriptionLiterals {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer)?;
        Ok(SubscriptionLiterals)
    }
}

/// "Watch this account" (seed 003, "Subscriptions").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Subscription {
    /// Numeric id.
    pub id: SubscriptionId,
    /// `"type": "subscription", "api": "activity"`.
    #[serde(flatten)]
    pub literals: SubscriptionLiterals,
    /// The account watched.
    pub account: AccountId,
    /// Whether activity is monitored.
    pub active: bool,
    /// Why the subscription is inactive (`deactivated_by_user`, `invalid_credentials`, ...);
    /// empty while active.
    pub disable_reason: String,
    /// What the subscription does.
    pub subscription_type: SubscriptionType,
    /// Whether this is the account's `default` subscription.
    pub default: bool,
    /// When the subscription expires (Tidemark renews upstream watches itself; `null` when
    /// nothing expires).
    #[serde(with = "crate::time::iso_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub expiry: Option<DateTime<Utc>>,
    /// The resources watched. Immutable after creation.
    pub monitored_resources: Vec<MonitoredResource>,
    /// API category of the monitored resources (`storage`, `calendar`, ...).
    pub monitored_resource_api: Option<String>,
    /// Object type of the monitored resources (`folder`, `calendar`, ...).
    pub monitored_resource_object_type: Option<String>,
    /// The newest cursor handed out for this subscription.
    pub last_cursor: Option<String>,
    /// When `last_cursor` last changed.
    #[serde(with = "crate::time::iso_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub last_cursor_updated_at: Option<DateTime<Utc>>,
    /// When the subscription was created; activity is tracked from then on.
    #[serde(with = "crate::time::iso")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub created: DateTime<Utc>,
    /// When the subscription last changed.
    #[serde(with = "crate::time::iso")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = DateTime))]
    pub modified: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_subscription_serializes_every_seed_field() {
        // The wire keeps microseconds, as the store does.
        let now = DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("in range");
        let subscription = Subscription {
            id: 185,
            literals: SubscriptionLiterals,
            account: 4,
            active: true,
            disable_reason: String::new(),
            subscription_type: SubscriptionType::Changes,
            default: false,
            expiry: None,
            monitored_resources: vec![MonitoredResource {
                resource: "root".into(),
                user: None,
            }],
            monitored_resource_api: Some("storage".into()),
            monitored_resource_object_type: Some("folder".into()),
            last_cursor: Some("A2B3q74".into()),
            last_cursor_updated_at: Some(now),
            created: now,
            modified: now,
        };
        let value = serde_json::to_value(&subscription).expect("serializes");
        for field in [
            "id",
            "account",
            "type",
            "api",
            "active",
            "disable_reason",
            "subscription_type",
            "default",
            "expiry",
            "created",
            "modified",
            "monitored_resources",
            "monitored_resource_object_type",
            "monitored_resource_api",
            "last_cursor_updated_at",
            "last_cursor",
        ] {
            assert!(value.get(field).is_some(), "missing {field}");
        }
        assert_eq!(value["type"], "subscription");
        assert_eq!(value["api"], "activity");
        assert_eq!(value["monitored_resources"], json!([{"resource": "root"}]));
        let back: Subscription = serde_json::from_value(value).expect("round trip");
        assert_eq!(back, subscription);
    }

    #[test]
    fn test_subscription_type_parse() {
        assert_eq!(
            SubscriptionType::parse("crawl"),
            Ok(SubscriptionType::Crawl)
        );
        let err = SubscriptionType::parse("sync").expect_err("planned, not implemented");
        assert!(err.to_string().contains("unknown subscription_type `sync`"));
    }

    #[test]
    fn test_monitored_resources_accepts_seed_examples() {
        let list = MonitoredResource::parse_list(
            &json!([{"resource": "primary"}, {"resource": "fdGVz", "user": "u1"}]),
        )
        .expect("valid");
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].user.as_deref(), Some("u1"));
    }

    #[test]
    fn test_monitored_resources_rejects_malformed_input() {
        for (bad, needle) in [
            (json!({"resource": "root"}), "expected a list"),
            (json!(["root"]), "not an object"),
            (json!([{}]), "no `resource`"),
            (json!([{"resource": 5}]), "must be a string"),
            (json!([{"resource": ""}]), "is empty"),
            (
                json!([{"resource": "r", "colour": "blue"}]),
                "unknown field `colour`",
            ),
            (json!([{"resource": "x".repeat(2000)}]), "longer than"),
            (json!(vec![json!({"resource": "r"}); 65]), "at most"),
        ] {
            let err = MonitoredResource::parse_list(&bad).expect_err("malformed");
            assert!(
                err.to_string().contains(needle),
                "{err} should mention {needle}"
            );
        }
    }
}

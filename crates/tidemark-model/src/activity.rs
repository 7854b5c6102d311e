//! The unified v2 Activity object (seed 003, "Activity Object Fields") and its vocabularies.
//!
//! Every connector maps its upstream's notion of "something happened" onto [`Activity`]. The
//! classification fields use closed vocabularies: a value this build does not know deserializes
//! to `unknown` (the connector keeps the upstream's own words in [`Activity::raw`]), so nothing
//! is ever rejected or lost because a vocabulary grew.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Declares a string vocabulary: an enum whose variants serialize to fixed strings and whose
/// deserialization maps any other string to `Unknown`.
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $(
                #[doc = concat!("`", $text, "`")]
                $variant,
            )*
            /// `unknown`: not (yet) unified; the raw data says more.
            Unknown,
        }

        impl $name {
            /// Every known value, `Unknown` last.
            pub const ALL: &'static [$name] = &[$($name::$variant,)* $name::Unknown];

            /// The wire string.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                    $name::Unknown => "unknown",
                }
            }

            /// Maps a wire string to its value; anything unrecognised is `Unknown`.
            pub fn from_wire(text: &str) -> Self {
                match text {
                    $($text => $name::$variant,)*
                    _ => $name::Unknown,
                }
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some([$($text,)* "unknown"]))
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed(stringify!($name))
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Ok($name::from_wire(&text))
            }
        }
    };
}

vocabulary! {
    /// `event_category`: what the activity primarily relates to.
    EventCategory {
        Authentication => "authentication",
        Calendar => "calendar",
        Collaboration => "collaboration",
        Crm => "crm",
        Email => "email",
        Messaging => "messaging",
        Object => "object",
        Storage => "storage",
        Team => "team",
    }
}

vocabulary! {
    /// `event_type`: the general action.
    EventType {
        Add => "add",
        Access => "access",
        Update => "update",
        Delete => "delete",
        Error => "error",
    }
}

vocabulary! {
    /// `event_subtype`: the specific action. Seed 003 lists subtypes per category; several
    /// (`rename`, `move`, `download`, `untrash`, `property_update`) appear under more than one
    /// category and mean the same thing in each, so they are one vocabulary here.
    EventSubtype {
        // authentication
        Login => "login",
        Logout => "logout",
        // calendar (and `rename`, shared)
        Rename => "rename",
        AddAttendee => "add_attendee",
        UpdateAttendee => "update_attendee",
        RemoveAttendee => "remove_attendee",
        EventUpdateTime => "event_update_time",
        // collaboration
        PermissionCreate => "permission_create",
        PermissionUpdate => "permission_update",
        PermissionDelete => "permission_delete",
        PermissionUpdateExpiration => "permission_update_expiration",
        PermissionAccessScope => "permission_access_scope",
        PermissionVisibility => "permission_visibility",
        PermissionInvite => "permission_invite",
        PermissionAccept => "permission_accept",
        PermissionReject => "permission_reject",
        PermissionRequest => "permission_request",
        LinkCreate => "link_create",
        LinkUpdate => "link_update",
        LinkDelete => "link_delete",
        LinkUpdateExpiration => "link_update_expiration",
        LinkUpdatePassword => "link_update_password",
        PropertyUpdate => "property_update",
        // storage
        Copy => "copy",
        Download => "download",
        Move => "move",
        ParentUpdate => "parent_update",
        Preview => "preview",
        Print => "print",
        Revert => "revert",
        TagCreate => "tag_create",
        Untrash => "untrash",
        CommentCreate => "comment_create",
        CommentUpdate => "comment_update",
        CommentDelete => "comment_delete",
        PropertyCreate => "property_create",
        PropertyDelete => "property_delete",
        // email
        EmailOpen => "email_open",
        EmailClick => "email_click",
        // team
        AddUser => "add_user",
        ApproveUser => "approve_user",
        InviteUser => "invite_user",
        RemoveUser => "remove_user",
        RevokeUser => "revoke_user",
        TeamApprove => "team_approve",
        TeamReject => "team_reject",
        TeamInvite => "team_invite",
        TeamRequest => "team_request",
        UserAccept => "user_accept",
        UserReject => "user_reject",
        UserBulkCreate => "user_bulk_create",
        PasswordUpdate => "password_update",
    }
}

/// One unified activity object, exactly the fields of seed 003's "Format".
///
/// `id` is the connector-provided activity id: stable across re-delivery of the same upstream
/// event, unique within a subscription (the store's de-duplication key, DESIGN 2.2).
/// `api` and `type` are always `activity` and are written by the serializer, never stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Activity {
    /// Identifier of the activity (a string; stable for the same upstream event).
    pub id: String,
    /// Numeric id of the account the activity belongs to.
    pub account: i64,
    /// Always `activity`.
    #[serde(default = "activity_literal", deserialize_with = "literal_activity")]
    pub api: String,
    /// Always `activity`.
    #[serde(
        rename = "type",
        default = "activity_literal",
        deserialize_with = "literal_activity"
    )]
    pub kind: String,
    /// What the activity primarily relates to.
    pub event_category: EventCategory,
    /// The general action.
    pub event_type: EventType,
    /// The specific action.
    pub event_subtype: EventSubtype,
    /// The resource acted on (a file, folder, user, ... object with `type` and `api`).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub target: Option<Value>,
    /// The resource as it was before (renames, moves, updates), where known.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub previous_target: Option<Value>,
    /// Id of the user to impersonate to reach the target, where applicable.
    pub impersonate_for_target: Option<String>,
    /// When the activity happened upstream; `null` if the upstream does not say.
    #[serde(with = "crate::time::iso_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub timestamp: Option<DateTime<Utc>>,
    /// The actor's session (`type: login`, `ip`, `user_agent`, ...).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub session: Option<Value>,
    /// Who did it (`type: user | application`, ...).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub actor: Option<Value>,
    /// Additional objects about the activity (a list).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Object>>))]
    pub metadata: Option<Value>,
    /// The upstream's own record: `{"object": {...}}`.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub raw: Option<Value>,
    /// Origin of the data where several overlapping upstream feeds exist; `null` otherwise.
    pub stream: Option<String>,
}

fn activity_literal() -> String {
    "activity".to_owned()
}

fn literal_activity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let text = String::deserialize(d)?;
    if text == "activity" {
        Ok(text)
    } else {
        Err(serde::de::Error::custom(format!(
            "expected \"activity\", found {text:?}"
        )))
    }
}

impl Activity {
    /// A new activity with the fixed fields filled in and every optional field empty.
    pub fn new(
        id: impl Into<String>,
        account: i64,
        category: EventCategory,
        event_type: EventType,
        subtype: EventSubtype,
    ) -> Self {
        Activity {
            id: id.into(),
            account,
            api: activity_literal(),
            kind: activity_literal(),
            event_category: category,
            event_type,
            event_subtype: subtype,
            target: None,
            previous_target: None,
            impersonate_for_target: None,
            timestamp: None,
            session: None,
            actor: None,
            metadata: None,
            raw: None,
            stream: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn test_vocabularies_round_trip_every_value() {
        for value in EventCategory::ALL {
            assert_eq!(EventCategory::from_wire(value.as_str()), *value);
        }
        for value in EventType::ALL {
            assert_eq!(EventType::from_wire(value.as_str()), *value);
        }
        for value in EventSubtype::ALL {
            assert_eq!(EventSubtype::from_wire(value.as_str()), *value);
        }
    }

    #[test]
    fn test_unknown_vocabulary_values_become_unknown() {
        let category: EventCategory = serde_json::from_value(json!("telepathy")).expect("lenient");
        assert_eq!(category, EventCategory::Unknown);
        let subtype: EventSubtype = serde_json::from_value(json!("levitate")).expect("lenient");
        assert_eq!(subtype, EventSubtype::Unknown);
    }

    #[test]
    fn test_activity_serializes_every_seed_field() {
        let activity = Activity::new(
            "a1",
            7,
            EventCategory::Storage,
            EventType::Add,
            EventSubtype::Unknown,
        );
        let value = serde_json::to_value(&activity).expect("serializes");
        let object = value.as_object().expect("object");
        for field in [
            "id",
            "account",
            "api",
            "type",
            "event_category",
            "event_type",
            "event_subtype",
            "target",
            "previous_target",
            "impersonate_for_target",
            "timestamp",
            "session",
            "actor",
            "metadata",
            "raw",
            "stream",
        ] {
            assert!(object.contains_key(field), "missing {field}");
        }
        assert_eq!(value["type"], "activity");
        assert_eq!(value["api"], "activity");
        assert_eq!(value["event_subtype"], "unknown");
        let back: Activity = serde_json::from_value(value).expect("round trip");
        assert_eq!(back, activity);
    }

    #[test]
    fn test_seed_example_activity_parses() {
        let seed = json!({ "id": "LTYyMDQzOTYxNTQ2NTk3MTc3Nzk=", "account": 123479645,
            "timestamp": "2019-09-23T09:33:00.099000Z", "type": "activity", "api": "activity",
            "event_category": "storage", "event_type": "add", "event_subtype": "unknown",
            "actor": {"id": "fake_actor_id", "type": "user", "api": "team"},
            "target": {"id": "F", "name": "Copy of DogeCool.jpg", "type": "file", "api": "storage"},
            "previous_target": null, "metadata": null,
            "session": {"ip": "123.123.123.123", "type": "login", "user_agent": null},
            "stream": "Report", "impersonate_for_target": "fake_actor_id_login" });
        let activity: Activity = serde_json::from_value(seed).expect("seed parses");
        assert_eq!(activity.event_type, EventType::Add);
        assert_eq!(activity.stream.as_deref(), Some("Report"));
    }

    #[test]
    fn test_wrong_literal_type_is_rejected() {
        let bad = json!({"id": "x", "account": 1, "type": "file", "api": "activity",
            "event_category": "storage", "event_type": "add", "event_subtype": "unknown",
            "target": null, "previous_target": null, "impersonate_for_target": null,
            "timestamp": null, "session": null, "actor": null, "metadata": null, "raw": null,
            "stream": null});
        assert!(serde_json::from_value::<Activity>(bad).is_err());
    }
}

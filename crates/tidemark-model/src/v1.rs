//! The v1 event object (seed 004) and the mapping from v2 [`Activity`].
//!
//! # Mapping (v2 -> v1)
//!
//! | v2 `event_type` | v2 `event_subtype` | v1 `type` | v1 `action` |
//! | --- | --- | --- | --- |
//! | `add` | `copy` | `copy` | `C` |
//! | `add` | `untrash` | `restore` | `U` |
//! | `add` | anything else | `add` | `+` |
//! | `delete` | any | `delete` | `-` |
//! | `update` | `rename` | `rename` | `R` |
//! | `update` | `move`, `parent_update` | `move` | `MV` |
//! | `update` | `untrash` | `restore` | `U` |
//! | `update` | anything else | `update` | `M` |
//! | `access`, `error`, `unknown` | any | — (no v1 event) | — |
//!
//! The other v1 fields: `id` and `account` are the activity's; `ip` is `session.ip`;
//! `modified` is the activity `timestamp` (`null` when the upstream gave none); `user_id` is
//! `actor.id`; `metadata` is the `target` object (seed 004's example carries the file object
//! there), with `previous_target` left to the v2 form.
//!
//! v1 only ever described changes to resources, so reads (`access`), errors and unclassified
//! activity have no v1 form: the v1 events endpoint passes over them (its cursor still moves
//! past them) and broker messages carry them only in their `v2` list.

use crate::activity::{Activity, EventSubtype, EventType};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;

/// v1 `type`: the seven kinds of change v1 knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum V1EventType {
    /// A resource was created.
    Add,
    /// A resource was deleted.
    Delete,
    /// A resource's content or properties changed.
    Update,
    /// A resource was renamed in place.
    Rename,
    /// A resource moved to another parent.
    Move,
    /// A resource was created as a copy of another.
    Copy,
    /// A deleted resource was restored.
    Restore,
}

/// v1 `action`: the short code paired with each [`V1EventType`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum V1Action {
    /// `+`
    #[serde(rename = "+")]
    Plus,
    /// `-`
    #[serde(rename = "-")]
    Minus,
    /// `M`
    #[serde(rename = "M")]
    Modified,
    /// `R`
    #[serde(rename = "R")]
    Renamed,
    /// `MV`
    #[serde(rename = "MV")]
    Moved,
    /// `C`
    #[serde(rename = "C")]
    Copied,
    /// `U`
    #[serde(rename = "U")]
    Undeleted,
}

impl V1EventType {
    /// The action code paired with this type.
    pub fn action(self) -> V1Action {
        match self {
            V1EventType::Add => V1Action::Plus,
            V1EventType::Delete => V1Action::Minus,
            V1EventType::Update => V1Action::Modified,
            V1EventType::Rename => V1Action::Renamed,
            V1EventType::Move => V1Action::Moved,
            V1EventType::Copy => V1Action::Copied,
            V1EventType::Restore => V1Action::Undeleted,
        }
    }

    /// The type's name on the wire (`add`, `delete`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            V1EventType::Add => "add",
            V1EventType::Delete => "delete",
            V1EventType::Update => "update",
            V1EventType::Rename => "rename",
            V1EventType::Move => "move",
            V1EventType::Copy => "copy",
            V1EventType::Restore => "restore",
        }
    }

    /// Every v1 type.
    pub const ALL: [V1EventType; 7] = [
        V1EventType::Add,
        V1EventType::Delete,
        V1EventType::Update,
        V1EventType::Rename,
        V1EventType::Move,
        V1EventType::Copy,
        V1EventType::Restore,
    ];

    /// The type named `name` on the wire ([`V1EventType::as_str`]), if it is one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }

    /// The v1 type of a v2 activity, or `None` when v1 has no form for it (see module doc).
    pub fn of(event_type: EventType, subtype: EventSubtype) -> Option<Self> {
        Some(match (event_type, subtype) {
            (EventType::Add, EventSubtype::Copy) => V1EventType::Copy,
            (EventType::Add | EventType::Update, EventSubtype::Untrash) => V1EventType::Restore,
            (EventType::Add, _) => V1EventType::Add,
            (EventType::Delete, _) => V1EventType::Delete,
            (EventType::Update, EventSubtype::Rename) => V1EventType::Rename,
            (EventType::Update, EventSubtype::Move | EventSubtype::ParentUpdate) => {
                V1EventType::Move
            }
            (EventType::Update, _) => V1EventType::Update,
            (EventType::Access | EventType::Error | EventType::Unknown, _) => return None,
        })
    }
}

/// One v1 event (seed 004).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct V1Event {
    /// The activity id.
    pub id: String,
    /// Numeric account id.
    pub account: i64,
    /// Short action code.
    pub action: V1Action,
    /// IP address of the actor's session, if known.
    pub ip: Option<String>,
    /// When the change happened upstream.
    #[serde(with = "crate::time::iso_opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub modified: Option<DateTime<Utc>>,
    /// The kind of change.
    #[serde(rename = "type")]
    pub kind: V1EventType,
    /// Id of the user who made the change, if known.
    pub user_id: Option<String>,
    /// The resource the change is about.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub metadata: Option<Value>,
}

impl V1Event {
    /// The v1 form of `activity`, or `None` if v1 has none (see the module doc's table).
    pub fn from_activity(activity: &Activity) -> Option<V1Event> {
        let kind = V1EventType::of(activity.event_type, activity.event_subtype)?;
        Some(V1Event {
            id: activity.id.clone(),
            account: activity.account,
            action: kind.action(),
            ip: text_field(&activity.session, "ip").map(Cow::into_owned),
            modified: activity.timestamp,
            kind,
            user_id: text_field(&activity.actor, "id").map(Cow::into_owned),
            metadata: activity.target.clone(),
        })
    }

    /// The serialization of `activity`'s v1 event up to and including its `"metadata":`, for
    /// a caller that has the target's JSON already and appends it and `}` itself; `Ok(None)`
    /// when v1 has no form. It borrows from `activity` rather than building a [`V1Event`].
    ///
    /// # Errors
    /// If serializing fails (it cannot today: strings, numbers and a timestamp).
    pub fn head_json(
        activity: &Activity,
    ) -> Result<Option<(V1EventType, String)>, serde_json::Error> {
        let Some(kind) = V1EventType::of(activity.event_type, activity.event_subtype) else {
            return Ok(None);
        };
        let wire = V1Wire {
            id: &activity.id,
            account: activity.account,
            action: kind.action(),
            ip: text_field(&activity.session, "ip"),
            modified: activity.timestamp,
            kind,
            user_id: text_field(&activity.actor, "id"),
            metadata: None,
        };
        let mut json = serde_json::to_string(&wire)?;
        // With no metadata the event ends `"metadata":null}` (its last field); the head stops
        // before that `null`.
        if !json.ends_with(",\"metadata\":null}") {
            return Err(serde::ser::Error::custom(
                "the v1 event does not end with its metadata",
            ));
        }
        json.truncate(json.len() - "null}".len());
        Ok(Some((kind, json)))
    }
}

/// The v1 side of a stored v2 activity, read from its JSON text without building the
/// [`Activity`]: what broker messages need per activity, at a fraction of the cost (the target
/// is kept as text and copied as it is; fields v1 does not use are skipped).
///
/// [`StoredV1::parse`] fails on a text whose shape it does not expect (a session or actor that
/// is not an object, say); parse the whole [`Activity`] and use [`V1Event::from_activity`]
/// then.
#[derive(Debug)]
pub struct StoredV1<'a> {
    fields: StoredFields<'a>,
    /// The activity's v1 type, if v1 has a form for it.
    pub kind: Option<V1EventType>,
}

#[derive(Debug, Deserialize)]
struct StoredFields<'a> {
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    account: i64,
    event_type: EventType,
    event_subtype: EventSubtype,
    #[serde(default, borrow)]
    target: Option<&'a serde_json::value::RawValue>,
    #[serde(default, with = "crate::time::iso_opt")]
    timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    session: Option<SessionFields>,
    #[serde(default)]
    actor: Option<ActorFields>,
}

#[derive(Debug, Deserialize)]
struct SessionFields {
    #[serde(default)]
    ip: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct ActorFields {
    #[serde(default)]
    id: Option<Value>,
}

/// [`V1Event`]'s wire form, borrowing from the stored text (same fields, order and formats).
#[derive(Serialize)]
struct V1Wire<'a> {
    id: &'a str,
    account: i64,
    action: V1Action,
    ip: Option<Cow<'a, str>>,
    #[serde(with = "crate::time::iso_opt")]
    modified: Option<DateTime<Utc>>,
    #[serde(rename = "type")]
    kind: V1EventType,
    user_id: Option<Cow<'a, str>>,
    metadata: Option<&'a serde_json::value::RawValue>,
}

/// `object`'s `field` as text, if it is a string or number.
fn text_field<'a>(object: &'a Option<Value>, field: &str) -> Option<Cow<'a, str>> {
    text_of(object.as_ref()?.get(field))
}

/// A string or number field as text (what [`V1Event::from_activity`] takes from `session.ip`
/// and `actor.id`).
fn text_of(value: Option<&Value>) -> Option<Cow<'_, str>> {
    match value? {
        Value::String(text) => Some(Cow::Borrowed(text)),
        Value::Number(number) => Some(Cow::Owned(number.to_string())),
        _ => None,
    }
}

impl<'a> StoredV1<'a> {
    /// Reads the fields v1 needs from a stored activity's JSON.
    ///
    /// # Errors
    /// When the text is not JSON, lacks `id`, `account`, `event_type` or `event_subtype`, or
    /// has a field of an unexpected shape.
    pub fn parse(json: &'a str) -> Result<Self, serde_json::Error> {
        let fields: StoredFields<'a> = serde_json::from_str(json)?;
        let kind = V1EventType::of(fields.event_type, fields.event_subtype);
        Ok(StoredV1 { fields, kind })
    }

    /// The activity's account.
    pub fn account(&self) -> i64 {
        self.fields.account
    }

    /// The v1 event as JSON, byte for byte what serializing [`V1Event::from_activity`] of the
    /// same activity gives; `None` when v1 has no form for it.
    pub fn to_json(&self) -> Option<Vec<u8>> {
        let mut json = Vec::new();
        self.write_json(&mut json).then_some(json)
    }

    /// Appends [`StoredV1::to_json`] to `out`; `false` (and nothing written) when v1 has no
    /// form for the activity.
    pub fn write_json(&self, out: &mut Vec<u8>) -> bool {
        let Some(kind) = self.kind else {
            return false;
        };
        let wire = V1Wire {
            id: &self.fields.id,
            account: self.fields.account,
            action: kind.action(),
            ip: text_of(self.fields.session.as_ref().and_then(|s| s.ip.as_ref())),
            modified: self.fields.timestamp,
            kind,
            user_id: text_of(self.fields.actor.as_ref().and_then(|a| a.id.as_ref())),
            metadata: self.fields.target,
        };
        // Strings, numbers and already-valid JSON: serializing cannot fail (and a failure
        // would leave `out` as it was).
        let len = out.len();
        if serde_json::to_writer(&mut *out, &wire).is_err() {
            out.truncate(len);
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::activity::EventCategory;
    use serde_json::json;

    fn activity(event_type: EventType, subtype: EventSubtype) -> Activity {
        Activity::new("a", 1, EventCategory::Storage, event_type, subtype)
    }

    #[test]
    fn test_every_v1_type_is_reachable_with_its_action() {
        let cases = [
            (EventType::Add, EventSubtype::Unknown, "add", "+"),
            (EventType::Add, EventSubtype::Copy, "copy", "C"),
            (EventType::Add, EventSubtype::Untrash, "restore", "U"),
            (EventType::Delete, EventSubtype::Unknown, "delete", "-"),
            (EventType::Update, EventSubtype::Unknown, "update", "M"),
            (EventType::Update, EventSubtype::Rename, "rename", "R"),
            (EventType::Update, EventSubtype::Move, "move", "MV"),
            (EventType::Update, EventSubtype::ParentUpdate, "move", "MV"),
        ];
        for (event_type, subtype, v1_type, action) in cases {
            let event = V1Event::from_activity(&activity(event_type, subtype)).expect("has v1");
            let value = serde_json::to_value(&event).expect("serializes");
            assert_eq!(value["type"], v1_type, "{event_type} {subtype}");
            assert_eq!(value["action"], action, "{event_type} {subtype}");
        }
    }

    #[test]
    fn test_stored_v1_renders_what_the_v1_event_serializes_to() {
        let activities = [
            json!({"id": "a\"1", "account": 7, "api": "activity", "type": "activity",
                   "event_category": "storage", "event_type": "update", "event_subtype": "move",
                   "timestamp": "2026-01-02T03:04:05.123456Z",
                   "target": {"id": "F1", "name": "ré port.docx", "size": 12, "parent": {"id": "D"}},
                   "session": {"ip": "10.0.0.1", "user_agent": "x"}, "actor": {"id": 42, "email": "a@b"},
                   "raw": {"anything": [1, 2, {"deep": true}]}}),
            json!({"id": "b", "account": 8, "api": "activity", "type": "activity",
                   "event_category": "storage", "event_type": "add", "event_subtype": "copy",
                   "timestamp": null, "target": null, "session": null, "actor": {"id": ["not", "text"]}}),
            json!({"id": "c", "account": 9, "api": "activity", "type": "activity",
                   "event_category": "storage", "event_type": "delete", "event_subtype": "unknown",
                   "timestamp": "2026-01-02T03:04:05Z"}),
        ];
        for value in activities {
            let text = value.to_string();
            let activity: Activity = serde_json::from_str(&text).expect("activity");
            let expected = serde_json::to_vec(&V1Event::from_activity(&activity).expect("v1"))
                .expect("serializes");
            let stored = StoredV1::parse(&text).expect("parses");
            assert_eq!(stored.account(), activity.account);
            assert_eq!(
                String::from_utf8(stored.to_json().expect("v1")).expect("utf-8"),
                String::from_utf8(expected).expect("utf-8"),
                "{text}"
            );
        }
        let read = json!({"id": "r", "account": 1, "event_category": "storage",
                          "event_type": "access", "event_subtype": "preview"})
        .to_string();
        let stored = StoredV1::parse(&read).expect("parses");
        assert!(stored.kind.is_none() && stored.to_json().is_none());
        assert!(StoredV1::parse(r#"{"id": "x", "account": 1, "event_type": "add", "event_subtype": "unknown", "session": "text"}"#).is_err());
        assert!(StoredV1::parse("not json").is_err());
    }

    #[test]
    fn test_v1_type_names_are_their_wire_names() {
        for kind in V1EventType::ALL {
            let wire = serde_json::to_value(kind).expect("serializes");
            assert_eq!(wire, kind.as_str());
            assert_eq!(V1EventType::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(V1EventType::from_name("Add"), None);
        assert_eq!(V1EventType::from_name(""), None);
    }

    #[test]
    fn test_access_and_unknown_have_no_v1_form() {
        assert!(
            V1Event::from_activity(&activity(EventType::Access, EventSubtype::Preview)).is_none()
        );
        assert!(
            V1Event::from_activity(&activity(EventType::Unknown, EventSubtype::Unknown)).is_none()
        );
        assert!(
            V1Event::from_activity(&activity(EventType::Error, EventSubtype::Unknown)).is_none()
        );
    }

    #[test]
    fn test_v1_fields_come_from_session_actor_and_target() {
        let mut source = activity(EventType::Add, EventSubtype::Unknown);
        source.session = Some(json!({"type": "login", "ip": "10.0.0.1"}));
        source.actor = Some(json!({"type": "user", "id": "u-9"}));
        source.target = Some(json!({"type": "file", "id": "f1", "name": "Some File"}));
        let value =
            serde_json::to_value(V1Event::from_activity(&source).expect("v1")).expect("json");
        assert_eq!(
            value,
            json!({"id": "a", "account": 1, "action": "+", "ip": "10.0.0.1", "modified": null,
                   "type": "add", "user_id": "u-9",
                   "metadata": {"type": "file", "id": "f1", "name": "Some File"}})
        );
    }
}

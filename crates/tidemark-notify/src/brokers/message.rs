//! Broker messages: a subscription's stored activity cut into batches and rendered as seed 003's
//! message body.

use std::num::NonZeroUsize;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tidemark_model::{Activity, StoredV1, V1Event, V1EventType};
use tidemark_store::StoredActivity;

use super::{HEADER_ACCOUNT_ID, HEADER_SUBSCRIPTION_ID, HEADER_V1_ACTIVITY_TYPE};
use crate::filter::EventPattern;
use crate::webhooks::event_document;

/// Which forms of the activity a destination's messages carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// `{"activity": {"v1": [..]}}` only (seed 003's examples). Activities without a v1 form
    /// are not sent.
    V1,
    /// `{"activity": {"v2": [..]}}` only.
    V2,
    /// Both lists.
    #[default]
    Both,
}

impl PayloadFormat {
    /// The format named `name` (`v1`, `v2`, `both`), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "v1" => Some(PayloadFormat::V1),
            "v2" => Some(PayloadFormat::V2),
            "both" => Some(PayloadFormat::Both),
            _ => None,
        }
    }
}

/// The default [`MessageBuilder::max_body_bytes`]: half of a NATS server's default
/// `max_payload` (1 MiB), well within RabbitMQ's and Redis's limits.
pub const DEFAULT_MAX_BODY_BYTES: usize = 512 * 1024;

/// How a destination turns activity into messages.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    /// The forms carried.
    pub payload: PayloadFormat,
    /// Most activities in one message (example: 100).
    pub max_activities: NonZeroUsize,
    /// Largest body a message grows to by taking another activity (example: 524288); a single
    /// activity larger than this still travels, alone. A body the broker refuses as too large
    /// is a permanent error that would hold the subscription back, so keep this under the
    /// broker's limit.
    pub max_body_bytes: usize,
    /// The destination's event pattern: only matching activity is carried.
    pub filter: Option<EventPattern>,
}

/// One message: a run of one subscription's activity, in stream order, all of one v1 type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The account.
    pub account: i64,
    /// The subscription.
    pub subscription: i64,
    /// Sequence of the first activity carried.
    pub first_sequence: u64,
    /// Sequence of the last activity carried.
    pub last_sequence: u64,
    /// Once this message is acknowledged, the destination's position may move here: the last
    /// activity carried, plus any after it that were filtered out or have nothing to carry, up
    /// to the next message (or the end of the input).
    pub through_sequence: u64,
    /// Activities carried.
    pub activity_count: usize,
    /// The v1 type of every activity carried; `None` for activity without a v1 form.
    pub v1_activity_type: Option<V1EventType>,
    /// The JSON body.
    pub body: Bytes,
}

impl Message {
    /// The id consumers deduplicate by: `{subscription}-{first_sequence}`. The same activity
    /// always starts the same message, so a re-published message has the same id.
    pub fn message_id(&self) -> String {
        format!("{}-{}", self.subscription, self.first_sequence)
    }

    /// The headers (NATS), AMQP headers or Redis fields besides the body and message id:
    /// `accountId`, `subscriptionId` and, when the activity has a v1 form, `v1ActivityType`.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            (HEADER_ACCOUNT_ID, self.account.to_string()),
            (HEADER_SUBSCRIPTION_ID, self.subscription.to_string()),
        ];
        if let Some(kind) = self.v1_activity_type {
            headers.push((HEADER_V1_ACTIVITY_TYPE, v1_type_name(kind).to_owned()));
        }
        headers
    }
}

/// The v1 `type` string.
pub(crate) fn v1_type_name(kind: V1EventType) -> &'static str {
    match kind {
        V1EventType::Add => "add",
        V1EventType::Delete => "delete",
        V1EventType::Update => "update",
        V1EventType::Rename => "rename",
        V1EventType::Move => "move",
        V1EventType::Copy => "copy",
        V1EventType::Restore => "restore",
    }
}

/// Why stored activity could not be turned into messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// A stored activity is not a v2 activity object.
    #[error("activity {sequence} is not a valid activity: {message}")]
    Corrupt {
        /// Its sequence.
        sequence: u64,
        /// The parser's message.
        message: String,
    },
    /// A stored activity belongs to another account.
    #[error("activity {sequence} belongs to account {found}, not {expected}")]
    WrongAccount {
        /// Its sequence.
        sequence: u64,
        /// The account the messages are for.
        expected: i64,
        /// The activity's account.
        found: i64,
    },
    /// The activities are not in increasing sequence order.
    #[error("activity {sequence} follows {previous}: activities must be in stream order")]
    OutOfOrder {
        /// The sequence found.
        sequence: u64,
        /// The one before it.
        previous: u64,
    },
}

/// A message being filled: its lists as JSON, each item followed by a comma.
struct Run {
    v1_activity_type: Option<V1EventType>,
    first_sequence: u64,
    last_sequence: u64,
    activity_count: usize,
    v1: Vec<u8>,
    v2: Vec<u8>,
}

/// Room for `{"account":..,"subscription":..,"activity":{"v1":[],"v2":[]}}` around the lists.
const BODY_OVERHEAD_BYTES: usize = 96;

impl MessageBuilder {
    /// A builder carrying `payload`, at most `max_activities` per message and
    /// [`DEFAULT_MAX_BODY_BYTES`], without a filter.
    pub fn new(payload: PayloadFormat, max_activities: NonZeroUsize) -> Self {
        MessageBuilder {
            payload,
            max_activities,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            filter: None,
        }
    }

    /// Cuts `activities` (one subscription's stream, in order, as stored) into messages.
    ///
    /// Activities that do not match the filter are skipped, and so are those without a v1 form
    /// when the payload is `v1`. A message ends where the v1 type changes, at
    /// `max_activities`, or before its body would outgrow `max_body_bytes`. An input whose activities are all skipped gives no message: the
    /// destination's position may then move to the input's last sequence without publishing.
    ///
    /// # Errors
    /// A [`MessageError`] when an activity does not parse, belongs to another account, or is
    /// out of order; nothing is built then.
    pub fn build(
        &self,
        account: i64,
        subscription: i64,
        activities: &[StoredActivity],
    ) -> Result<Vec<Message>, MessageError> {
        let mut messages = Vec::new();
        let mut run: Option<Run> = None;
        let mut previous: Option<u64> = None;
        for stored in activities {
            if let Some(previous) = previous {
                if stored.sequence <= previous {
                    return Err(MessageError::OutOfOrder {
                        sequence: stored.sequence,
                        previous,
                    });
                }
            }
            previous = Some(stored.sequence);
            let corrupt = |e: serde_json::Error| MessageError::Corrupt {
                sequence: stored.sequence,
                message: e.to_string(),
            };
            // Without a filter only the v1 side is read ([`StoredV1`]); with one (a pattern
            // may look at any field), or a text of a shape it does not expect, the whole
            // activity.
            let fast = match &self.filter {
                None => StoredV1::parse(&stored.json).ok(),
                Some(_) => None,
            };
            let want_v1 = self.payload != PayloadFormat::V2;
            let (found, v1_activity_type, v1_json) = match fast {
                Some(fast) => (
                    fast.account(),
                    fast.kind,
                    if want_v1 { fast.to_json() } else { None },
                ),
                None => {
                    let activity: Activity = serde_json::from_str(&stored.json).map_err(corrupt)?;
                    if let Some(filter) = &self.filter {
                        if activity.account == account
                            && !filter.matches(&event_document(account, subscription, &activity))
                        {
                            continue;
                        }
                    }
                    let v1 = V1Event::from_activity(&activity);
                    let json = match (&v1, want_v1) {
                        // Plain fields and JSON values: serializing cannot fail.
                        (Some(event), true) => serde_json::to_vec(event).ok(),
                        _ => None,
                    };
                    (activity.account, v1.map(|event| event.kind), json)
                }
            };
            if found != account {
                return Err(MessageError::WrongAccount {
                    sequence: stored.sequence,
                    expected: account,
                    found,
                });
            }
            if v1_activity_type.is_none() && self.payload == PayloadFormat::V1 {
                continue;
            }
            let v1_json = v1_json.unwrap_or_default();
            // The stored text parsed above, so it is one valid JSON value: it goes into the
            // v2 list as it is.
            let v2_json = stored.json.trim().as_bytes();
            let mut bytes = 0;
            if self.payload != PayloadFormat::V1 {
                bytes += v2_json.len() + 1;
            }
            if !v1_json.is_empty() {
                bytes += v1_json.len() + 1;
            }
            let full = run.as_ref().is_some_and(|open| {
                open.v1_activity_type != v1_activity_type
                    || open.activity_count >= self.max_activities.get()
                    || BODY_OVERHEAD_BYTES + open.v1.len() + open.v2.len() + bytes
                        > self.max_body_bytes
            });
            if full {
                if let Some(done) = run.take() {
                    messages.push(self.finish(account, subscription, done));
                }
            }
            let open = run.get_or_insert_with(|| Run {
                v1_activity_type,
                first_sequence: stored.sequence,
                last_sequence: stored.sequence,
                activity_count: 0,
                v1: Vec::new(),
                v2: Vec::new(),
            });
            open.last_sequence = stored.sequence;
            open.activity_count += 1;
            if !v1_json.is_empty() {
                open.v1.extend_from_slice(&v1_json);
                open.v1.push(b',');
            }
            if self.payload != PayloadFormat::V1 {
                open.v2.extend_from_slice(v2_json);
                open.v2.push(b',');
            }
        }
        if let Some(done) = run.take() {
            messages.push(self.finish(account, subscription, done));
        }
        let end = previous.unwrap_or_default();
        let next_firsts: Vec<u64> = messages
            .iter()
            .skip(1)
            .map(|message| message.first_sequence)
            .collect();
        for (index, message) in messages.iter_mut().enumerate() {
            message.through_sequence = next_firsts
                .get(index)
                .map_or(end, |next_first| next_first - 1);
            debug_assert!(message.through_sequence >= message.last_sequence);
        }
        Ok(messages)
    }

    fn finish(&self, account: i64, subscription: i64, mut run: Run) -> Message {
        // `{"account":1,"subscription":2,"activity":{"v1":[..],"v2":[..]}}`, assembled from
        // the lists' JSON (each item valid JSON, followed by a comma).
        let list = |body: &mut Vec<u8>, name: &str, items: &mut Vec<u8>| {
            if items.last() == Some(&b',') {
                items.pop();
            }
            body.extend_from_slice(b"\"");
            body.extend_from_slice(name.as_bytes());
            body.extend_from_slice(b"\":[");
            body.extend_from_slice(items);
            body.push(b']');
        };
        let mut body = Vec::with_capacity(BODY_OVERHEAD_BYTES + run.v1.len() + run.v2.len());
        body.extend_from_slice(
            format!("{{\"account\":{account},\"subscription\":{subscription},\"activity\":{{")
                .as_bytes(),
        );
        if self.payload != PayloadFormat::V2 {
            list(&mut body, "v1", &mut run.v1);
        }
        if self.payload == PayloadFormat::Both {
            body.push(b',');
        }
        if self.payload != PayloadFormat::V1 {
            list(&mut body, "v2", &mut run.v2);
        }
        body.extend_from_slice(b"}}");
        Message {
            account,
            subscription,
            first_sequence: run.first_sequence,
            last_sequence: run.last_sequence,
            through_sequence: run.last_sequence,
            activity_count: run.activity_count,
            v1_activity_type: run.v1_activity_type,
            body: Bytes::from(body),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use serde_json::{json, Value};

    fn stored(sequence: u64, account: i64, event_type: &str, subtype: &str) -> StoredActivity {
        let activity = json!({
            "id": format!("a{sequence}"), "account": account, "api": "activity", "type": "activity",
            "event_category": "storage", "event_type": event_type, "event_subtype": subtype,
            "target": {"type": "file", "id": format!("f{sequence}"), "name": "doc.txt"},
            "previous_target": null, "impersonate_for_target": null,
            "timestamp": "2026-01-02T03:04:05Z", "session": {"type": "login", "ip": "10.0.0.1"},
            "actor": {"type": "user", "id": "u1"}, "metadata": null
        });
        StoredActivity {
            sequence,
            committed_at: Utc::now(),
            json: activity.to_string(),
        }
    }

    fn builder(payload: PayloadFormat, max: usize) -> MessageBuilder {
        MessageBuilder::new(payload, NonZeroUsize::new(max).expect("non-zero"))
    }

    fn body(message: &Message) -> Value {
        serde_json::from_slice(&message.body).expect("json body")
    }

    #[test]
    fn test_a_batch_becomes_seed_003_bodies_with_ids_and_headers() {
        let activities = [
            stored(5, 9, "add", "unknown"),
            stored(6, 9, "add", "unknown"),
        ];
        let messages = builder(PayloadFormat::Both, 100)
            .build(9, 77, &activities)
            .expect("built");
        assert_eq!(messages.len(), 1);
        let message = &messages[0];
        assert_eq!(message.message_id(), "77-5");
        assert_eq!(
            (
                message.first_sequence,
                message.last_sequence,
                message.through_sequence
            ),
            (5, 6, 6)
        );
        assert_eq!(
            message.headers(),
            [
                ("accountId", "9".to_owned()),
                ("subscriptionId", "77".to_owned()),
                ("v1ActivityType", "add".to_owned())
            ]
        );
        let body = body(message);
        assert_eq!(body["account"], 9);
        assert_eq!(body["subscription"], 77);
        assert_eq!(body["activity"]["v1"][0]["type"], "add");
        assert_eq!(body["activity"]["v1"][0]["action"], "+");
        assert_eq!(body["activity"]["v1"][1]["id"], "a6");
        let stored_v2: Value = serde_json::from_str(&activities[1].json).expect("json");
        assert_eq!(
            body["activity"]["v2"][1], stored_v2,
            "v2 is the stored object"
        );
    }

    #[test]
    fn test_payload_format_selects_the_lists() {
        let activities = [stored(1, 1, "update", "rename")];
        let v1 = body(
            &builder(PayloadFormat::V1, 10)
                .build(1, 2, &activities)
                .expect("v1")[0],
        );
        assert_eq!(
            v1["activity"]
                .as_object()
                .expect("object")
                .keys()
                .collect::<Vec<_>>(),
            ["v1"]
        );
        assert_eq!(v1["activity"]["v1"][0]["type"], "rename");
        let v2 = body(
            &builder(PayloadFormat::V2, 10)
                .build(1, 2, &activities)
                .expect("v2")[0],
        );
        assert_eq!(
            v2["activity"]
                .as_object()
                .expect("object")
                .keys()
                .collect::<Vec<_>>(),
            ["v2"]
        );
        assert_eq!(v2["activity"]["v2"][0]["event_subtype"], "rename");
    }

    #[test]
    fn test_messages_are_cut_where_the_v1_type_changes_and_at_the_limit_in_order() {
        let activities = [
            stored(1, 1, "add", "unknown"),
            stored(2, 1, "add", "unknown"),
            stored(3, 1, "add", "unknown"),
            stored(4, 1, "delete", "unknown"),
            stored(5, 1, "access", "preview"),
            stored(6, 1, "add", "unknown"),
        ];
        let messages = builder(PayloadFormat::Both, 2)
            .build(1, 3, &activities)
            .expect("built");
        let summary: Vec<(String, Option<&str>, usize, u64)> = messages
            .iter()
            .map(|m| {
                (
                    m.message_id(),
                    m.v1_activity_type.map(v1_type_name),
                    m.activity_count,
                    m.through_sequence,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("3-1".to_owned(), Some("add"), 2, 2),
                ("3-3".to_owned(), Some("add"), 1, 3),
                ("3-4".to_owned(), Some("delete"), 1, 4),
                ("3-5".to_owned(), None, 1, 5),
                ("3-6".to_owned(), Some("add"), 1, 6),
            ]
        );
        // Activity without a v1 form: an empty v1 list, its v2 object, no v1ActivityType.
        assert_eq!(body(&messages[3])["activity"]["v1"], json!([]));
        assert!(messages[3]
            .headers()
            .iter()
            .all(|(name, _)| *name != "v1ActivityType"));
        // v1 only: the read is skipped, its position covered by the message before it.
        let v1_only = builder(PayloadFormat::V1, 2)
            .build(1, 3, &activities)
            .expect("built");
        let ids: Vec<(String, u64)> = v1_only
            .iter()
            .map(|m| (m.message_id(), m.through_sequence))
            .collect();
        assert_eq!(
            ids,
            [
                ("3-1".to_owned(), 2),
                ("3-3".to_owned(), 3),
                ("3-4".to_owned(), 5),
                ("3-6".to_owned(), 6)
            ]
        );
    }

    #[test]
    fn test_messages_are_cut_before_the_body_outgrows_its_limit() {
        let activities: Vec<StoredActivity> = (1..=10)
            .map(|sequence| stored(sequence, 1, "add", "unknown"))
            .collect();
        let one = builder(PayloadFormat::Both, 100)
            .build(1, 2, &activities[..1])
            .expect("one")[0]
            .body
            .len();
        let mut builder = builder(PayloadFormat::Both, 100);
        builder.max_body_bytes = one * 3;
        let messages = builder.build(1, 2, &activities).expect("built");
        assert!(messages.len() >= 4, "{} messages", messages.len());
        assert!(messages.iter().all(|m| m.body.len() <= one * 3));
        let carried: usize = messages.iter().map(|m| m.activity_count).sum();
        assert_eq!(carried, 10, "nothing lost at the cuts");
        // An activity larger than the limit travels alone.
        builder.max_body_bytes = 10;
        let alone = builder.build(1, 2, &activities[..3]).expect("built");
        assert_eq!(
            alone.iter().map(|m| m.activity_count).collect::<Vec<_>>(),
            [1, 1, 1]
        );
    }

    #[test]
    fn test_the_filter_keeps_only_matching_activity() {
        let mut builder = builder(PayloadFormat::Both, 10);
        builder.filter = Some(
            EventPattern::parse(&json!({"detail": {"activity": {"v1": {"type": ["delete"]}}}}))
                .expect("pattern"),
        );
        let activities = [
            stored(1, 1, "add", "unknown"),
            stored(2, 1, "delete", "unknown"),
            stored(3, 1, "add", "unknown"),
        ];
        let messages = builder.build(1, 4, &activities).expect("built");
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].message_id(), "4-2");
        assert_eq!(messages[0].through_sequence, 3);
        let nothing = builder
            .build(1, 4, &activities[..1])
            .expect("built nothing");
        assert!(nothing.is_empty());
        assert!(builder.build(1, 4, &[]).expect("empty").is_empty());
    }

    #[test]
    fn test_bad_input_is_refused() {
        let builder = builder(PayloadFormat::Both, 10);
        let mut corrupt = stored(1, 1, "add", "unknown");
        corrupt.json = "{\"id\": ".into();
        assert!(matches!(
            builder.build(1, 1, &[corrupt]),
            Err(MessageError::Corrupt { sequence: 1, .. })
        ));
        let mut not_an_activity = stored(1, 1, "add", "unknown");
        not_an_activity.json = "{\"id\": \"x\"}".into();
        assert!(matches!(
            builder.build(1, 1, &[not_an_activity]),
            Err(MessageError::Corrupt { .. })
        ));
        assert_eq!(
            builder.build(1, 1, &[stored(1, 2, "add", "unknown")]),
            Err(MessageError::WrongAccount {
                sequence: 1,
                expected: 1,
                found: 2
            })
        );
        assert_eq!(
            builder.build(
                1,
                1,
                &[
                    stored(2, 1, "add", "unknown"),
                    stored(2, 1, "add", "unknown")
                ]
            ),
            Err(MessageError::OutOfOrder {
                sequence: 2,
                previous: 2
            })
        );
    }
}

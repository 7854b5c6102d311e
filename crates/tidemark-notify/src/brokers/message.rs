//! Broker messages: a subscription's stored activity cut into batches and rendered as seed 003's
//! message body.

use std::num::NonZeroUsize;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tidemark_model::{Activity, StoredV1, V1Event, V1EventType};
use tidemark_store::{StoredActivity, StoredV1Event};

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
            headers.push((HEADER_V1_ACTIVITY_TYPE, kind.as_str().to_owned()));
        }
        headers
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

/// One activity ready to join a message. Its v1 event's JSON, when carried, is in the
/// [`Messages`] scratch buffer (`v1_len` bytes); its stored v2 text is borrowed from the input
/// (empty when not carried).
struct Item<'a> {
    sequence: u64,
    v1_activity_type: Option<V1EventType>,
    v1_len: usize,
    v2: &'a [u8],
}

impl Item<'_> {
    /// Bytes this activity adds to a body (each list item is followed by a comma).
    fn bytes(&self) -> usize {
        let carried = |len: usize| if len == 0 { 0 } else { len + 1 };
        carried(self.v1_len) + carried(self.v2.len())
    }
}

/// A message being filled. Its body is written as it goes: the opening, then the first list's
/// items, each followed by a comma. With both lists, the v2 items wait (borrowed) until the
/// message is finished, so every byte is copied into the body once.
struct Run<'a> {
    v1_activity_type: Option<V1EventType>,
    first_sequence: u64,
    last_sequence: u64,
    activity_count: usize,
    body: Vec<u8>,
    /// With both lists: the v2 items, and their bytes.
    v2: Vec<&'a [u8]>,
    v2_bytes: usize,
}

impl<'a> Run<'a> {
    /// A message for `account` and `subscription` that `item` opens.
    fn open(builder: &MessageBuilder, account: i64, subscription: i64, item: &Item<'_>) -> Self {
        // Room for the lists of about as many activities like this one as a message may hold
        // (up to 4; the body grows if they are bigger).
        let expected = item.bytes() * builder.max_activities.get().min(4);
        let mut body = Vec::with_capacity(BODY_OVERHEAD_BYTES + expected);
        body.extend_from_slice(
            format!("{{\"account\":{account},\"subscription\":{subscription},\"activity\":{{")
                .as_bytes(),
        );
        body.extend_from_slice(match builder.payload {
            PayloadFormat::V2 => b"\"v2\":[",
            PayloadFormat::V1 | PayloadFormat::Both => b"\"v1\":[",
        });
        Run {
            v1_activity_type: item.v1_activity_type,
            first_sequence: item.sequence,
            last_sequence: item.sequence,
            activity_count: 0,
            body,
            v2: Vec::new(),
            v2_bytes: 0,
        }
    }

    /// Whether `item` may join this message under `builder`'s limits.
    fn takes(&self, item: &Item<'_>, builder: &MessageBuilder) -> bool {
        self.v1_activity_type == item.v1_activity_type
            && self.activity_count < builder.max_activities.get()
            && self.body.len() + self.v2_bytes + item.bytes() + BODY_CLOSING_BYTES
                <= builder.max_body_bytes
    }

    /// Adds `item`, whose v1 JSON is `v1`.
    fn push(&mut self, payload: PayloadFormat, item: &Item<'a>, v1: &[u8]) {
        self.last_sequence = item.sequence;
        self.activity_count += 1;
        let mut append = |json: &[u8]| {
            if !json.is_empty() {
                self.body.extend_from_slice(json);
                self.body.push(b',');
            }
        };
        match payload {
            PayloadFormat::V1 => append(v1),
            PayloadFormat::V2 => append(item.v2),
            PayloadFormat::Both => {
                append(v1);
                if !item.v2.is_empty() {
                    self.v2.push(item.v2);
                    self.v2_bytes += item.v2.len() + 1;
                }
            }
        }
    }
}

/// Room for `{"account":..,"subscription":..,"activity":{"v1":[],"v2":[]}}` around the lists.
const BODY_OVERHEAD_BYTES: usize = 96;

/// What closes a body after the items of its first list: `]`, then `,"v2":[` and `]` when both
/// lists are carried, and `}}`.
const BODY_CLOSING_BYTES: usize = 12;

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

    /// Cuts `activities` (one subscription's stream, in order, as stored) into messages, one
    /// at a time as the iterator is advanced (a publisher holds only the message in flight).
    ///
    /// Activities that do not match the filter are skipped, and so are those without a v1 form
    /// when the payload is `v1`. A message ends where the v1 type changes, at
    /// `max_activities`, or before its body would outgrow `max_body_bytes`; the same input is
    /// always cut the same way. An input whose activities are all skipped gives no message:
    /// the destination's position may then move to the input's last sequence without
    /// publishing.
    ///
    /// A [`MessageError`] (an activity that does not parse, belongs to another account, or is
    /// out of order) ends the messages: the messages before it are given first, then the
    /// error, then nothing.
    pub fn messages<'a>(
        &'a self,
        account: i64,
        subscription: i64,
        activities: &'a [StoredActivity],
    ) -> Messages<'a> {
        Messages {
            builder: self,
            account,
            subscription,
            rest: activities.iter(),
            previous: None,
            carried: None,
            scratch: Vec::new(),
            done: false,
        }
    }

    /// All of [`MessageBuilder::messages`] at once.
    ///
    /// # Errors
    /// The first [`MessageError`]; nothing is built then.
    pub fn build(
        &self,
        account: i64,
        subscription: i64,
        activities: &[StoredActivity],
    ) -> Result<Vec<Message>, MessageError> {
        self.messages(account, subscription, activities).collect()
    }

    /// `stored` ready to join a message, or `None` when it is not carried (filtered out, or
    /// without a v1 form when only v1 is). Its v1 JSON, when carried, replaces what `scratch`
    /// held.
    fn item<'a>(
        &self,
        account: i64,
        subscription: i64,
        stored: &'a StoredActivity,
        scratch: &mut Vec<u8>,
    ) -> Result<Option<Item<'a>>, MessageError> {
        let corrupt = |e: serde_json::Error| MessageError::Corrupt {
            sequence: stored.sequence,
            message: e.to_string(),
        };
        scratch.clear();
        let want_v1 = self.payload != PayloadFormat::V2;
        let v2 = if self.payload == PayloadFormat::V1 {
            &[][..]
        } else {
            // Stored bodies are JSON written at commit: they go into the v2 list as they are.
            stored.json.trim().as_bytes()
        };
        // Without a filter, the v1 event rendered at commit is all that is needed.
        if self.filter.is_none() {
            match &stored.v1 {
                StoredV1Event::Rendered(event) => {
                    if let Some(found) = rendered_account(&event.json) {
                        if found != account {
                            return Err(MessageError::WrongAccount {
                                sequence: stored.sequence,
                                expected: account,
                                found,
                            });
                        }
                        if !want_v1 || event.write(&stored.json, scratch) {
                            return Ok(Some(Item {
                                sequence: stored.sequence,
                                v1_activity_type: Some(event.kind),
                                v1_len: scratch.len(),
                                v2,
                            }));
                        }
                    }
                }
                StoredV1Event::NoForm if self.payload == PayloadFormat::V1 => return Ok(None),
                StoredV1Event::NoForm | StoredV1Event::Unrendered => {}
            }
        }
        // Otherwise, without a filter only the v1 side is read ([`StoredV1`]); with one (a
        // pattern may look at any field), or a text of a shape it does not expect, the whole
        // activity.
        let fast = match &self.filter {
            None => StoredV1::parse(&stored.json).ok(),
            Some(_) => None,
        };
        let (found, v1_activity_type) = match fast {
            Some(fast) => {
                if want_v1 {
                    fast.write_json(scratch);
                }
                (fast.account(), fast.kind)
            }
            None => {
                let activity: Activity = serde_json::from_str(&stored.json).map_err(corrupt)?;
                if let Some(filter) = &self.filter {
                    if activity.account == account
                        && !filter.matches(&event_document(account, subscription, &activity))
                    {
                        return Ok(None);
                    }
                }
                let v1 = V1Event::from_activity(&activity);
                if let (Some(event), true) = (&v1, want_v1) {
                    // Plain fields and JSON values: serializing cannot fail.
                    if serde_json::to_writer(&mut *scratch, event).is_err() {
                        scratch.clear();
                    }
                }
                (activity.account, v1.map(|event| event.kind))
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
            return Ok(None);
        }
        Ok(Some(Item {
            sequence: stored.sequence,
            v1_activity_type,
            v1_len: scratch.len(),
            v2,
        }))
    }

    fn finish(&self, account: i64, subscription: i64, run: Run<'_>, through: u64) -> Message {
        // `{"account":1,"subscription":2,"activity":{"v1":[..],"v2":[..]}}`: the opening and
        // the first list's items are written; close that list, add the v2 list when both are
        // carried, and close the object.
        let Run {
            mut body,
            v2,
            v2_bytes,
            ..
        } = run;
        let close_list = |body: &mut Vec<u8>| {
            if body.last() == Some(&b',') {
                body.pop();
            }
            body.push(b']');
        };
        close_list(&mut body);
        if self.payload == PayloadFormat::Both {
            body.reserve(v2_bytes + 10);
            body.extend_from_slice(b",\"v2\":[");
            for item in &v2 {
                body.extend_from_slice(item);
                body.push(b',');
            }
            close_list(&mut body);
        }
        body.extend_from_slice(b"}}");
        debug_assert!(through >= run.last_sequence);
        Message {
            account,
            subscription,
            first_sequence: run.first_sequence,
            last_sequence: run.last_sequence,
            through_sequence: through,
            activity_count: run.activity_count,
            v1_activity_type: run.v1_activity_type,
            body: Bytes::from(body),
        }
    }
}

/// The `account` of a v1 event as [`V1Event`]'s serializer writes it, `{"id":"..","account":N,`:
/// the first `","account":` in the text is that field, since `id` comes first and a JSON
/// string holds no unescaped quote. `None` for a text of another shape (the event is then
/// rendered afresh from the v2 text).
fn rendered_account(json: &str) -> Option<i64> {
    const FIELD: &str = "\",\"account\":";
    if !json.starts_with("{\"id\":\"") {
        return None;
    }
    let start = json.find(FIELD)? + FIELD.len();
    let rest = &json[start..];
    rest[..rest.find(',')?].parse().ok()
}

/// The messages of one input, built as they are asked for (see [`MessageBuilder::messages`]).
pub struct Messages<'a> {
    builder: &'a MessageBuilder,
    account: i64,
    subscription: i64,
    rest: std::slice::Iter<'a, StoredActivity>,
    previous: Option<u64>,
    /// The activity that did not fit into the message before: it starts the next one (its
    /// v1 JSON is still in `scratch`).
    carried: Option<Item<'a>>,
    /// The v1 JSON of the activity read last.
    scratch: Vec<u8>,
    /// The input is used up, or an error was given.
    done: bool,
}

impl Iterator for Messages<'_> {
    type Item = Result<Message, MessageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let builder = self.builder;
        let (account, subscription) = (self.account, self.subscription);
        let mut run = self.carried.take().map(|item| {
            let mut run = Run::open(builder, account, subscription, &item);
            run.push(builder.payload, &item, &self.scratch);
            run
        });
        loop {
            let Some(stored) = self.rest.next() else {
                // A message ending with the input covers it to its end, skipped tail included.
                self.done = true;
                let end = self.previous.unwrap_or_default();
                return run.map(|run| Ok(builder.finish(account, subscription, run, end)));
            };
            if let Some(previous) = self.previous {
                if stored.sequence <= previous {
                    self.done = true;
                    return Some(Err(MessageError::OutOfOrder {
                        sequence: stored.sequence,
                        previous,
                    }));
                }
            }
            self.previous = Some(stored.sequence);
            let item = match builder.item(account, subscription, stored, &mut self.scratch) {
                Ok(Some(item)) => item,
                Ok(None) => continue,
                Err(error) => {
                    self.done = true;
                    return Some(Err(error));
                }
            };
            match &mut run {
                Some(open) if open.takes(&item, builder) => {
                    open.push(builder.payload, &item, &self.scratch);
                }
                Some(_) => {
                    // The message ends where the next begins (skipped activity in between is
                    // covered by it).
                    let through = item.sequence - 1;
                    self.carried = Some(item);
                    return run.map(|run| Ok(builder.finish(account, subscription, run, through)));
                }
                None => {
                    let mut open = Run::open(builder, account, subscription, &item);
                    open.push(builder.payload, &item, &self.scratch);
                    run = Some(open);
                }
            }
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
            v1: StoredV1Event::Unrendered,
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
                    m.v1_activity_type.map(V1EventType::as_str),
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
    fn test_messages_come_one_at_a_time_and_an_error_ends_them() {
        let mut corrupt = stored(4, 1, "add", "unknown");
        corrupt.json = "{\"id\": ".into();
        let activities = [
            stored(1, 1, "add", "unknown"),
            stored(2, 1, "delete", "unknown"),
            stored(3, 1, "add", "unknown"),
            corrupt,
            stored(5, 1, "add", "unknown"),
        ];
        let builder = builder(PayloadFormat::Both, 10);
        let mut messages = builder.messages(1, 2, &activities);
        let first = messages.next().expect("a message").expect("built");
        assert_eq!(
            (first.message_id(), first.through_sequence),
            ("2-1".into(), 1)
        );
        let second = messages.next().expect("a message").expect("built");
        assert_eq!(
            (second.message_id(), second.through_sequence),
            ("2-2".into(), 2)
        );
        // The message activity 3 opened is not given: activity 4 ends the messages.
        assert!(matches!(
            messages.next(),
            Some(Err(MessageError::Corrupt { sequence: 4, .. }))
        ));
        assert!(messages.next().is_none());
        assert!(builder.build(1, 2, &activities).is_err());
        // Given one at a time or all at once, the same messages.
        let good = &activities[..3];
        let one_by_one: Vec<Message> = builder
            .messages(1, 2, good)
            .map(|message| message.expect("built"))
            .collect();
        assert_eq!(one_by_one, builder.build(1, 2, good).expect("built"));
        assert_eq!(one_by_one.len(), 3);
    }

    /// `stored` with its v1 event rendered as a commit renders it.
    fn rendered(stored: &StoredActivity) -> StoredActivity {
        let activity = stored.activity().expect("activity");
        let encoded = tidemark_store::EncodedActivity::encode(&activity).expect("encodes");
        StoredActivity {
            json: encoded.json,
            v1: match encoded.v1 {
                Some(event) => StoredV1Event::Rendered(event),
                None => StoredV1Event::NoForm,
            },
            ..stored.clone()
        }
    }

    #[test]
    fn test_the_v1_event_rendered_at_commit_gives_the_same_messages() {
        // Both from the text a commit stores, one with the v1 event it rendered.
        let rendered_ones: Vec<_> = [
            stored(1, 1, "add", "unknown"),
            stored(2, 1, "access", "preview"),
            stored(3, 1, "update", "rename"),
            stored(4, 1, "update", "rename"),
            stored(5, 1, "delete", "unknown"),
        ]
        .iter()
        .map(rendered)
        .collect();
        let activities: Vec<_> = rendered_ones
            .iter()
            .map(|stored| StoredActivity {
                v1: StoredV1Event::Unrendered,
                ..stored.clone()
            })
            .collect();
        assert!(matches!(rendered_ones[1].v1, StoredV1Event::NoForm));
        assert!(matches!(
            &rendered_ones[0].v1,
            StoredV1Event::Rendered(event) if event.kind == V1EventType::Add && event.target.is_some()
        ));
        for payload in [PayloadFormat::V1, PayloadFormat::V2, PayloadFormat::Both] {
            let builder = builder(payload, 10);
            let from_text = builder.build(1, 7, &activities).expect("messages");
            let from_rendered = builder.build(1, 7, &rendered_ones).expect("messages");
            assert!(!from_text.is_empty());
            assert_eq!(from_rendered, from_text, "{payload:?}");
        }
        // A rendered event of another account is refused as the text's would be.
        let mut foreign = rendered_ones[0].clone();
        if let StoredV1Event::Rendered(event) = &mut foreign.v1 {
            event.json = event.json.replace("\"account\":1,", "\"account\":2,");
        }
        assert_eq!(
            builder(PayloadFormat::Both, 10).build(1, 7, &[foreign]),
            Err(MessageError::WrongAccount {
                sequence: 1,
                expected: 1,
                found: 2
            })
        );
        // One of a shape the builder does not expect is rendered afresh from the text.
        let plain = builder(PayloadFormat::Both, 10).build(1, 7, &activities[..1]);
        let mut odd = activities[0].clone();
        odd.v1 = StoredV1Event::Rendered(tidemark_store::RenderedV1 {
            kind: V1EventType::Delete,
            json: "{\"account\":1}".into(),
            target: None,
        });
        assert_eq!(builder(PayloadFormat::Both, 10).build(1, 7, &[odd]), plain);
        // A target span that is not in the text is not trusted either.
        let mut astray = rendered_ones[0].clone();
        if let StoredV1Event::Rendered(event) = &mut astray.v1 {
            event.target = Some(10_000..10_100);
        }
        assert_eq!(
            builder(PayloadFormat::Both, 10).build(1, 7, &[astray]),
            plain
        );
        assert_eq!(
            rendered_account("{\"id\":\"a\\\",\\\"account\\\":9\",\"account\":3,\"action\":\"+\"}"),
            Some(3)
        );
        assert_eq!(rendered_account("{\"id\":\"a\",\"account\":x,"), None);
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

//! A synthetic upstream for benchmarks: a connector that pages through N generated upstream
//! events, normalizing each into a realistic (~1 KB) unified activity.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use tidemark_connectors::{Checkpoint, Connector, ConnectorError, PollContext, PollOutcome};
use tidemark_model::{Activity, EventCategory, EventSubtype, EventType};

/// Normalizes upstream event number `index` into a unified activity (as a connector would:
/// target, actor, session, raw record).
pub fn activity(account: i64, index: u64, base: DateTime<Utc>) -> Activity {
    let (event_type, subtype) = match index % 10 {
        0..=5 => (EventType::Add, EventSubtype::Unknown),
        6 | 7 => (EventType::Update, EventSubtype::Unknown),
        8 => (EventType::Update, EventSubtype::Rename),
        _ => (EventType::Delete, EventSubtype::Unknown),
    };
    let id = format!("evt-{index:012}");
    let mut activity = Activity::new(
        id.clone(),
        account,
        EventCategory::Storage,
        event_type,
        subtype,
    );
    let timestamp = base + chrono::Duration::milliseconds(index as i64);
    let user = index % 97;
    let folder = index % 113;
    activity.timestamp = Some(timestamp);
    activity.target = Some(json!({
        "id": format!("F{index:016x}"), "raw_id": format!("file:{index}"),
        "name": format!("quarterly-report-{index}.docx"), "type": "file", "api": "storage",
        "path": format!("/Shared/Finance/{folder}/quarterly-report-{index}.docx"),
        "size": 10_000 + index % 5000,
        "mime_type": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "created": "2026-01-01T00:00:00.000000Z", "modified": tidemark_model::time::format(&timestamp),
        "parent": {"id": format!("D{folder:08x}"), "name": format!("{folder}")},
        "owner": {"api": "team", "type": "user", "id": format!("u{user}"), "email": format!("user{user}@example.com"), "id_type": "login"},
        "ancestors": null, "account": account, "downloadable": true,
    }));
    activity.actor = Some(json!({
        "id": format!("u{user}"), "type": "user", "api": "team", "id_type": "login",
        "email": format!("user{user}@example.com"), "name": format!("User {user}"),
    }));
    activity.session = Some(
        json!({"type": "login", "ip": format!("10.0.{}.{}", user % 256, folder % 256), "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"}),
    );
    activity.raw = Some(
        json!({"object": {"event_id": id, "event_type": "ITEM_UPLOAD", "created_at": tidemark_model::time::format(&timestamp), "source": {"item_id": index}}}),
    );
    activity
}

/// Upstream event `index` as the store keeps it, for the bare-insert baselines: its activity
/// id, timestamp (epoch microseconds) and JSON.
pub fn stored_row(index: u64, base: DateTime<Utc>) -> (String, i64, String) {
    let activity = activity(1, index, base);
    let occurred = activity
        .timestamp
        .map(|t| t.timestamp_micros())
        .unwrap_or_default();
    let body = serde_json::to_string(&activity).unwrap_or_default();
    (activity.id, occurred, body)
}

/// Pages through the synthetic upstream events that are `available`, `page` per poll; the
/// checkpoint is the number of events already returned.
pub struct SyntheticConnector {
    /// How many upstream events exist so far (the benchmark raises it round by round).
    pub available: AtomicU64,
    page: u64,
    base: DateTime<Utc>,
}

impl SyntheticConnector {
    /// An upstream with nothing available yet.
    pub fn new(page: u64, base: DateTime<Utc>) -> Self {
        SyntheticConnector {
            available: AtomicU64::new(0),
            page,
            base,
        }
    }
}

#[async_trait]
impl Connector for SyntheticConnector {
    fn service(&self) -> &'static str {
        "synthetic"
    }

    fn default_poll_interval(&self) -> Duration {
        Duration::from_secs(3600)
    }

    async fn validate(&self) -> Result<(), ConnectorError> {
        Ok(())
    }

    async fn poll(
        &self,
        context: &PollContext,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<PollOutcome, ConnectorError> {
        let offset: u64 = match checkpoint {
            Some(Checkpoint(text)) => text.parse().map_err(|_| {
                ConnectorError::CorruptCheckpoint(format!("`{text}` is not an offset"))
            })?,
            None => 0,
        };
        let available = self.available.load(Ordering::SeqCst);
        let end = (offset + self.page).min(available).max(offset);
        let account = context.account.id;
        let activities = (offset..end)
            .map(|index| activity(account, index, self.base))
            .collect();
        Ok(PollOutcome {
            activities,
            checkpoint: Checkpoint(end.to_string()),
            more: end < available,
        })
    }
}

//! The Onna simulator's data: activity-log and audit-log records as Elasticsearch hits, each
//! with the instant it becomes visible.

use std::collections::HashSet;
use std::time::Instant;

use chrono::{DateTime, SecondsFormat};
use rand::Rng;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::{ActivityLogSpec, AuditLogSpec};

/// Elasticsearch's default `index.max_result_window`.
pub const DEFAULT_MAX_HITS: usize = 10_000;

/// The user agent of records scripted without one.
pub const DEFAULT_USER_AGENT: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_5) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/75.0.3770.100 Safari/537.36";

/// One log record.
#[derive(Debug, Clone)]
pub struct Hit {
    pub id: String,
    /// `sort[0]`: epoch milliseconds (whole seconds for the activity log).
    pub millis: i64,
    pub source: Value,
    visible_at: Instant,
}

impl Hit {
    pub fn is_visible(&self, now: Instant) -> bool {
        self.visible_at <= now
    }

    /// The hit as Elasticsearch returns it.
    pub fn to_json(&self) -> Value {
        let date = self
            .source
            .get("date")
            .and_then(Value::as_str)
            .unwrap_or("");
        json!({
            "_index": format!("user-activity-account-{date}"),
            "_type": "doc",
            "_id": self.id,
            "_score": null,
            "_source": self.source,
            "sort": [self.millis],
        })
    }

    /// A `var` path's value in `_source`, `@timestamp` as epoch milliseconds and the
    /// Elasticsearch `.keyword` suffix ignored.
    pub fn resolve(&self, path: &str) -> Value {
        let path = path.strip_suffix(".keyword").unwrap_or(path);
        if path == "@timestamp" {
            return json!(self.millis);
        }
        if path.is_empty() {
            return self.source.clone();
        }
        path.split('.')
            .try_fold(&self.source, |value, key| match value {
                Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
                other => other.get(key),
            })
            .cloned()
            .unwrap_or(Value::Null)
    }
}

/// Everything the Onna simulator knows.
#[derive(Debug)]
pub struct OnnaData {
    pub account: String,
    pub token: String,
    pub max_hits: usize,
    pub activity: Vec<Hit>,
    pub audit: Vec<Hit>,
    ids: HashSet<String>,
}

impl OnnaData {
    pub fn new(account: String) -> OnnaData {
        OnnaData {
            account,
            token: "sim-token".into(),
            max_hits: DEFAULT_MAX_HITS,
            activity: Vec::new(),
            audit: Vec::new(),
            ids: HashSet::new(),
        }
    }

    /// A fresh Elasticsearch-style id: 20 characters of the URL-safe base64 alphabet.
    fn new_id(&mut self) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut rng = rand::rng();
        loop {
            let id: String = (0..20)
                .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
                .collect();
            if self.ids.insert(id.clone()) {
                return id;
            }
        }
    }

    pub fn add_activity(&mut self, spec: ActivityLogSpec, visible_at: Instant) -> String {
        let id = self.new_id();
        let second = spec.at.timestamp();
        let millis = second.saturating_mul(1000);
        let origin = format!("https://enterprise.onna.com/{}", self.account);
        let mut payload = Map::new();
        payload.insert(
            "session-timestamp".into(),
            json!(spec.at.timestamp_millis()),
        );
        if let Some(route) = &spec.route {
            payload.insert("route".into(), json!(route));
        }
        payload.insert("element".into(), json!(spec.action));
        payload.insert("user_hash".into(), json!(user_hash(&spec.user)));
        payload.insert("user".into(), json!(spec.user));
        payload.insert(
            "user_agent".into(),
            json!(spec.user_agent.as_deref().unwrap_or(DEFAULT_USER_AGENT)),
        );
        payload.insert("origin".into(), json!(origin));
        payload.insert(
            "session-id".into(),
            json!(spec.session_id.clone().unwrap_or_else(random_session_id)),
        );
        payload.insert("account".into(), json!(self.account));
        let source = json!({
            "type": "log",
            "action": spec.action,
            "payload": payload,
            "date": spec.at.format("%Y-%m-%d").to_string(),
            "@timestamp": millis.to_string(),
        });
        self.activity.push(Hit {
            id: id.clone(),
            millis,
            source,
            visible_at,
        });
        id
    }

    pub fn add_audit(&mut self, spec: AuditLogSpec, visible_at: Instant) -> String {
        let id = self.new_id();
        // Microsecond precision on the wire; filters and `sort` use whole milliseconds.
        let at = DateTime::from_timestamp_micros(spec.at.timestamp_micros()).unwrap_or(spec.at);
        let timestamp = at.to_rfc3339_opts(SecondsFormat::Micros, false);
        let source = json!({
            "type": "log",
            "date": at.format("%Y-%m-%d").to_string(),
            "@timestamp": timestamp,
            "action": spec.action,
            "message": spec.message,
            "payload": {
                "account": self.account,
                "ip": spec.ip,
                "method": spec.method,
                "request_url": spec.request_url,
                "user": spec.user,
                "user_agent": DEFAULT_USER_AGENT,
                "user_name": spec.user_name,
                "code": spec.code,
                "log_type": spec.log_type,
                "category": spec.category,
                "action": spec.action,
                "message": spec.message,
            },
        });
        self.audit.push(Hit {
            id: id.clone(),
            millis: at.timestamp_millis(),
            source,
            visible_at,
        });
        id
    }
}

fn user_hash(user: &str) -> String {
    let digest = Sha256::digest(user.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("[sha256]{hex}")
}

fn random_session_id() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn test_activity_record_matches_the_seed_shape() {
        let mut data = OnnaData::new("ACMECORP".into());
        let at = Utc
            .timestamp_millis_opt(1_562_857_496_133)
            .single()
            .expect("valid");
        let id = data.add_activity(
            ActivityLogSpec::new("nav-menu-opened", "acmeuser@acmecorp.com", at)
                .with_route("/dashboard/workspace/list"),
            Instant::now(),
        );
        assert_eq!(id.len(), 20);
        let hit = data.activity[0].to_json();
        assert_eq!(hit["_index"], "user-activity-account-2019-07-11");
        assert_eq!(hit["_source"]["@timestamp"], "1562857496000");
        assert_eq!(hit["sort"], json!([1_562_857_496_000_i64]));
        assert_eq!(hit["_source"]["date"], "2019-07-11");
        assert_eq!(hit["_score"], Value::Null);
        let payload = &hit["_source"]["payload"];
        assert_eq!(payload["session-timestamp"], 1_562_857_496_133_i64);
        assert_eq!(payload["account"], "ACMECORP");
        assert!(payload["user_hash"]
            .as_str()
            .is_some_and(|h| h.starts_with("[sha256]")));
    }

    #[test]
    fn test_audit_timestamp_has_microseconds_and_colon_offset() {
        let mut data = OnnaData::new("ACMECORP".into());
        let at = Utc
            .timestamp_micros(1_562_857_210_104_770)
            .single()
            .expect("valid");
        data.add_audit(AuditLogSpec::new("add", "Added source", at), Instant::now());
        let hit = &data.audit[0];
        assert_eq!(hit.source["@timestamp"], "2019-07-11T15:00:10.104770+00:00");
        assert_eq!(hit.millis, 1_562_857_210_104);
        assert_eq!(hit.resolve("@timestamp"), json!(1_562_857_210_104_i64));
        assert_eq!(hit.resolve("payload.action.keyword"), json!("add"));
    }
}

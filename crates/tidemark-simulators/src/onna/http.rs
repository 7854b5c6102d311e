//! The Onna simulator's HTTP side: authentication, `@activityLog`, `@auditLog` and the control
//! routes.

use std::cmp::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::jsonlogic::{self, Expr};
use super::store::{Hit, OnnaData};
use super::{ActivityLogSpec, AuditLogSpec, OnnaShared};
use crate::server::{
    control_body, lock, Common, ControlTime, Incoming, OneOrMany, Reply, SimRuntime, Upstream,
};

/// `size` when an `@auditLog` request has none (Elasticsearch's default).
const DEFAULT_AUDIT_SIZE: usize = 10;

impl Upstream for OnnaShared {
    fn runtime(&self) -> &SimRuntime {
        &self.runtime
    }

    fn common(&self) -> &std::sync::Mutex<Common> {
        &self.common
    }

    fn authorized(&self, request: &Incoming) -> bool {
        request
            .authorization("Bearer")
            .is_some_and(|token| token == lock(&self.data).token)
    }

    fn unauthorized(&self, _request: &Incoming, _revoked: bool) -> Reply {
        let account = lock(&self.data).account.clone();
        Reply::new(
            StatusCode::UNAUTHORIZED,
            json!({
                "reason": "You are not authorized to access content",
                "content": format!("<Container at /{account}/{account}>"),
                "auths": ["Anonymous User"],
            }),
        )
    }

    fn error(&self, status: StatusCode, message: &str) -> Reply {
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            let eid: String = rand::random::<[u8; 16]>()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            return Reply::new(
                status,
                json!({
                    "message": format!("Error on execution of view {eid}"),
                    "reason": "unknownError",
                    "details": "Unknown error",
                    "eid": eid,
                }),
            );
        }
        let error_type = match status {
            StatusCode::BAD_REQUEST => "InvalidRequest".to_string(),
            other => other
                .canonical_reason()
                .unwrap_or("Error")
                .replace([' ', '-'], ""),
        };
        Reply::new(
            status,
            json!({ "error": { "type": error_type, "message": message } }),
        )
    }

    fn answer(&self, request: &Incoming) -> Reply {
        let account = lock(&self.data).account.clone();
        let base = format!("/{account}/{account}/");
        let view = request
            .path
            .strip_prefix(&base)
            .map(|view| view.trim_end_matches('/'));
        match (&request.method, view) {
            (&Method::GET, Some("@activityLog")) => self.activity_log(request),
            (&Method::POST, Some("@auditLog")) => self.audit_log(request),
            _ => Reply::new(
                StatusCode::NOT_FOUND,
                json!({ "reason": "Resource not found" }),
            ),
        }
    }

    fn strip_required_fields(&self, request: &Incoming, body: &mut Value) {
        let audit = request.path.ends_with("@auditLog");
        let hits = if audit {
            body.get_mut("items").and_then(Value::as_array_mut)
        } else {
            body.as_array_mut()
        };
        let Some(hits) = hits else {
            return;
        };
        if hits.is_empty() {
            hits.push(placeholder_hit(audit));
        }
        for hit in hits.iter_mut() {
            if let Value::Object(fields) = hit {
                fields.remove("_id");
                fields.remove("sort");
            }
        }
    }

    fn control(this: &Arc<Self>, request: &Incoming) -> Option<Reply> {
        let path = request.path.trim_end_matches('/');
        let reply = match (&request.method, path) {
            (&Method::POST, "/_sim/activity") => this.control_add_activity(request),
            (&Method::POST, "/_sim/audit") => this.control_add_audit(request),
            (&Method::POST, "/_sim/max_hits") => match control_body::<MaxHitsBody>(request) {
                Ok(MaxHitsBody { max_hits }) if max_hits >= 1 => {
                    lock(&this.data).max_hits = max_hits;
                    Reply::ok(json!({ "max_hits": max_hits }))
                }
                Ok(_) => {
                    Reply::control_error(StatusCode::BAD_REQUEST, "max_hits must be at least 1")
                }
                Err(reply) => reply,
            },
            (&Method::POST, "/_sim/credentials") => match control_body::<TokenBody>(request) {
                Ok(TokenBody { token }) => {
                    lock(&this.data).token = token;
                    Reply::ok(json!({ "ok": true }))
                }
                Err(reply) => reply,
            },
            _ => return None,
        };
        Some(reply)
    }

    fn generate(this: &Arc<Self>, rate_per_sec: f64) {
        super::generator::spawn(this, rate_per_sec);
    }

    fn describe(&self) -> Value {
        let data = lock(&self.data);
        json!({
            "service": "onna",
            "base_url": format!("{}/{}/{}", self.runtime.origin(), data.account, data.account),
            "account": data.account,
            "activity_records": data.activity.len(),
            "audit_records": data.audit.len(),
            "max_hits": data.max_hits,
        })
    }
}

fn placeholder_hit(audit: bool) -> Value {
    let mut scratch = OnnaData::new(super::DEFAULT_ACCOUNT.into());
    let now = chrono::Utc::now();
    if audit {
        scratch.add_audit(AuditLogSpec::new("add", "Placeholder", now), Instant::now());
        scratch.audit.first().map_or(Value::Null, Hit::to_json)
    } else {
        scratch.add_activity(
            ActivityLogSpec::new("login", "acmeuser@acmecorp.com", now),
            Instant::now(),
        );
        scratch.activity.first().map_or(Value::Null, Hit::to_json)
    }
}

/// The parsed `@auditLog` body.
struct AuditQuery {
    size: usize,
    sort_field: String,
    descending: bool,
    filter: Option<Expr>,
}

impl AuditQuery {
    fn parse(body: &[u8], max_hits: usize) -> Result<AuditQuery, (&'static str, String)> {
        let invalid = |message: String| ("InvalidRequest", message);
        let value: Value = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else {
            serde_json::from_slice(body).map_err(|error| {
                (
                    "DeserializationError",
                    format!("the request body is not valid JSON: {error}"),
                )
            })?
        };
        let Value::Object(fields) = value else {
            return Err(invalid("the request body must be a JSON object".into()));
        };
        let mut query = AuditQuery {
            size: DEFAULT_AUDIT_SIZE.min(max_hits),
            sort_field: "@timestamp".into(),
            descending: true,
            filter: None,
        };
        for (key, value) in &fields {
            match key.as_str() {
                "size" => {
                    query.size = match value.as_u64() {
                        Some(size) if size >= 1 => {
                            usize::try_from(size).unwrap_or(usize::MAX).min(max_hits)
                        }
                        _ => {
                            return Err(invalid(format!(
                                "size must be a positive integer, got {value}"
                            )))
                        }
                    }
                }
                "sort" => query.parse_sort(value).map_err(invalid)?,
                "advanced" => match value {
                    Value::Object(_) => {
                        query.filter = Some(jsonlogic::compile(value).map_err(|error| {
                            ("InvalidQuery", format!("invalid advanced filter: {error}"))
                        })?);
                    }
                    Value::Null => {}
                    other => {
                        return Err(invalid(format!(
                            "advanced must be a JSON-logic object, got {other}"
                        )))
                    }
                },
                other => {
                    return Err(invalid(format!(
                        "unknown key '{other}' (supported: size, sort, advanced)"
                    )))
                }
            }
        }
        Ok(query)
    }

    fn parse_sort(&mut self, value: &Value) -> Result<(), String> {
        let Value::Object(sort) = value else {
            return Err(format!(
                "sort must be an object like {{\"field\": \"@timestamp\", \"direction\": \"desc\"}}, got {value}"
            ));
        };
        for (key, value) in sort {
            match (key.as_str(), value) {
                ("field", Value::String(field)) if !field.is_empty() => {
                    self.sort_field = field.clone();
                }
                ("direction", Value::String(direction)) => {
                    self.descending = match direction.to_ascii_lowercase().as_str() {
                        "asc" => false,
                        "desc" => true,
                        _ => {
                            return Err(format!(
                                "sort direction must be asc or desc, got '{direction}'"
                            ))
                        }
                    }
                }
                (key, value) => return Err(format!("invalid sort {key}: {value}")),
            }
        }
        Ok(())
    }

    fn matches(&self, hit: &Hit) -> bool {
        self.filter.as_ref().is_none_or(|filter| {
            jsonlogic::truthy(&jsonlogic::evaluate(filter, &|path| hit.resolve(path)))
        })
    }

    fn order(&self, a: &Hit, b: &Hit) -> Ordering {
        let by_field = if self.sort_field == "@timestamp" {
            a.millis.cmp(&b.millis)
        } else {
            match (a.resolve(&self.sort_field), b.resolve(&self.sort_field)) {
                (Value::Null, Value::Null) => Ordering::Equal,
                (Value::Null, _) => Ordering::Greater,
                (_, Value::Null) => Ordering::Less,
                (left, right) => jsonlogic::compare(&left, &right).unwrap_or(Ordering::Equal),
            }
        };
        let ascending = by_field.then_with(|| a.id.cmp(&b.id));
        if self.descending {
            ascending.reverse()
        } else {
            ascending
        }
    }
}

/// An `epoch_from` / `epoch_to` value: whole Unix seconds.
fn parse_epoch(name: &str, value: &str) -> Result<i64, String> {
    value
        .trim()
        .parse::<i64>()
        .map_err(|_| format!("{name} must be an integer number of Unix seconds, got '{value}'"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaxHitsBody {
    max_hits: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivityBody {
    action: String,
    user: String,
    at: Option<ControlTime>,
    route: Option<String>,
    session_id: Option<String>,
    user_agent: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditBody {
    action: String,
    message: String,
    at: Option<ControlTime>,
    category: Option<String>,
    log_type: Option<String>,
    code: Option<String>,
    user: Option<String>,
    user_name: Option<String>,
    ip: Option<String>,
    method: Option<String>,
    request_url: Option<String>,
}

impl OnnaShared {
    fn activity_log(&self, request: &Incoming) -> Reply {
        let mut from = None;
        let mut to = None;
        for (name, value) in request.query_pairs() {
            let bound = match name.as_str() {
                "epoch_from" => &mut from,
                "epoch_to" => &mut to,
                _ => continue,
            };
            match parse_epoch(&name, &value) {
                Ok(seconds) => *bound = Some(seconds),
                Err(message) => return self.error(StatusCode::BAD_REQUEST, &message),
            }
        }
        let now = Instant::now();
        let data = lock(&self.data);
        let mut hits: Vec<&Hit> = data
            .activity
            .iter()
            .filter(|hit| {
                let second = hit.millis.div_euclid(1000);
                hit.is_visible(now)
                    && from.is_none_or(|from| second >= from)
                    && to.is_none_or(|to| second <= to)
            })
            .collect();
        hits.sort_by(|a, b| b.millis.cmp(&a.millis).then_with(|| b.id.cmp(&a.id)));
        hits.truncate(data.max_hits);
        Reply::ok(Value::Array(hits.into_iter().map(Hit::to_json).collect()))
    }

    fn audit_log(&self, request: &Incoming) -> Reply {
        let data = lock(&self.data);
        let query = match AuditQuery::parse(&request.body, data.max_hits) {
            Ok(query) => query,
            Err((error_type, message)) => {
                return Reply::new(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": { "type": error_type, "message": message } }),
                )
            }
        };
        let now = Instant::now();
        let mut hits: Vec<&Hit> = data
            .audit
            .iter()
            .filter(|hit| hit.is_visible(now) && query.matches(hit))
            .collect();
        hits.sort_by(|a, b| query.order(a, b));
        hits.truncate(query.size);
        let mut body = Map::new();
        body.insert(
            "items".into(),
            Value::Array(hits.into_iter().map(Hit::to_json).collect()),
        );
        Reply::ok(Value::Object(body))
    }

    fn control_add_activity(&self, request: &Incoming) -> Reply {
        let bodies = match control_body::<OneOrMany<ActivityBody>>(request) {
            Ok(bodies) => bodies,
            Err(reply) => return reply,
        };
        let single = matches!(bodies, OneOrMany::One(_));
        let mut specs = Vec::new();
        for body in bodies.into_vec() {
            let at = match ControlTime::resolve(body.at.as_ref()) {
                Ok(at) => at,
                Err(reply) => return reply,
            };
            specs.push(ActivityLogSpec {
                action: body.action,
                user: body.user,
                at,
                route: body.route,
                session_id: body.session_id,
                user_agent: body.user_agent,
            });
        }
        let ids: Vec<String> = specs.into_iter().map(|s| self.add_activity(s)).collect();
        id_reply(single, ids)
    }

    fn control_add_audit(&self, request: &Incoming) -> Reply {
        let bodies = match control_body::<OneOrMany<AuditBody>>(request) {
            Ok(bodies) => bodies,
            Err(reply) => return reply,
        };
        let single = matches!(bodies, OneOrMany::One(_));
        let mut specs = Vec::new();
        for body in bodies.into_vec() {
            let at = match ControlTime::resolve(body.at.as_ref()) {
                Ok(at) => at,
                Err(reply) => return reply,
            };
            let mut spec = AuditLogSpec::new(body.action, body.message, at);
            let fields = [
                (&mut spec.category, body.category),
                (&mut spec.log_type, body.log_type),
                (&mut spec.code, body.code),
                (&mut spec.user, body.user),
                (&mut spec.user_name, body.user_name),
                (&mut spec.ip, body.ip),
                (&mut spec.method, body.method),
                (&mut spec.request_url, body.request_url),
            ];
            for (field, given) in fields {
                if let Some(given) = given {
                    *field = given;
                }
            }
            specs.push(spec);
        }
        let ids: Vec<String> = specs.into_iter().map(|s| self.add_audit(s)).collect();
        id_reply(single, ids)
    }
}

fn id_reply(single: bool, ids: Vec<String>) -> Reply {
    match (single, ids.as_slice()) {
        (true, [id]) => Reply::ok(json!({ "_id": id })),
        _ => Reply::ok(json!({ "ids": ids })),
    }
}

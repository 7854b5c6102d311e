//! The Jive simulator's HTTP side: authentication, the data endpoints and the control routes.

use std::sync::Arc;
use std::time::Instant;

use axum::http::{Method, StatusCode};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};

use super::wire::{self, ContentSort, ContentsQuery, DeletedQuery, DeletedSort, API_PREFIX};
use super::{ContentSpec, JiveShared, Person};
use crate::server::{
    control_body, lock, Common, ControlTime, Incoming, OneOrMany, Reply, SimRuntime, Upstream,
};

impl Upstream for JiveShared {
    fn runtime(&self) -> &SimRuntime {
        &self.runtime
    }

    fn common(&self) -> &std::sync::Mutex<Common> {
        &self.common
    }

    fn content_type(&self) -> &'static str {
        "application/json;charset=UTF-8"
    }

    fn authorized(&self, request: &Incoming) -> bool {
        let data = lock(&self.data);
        if let Some(token) = request.authorization("Bearer") {
            return token == data.token;
        }
        let Some(encoded) = request.authorization("Basic") else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            return false;
        };
        let decoded = String::from_utf8_lossy(&decoded);
        decoded.split_once(':').is_some_and(|(user, password)| {
            user == data.basic_user && password == data.basic_password
        })
    }

    fn unauthorized(&self, _request: &Incoming, revoked: bool) -> Reply {
        let message = if revoked {
            "The credentials of this request have been revoked"
        } else {
            "Authentication required: send valid HTTP Basic or Bearer credentials"
        };
        self.error(StatusCode::UNAUTHORIZED, message)
    }

    fn error(&self, status: StatusCode, message: &str) -> Reply {
        Reply::new(status, wire::error_json(status.as_u16(), message))
    }

    fn answer(&self, request: &Incoming) -> Reply {
        let Some(path) = request.path.strip_prefix(API_PREFIX) else {
            return self.not_found(request);
        };
        let path = path.trim_end_matches('/');
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        let known = matches!(
            segments.as_slice(),
            ["contents"] | ["contents", _] | ["deletedObjects", "contents"] | ["people", "@me"]
        );
        if !known {
            return self.not_found(request);
        }
        if request.method != Method::GET {
            return self.error(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!(
                    "Method {} is not allowed on {}",
                    request.method, request.path
                ),
            );
        }
        match segments.as_slice() {
            ["contents"] => self.list_contents(request),
            ["contents", id] => self.get_content(request, id),
            ["deletedObjects", "contents"] => self.list_deleted(request),
            _ => Reply::ok(wire::person_json(&request.origin, &Person::default())),
        }
    }

    fn encode_body(&self, json: String) -> String {
        format!("{}{json}", wire::PREFIX)
    }

    fn strip_required_fields(&self, request: &Incoming, body: &mut Value) {
        let deleted = request.path.contains("/deletedObjects/");
        let required: &[&str] = if deleted {
            &["id", "eventDate"]
        } else {
            &["id", "updated"]
        };
        let strip = |item: &mut Value| {
            if let Value::Object(fields) = item {
                for field in required {
                    fields.remove(*field);
                }
            }
        };
        match body.get_mut("list").and_then(Value::as_array_mut) {
            Some(list) => {
                if list.is_empty() {
                    list.push(self.placeholder_item(request, deleted));
                }
                list.iter_mut().for_each(strip);
            }
            None => strip(body),
        }
    }

    fn control(this: &Arc<Self>, request: &Incoming) -> Option<Reply> {
        let path = request.path.trim_end_matches('/');
        let segments: Vec<&str> = path.split('/').skip(2).collect();
        let reply = match (&request.method, segments.as_slice()) {
            (&Method::POST, ["contents"]) => this.control_create(request),
            (&Method::POST, ["contents", id, "modify"]) => this.control_modify(request, id),
            (&Method::POST, ["contents", id, "delete"]) => this.control_delete(request, id),
            (&Method::POST, ["max_count"]) => match control_body::<MaxCountBody>(request) {
                Ok(MaxCountBody { max_count }) if max_count >= 1 => {
                    lock(&this.data).max_count = max_count;
                    Reply::ok(json!({ "max_count": max_count }))
                }
                Ok(_) => {
                    Reply::control_error(StatusCode::BAD_REQUEST, "max_count must be at least 1")
                }
                Err(reply) => reply,
            },
            (&Method::POST, ["credentials"]) => match control_body::<CredentialsBody>(request) {
                Ok(body) => {
                    let mut data = lock(&this.data);
                    if let Some(token) = body.token {
                        data.token = token;
                    }
                    if let Some(username) = body.username {
                        data.basic_user = username;
                    }
                    if let Some(password) = body.password {
                        data.basic_password = password;
                    }
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
            "service": "jive",
            "base_url": format!("{}{API_PREFIX}", self.runtime.origin()),
            "contents": data.live_count(),
            "deleted_objects": data.deleted.len(),
            "max_count": data.max_count,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MaxCountBody {
    max_count: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsBody {
    token: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContentBody {
    subject: String,
    #[serde(rename = "type", alias = "content_type")]
    content_type: Option<String>,
    author: Option<Person>,
    at: Option<ControlTime>,
    place: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AtBody {
    at: Option<ControlTime>,
}

impl JiveShared {
    fn not_found(&self, request: &Incoming) -> Reply {
        self.error(
            StatusCode::NOT_FOUND,
            &format!("No resource found at {}", request.path),
        )
    }

    fn list_contents(&self, request: &Incoming) -> Reply {
        let data = lock(&self.data);
        let query = match ContentsQuery::parse(&request.query_pairs(), data.max_count) {
            Ok(query) => query,
            Err(message) => return self.error(StatusCode::BAD_REQUEST, &message),
        };
        let now = Instant::now();
        let mut rows: Vec<_> = data
            .contents
            .values()
            .filter_map(|record| record.visible_updated(now).map(|updated| (record, updated)))
            .filter(|(record, updated)| query.matches(record, *updated))
            .collect();
        rows.sort_by(|(a, a_updated), (b, b_updated)| match query.sort {
            ContentSort::LatestActivityAsc => a_updated.cmp(b_updated).then(a.id.cmp(&b.id)),
            ContentSort::LatestActivityDesc => b_updated.cmp(a_updated).then(b.id.cmp(&a.id)),
            ContentSort::DateCreatedAsc => a.published.cmp(&b.published).then(a.id.cmp(&b.id)),
            ContentSort::DateCreatedDesc => b.published.cmp(&a.published).then(b.id.cmp(&a.id)),
            ContentSort::TitleAsc => a.subject.cmp(&b.subject).then(a.id.cmp(&b.id)),
        });
        let page = query.common.page;
        let more = rows.len() > page.start_index.saturating_add(page.count);
        let items = rows
            .iter()
            .skip(page.start_index)
            .take(page.count)
            .map(|(record, updated)| wire::content_json(&request.origin, record, *updated))
            .collect();
        let endpoint = format!("{}{API_PREFIX}/contents", request.origin);
        Reply::ok(wire::list_envelope(
            items,
            &query.common,
            query.sort.as_str(),
            more,
            &endpoint,
        ))
    }

    fn get_content(&self, request: &Incoming, id: &str) -> Reply {
        let data = lock(&self.data);
        let found = id.parse::<u64>().ok().and_then(|id| {
            let record = data.contents.get(&id)?;
            let updated = record.visible_updated(Instant::now())?;
            Some(wire::content_json(&request.origin, record, updated))
        });
        match found {
            Some(content) => Reply::ok(content),
            None => self.error(
                StatusCode::NOT_FOUND,
                &format!("No content found with id {id}"),
            ),
        }
    }

    fn list_deleted(&self, request: &Incoming) -> Reply {
        let data = lock(&self.data);
        let query = match DeletedQuery::parse(&request.query_pairs(), data.max_count) {
            Ok(query) => query,
            Err(message) => return self.error(StatusCode::BAD_REQUEST, &message),
        };
        let now = Instant::now();
        let mut rows: Vec<_> = data
            .deleted
            .iter()
            .filter(|record| record.is_visible(now) && query.matches(record))
            .collect();
        rows.sort_by(|a, b| match query.sort {
            DeletedSort::EventDateAsc => a.event_date.cmp(&b.event_date).then(a.seq.cmp(&b.seq)),
            DeletedSort::EventDateDesc => b.event_date.cmp(&a.event_date).then(b.seq.cmp(&a.seq)),
        });
        let page = query.common.page;
        let more = rows.len() > page.start_index.saturating_add(page.count);
        let items = rows
            .iter()
            .skip(page.start_index)
            .take(page.count)
            .map(|record| wire::deleted_json(&request.origin, record))
            .collect();
        let endpoint = format!("{}{API_PREFIX}/deletedObjects/contents", request.origin);
        Reply::ok(wire::list_envelope(
            items,
            &query.common,
            query.sort.as_str(),
            more,
            &endpoint,
        ))
    }

    /// An item to strip for [`crate::Fault::MissingField`] when the real answer had none.
    fn placeholder_item(&self, request: &Incoming, deleted: bool) -> Value {
        let mut scratch = super::store::JiveData::default();
        let now = Instant::now();
        let id = scratch.create(ContentSpec::new("Placeholder", chrono::Utc::now()), now);
        if deleted {
            let _ = scratch.delete(&id.to_string(), chrono::Utc::now(), now);
            return scratch.deleted.first().map_or(Value::Null, |record| {
                wire::deleted_json(&request.origin, record)
            });
        }
        scratch.contents.get(&id).map_or(Value::Null, |record| {
            wire::content_json(&request.origin, record, record.published)
        })
    }

    fn control_create(&self, request: &Incoming) -> Reply {
        let bodies = match control_body::<OneOrMany<ContentBody>>(request) {
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
            let mut spec = ContentSpec::new(body.subject, at);
            if let Some(content_type) = body.content_type {
                spec.content_type = content_type;
            }
            if let Some(author) = body.author {
                spec.author = author;
            }
            spec.place = body.place;
            specs.push(spec);
        }
        let ids: Vec<String> = specs
            .into_iter()
            .map(|spec| self.create_content(spec))
            .collect();
        match (single, ids.as_slice()) {
            (true, [id]) => Reply::ok(json!({ "id": id })),
            _ => Reply::ok(json!({ "ids": ids })),
        }
    }

    fn control_modify(&self, request: &Incoming, id: &str) -> Reply {
        let at = match control_body::<AtBody>(request)
            .and_then(|body| ControlTime::resolve(body.at.as_ref()))
        {
            Ok(at) => at,
            Err(reply) => return reply,
        };
        if self.modify_content(id, at) {
            Reply::ok(json!({ "id": id, "updated": wire::format_date(at) }))
        } else {
            Reply::control_error(
                StatusCode::NOT_FOUND,
                format!("no live content with id {id}"),
            )
        }
    }

    fn control_delete(&self, request: &Incoming, id: &str) -> Reply {
        let at = match control_body::<AtBody>(request)
            .and_then(|body| ControlTime::resolve(body.at.as_ref()))
        {
            Ok(at) => at,
            Err(reply) => return reply,
        };
        match self.delete_content(id, at) {
            Some(uuid) => Reply::ok(json!({ "id": id, "deleted_object_id": uuid })),
            None => Reply::control_error(
                StatusCode::NOT_FOUND,
                format!("no live content with id {id}"),
            ),
        }
    }
}

//! The machinery every simulator shares: the axum server and its shutdown, the data-request
//! pipeline (record, fault, authenticate, answer, render), and the common control routes.
//!
//! A simulator plugs in by implementing [`Upstream`] on its shared state; everything that is the
//! same for every upstream lives here, so each simulator module only speaks its wire format.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{HeaderName, CONTENT_TYPE, HOST, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::faults::{Fault, RecordedRequest};

/// The largest request body a simulator reads.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The scripting methods every simulator handle has (credentials, faults, the request log,
/// lag), written once: `$handle` has a `shared` field whose `common` is a `Mutex<Common>`.
macro_rules! common_controls {
    () => {
        /// Makes every data request answer 401 until `restore_credentials`.
        pub fn revoke_credentials(&self) {
            $crate::server::lock(&self.shared.common).revoked = true;
        }

        /// Accepts the configured credentials again.
        pub fn restore_credentials(&self) {
            $crate::server::lock(&self.shared.common).revoked = false;
        }

        /// Queues a fault for a coming data request (first in, first out).
        pub fn push_fault(&self, fault: $crate::faults::Fault) {
            $crate::server::lock(&self.shared.common)
                .faults
                .push_back(fault);
        }

        /// Drops every queued fault.
        pub fn clear_faults(&self) {
            $crate::server::lock(&self.shared.common).faults.clear();
        }

        /// Every data request answered so far, in the order answered.
        pub fn requests(&self) -> Vec<$crate::faults::RecordedRequest> {
            $crate::server::lock(&self.shared.common).requests.clone()
        }

        /// Forgets the recorded requests.
        pub fn clear_requests(&self) {
            $crate::server::lock(&self.shared.common).requests.clear();
        }

        /// Items scripted from now on become visible `lag` after the scripting call (default
        /// zero).
        pub fn set_lag(&self, lag: std::time::Duration) {
            $crate::server::lock(&self.shared.common).lag = lag;
        }
    };
}
pub(crate) use common_controls;

/// Locks a mutex, ignoring poisoning: simulator state stays usable after a panicking test.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// State every simulator has besides its data: scripted faults, the request log, whether
/// credentials are revoked, and the lag applied to newly scripted items.
#[derive(Debug, Default)]
pub(crate) struct Common {
    pub faults: VecDeque<Fault>,
    pub requests: Vec<RecordedRequest>,
    pub revoked: bool,
    pub lag: Duration,
}

/// What a simulator's background work needs: the shutdown signal, the tokio runtime it was
/// started on, its address, and the slot of its random-activity generator.
pub(crate) struct SimRuntime {
    pub shutdown: watch::Receiver<bool>,
    pub tokio: tokio::runtime::Handle,
    pub addr: SocketAddr,
    pub generator: Mutex<Option<(f64, tokio::task::AbortHandle)>>,
}

impl SimRuntime {
    /// `http://HOST:PORT` for this server, with 127.0.0.1 standing in for an unspecified address.
    pub fn origin(&self) -> String {
        origin_of(self.addr)
    }
}

fn origin_of(addr: SocketAddr) -> String {
    let mut reachable = addr;
    if reachable.ip().is_unspecified() {
        reachable.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    format!("http://{reachable}")
}

/// Owned by the simulator handles only: dropping the last one, or calling
/// [`ServerGuard::shutdown`], stops the server and the generator.
pub(crate) struct ServerGuard {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
}

impl ServerGuard {
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn origin(&self) -> String {
        origin_of(self.addr)
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}

/// One request as a simulator handles it: everything read up front, so handlers are plain
/// synchronous functions over the simulator's state.
pub(crate) struct Incoming {
    pub at: DateTime<Utc>,
    pub method: Method,
    /// The percent-decoded path.
    pub path: String,
    /// The raw query string, without `?` (empty if none).
    pub raw_query: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Why the body could not be read, if it could not.
    pub body_error: Option<String>,
    /// `http://host:port` as the client addressed this server (for absolute links).
    pub origin: String,
}

impl Incoming {
    async fn read(request: Request, fallback_origin: String) -> Incoming {
        let (parts, body) = request.into_parts();
        let (body, body_error) = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
            Ok(bytes) => (bytes, None),
            Err(error) => (
                Bytes::new(),
                Some(format!("cannot read the request body: {error}")),
            ),
        };
        let origin = parts
            .headers
            .get(HOST)
            .and_then(|host| host.to_str().ok())
            .filter(|host| is_plain_host(host))
            .map_or(fallback_origin, |host| format!("http://{host}"));
        let path_and_query = parts.uri.path_and_query().map_or_else(
            || parts.uri.path().to_string(),
            |pq| pq.as_str().to_string(),
        );
        Incoming {
            at: Utc::now(),
            method: parts.method,
            path: percent_decode(parts.uri.path()),
            raw_query: parts.uri.query().unwrap_or_default().to_string(),
            path_and_query,
            headers: parts.headers,
            body,
            body_error,
            origin,
        }
    }

    /// The decoded query parameters, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.raw_query.as_bytes())
            .map(|(name, value)| (name.into_owned(), value.into_owned()))
            .collect()
    }

    /// The credentials of an `Authorization: <scheme> <credentials>` header, if the scheme is
    /// `scheme` (case-insensitive).
    pub fn authorization(&self, scheme: &str) -> Option<&str> {
        let header = self.headers.get(axum::http::header::AUTHORIZATION)?;
        let (given_scheme, credentials) = header.to_str().ok()?.trim().split_once(' ')?;
        given_scheme
            .eq_ignore_ascii_case(scheme)
            .then_some(credentials.trim())
    }

    fn is_control(&self) -> bool {
        self.path == "/_sim" || self.path.starts_with("/_sim/")
    }
}

/// Only host names, IPv4/IPv6 literals and ports go into generated links.
fn is_plain_host(host: &str) -> bool {
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
}

/// Decodes `%XX` escapes; an invalid escape is kept as it is.
pub(crate) fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if byte == b'%' {
            let hex = bytes.get(index + 1..index + 3).and_then(|pair| {
                std::str::from_utf8(pair)
                    .ok()
                    .and_then(|text| u8::from_str_radix(text, 16).ok())
            });
            if let Some(value) = hex {
                decoded.push(value);
                index += 3;
                continue;
            }
        }
        decoded.push(byte);
        index += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// An answer before rendering: status, JSON body, extra headers.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub headers: Vec<(HeaderName, String)>,
}

impl Reply {
    pub fn new(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            body,
            headers: Vec::new(),
        }
    }

    pub fn ok(body: Value) -> Reply {
        Reply::new(StatusCode::OK, body)
    }

    /// A control-API error: `{"error": message}`.
    pub fn control_error(status: StatusCode, message: impl Into<String>) -> Reply {
        Reply::new(status, json!({ "error": message.into() }))
    }
}

/// One upstream's wire format, implemented on the simulator's shared state.
pub(crate) trait Upstream: Send + Sync + Sized + 'static {
    /// The runtime pieces handed to the simulator when it started.
    fn runtime(&self) -> &SimRuntime;
    /// The shared faults, request log, credential state and lag.
    fn common(&self) -> &Mutex<Common>;
    /// The `Content-Type` of data responses.
    fn content_type(&self) -> &'static str {
        "application/json"
    }
    /// Whether the request carries credentials this upstream accepts (revocation is checked
    /// separately).
    fn authorized(&self, request: &Incoming) -> bool;
    /// The upstream's 401 answer.
    fn unauthorized(&self, request: &Incoming, revoked: bool) -> Reply;
    /// The upstream's error answer for `status` (used for faults and unreadable bodies).
    fn error(&self, status: StatusCode, message: &str) -> Reply;
    /// The answer to an authenticated data request.
    fn answer(&self, request: &Incoming) -> Reply;
    /// Turns a JSON text into the body sent on the wire (Jive adds its prefix).
    fn encode_body(&self, json: String) -> String {
        json
    }
    /// Removes fields the upstream always sends from each item of a successful body, adding a
    /// placeholder item when there is none ([`Fault::MissingField`]).
    fn strip_required_fields(&self, request: &Incoming, body: &mut Value);
    /// This simulator's own control routes; `None` falls through to the common ones.
    fn control(this: &Arc<Self>, request: &Incoming) -> Option<Reply>;
    /// Starts (or, with a rate of zero, stops) the random-activity generator.
    fn generate(this: &Arc<Self>, rate_per_sec: f64);
    /// What `GET /_sim` shows about this simulator's data.
    fn describe(&self) -> Value;
}

/// What [`start`] hands back: the shared state and the guard that keeps the server running.
pub(crate) struct Started<U> {
    pub shared: Arc<U>,
    pub server: Arc<ServerGuard>,
}

/// Binds `addr`, builds the simulator's state and serves it in a background task.
pub(crate) async fn start<U: Upstream>(
    addr: SocketAddr,
    build: impl FnOnce(SimRuntime) -> U,
) -> std::io::Result<Started<U>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let runtime = SimRuntime {
        shutdown: shutdown_rx.clone(),
        tokio: tokio::runtime::Handle::current(),
        addr: local_addr,
        generator: Mutex::new(None),
    };
    let shared = Arc::new(build(runtime));
    let app = Router::new()
        .fallback(handle::<U>)
        .with_state(Arc::clone(&shared));
    let mut server_shutdown = shutdown_rx;
    tokio::spawn(async move {
        let stopped = async move {
            // Resolves on `true` and also when every sender is gone.
            let _ = server_shutdown.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::warn!(%error, "simulator server stopped with an error");
        }
    });
    tracing::debug!(addr = %local_addr, "simulator listening");
    Ok(Started {
        shared,
        server: Arc::new(ServerGuard {
            addr: local_addr,
            shutdown: shutdown_tx,
        }),
    })
}

async fn handle<U: Upstream>(State(shared): State<Arc<U>>, request: Request) -> Response {
    let incoming = Incoming::read(request, shared.runtime().origin()).await;
    if incoming.is_control() {
        let reply = match &incoming.body_error {
            Some(error) => Reply::control_error(StatusCode::BAD_REQUEST, error.clone()),
            None => {
                U::control(&shared, &incoming).unwrap_or_else(|| common_control(&shared, &incoming))
            }
        };
        let body = serde_json::to_string(&reply.body).unwrap_or_else(|_| "{}".to_string());
        return render(reply.status, "application/json", body, &reply.headers);
    }
    answer_data_request(&shared, incoming).await
}

/// The data-request pipeline: take a fault, authenticate, answer, apply body faults, record.
async fn answer_data_request<U: Upstream>(shared: &Arc<U>, incoming: Incoming) -> Response {
    let fault = lock(shared.common()).faults.pop_front();
    let mut body_fault = None;
    let mut reply = match fault {
        Some(Fault::RateLimited { retry_after_secs }) => {
            let mut reply = shared.error(
                StatusCode::TOO_MANY_REQUESTS,
                &format!("Rate limit exceeded; retry after {retry_after_secs} seconds"),
            );
            reply
                .headers
                .push((RETRY_AFTER, retry_after_secs.to_string()));
            reply
        }
        Some(Fault::ServerError { status }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            shared.error(status, status.canonical_reason().unwrap_or("Server error"))
        }
        Some(Fault::Slow { delay }) => {
            tokio::time::sleep(delay).await;
            authenticated_answer(shared, &incoming)
        }
        Some(other) => {
            body_fault = Some(other);
            authenticated_answer(shared, &incoming)
        }
        None => authenticated_answer(shared, &incoming),
    };
    let succeeded = reply.status == StatusCode::OK;
    if succeeded && body_fault == Some(Fault::MissingField) {
        shared.strip_required_fields(&incoming, &mut reply.body);
    }
    let mut json = serde_json::to_string(&reply.body).unwrap_or_else(|_| "{}".to_string());
    if succeeded && body_fault == Some(Fault::MalformedJson) {
        json = truncate_json(&json);
    }
    let body = shared.encode_body(json);
    lock(shared.common()).requests.push(RecordedRequest {
        at: incoming.at,
        method: incoming.method.to_string(),
        path_and_query: incoming.path_and_query.clone(),
        body: String::from_utf8_lossy(&incoming.body).into_owned(),
        status: reply.status.as_u16(),
    });
    render(reply.status, shared.content_type(), body, &reply.headers)
}

fn authenticated_answer<U: Upstream>(shared: &Arc<U>, incoming: &Incoming) -> Reply {
    if let Some(error) = &incoming.body_error {
        return shared.error(StatusCode::BAD_REQUEST, error);
    }
    let revoked = lock(shared.common()).revoked;
    if revoked || !shared.authorized(incoming) {
        return shared.unauthorized(incoming, revoked);
    }
    shared.answer(incoming)
}

/// Cuts a JSON text in the middle so that no parser accepts it.
fn truncate_json(json: &str) -> String {
    let mut cut = json.len() / 2;
    while cut > 0 && !json.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut truncated = json[..cut.max(1).min(json.len())].to_string();
    if truncated.is_empty() || serde_json::from_str::<Value>(&truncated).is_ok() {
        truncated = format!("{truncated}{{\"");
    }
    truncated
}

fn render(
    status: StatusCode,
    content_type: &'static str,
    body: String,
    headers: &[(HeaderName, String)],
) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let response_headers = response.headers_mut();
    response_headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            response_headers.insert(name.clone(), value);
        }
    }
    response
}

/// Parses a control-API body; an empty body reads as `{}`.
pub(crate) fn control_body<T: DeserializeOwned>(request: &Incoming) -> Result<T, Reply> {
    let text = if request.body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        &request.body[..]
    };
    serde_json::from_slice(text).map_err(|error| {
        Reply::control_error(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {error}"),
        )
    })
}

/// One object or a list of objects, as several control routes accept.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany<T> {
    Many(Vec<T>),
    One(T),
}

impl<T> OneOrMany<T> {
    pub fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::Many(items) => items,
            OneOrMany::One(item) => vec![item],
        }
    }
}

/// A control-API time: an RFC 3339 / Jive-style string, or a number of epoch milliseconds.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub(crate) enum ControlTime {
    Millis(i64),
    Text(String),
}

impl ControlTime {
    pub fn resolve(value: Option<&ControlTime>) -> Result<DateTime<Utc>, Reply> {
        let bad = |what: &str| {
            Reply::control_error(
                StatusCode::BAD_REQUEST,
                format!("invalid time {what}: expected RFC 3339 text or epoch milliseconds"),
            )
        };
        match value {
            None => Ok(Utc::now()),
            Some(ControlTime::Millis(millis)) => {
                DateTime::from_timestamp_millis(*millis).ok_or_else(|| bad(&millis.to_string()))
            }
            Some(ControlTime::Text(text)) => {
                let normalized = match text.strip_suffix("+0000") {
                    Some(head) => format!("{head}Z"),
                    None => text.clone(),
                };
                DateTime::parse_from_rfc3339(&normalized)
                    .map(|time| time.with_timezone(&Utc))
                    .map_err(|_| bad(&format!("'{text}'")))
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LagBody {
    lag_ms: Option<u64>,
    lag_secs: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GenerateBody {
    rate_per_sec: f64,
}

/// The control routes every simulator has.
fn common_control<U: Upstream>(shared: &Arc<U>, request: &Incoming) -> Reply {
    let path = request.path.trim_end_matches('/');
    let common = shared.common();
    match (&request.method, path) {
        (&Method::GET, "/_sim") => {
            // One lock at a time: describe() takes the simulator's data lock.
            let mut description = shared.describe();
            let generator = lock(&shared.runtime().generator)
                .as_ref()
                .map(|(rate, _)| *rate);
            let state = lock(common);
            if let Value::Object(fields) = &mut description {
                fields.insert("pending_faults".into(), json!(state.faults.len()));
                fields.insert("recorded_requests".into(), json!(state.requests.len()));
                fields.insert("credentials_revoked".into(), json!(state.revoked));
                fields.insert(
                    "lag_ms".into(),
                    json!(u64::try_from(state.lag.as_millis()).unwrap_or(u64::MAX)),
                );
                fields.insert("generator_rate_per_sec".into(), json!(generator));
            }
            Reply::ok(description)
        }
        (&Method::POST, "/_sim/faults") => match control_body::<OneOrMany<Fault>>(request) {
            Ok(faults) => {
                let mut state = lock(common);
                state.faults.extend(faults.into_vec());
                Reply::ok(json!({ "pending_faults": state.faults.len() }))
            }
            Err(reply) => reply,
        },
        (&Method::GET, "/_sim/faults") => Reply::ok(json!(lock(common).faults)),
        (&Method::DELETE, "/_sim/faults") => {
            lock(common).faults.clear();
            Reply::ok(json!({ "pending_faults": 0 }))
        }
        (&Method::POST, "/_sim/credentials/revoke") => {
            lock(common).revoked = true;
            Reply::ok(json!({ "credentials_revoked": true }))
        }
        (&Method::POST, "/_sim/credentials/restore") => {
            lock(common).revoked = false;
            Reply::ok(json!({ "credentials_revoked": false }))
        }
        (&Method::POST, "/_sim/lag") => match control_body::<LagBody>(request) {
            Ok(LagBody {
                lag_ms: Some(millis),
                lag_secs: None,
            }) => set_lag(common, Duration::from_millis(millis)),
            Ok(LagBody {
                lag_ms: None,
                lag_secs: Some(secs),
            }) => match Duration::try_from_secs_f64(secs) {
                Ok(lag) => set_lag(common, lag),
                Err(_) => Reply::control_error(
                    StatusCode::BAD_REQUEST,
                    "lag_secs must be a non-negative number",
                ),
            },
            Ok(_) => Reply::control_error(
                StatusCode::BAD_REQUEST,
                "give exactly one of lag_ms or lag_secs",
            ),
            Err(reply) => reply,
        },
        (&Method::GET, "/_sim/requests") => Reply::ok(json!(lock(common).requests)),
        (&Method::DELETE, "/_sim/requests") | (&Method::POST, "/_sim/requests/clear") => {
            lock(common).requests.clear();
            Reply::ok(json!({ "recorded_requests": 0 }))
        }
        (&Method::POST, "/_sim/generate") => match control_body::<GenerateBody>(request) {
            Ok(GenerateBody { rate_per_sec })
                if rate_per_sec.is_finite() && rate_per_sec >= 0.0 =>
            {
                U::generate(shared, rate_per_sec);
                Reply::ok(json!({ "generator_rate_per_sec": rate_per_sec }))
            }
            Ok(_) => Reply::control_error(
                StatusCode::BAD_REQUEST,
                "rate_per_sec must be a non-negative number",
            ),
            Err(reply) => reply,
        },
        _ => Reply::control_error(
            StatusCode::NOT_FOUND,
            format!("no control route {} {}", request.method, request.path),
        ),
    }
}

fn set_lag(common: &Mutex<Common>, lag: Duration) -> Reply {
    lock(common).lag = lag;
    Reply::ok(json!({ "lag_ms": u64::try_from(lag.as_millis()).unwrap_or(u64::MAX) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_percent_decode_keeps_invalid_escapes() {
        assert_eq!(
            percent_decode("/ACME/ACME/%40activityLog"),
            "/ACME/ACME/@activityLog"
        );
        assert_eq!(percent_decode("/a%2"), "/a%2");
        assert_eq!(percent_decode("/a%zz"), "/a%zz");
        assert_eq!(percent_decode("%"), "%");
    }

    #[test]
    fn test_truncate_json_never_parses() {
        for json in ["[]", "{}", "[1,2,3]", r#"{"list":[{"id":"1"}]}"#, "1"] {
            let truncated = truncate_json(json);
            assert!(
                serde_json::from_str::<Value>(&truncated).is_err(),
                "{json} -> {truncated}"
            );
        }
    }
}

//! A simulator of Onna's activity endpoints, `@activityLog` and `@auditLog` (seed 002).
//!
//! Base URL: `http://127.0.0.1:PORT/ACMECORP/ACMECORP` ([`OnnaSimulator::base_url`]; the
//! account name is configurable with [`OnnaSimulator::start_with_account`]).
//! Authentication: `Authorization: Bearer <token>` only (default `sim-token`).
//!
//! # Format
//!
//! Both endpoints return Elasticsearch hits:
//! `{"_index": "user-activity-account-2019-07-11", "_type": "doc", "_id": "<20 chars>",
//! "_score": null, "_source": {...}, "sort": [1562857496000]}`.
//!
//! - `GET /@activityLog?epoch_from=S&epoch_to=S`: Unix **seconds**, both optional, both
//!   inclusive (a record in second `s` matches when `from <= s <= to`). The activity log is
//!   second-granular: `_source["@timestamp"]` is a **string** of epoch milliseconds that are
//!   always whole seconds (`"1562857496000"`), `sort[0]` the same as a number, so ties are
//!   normal. The answer is a bare JSON array, newest first, ties by `_id` descending, and at
//!   most `max_hits` records (the newest ones; [`OnnaSimulator::set_max_hits`]). A non-integer
//!   epoch answers 400.
//! - `POST /@auditLog` with a JSON body
//!   `{"size": 50, "sort": {"field": "@timestamp", "direction": "asc"|"desc"}, "advanced": {...}}`,
//!   every key optional: `size` defaults to 10 and is capped at `max_hits` (below 1: 400);
//!   `sort` defaults to `@timestamp` descending, ties by `_id` in the same direction; `advanced`
//!   is a JSON-logic rule over each hit's `_source` (operators `and`, `or`, `>`, `>=`, `<`,
//!   `<=`, `==`, `in`, `var`; `var` paths are dotted, a `.keyword` suffix addresses the same
//!   field, and `@timestamp` compares as epoch **milliseconds**). Here `_source["@timestamp"]` is
//!   ISO 8601 with microseconds, `"2019-07-11T15:00:10.104770+00:00"`, and `sort[0]` its epoch
//!   milliseconds. The answer is `{"items": [hits...]}`. An unknown operator, a wrong number of
//!   arguments, a non-object `advanced`, an unknown top-level key or a body that is not JSON
//!   answers 400.
//! - Errors follow Guillotina, which Onna runs on: view errors are
//!   `{"error": {"type": "...", "message": "..."}}` (Guillotina's `ErrorResponse`), a request
//!   without valid credentials gets 401 with Guillotina's traversal body
//!   `{"reason": "You are not authorized to access content", "content": "...", "auths": [...]}`,
//!   an unknown path 404 `{"reason": "Resource not found"}`, a scripted 500
//!   `{"message": "Error on execution of view <eid>", "reason": "unknownError", ...}`.
//!
//! # Control API
//!
//! JSON in and out, no authentication:
//!
//! | route | body | effect |
//! | --- | --- | --- |
//! | `GET /_sim` | | counts, settings, pending faults |
//! | `POST /_sim/activity` | `{"action", "user", "at"?, "route"?, "session_id"?, "user_agent"?}` or a list | [`OnnaSimulator::add_activity`]; answers `{"_id"}` (`{"ids"}` for a list) |
//! | `POST /_sim/audit` | `{"action", "message", "at"?, "category"?, "log_type"?, "code"?, "user"?, "user_name"?, "ip"?, "method"?, "request_url"?}` or a list | [`OnnaSimulator::add_audit`] |
//! | `POST /_sim/max_hits` | `{"max_hits": 100}` | [`OnnaSimulator::set_max_hits`] |
//! | `POST /_sim/credentials` | `{"token"}` | [`OnnaSimulator::set_token`] |
//! | `POST /_sim/credentials/revoke`, `/restore` | | [`OnnaSimulator::revoke_credentials`], [`OnnaSimulator::restore_credentials`] |
//! | `POST /_sim/faults` | a [`Fault`](crate::Fault) or a list (format in [`crate::faults`]) | [`OnnaSimulator::push_fault`]; `GET` lists, `DELETE` clears |
//! | `POST /_sim/lag` | `{"lag_ms": 500}` or `{"lag_secs": 0.5}` | [`OnnaSimulator::set_lag`] |
//! | `GET /_sim/requests`, `DELETE /_sim/requests` | | [`OnnaSimulator::requests`], [`OnnaSimulator::clear_requests`] |
//! | `POST /_sim/generate` | `{"rate_per_sec": 2}` (0 stops) | [`OnnaSimulator::spawn_generator`] |
//!
//! `at` is RFC 3339 text or epoch milliseconds, and defaults to now.
//!
//! # What could not be confirmed against the real API
//!
//! Nothing beyond seed 002 was found about Onna itself, so:
//! - paging: none is documented for either endpoint; `@activityLog` truncating to the newest
//!   `max_hits` and `@auditLog`'s `size` cap follow Elasticsearch's `max_result_window`;
//! - the `@auditLog` defaults (size 10 as in Elasticsearch, newest first) and which keys it
//!   accepts besides `size`, `sort` and `advanced` (the simulator refuses others so a client
//!   cannot lean on an undocumented one);
//! - how Onna turns JSON-logic into a query (a `terms` query for `in`, most likely); the
//!   simulator evaluates JSON-logic itself, with the loose JavaScript comparisons above;
//! - the error bodies: they are Guillotina's (read from its source), not Onna-specific ones.
//!   Guillotina answers a body that is not JSON with 412 in some versions; the simulator
//!   answers 400. Rate limiting is not documented; 429 exists only as a scripted fault;
//! - `_index` is `user-activity-account-<date>` as in the seed, where "account" may be an
//!   anonymized account name.

mod generator;
mod http;
mod jsonlogic;
mod store;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};

use crate::server::{self, lock, Common, ServerGuard, SimRuntime};

/// The account name used when none is given.
pub const DEFAULT_ACCOUNT: &str = "ACMECORP";

/// A record of the UI activity log to script with [`OnnaSimulator::add_activity`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ActivityLogSpec {
    /// The event name (`"login"`, `"nav-menu-opened"`, `"sharing-add-user"`, ...).
    pub action: String,
    /// The user's login (`"acmeuser@acmecorp.com"`).
    pub user: String,
    /// When it happened; the log keeps whole seconds of it.
    pub at: DateTime<Utc>,
    /// The UI route (`"/dashboard/workspace/list"`); left out of the payload when `None`.
    pub route: Option<String>,
    /// The browser session (`None`: a random one).
    pub session_id: Option<String>,
    /// The browser's user agent (`None`: a desktop Chrome).
    pub user_agent: Option<String>,
}

impl ActivityLogSpec {
    /// A record of `action` by `user` at `at`.
    pub fn new(
        action: impl Into<String>,
        user: impl Into<String>,
        at: DateTime<Utc>,
    ) -> ActivityLogSpec {
        ActivityLogSpec {
            action: action.into(),
            user: user.into(),
            at,
            route: None,
            session_id: None,
            user_agent: None,
        }
    }

    /// The same record on another UI route.
    pub fn with_route(mut self, route: impl Into<String>) -> ActivityLogSpec {
        self.route = Some(route.into());
        self
    }

    /// The same record in the given browser session.
    pub fn with_session_id(mut self, session_id: impl Into<String>) -> ActivityLogSpec {
        self.session_id = Some(session_id.into());
        self
    }
}

/// A record of the CRUD audit log to script with [`OnnaSimulator::add_audit`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditLogSpec {
    /// `"add"`, `"delete"`, `"update"`, ...
    pub action: String,
    /// What happened, in words (`"Added SlackDatasource source: ..."`).
    pub message: String,
    /// `"source"`, `"workspace"`, `"resource"`, ...
    pub category: String,
    /// `"success"` or `"error"`.
    pub log_type: String,
    /// Onna's event code (`"DS001"`).
    pub code: String,
    /// The user's login.
    pub user: String,
    /// The user's display name.
    pub user_name: String,
    /// The client's IP address.
    pub ip: String,
    /// The HTTP method of the audited request (`"POST"`).
    pub method: String,
    /// The URL of the audited request.
    pub request_url: String,
    /// When it happened (kept to the microsecond).
    pub at: DateTime<Utc>,
}

impl AuditLogSpec {
    /// A successful `source` event by the default user, with a code and method that fit the
    /// action (`add`: `DS001`/`POST`, `delete`: `DS002`/`DELETE`, `update`: `DS003`/`PATCH`).
    pub fn new(action: impl Into<String>, message: impl Into<String>, at: DateTime<Utc>) -> Self {
        let action = action.into();
        let (code, method) = match action.as_str() {
            "add" => ("DS001", "POST"),
            "delete" => ("DS002", "DELETE"),
            "update" => ("DS003", "PATCH"),
            _ => ("DS000", "GET"),
        };
        AuditLogSpec {
            action,
            message: message.into(),
            category: "source".into(),
            log_type: "success".into(),
            code: code.into(),
            user: "acmeuser@acmecorp.com".into(),
            user_name: "Acmeuser".into(),
            ip: "12.34.56.78".into(),
            method: method.into(),
            request_url: format!(
                "https://enterprise.onna.com/api/{DEFAULT_ACCOUNT}/{DEFAULT_ACCOUNT}/acmeuser@acmecorp.com"
            ),
            at,
        }
    }
}

/// The state the server task and every handle share.
pub(crate) struct OnnaShared {
    runtime: SimRuntime,
    common: Mutex<Common>,
    data: Mutex<store::OnnaData>,
}

impl OnnaShared {
    fn visible_at(&self) -> Instant {
        Instant::now() + lock(&self.common).lag
    }

    fn add_activity(&self, spec: ActivityLogSpec) -> String {
        let visible_at = self.visible_at();
        lock(&self.data).add_activity(spec, visible_at)
    }

    fn add_audit(&self, spec: AuditLogSpec) -> String {
        let visible_at = self.visible_at();
        lock(&self.data).add_audit(spec, visible_at)
    }
}

/// A running Onna activity simulator. Cheap to clone; all clones share one server and state.
///
/// The server stops when [`OnnaSimulator::shutdown`] is called on any clone, or when the last
/// clone is dropped.
#[derive(Clone)]
pub struct OnnaSimulator {
    shared: Arc<OnnaShared>,
    server: Arc<ServerGuard>,
}

impl std::fmt::Debug for OnnaSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnaSimulator")
            .field("addr", &self.server.addr)
            .finish_non_exhaustive()
    }
}

impl OnnaSimulator {
    /// Starts a simulator for account `ACMECORP` on `127.0.0.1` and a free port.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start() -> std::io::Result<OnnaSimulator> {
        OnnaSimulator::start_with(SocketAddr::from(([127, 0, 0, 1], 0)), DEFAULT_ACCOUNT).await
    }

    /// Starts a simulator for account `ACMECORP` on `addr` (for `tidemark simulate onna`).
    ///
    /// # Errors
    /// When `addr` cannot be bound.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<OnnaSimulator> {
        OnnaSimulator::start_with(addr, DEFAULT_ACCOUNT).await
    }

    /// Starts a simulator for the named account on `127.0.0.1` and a free port.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start_with_account(account: &str) -> std::io::Result<OnnaSimulator> {
        OnnaSimulator::start_with(SocketAddr::from(([127, 0, 0, 1], 0)), account).await
    }

    /// Starts a simulator for the named account on `addr`.
    ///
    /// # Errors
    /// When `addr` cannot be bound.
    pub async fn start_with(addr: SocketAddr, account: &str) -> std::io::Result<OnnaSimulator> {
        let account = account.to_string();
        let started = server::start(addr, |runtime| OnnaShared {
            runtime,
            common: Mutex::new(Common::default()),
            data: Mutex::new(store::OnnaData::new(account)),
        })
        .await?;
        Ok(OnnaSimulator {
            shared: started.shared,
            server: started.server,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The account base, `http://127.0.0.1:PORT/ACMECORP/ACMECORP`, as a connector's
    /// `base_url`.
    pub fn base_url(&self) -> String {
        let account = lock(&self.shared.data).account.clone();
        format!("{}/{account}/{account}", self.server.origin())
    }

    /// Stops the server and the generator. Requests after this fail to connect.
    pub fn shutdown(&self) {
        crate::generator::stop(&self.shared.runtime);
        self.server.shutdown();
    }

    /// Accepts `Authorization: Bearer <token>` with this token from now on.
    pub fn set_token(&self, token: &str) {
        lock(&self.shared.data).token = token.to_string();
    }

    crate::server::common_controls!();

    /// The most hits one response returns (default 10,000, Elasticsearch's
    /// `max_result_window`).
    pub fn set_max_hits(&self, max_hits: usize) {
        lock(&self.shared.data).max_hits = max_hits.max(1);
    }

    /// Scripts an activity-log record and returns its `_id`.
    pub fn add_activity(&self, spec: ActivityLogSpec) -> String {
        self.shared.add_activity(spec)
    }

    /// Scripts an audit-log record and returns its `_id`.
    pub fn add_audit(&self, spec: AuditLogSpec) -> String {
        self.shared.add_audit(spec)
    }

    /// Keeps producing random, realistic activity (logins, navigation clicks, searches,
    /// sharing, audit adds and deletes, timestamped now) at about `rate_per_sec` records a
    /// second, replacing any running generator. A rate of zero stops it.
    pub fn spawn_generator(&self, rate_per_sec: f64) {
        generator::spawn(&self.shared, rate_per_sec);
    }

    /// Stops the generator, if one runs.
    pub fn stop_generator(&self) {
        crate::generator::stop(&self.shared.runtime);
    }
}

//! A simulator of the Jive REST v3 API, as far as activity monitoring uses it (seed 001).
//!
//! Base URL: `http://127.0.0.1:PORT/api/core/v3` ([`JiveSimulator::base_url`]).
//! Authentication: `Authorization: Bearer <token>` (default `sim-token`) or HTTP Basic
//! (default `admin` / `password`).
//!
//! # Format
//!
//! Every JSON body, errors included, starts with `throw 'allowIllegalResourceCall is false.';`
//! and a newline, as real Jive sends it; clients strip it before parsing. Dates are written as
//! `2015-05-06T23:16:30.594+0000` (milliseconds, `+0000`) and accepted in filters in that form,
//! with `+00:00`, or with `Z`. A `+` must reach the server as `%2B`: an unencoded `+` in a query
//! string decodes to a space, and such a date is refused with a 400 that says so.
//!
//! - `GET /contents?filter=...&sort=...&startIndex=0&count=25&fields=@all`
//!   - `filter=updated(d1,d2)` or `filter=modificationDate(d1,d2)`: `updated` between the two
//!     dates, both ends included, dates in either order; one date means on or after it.
//!   - `filter=type(document,file,...)`; several `filter` parameters are ANDed.
//!   - `sort`: `dateCreatedDesc` (default), `dateCreatedAsc`, `latestActivityAsc`,
//!     `latestActivityDesc`, `titleAsc`. Equal dates are ordered by numeric content id in the
//!     sort's direction, so paging is deterministic.
//!   - `count` defaults to 25 and is capped at the server's maximum (100, see
//!     [`JiveSimulator::set_max_count`]); `startIndex` is an offset.
//!   - Envelope: `{"itemsPerPage", "startIndex", "list", "links": {"next", "previous"}}` where
//!     `itemsPerPage` is the effective count, `links.next` (absolute, `startIndex` advanced by
//!     the items returned) is present only when more items follow, `links.previous` only when
//!     `startIndex > 0`, and `links` is left out when it would be empty.
//! - `GET /contents/{id}`: one Content entity.
//! - `GET /deletedObjects/contents?filter=since(d)&filter=type(...)&sort=eventDateDesc`:
//!   `since` is inclusive; `sort` is `eventDateDesc` (default) or `eventDateAsc`, ties in
//!   deletion order. Same envelope.
//! - `GET /people/@me`: the author of the simulator's default content.
//! - Errors: `{"error": {"status": 400, "message": "..."}}`: 400 for a malformed filter, date,
//!   sort, count or startIndex (the message names it), 401 for missing or wrong credentials and
//!   while credentials are revoked, 404 for an unknown path, 405 for another method.
//!
//! # Control API
//!
//! JSON in and out, no authentication:
//!
//! | route | body | effect |
//! | --- | --- | --- |
//! | `GET /_sim` | | counts, settings, pending faults |
//! | `POST /_sim/contents` | `{"subject", "type"?, "author"? {"id", "display_name", "email"}, "at"?, "place"?}` or a list | [`JiveSimulator::create_content`]; answers `{"id"}` (`{"ids"}` for a list) |
//! | `POST /_sim/contents/{id}/modify` | `{"at"?}` | [`JiveSimulator::modify_content`] |
//! | `POST /_sim/contents/{id}/delete` | `{"at"?}` | [`JiveSimulator::delete_content`]; answers `{"deleted_object_id"}` |
//! | `POST /_sim/max_count` | `{"max_count": 7}` | [`JiveSimulator::set_max_count`] |
//! | `POST /_sim/credentials` | `{"token"?, "username"?, "password"?}` | [`JiveSimulator::set_token`], [`JiveSimulator::set_basic`] |
//! | `POST /_sim/credentials/revoke`, `/restore` | | [`JiveSimulator::revoke_credentials`], [`JiveSimulator::restore_credentials`] |
//! | `POST /_sim/faults` | a [`Fault`](crate::Fault) or a list (format in [`crate::faults`]) | [`JiveSimulator::push_fault`]; `GET` lists, `DELETE` clears |
//! | `POST /_sim/lag` | `{"lag_ms": 500}` or `{"lag_secs": 0.5}` | [`JiveSimulator::set_lag`] |
//! | `GET /_sim/requests`, `DELETE /_sim/requests` | | [`JiveSimulator::requests`], [`JiveSimulator::clear_requests`] |
//! | `POST /_sim/generate` | `{"rate_per_sec": 2}` (0 stops) | [`JiveSimulator::spawn_generator`] |
//!
//! `at` is RFC 3339 text (`2015-05-06T23:16:30.594Z`, `+0000` also read) or epoch milliseconds,
//! and defaults to now.
//!
//! # What could not be confirmed against the real API
//!
//! The stored documentation did not answer these, so the simulator takes the plainest reading:
//! - whether `modificationDate(...)` (seed 001's spelling) is a real filter name; it is accepted
//!   as a synonym of `updated(...)`, and whether either range is inclusive at the upper end
//!   (the seed says "less than or equal to beforeDate", so both ends are included);
//! - the exact error body: Jive documents the status codes, not the JSON; the simulator uses
//!   `{"error": {"status", "message"}}`. Real Jive (JAX-RS) may answer 404 rather than 400 for
//!   a non-numeric `count` or `startIndex`;
//! - whether `links.next` can appear on a page after which nothing follows, and whether real
//!   Jive can return short pages in the middle (it filters by permission after paging); the
//!   simulator's pages are full except the last, which has no `next`;
//! - which content types a `type(...)` filter rejects: any name is accepted, unknown ones match
//!   nothing; the `fields` parameter is repeated in links but does not select fields;
//! - real content has distinct `id` (per type) and `contentID` (global, used in
//!   `/contents/{contentID}` and, most likely, in deletedObject `objectId`); the simulator
//!   gives both the same value, the one [`JiveSimulator::create_content`] returns.
//! - rate limiting: Jive documents none; `429` with `Retry-After` exists only as a scripted fault.

mod generator;
mod http;
mod store;
mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::server::{self, lock, Common, ServerGuard, SimRuntime};

pub use wire::PREFIX;

/// A Jive person, as content authors are shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Numeric person id, as a string (`"2001"`).
    pub id: String,
    /// Display name (`"Jane Doe"`).
    #[serde(alias = "displayName")]
    pub display_name: String,
    /// Primary work e-mail address.
    pub email: String,
}

impl Person {
    /// A person with these fields.
    pub fn new(
        id: impl Into<String>,
        display_name: impl Into<String>,
        email: impl Into<String>,
    ) -> Person {
        Person {
            id: id.into(),
            display_name: display_name.into(),
            email: email.into(),
        }
    }
}

impl Default for Person {
    /// The community administrator, id `1`.
    fn default() -> Self {
        Person::new("1", "Administrator", "admin@example.jiveon.com")
    }
}

/// A content item to script with [`JiveSimulator::create_content`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContentSpec {
    /// The title (`"Quarterly report"`).
    pub subject: String,
    /// Jive's content type: `"document"`, `"file"`, `"discussion"`, `"post"`, `"poll"`, ...
    pub content_type: String,
    /// Who wrote it.
    pub author: Person,
    /// When it was published; `published` and `updated` both start here.
    pub at: DateTime<Utc>,
    /// The name of the group it lives in (`None`: a group called "General").
    pub place: Option<String>,
}

impl ContentSpec {
    /// A document by the default author in the default place.
    pub fn new(subject: impl Into<String>, at: DateTime<Utc>) -> ContentSpec {
        ContentSpec {
            subject: subject.into(),
            content_type: "document".into(),
            author: Person::default(),
            at,
            place: None,
        }
    }

    /// The same content with another type (`"file"`, `"discussion"`, ...).
    pub fn with_type(mut self, content_type: impl Into<String>) -> ContentSpec {
        self.content_type = content_type.into();
        self
    }

    /// The same content by another author.
    pub fn with_author(mut self, author: Person) -> ContentSpec {
        self.author = author;
        self
    }

    /// The same content in the named group.
    pub fn with_place(mut self, place: impl Into<String>) -> ContentSpec {
        self.place = Some(place.into());
        self
    }
}

/// The state the server task and every handle share.
pub(crate) struct JiveShared {
    runtime: SimRuntime,
    common: Mutex<Common>,
    data: Mutex<store::JiveData>,
}

impl JiveShared {
    fn visible_at(&self) -> Instant {
        Instant::now() + lock(&self.common).lag
    }

    fn create_content(&self, spec: ContentSpec) -> String {
        let visible_at = self.visible_at();
        lock(&self.data).create(spec, visible_at).to_string()
    }

    fn modify_content(&self, id: &str, at: DateTime<Utc>) -> bool {
        let visible_at = self.visible_at();
        lock(&self.data).modify(id, at, visible_at)
    }

    fn delete_content(&self, id: &str, at: DateTime<Utc>) -> Option<String> {
        let visible_at = self.visible_at();
        lock(&self.data).delete(id, at, visible_at)
    }
}

/// A running Jive REST v3 simulator. Cheap to clone; all clones share one server and state.
///
/// The server stops when [`JiveSimulator::shutdown`] is called on any clone, or when the last
/// clone is dropped.
#[derive(Clone)]
pub struct JiveSimulator {
    shared: Arc<JiveShared>,
    server: Arc<ServerGuard>,
}

impl std::fmt::Debug for JiveSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JiveSimulator")
            .field("addr", &self.server.addr)
            .finish_non_exhaustive()
    }
}

impl JiveSimulator {
    /// Starts a simulator on `127.0.0.1` and a free port.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start() -> std::io::Result<JiveSimulator> {
        JiveSimulator::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a simulator on `addr` (for `tidemark simulate jive --port P`).
    ///
    /// # Errors
    /// When `addr` cannot be bound.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<JiveSimulator> {
        let started = server::start(addr, |runtime| JiveShared {
            runtime,
            common: Mutex::new(Common::default()),
            data: Mutex::new(store::JiveData::default()),
        })
        .await?;
        Ok(JiveSimulator {
            shared: started.shared,
            server: started.server,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The API base, `http://127.0.0.1:PORT/api/core/v3`, as a connector's `base_url`.
    pub fn base_url(&self) -> String {
        format!("{}{}", self.server.origin(), wire::API_PREFIX)
    }

    /// Stops the server and the generator. Requests after this fail to connect.
    pub fn shutdown(&self) {
        generator_stop(&self.shared);
        self.server.shutdown();
    }

    /// Accepts `Authorization: Bearer <token>` with this token from now on.
    pub fn set_token(&self, token: &str) {
        lock(&self.shared.data).token = token.to_string();
    }

    /// Accepts HTTP Basic with this user name and password from now on.
    pub fn set_basic(&self, username: &str, password: &str) {
        let mut data = lock(&self.shared.data);
        data.basic_user = username.to_string();
        data.basic_password = password.to_string();
    }

    crate::server::common_controls!();

    /// The largest `count` the server honours (real Jive: 100, the default).
    pub fn set_max_count(&self, max_count: usize) {
        lock(&self.shared.data).max_count = max_count.max(1);
    }

    /// Scripts a new content item, published and updated at `spec.at`, and returns its id
    /// (a numeric string).
    pub fn create_content(&self, spec: ContentSpec) -> String {
        self.shared.create_content(spec)
    }

    /// Sets the content's `updated` and `lastActivityDate` to `at`. False if the id is unknown
    /// or the content was deleted.
    pub fn modify_content(&self, id: &str, at: DateTime<Utc>) -> bool {
        self.shared.modify_content(id, at)
    }

    /// Deletes the content: it leaves `/contents` and a deletedObject with `eventDate = at`
    /// appears. Returns the deletedObject's UUID, or `None` if the id is unknown or already
    /// deleted.
    pub fn delete_content(&self, id: &str, at: DateTime<Utc>) -> Option<String> {
        self.shared.delete_content(id, at)
    }

    /// How many contents exist and are not deleted (visible or still lagging).
    pub fn content_count(&self) -> usize {
        lock(&self.shared.data).live_count()
    }

    /// Keeps producing random, realistic activity (creates, modifies, deletes, timestamped
    /// now) at about `rate_per_sec` changes a second, replacing any running generator. A rate
    /// of zero stops it.
    pub fn spawn_generator(&self, rate_per_sec: f64) {
        generator::spawn(&self.shared, rate_per_sec);
    }

    /// Stops the generator, if one runs.
    pub fn stop_generator(&self) {
        generator_stop(&self.shared);
    }
}

fn generator_stop(shared: &JiveShared) {
    crate::generator::stop(&shared.runtime);
}

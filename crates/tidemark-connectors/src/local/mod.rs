//! The `local` connector: a directory tree on this machine, monitored like a cloud storage
//! account.
//!
//! Each poll walks the tree (without following symlinks) into a *manifest*: relative path ->
//! kind, identity (device, inode, birth time where the filesystem records one), size, mtime,
//! ctime. The checkpoint is the previous manifest; the activity is the difference between the
//! two. An OS file watch ([`notify`]) only makes polls happen sooner ([`Connector::watch`]); the
//! periodic rescan (`rescan_interval_seconds`, 60 s by default) is the safety net for anything
//! the watch misses (overflowed queues, changes while the service was stopped).
//!
//! # Mapping
//!
//! All activity has `event_category` `storage`, `actor` and `session` `null` (the filesystem
//! does not say who), and `target` / `previous_target` shaped like the Kloudless file object
//! (`id` stable across renames, `raw_id` the relative path, `path` with a leading `/`).
//!
//! | filesystem change (between two scans) | `event_type` | `event_subtype` | v1 `type` | `timestamp` |
//! | --- | --- | --- | --- | --- |
//! | new identity | `add` | `unknown` | `add` | birth time, else mtime (never before its new parent folder's) |
//! | identity gone | `delete` | `unknown` | `delete` | scan time |
//! | same identity, same folder, other name | `update` | `rename` | `rename` | ctime |
//! | same identity, other parent folder | `update` | `move` | `move` | ctime |
//! | only an ancestor folder moved | — (the ancestor's one `move`/`rename` covers it) | | | |
//! | same path and identity, file size or mtime changed | `update` | `unknown` | `update` | mtime |
//! | same path, new identity, same kind (atomic save by rename) | `update` | `unknown` | `update` | mtime |
//! | same path, new identity, other kind | `delete` + `add` | `unknown` | `delete` + `add` | add time for both |
//! | folder mtime changed (children came or went) | — | | | |
//!
//! A poll's activity is sorted by timestamp; ties go deletes, renames/moves, adds, updates, then
//! shallower paths first for adds (a folder before its contents) and deeper first for deletes
//! (contents before their folder). A move into a folder that is new in the same poll takes that
//! folder's add time if its own ctime is earlier, and comes right after the add.
//!
//! Paths tell a consistent story: each activity's paths are those of the tree at its point in
//! the poll, as if the changes had happened in that order. A client that applies them in order
//! to a mirror of the tree never meets a path that is not there (a rename inside a folder that
//! is moved later in the same poll reads `rename /a/x -> /a/y`, then `move /a -> /b/a`).
//!
//! # First poll
//!
//! The first poll (no checkpoint) takes the baseline and reports nothing that already existed,
//! except entries born (birth time, else mtime) at or after the subscription's `created` minus
//! [`FILESYSTEM_CLOCK_SLACK`]: those appeared after tracking began and would otherwise be lost
//! in the race between creating the subscription and its first poll. They are reported as
//! `add`.
//!
//! # Checkpoint
//!
//! Compact JSON, version 1:
//!
//! ```text
//! {"v":1,"root":[dev,ino,birth_ns|null],
//!  "entries":[["docs/a.txt","f",dev,ino,birth_ns|null,size,mtime_ns,ctime_ns], ...]}
//! ```
//!
//! Kinds are `"f"` (file or symlink) and `"d"` (folder); times are ns since the Unix epoch.
//! Text that does not parse, or another version, is [`ConnectorError::CorruptCheckpoint`].
//!
//! # Restart safety and paging
//!
//! A poll is a pure function of (checkpoint, directory): a poll re-run from the same checkpoint
//! against the same directory yields the same activity ids, because an id is a hash of the
//! change itself (action, identity, paths and the sizes/times before and after), never of a
//! clock or counter. Changes made while the service is stopped appear on the first poll after it
//! starts.
//!
//! At most [`MAX_ACTIVITIES_PER_POLL`] activities are emitted per poll. When more changes are
//! pending the poll returns `more: true` with the checkpoint "previous manifest with exactly the
//! emitted changes applied" (plus silent path changes under moved folders), so the next poll's
//! diff yields exactly the rest: the same activities with the same ids as one unpaged poll
//! (only deletes with equal timestamps may come in another children-first order). When nothing
//! is pending the checkpoint is the full new manifest.
//!
//! # Limits
//!
//! - No actor: the filesystem does not record who made a change.
//! - Polling sees states, not events: a file created and deleted between two scans is never
//!   seen; a file changed twice is one `update`; renaming a -> b -> c is one rename a -> c.
//! - A scan is not atomic: an entry renamed while the walk is under way may be missed at both
//!   places (a `delete` now, an `add` on the next poll) or seen at both.
//! - Identity is heuristic. Without birth time (some filesystems, network mounts), a reused
//!   inode number at another path looks like a rename of the deleted entry, and the first
//!   poll's "created after subscription" test falls back to mtime (a file merely modified after
//!   `created` is reported as `add`). Device numbers that change on remount are followed only
//!   for the monitored directory's own device.
//! - Paths are not unique while a backlog is paged: in the rare case of two folders swapping
//!   paths across a page boundary, their contents may be attributed to the wrong one of the two
//!   until the backlog is drained (the final checkpoint is always the true scan).
//! - Timestamps are the filesystem's: a folder's ctime (its rename time) also moves when its
//!   children change, and a delete's time is when a scan noticed it.
//! - Entries whose names are not UTF-8, sockets, FIFOs and device nodes are skipped; symlinks
//!   are reported as files and never followed. Folders that cannot be listed keep their
//!   previous contents (nothing is reported for them) until they can.
//! - The watch needs one inotify watch per folder (Linux `fs.inotify.max_user_watches`); when
//!   it cannot keep up, the periodic rescan still catches every change.

mod diff;
mod manifest;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher as _};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;
use tracing::{debug, warn};

use self::diff::RenderContext;
use self::manifest::{Manifest, Record, RootError};
use crate::{
    Capabilities, Checkpoint, Connector, ConnectorError, PollContext, PollOutcome, PollTrigger,
    WatchGuard,
};

/// Service name.
pub const SERVICE: &str = "local";

/// Most activities one poll emits; the rest follow with `more: true`.
pub const MAX_ACTIVITIES_PER_POLL: usize = 1000;

/// Default time between full rescans when no file event triggers a poll sooner.
pub const DEFAULT_RESCAN_INTERVAL: Duration = Duration::from_secs(60);

/// How far the filesystem's clock may lag the system clock. File times come from the kernel's
/// coarse clock (up to one scheduler tick behind), so a file created just after the subscription
/// can carry a birth time a few ms before `created`; the first poll's "appeared after tracking
/// began" test allows for that (10 ms: one tick at `CONFIG_HZ` 100 or more). The price: a file
/// created less than this before the subscription is reported as `add` too.
pub const FILESYSTEM_CLOCK_SLACK: Duration = Duration::from_millis(10);

/// Longest accepted `rescan_interval_seconds` (one day, as for `poll_interval_seconds`).
const MAX_RESCAN_INTERVAL_SECONDS: u64 = 86_400;

/// Account config of the `local` connector.
///
/// ```json
/// {"path": "/srv/shared", "rescan_interval_seconds": 300}
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// Absolute path of the directory to monitor. It must exist and be a directory; symlinks
    /// below it are reported but not followed. Example: `"/srv/shared"`.
    pub path: PathBuf,
    /// Seconds between full rescans when no file event triggers a poll sooner (1..=86400;
    /// default 60). The account's `poll_interval_seconds`, if set, takes precedence.
    /// Example: `300`.
    #[serde(default)]
    pub rescan_interval_seconds: Option<u64>,
    /// Common account key, read by the engine (it overrides the rescan interval); ignored
    /// here. Example: `30`.
    #[serde(default)]
    pub poll_interval_seconds: Option<IgnoredAny>,
    /// Common account key; there is no server to reach, so it is ignored.
    /// Example: `"http://localhost"`.
    #[serde(default)]
    pub base_url: Option<IgnoredAny>,
    /// Common account key; a local directory needs none, so it is ignored (and not kept).
    /// Example: `{}`.
    #[serde(default)]
    pub credentials: Option<IgnoredAny>,
}

impl LocalConfig {
    /// Parses and checks an account config: the shape, then that `path` is an absolute path to
    /// an existing directory.
    ///
    /// # Errors
    /// [`ConnectorError::BadConfig`] saying what is wrong (a path this process may not read
    /// included: a local directory has no credentials to blame), or
    /// [`ConnectorError::Transient`] if the path cannot be examined for another reason.
    pub fn from_value(config: &Value) -> Result<Self, ConnectorError> {
        let bad = |message: String| ConnectorError::BadConfig(message);
        let object = config.as_object().ok_or_else(|| {
            bad(format!(
                "local config must be a JSON object such as {{\"path\": \"/srv/shared\"}}, got {config}"
            ))
        })?;
        match object.get("path") {
            Some(Value::String(_)) => {}
            None | Some(Value::Null) => {
                return Err(bad(
                    "local config needs `path`, the absolute path of the directory to monitor"
                        .to_owned(),
                ))
            }
            Some(other) => {
                return Err(bad(format!(
                    "`path` must be a string holding an absolute directory path, got {other}"
                )))
            }
        }
        match object.get("rescan_interval_seconds") {
            None | Some(Value::Null) => {}
            Some(value) => match value.as_u64() {
                Some(1..=MAX_RESCAN_INTERVAL_SECONDS) => {}
                _ => {
                    return Err(bad(format!(
                        "rescan_interval_seconds must be a whole number of seconds in 1..={MAX_RESCAN_INTERVAL_SECONDS}, got {value}"
                    )))
                }
            },
        }
        let parsed: LocalConfig = serde_json::from_value(config.clone())
            .map_err(|e| bad(format!("local config: {e}")))?;
        if !parsed.path.is_absolute() {
            return Err(bad(format!(
                "`path` must be absolute, got {:?}",
                parsed.path.display().to_string()
            )));
        }
        match std::fs::metadata(&parsed.path) {
            Ok(metadata) if metadata.is_dir() => Ok(parsed),
            Ok(_) => Err(bad(format!(
                "`path` {} is not a directory",
                parsed.path.display()
            ))),
            Err(error) => Err(io_error_to_validation(&parsed.path, error)),
        }
    }
}

/// Builds a `local` connector from an account config.
///
/// # Errors
/// [`ConnectorError::BadConfig`] when the config is malformed or `path` is not an absolute
/// path to an existing directory (see [`LocalConfig::from_value`]).
pub fn build(config: &Value) -> Result<Arc<dyn Connector>, ConnectorError> {
    Ok(Arc::new(LocalConnector::new(LocalConfig::from_value(
        config,
    )?)))
}

/// Monitors one directory tree.
#[derive(Debug, Clone)]
pub struct LocalConnector {
    config: LocalConfig,
}

impl LocalConnector {
    /// A connector for an already checked config.
    pub fn new(config: LocalConfig) -> Self {
        LocalConnector { config }
    }

    fn root(&self) -> &Path {
        &self.config.path
    }
}

#[async_trait]
impl Connector for LocalConnector {
    fn service(&self) -> &'static str {
        SERVICE
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            push: true,
            ..Capabilities::default()
        }
    }

    /// A `local` subscription watches the configured directory, a folder.
    fn monitored_resource_kind(&self) -> (Option<&'static str>, Option<&'static str>) {
        (Some("storage"), Some("folder"))
    }

    fn default_poll_interval(&self) -> Duration {
        self.config
            .rescan_interval_seconds
            .map_or(DEFAULT_RESCAN_INTERVAL, Duration::from_secs)
    }

    async fn validate(&self) -> Result<(), ConnectorError> {
        let root = self.root().to_path_buf();
        let checked = tokio::task::spawn_blocking(move || {
            manifest::check_root(&root).map_err(|error| root_error_to_validation(&root, error))
        })
        .await
        .map_err(|e| ConnectorError::Transient(format!("directory check did not finish: {e}")))?;
        checked.map(|_| ())
    }

    #[tracing::instrument(skip_all, fields(
        service = SERVICE,
        account = context.account.id,
        subscription = context.subscription.id,
    ))]
    async fn poll(
        &self,
        context: &PollContext,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<PollOutcome, ConnectorError> {
        let root = self.root().to_path_buf();
        let checkpoint_text = checkpoint.map(|checkpoint| checkpoint.0.clone());
        let account = context.account.id;
        let tracking_since = context.subscription.created;
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            poll_directory(
                &root,
                checkpoint_text.as_deref(),
                account,
                tracking_since,
                MAX_ACTIVITIES_PER_POLL,
            )
        })
        .await
        .map_err(|e| ConnectorError::Transient(format!("directory scan did not finish: {e}")))?
    }

    fn watch(
        &self,
        _context: &PollContext,
        trigger: PollTrigger,
    ) -> Result<Option<WatchGuard>, ConnectorError> {
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<Event>| match event {
                // Opening or reading (our own scans do both) changes nothing.
                Ok(Event {
                    kind: EventKind::Access(access),
                    ..
                }) if access != AccessKind::Close(AccessMode::Write) => {}
                Ok(_) => trigger.fire(),
                Err(error) => {
                    // Overflowed queue, watch removed, ...: a rescan sorts it out.
                    warn!(%error, "file watch reported an error");
                    trigger.fire();
                }
            })
            .map_err(|e| ConnectorError::Transient(format!("cannot start a file watch: {e}")))?;
        watcher
            .watch(self.root(), RecursiveMode::Recursive)
            .map_err(|e| {
                ConnectorError::Transient(format!("cannot watch {}: {e}", self.root().display()))
            })?;
        debug!(path = %self.root().display(), "file watch started");
        Ok(Some(WatchGuard::new(watcher)))
    }
}

/// One poll, blocking: read the checkpoint, scan, diff, render at most `limit` activities.
///
/// # Errors
/// [`ConnectorError::CorruptCheckpoint`] for an unreadable checkpoint; for the directory
/// itself, [`ConnectorError::Transient`] when it is missing or not a directory (it may come
/// back) and [`ConnectorError::BadConfig`] when this process may not read it.
fn poll_directory(
    root: &Path,
    checkpoint: Option<&str>,
    account: i64,
    tracking_since: DateTime<Utc>,
    limit: usize,
) -> Result<PollOutcome, ConnectorError> {
    debug_assert!(limit > 0, "a poll must be able to make progress");
    let previous = checkpoint
        .map(Manifest::decode)
        .transpose()
        .map_err(ConnectorError::CorruptCheckpoint)?;
    let mut scan = manifest::scan(root).map_err(|error| root_error_to_poll(root, error))?;
    let scan_time_ns = manifest::system_time_ns(SystemTime::now());
    let base = match previous {
        Some(mut previous) => {
            if let Some(current_root) = scan.root {
                previous.follow_device_renumbering(current_root);
            }
            scan.carry_over_unreadable(&previous);
            previous
        }
        None => baseline(&scan, tracking_since),
    };
    let current = scan.into_manifest();
    let diff = diff::diff(&base, &current, scan_time_ns);
    let root_name = root.file_name().and_then(|name| name.to_str());
    let context = RenderContext { account, root_name };
    let rendered = diff::render(&base, &current, &diff, &context, limit);
    debug!(
        entries = current.records.len(),
        changes = diff.changes.len(),
        carried_along = diff.carried_along,
        emitted = rendered.activities.len(),
        more = rendered.more,
        first_poll = checkpoint.is_none(),
        "local scan complete"
    );
    Ok(PollOutcome {
        activities: rendered.activities,
        checkpoint: Checkpoint(rendered.checkpoint.encode()),
        more: rendered.more,
    })
}

/// The first poll's base: the scan without the entries that appeared after tracking began, so
/// that diffing the scan against it reports exactly those as `add`.
fn baseline(scan: &manifest::Scan, tracking_since: DateTime<Utc>) -> Manifest {
    let slack_ns = i64::try_from(FILESYSTEM_CLOCK_SLACK.as_nanos()).unwrap_or(0);
    // Outside the ns range (years 1677..2262) the subscription is before or after everything.
    let since_ns =
        tracking_since
            .timestamp_nanos_opt()
            .unwrap_or(if tracking_since.timestamp() > 0 {
                i64::MAX
            } else {
                i64::MIN
            });
    let cutoff_ns = since_ns.saturating_sub(slack_ns);
    Manifest {
        root: scan.root,
        records: scan
            .entries
            .iter()
            .filter(|(_, entry)| entry.created_or_modified_ns() < cutoff_ns)
            .map(|(path, entry)| Record {
                path: path.clone(),
                entry: entry.clone(),
            })
            .collect(),
    }
}

/// What an I/O error on the monitored directory itself means when connecting or validating
/// (see [`root_error_to_validation`]).
fn io_error_to_validation(root: &Path, error: std::io::Error) -> ConnectorError {
    root_error_to_validation(root, RootError::from_io(error))
}

/// What a problem with the monitored directory means when connecting or validating.
///
/// A directory this process may not read is a [`ConnectorError::BadConfig`], not
/// [`ConnectorError::Unauthorized`]: there are no credentials involved (that variant would
/// disable the subscription as `invalid_credentials`); the account must name a directory the
/// service can read, or the directory's permissions must change.
fn root_error_to_validation(root: &Path, error: RootError) -> ConnectorError {
    match error {
        RootError::NotFound => {
            ConnectorError::BadConfig(format!("`path` {} does not exist", root.display()))
        }
        RootError::NotADirectory => {
            ConnectorError::BadConfig(format!("`path` {} is not a directory", root.display()))
        }
        RootError::PermissionDenied(error) => {
            debug!(path = %root.display(), %error, "monitored directory is not readable");
            ConnectorError::BadConfig(format!(
                "`path` {} is not readable by this process: permission denied",
                root.display()
            ))
        }
        RootError::Other(error) => {
            ConnectorError::Transient(format!("cannot read {}: {error}", root.display()))
        }
    }
}

/// What a problem with the monitored directory means during a poll: it may come back, unless
/// this process lacks permission (the same verdict as [`Connector::validate`]).
fn root_error_to_poll(root: &Path, error: RootError) -> ConnectorError {
    match error {
        RootError::NotFound => ConnectorError::Transient(format!(
            "monitored directory {} does not exist (any more)",
            root.display()
        )),
        RootError::NotADirectory => ConnectorError::Transient(format!(
            "monitored path {} is no longer a directory",
            root.display()
        )),
        other => root_error_to_validation(root, other),
    }
}

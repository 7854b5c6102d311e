//! The tracker's saved position: a small JSON file replaced atomically (written to a temporary
//! file beside it, flushed, renamed over it), so after a crash it holds either the old or the
//! new position, never half of one.
//!
//! # Format
//! ```json
//! {"version": 1, "account": "12", "subscription": "default",
//!  "position": "2026-01-31T12:00:00.000000Z", "sink_mark": 104857,
//!  "watermark": "2026-01-31T12:05:00.000000Z", "slices": 16, "activities": 100000,
//!  "updated": "2026-01-31T12:05:01.123456Z"}
//! ```
//! `position` is the end of the newest contiguous run of released slices: every activity
//! with a timestamp before it has been delivered, none at or after it. `sink_mark` is what
//! the sink returned for the last released slice ([`super::Sink::finish_slice`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::TrackError;

/// The only format version written and read.
const VERSION: u32 = 1;

/// What is saved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavedState {
    pub version: u32,
    /// The account tracked, as given (`12`, `me`).
    pub account: String,
    /// The subscription tracked, as given (`34`, `default`).
    pub subscription: String,
    /// Everything before it was delivered; nothing at or after it.
    #[serde(with = "tidemark_model::time::iso")]
    pub position: DateTime<Utc>,
    /// The sink's mark at `position`.
    pub sink_mark: Option<u64>,
    /// The watermark the last round was planned with.
    #[serde(with = "tidemark_model::time::iso_opt")]
    pub watermark: Option<DateTime<Utc>>,
    /// Slices released so far, all runs together.
    pub slices: u64,
    /// Activities delivered so far, all runs together.
    pub activities: u64,
    /// When this was written.
    #[serde(with = "tidemark_model::time::iso")]
    pub updated: DateTime<Utc>,
}

impl SavedState {
    /// A fresh start at `position`.
    pub(crate) fn new(
        account: String,
        subscription: String,
        position: DateTime<Utc>,
        sink_mark: Option<u64>,
    ) -> Self {
        SavedState {
            version: VERSION,
            account,
            subscription,
            position,
            sink_mark,
            watermark: None,
            slices: 0,
            activities: 0,
            updated: now(),
        }
    }
}

/// Now, to the microsecond (what the file keeps).
pub(crate) fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

fn state_error(path: &Path, message: impl std::fmt::Display) -> TrackError {
    TrackError::State {
        path: path.to_owned(),
        message: message.to_string(),
    }
}

/// Reads the state at `path`; `None` when there is no file yet.
///
/// # Errors
/// [`TrackError::State`] for a file that cannot be read or is not a state of this version.
pub(crate) fn load(path: &Path) -> Result<Option<SavedState>, TrackError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(state_error(path, error)),
    };
    let state: SavedState = serde_json::from_str(&text)
        .map_err(|e| state_error(path, format!("not a tracker state file: {e}")))?;
    if state.version != VERSION {
        return Err(state_error(
            path,
            format!(
                "version {} (this tracker reads version {VERSION})",
                state.version
            ),
        ));
    }
    Ok(Some(state))
}

fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Replaces the state at `path` with `state`, atomically.
///
/// # Errors
/// [`TrackError::State`] when the file cannot be written or renamed.
pub(crate) fn save(path: &Path, state: &SavedState) -> Result<(), TrackError> {
    let temporary = temporary_path(path);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        let text = serde_json::to_string(state).map_err(std::io::Error::other)?;
        file.write_all(text.as_bytes())?;
        file.write_all(b"\n")?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)?;
        // The rename itself is made durable by syncing the directory (not possible, nor
        // needed, everywhere).
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(dir) = std::fs::File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    };
    write().map_err(|e| state_error(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_state_round_trips_and_replaces_atomically() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("track.json");
        assert_eq!(load(&path).expect("no file"), None);
        let at = tidemark_model::time::parse("2026-01-31T12:00:00.000001Z").expect("time");
        let mut state = SavedState::new("12".into(), "default".into(), at, Some(0));
        save(&path, &state).expect("save");
        state.activities = 5;
        state.sink_mark = Some(500);
        save(&path, &state).expect("save again");
        assert_eq!(load(&path).expect("load"), Some(state));
        assert!(!temporary_path(&path).exists());
    }

    #[test]
    fn test_a_file_that_is_not_a_state_is_refused_clearly() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("track.json");
        std::fs::write(&path, "{\"position\": 3}").expect("write");
        let error = load(&path).expect_err("not a state");
        assert!(
            error.to_string().contains("not a tracker state file"),
            "{error}"
        );
        std::fs::write(
            &path,
            r#"{"version":9,"account":"1","subscription":"1","position":"2026-01-01T00:00:00Z","sink_mark":null,"watermark":null,"slices":0,"activities":0,"updated":"2026-01-01T00:00:00Z"}"#,
        )
        .expect("write");
        let error = load(&path).expect_err("future version");
        assert!(error.to_string().contains("version 9"), "{error}");
    }
}

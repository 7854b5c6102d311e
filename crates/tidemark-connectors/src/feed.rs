//! Tie-safe positions in time-ordered upstream feeds, shared by the connectors that rebuild an
//! event stream by polling "what changed since T" (Jive, Onna).
//!
//! A [`Position`] is `(ts, ids)`: every item with a timestamp before `ts` has been emitted, and
//! of the items at exactly `ts`, those whose ids are in `ids`. The next query asks for items at
//! or after `ts` (re-reading the boundary, inclusively) and drops those already in `ids`. So
//! items with equal timestamps split across pages or polls are neither lost nor repeated
//! (seed 001's "Page 1: t1 t2 t2 t3 t3 / Page 2: t3 t4 t4"), which "last timestamp + 1 ms"
//! cannot promise (DESIGN 2.4).
//!
//! Where an upstream has several feeds (Jive's contents and deleted contents, Onna's activity
//! and audit logs), [`FeedsCheckpoint`] keeps one position per feed and cuts them all at one
//! high-water mark, a window's `before` (now less the connector's safety lag, fixed until every
//! feed has been read up to it). [`FeedsCheckpoint::merge`] interleaves one page of each feed by
//! timestamp, emitting only up to the oldest last timestamp of a feed that has more to come, so
//! no item fetched later can be older than one already emitted (DESIGN 2.3, seed 001's `t3 <
//! t4`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use tidemark_model::Activity;

use crate::{Checkpoint, ConnectorError};

/// A position in one feed: all items before `ts` (epoch ms) were emitted, and those at `ts`
/// whose ids are listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Epoch milliseconds.
    pub ts: i64,
    /// Ids of the items at exactly `ts` already emitted.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub ids: BTreeSet<String>,
}

impl Position {
    /// Nothing at or after `ts` emitted yet.
    pub fn at(ts: i64) -> Self {
        Position {
            ts,
            ids: BTreeSet::new(),
        }
    }

    /// Whether an item at `ts` with `id` comes after this position (not yet emitted).
    pub fn is_new(&self, ts: i64, id: &str) -> bool {
        ts > self.ts || (ts == self.ts && !self.ids.contains(id))
    }

    /// Moves past an emitted item. Items must be passed in ascending timestamp order.
    pub fn advance(&mut self, ts: i64, id: &str) {
        if ts > self.ts {
            self.ts = ts;
            self.ids.clear();
        }
        if ts == self.ts {
            self.ids.insert(id.to_owned());
        }
    }
}

/// One upstream item, mapped, with what its feed's position records of it.
#[derive(Debug)]
pub struct Item {
    /// Epoch milliseconds (the order of the feed).
    pub ts: i64,
    /// The upstream's id of the item (unique within its feed).
    pub key: String,
    /// The unified activity.
    pub activity: Activity,
}

/// What one feed gave for one page.
#[derive(Debug, Default)]
pub struct FeedPage {
    /// New items (after the feed's position), oldest first, none after the window's end.
    pub items: Vec<Item>,
    /// Nothing more in the window after `items`.
    pub exhausted: bool,
    /// The feed holds nothing new before this time (epoch ms): once `items` are emitted, the
    /// position may move here (a range read whole and found empty).
    pub resume_at: Option<i64>,
}

impl FeedPage {
    /// The page of a feed already read to the window's end.
    pub fn done() -> Self {
        FeedPage {
            items: Vec::new(),
            exhausted: true,
            resume_at: None,
        }
    }
}

/// The window being read: every feed up to `before` (epoch ms, inclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// The high-water mark: the window's end, inclusive.
    pub before: i64,
    /// Feeds already read up to `before`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub done: BTreeSet<String>,
}

/// A checkpoint of several feeds cut at one high-water mark. JSON, version 1:
///
/// ```text
/// {"v":1,"feeds":{"contents":{"ts":1430954190594,"ids":["1234"]},"deleted":{"ts":1430954100000}},
///  "covered":1430954100000,"window":{"before":1430954400000,"done":["deleted"]}}
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeedsCheckpoint {
    /// Format version (1).
    pub v: u8,
    /// One position per feed, by feed name.
    pub feeds: BTreeMap<String, Position>,
    /// Every feed is complete up to here (the last finished window's `before`).
    pub covered: i64,
    /// The window being paged through, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
}

impl FeedsCheckpoint {
    /// Every feed positioned at `ts` (a first poll: the subscription's creation).
    pub fn starting_at(ts: i64, feeds: &[&str]) -> Self {
        FeedsCheckpoint {
            v: 1,
            feeds: feeds
                .iter()
                .map(|feed| ((*feed).to_owned(), Position::at(ts)))
                .collect(),
            covered: ts,
            window: None,
        }
    }

    /// Reads a stored checkpoint; a feed it does not know yet (the account's config started
    /// watching it) starts at `covered`.
    ///
    /// # Errors
    /// [`ConnectorError::CorruptCheckpoint`] for text this build cannot read.
    pub fn parse(
        service: &str,
        checkpoint: &Checkpoint,
        feeds: &[&str],
    ) -> Result<Self, ConnectorError> {
        let mut parsed: FeedsCheckpoint = serde_json::from_str(&checkpoint.0).map_err(|error| {
            ConnectorError::CorruptCheckpoint(format!("{service} checkpoint: {error}"))
        })?;
        if parsed.v != 1 {
            return Err(ConnectorError::CorruptCheckpoint(format!(
                "{service} checkpoint version {} is not known to this build",
                parsed.v
            )));
        }
        for feed in feeds {
            let covered = parsed.covered;
            parsed
                .feeds
                .entry((*feed).to_owned())
                .or_insert_with(|| Position::at(covered));
        }
        Ok(parsed)
    }

    /// A checkpoint for fetching the fixed range `[from_ms, until_ms)` (a backfill): every
    /// feed at `from_ms`, one window ending at `until_ms - 1` (inclusive); the range is done
    /// when that window is.
    pub fn for_range(from_ms: i64, until_ms: i64, feeds: &[&str]) -> Self {
        let mut checkpoint = FeedsCheckpoint::starting_at(from_ms, feeds);
        checkpoint.window = Some(Window {
            before: until_ms.saturating_sub(1).max(from_ms),
            done: BTreeSet::new(),
        });
        checkpoint
    }

    /// The state and window of one step of fetching `[from, until)`: from the stored position
    /// of that fetch, or from the range's start.
    ///
    /// # Errors
    /// [`ConnectorError::CorruptCheckpoint`] for a checkpoint this build cannot read, or one of
    /// a range already fetched to its end.
    pub fn range_step(
        service: &str,
        checkpoint: Option<&Checkpoint>,
        from: chrono::DateTime<chrono::Utc>,
        until: chrono::DateTime<chrono::Utc>,
        feeds: &[&str],
    ) -> Result<(Self, Window), ConnectorError> {
        let state = match checkpoint {
            Some(checkpoint) => FeedsCheckpoint::parse(service, checkpoint, feeds)?,
            None => {
                FeedsCheckpoint::for_range(from.timestamp_millis(), until.timestamp_millis(), feeds)
            }
        };
        let window = state.window.clone().ok_or_else(|| {
            ConnectorError::CorruptCheckpoint(format!(
                "{service}: a range already fetched to its end was fetched again"
            ))
        })?;
        Ok((state, window))
    }

    /// The window in progress, or a new one ending at `now_ms - lag_ms` (never before
    /// `covered`).
    pub fn window(&self, now_ms: i64, lag_ms: i64) -> Window {
        self.window.clone().unwrap_or_else(|| Window {
            before: now_ms.saturating_sub(lag_ms).max(self.covered),
            done: BTreeSet::new(),
        })
    }

    /// The position of `feed` (its start when unknown).
    pub fn position(&self, feed: &str) -> Position {
        self.feeds
            .get(feed)
            .cloned()
            .unwrap_or_else(|| Position::at(self.covered))
    }

    /// Interleaves one page of each feed (given in rank order: at equal timestamps, earlier
    /// feeds first), advances the positions past what is emitted, and closes the window when
    /// every feed is done. Returns the activity to emit and whether more is pending now.
    pub fn merge(
        &mut self,
        mut window: Window,
        pages: Vec<(&str, FeedPage)>,
    ) -> (Vec<Activity>, bool) {
        let limit = pages
            .iter()
            .filter_map(|(_, page)| match (page.exhausted, page.items.last()) {
                (false, Some(last)) => Some(last.ts),
                _ => None,
            })
            .min()
            .unwrap_or(i64::MAX);
        let mut merged: Vec<(i64, usize, Activity)> = Vec::new();
        for (rank, (feed, page)) in pages.into_iter().enumerate() {
            let position = self
                .feeds
                .entry(feed.to_owned())
                .or_insert_with(|| Position::at(self.covered));
            let mut held_back = false;
            for item in page.items {
                if item.ts > limit {
                    held_back = true;
                    break;
                }
                position.advance(item.ts, &item.key);
                merged.push((item.ts, rank, item.activity));
            }
            if let Some(resume_at) = page.resume_at.filter(|at| !held_back && *at > position.ts) {
                *position = Position::at(resume_at);
            }
            if page.exhausted && !held_back {
                window.done.insert(feed.to_owned());
            }
        }
        // Each feed is oldest first already; a stable sort interleaves them by time.
        merged.sort_by_key(|(ts, rank, _)| (*ts, *rank));
        let complete = self.feeds.keys().all(|feed| window.done.contains(feed));
        if complete {
            self.covered = window.before;
            self.window = None;
        } else {
            self.window = Some(window);
        }
        (
            merged
                .into_iter()
                .map(|(_, _, activity)| activity)
                .collect(),
            !complete,
        )
    }

    /// The watermark a stored checkpoint gives: `covered`, the end of the last window every
    /// feed was read through (already `safety_lag` behind the time it was read).
    pub fn watermark_of(checkpoint: &Checkpoint) -> Option<chrono::DateTime<chrono::Utc>> {
        #[derive(Deserialize)]
        struct Covered {
            covered: i64,
        }
        let covered: Covered = serde_json::from_str(&checkpoint.0).ok()?;
        chrono::DateTime::from_timestamp_millis(covered.covered)
    }

    /// The checkpoint text.
    ///
    /// # Errors
    /// [`ConnectorError::Transient`] if it cannot be encoded (it always can).
    pub fn encode(&self) -> Result<Checkpoint, ConnectorError> {
        serde_json::to_string(self)
            .map(Checkpoint)
            .map_err(|error| ConnectorError::Transient(format!("encoding the checkpoint: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_ties_across_pages_are_neither_lost_nor_repeated() {
        // Seed 001: page 1 "t1 t2 t2 t3 t3", page 2 re-reads from t3: "t3 t3 t3 t4 t4".
        let page1 = [(1, "a"), (2, "b"), (2, "c"), (3, "d"), (3, "e")];
        let page2 = [(3, "d"), (3, "e"), (3, "f"), (4, "g"), (4, "h")];
        let mut position = Position::at(0);
        let mut emitted = Vec::new();
        for (ts, id) in page1.iter().chain(page2.iter()) {
            if position.is_new(*ts, id) {
                emitted.push(*id);
                position.advance(*ts, id);
            }
        }
        assert_eq!(emitted, ["a", "b", "c", "d", "e", "f", "g", "h"]);
        assert_eq!(position.ts, 4);
        assert_eq!(position.ids.len(), 2);
    }

    fn item(ts: i64, key: &str) -> Item {
        Item {
            ts,
            key: key.to_owned(),
            activity: Activity::new(
                key,
                1,
                tidemark_model::EventCategory::Storage,
                tidemark_model::EventType::Add,
                tidemark_model::EventSubtype::Unknown,
            ),
        }
    }

    fn ids(activities: &[Activity]) -> Vec<&str> {
        activities.iter().map(|a| a.id.as_str()).collect()
    }

    #[test]
    fn test_merge_holds_back_what_a_feed_with_more_pages_could_precede() {
        let feeds = ["contents", "deleted"];
        let mut checkpoint = FeedsCheckpoint::starting_at(0, &feeds);
        let window = checkpoint.window(100, 0);
        // Contents has more after t2; deleted has t1 and t4, then nothing: t4 must wait.
        let pages = vec![
            (
                "contents",
                FeedPage {
                    items: vec![item(1, "c1"), item(2, "c2")],
                    exhausted: false,
                    resume_at: None,
                },
            ),
            (
                "deleted",
                FeedPage {
                    items: vec![item(1, "d1"), item(4, "d4")],
                    exhausted: true,
                    resume_at: None,
                },
            ),
        ];
        let (emitted, more) = checkpoint.merge(window, pages);
        assert_eq!(ids(&emitted), ["c1", "d1", "c2"]);
        assert!(more);
        assert_eq!(checkpoint.position("deleted").ts, 1);
        let window = checkpoint.window(200, 0);
        assert_eq!(
            window.before, 100,
            "the window stays fixed until it is read"
        );
        let pages = vec![
            (
                "contents",
                FeedPage {
                    items: vec![item(3, "c3")],
                    exhausted: true,
                    resume_at: None,
                },
            ),
            (
                "deleted",
                FeedPage {
                    items: vec![item(4, "d4")],
                    exhausted: true,
                    resume_at: None,
                },
            ),
        ];
        let (emitted, more) = checkpoint.merge(window, pages);
        assert_eq!(ids(&emitted), ["c3", "d4"]);
        assert!(!more);
        assert_eq!(checkpoint.covered, 100);
        assert!(checkpoint.window.is_none());
    }

    #[test]
    fn test_checkpoint_round_trips_and_rejects_garbage() {
        let mut checkpoint = FeedsCheckpoint::starting_at(5, &["a", "b"]);
        checkpoint.window = Some(checkpoint.window(10, 0));
        let text = checkpoint.encode().expect("encodes");
        let back = FeedsCheckpoint::parse("x", &text, &["a", "b", "c"]).expect("parses");
        assert_eq!(back.position("c"), Position::at(5));
        for bad in [
            "",
            "{",
            "{\"v\":2,\"feeds\":{},\"covered\":0}",
            "[1]",
            "{\"v\":1}",
        ] {
            let error =
                FeedsCheckpoint::parse("x", &Checkpoint(bad.into()), &["a"]).expect_err(bad);
            assert!(
                matches!(error, ConnectorError::CorruptCheckpoint(_)),
                "{error}"
            );
        }
    }
}

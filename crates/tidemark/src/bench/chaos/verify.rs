//! The checks at the end of a chaos run, and the counts it prints.
//!
//! Each subscription's stream, read straight from PostgreSQL, is compared with what its
//! simulator was made to do, and with what its reader saw through the API:
//!
//! - sequence numbers are exactly `1..=n` and `n` is the subscription's `last_sequence`;
//! - every expected activity id is in the stream (`lost`), nothing else is (`duplicates`:
//!   a repeat of an upstream change under any id), and the expected ids come in their
//!   upstream order (`out_of_order`);
//! - the reader saw the whole stream, in order: ids it missed are `skipped`, ids it saw twice
//!   are `reader_repeats`;
//! - a webhook arrived after the subscription's last commit (`late_webhooks` otherwise);
//! - a time range read while the server called it final (`until` at or below the watermark)
//!   holds the same activities at the end (`ranges_changed` otherwise);
//! - every node exits cleanly on `SIGTERM` (`unclean_stops`), and afterwards no lease is
//!   held (`stuck_leases`).

use std::collections::{HashMap, HashSet};

use super::observers::FinalRange;

/// One stored activity: its sequence number, id and timestamp (epoch µs).
pub(super) type StoredRow = (i64, String, Option<i64>);

/// A subscription's stream as stored.
#[derive(Debug, Default, Clone)]
pub(super) struct StoredStream {
    /// `(sequence, activity id, timestamp)` in sequence order.
    pub rows: Vec<StoredRow>,
    /// When the last activity was committed (epoch µs).
    pub last_committed_at: Option<i64>,
    /// The subscription's `last_sequence`.
    pub last_sequence: i64,
}

/// Counts of a run, printed at its end; any violation count above zero fails the run.
#[derive(Debug, Default, Clone)]
pub(super) struct Tally {
    /// Activities in all streams.
    pub activities: u64,
    /// Upstream changes expected in the streams.
    pub expected: u64,
    /// Stream entries that are not an expected change, or repeat one.
    pub duplicates: u64,
    /// Expected changes missing from their stream.
    pub lost: u64,
    /// Expected changes in the wrong place relative to the one before.
    pub out_of_order: u64,
    /// Streams whose sequence numbers are not exactly 1..=n (or disagree with the head).
    pub sequence_gaps: u64,
    /// Stream entries a reader never saw.
    pub skipped: u64,
    /// Entries a reader saw more than once.
    pub reader_repeats: u64,
    /// Readers that saw their stream in another order than it is stored.
    pub reader_misordered: u64,
    /// Time ranges read while final (below the watermark) that the stream holds other
    /// activity in now.
    pub ranges_changed: u64,
    /// Subscriptions with activity and no webhook after their last commit.
    pub late_webhooks: u64,
    /// Subscriptions still leased after every node stopped.
    pub stuck_leases: u64,
    /// Nodes that did not exit cleanly, soon after `SIGTERM`.
    pub unclean_stops: u64,
    /// What went wrong, for the first few of each kind.
    pub messages: Vec<String>,
}

/// At most this many messages are kept.
const MAX_MESSAGES: usize = 30;

impl Tally {
    fn note(&mut self, message: String) {
        if self.messages.len() < MAX_MESSAGES {
            self.messages.push(message);
        }
    }

    /// Whether anything was violated.
    pub fn violations(&self) -> u64 {
        self.duplicates
            + self.lost
            + self.out_of_order
            + self.sequence_gaps
            + self.skipped
            + self.reader_repeats
            + self.reader_misordered
            + self.late_webhooks
            + self.ranges_changed
            + self.stuck_leases
            + self.unclean_stops
    }

    /// Checks one subscription: its stored stream against the `expected` upstream changes,
    /// what its reader `seen`, and when its last webhook arrived.
    pub fn check_subscription(
        &mut self,
        subscription: i64,
        expected: &[String],
        stored: &StoredStream,
        seen: &[String],
        reader_repeats: u64,
        last_webhook_at: Option<i64>,
    ) {
        self.activities += stored.rows.len() as u64;
        self.expected += expected.len() as u64;

        let gap = stored
            .rows
            .iter()
            .enumerate()
            .find(|(index, (sequence, _, _))| *sequence != *index as i64 + 1);
        if let Some((index, (sequence, _, _))) = gap {
            self.sequence_gaps += 1;
            self.note(format!(
                "subscription {subscription}: sequence {sequence} at position {}",
                index + 1
            ));
        } else if stored.last_sequence != stored.rows.len() as i64 {
            self.sequence_gaps += 1;
            self.note(format!(
                "subscription {subscription}: last_sequence {} but {} activities",
                stored.last_sequence,
                stored.rows.len()
            ));
        }

        let position: HashMap<&str, usize> = expected
            .iter()
            .enumerate()
            .map(|(index, id)| (id.as_str(), index))
            .collect();
        let mut in_stream = HashSet::new();
        let mut previous: Option<usize> = None;
        for (sequence, id, _) in &stored.rows {
            let Some(&index) = position.get(id.as_str()) else {
                self.duplicates += 1;
                self.note(format!(
                    "subscription {subscription}: unexpected activity {id} at sequence {sequence}"
                ));
                continue;
            };
            if !in_stream.insert(index) {
                self.duplicates += 1;
                self.note(format!(
                    "subscription {subscription}: {id} again at sequence {sequence}"
                ));
                continue;
            }
            if previous.is_some_and(|before| index < before) {
                self.out_of_order += 1;
                self.note(format!(
                    "subscription {subscription}: {id} (change {index}) at sequence {sequence}, after change {}",
                    previous.unwrap_or_default()
                ));
            }
            previous = Some(index);
        }
        let lost: Vec<&String> = expected
            .iter()
            .enumerate()
            .filter(|(index, _)| !in_stream.contains(index))
            .map(|(_, id)| id)
            .collect();
        if !lost.is_empty() {
            self.lost += lost.len() as u64;
            self.note(format!(
                "subscription {subscription}: {} of {} changes lost, first {}",
                lost.len(),
                expected.len(),
                lost[0]
            ));
        }

        let seen_set: HashSet<&str> = seen.iter().map(String::as_str).collect();
        let skipped = stored
            .rows
            .iter()
            .filter(|(_, id, _)| !seen_set.contains(id.as_str()))
            .count() as u64;
        if skipped > 0 {
            self.skipped += skipped;
            self.note(format!(
                "subscription {subscription}: the reader missed {skipped} of {} activities",
                stored.rows.len()
            ));
        }
        if reader_repeats > 0 {
            self.reader_repeats += reader_repeats;
            self.note(format!(
                "subscription {subscription}: the reader saw {reader_repeats} activities twice"
            ));
        }
        let stored_ids: Vec<&str> = stored.rows.iter().map(|(_, id, _)| id.as_str()).collect();
        let seen_ids: Vec<&str> = seen.iter().map(String::as_str).collect();
        if skipped == 0 && reader_repeats == 0 && stored_ids != seen_ids {
            self.reader_misordered += 1;
            self.note(format!(
                "subscription {subscription}: the reader saw the stream in another order"
            ));
        }

        if let Some(committed) = stored.last_committed_at {
            if last_webhook_at.is_none_or(|arrived| arrived < committed) {
                self.late_webhooks += 1;
                self.note(format!(
                    "subscription {subscription}: no webhook after its last commit at {committed} µs \
                     (last webhook: {last_webhook_at:?})"
                ));
            }
        }
    }

    /// Checks a range read while final against the stream as it ended: the same activities.
    pub fn check_final_range(&mut self, range: &FinalRange, stored: &StoredStream) {
        let now: HashSet<&str> = stored
            .rows
            .iter()
            .filter(|(_, _, at)| {
                at.is_some_and(|at| (range.from_micros..range.until_micros).contains(&at))
            })
            .map(|(_, id, _)| id.as_str())
            .collect();
        let then: HashSet<&str> = range.ids.iter().map(String::as_str).collect();
        if now != then {
            self.ranges_changed += 1;
            let gained = now.difference(&then).next().copied().unwrap_or("-");
            let missing = then.difference(&now).next().copied().unwrap_or("-");
            self.note(format!(
                "subscription {}: [{}, {}) µs was final with {} activities, now holds {} (e.g. gained {gained}, missing {missing})",
                range.subscription,
                range.from_micros,
                range.until_micros,
                then.len(),
                now.len()
            ));
        }
    }

    /// Records nodes that did not stop cleanly on `SIGTERM`.
    pub fn check_stops(&mut self, problems: Vec<String>) {
        self.unclean_stops += problems.len() as u64;
        for problem in problems {
            self.note(problem);
        }
    }

    /// Records leases still held after the nodes stopped.
    pub fn check_leases(&mut self, held: &[(i64, String, i64)]) {
        self.stuck_leases += held.len() as u64;
        for (subscription, holder, expires) in held.iter().take(5) {
            self.note(format!(
                "subscription {subscription}: still leased by {holder} until {expires} µs after every node stopped"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(ids: &[&str]) -> StoredStream {
        StoredStream {
            rows: ids
                .iter()
                .enumerate()
                .map(|(index, id)| (index as i64 + 1, (*id).to_owned(), Some(index as i64)))
                .collect(),
            last_committed_at: Some(10),
            last_sequence: ids.len() as i64,
        }
    }

    fn owned(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    #[test]
    fn test_a_faithful_stream_has_no_violations() {
        let mut tally = Tally::default();
        let ids = ["a", "b", "c"];
        tally.check_subscription(1, &owned(&ids), &stream(&ids), &owned(&ids), 0, Some(10));
        assert_eq!(tally.violations(), 0, "{:?}", tally.messages);
        assert_eq!(tally.activities, 3);
    }

    #[test]
    fn test_each_kind_of_violation_is_counted() {
        let mut tally = Tally::default();
        // "b" lost, "x" invented, "c" before "a", reader missed "a", webhook before the commit.
        tally.check_subscription(
            1,
            &owned(&["a", "b", "c"]),
            &stream(&["c", "a", "x"]),
            &owned(&["c", "x"]),
            0,
            Some(9),
        );
        assert_eq!(
            (
                tally.lost,
                tally.duplicates,
                tally.out_of_order,
                tally.skipped
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(tally.late_webhooks, 1);
        let mut gaps = stream(&["a", "b"]);
        gaps.rows[1].0 = 3;
        let mut tally = Tally::default();
        tally.check_subscription(2, &owned(&["a", "b"]), &gaps, &owned(&["a", "b"]), 1, None);
        assert_eq!((tally.sequence_gaps, tally.reader_repeats), (1, 1));
        assert_eq!(tally.late_webhooks, 1);
    }

    #[test]
    fn test_a_final_range_that_gained_activity_is_a_violation() {
        let stored = stream(&["a", "b", "c"]);
        let range = |ids: &[&str]| FinalRange {
            subscription: 1,
            from_micros: 0,
            until_micros: 2,
            ids: ids.iter().map(|id| (*id).to_owned()).collect(),
        };
        let mut tally = Tally::default();
        tally.check_final_range(&range(&["a", "b"]), &stored);
        assert_eq!(tally.ranges_changed, 0, "{:?}", tally.messages);
        tally.check_final_range(&range(&["a"]), &stored);
        assert_eq!(tally.ranges_changed, 1);
    }
}

//! The opaque [`Cursor`]: a position in one subscription's stream, authenticated.
//!
//! # Format
//! `base64url(version | flags | subscription | position [| from | until | at] | tag)`, where the
//! integers are big-endian 8-byte values and `tag` is the first 12 bytes of
//! HMAC-SHA256(key, everything before it). The key ([`CursorKey`]) belongs to the store, so
//! cursors survive restarts and are valid on every node sharing that store.
//!
//! A cursor decoded for a different subscription, or altered in any bit, is rejected
//! ([`CursorError`]); it is never silently reinterpreted. The position is the sequence number of
//! the last activity the holder has seen (0: nothing yet). A cursor of a time range also names
//! the range and the timestamp of that last activity (`at`): a range is read in (timestamp,
//! sequence) order.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::account::SubscriptionId;

const VERSION: u8 = 1;
const FLAG_RANGE: u8 = 0b01;
const FLAG_UNTIL: u8 = 0b10;
const FLAG_AT: u8 = 0b100;
const TAG_LEN: usize = 12;
/// No real cursor is longer than this (bytes); longer input is rejected before decoding.
pub const MAX_ENCODED_LEN: usize = 128;

/// Why a cursor string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CursorError {
    /// Not a cursor Tidemark could have issued (bad encoding or length).
    #[error("malformed cursor")]
    Malformed,
    /// Longer than any cursor Tidemark issues ([`MAX_ENCODED_LEN`] bytes).
    #[error("cursor is longer than {MAX_ENCODED_LEN} bytes, so not one this server issued")]
    TooLong,
    /// The cursor's signature does not match: it was altered, or issued by another deployment.
    #[error("invalid cursor: it was not issued by this server or has been altered")]
    Tampered,
    /// A valid cursor, but of another subscription.
    #[error("cursor belongs to another subscription")]
    WrongSubscription,
}

/// The secret that authenticates cursors (kept by the store, 32 random bytes).
#[derive(Clone)]
pub struct CursorKey([u8; 32]);

impl CursorKey {
    /// Wraps key bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        CursorKey(bytes)
    }

    /// The key bytes (for persisting or migrating a store).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    fn tag(&self, payload: &[u8]) -> [u8; TAG_LEN] {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("hmac takes any key length"));
        mac.update(payload);
        let full = mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }
}

impl std::fmt::Debug for CursorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CursorKey(..)")
    }
}

/// A fixed time range a cursor is bound to: `[from, until)` in microseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CursorRange {
    /// Inclusive lower bound.
    pub from_micros: i64,
    /// Exclusive upper bound; `None` is open-ended.
    pub until_micros: Option<i64>,
    /// Timestamp of the last activity seen in the range (with the cursor's `position` as the
    /// tie-breaker); `None`: nothing seen yet.
    pub at_micros: Option<i64>,
}

/// A position in one subscription's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// The subscription whose stream this cursor points into.
    pub subscription: SubscriptionId,
    /// Sequence number of the last activity already seen (0: none).
    pub position: u64,
    /// The time range this cursor is bound to, for time-based queries.
    pub range: Option<CursorRange>,
}

impl Cursor {
    /// A cursor after `position` in `subscription`'s stream.
    pub fn new(subscription: SubscriptionId, position: u64) -> Self {
        Cursor {
            subscription,
            position,
            range: None,
        }
    }

    /// Encodes and signs the cursor.
    pub fn encode(&self, key: &CursorKey) -> String {
        let mut bytes = Vec::with_capacity(2 + 8 * 4 + TAG_LEN);
        bytes.push(VERSION);
        let mut flags = 0u8;
        if let Some(range) = self.range {
            flags |= FLAG_RANGE;
            if range.until_micros.is_some() {
                flags |= FLAG_UNTIL;
            }
            if range.at_micros.is_some() {
                flags |= FLAG_AT;
            }
        }
        bytes.push(flags);
        bytes.extend_from_slice(&self.subscription.to_be_bytes());
        bytes.extend_from_slice(&self.position.to_be_bytes());
        if let Some(range) = self.range {
            bytes.extend_from_slice(&range.from_micros.to_be_bytes());
            if let Some(until) = range.until_micros {
                bytes.extend_from_slice(&until.to_be_bytes());
            }
            if let Some(at) = range.at_micros {
                bytes.extend_from_slice(&at.to_be_bytes());
            }
        }
        let tag = key.tag(&bytes);
        bytes.extend_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decodes a cursor string, checking its signature and that it names `subscription`.
    ///
    /// # Errors
    /// [`CursorError::TooLong`], [`CursorError::Malformed`], [`CursorError::Tampered`] or
    /// [`CursorError::WrongSubscription`].
    pub fn decode(
        text: &str,
        key: &CursorKey,
        subscription: SubscriptionId,
    ) -> Result<Cursor, CursorError> {
        if text.len() > MAX_ENCODED_LEN {
            return Err(CursorError::TooLong);
        }
        if text.is_empty() {
            return Err(CursorError::Malformed);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| CursorError::Malformed)?;
        if bytes.len() < 2 + 16 + TAG_LEN {
            return Err(CursorError::Malformed);
        }
        let (payload, tag) = bytes.split_at(bytes.len() - TAG_LEN);
        if !constant_time_eq(&key.tag(payload), tag) {
            return Err(CursorError::Tampered);
        }
        if payload[0] != VERSION {
            return Err(CursorError::Malformed);
        }
        let flags = payload[1];
        let expected_len = 2
            + 16
            + if flags & FLAG_RANGE != 0 { 8 } else { 0 }
            + if flags & FLAG_UNTIL != 0 { 8 } else { 0 }
            + if flags & FLAG_AT != 0 { 8 } else { 0 };
        let range_flags = FLAG_UNTIL | FLAG_AT;
        if payload.len() != expected_len
            || flags & !(FLAG_RANGE | range_flags) != 0
            || (flags & FLAG_RANGE == 0 && flags & range_flags != 0)
        {
            return Err(CursorError::Malformed);
        }
        let word = |index: usize| -> [u8; 8] {
            let start = 2 + index * 8;
            let mut out = [0u8; 8];
            out.copy_from_slice(&payload[start..start + 8]);
            out
        };
        let cursor_subscription = i64::from_be_bytes(word(0));
        let position = u64::from_be_bytes(word(1));
        let range = (flags & FLAG_RANGE != 0).then(|| {
            let until_micros = (flags & FLAG_UNTIL != 0).then(|| i64::from_be_bytes(word(3)));
            let at_word = if until_micros.is_some() { 4 } else { 3 };
            CursorRange {
                from_micros: i64::from_be_bytes(word(2)),
                until_micros,
                at_micros: (flags & FLAG_AT != 0).then(|| i64::from_be_bytes(word(at_word))),
            }
        });
        if cursor_subscription != subscription {
            return Err(CursorError::WrongSubscription);
        }
        Ok(Cursor {
            subscription,
            position,
            range,
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CursorKey {
        CursorKey::new([7u8; 32])
    }

    #[test]
    fn test_cursor_round_trips_with_and_without_range() {
        let plain = Cursor::new(42, 1_000_000);
        assert_eq!(Cursor::decode(&plain.encode(&key()), &key(), 42), Ok(plain));
        let ranged = Cursor {
            range: Some(CursorRange {
                from_micros: -5,
                until_micros: Some(9),
                at_micros: None,
            }),
            ..plain
        };
        assert_eq!(
            Cursor::decode(&ranged.encode(&key()), &key(), 42),
            Ok(ranged)
        );
        let open = Cursor {
            range: Some(CursorRange {
                from_micros: 5,
                until_micros: None,
                at_micros: None,
            }),
            ..plain
        };
        assert_eq!(Cursor::decode(&open.encode(&key()), &key(), 42), Ok(open));
        for (until, at) in [(Some(9), Some(7)), (None, Some(-3))] {
            let positioned = Cursor {
                range: Some(CursorRange {
                    from_micros: -5,
                    until_micros: until,
                    at_micros: at,
                }),
                ..plain
            };
            let text = positioned.encode(&key());
            assert!(text.len() <= MAX_ENCODED_LEN, "{}", text.len());
            assert_eq!(Cursor::decode(&text, &key(), 42), Ok(positioned));
        }
    }

    #[test]
    fn test_cursor_of_another_subscription_is_rejected() {
        let text = Cursor::new(42, 3).encode(&key());
        assert_eq!(
            Cursor::decode(&text, &key(), 43),
            Err(CursorError::WrongSubscription)
        );
    }

    #[test]
    fn test_every_single_character_change_is_rejected() {
        let text = Cursor::new(42, 3).encode(&key());
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for index in 0..text.len() {
            for replacement in alphabet.chars() {
                let mut altered: Vec<char> = text.chars().collect();
                if altered[index] == replacement {
                    continue;
                }
                altered[index] = replacement;
                let altered: String = altered.into_iter().collect();
                assert!(
                    Cursor::decode(&altered, &key(), 42).is_err(),
                    "accepted {altered}"
                );
            }
        }
    }

    #[test]
    fn test_garbage_and_other_keys_are_rejected() {
        for garbage in ["", "-1", "after-auth", "%%%", "AAAA", &"A".repeat(500)] {
            assert!(Cursor::decode(garbage, &key(), 1).is_err(), "{garbage}");
        }
        assert_eq!(
            Cursor::decode(&"A".repeat(MAX_ENCODED_LEN + 1), &key(), 1),
            Err(CursorError::TooLong)
        );
        assert_eq!(
            Cursor::decode(&"A".repeat(MAX_ENCODED_LEN), &key(), 1),
            Err(CursorError::Tampered),
            "at the limit the text is decoded (and its signature does not match)"
        );
        let text = Cursor::new(1, 3).encode(&CursorKey::new([8u8; 32]));
        assert_eq!(Cursor::decode(&text, &key(), 1), Err(CursorError::Tampered));
    }
}

//! Timestamps as the Kloudless API writes them: ISO 8601, UTC, microseconds, `Z` suffix
//! (`2019-04-25T08:18:34.053393Z`).

use chrono::{DateTime, SecondsFormat, Utc};

/// Formats a timestamp the way every Tidemark response does.
pub fn format(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Parses an ISO 8601 / RFC 3339 timestamp with any offset (or `Z`) into UTC.
///
/// # Errors
/// Returns the parser's message when `text` is not RFC 3339.
pub fn parse(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|ts| ts.with_timezone(&Utc))
        .map_err(|e| format!("`{text}` is not an ISO 8601 timestamp: {e}"))
}

/// Serde adapter for `DateTime<Utc>` fields written with [`format`].
pub mod iso {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes with microsecond precision and a `Z` suffix.
    pub fn serialize<S: Serializer>(ts: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(ts))
    }

    /// Accepts any RFC 3339 offset.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Serde adapter for `Option<DateTime<Utc>>` fields (`null` when absent).
pub mod iso_opt {
    use super::*;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes `None` as `null`.
    pub fn serialize<S: Serializer>(ts: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match ts {
            Some(ts) => s.serialize_str(&format(ts)),
            None => s.serialize_none(),
        }
    }

    /// Accepts `null` or any RFC 3339 offset.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => parse(&text).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_format_uses_micros_and_z() {
        let ts = parse("2019-04-25T10:18:34.053393+02:00").expect("valid");
        assert_eq!(format(&ts), "2019-04-25T08:18:34.053393Z");
    }

    #[test]
    fn test_parse_rejects_non_iso() {
        assert!(parse("yesterday").is_err());
        assert!(parse("2019-04-25").is_err());
    }
}

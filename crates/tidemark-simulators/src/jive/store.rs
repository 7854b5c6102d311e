//! The Jive simulator's data: contents with their scripted versions, deleted objects, places
//! and the credentials it accepts. Every scripted change carries the instant it becomes
//! visible, which is how lag is modelled.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};

use super::{ContentSpec, Person};

/// The place content without one goes to.
const DEFAULT_PLACE: &str = "General";

/// One content item as scripted.
#[derive(Debug, Clone)]
pub struct ContentRecord {
    pub id: u64,
    pub content_type: String,
    pub subject: String,
    pub author: Person,
    pub place_id: u64,
    pub place_name: String,
    pub published: DateTime<Utc>,
    /// Every scripted `updated`, in scripting order, with when it becomes visible.
    versions: Vec<(Instant, DateTime<Utc>)>,
    /// When the deletion becomes visible, once deleted.
    deleted_visible_at: Option<Instant>,
}

impl ContentRecord {
    /// The `updated` a request at `now` sees, or `None` if it sees no such content (not yet
    /// visible, or its deletion already is).
    pub fn visible_updated(&self, now: Instant) -> Option<DateTime<Utc>> {
        if self.deleted_visible_at.is_some_and(|at| at <= now) {
            return None;
        }
        self.versions
            .iter()
            .rev()
            .find(|(visible_at, _)| *visible_at <= now)
            .map(|(_, updated)| *updated)
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted_visible_at.is_some()
    }
}

/// One deletedObject.
#[derive(Debug, Clone)]
pub struct DeletedRecord {
    /// Scripting order: the tie-breaker among equal event dates.
    pub seq: u64,
    pub uuid: String,
    pub object_type: String,
    pub object_id: u64,
    pub event_date: DateTime<Utc>,
    visible_at: Instant,
}

impl DeletedRecord {
    pub fn is_visible(&self, now: Instant) -> bool {
        self.visible_at <= now
    }
}

/// Everything the Jive simulator knows.
#[derive(Debug)]
pub struct JiveData {
    pub token: String,
    pub basic_user: String,
    pub basic_password: String,
    pub max_count: usize,
    next_content_id: u64,
    next_place_id: u64,
    next_seq: u64,
    pub contents: BTreeMap<u64, ContentRecord>,
    pub deleted: Vec<DeletedRecord>,
    places: BTreeMap<String, u64>,
}

impl Default for JiveData {
    fn default() -> Self {
        JiveData {
            token: "sim-token".into(),
            basic_user: "admin".into(),
            basic_password: "password".into(),
            max_count: super::wire::DEFAULT_MAX_COUNT,
            next_content_id: 1000,
            next_place_id: 2000,
            next_seq: 0,
            contents: BTreeMap::new(),
            deleted: Vec::new(),
            places: BTreeMap::new(),
        }
    }
}

/// Jive stores times to the millisecond; so does the simulator, so what a client reads back
/// is exactly what filters compare.
fn to_millis(time: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(time.timestamp_millis()).unwrap_or(time)
}

impl JiveData {
    pub fn create(&mut self, spec: ContentSpec, visible_at: Instant) -> u64 {
        self.next_content_id += 1;
        let id = self.next_content_id;
        let place_name = spec.place.unwrap_or_else(|| DEFAULT_PLACE.to_string());
        let place_id = match self.places.get(&place_name) {
            Some(place_id) => *place_id,
            None => {
                self.next_place_id += 1;
                self.places.insert(place_name.clone(), self.next_place_id);
                self.next_place_id
            }
        };
        let at = to_millis(spec.at);
        self.contents.insert(
            id,
            ContentRecord {
                id,
                content_type: spec.content_type,
                subject: spec.subject,
                author: spec.author,
                place_id,
                place_name,
                published: at,
                versions: vec![(visible_at, at)],
                deleted_visible_at: None,
            },
        );
        id
    }

    pub fn modify(&mut self, id: &str, at: DateTime<Utc>, visible_at: Instant) -> bool {
        let Some(record) = id
            .trim()
            .parse::<u64>()
            .ok()
            .and_then(|id| self.contents.get_mut(&id))
        else {
            return false;
        };
        if record.is_deleted() {
            return false;
        }
        record.versions.push((visible_at, to_millis(at)));
        true
    }

    pub fn delete(&mut self, id: &str, at: DateTime<Utc>, visible_at: Instant) -> Option<String> {
        let record = id
            .trim()
            .parse::<u64>()
            .ok()
            .and_then(|id| self.contents.get_mut(&id))?;
        if record.is_deleted() {
            return None;
        }
        record.deleted_visible_at = Some(visible_at);
        let uuid = random_uuid();
        self.next_seq += 1;
        self.deleted.push(DeletedRecord {
            seq: self.next_seq,
            uuid: uuid.clone(),
            object_type: record.content_type.clone(),
            object_id: record.id,
            event_date: to_millis(at),
            visible_at,
        });
        Some(uuid)
    }

    /// A random content that has not been deleted, for the generator.
    pub fn random_live_id(&self, roll: f64) -> Option<u64> {
        let first = *self.contents.keys().next()?;
        let last = *self.contents.keys().next_back()?;
        // `roll` is in [0, 1); the product stays within [first, last].
        let pick = first + ((last - first) as f64 * roll) as u64;
        self.contents
            .range(pick..)
            .chain(self.contents.range(..pick))
            .find(|(_, record)| !record.is_deleted())
            .map(|(id, _)| *id)
    }

    pub fn live_count(&self) -> usize {
        self.contents.values().filter(|c| !c.is_deleted()).count()
    }
}

/// A random (version 4) UUID, as Jive uses for deletedObject ids.
fn random_uuid() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn test_versions_become_visible_in_turn() {
        let mut data = JiveData::default();
        let now = Instant::now();
        let created = Utc::now() - chrono::Duration::minutes(5);
        let id = data.create(ContentSpec::new("Doc", created), now);
        let modified_at = Utc::now();
        assert!(data.modify(&id.to_string(), modified_at, now + Duration::from_secs(10)));
        let record = &data.contents[&id];
        assert_eq!(record.visible_updated(now), Some(to_millis(created)));
        assert_eq!(
            record.visible_updated(now + Duration::from_secs(10)),
            Some(to_millis(modified_at))
        );
        assert_eq!(record.visible_updated(now - Duration::from_secs(1)), None);
    }

    #[test]
    fn test_deleted_content_cannot_be_modified_or_deleted_again() {
        let mut data = JiveData::default();
        let now = Instant::now();
        let id = data
            .create(ContentSpec::new("Doc", Utc::now()), now)
            .to_string();
        assert!(data.delete(&id, Utc::now(), now).is_some());
        assert!(!data.modify(&id, Utc::now(), now));
        assert!(data.delete(&id, Utc::now(), now).is_none());
        assert!(data.delete("nope", Utc::now(), now).is_none());
    }

    #[test]
    fn test_uuid_shape() {
        let uuid = random_uuid();
        assert_eq!(uuid.len(), 36);
        assert_eq!(uuid.as_bytes()[14], b'4');
    }
}

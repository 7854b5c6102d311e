//! Random, realistic Jive activity for demos and benchmarks: mostly new content, some edits,
//! a few deletions, all timestamped now.

use std::sync::Arc;

use chrono::Utc;
use rand::seq::IndexedRandom;
use rand::Rng;

use super::{ContentSpec, JiveShared, Person};
use crate::server::lock;

const TYPES: &[&str] = &[
    "document",
    "document",
    "discussion",
    "file",
    "post",
    "poll",
    "idea",
];
const PLACES: &[&str] = &[
    "General",
    "Engineering",
    "Sales",
    "Marketing",
    "HR",
    "Support",
];
const TOPICS: &[&str] = &[
    "Quarterly report",
    "Onboarding checklist",
    "Release notes",
    "Security review",
    "Team offsite",
    "Roadmap draft",
    "Customer feedback",
    "Budget proposal",
    "Incident postmortem",
    "Hiring plan",
];
const QUALIFIERS: &[&str] = &[
    "Q1", "Q2", "Q3", "Q4", "v2", "final", "draft", "EMEA", "2025",
];
const PEOPLE: &[(&str, &str, &str)] = &[
    ("2001", "Jane Doe", "jane.doe@example.com"),
    ("2002", "Ravi Patel", "ravi.patel@example.com"),
    ("2003", "Chen Wei", "chen.wei@example.com"),
    ("2004", "Maria Garcia", "maria.garcia@example.com"),
    ("2005", "Tom Okafor", "tom.okafor@example.com"),
];

/// Replaces the simulator's generator with one running at `rate_per_sec`.
pub(super) fn spawn(shared: &Arc<JiveShared>, rate_per_sec: f64) {
    let target = Arc::clone(shared);
    crate::generator::spawn(&shared.runtime, rate_per_sec, move || step(&target));
}

/// One random change.
fn step(shared: &JiveShared) {
    let roll: f64 = rand::rng().random();
    let pick: f64 = rand::rng().random();
    let existing = lock(&shared.data).random_live_id(pick);
    match existing {
        Some(id) if roll >= 0.9 => {
            let _ = shared.delete_content(&id.to_string(), Utc::now());
        }
        Some(id) if roll >= 0.6 => {
            shared.modify_content(&id.to_string(), Utc::now());
        }
        _ => {
            let spec = random_spec();
            shared.create_content(spec);
        }
    }
}

fn random_spec() -> ContentSpec {
    let mut rng = rand::rng();
    let topic = TOPICS.choose(&mut rng).copied().unwrap_or("Notes");
    let qualifier = QUALIFIERS.choose(&mut rng).copied().unwrap_or("draft");
    let (id, name, email) = PEOPLE.choose(&mut rng).copied().unwrap_or((
        "1",
        "Administrator",
        "admin@example.jiveon.com",
    ));
    let place = PLACES.choose(&mut rng).copied().unwrap_or("General");
    let content_type = TYPES.choose(&mut rng).copied().unwrap_or("document");
    ContentSpec::new(format!("{topic} ({qualifier})"), Utc::now())
        .with_type(content_type)
        .with_author(Person::new(id, name, email))
        .with_place(place)
}

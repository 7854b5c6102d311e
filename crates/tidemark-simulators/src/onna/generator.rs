//! Random, realistic Onna activity for demos and benchmarks: UI events (logins, navigation,
//! searches, sharing) in the activity log and source/workspace changes in the audit log, all
//! timestamped now.

use std::sync::Arc;

use chrono::Utc;
use rand::seq::IndexedRandom;
use rand::Rng;

use super::{ActivityLogSpec, AuditLogSpec, OnnaShared};

const USERS: &[(&str, &str)] = &[
    ("acmeuser@acmecorp.com", "Acmeuser"),
    ("jane.doe@acmecorp.com", "Jane Doe"),
    ("ravi.patel@acmecorp.com", "Ravi Patel"),
    ("legal.team@acmecorp.com", "Legal Team"),
];
const UI_EVENTS: &[(&str, &str)] = &[
    ("login", "/login"),
    ("logout", "/logout"),
    ("nav-menu-opened", "/dashboard/workspace/list"),
    ("nav-menu-closed", "/dashboard/workspace/list"),
    ("nav-menu-workspaces", "/dashboard/workspace/list"),
    ("nav-menu-sources", "/dashboard/datasource/list"),
    ("nav-menu-shared-with-me", "/dashboard/shared"),
    ("search", "/dashboard/search"),
    ("search-bar-submit", "/dashboard/search"),
    ("sharing", "/dashboard/workspace/details"),
    ("sharing-add-user", "/dashboard/workspace/details"),
    ("sharing-update-sharing", "/dashboard/workspace/details"),
    ("confirm-deletion", "/dashboard/workspace/details"),
    ("export-created", "/dashboard/exports"),
    ("group-added", "/dashboard/admin/groups"),
];
const SOURCES: &[&str] = &[
    "SlackDatasource",
    "GDriveDatasource",
    "DropboxDatasource",
    "BoxDatasource",
];
const NAMES: &[&str] = &[
    "DEMO DATASOURCE",
    "Legal hold 2025",
    "Sales archive",
    "HR investigations",
];
const IPS: &[&str] = &["10.9.4.29", "10.9.4.30", "172.16.2.11", "192.168.1.20"];

/// Replaces the simulator's generator with one running at `rate_per_sec`.
pub(super) fn spawn(shared: &Arc<OnnaShared>, rate_per_sec: f64) {
    let target = Arc::clone(shared);
    crate::generator::spawn(&shared.runtime, rate_per_sec, move || step(&target));
}

/// One random record: three in four go to the activity log.
fn step(shared: &OnnaShared) {
    let audit = rand::rng().random_bool(0.25);
    if audit {
        shared.add_audit(random_audit());
    } else {
        shared.add_activity(random_activity());
    }
}

fn random_activity() -> ActivityLogSpec {
    let mut rng = rand::rng();
    let (user, _) = USERS.choose(&mut rng).copied().unwrap_or(USERS[0]);
    let (action, route) = UI_EVENTS.choose(&mut rng).copied().unwrap_or(UI_EVENTS[0]);
    ActivityLogSpec::new(action, user, Utc::now()).with_route(route)
}

fn random_audit() -> AuditLogSpec {
    let mut rng = rand::rng();
    let source = SOURCES.choose(&mut rng).copied().unwrap_or(SOURCES[0]);
    let name = NAMES.choose(&mut rng).copied().unwrap_or(NAMES[0]);
    let (user, user_name) = USERS.choose(&mut rng).copied().unwrap_or(USERS[0]);
    let ip = IPS.choose(&mut rng).copied().unwrap_or(IPS[0]);
    let object_id: String = rand::random::<[u8; 16]>()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let url = format!(
        "https://enterprise.onna.com/ACMECORP/{user}/dashboard/datasource/details/{user}/{object_id}"
    );
    let roll: f64 = rng.random();
    let (action, verb) = if roll < 0.6 {
        ("add", "Added")
    } else if roll < 0.85 {
        ("delete", "Deleted")
    } else {
        ("update", "Updated")
    };
    let mut spec = AuditLogSpec::new(
        action,
        format!("{verb} {source} source: \"{name}\" ({url})"),
        Utc::now(),
    );
    spec.user = user.into();
    spec.user_name = user_name.into();
    spec.ip = ip.into();
    spec.request_url = url;
    if rng.random_bool(0.05) {
        spec.log_type = "error".into();
        spec.message = format!("Datasource Failed: {source} \"{name}\"");
    }
    spec
}

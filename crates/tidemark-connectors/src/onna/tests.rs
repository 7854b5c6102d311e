//! The Onna connector's parsing and mapping; its polling is proven against the simulator over
//! real HTTP and through the engine (crates/tidemark-engine/tests).

use super::*;
use serde_json::json;

#[test]
fn test_config_builds_the_documented_base_url() {
    let parsed =
        OnnaConfig::from_value(&json!({"account": "ACMECORP", "credentials": {"token": "t"}}))
            .expect("valid");
    assert_eq!(
        parsed.base_url,
        "https://enterprise.onna.com/ACMECORP/ACMECORP"
    );
    assert_eq!(parsed.page_size, DEFAULT_PAGE_SIZE);
    for (bad, says) in [
        (json!({"credentials": {"token": "t"}}), "account"),
        (
            json!({"account": "A/B", "credentials": {"token": "t"}}),
            "account",
        ),
        (
            json!({"account": "A", "credentials": {"username": "u", "password": "p"}}),
            "credentials",
        ),
        (
            json!({"account": "A", "credentials": {"token": "t"}, "page_size": 0}),
            "page_size",
        ),
        (
            json!({"account": "A", "credentials": {"token": "t"}, "max_hits": 0}),
            "max_hits",
        ),
        (
            json!({"account": "A", "credentials": {"token": "t"}, "epoch": 1}),
            "epoch",
        ),
    ] {
        let error = OnnaConfig::from_value(&bad).expect_err("rejected");
        assert!(error.to_string().contains(says), "{bad}: {error}");
    }
}

#[test]
fn test_activity_log_hit_maps_like_the_seed() {
    let hit = json!({"_index": "user-activity-account-2019-07-11", "_type": "doc",
        "_id": "f4k3kN8cdf4k3ma3f4k3", "_score": null,
        "_source": {"type": "log", "action": "login", "date": "2019-07-11",
            "@timestamp": "1562857496000",
            "payload": {"user": "acmeuser@acmecorp.com", "user_agent": "UA", "session-id": "s1",
                "account": "ACMECORP", "route": "/dashboard"}},
        "sort": [1562857496000_i64]});
    let item = activity_item(&hit, 4).expect("maps");
    assert_eq!(item.ts, 1_562_857_496_000);
    assert_eq!(item.activity.id, "activity:f4k3kN8cdf4k3ma3f4k3");
    assert_eq!(item.activity.event_category, EventCategory::Authentication);
    assert_eq!(item.activity.event_subtype, EventSubtype::Login);
    assert_eq!(
        item.activity.actor.as_ref().expect("actor")["email"],
        "acmeuser@acmecorp.com"
    );
    let session = item.activity.session.as_ref().expect("session");
    assert_eq!(session["user_agent"], "UA");
    assert_eq!(session["id"], "s1");
    assert_eq!(item.activity.stream.as_deref(), Some("activityLog"));
    // Without `sort`, the string @timestamp is read.
    let mut unsorted = hit.clone();
    unsorted.as_object_mut().expect("object").remove("sort");
    assert_eq!(
        activity_item(&unsorted, 4).expect("maps").ts,
        1_562_857_496_000
    );
}

#[test]
fn test_activity_actions_map_per_the_table() {
    use EventCategory as C;
    use EventSubtype as S;
    use EventType as T;
    for (action, expected) in [
        ("logout", (C::Authentication, T::Access, S::Logout)),
        ("sharing", (C::Collaboration, T::Add, S::PermissionCreate)),
        (
            "sharing-add-user",
            (C::Collaboration, T::Add, S::PermissionCreate),
        ),
        (
            "sharing-update-sharing",
            (C::Collaboration, T::Update, S::PermissionUpdate),
        ),
        (
            "confirm-source-deletion",
            (C::Object, T::Delete, S::Unknown),
        ),
        (
            "confirm-label group-deletion",
            (C::Object, T::Delete, S::Unknown),
        ),
        ("confirm-user-deletion", (C::Team, T::Delete, S::RemoveUser)),
        ("group-added", (C::Team, T::Add, S::Unknown)),
        ("export-created", (C::Object, T::Add, S::Unknown)),
        ("add-gdrive-datasource", (C::Object, T::Add, S::Unknown)),
        ("nav-menu-opened", (C::Object, T::Access, S::Unknown)),
        ("search-bar-submit", (C::Object, T::Access, S::Unknown)),
        ("tracking-session", (C::Unknown, T::Unknown, S::Unknown)),
    ] {
        assert_eq!(activity_event(action), expected, "{action}");
    }
}

#[test]
fn test_audit_records_map_per_the_table() {
    use EventCategory as C;
    use EventSubtype as S;
    use EventType as T;
    for ((action, message, log_type), expected) in [
        (
            ("add", "Added SlackDatasource source", Some("success")),
            (C::Object, T::Add, S::Unknown),
        ),
        (
            ("delete", "Deleted Workspace", None),
            (C::Object, T::Delete, S::Unknown),
        ),
        (
            ("add", "Datasource Failed", Some("error")),
            (C::Object, T::Error, S::Unknown),
        ),
        (
            ("view", "Resource visited", None),
            (C::Object, T::Access, S::Preview),
        ),
        (
            ("share", "Resource was shared with user", None),
            (C::Collaboration, T::Add, S::PermissionCreate),
        ),
        (
            ("update", "Custom field change", None),
            (C::Object, T::Update, S::PropertyUpdate),
        ),
        (
            ("update", "Renamed", None),
            (C::Object, T::Update, S::Unknown),
        ),
        (
            ("frobnicate", "", None),
            (C::Object, T::Unknown, S::Unknown),
        ),
    ] {
        assert_eq!(
            audit_event(action, message, log_type),
            expected,
            "{action} {message}"
        );
    }
    let hit = json!({"_id": "AWvhjIEJdgM3tma3FfkT", "_source": {"type": "log",
        "@timestamp": "2019-07-11T15:00:10.104770+00:00", "action": "add",
        "message": "Added SlackDatasource source: \"DEMO\"",
        "payload": {"ip": "12.34.56.78", "user": "u@example.com", "user_name": "U",
            "category": "source", "code": "DS001", "log_type": "success"}},
        "sort": [1562857210104_i64]});
    let item = audit_item(&hit, 2).expect("maps");
    assert_eq!(item.ts, 1_562_857_210_104);
    let timestamp = item.activity.timestamp.expect("timestamp");
    assert_eq!(
        timestamp.timestamp_subsec_micros(),
        104_770,
        "microseconds kept"
    );
    assert_eq!(
        item.activity.session.as_ref().expect("session")["ip"],
        "12.34.56.78"
    );
    assert_eq!(
        item.activity.target.as_ref().expect("target")["type"],
        "source"
    );
}

#[test]
fn test_malformed_hits_are_errors_not_panics() {
    for bad in [
        json!({"_source": {}, "sort": [1]}),
        json!({"_id": "", "sort": [1]}),
        json!({"_id": "x", "_source": {}}),
        json!({"_id": "x", "_source": {"@timestamp": "noon"}}),
        json!(7),
    ] {
        assert!(
            matches!(activity_item(&bad, 1), Err(ConnectorError::BadResponse(_))),
            "{bad}"
        );
        assert!(audit_item(&bad, 1).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn test_polls_both_logs_of_the_simulator_merged_in_time_order() {
    use tidemark_simulators::onna::{ActivityLogSpec, AuditLogSpec};
    let sim = tidemark_simulators::OnnaSimulator::start()
        .await
        .expect("simulator");
    let created = Utc::now() - chrono::Duration::seconds(10);
    let second = |n: i64| created + chrono::Duration::seconds(n);
    sim.add_activity(ActivityLogSpec::new("login", "a@example.com", second(1)));
    sim.add_audit(AuditLogSpec::new("add", "Created Workspace", second(2)));
    sim.add_activity(ActivityLogSpec::new("logout", "a@example.com", second(3)));
    let connector = OnnaConnector::new(
        OnnaConfig::from_value(&json!({
            "base_url": sim.base_url(),
            "credentials": {"token": "sim-token"},
            "safety_lag_seconds": 0,
        }))
        .expect("config"),
    )
    .expect("connector");
    connector.validate().await.expect("valid credentials");
    let context = crate::jive::tests::context("onna", created);
    let outcome = connector.poll(&context, None).await.expect("polls");
    let streams: Vec<_> = outcome
        .activities
        .iter()
        .map(|a| (a.stream.clone().unwrap_or_default(), a.event_type))
        .collect();
    assert_eq!(
        streams,
        [
            ("activityLog".to_owned(), EventType::Access),
            ("auditLog".to_owned(), EventType::Add),
            ("activityLog".to_owned(), EventType::Access),
        ]
    );
    assert!(!outcome.more);
    let again = connector
        .poll(&context, Some(&outcome.checkpoint))
        .await
        .expect("polls");
    assert!(again.activities.is_empty(), "nothing repeated");
    sim.set_token("rotated");
    let error = connector.validate().await.expect_err("rejected");
    assert!(matches!(error, ConnectorError::Unauthorized(_)), "{error}");
}

//! The Jive connector's parsing and mapping; its polling is proven against the simulator over
//! real HTTP (`simulated` below) and through the engine (crates/tidemark-engine/tests).

use super::*;
use serde_json::json;

fn config(extra: Value) -> Value {
    let mut config = json!({
        "base_url": "http://127.0.0.1:9/api/core/v3",
        "credentials": {"username": "admin", "password": "password"},
    });
    if let (Some(config), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        config.extend(extra.clone());
    }
    config
}

#[test]
fn test_config_defaults_and_bad_values() {
    let parsed = JiveConfig::from_value(&config(json!({}))).expect("valid");
    assert_eq!(parsed.page_size, MAX_PAGE_SIZE);
    assert_eq!(parsed.safety_lag, DEFAULT_SAFETY_LAG);
    assert!(parsed.content_types.is_empty());
    for (bad, says) in [
        (json!({"page_size": 0}), "page_size"),
        (json!({"page_size": 101}), "page_size"),
        (json!({"safety_lag_seconds": -1}), "safety_lag_seconds"),
        (json!({"content_types": "document"}), "content_types"),
        (json!({"content_types": ["doc ument"]}), "content_types"),
        (json!({"colour": "blue"}), "colour"),
        (json!({"base_url": "nowhere"}), "base_url"),
        (json!({"credentials": {"token": ""}}), "credentials"),
    ] {
        let error = JiveConfig::from_value(&config(bad.clone())).expect_err("rejected");
        assert!(error.to_string().contains(says), "{bad}: {error}");
        assert_eq!(error.disable_reason(), Some("invalid_config"));
    }
    let error =
        JiveConfig::from_value(&json!({"credentials": {"token": "t"}})).expect_err("no url");
    assert!(error.to_string().contains("base_url"), "{error}");
}

#[test]
fn test_dates_round_trip_in_jive_form() {
    let ms = 1_430_954_190_594;
    assert_eq!(jive_date(ms), "2015-05-06T23:16:30.594+0000");
    let parsed = parse_jive_date("2015-05-06T23:16:30.594+0000").expect("jive form");
    assert_eq!(parsed.timestamp_millis(), ms);
    let parsed = parse_jive_date("2015-05-06T23:16:30.594Z").expect("rfc 3339");
    assert_eq!(parsed.timestamp_millis(), ms);
    assert!(parse_jive_date("yesterday").is_none());
}

#[test]
fn test_the_json_guard_is_stripped() {
    let body = b"throw 'allowIllegalResourceCall is false.';\n{\"list\": []}";
    assert_eq!(parse_body(body, "x").expect("parses"), json!({"list": []}));
    assert_eq!(
        parse_body(b"{\"a\":1}", "x").expect("no guard"),
        json!({"a": 1})
    );
    let error = parse_body(
        b"throw 'allowIllegalResourceCall is false.';\n{\"list\": [",
        "x",
    )
    .expect_err("truncated");
    assert!(matches!(error, ConnectorError::BadResponse(_)), "{error}");
}

#[test]
fn test_content_and_deletion_mapping() {
    let content = json!({
        "id": "1234", "type": "document", "subject": "Plan",
        "published": "2015-05-06T23:16:30.594+0000", "updated": "2015-05-06T23:16:30.594+0000",
        "author": {"id": "7", "displayName": "Ann", "emails": [{"value": "ann@example.com", "primary": true}]},
        "parentPlace": {"id": "3", "name": "Group"},
        "resources": {"html": {"ref": "https://c.example/docs/DOC-1"}},
    });
    let item = content_item(&content, 9).expect("maps");
    assert_eq!(item.key, "1234");
    assert_eq!(item.activity.id, "1234@1430954190594");
    assert_eq!(item.activity.event_category, EventCategory::Storage);
    assert_eq!(item.activity.event_type, EventType::Add);
    let target = item.activity.target.as_ref().expect("target");
    assert_eq!(target["name"], "Plan");
    assert_eq!(target["jive_type"], "document");
    assert_eq!(target["parent"]["name"], "Group");
    let actor = item.activity.actor.as_ref().expect("actor");
    assert_eq!(actor["email"], "ann@example.com");
    assert_eq!(item.activity.raw.as_ref().expect("raw")["object"], content);

    let mut edited = content.clone();
    edited["updated"] = json!("2015-05-07T10:00:00.000+0000");
    let item = content_item(&edited, 9).expect("maps");
    assert_eq!(item.activity.event_type, EventType::Update);

    let deletion = json!({"id": "eae709c9", "type": "deletedObject", "objectType": "discussion",
        "objectId": "2379", "eventDate": "2015-05-06T23:31:08.120+0000"});
    let item = deleted_item(&deletion, 9).expect("maps");
    assert_eq!(item.activity.id, "deleted:eae709c9");
    assert_eq!(item.activity.event_type, EventType::Delete);
    assert_eq!(item.activity.target.as_ref().expect("target")["id"], "2379");
}

#[test]
fn test_missing_or_bad_fields_are_errors_not_panics() {
    for bad in [
        json!({"updated": "2015-05-06T23:16:30.594+0000"}),
        json!({"id": "1"}),
        json!({"id": "1", "updated": "not a date"}),
        json!({"id": {}, "updated": "2015-05-06T23:16:30.594+0000"}),
        json!("a string"),
    ] {
        let error = content_item(&bad, 1).expect_err("rejected");
        assert!(
            matches!(error, ConnectorError::BadResponse(_)),
            "{bad}: {error}"
        );
    }
    for bad in [
        json!({"id": "x", "objectId": "1"}),
        json!({"eventDate": "2015-05-06T23:31:08.120+0000", "objectId": "1"}),
    ] {
        assert!(deleted_item(&bad, 1).is_err(), "{bad}");
    }
}

/// A poll context for a subscription created at `created`.
pub(crate) fn context(service: &str, created: DateTime<Utc>) -> PollContext {
    let account: tidemark_model::Account = serde_json::from_value(json!({
        "id": 3, "application_id": 1, "service": service, "admin": true, "config": {},
        "created": created, "modified": created,
    }))
    .expect("account");
    let subscription: tidemark_model::Subscription = serde_json::from_value(json!({
        "id": 5, "account": 3, "type": "subscription", "api": "activity", "active": true,
        "disable_reason": "", "subscription_type": "changes", "default": true, "expiry": null,
        "monitored_resources": [], "monitored_resource_api": null,
        "monitored_resource_object_type": null, "last_cursor": null,
        "last_cursor_updated_at": null, "created": created, "modified": created,
    }))
    .expect("subscription");
    PollContext {
        account,
        subscription,
    }
}

#[tokio::test]
async fn test_polls_the_simulator_page_by_page_with_a_checkpoint_that_resumes() {
    use tidemark_simulators::jive::ContentSpec;
    let sim = tidemark_simulators::JiveSimulator::start()
        .await
        .expect("simulator");
    let created = Utc::now() - chrono::Duration::seconds(10);
    let at = |offset: i64| created + chrono::Duration::milliseconds(offset);
    for index in 0..5 {
        sim.create_content(ContentSpec::new(format!("c{index}"), at(index + 1)));
    }
    let connector = JiveConnector::new(
        JiveConfig::from_value(&json!({
            "base_url": sim.base_url(),
            "credentials": {"token": "sim-token"},
            "page_size": 2,
            "safety_lag_seconds": 0,
        }))
        .expect("config"),
    )
    .expect("connector");
    connector.validate().await.expect("valid credentials");
    let context = context("jive", created);
    let mut checkpoint = None;
    let mut names = Vec::new();
    for _ in 0..10 {
        let outcome = connector
            .poll(&context, checkpoint.as_ref())
            .await
            .expect("polls");
        names.extend(
            outcome
                .activities
                .iter()
                .map(|a| a.target.as_ref().expect("target")["name"].clone()),
        );
        let state: Value = serde_json::from_str(&outcome.checkpoint.0).expect("json");
        assert_eq!(state["v"], 1);
        checkpoint = Some(outcome.checkpoint);
        if !outcome.more {
            break;
        }
        assert!(
            state["window"]["before"].is_i64(),
            "a window in progress: {state}"
        );
    }
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4"]);
    // Nothing new: the same checkpoint again yields nothing.
    let outcome = connector
        .poll(&context, checkpoint.as_ref())
        .await
        .expect("polls");
    assert!(outcome.activities.is_empty());
    sim.revoke_credentials();
    let error = connector.validate().await.expect_err("revoked");
    assert!(matches!(error, ConnectorError::Unauthorized(_)), "{error}");
    let error = connector
        .poll(&context, Some(&Checkpoint("{\"v\":1".into())))
        .await
        .expect_err("corrupt");
    assert!(
        matches!(error, ConnectorError::CorruptCheckpoint(_)),
        "{error}"
    );
}

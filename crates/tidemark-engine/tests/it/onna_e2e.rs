//! The real engine and the `onna` connector against the Onna simulator over real HTTP: ties
//! of the second-granular activity log across polls, 10,000 audit records on 50 timestamps
//! with page size 7, the two logs merged in order, result-window truncation, a kill in the
//! middle of a multi-page poll, and the upstream's faults.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tidemark_model::{Activity, EventCategory};
use tidemark_simulators::onna::{ActivityLogSpec, AuditLogSpec};
use tidemark_simulators::{Fault, OnnaSimulator};
use tidemark_store::Store;

use crate::upstream::{self, assert_once_in_order, test_config, wait_for, Node};

fn config(sim: &OnnaSimulator, page_size: u64) -> Value {
    json!({
        "base_url": sim.base_url(),
        "credentials": {"token": "sim-token"},
        "poll_interval_seconds": 1,
        "safety_lag_seconds": 0,
        "page_size": page_size,
    })
}

/// `at` plus `offset` ms, at millisecond precision.
fn ms(at: DateTime<Utc>, offset: i64) -> DateTime<Utc> {
    let at = at + chrono::Duration::milliseconds(offset);
    DateTime::from_timestamp_millis(at.timestamp_millis()).expect("in range")
}

fn upstream_id(activity: &Activity) -> &str {
    activity.raw.as_ref().expect("raw")["object"]["_id"]
        .as_str()
        .expect("_id")
}

fn login(at: DateTime<Utc>) -> ActivityLogSpec {
    ActivityLogSpec::new("login", "ann@example.com", at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_activity_log_records_sharing_a_second_across_polls_are_neither_lost_nor_repeated() {
    let sim = OnnaSimulator::start().await.expect("simulator");
    let (_dir, store) = upstream::store();
    let subscription = upstream::subscribe(&store, "onna", config(&sim, 500)).await;
    // The subscription's own second: records of it, and later ones, are reported.
    let second = ms(subscription.created, 0);
    for _ in 0..5 {
        sim.add_activity(login(second));
    }
    let node = Node::start(&store, test_config("n1"));
    wait_for(&store, &subscription, 5).await;
    // More records of the same second after the first poll read it: the boundary second is
    // read again and what was emitted is dropped.
    for _ in 0..5 {
        sim.add_activity(login(second));
    }
    wait_for(&store, &subscription, 10).await;
    for _ in 0..3 {
        sim.add_activity(login(ms(second, 1_000)));
    }
    let all = wait_for(&store, &subscription, 13).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let again = upstream::stream(&store, &subscription).await;
    node.stop().await;
    assert_eq!(again.len(), 13, "repeated or invented");
    assert_once_in_order(&all);
    assert!(all
        .iter()
        .all(|a| a.event_category == EventCategory::Authentication));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_ten_thousand_audit_records_with_fifty_timestamps_and_page_size_seven_arrive_once_in_order(
) {
    let sim = OnnaSimulator::start().await.expect("simulator");
    let (_dir, store) = upstream::store();
    let subscription = upstream::subscribe(&store, "onna", config(&sim, 7)).await;
    let mut expected = Vec::new();
    for index in 0..10_000_i64 {
        let at = ms(subscription.created, index % 50 + 1);
        let id = sim.add_audit(AuditLogSpec::new(
            "add",
            format!("Created Workspace {index}"),
            at,
        ));
        expected.push((at, id));
    }
    expected.sort();
    let node = Node::start(&store, test_config("n1"));
    let all = wait_for(&store, &subscription, 10_000).await;
    node.stop().await;
    assert_eq!(all.len(), 10_000);
    assert_once_in_order(&all);
    let ids: Vec<&str> = all.iter().map(upstream_id).collect();
    let expected: Vec<&str> = expected.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, expected, "every record once, in (time, id) order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_the_two_logs_merge_in_time_order_across_polls_and_truncated_windows() {
    let sim = OnnaSimulator::start().await.expect("simulator");
    // A small result window: the activity log's ranges must be halved to see everything.
    sim.set_max_hits(25);
    let (_dir, store) = upstream::store();
    let mut settings = config(&sim, 4);
    settings["max_hits"] = json!(25);
    let subscription = upstream::subscribe(&store, "onna", settings).await;
    // Whole seconds after the subscription's: every record is after tracking began.
    let created = DateTime::from_timestamp(subscription.created.timestamp() + 1, 0).expect("time");
    let mut count = 0;
    for second in 0..6_i64 {
        for index in 0..20_i64 {
            let at = ms(created, second * 1_000 + index * 10);
            sim.add_activity(ActivityLogSpec::new(
                "nav-menu-opened",
                "bo@example.com",
                at,
            ));
            if index % 2 == 0 {
                sim.add_audit(AuditLogSpec::new("delete", "Resource removed", ms(at, 3)));
                count += 1;
            }
            count += 1;
        }
    }
    // Wait until the scripted seconds are past, so one window covers them all.
    tokio::time::sleep(Duration::from_millis(7_500)).await;
    let node = Node::start(&store, test_config("n1"));
    let all = wait_for(&store, &subscription, count).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let again = upstream::stream(&store, &subscription).await;
    node.stop().await;
    assert_eq!(again.len(), count, "repeated or invented");
    assert_once_in_order(&all);
    let audit = all
        .iter()
        .filter(|a| a.stream.as_deref() == Some("auditLog"))
        .count();
    assert_eq!(audit, 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_kill_in_the_middle_of_a_multi_page_poll_loses_and_repeats_nothing() {
    let sim = OnnaSimulator::start().await.expect("simulator");
    let (_dir, store) = upstream::store();
    let subscription = upstream::subscribe(&store, "onna", config(&sim, 2)).await;
    let mut expected = Vec::new();
    for index in 0..200_i64 {
        let at = ms(subscription.created, index / 3 + 1);
        expected.push((
            at,
            sim.add_audit(AuditLogSpec::new("add", format!("a{index}"), at)),
        ));
    }
    expected.sort();
    for _ in 0..400 {
        sim.push_fault(Fault::Slow {
            delay: Duration::from_millis(15),
        });
    }
    let all = upstream::kill_mid_poll_and_resume(&store, &subscription, 200).await;
    let ids: Vec<&str> = all.iter().map(upstream_id).collect();
    let expected: Vec<&str> = expected.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(ids, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_faults_back_off_disable_or_retry_and_skip_nothing() {
    let sim = OnnaSimulator::start().await.expect("simulator");
    let (_dir, store) = upstream::store();
    let subscription = upstream::subscribe(&store, "onna", config(&sim, 100)).await;
    for index in 0..4 {
        sim.add_audit(AuditLogSpec::new(
            "add",
            format!("f{index}"),
            ms(subscription.created, index + 1),
        ));
    }
    sim.push_fault(Fault::RateLimited {
        retry_after_secs: 2,
    });
    let node = Node::start(&store, test_config("n1"));
    wait_for(&store, &subscription, 4).await;
    let requests = sim.requests();
    upstream::assert_retry_after_honoured(&requests);

    // 5xx and unreadable answers: the poll fails, is retried, nothing is skipped.
    for fault in [
        Fault::ServerError { status: 503 },
        Fault::MalformedJson,
        Fault::MissingField,
    ] {
        sim.push_fault(fault);
    }
    sim.add_activity(login(Utc::now()));
    sim.add_audit(AuditLogSpec::new("add", "after faults", Utc::now()));
    let all = wait_for(&store, &subscription, 6).await;
    assert_once_in_order(&all);
    assert!(
        store
            .get_subscription(subscription.id)
            .await
            .expect("sub")
            .active
    );

    // Rejected credentials disable the subscription until fixed.
    sim.revoke_credentials();
    sim.add_audit(AuditLogSpec::new("add", "while revoked", Utc::now()));
    upstream::wait_disabled_for_credentials(&store, &subscription).await;
    sim.restore_credentials();
    store
        .set_subscription_active(subscription.id, true, "")
        .await
        .expect("re-enable");
    let all = wait_for(&store, &subscription, 7).await;
    node.stop().await;
    assert_once_in_order(&all);
}

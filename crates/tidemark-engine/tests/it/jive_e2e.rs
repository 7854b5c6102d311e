//! The real engine and the `jive` connector against the Jive simulator over real HTTP: seed
//! 001's two edge cases, ties across pages at scale, deletes interleaved with modifications,
//! a kill in the middle of a multi-page poll, and the upstream's faults.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tidemark_model::{Activity, EventType};
use tidemark_simulators::jive::ContentSpec;
use tidemark_simulators::{Fault, JiveSimulator};
use tidemark_store::Store;

use crate::upstream::{self, assert_once_in_order, test_config, wait_for, wait_until, Node};

fn config(sim: &JiveSimulator, page_size: u64) -> Value {
    json!({
        "base_url": sim.base_url(),
        "credentials": {"username": "admin", "password": "password"},
        "poll_interval_seconds": 1,
        "safety_lag_seconds": 0,
        "page_size": page_size,
    })
}

/// `at` plus `offset` ms, at Jive's millisecond precision.
fn ms(at: DateTime<Utc>, offset: i64) -> DateTime<Utc> {
    let at = at + chrono::Duration::milliseconds(offset);
    DateTime::from_timestamp_millis(at.timestamp_millis()).expect("in range")
}

fn content_id(activity: &Activity) -> String {
    activity.target.as_ref().expect("target")["id"]
        .as_str()
        .expect("id")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_seed_001_deletion_after_before_date_waits_so_t3_comes_before_t4() {
    let sim = JiveSimulator::start().await.expect("simulator");
    let (_dir, store) = upstream::store();
    let subscription = upstream::subscribe(&store, "jive", config(&sim, 100)).await;
    let created = subscription.created;
    let old = ms(created, -3_600_000);
    let x1 = sim.create_content(ContentSpec::new("x1", old));
    let x2 = sim.create_content(ContentSpec::new("x2", old));
    let x3 = sim.create_content(ContentSpec::new("x3", old));
    // Round 1: contents t1, t2; deleted t1, t2 and t4, which is after this round's beforeDate.
    let a = sim.create_content(ContentSpec::new("a", ms(created, 10)));
    sim.delete_content(&x1, ms(created, 11)).expect("x1");
    sim.create_content(ContentSpec::new("b", ms(created, 20)));
    sim.delete_content(&x2, ms(created, 21)).expect("x2");
    let t4 = ms(Utc::now(), 4_000);
    sim.delete_content(&x3, t4).expect("x3");

    let node = Node::start(&store, test_config("n1"));
    let first = wait_for(&store, &subscription, 4).await;
    assert_eq!(first.len(), 4, "t4 must wait for a later round: {first:?}");
    // Round 2: contents t3 < t4.
    let t3 = ms(Utc::now(), 1_000);
    assert!(t3 < t4);
    assert!(sim.modify_content(&a, t3));
    let all = wait_for(&store, &subscription, 6).await;
    node.stop().await;
    assert_once_in_order(&all);
    let kinds: Vec<EventType> = all.iter().map(|a| a.event_type).collect();
    use EventType::{Add, Delete, Update};
    assert_eq!(kinds, [Add, Delete, Add, Delete, Update, Delete]);
    assert_eq!(all[4].timestamp, Some(t3));
    assert_eq!(all[5].timestamp, Some(t4));
    assert_eq!(content_id(&all[5]), x3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_seed_001_equal_timestamps_split_across_pages_are_neither_lost_nor_repeated() {
    let sim = JiveSimulator::start().await.expect("simulator");
    let (_dir, store) = upstream::store();
    let subscription = upstream::subscribe(&store, "jive", config(&sim, 5)).await;
    let created = subscription.created;
    // Page 1: t1 t2 t2 t3 t3 / Page 2: t3 t4 t4.
    let mut expected = Vec::new();
    for (index, offset) in [1, 2, 2, 3, 3, 3, 4, 4].into_iter().enumerate() {
        let id = sim.create_content(ContentSpec::new(
            format!("item {index}"),
            ms(created, offset),
        ));
        expected.push(id);
    }
    let node = Node::start(&store, test_config("n1"));
    let all = wait_for(&store, &subscription, expected.len()).await;
    // One more poll round: nothing new may appear.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let all_again = upstream::stream(&store, &subscription).await;
    node.stop().await;
    assert_eq!(
        all_again.len(),
        expected.len(),
        "repeated or invented: {all_again:?}"
    );
    assert_once_in_order(&all);
    let ids: Vec<String> = all.iter().map(content_id).collect();
    assert_eq!(ids, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_ten_thousand_items_with_fifty_timestamps_and_page_size_seven_arrive_once_in_order() {
    let sim = JiveSimulator::start().await.expect("simulator");
    sim.set_max_count(7);
    let (_dir, store) = upstream::store();
    let subscription = upstream::subscribe(&store, "jive", config(&sim, 100)).await;
    let created = subscription.created;
    let mut expected: Vec<(i64, u64)> = Vec::new();
    for index in 0..10_000 {
        let offset = index % 50 + 1;
        let id = sim.create_content(ContentSpec::new(
            format!("doc {index}"),
            ms(created, offset),
        ));
        expected.push((offset, id.parse().expect("numeric id")));
    }
    expected.sort();
    let node = Node::start(&store, test_config("n1"));
    let all = wait_for(&store, &subscription, 10_000).await;
    node.stop().await;
    assert_eq!(all.len(), 10_000);
    assert_once_in_order(&all);
    let ids: Vec<u64> = all
        .iter()
        .map(|a| content_id(a).parse().expect("numeric"))
        .collect();
    let expected: Vec<u64> = expected.into_iter().map(|(_, id)| id).collect();
    assert_eq!(ids, expected, "every item once, in (time, id) order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_deletes_interleaved_with_modifications_across_polls_never_come_out_of_order() {
    let sim = JiveSimulator::start().await.expect("simulator");
    let (_dir, store) = upstream::store();
    let subscription = upstream::subscribe(&store, "jive", config(&sim, 3)).await;
    let old = ms(subscription.created, -60_000);
    let mut live: Vec<String> = (0..40)
        .map(|i| sim.create_content(ContentSpec::new(format!("old {i}"), old)))
        .collect();
    let node = Node::start(&store, test_config("n1"));
    let mut expected = 0;
    for round in 0..4 {
        let base = Utc::now();
        for step in 0..8_i64 {
            let at = ms(base, step * 7);
            if step % 2 == 0 {
                // Distinct items from the back; deletions take from the front.
                let id = &live[live.len() - 1 - step as usize / 2];
                assert!(sim.modify_content(id, at));
            } else {
                let id = live.remove(0);
                sim.delete_content(&id, at).expect("delete");
            }
            expected += 1;
        }
        // A deletion dated after this round's window: it belongs to a later poll.
        let id = live.remove(0);
        sim.delete_content(&id, ms(base, 1_200)).expect("delete");
        expected += 1;
        let created = sim.create_content(ContentSpec::new(format!("new {round}"), ms(base, 60)));
        live.push(created);
        expected += 1;
        wait_for(&store, &subscription, expected - 1).await;
    }
    let all = wait_for(&store, &subscription, expected).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    node.stop().await;
    let all_again = upstream::stream(&store, &subscription).await;
    assert_eq!(all_again.len(), all.len());
    assert_once_in_order(&all);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_kill_in_the_middle_of_a_multi_page_poll_loses_and_repeats_nothing() {
    let sim = JiveSimulator::start().await.expect("simulator");
    sim.set_max_count(2);
    let (_dir, store) = upstream::store();
    let subscription = upstream::subscribe(&store, "jive", config(&sim, 100)).await;
    let created = subscription.created;
    let mut expected = Vec::new();
    for index in 0..200_i64 {
        expected.push(sim.create_content(ContentSpec::new(
            format!("d{index}"),
            ms(created, index / 3 + 1),
        )));
    }
    for _ in 0..400 {
        sim.push_fault(Fault::Slow {
            delay: Duration::from_millis(15),
        });
    }
    let all = upstream::kill_mid_poll_and_resume(&store, &subscription, 200).await;
    let ids: Vec<String> = all.iter().map(content_id).collect();
    assert_eq!(ids, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_rate_limit_is_honoured_and_server_errors_retry_from_the_same_position() {
    let sim = JiveSimulator::start().await.expect("simulator");
    let (_dir, store) = upstream::store();
    let subscription = upstream::subscribe(&store, "jive", config(&sim, 100)).await;
    for index in 0..3 {
        sim.create_content(ContentSpec::new(
            format!("r{index}"),
            ms(subscription.created, index + 1),
        ));
    }
    sim.push_fault(Fault::RateLimited {
        retry_after_secs: 2,
    });
    let node = Node::start(&store, test_config("n1"));
    wait_for(&store, &subscription, 3).await;
    let requests = sim.requests();
    // The poll's other request may have been in flight beside the 429; after that, nothing
    // until Retry-After has elapsed.
    let honoured = upstream::assert_retry_after_honoured(&requests);
    assert!(
        requests.iter().any(|request| request.at >= honoured),
        "polled again"
    );

    // A 500: the poll fails, and the retry asks from the same position.
    sim.clear_requests();
    sim.push_fault(Fault::ServerError { status: 500 });
    sim.create_content(ContentSpec::new("after the 500", Utc::now()));
    let all = wait_for(&store, &subscription, 4).await;
    node.stop().await;
    assert_once_in_order(&all);
    let requests = sim.requests();
    let failed = requests
        .iter()
        .find(|request| request.status == 500)
        .expect("a 500 was answered");
    // Same feed, same position (startIndex and lower bound); only the window's end may move.
    let position = |query: &str| query.split("%2C").next().unwrap_or_default().to_owned();
    let retried = requests.iter().any(|r| {
        r.at > failed.at
            && r.status == 200
            && position(&r.path_and_query) == position(&failed.path_and_query)
    });
    assert!(retried, "no retry from the same position: {requests:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_rejected_credentials_disable_the_subscription_until_fixed() {
    let sim = JiveSimulator::start().await.expect("simulator");
    sim.revoke_credentials();
    let (_dir, store) = upstream::store();
    let subscription = upstream::subscribe(&store, "jive", config(&sim, 100)).await;
    sim.create_content(ContentSpec::new(
        "while revoked",
        ms(subscription.created, 5),
    ));
    let node = Node::start(&store, test_config("n1"));
    upstream::wait_disabled_for_credentials(&store, &subscription).await;
    // Credentials fixed, subscription re-enabled: the activity of the meantime arrives.
    sim.restore_credentials();
    store
        .set_subscription_active(subscription.id, true, "")
        .await
        .expect("re-enable");
    let all = wait_for(&store, &subscription, 1).await;
    node.stop().await;
    assert_eq!(all.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_malformed_or_incomplete_responses_fail_the_poll_and_skip_nothing() {
    let sim = JiveSimulator::start().await.expect("simulator");
    let (_dir, store) = upstream::store();
    let subscription = upstream::subscribe(&store, "jive", config(&sim, 100)).await;
    for index in 0..5 {
        sim.create_content(ContentSpec::new(
            format!("m{index}"),
            ms(subscription.created, index + 1),
        ));
    }
    sim.push_fault(Fault::MalformedJson);
    sim.push_fault(Fault::MissingField);
    sim.push_fault(Fault::MalformedJson);
    let node = Node::start(&store, test_config("n1"));
    let all = wait_for(&store, &subscription, 5).await;
    let state = store.poll_state(subscription.id).await.expect("state");
    let subscription = store.get_subscription(subscription.id).await.expect("sub");
    node.stop().await;
    assert!(subscription.active, "a bad response must not disable");
    assert_eq!(state.consecutive_failures, 0, "recovered: {state:?}");
    assert_once_in_order(&all);
    assert_eq!(all.len(), 5);
    assert!(
        sim.requests().len() >= 5,
        "the faulty answers were served and retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_items_indexed_late_stay_in_order_within_the_safety_lag() {
    let sim = JiveSimulator::start().await.expect("simulator");
    // Jive shows each change 700 ms after its timestamp; the connector looks 2 s behind now.
    sim.set_lag(Duration::from_millis(700));
    let (_dir, store) = upstream::store();
    let mut settings = config(&sim, 3);
    settings["safety_lag_seconds"] = json!(2);
    let subscription = upstream::subscribe(&store, "jive", settings).await;
    // Deletions are of items that existed before tracking (an item added and deleted within
    // the lag is never seen: polling sees states).
    let old = ms(subscription.created, -60_000);
    let mut existing: Vec<String> = (0..3)
        .map(|i| sim.create_content(ContentSpec::new(format!("old {i}"), old)))
        .collect();
    let node = Node::start(&store, test_config("n1"));
    let mut expected = 0;
    for round in 0..6 {
        let now = ms(Utc::now(), 0);
        sim.create_content(ContentSpec::new(format!("late {round}"), now));
        expected += 1;
        if round % 2 == 1 {
            let id = existing.remove(0);
            sim.delete_content(&id, ms(now, 5)).expect("delete");
            expected += 1;
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let all = wait_for(&store, &subscription, expected).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    node.stop().await;
    assert_eq!(
        upstream::stream(&store, &subscription).await.len(),
        expected
    );
    assert_once_in_order(&all);
}

/// Runs Jive with items indexed `sim_lag` late and a connector looking `safety_lag` behind
/// now; returns how many activities landed below a watermark already published when they
/// were committed.
async fn landed_below_watermark(sim_lag: Duration, safety_lag: u64) -> usize {
    use tidemark_store::TimeRange;
    let sim = JiveSimulator::start().await.expect("simulator");
    sim.set_lag(sim_lag);
    let (_dir, store) = upstream::store();
    let mut settings = config(&sim, 100);
    settings["safety_lag_seconds"] = json!(safety_lag);
    let subscription = upstream::subscribe(&store, "jive", settings).await;
    let node = Node::start(&store, test_config("n1"));
    let everything = TimeRange {
        from_micros: i64::MIN,
        until_micros: None,
    };
    // (sequence committed so far, watermark published by then), sampled as the test runs.
    let mut published: Vec<(u64, Option<DateTime<Utc>>)> = Vec::new();
    let mut count = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while tokio::time::Instant::now() < deadline {
        if count < 12 {
            sim.create_content(ContentSpec::new(format!("late {count}"), ms(Utc::now(), 0)));
            count += 1;
        }
        // The watermark first, then the sequence: a commit landing in between pairs an older
        // watermark with a newer sequence, which can only under-count.
        let page = store
            .read_range_json(subscription.id, everything, None, 0, Vec::new())
            .await
            .expect("watermark");
        let sequence = store.latest_sequence(subscription.id).await.expect("seq");
        published.push((sequence, page.watermark));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let all = wait_for(&store, &subscription, count).await;
    node.stop().await;
    assert_eq!(all.len(), count, "every item arrives");
    let mut below = 0;
    for (index, activity) in all.iter().enumerate() {
        let sequence = index as u64 + 1;
        // The newest watermark seen while this activity was not yet committed.
        let before = published
            .iter()
            .filter(|(committed, _)| *committed < sequence)
            .filter_map(|(_, watermark)| *watermark)
            .max();
        if let (Some(watermark), Some(at)) = (before, activity.timestamp) {
            if at < watermark {
                below += 1;
            }
        }
    }
    below
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_late_activity_never_lands_below_a_published_watermark() {
    // Jive shows changes 1.5 s late (seed 000's 4 minutes, scaled); a 3 s safety lag covers it.
    assert_eq!(
        landed_below_watermark(Duration::from_millis(1_500), 3).await,
        0
    );
    // The control: without the lag declared, late items do land below the watermark.
    assert!(landed_below_watermark(Duration::from_millis(1_500), 0).await > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_backfill_brings_history_once_alongside_live_polling_and_overlapping_jobs() {
    use tidemark_store::BackfillState;
    let sim = JiveSimulator::start().await.expect("simulator");
    let (_dir, store) = upstream::store();
    let subscription = upstream::subscribe(&store, "jive", config(&sim, 3)).await;
    let created = subscription.created;
    // History from before tracking began: live polling never reports it.
    let mut history = Vec::new();
    for hour in 1..=6_i64 {
        let at = ms(created, -hour * 3_600_000);
        history.push(sim.create_content(ContentSpec::new(format!("old {hour}"), at)));
    }
    let gone = sim.create_content(ContentSpec::new(
        "deleted long ago",
        ms(created, -7 * 3_600_000),
    ));
    sim.delete_content(&gone, ms(created, -3 * 3_600_000 + 5))
        .expect("delete");
    let node = Node::start(&store, test_config("n1"));
    sim.create_content(ContentSpec::new("live", ms(Utc::now(), 0)));
    wait_for(&store, &subscription, 1).await;

    // Two overlapping backfills: the last 4 hours, then the last 8.
    let first = store
        .create_backfill(subscription.id, ms(created, -4 * 3_600_000 - 1), created)
        .await
        .expect("job");
    let second = store
        .create_backfill(subscription.id, ms(created, -8 * 3_600_000), created)
        .await
        .expect("job");
    wait_until("both backfills are done", || async {
        let a = store.get_backfill(first.id).await.expect("job");
        let b = store.get_backfill(second.id).await.expect("job");
        a.state == BackfillState::Done && b.state == BackfillState::Done
    })
    .await;
    let first = store.get_backfill(first.id).await.expect("job");
    let second = store.get_backfill(second.id).await.expect("job");
    assert_eq!(first.fetched, 5, "4 contents and 1 deletion: {first:?}");
    // The second sees all 7 upstream changes of 8 hours; what the first (running beside it)
    // had committed already is absorbed, so between them each change is appended once.
    assert_eq!(second.fetched, 7, "{second:?}");
    assert_eq!(first.appended + second.appended, 7, "{first:?} {second:?}");
    // Live polling goes on beside them.
    sim.create_content(ContentSpec::new("live again", ms(Utc::now(), 0)));
    let all = wait_for(&store, &subscription, 9).await;
    node.stop().await;
    let mut ids: Vec<String> = all.iter().map(|a| a.id.clone()).collect();
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "no activity twice");
    assert_eq!(count, 9, "2 live + 6 history contents + 1 history deletion");
    let names: Vec<String> = all
        .iter()
        .filter_map(|a| a.target.as_ref()?["name"].as_str().map(str::to_owned))
        .collect();
    for index in 1..=6 {
        assert!(names.contains(&format!("old {index}")), "{names:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_backfill_of_a_connector_without_history_fails_with_a_reason() {
    use tidemark_store::BackfillState;
    let (_dir, store) = upstream::store();
    let dir = tempfile::tempdir().expect("dir");
    let subscription = upstream::subscribe(
        &store,
        "local",
        json!({"path": dir.path().to_string_lossy(), "rescan_interval_seconds": 3600}),
    )
    .await;
    let job = store
        .create_backfill(subscription.id, ms(Utc::now(), -60_000), Utc::now())
        .await
        .expect("job");
    let node = Node::start(&store, test_config("n1"));
    wait_until("the job fails", || async {
        store.get_backfill(job.id).await.expect("job").state == BackfillState::Failed
    })
    .await;
    node.stop().await;
    let failed = store.get_backfill(job.id).await.expect("job");
    assert!(failed.error.unwrap_or_default().contains("time range"));
}

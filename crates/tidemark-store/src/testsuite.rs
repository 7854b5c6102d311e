//! The conformance suite every [`Store`] implementation runs.
//!
//! Each test is a generic async function over the store; [`store_test_suite!`](crate::store_test_suite)
//! generates the `#[tokio::test]` wrappers for one backend from a factory:
//!
//! ```ignore
//! async fn new_store() -> (SqliteStore, tempfile::TempDir) { ... }
//! tidemark_store::store_test_suite!(new_store);
//! ```
//!
//! The factory returns the store and a guard that keeps its backing resources alive for the test.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tidemark_model::{
    Activity, EventCategory, EventSubtype, EventType, Subscription, SubscriptionType,
};

use crate::{
    CommitBatch, EncodedActivity, NewAccount, NewSubscription, PollResult, Store, StoreError,
};

/// Generates the conformance tests for one store backend. `$factory` is an async fn returning
/// `(store, guard)`.
#[macro_export]
macro_rules! store_test_suite {
    ($factory:ident) => {
        $crate::store_test_suite!(@tests $factory;
            test_read_your_cursor_exactly_once_in_order,
            test_duplicate_activity_ids_are_absorbed,
            test_failed_commit_leaves_activity_and_checkpoint_unchanged,
            test_concurrent_appenders_reader_never_skips,
            test_lease_exclusivity_and_expiry,
            test_release_schedules_next_poll_and_wake_wins,
            test_wake_does_not_cut_a_backoff_short,
            test_disabled_subscription_is_not_polled,
            test_retention_prunes_oldest_first_and_total_reflects_it,
            test_subscription_limits_and_default_rules,
            test_track_activity_creates_default_subscription,
            test_deletes_remove_activity,
            test_cursor_key_is_stable,
            test_api_keys_are_found_by_digest_and_scoped_to_their_application,
            test_account_tokens_resolve_and_die_with_their_account,
            test_account_updates_and_default_subscription_moves,
            test_last_cursor_only_moves_forward,
            test_webhook_notifications_are_claimed_once_and_coalesced,
            test_webhook_claims_respect_the_per_endpoint_limit,
            test_oldest_api_key_signs,
            test_time_ranges_read_in_timestamp_order_and_resume_after_a_position,
            test_backfill_jobs_are_claimed_once_and_commit_with_their_position,
            test_an_application_created_with_its_key_is_usable_at_once,
            test_destinations_publish_once_per_subscription_and_move_only_forward,
            test_destination_claim_advances_per_message_while_held,
            test_the_v1_event_rendered_at_commit_is_read_back,
        );
    };
    (@tests $factory:ident; $($name:ident,)*) => {
        mod store_conformance {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let (store, _guard) = super::$factory().await;
                    $crate::testsuite::$name(std::sync::Arc::new(store)).await;
                }
            )*
        }
    };
}

/// A realistic activity (about 1 KB of JSON) with the given id.
pub fn sample_activity(account: i64, id: &str) -> Activity {
    let mut activity = Activity::new(
        id,
        account,
        EventCategory::Storage,
        EventType::Add,
        EventSubtype::Unknown,
    );
    activity.timestamp = Some(Utc::now());
    activity.target = Some(json!({
        "id": format!("F{id}"), "name": format!("{id}.txt"), "type": "file", "api": "storage",
        "path": format!("/reports/2026/{id}.txt"), "size": 1024, "mime_type": "text/plain",
        "parent": {"id": "Fparent", "name": "2026"}, "account": account, "downloadable": true,
    }));
    activity.actor = Some(json!({"id": "user-1", "type": "user", "api": "team",
        "email": "someone@example.com", "name": "Some One"}));
    activity.raw = Some(json!({"object": {"event": "created", "id": id}}));
    activity
}

/// An application, an account and an active subscription, ready for activity.
pub async fn setup<S: Store>(store: &S) -> Subscription {
    let application = store
        .create_application("conformance")
        .await
        .expect("application");
    let account = store
        .create_account(NewAccount {
            application_id: application.id,
            service: "local".into(),
            admin: false,
            config: json!({"path": "/tmp"}),
            token_digest: None,
        })
        .await
        .expect("account");
    store
        .create_subscription(NewSubscription::changes(account.id))
        .await
        .expect("subscription")
}

/// Leases what is due at `now` for `holder`, and returns the lease of `subscription` if it was
/// among them.
async fn lease_for<S: Store>(
    store: &S,
    subscription: &Subscription,
    holder: &str,
    now: chrono::DateTime<Utc>,
    ttl: Duration,
) -> Option<crate::Lease> {
    store
        .acquire_due(holder, now, ttl, 100)
        .await
        .expect("acquire")
        .into_iter()
        .find(|lease| lease.subscription_id == subscription.id)
}

fn refs(ids: &[String]) -> Vec<&str> {
    ids.iter().map(String::as_str).collect()
}

fn batch(subscription: &Subscription, ids: &[&str], checkpoint: Option<&str>) -> CommitBatch {
    CommitBatch {
        subscription_id: subscription.id,
        activities: ids
            .iter()
            .map(|id| EncodedActivity::encode(&sample_activity(subscription.account, id)))
            .collect::<Result<_, _>>()
            .expect("encodes"),
        checkpoint: checkpoint.map(str::to_owned),
        lease: None,
        watermark: None,
    }
}

async fn read_all_ids<S: Store>(store: &S, subscription: &Subscription) -> Vec<(u64, String)> {
    let rows = store
        .read_activity(subscription.id, 0, 100_000)
        .await
        .expect("read");
    rows.iter()
        .map(|row| (row.sequence, row.activity().expect("parses").id))
        .collect()
}

/// A reader following cursors gets every activity once, in commit order, whatever its page size;
/// an old position stays valid.
pub async fn test_read_your_cursor_exactly_once_in_order<S: Store>(store: Arc<S>) {
    let subscription = setup(&*store).await;
    let first: Vec<String> = (0..5).map(|i| format!("a{i}")).collect();
    let second: Vec<String> = (0..7).map(|i| format!("b{i}")).collect();
    let outcome = store
        .commit(batch(&subscription, &refs(&first), Some("cp1")))
        .await
        .expect("commit");
    assert_eq!((outcome.appended, outcome.last_sequence), (5, 5));
    let empty = store
        .commit(batch(&subscription, &[], Some("cp2")))
        .await
        .expect("empty commit");
    assert_eq!((empty.appended, empty.last_sequence), (0, 5));
    store
        .commit(batch(&subscription, &refs(&second), Some("cp3")))
        .await
        .expect("commit");

    let expected: Vec<String> = first.iter().chain(&second).cloned().collect();
    for page_size in [1, 3, 1000] {
        let mut position = 0;
        let mut seen = Vec::new();
        loop {
            let page = store
                .read_activity(subscription.id, position, page_size)
                .await
                .expect("read");
            if page.is_empty() {
                break;
            }
            for row in &page {
                assert_eq!(row.sequence, position + 1, "sequence numbers have no gaps");
                position = row.sequence;
                seen.push(row.activity().expect("parses").id);
            }
        }
        assert_eq!(seen, expected, "page size {page_size}");
    }
    let again = store
        .read_activity(subscription.id, 5, 2)
        .await
        .expect("old position");
    assert_eq!(
        again.iter().map(|r| r.sequence).collect::<Vec<_>>(),
        vec![6, 7]
    );
    assert_eq!(
        store.activity_total(subscription.id).await.expect("total"),
        12
    );
    assert_eq!(
        store
            .latest_sequence(subscription.id)
            .await
            .expect("latest"),
        12
    );
    assert_eq!(
        store
            .load_checkpoint(subscription.id)
            .await
            .expect("cp")
            .as_deref(),
        Some("cp3")
    );
}

/// Each activity's v1 event, rendered at commit, is read back with it (broker messages copy
/// it); an activity with no v1 form reads back as having none.
pub async fn test_the_v1_event_rendered_at_commit_is_read_back<S: Store>(store: Arc<S>) {
    let subscription = setup(&*store).await;
    let added = sample_activity(subscription.account, "added");
    let mut read = sample_activity(subscription.account, "read");
    read.event_type = tidemark_model::EventType::Access;
    read.event_subtype = tidemark_model::EventSubtype::Preview;
    store
        .commit(CommitBatch::new(subscription.id, &[added.clone(), read]).expect("encodes"))
        .await
        .expect("commit");
    let page = store
        .read_activity(subscription.id, 0, 10)
        .await
        .expect("read");
    let event = tidemark_model::V1Event::from_activity(&added).expect("an add has a v1 form");
    let crate::StoredV1Event::Rendered(rendered) = &page[0].v1 else {
        panic!("not rendered: {:?}", page[0].v1);
    };
    assert_eq!(rendered.kind, event.kind);
    assert!(
        rendered.target.is_some(),
        "the target is kept once, in the v2 text"
    );
    let mut whole = Vec::new();
    assert!(rendered.write(&page[0].json, &mut whole));
    assert_eq!(
        String::from_utf8(whole).expect("utf-8"),
        serde_json::to_string(&event).expect("serializes")
    );
    assert_eq!(page[1].v1, crate::StoredV1Event::NoForm);
}

/// Re-delivered activity (same id) never enters the stream twice and takes no sequence number.
pub async fn test_duplicate_activity_ids_are_absorbed<S: Store>(store: Arc<S>) {
    let subscription = setup(&*store).await;
    let outcome = store
        .commit(batch(&subscription, &["a", "b", "a"], Some("1")))
        .await
        .expect("commit");
    assert_eq!(
        (outcome.appended, outcome.duplicates, outcome.last_sequence),
        (2, 1, 2)
    );
    let outcome = store
        .commit(batch(&subscription, &["b", "c"], Some("2")))
        .await
        .expect("commit");
    assert_eq!(
        (outcome.appended, outcome.duplicates, outcome.last_sequence),
        (1, 1, 3)
    );
    let replay = store
        .commit(batch(&subscription, &["a", "b", "c"], Some("3")))
        .await
        .expect("replay");
    assert_eq!((replay.appended, replay.duplicates), (0, 3));
    assert_eq!(
        read_all_ids(&*store, &subscription).await,
        vec![
            (1, "a".to_owned()),
            (2, "b".to_owned()),
            (3, "c".to_owned())
        ]
    );
    assert_eq!(
        store.activity_total(subscription.id).await.expect("total"),
        3
    );
    // The same id in another subscription is a different activity.
    let other = setup(&*store).await;
    let outcome = store
        .commit(batch(&other, &["a"], None))
        .await
        .expect("commit");
    assert_eq!(outcome.appended, 1);
}

/// A commit that fails (stale lease, missing subscription) writes neither activity nor
/// checkpoint.
pub async fn test_failed_commit_leaves_activity_and_checkpoint_unchanged<S: Store>(store: Arc<S>) {
    let subscription = setup(&*store).await;
    let ttl = Duration::from_millis(200);
    let lease_a = lease_for(&*store, &subscription, "node-a", Utc::now(), ttl)
        .await
        .expect("leased");
    let mut ok = batch(&subscription, &["a1", "a2"], Some("after-a"));
    ok.lease = Some(lease_a.clone());
    store.commit(ok).await.expect("current lease commits");

    tokio::time::sleep(Duration::from_millis(300)).await;
    let lease_b = lease_for(
        &*store,
        &subscription,
        "node-b",
        Utc::now(),
        Duration::from_secs(30),
    )
    .await
    .expect("re-leased");
    assert!(lease_b.token > lease_a.token, "fencing token increases");

    let mut stale = batch(
        &subscription,
        &["stale1", "stale2"],
        Some("stale-checkpoint"),
    );
    stale.lease = Some(lease_a);
    match store.commit(stale).await {
        Err(StoreError::LeaseLost(id)) => assert_eq!(id, subscription.id),
        other => panic!("stale lease must be refused, got {other:?}"),
    }
    assert_eq!(
        store
            .load_checkpoint(subscription.id)
            .await
            .expect("cp")
            .as_deref(),
        Some("after-a")
    );
    assert_eq!(
        store.latest_sequence(subscription.id).await.expect("seq"),
        2
    );
    assert_eq!(
        store.activity_total(subscription.id).await.expect("total"),
        2
    );
    assert_eq!(
        read_all_ids(&*store, &subscription)
            .await
            .into_iter()
            .map(|(_, id)| id)
            .collect::<Vec<_>>(),
        vec!["a1", "a2"]
    );

    let mut missing = batch(&subscription, &["x"], Some("x"));
    missing.subscription_id = subscription.id + 10_000;
    assert!(matches!(
        store.commit(missing).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Several appenders on one subscription while a reader follows cursors: the reader sees every
/// sequence number exactly once, none skipped, and every activity.
pub async fn test_concurrent_appenders_reader_never_skips<S: Store>(store: Arc<S>) {
    const WRITERS: usize = 4;
    const BATCHES: usize = 60;
    const PER_BATCH: usize = 10;
    let subscription = setup(&*store).await;
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let store = Arc::clone(&store);
        let subscription = subscription.clone();
        writers.push(tokio::spawn(async move {
            for batch_index in 0..BATCHES {
                let ids: Vec<String> = (0..PER_BATCH)
                    .map(|i| format!("w{writer}-b{batch_index}-{i}"))
                    .collect();
                store
                    .commit(batch(&subscription, &refs(&ids), None))
                    .await
                    .expect("commit");
            }
        }));
    }
    let total = WRITERS * BATCHES * PER_BATCH;
    let mut position = 0u64;
    let mut seen = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reader stalled at {position}"
        );
        let page = store
            .read_activity(subscription.id, position, 37)
            .await
            .expect("read");
        if page.is_empty() {
            tokio::task::yield_now().await;
            continue;
        }
        for row in page {
            assert_eq!(
                row.sequence,
                position + 1,
                "reader skipped or repeated a sequence number"
            );
            position = row.sequence;
            assert!(
                seen.insert(row.activity().expect("parses").id),
                "activity seen twice"
            );
        }
    }
    for writer in writers {
        writer.await.expect("writer finished");
    }
    assert!(store
        .read_activity(subscription.id, position, 10)
        .await
        .expect("read")
        .is_empty());
    assert_eq!(
        store.activity_total(subscription.id).await.expect("total"),
        total as u64
    );
}

/// Only one poller holds a subscription's lease; a lapsed lease can be taken over, and the old
/// holder can then neither renew nor release it.
pub async fn test_lease_exclusivity_and_expiry<S: Store>(store: Arc<S>) {
    let subscription = setup(&*store).await;
    let ttl = Duration::from_millis(300);
    let lease_a = lease_for(&*store, &subscription, "node-a", Utc::now(), ttl)
        .await
        .expect("leased by a");
    assert!(
        lease_for(&*store, &subscription, "node-b", Utc::now(), ttl)
            .await
            .is_none(),
        "two holders at once"
    );
    let lease_a = store
        .renew_lease(&lease_a, ttl)
        .await
        .expect("current holder renews");

    tokio::time::sleep(Duration::from_millis(450)).await;
    let lease_b = lease_for(
        &*store,
        &subscription,
        "node-b",
        Utc::now(),
        Duration::from_secs(30),
    )
    .await
    .expect("lapsed lease taken over");
    assert_eq!(lease_b.holder, "node-b");
    assert!(matches!(
        store.renew_lease(&lease_a, ttl).await,
        Err(StoreError::LeaseLost(_))
    ));
    store
        .release_lease(
            &lease_a,
            PollResult::Succeeded {
                next_poll_at: Utc::now(),
            },
        )
        .await
        .expect("stale release is a no-op");
    let state = store.poll_state(subscription.id).await.expect("state");
    assert_eq!(
        state.lease_holder.as_deref(),
        Some("node-b"),
        "stale release must not free b's lease"
    );
    store
        .renew_lease(&lease_b, ttl)
        .await
        .expect("b still holds it");
}

/// A released lease schedules the next poll; a wake during the poll makes it due at once.
pub async fn test_release_schedules_next_poll_and_wake_wins<S: Store>(store: Arc<S>) {
    let subscription = setup(&*store).await;
    let ttl = Duration::from_secs(30);
    let later = Utc::now() + chrono::Duration::hours(1);
    let lease = lease_for(&*store, &subscription, "n", Utc::now(), ttl)
        .await
        .expect("due at creation");
    store
        .release_lease(
            &lease,
            PollResult::Succeeded {
                next_poll_at: later,
            },
        )
        .await
        .expect("release");
    assert!(
        lease_for(&*store, &subscription, "n", Utc::now(), ttl)
            .await
            .is_none(),
        "not due for an hour"
    );

    store.request_poll(subscription.id).await.expect("wake");
    let lease = lease_for(&*store, &subscription, "n", Utc::now(), ttl)
        .await
        .expect("woken");
    // Woken while polling: the release must not push the next poll an hour away.
    store
        .request_poll(subscription.id)
        .await
        .expect("wake during poll");
    store
        .release_lease(
            &lease,
            PollResult::Succeeded {
                next_poll_at: later,
            },
        )
        .await
        .expect("release");
    let leases = store
        .acquire_due("n", Utc::now(), ttl, 100)
        .await
        .expect("acquire");
    assert!(
        leases.iter().any(|l| l.subscription_id == subscription.id),
        "wake during poll was lost"
    );
}

/// After a failure, the retry time stands even if the upstream pushes a wake (Retry-After is
/// honoured); failures are counted and described.
pub async fn test_wake_does_not_cut_a_backoff_short<S: Store>(store: Arc<S>) {
    let subscription = setup(&*store).await;
    let ttl = Duration::from_secs(30);
    let lease = lease_for(&*store, &subscription, "n", Utc::now(), ttl)
        .await
        .expect("due");
    let retry_at = Utc::now() + chrono::Duration::hours(1);
    store
        .release_lease(
            &lease,
            PollResult::Failed {
                error: "upstream 503".into(),
                retry_at,
            },
        )
        .await
        .expect("release");
    store.request_poll(subscription.id).await.expect("wake");
    assert!(
        lease_for(&*store, &subscription, "n", Utc::now(), ttl)
            .await
            .is_none(),
        "back-off was cut short"
    );
    let state = store.poll_state(subscription.id).await.expect("state");
    assert_eq!(state.consecutive_failures, 1);
    assert_eq!(state.last_error.as_deref(), Some("upstream 503"));
    assert!((state.next_poll_at - retry_at).num_milliseconds().abs() < 1);
}

/// A permanent failure deactivates the subscription with its reason; it is no longer polled.
pub async fn test_disabled_subscription_is_not_polled<S: Store>(store: Arc<S>) {
    let subscription = setup(&*store).await;
    let ttl = Duration::from_secs(30);
    let lease = lease_for(&*store, &subscription, "n", Utc::now(), ttl)
        .await
        .expect("due");
    store
        .release_lease(
            &lease,
            PollResult::Disabled {
                reason: "invalid_credentials".into(),
                error: "401".into(),
            },
        )
        .await
        .expect("release");
    let disabled = store.get_subscription(subscription.id).await.expect("get");
    let active = store
        .list_active_subscriptions()
        .await
        .expect("list active");
    assert!(active.iter().all(|s| s.id != subscription.id));
    assert!(!disabled.active);
    assert_eq!(disabled.disable_reason, "invalid_credentials");
    store.request_poll(subscription.id).await.expect("wake");
    let later = Utc::now() + chrono::Duration::days(1);
    assert!(
        lease_for(&*store, &subscription, "n", later, ttl)
            .await
            .is_none(),
        "not leased"
    );
    let reactivated = store
        .set_subscription_active(subscription.id, true, "")
        .await
        .expect("reactivate");
    assert!(reactivated.active);
    assert_eq!(reactivated.disable_reason, "");
}

/// Retention deletes the oldest activity first, in bounded batches; `total` follows, and
/// reading from a pruned position resumes at the oldest retained activity.
pub async fn test_retention_prunes_oldest_first_and_total_reflects_it<S: Store>(store: Arc<S>) {
    let subscription = setup(&*store).await;
    let account = store
        .get_account(subscription.account)
        .await
        .expect("account");
    let mut application = store
        .get_application(account.application_id)
        .await
        .expect("app");
    application.retention_days = Some(1);
    store
        .update_application(&application)
        .await
        .expect("update");

    store
        .commit(batch(&subscription, &["o1", "o2", "o3", "o4", "o5"], None))
        .await
        .expect("commit");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let boundary = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    store
        .commit(batch(&subscription, &["n1", "n2", "n3"], None))
        .await
        .expect("commit");

    let as_of = boundary + chrono::Duration::days(1);
    assert_eq!(
        store.prune_expired(as_of, 2).await.expect("prune"),
        2,
        "bounded batch"
    );
    assert_eq!(
        store.activity_total(subscription.id).await.expect("total"),
        6
    );
    assert_eq!(store.prune_expired(as_of, 1000).await.expect("prune"), 3);
    assert_eq!(
        store.prune_expired(as_of, 1000).await.expect("prune"),
        0,
        "newer rows kept"
    );
    assert_eq!(
        store.activity_total(subscription.id).await.expect("total"),
        3
    );
    let resumed = store
        .read_activity(subscription.id, 1, 10)
        .await
        .expect("read from pruned position");
    assert_eq!(resumed.first().map(|r| r.sequence), Some(6));
    assert_eq!(
        store.latest_sequence(subscription.id).await.expect("seq"),
        8
    );

    // Without retention nothing is pruned.
    let other = setup(&*store).await;
    store
        .commit(batch(&other, &["keep"], None))
        .await
        .expect("commit");
    store
        .prune_expired(Utc::now() + chrono::Duration::days(3650), 1000)
        .await
        .expect("prune");
    assert_eq!(store.activity_total(other.id).await.expect("total"), 1);
}

/// At most `max_subscriptions_per_account` per account; one default per account.
pub async fn test_subscription_limits_and_default_rules<S: Store>(store: Arc<S>) {
    let first = setup(&*store).await;
    assert!(
        first.default,
        "an account's first subscription becomes its default"
    );
    match store
        .create_subscription(NewSubscription::changes(first.account))
        .await
    {
        Err(StoreError::Conflict(message)) => assert!(message.contains("allows 1 per account")),
        other => panic!("expected the limit to refuse, got {other:?}"),
    }
    let account = store.get_account(first.account).await.expect("account");
    let mut application = store
        .get_application(account.application_id)
        .await
        .expect("app");
    application.max_subscriptions_per_account = 3;
    store
        .update_application(&application)
        .await
        .expect("update");
    let second = store
        .create_subscription(NewSubscription::changes(first.account))
        .await
        .expect("second");
    assert!(!second.default, "a default already exists");
    let third = store
        .create_subscription(NewSubscription {
            default: Some(true),
            ..NewSubscription::changes(first.account)
        })
        .await
        .expect("third");
    assert!(third.default);
    let all = store.list_subscriptions(first.account).await.expect("list");
    assert_eq!(all.iter().filter(|s| s.default).count(), 1);
    assert_eq!(all.iter().find(|s| s.default).map(|s| s.id), Some(third.id));
    assert!(matches!(
        store
            .create_subscription(NewSubscription::changes(first.account + 10_000))
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// An application with `track_activity` gets a default `changes` subscription for each new
/// account, created with the account.
pub async fn test_track_activity_creates_default_subscription<S: Store>(store: Arc<S>) {
    let mut application = store.create_application("tracking").await.expect("app");
    assert!(store
        .list_applications()
        .await
        .expect("list")
        .iter()
        .any(|a| a.id == application.id));
    application.track_activity = true;
    store
        .update_application(&application)
        .await
        .expect("update");
    let account = store
        .create_account(NewAccount {
            application_id: application.id,
            service: "local".into(),
            admin: false,
            config: json!({}),
            token_digest: None,
        })
        .await
        .expect("account");
    let subscriptions = store.list_subscriptions(account.id).await.expect("list");
    assert_eq!(subscriptions.len(), 1);
    assert!(subscriptions[0].default && subscriptions[0].active);
    assert_eq!(
        subscriptions[0].subscription_type,
        SubscriptionType::Changes
    );
}

/// Deleting a subscription or an account removes its activity and checkpoint.
pub async fn test_deletes_remove_activity<S: Store>(store: Arc<S>) {
    let subscription = setup(&*store).await;
    store
        .commit(batch(&subscription, &["a", "b"], Some("cp")))
        .await
        .expect("commit");
    store
        .record_last_cursor(subscription.id, "c1", 2)
        .await
        .expect("record");
    let recorded = store.get_subscription(subscription.id).await.expect("get");
    assert_eq!(recorded.last_cursor.as_deref(), Some("c1"));
    assert!(recorded.last_cursor_updated_at.is_some());
    store
        .delete_subscription(subscription.id)
        .await
        .expect("delete");
    assert!(matches!(
        store.get_subscription(subscription.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store
        .read_activity(subscription.id, 0, 10)
        .await
        .expect("read")
        .is_empty());
    assert_eq!(
        store.load_checkpoint(subscription.id).await.expect("cp"),
        None
    );

    let other = setup(&*store).await;
    store
        .commit(batch(&other, &["x"], Some("cp")))
        .await
        .expect("commit");
    store
        .delete_account(other.account)
        .await
        .expect("delete account");
    assert!(matches!(
        store.get_account(other.account).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.get_subscription(other.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store
        .read_activity(other.id, 0, 10)
        .await
        .expect("read")
        .is_empty());
    assert!(matches!(
        store.delete_account(other.account).await,
        Err(StoreError::NotFound(_))
    ));
}

/// Cursors signed by the store decode with the same store.
pub async fn test_cursor_key_is_stable<S: Store>(store: Arc<S>) {
    let cursor = tidemark_model::Cursor::new(9, 4);
    let text = cursor.encode(store.cursor_key());
    assert_eq!(
        tidemark_model::Cursor::decode(&text, store.cursor_key(), 9),
        Ok(cursor)
    );
}

/// API keys: found by digest, listed oldest first, deletable only by their own application,
/// and never the last one.
pub async fn test_api_keys_are_found_by_digest_and_scoped_to_their_application<S: Store>(
    store: Arc<S>,
) {
    let mine = store.create_application("mine").await.expect("app");
    let theirs = store.create_application("theirs").await.expect("app");
    let first = store
        .create_api_key(mine.id, [1; 32], "aaaa", "key-one")
        .await
        .expect("key");
    let second = store
        .create_api_key(mine.id, [2; 32], "bbbb", "key-two")
        .await
        .expect("key");
    let foreign = store
        .create_api_key(theirs.id, [3; 32], "cccc", "key-three")
        .await
        .expect("key");
    assert_eq!(
        store.find_api_key([2; 32]).await.expect("find"),
        Some(second.clone())
    );
    assert_eq!(store.find_api_key([9; 32]).await.expect("find"), None);
    let listed = store.list_api_keys(mine.id).await.expect("list");
    assert_eq!(
        listed.iter().map(|k| k.id).collect::<Vec<_>>(),
        vec![first.id, second.id]
    );
    assert!(matches!(
        store.delete_api_key(mine.id, foreign.id).await,
        Err(StoreError::NotFound(_))
    ));
    store
        .delete_api_key(mine.id, first.id)
        .await
        .expect("delete");
    assert_eq!(store.find_api_key([1; 32]).await.expect("find"), None);
    assert!(matches!(
        store.delete_api_key(mine.id, second.id).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(
        store
            .create_api_key(mine.id, [2; 32], "dupe", "key-dupe")
            .await
            .is_err(),
        "digests are unique"
    );
}

/// A bearer token finds its account; deleting the account revokes it.
pub async fn test_account_tokens_resolve_and_die_with_their_account<S: Store>(store: Arc<S>) {
    let application = store.create_application("tokens").await.expect("app");
    let account = store
        .create_account(NewAccount {
            application_id: application.id,
            service: "local".into(),
            admin: false,
            config: json!({}),
            token_digest: Some([7; 32]),
        })
        .await
        .expect("account");
    let found = store.find_account_by_token([7; 32]).await.expect("find");
    assert_eq!(found.map(|a| a.id), Some(account.id));
    assert_eq!(
        store.find_account_by_token([8; 32]).await.expect("find"),
        None
    );
    store.delete_account(account.id).await.expect("delete");
    assert_eq!(
        store.find_account_by_token([7; 32]).await.expect("find"),
        None
    );
}

/// Account patches change only what they name; a default subscription can be moved.
pub async fn test_account_updates_and_default_subscription_moves<S: Store>(store: Arc<S>) {
    let first = setup(&*store).await;
    let account = store.get_account(first.account).await.expect("account");
    let updated = store
        .update_account(
            account.id,
            crate::AccountPatch {
                admin: Some(true),
                config: None,
            },
        )
        .await
        .expect("update");
    assert!(updated.admin);
    assert_eq!(updated.config, account.config);
    let updated = store
        .update_account(
            account.id,
            crate::AccountPatch {
                admin: None,
                config: Some(json!({"path": "/srv"})),
            },
        )
        .await
        .expect("update");
    assert!(updated.admin);
    assert_eq!(updated.config, json!({"path": "/srv"}));
    assert!(matches!(
        store
            .update_account(account.id + 10_000, crate::AccountPatch::default())
            .await,
        Err(StoreError::NotFound(_))
    ));

    let mut application = store
        .get_application(account.application_id)
        .await
        .expect("app");
    application.max_subscriptions_per_account = 2;
    store
        .update_application(&application)
        .await
        .expect("update");
    let second = store
        .create_subscription(NewSubscription::changes(account.id))
        .await
        .expect("second");
    assert!(!second.default);
    let moved = store
        .set_default_subscription(second.id)
        .await
        .expect("move default");
    assert!(moved.default);
    assert!(
        !store
            .get_subscription(first.id)
            .await
            .expect("first")
            .default
    );
    assert!(matches!(
        store.set_default_subscription(second.id + 10_000).await,
        Err(StoreError::NotFound(_))
    ));
}

/// `last_cursor` is the newest cursor handed out, whatever order readers finish in.
pub async fn test_last_cursor_only_moves_forward<S: Store>(store: Arc<S>) {
    let subscription = setup(&*store).await;
    store
        .record_last_cursor(subscription.id, "at-5", 5)
        .await
        .expect("record");
    store
        .record_last_cursor(subscription.id, "at-3", 3)
        .await
        .expect("older is ignored");
    let recorded = store.get_subscription(subscription.id).await.expect("get");
    assert_eq!(recorded.last_cursor.as_deref(), Some("at-5"));
    store
        .record_last_cursor(subscription.id, "at-9", 9)
        .await
        .expect("record");
    let recorded = store.get_subscription(subscription.id).await.expect("get");
    assert_eq!(recorded.last_cursor.as_deref(), Some("at-9"));
    assert!(matches!(
        store
            .record_last_cursor(subscription.id + 10_000, "x", 1)
            .await,
        Err(StoreError::NotFound(_))
    ));
}

fn new_endpoint(application_id: i64) -> crate::NewWebhookEndpoint {
    crate::NewWebhookEndpoint {
        application_id,
        url: "http://127.0.0.1:9/hook".into(),
        filter: None,
        secret: "whsec_test".into(),
    }
}

/// Webhook notifications: due only for activity after the endpoint existed, one claim at a
/// time per (endpoint, subscription), coalesced through the subscription's last sequence at
/// claim time, fenced, and given up until newer activity.
pub async fn test_webhook_notifications_are_claimed_once_and_coalesced<S: Store>(store: Arc<S>) {
    let subscription = setup(&*store).await;
    let account = store
        .get_account(subscription.account)
        .await
        .expect("account");
    store
        .commit(batch(&subscription, &["before"], None))
        .await
        .expect("commit");
    let endpoint = store
        .create_webhook(new_endpoint(account.application_id))
        .await
        .expect("endpoint");
    let ttl = Duration::from_secs(30);
    assert!(
        store
            .claim_due_notifications(Utc::now(), ttl, 10, 10)
            .await
            .expect("claim")
            .is_empty(),
        "activity from before the endpoint existed is not announced"
    );
    store
        .commit(batch(&subscription, &["a", "b", "c"], None))
        .await
        .expect("commit");
    let due = store
        .claim_due_notifications(Utc::now(), ttl, 10, 10)
        .await
        .expect("claim");
    assert_eq!(due.len(), 1, "one notification for three activities");
    let first = due[0].clone();
    assert_eq!((first.after_sequence, first.through_sequence), (1, 4));
    assert_eq!(first.endpoint.id, endpoint.id);
    // In flight: no second claim, even with newer activity.
    store
        .commit(batch(&subscription, &["d"], None))
        .await
        .expect("commit");
    assert!(store
        .claim_due_notifications(Utc::now(), ttl, 10, 10)
        .await
        .expect("claim")
        .is_empty());
    store
        .finish_notification(&first, crate::NotificationOutcome::Delivered, None)
        .await
        .expect("finish");
    // Activity committed after the delivered one began is due again.
    let due = store
        .claim_due_notifications(Utc::now(), ttl, 10, 10)
        .await
        .expect("claim");
    assert_eq!(due.len(), 1);
    let second = due[0].clone();
    assert_eq!((second.after_sequence, second.through_sequence), (4, 5));

    // A failure is retried at its time; a claim taken over cannot finish.
    let retry_at = Utc::now() + chrono::Duration::seconds(60);
    let attempt = crate::WebhookAttempt {
        id: 0,
        endpoint_id: endpoint.id,
        subscription_id: subscription.id,
        account_id: account.id,
        sequence: 5,
        started_at: Utc::now(),
        latency: Duration::from_millis(12),
        status_code: Some(503),
        success: false,
        error: Some("503 Service Unavailable".into()),
    };
    store
        .finish_notification(
            &second,
            crate::NotificationOutcome::Failed { retry_at },
            Some(attempt),
        )
        .await
        .expect("finish");
    assert!(store
        .claim_due_notifications(Utc::now(), ttl, 10, 10)
        .await
        .expect("claim")
        .is_empty());
    let retried = store
        .claim_due_notifications(retry_at + chrono::Duration::seconds(1), ttl, 10, 10)
        .await
        .expect("claim");
    assert_eq!(retried.len(), 1);
    assert_eq!(retried[0].attempts, 1);
    assert!(retried[0].failing_since.is_some());
    let stale = second.clone();
    store
        .finish_notification(&stale, crate::NotificationOutcome::Delivered, None)
        .await
        .expect("stale finish is a no-op");
    // Give up: not due again until newer activity.
    store
        .finish_notification(&retried[0], crate::NotificationOutcome::GaveUp, None)
        .await
        .expect("give up");
    let later = Utc::now() + chrono::Duration::days(2);
    assert!(store
        .claim_due_notifications(later, ttl, 10, 10)
        .await
        .expect("claim")
        .is_empty());
    store
        .commit(batch(&subscription, &["e"], None))
        .await
        .expect("commit");
    let revived = store
        .claim_due_notifications(later, ttl, 10, 10)
        .await
        .expect("claim");
    assert_eq!(
        revived.len(),
        1,
        "new activity restarts a given-up notification"
    );
    assert_eq!((revived[0].attempts, revived[0].failing_since), (0, None));

    // The attempts log, newest first, filterable; recovery makes failed ones due again.
    let attempts = store
        .list_webhook_attempts(
            endpoint.id,
            crate::AttemptQuery {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(
        (attempts[0].status_code, attempts[0].success),
        (Some(503), false)
    );
    let successes = store
        .list_webhook_attempts(
            endpoint.id,
            crate::AttemptQuery {
                success: Some(true),
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .expect("attempts");
    assert!(successes.is_empty());
    store
        .finish_notification(&revived[0], crate::NotificationOutcome::GaveUp, None)
        .await
        .expect("give up");
    let recovered = store
        .recover_webhook(endpoint.id, Utc::now() - chrono::Duration::hours(1))
        .await
        .expect("recover");
    assert_eq!(recovered, 1);
    assert_eq!(
        store
            .claim_due_notifications(Utc::now(), ttl, 10, 10)
            .await
            .expect("claim")
            .len(),
        1
    );

    // Disabled endpoints are not notified; deleting removes them.
    let disabled = store
        .update_webhook(
            endpoint.id,
            crate::WebhookPatch {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .expect("disable");
    assert!(!disabled.enabled);
    store
        .commit(batch(&subscription, &["f"], None))
        .await
        .expect("commit");
    assert!(store
        .claim_due_notifications(later, ttl, 10, 10)
        .await
        .expect("claim")
        .is_empty());
    store.delete_webhook(endpoint.id).await.expect("delete");
    assert!(matches!(
        store.get_webhook(endpoint.id).await,
        Err(StoreError::NotFound(_))
    ));
}

/// An endpoint holds at most `per_endpoint` claims at once (counting those already held), so
/// an endpoint with many due notifications leaves room for the others.
pub async fn test_webhook_claims_respect_the_per_endpoint_limit<S: Store>(store: Arc<S>) {
    let first = setup(&*store).await;
    let account = store.get_account(first.account).await.expect("account");
    let mut subscriptions = vec![first];
    for _ in 0..4 {
        let more = store
            .create_account(NewAccount {
                application_id: account.application_id,
                service: "local".into(),
                admin: false,
                config: json!({"path": "/tmp"}),
                token_digest: None,
            })
            .await
            .expect("account");
        subscriptions.push(
            store
                .create_subscription(NewSubscription::changes(more.id))
                .await
                .expect("subscription"),
        );
    }
    let crowded = store
        .create_webhook(new_endpoint(account.application_id))
        .await
        .expect("endpoint");
    let other = store
        .create_webhook(new_endpoint(account.application_id))
        .await
        .expect("endpoint");
    for subscription in &subscriptions {
        store
            .commit(batch(subscription, &["x"], None))
            .await
            .expect("commit");
    }
    let ttl = Duration::from_secs(30);
    let claimed = |due: &[crate::DueNotification], endpoint: i64| {
        due.iter().filter(|d| d.endpoint.id == endpoint).count()
    };
    let due = store
        .claim_due_notifications(Utc::now(), ttl, 100, 2)
        .await
        .expect("claim");
    assert_eq!(
        (claimed(&due, crowded.id), claimed(&due, other.id)),
        (2, 2),
        "two per endpoint of five due each"
    );
    assert!(
        store
            .claim_due_notifications(Utc::now(), ttl, 100, 2)
            .await
            .expect("claim")
            .is_empty(),
        "both endpoints hold two claims already"
    );
    let finished = due
        .iter()
        .find(|d| d.endpoint.id == crowded.id)
        .expect("one of the crowded endpoint's")
        .clone();
    store
        .finish_notification(&finished, crate::NotificationOutcome::Delivered, None)
        .await
        .expect("finish");
    let next = store
        .claim_due_notifications(Utc::now(), ttl, 100, 2)
        .await
        .expect("claim");
    assert_eq!(
        (claimed(&next, crowded.id), claimed(&next, other.id)),
        (1, 0),
        "a finished claim frees one place"
    );
    // Expired claims hold no place.
    let later = Utc::now() + chrono::Duration::seconds(31);
    let after_expiry = store
        .claim_due_notifications(later, ttl, 100, 2)
        .await
        .expect("claim");
    assert_eq!(
        (
            claimed(&after_expiry, crowded.id),
            claimed(&after_expiry, other.id)
        ),
        (2, 2)
    );
}

/// The oldest API key signs an application's webhooks.
pub async fn test_oldest_api_key_signs<S: Store>(store: Arc<S>) {
    let application = store.create_application("signing").await.expect("app");
    assert_eq!(store.signing_key(application.id).await.expect("key"), None);
    store
        .create_api_key(application.id, [4; 32], "old1", "oldest-key")
        .await
        .expect("key");
    tokio::time::sleep(Duration::from_millis(5)).await;
    store
        .create_api_key(application.id, [5; 32], "new1", "newer-key")
        .await
        .expect("key");
    assert_eq!(
        store
            .signing_key(application.id)
            .await
            .expect("key")
            .as_deref(),
        Some("oldest-key")
    );
}

/// Time ranges: `[from, until)` by activity timestamp, in (timestamp, sequence) order whatever
/// the commit order, paged by position, open-ended without `until`; activity without a
/// timestamp is in no range.
pub async fn test_time_ranges_read_in_timestamp_order_and_resume_after_a_position<S: Store>(
    store: Arc<S>,
) {
    use crate::{RangePosition, TimeRange};
    let subscription = setup(&*store).await;
    let base = Utc::now() - chrono::Duration::hours(1);
    let at = |seconds: i64| base + chrono::Duration::seconds(seconds);
    // Committed out of time order (a late arrival, a backfill), with a tie at 20 s.
    let mut activities = Vec::new();
    for (id, second) in [
        ("a", Some(30)),
        ("b", Some(10)),
        ("c", Some(20)),
        ("d", None),
        ("e", Some(20)),
        ("f", Some(50)),
    ] {
        let mut activity = sample_activity(subscription.account, id);
        activity.timestamp = second.map(at);
        activities.push(activity);
    }
    store
        .commit(CommitBatch::new(subscription.id, &activities).expect("encodes"))
        .await
        .expect("commit");
    let ids = |page: &crate::RangePage| -> Vec<String> {
        let text = format!("[{}]", String::from_utf8_lossy(&page.out));
        let values: Vec<serde_json::Value> = serde_json::from_str(&text).expect("json list");
        values
            .iter()
            .map(|v| v["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let range = TimeRange {
        from_micros: at(10).timestamp_micros(),
        until_micros: Some(at(50).timestamp_micros()),
    };
    let all = store
        .read_range_json(subscription.id, range, None, 100, Vec::new())
        .await
        .expect("range");
    assert_eq!(
        ids(&all),
        ["b", "c", "e", "a"],
        "[10 s, 50 s) in time order, ties by sequence"
    );
    assert_eq!(all.total, 6);
    // Paged two at a time: the position resumes strictly after, through the tie.
    let mut after: Option<RangePosition> = None;
    let mut paged = Vec::new();
    loop {
        let page = store
            .read_range_json(subscription.id, range, after, 2, Vec::new())
            .await
            .expect("page");
        if page.count == 0 {
            assert!(page.last.is_none());
            break;
        }
        paged.extend(ids(&page));
        after = page.last;
    }
    assert_eq!(paged, ["b", "c", "e", "a"]);
    let open = TimeRange {
        from_micros: at(20).timestamp_micros(),
        until_micros: None,
    };
    let page = store
        .read_range_json(subscription.id, open, None, 100, Vec::new())
        .await
        .expect("open range");
    assert_eq!(ids(&page), ["c", "e", "a", "f"]);
    let empty = TimeRange {
        from_micros: at(31).timestamp_micros(),
        until_micros: Some(at(50).timestamp_micros()),
    };
    let page = store
        .read_range_json(subscription.id, empty, None, 100, Vec::new())
        .await
        .expect("empty range");
    assert_eq!(page.count, 0);
    assert!(matches!(
        store
            .read_range_json(999_999, range, None, 10, Vec::new())
            .await,
        Err(StoreError::NotFound(_))
    ));
}

/// Backfill jobs: one claimant at a time (fenced), each step commits activity (de-duplicated)
/// with the job's position, a stale claim changes nothing, and jobs end done or failed.
pub async fn test_backfill_jobs_are_claimed_once_and_commit_with_their_position<S: Store>(
    store: Arc<S>,
) {
    use crate::{BackfillState, BackfillStep};
    let subscription = setup(&*store).await;
    let now = Utc::now();
    let job = store
        .create_backfill(subscription.id, now - chrono::Duration::days(2), now)
        .await
        .expect("create");
    assert_eq!(job.state, BackfillState::Pending);
    assert!(store.create_backfill(999_999, now, now).await.is_err());
    let ttl = Duration::from_secs(30);
    let claim = store
        .claim_backfill(now, ttl)
        .await
        .expect("claim")
        .expect("a job");
    assert_eq!(claim.job.id, job.id);
    assert!(
        store
            .claim_backfill(now, ttl)
            .await
            .expect("claim")
            .is_none(),
        "claimed once"
    );
    let encoded = |ids: &[&str]| -> Vec<crate::EncodedActivity> {
        ids.iter()
            .map(|id| crate::EncodedActivity::encode(&sample_activity(subscription.account, id)))
            .collect::<Result<_, _>>()
            .expect("encodes")
    };
    // The live stream already has "b": the backfill's "b" is absorbed.
    store
        .commit(batch(&subscription, &["b"], None))
        .await
        .expect("live");
    let step = |ids: &[&str], checkpoint: &str, done: bool, token: i64| BackfillStep {
        job_id: job.id,
        claim_token: token,
        activities: encoded(ids),
        checkpoint: checkpoint.to_owned(),
        done,
    };
    let outcome = store
        .commit_backfill(step(&["a", "b"], "p1", false, claim.claim_token), ttl)
        .await
        .expect("step");
    assert_eq!((outcome.appended, outcome.duplicates), (1, 1));
    let progress = store.get_backfill(job.id).await.expect("get");
    assert_eq!(progress.checkpoint.as_deref(), Some("p1"));
    assert_eq!((progress.fetched, progress.appended), (2, 1));
    // A claim taken over after expiry fences the old one out.
    let later = now + chrono::Duration::seconds(31);
    let second = store
        .claim_backfill(later, ttl)
        .await
        .expect("claim")
        .expect("lapsed");
    assert_eq!(
        second.job.checkpoint.as_deref(),
        Some("p1"),
        "resumes from its position"
    );
    let stale = store
        .commit_backfill(step(&["c"], "p2", true, claim.claim_token), ttl)
        .await;
    assert!(matches!(stale, Err(StoreError::LeaseLost(_))), "{stale:?}");
    assert_eq!(
        read_all_ids(&*store, &subscription).await.len(),
        2,
        "nothing written"
    );
    store
        .commit_backfill(step(&["c"], "p2", true, second.claim_token), ttl)
        .await
        .expect("last step");
    let done = store.get_backfill(job.id).await.expect("get");
    assert_eq!(done.state, BackfillState::Done);
    assert_eq!((done.fetched, done.appended), (3, 2));
    assert!(store
        .claim_backfill(later, ttl)
        .await
        .expect("claim")
        .is_none());

    // A transient failure waits for its retry time; a permanent one ends the job.
    let other = store
        .create_backfill(subscription.id, now - chrono::Duration::days(1), now)
        .await
        .expect("create");
    let claim = store
        .claim_backfill(later, ttl)
        .await
        .expect("claim")
        .expect("job");
    let retry_at = later + chrono::Duration::seconds(10);
    store
        .release_backfill(other.id, claim.claim_token, "upstream 503", Some(retry_at))
        .await
        .expect("release");
    assert!(
        store
            .claim_backfill(later, ttl)
            .await
            .expect("claim")
            .is_none(),
        "not before retry"
    );
    let claim = store
        .claim_backfill(retry_at, ttl)
        .await
        .expect("claim")
        .expect("due");
    store
        .release_backfill(other.id, claim.claim_token, "not supported", None)
        .await
        .expect("fail");
    let failed = store.get_backfill(other.id).await.expect("get");
    assert_eq!(failed.state, BackfillState::Failed);
    assert_eq!(failed.error.as_deref(), Some("not supported"));
    assert!(matches!(
        store.get_backfill(999_999).await,
        Err(StoreError::NotFound(_))
    ));
}

/// An application created with its first key: one call, and the key finds it and signs for it.
pub async fn test_an_application_created_with_its_key_is_usable_at_once<S: Store>(store: Arc<S>) {
    let digest = [42u8; 32];
    let (application, key) = store
        .create_application_with_key("first", digest, "tmk_ab…", "tmk_secret")
        .await
        .expect("created");
    assert_eq!(key.application_id, application.id);
    let found = store
        .find_api_key(digest)
        .await
        .expect("lookup")
        .expect("found");
    assert_eq!(found.application_id, application.id);
    assert_eq!(
        store
            .signing_key(application.id)
            .await
            .expect("signing")
            .as_deref(),
        Some("tmk_secret")
    );
    assert_eq!(
        store
            .list_api_keys(application.id)
            .await
            .expect("keys")
            .len(),
        1
    );
}

fn new_destination(application_id: i64) -> crate::NewDestination {
    crate::NewDestination {
        application_id,
        kind: "nats".into(),
        target: json!({"url": "nats://127.0.0.1:4222", "stream": "TIDEMARK", "subject": "tidemark"}),
        filter: None,
        payload: "both".into(),
        batch_size: 100,
    }
}

fn destination_attempt(
    due: &crate::DuePublication,
    through: u64,
    success: bool,
) -> crate::DestinationAttempt {
    crate::DestinationAttempt {
        id: 0,
        destination_id: due.destination.id,
        subscription_id: due.subscription_id,
        account_id: due.account_id,
        first_sequence: due.after_sequence + 1,
        last_sequence: through,
        published: u32::try_from(through - due.after_sequence).unwrap_or(u32::MAX),
        started_at: Utc::now(),
        latency: Duration::from_millis(3),
        success,
        error: (!success).then(|| "broker unreachable".to_owned()),
    }
}

/// A broker destination publishes activity committed from its creation on; each
/// (destination, subscription) has at most one claim in flight; the position moves only when
/// a publication is acknowledged (and only forward), a failure retries from the same position
/// at its time, a stale claim changes nothing, and every attempt is logged.
pub async fn test_destinations_publish_once_per_subscription_and_move_only_forward<S: Store>(
    store: Arc<S>,
) {
    use crate::{DestinationPatch, PublicationOutcome};
    let subscription = setup(&*store).await;
    let account = store
        .get_account(subscription.account)
        .await
        .expect("account");
    store
        .commit(batch(&subscription, &["before1", "before2"], None))
        .await
        .expect("commit");
    let destination = store
        .create_destination(new_destination(account.application_id))
        .await
        .expect("destination");
    assert_eq!(destination.kind, "nats");
    assert_eq!(destination.target["stream"], "TIDEMARK");
    assert_eq!(destination.batch_size, 100);
    assert!(destination.enabled);
    let ttl = Duration::from_secs(30);
    let claim = |at: chrono::DateTime<Utc>| {
        let store = Arc::clone(&store);
        async move {
            store
                .claim_due_publications(at, ttl, 100)
                .await
                .expect("claim")
        }
    };
    assert!(
        claim(Utc::now()).await.is_empty(),
        "activity from before the destination is not published"
    );
    store
        .commit(batch(&subscription, &["a", "b", "c", "d"], None))
        .await
        .expect("commit");
    let due = claim(Utc::now()).await;
    assert_eq!(due.len(), 1);
    let first = due[0].clone();
    assert_eq!(
        (first.after_sequence, first.through_sequence, first.attempts),
        (2, 6, 0)
    );
    assert_eq!(first.destination, destination);
    assert!(
        claim(Utc::now()).await.is_empty(),
        "one claim in flight per (destination, subscription)"
    );

    // A failure: not due before its time, then due again from the same position.
    let retry_at = Utc::now() + chrono::Duration::seconds(60);
    store
        .finish_publication(
            &first,
            PublicationOutcome::Failed { retry_at },
            Some(destination_attempt(&first, 6, false)),
        )
        .await
        .expect("finish");
    assert!(claim(Utc::now()).await.is_empty(), "backing off");
    let due = claim(retry_at + chrono::Duration::seconds(1)).await;
    assert_eq!(due.len(), 1);
    let retry = due[0].clone();
    assert_eq!((retry.after_sequence, retry.attempts), (2, 1));
    assert!(retry.failing_since.is_some());

    // The first claim was taken over: finishing it changes nothing.
    store
        .finish_publication(&first, PublicationOutcome::Published { through: 6 }, None)
        .await
        .expect("stale finish is a no-op");
    // Acknowledged through 4 (a batch limit): the rest stays due.
    store
        .finish_publication(
            &retry,
            PublicationOutcome::Published { through: 4 },
            Some(destination_attempt(&retry, 4, true)),
        )
        .await
        .expect("finish");
    let due = claim(Utc::now()).await;
    assert_eq!(due.len(), 1);
    let rest = due[0].clone();
    assert_eq!(
        (rest.after_sequence, rest.through_sequence, rest.attempts),
        (4, 6, 0)
    );
    assert!(rest.failing_since.is_none());
    // The position never moves back.
    store
        .finish_publication(&rest, PublicationOutcome::Published { through: 3 }, None)
        .await
        .expect("finish");
    let due = claim(Utc::now()).await;
    assert_eq!(due[0].after_sequence, 4);
    store
        .finish_publication(&due[0], PublicationOutcome::Published { through: 6 }, None)
        .await
        .expect("finish");
    assert!(claim(Utc::now()).await.is_empty(), "all published");

    // A subscription created after the destination is published from its start; another
    // application's activity never is.
    let second_account = store
        .create_account(NewAccount {
            application_id: account.application_id,
            service: "local".into(),
            admin: false,
            config: json!({"path": "/tmp"}),
            token_digest: None,
        })
        .await
        .expect("account");
    let later = store
        .create_subscription(NewSubscription::changes(second_account.id))
        .await
        .expect("subscription");
    store
        .commit(batch(&later, &["x"], None))
        .await
        .expect("commit");
    let stranger = setup(&*store).await;
    store
        .commit(batch(&stranger, &["y"], None))
        .await
        .expect("commit");
    let due = claim(Utc::now()).await;
    assert_eq!(due.len(), 1, "{due:?}");
    assert_eq!(
        (
            due[0].subscription_id,
            due[0].after_sequence,
            due[0].through_sequence
        ),
        (later.id, 0, 1)
    );
    store
        .finish_publication(&due[0], PublicationOutcome::Published { through: 1 }, None)
        .await
        .expect("finish");

    // A disabled destination is not published to; its position is kept.
    let disabled = store
        .update_destination(
            destination.id,
            DestinationPatch {
                enabled: Some(false),
                filter: Some(Some(
                    json!({"detail": {"activity": {"v1": {"type": ["add"]}}}}),
                )),
                ..DestinationPatch::default()
            },
        )
        .await
        .expect("update");
    assert!(!disabled.enabled);
    assert!(disabled.filter.is_some());
    store
        .commit(batch(&subscription, &["e"], None))
        .await
        .expect("commit");
    assert!(claim(Utc::now()).await.is_empty(), "disabled");
    store
        .update_destination(
            destination.id,
            DestinationPatch {
                enabled: Some(true),
                ..DestinationPatch::default()
            },
        )
        .await
        .expect("update");
    let due = claim(Utc::now()).await;
    assert_eq!(
        (due.len(), due[0].after_sequence, due[0].through_sequence),
        (1, 6, 7)
    );

    let attempts = store
        .list_destination_attempts(
            destination.id,
            crate::AttemptQuery {
                limit: 10,
                ..crate::AttemptQuery::default()
            },
        )
        .await
        .expect("attempts");
    assert_eq!(attempts.len(), 2, "newest first");
    assert!(attempts[0].success && !attempts[1].success);
    assert_eq!(
        (attempts[0].first_sequence, attempts[0].last_sequence),
        (3, 4)
    );
    assert_eq!(attempts[1].error.as_deref(), Some("broker unreachable"));
    let failures = store
        .list_destination_attempts(
            destination.id,
            crate::AttemptQuery {
                success: Some(false),
                limit: 10,
                ..crate::AttemptQuery::default()
            },
        )
        .await
        .expect("attempts");
    assert_eq!(failures.len(), 1);

    assert_eq!(
        store
            .list_destinations(account.application_id)
            .await
            .expect("list")
            .len(),
        1
    );
    store
        .delete_destination(destination.id)
        .await
        .expect("delete");
    assert!(matches!(
        store.get_destination(destination.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.delete_destination(destination.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        claim(Utc::now()).await.is_empty(),
        "gone with its positions"
    );
}

/// A publisher moves its position after each acknowledged message without giving up its
/// claim; a claim taken over, or whose destination changed, is told so and moves nothing; a
/// pending message is handed to the next claim; renewing a claim keeps the failure count.
pub async fn test_destination_claim_advances_per_message_while_held<S: Store>(store: Arc<S>) {
    use crate::{DestinationPatch, PublicationAdvance, PublicationOutcome};
    let subscription = setup(&*store).await;
    let account = store
        .get_account(subscription.account)
        .await
        .expect("account");
    let destination = store
        .create_destination(new_destination(account.application_id))
        .await
        .expect("destination");
    store
        .commit(batch(&subscription, &["a", "b", "c", "d", "e"], None))
        .await
        .expect("commit");
    let ttl = Duration::from_secs(30);
    let now = Utc::now();
    let claim = |at: chrono::DateTime<Utc>| {
        let store = Arc::clone(&store);
        async move {
            store
                .claim_due_publications(at, ttl, 10)
                .await
                .expect("claim")
        }
    };
    let due = claim(now).await;
    assert_eq!(due.len(), 1);
    let held = due[0].clone();
    assert_eq!(
        (
            held.after_sequence,
            held.through_sequence,
            held.pending_through
        ),
        (0, 5, None)
    );
    let advance = |due: &crate::DuePublication, through: u64, pending: Option<u64>, until| {
        let store = Arc::clone(&store);
        let mut item = PublicationAdvance::of(due, through, until);
        item.pending_through = pending;
        async move {
            store
                .advance_publications(vec![item])
                .await
                .expect("advance")[0]
        }
    };

    let until = now + chrono::Duration::seconds(60);
    let mut first = PublicationAdvance::of(&held, 2, until);
    first.pending_through = Some(3);
    first.attempt = Some(destination_attempt(&held, 2, true));
    let mut second = PublicationAdvance::of(&held, 1, until);
    second.pending_through = Some(3);
    assert_eq!(
        store
            .advance_publications(vec![first, second])
            .await
            .expect("advance"),
        [true, true],
        "a batch of advances, each taken"
    );
    // Still claimed (until the extended time), so nobody else takes it.
    assert!(claim(now + chrono::Duration::seconds(45)).await.is_empty());

    // Once the extended claim lapses, the next publisher starts from the position and is told
    // which message was in flight (the position never moved back to 1).
    let later = until + chrono::Duration::seconds(1);
    let due = claim(later).await;
    assert_eq!(due.len(), 1);
    let taken = due[0].clone();
    assert_eq!(
        (
            taken.after_sequence,
            taken.through_sequence,
            taken.pending_through
        ),
        (2, 5, Some(3))
    );
    assert!(
        !advance(&held, 5, None, later).await,
        "the old holder learns it lost the claim"
    );
    // A failure, then a renewal that moves nothing: the failure count stays.
    let retry_at = later + chrono::Duration::seconds(1);
    store
        .finish_publication(&taken, PublicationOutcome::Failed { retry_at }, None)
        .await
        .expect("finish");
    let due = claim(retry_at).await;
    let retry = due[0].clone();
    assert_eq!(
        (retry.after_sequence, retry.attempts, retry.pending_through),
        (2, 1, Some(3)),
        "a failure keeps the pending message"
    );
    let renewed_until = retry_at + chrono::Duration::seconds(30);
    assert!(advance(&retry, 2, Some(3), renewed_until).await);
    store
        .finish_publication(&retry, PublicationOutcome::Published { through: 2 }, None)
        .await
        .expect("release");
    let due = claim(renewed_until).await;
    let again = due[0].clone();
    assert_eq!(
        (again.attempts, again.pending_through),
        (1, Some(3)),
        "neither a renewal nor a release without progress clears the failure count or the pending message"
    );
    assert!(again.failing_since.is_some());
    // Progress clears both.
    assert!(
        advance(
            &again,
            3,
            None,
            renewed_until + chrono::Duration::seconds(30)
        )
        .await
    );

    // A destination changed (or disabled) since the claim refuses the advance.
    store
        .update_destination(
            destination.id,
            DestinationPatch {
                batch_size: Some(7),
                ..DestinationPatch::default()
            },
        )
        .await
        .expect("update");
    assert!(
        !advance(
            &again,
            4,
            None,
            renewed_until + chrono::Duration::seconds(30)
        )
        .await,
        "settings changed under the claim"
    );
    store
        .finish_publication(&again, PublicationOutcome::Published { through: 3 }, None)
        .await
        .expect("release");
    let due = claim(renewed_until + chrono::Duration::seconds(1)).await;
    let fresh = due[0].clone();
    assert_eq!(
        (fresh.after_sequence, fresh.attempts, fresh.pending_through),
        (3, 0, None)
    );
    assert_eq!(fresh.destination.batch_size, 7);
    assert!(
        advance(
            &fresh,
            5,
            None,
            renewed_until + chrono::Duration::seconds(60)
        )
        .await
    );
    store
        .finish_publication(&fresh, PublicationOutcome::Published { through: 5 }, None)
        .await
        .expect("finish");
    assert!(claim(later + chrono::Duration::minutes(5)).await.is_empty());

    // A destination deleted and created again (its id may be reused) is out of reach of the
    // old one's claims.
    store
        .commit(batch(&subscription, &["f"], None))
        .await
        .expect("commit");
    let stale_at = later + chrono::Duration::minutes(10);
    let stale = claim(stale_at).await[0].clone();
    store
        .delete_destination(destination.id)
        .await
        .expect("delete");
    let recreated = store
        .create_destination(new_destination(account.application_id))
        .await
        .expect("destination");
    store
        .commit(batch(&subscription, &["g"], None))
        .await
        .expect("commit");
    let mut stale_for_new = stale.clone();
    stale_for_new.destination.id = recreated.id;
    assert!(!advance(&stale_for_new, 7, None, stale_at).await);
    store
        .finish_publication(
            &stale_for_new,
            PublicationOutcome::Published { through: 7 },
            None,
        )
        .await
        .expect("stale finish");
    let due = claim(stale_at).await;
    assert_eq!(due.len(), 1);
    assert_eq!(
        (
            due[0].destination.id,
            due[0].after_sequence,
            due[0].through_sequence
        ),
        (recreated.id, 6, 7),
        "the new destination's position is its own"
    );

    let attempts = store
        .list_destination_attempts(
            destination.id,
            crate::AttemptQuery {
                limit: 10,
                ..crate::AttemptQuery::default()
            },
        )
        .await
        .expect("attempts");
    assert!(attempts.is_empty(), "deleted with its destination");
}

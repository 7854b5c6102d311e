//! `copy_sqlite_to_postgres` round-trips a whole store (issue 8, item 6): a SQLite store built
//! through the [`Store`] trait reads back equal through the PostgreSQL store on the copy, its
//! streams continue where they stopped, its cursors still decode, and its leases and claims
//! pass to the new nodes. A non-empty target, bad input and a copy failing halfway change
//! nothing. Runs on the test server named by `TIDEMARK_TEST_POSTGRES_URL`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tidemark_model::{Cursor, MonitoredResource, Subscription, SubscriptionType};
use tidemark_store::pgtest::TestDatabase;
use tidemark_store::testsuite::sample_activity;
use tidemark_store::{
    copy_sqlite_to_postgres, AccountPatch, AttemptQuery, BackfillStep, CommitBatch, CopyReport,
    EncodedActivity, Lease, NewAccount, NewSubscription, NewWebhookEndpoint, NotificationOutcome,
    PollResult, PostgresStore, RangePosition, SecretDigest, SqliteStore, Store, StoreError,
    TimeRange, WebhookAttempt,
};

const TTL: Duration = Duration::from_secs(3600);

/// What [`populate`] made, to check against.
struct Fixture {
    api_key_digests: Vec<SecretDigest>,
    token_digests: Vec<SecretDigest>,
    /// The subscription with retention-pruned history (its stream starts above 1).
    pruned: Subscription,
    /// The subscription with many time-stamped activities, a webhook and a held lease.
    busy: Subscription,
    /// Leases held at the time of the copy.
    held_lease: Lease,
    /// A webhook notification in flight at the time of the copy.
    in_flight_claim: tidemark_store::DueNotification,
    /// A broker publication in flight at the time of the copy.
    in_flight_publication: tidemark_store::DuePublication,
    /// A backfill job claimed at the time of the copy, and its claim token.
    claimed_backfill: (i64, i64),
    /// A cursor minted by the SQLite store.
    cursor: String,
    /// Activities in the busy subscription's stream.
    busy_count: u64,
}

fn digest(seed: u8) -> SecretDigest {
    [seed; 32]
}

fn encoded(
    account: i64,
    ids: &[String],
    at: impl Fn(usize) -> Option<DateTime<Utc>>,
) -> Vec<EncodedActivity> {
    ids.iter()
        .enumerate()
        .map(|(index, id)| {
            let mut activity = sample_activity(account, id);
            activity.timestamp = at(index);
            EncodedActivity::encode(&activity).expect("encodes")
        })
        .collect()
}

/// A store with every kind of row: two applications (one with retention, two API keys each),
/// accounts with tokens, subscriptions of several shapes, pruned and time-ranged streams with
/// duplicates absorbed, checkpoints and watermarks, a failed poll, a held lease, a webhook
/// endpoint with attempts and a claim in flight, and backfill jobs (one claimed mid-way).
async fn populate(store: &SqliteStore) -> Fixture {
    let base = Utc::now() - chrono::Duration::hours(2);
    let (retained_app, _first_key) = store
        .create_application_with_key("Retained", digest(1), "key1", "sk_live_one")
        .await
        .expect("application");
    let mut retained_app = retained_app;
    retained_app.retention_days = Some(1);
    retained_app.max_subscriptions_per_account = 3;
    retained_app.allow_private_webhook_targets = false;
    let retained_app = store
        .update_application(&retained_app)
        .await
        .expect("update");
    store
        .create_api_key(retained_app.id, digest(2), "key2", "sk_live_two")
        .await
        .expect("second key");
    let busy_app = store.create_application("Busy").await.expect("application");
    store
        .create_api_key(busy_app.id, digest(3), "key3", "sk_live_three")
        .await
        .expect("key");
    let deleted_key = store
        .create_api_key(busy_app.id, digest(4), "key4", "sk_live_four")
        .await
        .expect("key");
    store
        .delete_api_key(busy_app.id, deleted_key.id)
        .await
        .expect("a deleted key leaves a gap in the ids");

    let alice = store
        .create_account(NewAccount {
            application_id: retained_app.id,
            service: "local".into(),
            admin: false,
            config: json!({"path": "/srv/alice"}),
            token_digest: Some(digest(11)),
        })
        .await
        .expect("account");
    store
        .update_account(
            alice.id,
            AccountPatch {
                admin: Some(true),
                config: Some(json!({"path": "/srv/alice", "note": "patched"})),
            },
        )
        .await
        .expect("patch");
    let bob = store
        .create_account(NewAccount {
            application_id: busy_app.id,
            service: "jive".into(),
            admin: true,
            config: json!({"base_url": "http://127.0.0.1:9/api", "token": "t"}),
            token_digest: Some(digest(12)),
        })
        .await
        .expect("account");
    let pruned = store
        .create_subscription(NewSubscription::changes(alice.id))
        .await
        .expect("subscription");
    let inactive = store
        .create_subscription(NewSubscription {
            account_id: alice.id,
            subscription_type: SubscriptionType::Changes,
            monitored_resources: vec![MonitoredResource {
                resource: "F123".into(),
                user: Some("u-1".into()),
            }],
            active: true,
            default: Some(false),
            monitored_resource_api: Some("storage".into()),
            monitored_resource_object_type: Some("folder".into()),
        })
        .await
        .expect("subscription");
    store
        .set_subscription_active(inactive.id, false, "credentials revoked")
        .await
        .expect("deactivate");
    let busy = store
        .create_subscription(NewSubscription::changes(bob.id))
        .await
        .expect("subscription");

    // The pruned stream: five old activities, three new (one re-delivery absorbed), then
    // retention removes the old ones, so the stream starts at 6.
    let old: Vec<String> = (1..=5).map(|i| format!("old-{i}")).collect();
    store
        .commit(CommitBatch {
            subscription_id: pruned.id,
            activities: encoded(alice.id, &old, |_| Some(base)),
            checkpoint: Some("page-1".into()),
            lease: None,
            watermark: Some(base),
        })
        .await
        .expect("commit");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let boundary = Utc::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let new: Vec<String> = ["new-1", "new-2", "old-5", "new-3"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    let outcome = store
        .commit(CommitBatch {
            subscription_id: pruned.id,
            activities: encoded(alice.id, &new, |i| {
                Some(base + chrono::Duration::minutes(i as i64))
            }),
            checkpoint: Some("page-2".into()),
            lease: None,
            watermark: Some(base + chrono::Duration::minutes(30)),
        })
        .await
        .expect("commit");
    assert_eq!((outcome.appended, outcome.duplicates), (3, 1));
    let pruned_rows = store
        .prune_expired(boundary + chrono::Duration::days(1), 1000)
        .await
        .expect("prune");
    assert_eq!(pruned_rows, 5);
    let first = store.read_page(pruned.id, 0, 1).await.expect("read");
    assert_eq!(first.activities[0].sequence, 6, "history was pruned");

    // The busy stream: enough activity to span several copy batches, timestamps spread out
    // of commit order, some without a timestamp, re-deliveries absorbed.
    let mut busy_count = 0;
    for chunk in 0..5 {
        let ids: Vec<String> = (0..500).map(|i| format!("b-{chunk}-{i}")).collect();
        let mut activities = encoded(bob.id, &ids, |i| {
            (i % 7 != 0).then(|| base + chrono::Duration::seconds(((i * 37) % 500) as i64))
        });
        activities.push(activities[3].clone());
        let outcome = store
            .commit(CommitBatch {
                subscription_id: busy.id,
                activities,
                checkpoint: Some(format!("chunk-{chunk}")),
                lease: None,
                watermark: Some(base + chrono::Duration::seconds(chunk * 100)),
            })
            .await
            .expect("commit");
        assert_eq!(outcome.duplicates, 1);
        busy_count += outcome.appended as u64;
    }

    // A cursor handed out (and recorded as the subscription's last).
    let cursor = Cursor::new(busy.id, 1200).encode(store.cursor_key());
    store
        .record_last_cursor(busy.id, &cursor, 1200)
        .await
        .expect("record cursor");

    // Scheduling: a failed poll on one subscription, a lease still held on another.
    let far = Utc::now() + chrono::Duration::days(1);
    let leases = store
        .acquire_due("node-old", far, TTL, 10)
        .await
        .expect("acquire");
    let pruned_lease = leases
        .iter()
        .find(|l| l.subscription_id == pruned.id)
        .expect("pruned leased")
        .clone();
    store
        .release_lease(
            &pruned_lease,
            PollResult::Failed {
                error: "upstream 503".into(),
                retry_at: far,
            },
        )
        .await
        .expect("release");
    let held_lease = leases
        .iter()
        .find(|l| l.subscription_id == busy.id)
        .expect("busy leased")
        .clone();

    // Webhooks: a failed attempt, a delivered one, and a claim in flight.
    let endpoint = store
        .create_webhook(NewWebhookEndpoint {
            application_id: busy_app.id,
            url: "http://127.0.0.1:9/hook".into(),
            filter: Some(json!({"type": ["add"]})),
            secret: "whsec_migrate".into(),
        })
        .await
        .expect("endpoint");
    let (bob_id, busy_id) = (bob.id, busy.id);
    let append = |ids: Vec<String>| {
        let activities = encoded(bob_id, &ids, |_| Some(Utc::now()));
        async move {
            store
                .commit(CommitBatch {
                    subscription_id: busy_id,
                    activities,
                    checkpoint: None,
                    lease: None,
                    watermark: None,
                })
                .await
                .expect("commit")
        }
    };
    busy_count += append(vec!["w-1".into()]).await.appended as u64;
    let now = Utc::now();
    let due = store
        .claim_due_notifications(now, TTL, 10, 10)
        .await
        .expect("claim");
    assert_eq!(due.len(), 1);
    let attempt =
        |status: u16, success: bool, due: &tidemark_store::DueNotification| WebhookAttempt {
            id: 0,
            endpoint_id: endpoint.id,
            subscription_id: busy.id,
            account_id: bob.id,
            sequence: due.through_sequence,
            started_at: Utc::now(),
            latency: Duration::from_micros(12_345),
            status_code: Some(status),
            success,
            error: (!success).then(|| format!("{status} from the receiver")),
        };
    let retry_at = now + chrono::Duration::seconds(60);
    store
        .finish_notification(
            &due[0],
            NotificationOutcome::Failed { retry_at },
            Some(attempt(503, false, &due[0])),
        )
        .await
        .expect("finish");
    let due = store
        .claim_due_notifications(retry_at + chrono::Duration::seconds(1), TTL, 10, 10)
        .await
        .expect("claim");
    assert_eq!(due.len(), 1);
    store
        .finish_notification(
            &due[0],
            NotificationOutcome::Delivered,
            Some(attempt(200, true, &due[0])),
        )
        .await
        .expect("finish");
    busy_count += append(vec!["w-2".into(), "w-3".into()]).await.appended as u64;
    let in_flight = store
        .claim_due_notifications(retry_at + chrono::Duration::seconds(2), TTL, 10, 10)
        .await
        .expect("claim");
    assert_eq!(in_flight.len(), 1, "a claim in flight at the copy");

    // A broker destination: a failed attempt, an acknowledged one, and a claim in flight.
    let destination = store
        .create_destination(tidemark_store::NewDestination {
            application_id: busy_app.id,
            kind: "redis".into(),
            target: json!({"url": "redis://127.0.0.1:6379", "stream": "tidemark"}),
            filter: Some(json!({"detail": {"activity": {"v1": {"type": ["add"]}}}})),
            payload: "v2".into(),
            batch_size: 50,
        })
        .await
        .expect("destination");
    busy_count += append(vec!["d-1".into(), "d-2".into()]).await.appended as u64;
    let publication_attempt =
        |due: &tidemark_store::DuePublication, success: bool| tidemark_store::DestinationAttempt {
            id: 0,
            destination_id: destination.id,
            subscription_id: busy.id,
            account_id: bob.id,
            first_sequence: due.after_sequence + 1,
            last_sequence: due.through_sequence,
            published: 2,
            started_at: Utc::now(),
            latency: Duration::from_micros(2_345),
            success,
            error: (!success).then(|| "connection refused".to_owned()),
        };
    let publish_retry = Utc::now() + chrono::Duration::seconds(60);
    let due = store
        .claim_due_publications(Utc::now(), TTL, 10)
        .await
        .expect("claim");
    assert_eq!(due.len(), 1);
    store
        .finish_publication(
            &due[0],
            tidemark_store::PublicationOutcome::Failed {
                retry_at: publish_retry,
            },
            Some(publication_attempt(&due[0], false)),
        )
        .await
        .expect("finish");
    let due = store
        .claim_due_publications(publish_retry + chrono::Duration::seconds(1), TTL, 10)
        .await
        .expect("claim");
    assert_eq!(due.len(), 1);
    store
        .finish_publication(
            &due[0],
            tidemark_store::PublicationOutcome::Published {
                through: due[0].through_sequence,
            },
            Some(publication_attempt(&due[0], true)),
        )
        .await
        .expect("finish");
    busy_count += append(vec!["d-3".into()]).await.appended as u64;
    let publishing = store
        .claim_due_publications(publish_retry + chrono::Duration::seconds(2), TTL, 10)
        .await
        .expect("claim");
    assert_eq!(publishing.len(), 1, "a publication in flight at the copy");

    // Backfill: one job claimed with a step committed, one pending.
    let job = store
        .create_backfill(pruned.id, base - chrono::Duration::days(2), base)
        .await
        .expect("backfill");
    let claim = store
        .claim_backfill(Utc::now(), TTL)
        .await
        .expect("claim")
        .expect("job");
    assert_eq!(claim.job.id, job.id);
    let step_ids: Vec<String> = vec!["bf-1".into(), "new-2".into()];
    store
        .commit_backfill(
            BackfillStep {
                job_id: job.id,
                claim_token: claim.claim_token,
                activities: encoded(alice.id, &step_ids, |_| {
                    Some(base - chrono::Duration::days(1))
                }),
                checkpoint: "bf-page-1".into(),
                done: false,
            },
            TTL,
        )
        .await
        .expect("backfill step");
    store
        .create_backfill(busy.id, base - chrono::Duration::days(1), base)
        .await
        .expect("pending backfill");

    Fixture {
        api_key_digests: vec![digest(1), digest(2), digest(3)],
        token_digests: vec![digest(11), digest(12)],
        pruned,
        busy,
        held_lease,
        in_flight_claim: in_flight[0].clone(),
        in_flight_publication: publishing[0].clone(),
        claimed_backfill: (job.id, claim.claim_token),
        cursor,
        busy_count,
    }
}

async fn copy(sqlite: &Path, url: &str) -> Result<CopyReport, StoreError> {
    copy_sqlite_to_postgres(sqlite, url, |_| {}).await
}

/// Everything readable through the trait, from both stores, must be equal.
async fn assert_stores_equal(sqlite: &SqliteStore, postgres: &PostgresStore, fixture: &Fixture) {
    let applications = sqlite.list_applications().await.expect("list");
    assert_eq!(applications.len(), 2);
    assert_eq!(
        postgres.list_applications().await.expect("list"),
        applications
    );
    let mut subscriptions = Vec::new();
    for application in &applications {
        let id = application.id;
        assert_eq!(
            postgres.list_api_keys(id).await.expect("keys"),
            sqlite.list_api_keys(id).await.expect("keys"),
            "api keys of {id}"
        );
        assert_eq!(
            postgres.signing_key(id).await.expect("signing key"),
            sqlite.signing_key(id).await.expect("signing key")
        );
        assert_eq!(
            postgres.list_webhooks(id).await.expect("webhooks"),
            sqlite.list_webhooks(id).await.expect("webhooks")
        );
        for endpoint in sqlite.list_webhooks(id).await.expect("webhooks") {
            let query = || AttemptQuery {
                limit: 100,
                ..AttemptQuery::default()
            };
            let attempts = sqlite
                .list_webhook_attempts(endpoint.id, query())
                .await
                .expect("attempts");
            assert_eq!(attempts.len(), 2);
            assert_eq!(
                postgres
                    .list_webhook_attempts(endpoint.id, query())
                    .await
                    .expect("attempts"),
                attempts
            );
        }
        assert_eq!(
            postgres.list_destinations(id).await.expect("destinations"),
            sqlite.list_destinations(id).await.expect("destinations")
        );
        for destination in sqlite.list_destinations(id).await.expect("destinations") {
            let query = || AttemptQuery {
                limit: 100,
                ..AttemptQuery::default()
            };
            let attempts = sqlite
                .list_destination_attempts(destination.id, query())
                .await
                .expect("attempts");
            assert_eq!(attempts.len(), 2);
            assert_eq!(
                postgres
                    .list_destination_attempts(destination.id, query())
                    .await
                    .expect("attempts"),
                attempts
            );
        }
        let accounts = sqlite.list_accounts(id).await.expect("accounts");
        assert_eq!(
            postgres.list_accounts(id).await.expect("accounts"),
            accounts
        );
        for account in accounts {
            let listed = sqlite.list_subscriptions(account.id).await.expect("subs");
            assert_eq!(
                postgres.list_subscriptions(account.id).await.expect("subs"),
                listed
            );
            subscriptions.extend(listed);
        }
    }
    assert_eq!(subscriptions.len(), 3);
    assert_eq!(
        postgres.list_active_subscriptions().await.expect("active"),
        sqlite.list_active_subscriptions().await.expect("active")
    );
    for digest in &fixture.api_key_digests {
        let found = sqlite.find_api_key(*digest).await.expect("find");
        assert!(found.is_some());
        assert_eq!(postgres.find_api_key(*digest).await.expect("find"), found);
    }
    assert_eq!(postgres.find_api_key(digest(4)).await.expect("find"), None);
    for digest in &fixture.token_digests {
        let found = sqlite.find_account_by_token(*digest).await.expect("find");
        assert!(found.is_some());
        assert_eq!(
            postgres.find_account_by_token(*digest).await.expect("find"),
            found
        );
    }
    for subscription in &subscriptions {
        let id = subscription.id;
        // With the v1 event each activity's commit rendered.
        let page = sqlite.read_page(id, 0, 100_000).await.expect("read");
        assert_eq!(
            postgres.read_page(id, 0, 100_000).await.expect("read"),
            page,
            "stream of {id}"
        );
        let after = page.activities.get(7).map_or(0, |a| a.sequence);
        assert_eq!(
            postgres
                .read_page_json(id, after, 50, b"[".to_vec())
                .await
                .expect("json"),
            sqlite
                .read_page_json(id, after, 50, b"[".to_vec())
                .await
                .expect("json")
        );
        assert_eq!(
            postgres.latest_sequence(id).await.expect("latest"),
            sqlite.latest_sequence(id).await.expect("latest")
        );
        assert_eq!(
            postgres.activity_total(id).await.expect("total"),
            sqlite.activity_total(id).await.expect("total")
        );
        assert_eq!(
            postgres.load_checkpoint(id).await.expect("checkpoint"),
            sqlite.load_checkpoint(id).await.expect("checkpoint")
        );
        let (old, new) = (
            sqlite.poll_state(id).await.expect("state"),
            postgres.poll_state(id).await.expect("state"),
        );
        assert_eq!(
            (new.next_poll_at, new.consecutive_failures, &new.last_error),
            (old.next_poll_at, old.consecutive_failures, &old.last_error)
        );
        assert_eq!(new.lease_holder, None, "leases are free after the copy");
        // Time ranges, with a resume position and the watermark read alongside.
        let start = page
            .activities
            .iter()
            .filter_map(|a| a.activity().expect("parses").timestamp)
            .min()
            .map_or(0, |t| t.timestamp_micros());
        let range = TimeRange {
            from_micros: start,
            until_micros: Some(start + 300_000_000),
        };
        let mut position: Option<RangePosition> = None;
        loop {
            let (old, new) = (
                sqlite
                    .read_range_json(id, range, position, 333, Vec::new())
                    .await
                    .expect("range"),
                postgres
                    .read_range_json(id, range, position, 333, Vec::new())
                    .await
                    .expect("range"),
            );
            assert_eq!(new, old, "range page of {id} after {position:?}");
            if old.count == 0 {
                break;
            }
            position = old.last;
        }
    }
    let pruned = postgres
        .read_page(fixture.pruned.id, 0, 10)
        .await
        .expect("read");
    assert_eq!(
        pruned.activities[0].sequence, 6,
        "pruned history stays pruned"
    );
    let (job, _) = fixture.claimed_backfill;
    for id in [job, job + 1] {
        assert_eq!(
            postgres.get_backfill(id).await.expect("backfill"),
            sqlite.get_backfill(id).await.expect("backfill")
        );
    }
    assert_eq!(
        postgres.cursor_key().as_bytes(),
        sqlite.cursor_key().as_bytes()
    );
    let decoded = Cursor::decode(&fixture.cursor, postgres.cursor_key(), fixture.busy.id)
        .expect("a cursor from the SQLite store decodes against the PostgreSQL store");
    assert_eq!(decoded.position, 1200);
}

/// The copied store works on: streams continue, old leases and claims are fenced out, new
/// ids never collide.
async fn assert_copy_continues(postgres: &PostgresStore, fixture: &Fixture) {
    let busy = &fixture.busy;
    let last = postgres.latest_sequence(busy.id).await.expect("latest");
    assert_eq!(last, fixture.busy_count);
    let cursor = Cursor::decode(&fixture.cursor, postgres.cursor_key(), busy.id).expect("cursor");
    let resumed = postgres
        .read_page(busy.id, cursor.position, 1)
        .await
        .expect("resume");
    assert_eq!(resumed.activities[0].sequence, cursor.position + 1);

    // The held lease was freed: a new node leases at once, and the old lease is fenced out.
    let far = Utc::now() + chrono::Duration::days(2);
    let leases = postgres
        .acquire_due("node-new", far, TTL, 10)
        .await
        .expect("acquire");
    let lease = leases
        .iter()
        .find(|l| l.subscription_id == busy.id)
        .expect("the busy subscription is leased by the new node")
        .clone();
    assert!(
        lease.token > fixture.held_lease.token,
        "fencing tokens keep rising"
    );
    let stale = postgres
        .commit(CommitBatch {
            lease: Some(fixture.held_lease.clone()),
            ..CommitBatch::new(busy.id, &[sample_activity(busy.account, "stale")]).expect("encodes")
        })
        .await;
    assert!(matches!(stale, Err(StoreError::LeaseLost(_))), "{stale:?}");

    // New activity continues the sequence; a re-delivery of copied activity is absorbed.
    let outcome = postgres
        .commit(CommitBatch {
            lease: Some(lease),
            ..CommitBatch::new(
                busy.id,
                &[
                    sample_activity(busy.account, "after-1"),
                    sample_activity(busy.account, "b-0-1"),
                    sample_activity(busy.account, "after-2"),
                ],
            )
            .expect("encodes")
        })
        .await
        .expect("commit");
    assert_eq!((outcome.appended, outcome.duplicates), (2, 1));
    assert_eq!(outcome.last_sequence, last + 2);
    let tail = postgres.read_page(busy.id, last, 10).await.expect("read");
    let sequences: Vec<u64> = tail.activities.iter().map(|a| a.sequence).collect();
    assert_eq!(sequences, [last + 1, last + 2]);
    assert_eq!(
        postgres.activity_total(busy.id).await.expect("total"),
        last + 2
    );
    let pruned_outcome = postgres
        .commit(
            CommitBatch::new(
                fixture.pruned.id,
                &[sample_activity(fixture.pruned.account, "new-1")],
            )
            .expect("encodes"),
        )
        .await
        .expect("commit");
    assert_eq!(
        pruned_outcome.duplicates, 1,
        "copied ids still de-duplicate"
    );

    // The webhook claim in flight was freed: claimable now, and the old claim is stale.
    let due = postgres
        .claim_due_notifications(Utc::now() + chrono::Duration::minutes(5), TTL, 10, 10)
        .await
        .expect("claim");
    assert_eq!(due.len(), 1);
    let old = &fixture.in_flight_claim;
    assert_eq!(
        (
            due[0].endpoint.id,
            due[0].subscription_id,
            due[0].after_sequence
        ),
        (old.endpoint.id, old.subscription_id, old.after_sequence)
    );
    assert!(due[0].claim_token > old.claim_token);

    // So was the publication in flight: claimable at once, from the acknowledged position.
    let publications = postgres
        .claim_due_publications(Utc::now() + chrono::Duration::minutes(5), TTL, 10)
        .await
        .expect("claim");
    assert_eq!(publications.len(), 1);
    let old = &fixture.in_flight_publication;
    assert_eq!(
        (
            publications[0].destination.id,
            publications[0].subscription_id,
            publications[0].after_sequence
        ),
        (old.destination.id, old.subscription_id, old.after_sequence)
    );
    assert!(publications[0].claim_token > old.claim_token);

    // The claimed backfill job can be taken over at once; its old claim is fenced out.
    let (job, old_token) = fixture.claimed_backfill;
    let claim = postgres
        .claim_backfill(Utc::now(), TTL)
        .await
        .expect("claim")
        .expect("a job");
    assert_eq!(claim.job.id, job);
    assert_eq!(claim.job.checkpoint.as_deref(), Some("bf-page-1"));
    assert!(claim.claim_token > old_token);
    let stale = postgres
        .commit_backfill(
            BackfillStep {
                job_id: job,
                claim_token: old_token,
                activities: Vec::new(),
                checkpoint: "stale".into(),
                done: true,
            },
            TTL,
        )
        .await;
    assert!(matches!(stale, Err(StoreError::LeaseLost(_))), "{stale:?}");

    // New rows get ids above every copied one.
    let copied_applications = postgres.list_applications().await.expect("list");
    let max_application = copied_applications.iter().map(|a| a.id).max().unwrap_or(0);
    let (application, key) = postgres
        .create_application_with_key("After", digest(21), "key21", "sk_after")
        .await
        .expect("a new application");
    assert_eq!(application.id, max_application + 1);
    // Key 4 was deleted before the copy: like SQLite (no AUTOINCREMENT), ids continue after
    // the highest one present.
    assert_eq!(key.id, 4, "ids continue after the highest copied key");
    let account = postgres
        .create_account(NewAccount {
            application_id: application.id,
            service: "local".into(),
            admin: false,
            config: json!({}),
            token_digest: Some(digest(22)),
        })
        .await
        .expect("a new account");
    assert_eq!(account.id, 3);
    let subscription = postgres
        .create_subscription(NewSubscription::changes(account.id))
        .await
        .expect("a new subscription");
    assert_eq!(subscription.id, 4);
    let first = postgres
        .commit(
            CommitBatch::new(subscription.id, &[sample_activity(account.id, "fresh")])
                .expect("encodes"),
        )
        .await
        .expect("commit");
    assert_eq!(first.last_sequence, 1, "a new stream starts at 1");
    let endpoint = postgres
        .create_webhook(NewWebhookEndpoint {
            application_id: application.id,
            url: "http://127.0.0.1:9/new".into(),
            filter: None,
            secret: "whsec_new".into(),
        })
        .await
        .expect("a new endpoint");
    assert_eq!(endpoint.id, 2);
    let backfill = postgres
        .create_backfill(
            subscription.id,
            Utc::now() - chrono::Duration::days(1),
            Utc::now(),
        )
        .await
        .expect("a new backfill");
    assert_eq!(backfill.id, job + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_migrate_round_trips_every_table_and_the_copy_works_on() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("tidemark.db");
    let sqlite = SqliteStore::open(&path).expect("open");
    let fixture = populate(&sqlite).await;
    let database = TestDatabase::create().await;

    let mut seen: BTreeMap<&'static str, (u64, u64)> = BTreeMap::new();
    let report = copy_sqlite_to_postgres(&path, &database.url, |progress| {
        assert!(progress.copied <= progress.total, "{progress:?}");
        let entry = seen.entry(progress.table).or_default();
        assert!(progress.copied >= entry.0, "progress only moves forward");
        *entry = (progress.copied, progress.total);
    })
    .await
    .expect("copy");

    // Rows per table, as the report and the progress told them.
    let expected: &[(&str, u64)] = &[
        ("meta", 1),
        ("applications", 2),
        ("api_keys", 3),
        ("accounts", 2),
        ("account_tokens", 2),
        ("subscriptions", 3),
        ("checkpoints", 2),
        ("activity", 3 + 1 + fixture.busy_count),
        ("webhook_endpoints", 1),
        ("webhook_deliveries", 1),
        ("webhook_attempts", 2),
        ("backfill_jobs", 2),
        ("destinations", 1),
        ("destination_positions", 1),
        ("destination_attempts", 2),
    ];
    assert_eq!(report.tables, expected);
    for (table, rows) in expected {
        assert_eq!(
            seen.get(table),
            Some(&(*rows, *rows)),
            "progress of {table}"
        );
        assert_eq!(report.rows(table), *rows);
    }

    let postgres = PostgresStore::connect(&database.url)
        .await
        .expect("open the copy");
    assert_stores_equal(&sqlite, &postgres, &fixture).await;
    assert_copy_continues(&postgres, &fixture).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_migrate_refuses_a_target_that_holds_data_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("tidemark.db");
    let sqlite = SqliteStore::open(&path).expect("open");
    sqlite.create_application("Source").await.expect("app");
    let database = TestDatabase::create().await;
    let target = PostgresStore::connect(&database.url)
        .await
        .expect("connect");
    let existing = target
        .create_application("Already here")
        .await
        .expect("app");
    let key_before = *target.cursor_key().as_bytes();

    let error = copy(&path, &database.url).await.expect_err("refused");
    assert!(matches!(error, StoreError::Conflict(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("already holds Tidemark data"), "{message}");
    assert!(message.contains("applications"), "{message}");
    assert_eq!(
        target.list_applications().await.expect("list"),
        vec![existing]
    );
    let reopened = PostgresStore::connect(&database.url)
        .await
        .expect("connect");
    assert_eq!(
        reopened.cursor_key().as_bytes(),
        &key_before,
        "meta untouched"
    );

    // A second copy into a target that was filled by a first one is refused too.
    let fresh = TestDatabase::create().await;
    copy(&path, &fresh.url).await.expect("first copy");
    let again = copy(&path, &fresh.url)
        .await
        .expect_err("second copy refused");
    assert!(matches!(again, StoreError::Conflict(_)), "{again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_migrate_failing_halfway_leaves_the_target_empty() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("tidemark.db");
    let sqlite = SqliteStore::open(&path).expect("open");
    let (application, _) = sqlite
        .create_application_with_key("Source", digest(1), "key1", "sk")
        .await
        .expect("app");
    drop(sqlite);
    // A checkpoint whose subscription is gone (written behind the store's back, foreign keys
    // off): the copy gets through applications and keys, then PostgreSQL refuses this row.
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.pragma_update(None, "foreign_keys", "OFF")
        .expect("foreign keys off");
    conn.execute(
        "INSERT INTO checkpoints (subscription_id, state, updated_at) VALUES (999, 'x', 0)",
        [],
    )
    .expect("orphan");
    drop(conn);
    let database = TestDatabase::create().await;
    let error = copy(&path, &database.url).await.expect_err("fails");
    let message = error.to_string();
    assert!(message.contains("checkpoints"), "{message}");
    let target = PostgresStore::connect(&database.url)
        .await
        .expect("connect");
    assert!(
        target.list_applications().await.expect("list").is_empty(),
        "nothing half-copied"
    );
    assert!(target
        .find_api_key(digest(1))
        .await
        .expect("find")
        .is_none());
    assert!(target.get_application(application.id).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_migrate_refuses_bad_input_clearly() {
    let dir = tempfile::tempdir().expect("dir");
    let database = TestDatabase::create().await;

    let missing = dir.path().join("missing.db");
    let message = copy(&missing, &database.url)
        .await
        .expect_err("missing")
        .to_string();
    assert!(message.contains("missing.db"), "{message}");
    assert!(!missing.exists(), "the source is never created");

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 8192]).expect("write");
    let message = copy(&garbage, &database.url)
        .await
        .expect_err("garbage")
        .to_string();
    assert!(message.contains("is not a SQLite database"), "{message}");

    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .expect("open")
        .execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        .expect("foreign schema");
    let message = copy(&foreign, &database.url)
        .await
        .expect_err("foreign")
        .to_string();
    assert!(
        message.contains("is not a Tidemark SQLite database"),
        "{message}"
    );

    let old = dir.path().join("old.db");
    let conn = rusqlite::Connection::open(&old).expect("open");
    conn.execute_batch(include_str!("../migrations/sqlite/0001_initial.sql"))
        .expect("version 1");
    conn.pragma_update(None, "user_version", 1)
        .expect("version");
    drop(conn);
    let message = copy(&old, &database.url)
        .await
        .expect_err("old")
        .to_string();
    assert!(message.contains("schema version 1"), "{message}");

    let good = dir.path().join("good.db");
    drop(SqliteStore::open(&good).expect("open"));
    for (url, expected) in [
        ("mysql://u:hunter2@h/db", "invalid PostgreSQL URL"),
        (
            "postgres://u:hunter2@127.0.0.1:notaport/db",
            "invalid PostgreSQL URL",
        ),
        (
            "postgres://u:hunter2@127.0.0.1:1/db",
            "postgres://u@127.0.0.1:1/db",
        ),
    ] {
        let message = copy(&good, url).await.expect_err(url).to_string();
        assert!(message.contains(expected), "{url}: {message}");
        assert!(!message.contains("hunter2"), "{url}: {message}");
    }
    // Nothing reached the target in any of these cases.
    let target = PostgresStore::connect(&database.url)
        .await
        .expect("connect");
    assert!(target.list_applications().await.expect("list").is_empty());
}

/// The resident set size of this process, in MiB (Linux; 0 elsewhere).
fn resident_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// A large copy, for timing: `TIDEMARK_MIGRATE_ROWS` activities (default 1,000,000) of about
/// 1 KB each over 10 subscriptions. Run explicitly:
/// `cargo test -p tidemark-store --features testsuite --test migrate -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a timing run of a large copy (minutes); run with --ignored"]
async fn test_a_large_copy_streams_in_bounded_memory() {
    let rows: u64 = std::env::var("TIDEMARK_MIGRATE_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("large.db");
    let sqlite = SqliteStore::open(&path).expect("open");
    let application = sqlite.create_application("Large").await.expect("app");
    let mut subscriptions = Vec::new();
    for _ in 0..10 {
        let account = sqlite
            .create_account(NewAccount {
                application_id: application.id,
                service: "local".into(),
                admin: false,
                config: json!({}),
                token_digest: None,
            })
            .await
            .expect("account");
        subscriptions.push(
            sqlite
                .create_subscription(NewSubscription::changes(account.id))
                .await
                .expect("subscription"),
        );
    }
    let filling = std::time::Instant::now();
    let template = EncodedActivity::encode(&sample_activity(1, "template")).expect("encodes");
    let per_batch = 5000u64;
    let mut written = 0u64;
    while written < rows {
        let count = per_batch.min(rows - written);
        let subscription = &subscriptions[(written / per_batch) as usize % subscriptions.len()];
        let activities = (written..written + count)
            .map(|n| EncodedActivity {
                id: format!("a-{n}"),
                timestamp_micros: Some(1_700_000_000_000_000 + n as i64 * 1000),
                json: template.json.replace("template", &format!("a-{n}")),
                // The template's v1 event would not fit the renamed text: none kept.
                v1: None,
            })
            .collect();
        sqlite
            .commit(CommitBatch {
                subscription_id: subscription.id,
                activities,
                checkpoint: Some(format!("at-{written}")),
                lease: None,
                watermark: None,
            })
            .await
            .expect("commit");
        written += count;
    }
    let file_mib = std::fs::metadata(&path).map_or(0, |m| m.len() >> 20);
    println!(
        "filled {rows} activities ({file_mib} MiB of SQLite) in {:.1} s",
        filling.elapsed().as_secs_f64()
    );

    let database = TestDatabase::create().await;
    let before = resident_mib();
    let mut peak = before;
    // Sampled at every progress report (one per batch of rows).
    let report = copy_sqlite_to_postgres(&path, &database.url, |_| {
        peak = peak.max(resident_mib());
    })
    .await
    .expect("copy");
    let seconds = report.elapsed.as_secs_f64();
    println!(
        "copied {} activities in {seconds:.1} s ({:.0} rows/s); resident memory {before} MiB \
         before, at most {peak} MiB during the copy",
        report.rows("activity"),
        report.rows("activity") as f64 / seconds
    );
    assert_eq!(report.rows("activity"), rows);
    assert!(
        peak < before + 256,
        "memory stays bounded: {before} MiB -> {peak} MiB"
    );
    let postgres = PostgresStore::connect(&database.url).await.expect("open");
    for subscription in &subscriptions {
        assert_eq!(
            postgres
                .latest_sequence(subscription.id)
                .await
                .expect("latest"),
            sqlite
                .latest_sequence(subscription.id)
                .await
                .expect("latest")
        );
        assert_eq!(
            postgres
                .read_page(subscription.id, 1000, 100)
                .await
                .expect("read"),
            sqlite
                .read_page(subscription.id, 1000, 100)
                .await
                .expect("read")
        );
    }
}

//! The store conformance suite, run against [`SqliteStore`].

use tidemark_store::SqliteStore;

async fn new_store() -> (SqliteStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("tidemark.db")).expect("open store");
    (store, dir)
}

tidemark_store::store_test_suite!(new_store);

#[tokio::test]
async fn test_reopening_keeps_data_and_cursor_key() {
    use tidemark_store::Store;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tidemark.db");
    let (subscription, key) = {
        let store = SqliteStore::open(&path).expect("open");
        let subscription = tidemark_store::testsuite::setup(&store).await;
        store
            .commit(tidemark_store::CommitBatch {
                checkpoint: Some("cp".into()),
                ..tidemark_store::CommitBatch::new(
                    subscription.id,
                    &[tidemark_store::testsuite::sample_activity(
                        subscription.account,
                        "a",
                    )],
                )
                .expect("encodes")
            })
            .await
            .expect("commit");
        (subscription, *store.cursor_key().as_bytes())
    };
    let store = SqliteStore::open(&path).expect("reopen");
    assert_eq!(store.cursor_key().as_bytes(), &key);
    assert_eq!(
        store.latest_sequence(subscription.id).await.expect("seq"),
        1
    );
    assert_eq!(
        store
            .load_checkpoint(subscription.id)
            .await
            .expect("cp")
            .as_deref(),
        Some("cp")
    );
}

/// A commit that fails after its activity rows are inserted (a trigger aborts the checkpoint
/// write, the transaction's last statement) leaves the stream and the checkpoint as they
/// were; once the fault is gone the same batch commits with the next sequence numbers.
#[tokio::test]
async fn test_commit_failing_after_activity_insert_leaves_stream_and_checkpoint_unchanged() {
    use tidemark_store::testsuite::{sample_activity, setup};
    use tidemark_store::{CommitBatch, Store};

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tidemark.db");
    let store = SqliteStore::open(&path).expect("open");
    let subscription = setup(&store).await;
    let batch = |ids: &[&str], checkpoint: &str| CommitBatch {
        checkpoint: Some(checkpoint.into()),
        ..CommitBatch::new(
            subscription.id,
            &ids.iter()
                .map(|id| sample_activity(subscription.account, id))
                .collect::<Vec<_>>(),
        )
        .expect("encodes")
    };
    store
        .commit(batch(&["a"], "cp1"))
        .await
        .expect("first commit");

    // The checkpoint upsert is either an INSERT or an UPDATE: abort both.
    let raw = rusqlite::Connection::open(&path).expect("raw connection");
    raw.execute_batch(
        "CREATE TRIGGER inject_insert BEFORE INSERT ON checkpoints \
           BEGIN SELECT RAISE(ABORT, 'injected'); END; \
         CREATE TRIGGER inject_update BEFORE UPDATE ON checkpoints \
           BEGIN SELECT RAISE(ABORT, 'injected'); END;",
    )
    .expect("install triggers");

    let error = store
        .commit(batch(&["b", "c"], "cp2"))
        .await
        .expect_err("the trigger aborts the commit");
    assert!(
        error.to_string().contains("injected"),
        "the commit failed at the checkpoint write, not earlier: {error}"
    );
    assert_eq!(
        store.latest_sequence(subscription.id).await.expect("seq"),
        1
    );
    assert_eq!(
        store.activity_total(subscription.id).await.expect("total"),
        1
    );
    let retained = store
        .read_activity(subscription.id, 0, 100)
        .await
        .expect("read");
    assert_eq!(retained.len(), 1, "no row of the failed batch is visible");
    assert_eq!(retained[0].activity().expect("parses").id, "a");
    assert_eq!(
        store
            .load_checkpoint(subscription.id)
            .await
            .expect("cp")
            .as_deref(),
        Some("cp1")
    );

    raw.execute_batch("DROP TRIGGER inject_insert; DROP TRIGGER inject_update;")
        .expect("drop triggers");
    let outcome = store
        .commit(batch(&["b", "c"], "cp2"))
        .await
        .expect("commit after the fault is gone");
    assert_eq!((outcome.appended, outcome.duplicates), (2, 0));
    assert_eq!(outcome.last_sequence, 3);
    let sequences: Vec<(u64, String)> = store
        .read_activity(subscription.id, 0, 100)
        .await
        .expect("read")
        .iter()
        .map(|row| (row.sequence, row.activity().expect("parses").id))
        .collect();
    assert_eq!(
        sequences,
        vec![(1, "a".into()), (2, "b".into()), (3, "c".into())]
    );
    assert_eq!(
        store.activity_total(subscription.id).await.expect("total"),
        3
    );
    assert_eq!(
        store
            .load_checkpoint(subscription.id)
            .await
            .expect("cp")
            .as_deref(),
        Some("cp2")
    );
}

/// Writes sent together are group-committed: among many concurrent commits, the ones that
/// fail (a stale lease, an unknown subscription) are rolled back alone, and every other one
/// is committed exactly once with gap-free sequence numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_group_commit_rolls_back_failing_writes_alone() {
    use std::sync::Arc;
    use tidemark_store::testsuite::{sample_activity, setup};
    use tidemark_store::{CommitBatch, Store, StoreError};
    let (store, _dir) = new_store().await;
    let store = Arc::new(store);
    let subscription = setup(&*store).await;
    let mut tasks = Vec::new();
    for index in 0..200 {
        let store = Arc::clone(&store);
        let account = subscription.account;
        let target = if index % 5 == 0 {
            999_999
        } else {
            subscription.id
        };
        tasks.push(tokio::spawn(async move {
            let activity = sample_activity(account, &format!("g{index}"));
            let batch = CommitBatch::new(target, &[activity]).expect("encodes");
            (index, store.commit(batch).await)
        }));
    }
    let mut committed = 0;
    for task in tasks {
        let (index, result) = task.await.expect("task");
        if index % 5 == 0 {
            assert!(
                matches!(result, Err(StoreError::NotFound(_))),
                "{index}: {result:?}"
            );
        } else {
            assert_eq!(result.expect("commits").appended, 1, "{index}");
            committed += 1;
        }
    }
    assert_eq!(committed, 160);
    assert_eq!(
        store.latest_sequence(subscription.id).await.expect("seq"),
        160
    );
    let rows = store
        .read_activity(subscription.id, 0, 1000)
        .await
        .expect("read");
    let sequences: Vec<u64> = rows.iter().map(|row| row.sequence).collect();
    assert_eq!(sequences, (1..=160).collect::<Vec<_>>());
    assert_eq!(
        store.activity_total(subscription.id).await.expect("total"),
        160
    );
}

/// A database the store creates has 16 KiB pages (activity rows are large; see the store).
#[tokio::test]
async fn test_a_new_database_has_16_kib_pages() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tidemark.db");
    let store = SqliteStore::open(&path).expect("open");
    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("open");
    let size: i64 = conn
        .query_row("PRAGMA page_size", [], |row| row.get(0))
        .expect("page size");
    assert_eq!(size, 16_384);
}

/// Committed pages reach the database file without an explicit checkpoint and long before
/// the writer's automatic one would run (8,192 pages), copied by the store's checkpointer
/// thread rather than by the connection that commits.
#[tokio::test]
async fn test_the_checkpointer_copies_commits_into_the_database_file() {
    use tidemark_store::testsuite::{sample_activity, setup};
    use tidemark_store::{CommitBatch, Store};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tidemark.db");
    let store = SqliteStore::open(&path).expect("open");
    let subscription = setup(&store).await;
    // Let the set-up's commits be checkpointed first, so the growth below is this batch's.
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    let before = std::fs::metadata(&path).expect("db file").len();
    let activities: Vec<_> = (0..200)
        .map(|i| {
            let mut activity = sample_activity(subscription.account, &format!("a{i}"));
            activity.raw = Some(serde_json::json!({"padding": "x".repeat(1000)}));
            activity
        })
        .collect();
    store
        .commit(CommitBatch::new(subscription.id, &activities).expect("encodes"))
        .await
        .expect("commit");
    // About 250 KB (some 20 pages) went to the log; the database file grows once they are
    // copied.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = std::fs::metadata(&path).expect("db file").len();
        if now >= before + 150_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the database file stayed at {now} bytes (was {before}): nothing was checkpointed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        store.latest_sequence(subscription.id).await.expect("seq"),
        200
    );
}

/// A row from before the v1 columns (SQL NULL) reads as not rendered, so readers render it
/// from the v2 text.
#[tokio::test]
async fn test_a_row_from_before_the_v1_columns_reads_as_unrendered() {
    use tidemark_store::testsuite::{sample_activity, setup};
    use tidemark_store::{CommitBatch, Store, StoredV1Event};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("tidemark.db");
    let store = SqliteStore::open(&path).expect("open");
    let subscription = setup(&store).await;
    let added = sample_activity(subscription.account, "added");
    store
        .commit(CommitBatch::new(subscription.id, &[added]).expect("encodes"))
        .await
        .expect("commit");
    // Read back rendered: the conformance suite's
    // `test_the_v1_event_rendered_at_commit_is_read_back`.
    let legacy = rusqlite::Connection::open(&path).expect("open file");
    legacy
        .execute(
            "UPDATE activity SET v1_type = NULL, v1 = NULL WHERE sequence = 1",
            [],
        )
        .expect("clear");
    let page = store
        .read_activity(subscription.id, 0, 10)
        .await
        .expect("read");
    assert_eq!(page[0].v1, StoredV1Event::Unrendered);
    // A type this version does not know is rendered afresh too, not trusted.
    assert_eq!(
        StoredV1Event::from_columns(Some("teleport"), Some("{}".into()), None, None),
        StoredV1Event::Unrendered
    );
    assert_eq!(
        StoredV1Event::from_columns(Some("add"), Some("{}".into()), Some(-1), Some(3)),
        StoredV1Event::Unrendered
    );
    assert_eq!(
        StoredV1Event::from_columns(Some("add"), Some("{}".into()), Some(1), None),
        StoredV1Event::Unrendered
    );
}

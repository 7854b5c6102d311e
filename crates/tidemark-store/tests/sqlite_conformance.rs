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

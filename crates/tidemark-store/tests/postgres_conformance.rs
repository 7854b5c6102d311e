//! The store conformance suite, run against [`PostgresStore`] on the test server
//! (`TIDEMARK_TEST_POSTGRES_URL`, started by `./scripts/test`), one fresh database per test.

use tidemark_store::pgtest::TestDatabase;
use tidemark_store::PostgresStore;

async fn new_store() -> (PostgresStore, TestDatabase) {
    let database = TestDatabase::create().await;
    let store = PostgresStore::connect(&database.url)
        .await
        .expect("connect to the test database");
    (store, database)
}

tidemark_store::store_test_suite!(new_store);

/// Nodes starting together on an empty database: every one connects, the schema is migrated
/// exactly once, and all of them sign cursors with the same key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_nodes_starting_at_once_migrate_once_and_share_the_cursor_key() {
    use tidemark_store::Store;
    let database = TestDatabase::create().await;
    let starts: Vec<_> = (0..8)
        .map(|_| {
            let url = database.url.clone();
            tokio::spawn(async move { PostgresStore::connect_with_pool_size(&url, 2).await })
        })
        .collect();
    let mut keys = Vec::new();
    for start in starts {
        let store = start.await.expect("task").expect("every node starts");
        keys.push(*store.cursor_key().as_bytes());
    }
    assert!(
        keys.windows(2).all(|pair| pair[0] == pair[1]),
        "one cursor key"
    );
    let (client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let versions: Vec<i64> = client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .expect("versions")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, vec![1, 2, 3, 4], "each migration applied once");
}

/// A database whose schema is newer than this build is refused, not used.
#[tokio::test]
async fn test_a_newer_schema_is_refused() {
    let database = TestDatabase::create().await;
    drop(
        PostgresStore::connect(&database.url)
            .await
            .expect("migrates"),
    );
    let (client, connection) = tokio_postgres::connect(&database.url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute("INSERT INTO schema_migrations (version) VALUES (999)")
        .await
        .expect("pretend a newer build migrated");
    let error = PostgresStore::connect(&database.url)
        .await
        .expect_err("refused");
    assert!(
        error.to_string().contains("newer than this build"),
        "{error}"
    );
}

/// A server that does not answer is a clear error, not a hang or a panic.
#[tokio::test]
async fn test_an_unreachable_server_is_a_clear_error() {
    let error = PostgresStore::connect("postgres://tidemark@127.0.0.1:1/none")
        .await
        .expect_err("nothing listens on port 1");
    assert!(error.to_string().contains("connecting to"), "{error}");
    let error = PostgresStore::connect("not a url")
        .await
        .expect_err("invalid");
    assert!(
        error.to_string().contains("invalid PostgreSQL URL"),
        "{error}"
    );
}

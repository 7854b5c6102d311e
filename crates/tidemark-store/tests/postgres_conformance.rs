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

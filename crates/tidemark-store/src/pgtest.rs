//! Throw-away PostgreSQL databases for tests.
//!
//! Tests that need PostgreSQL read the server's URL from `TIDEMARK_TEST_POSTGRES_URL` (set by
//! `./scripts/test`, which starts a private server on a loopback port) and get a fresh database
//! of their own, dropped when the guard is. Without the variable they fail with a message
//! saying so: a PostgreSQL test never passes by skipping.

/// The environment variable naming the test server (a URL whose user may create databases).
pub const TEST_POSTGRES_URL_VAR: &str = "TIDEMARK_TEST_POSTGRES_URL";

/// A database created for one test, dropped (with any sessions still on it) on drop.
#[derive(Debug)]
pub struct TestDatabase {
    /// The URL of the test database.
    pub url: String,
    admin_url: String,
    name: String,
}

/// The test server's URL.
///
/// # Panics
/// If `TIDEMARK_TEST_POSTGRES_URL` is not set.
pub fn server_url() -> String {
    std::env::var(TEST_POSTGRES_URL_VAR).unwrap_or_else(|_| {
        panic!(
            "{TEST_POSTGRES_URL_VAR} is not set: PostgreSQL tests need a server. \
             ./scripts/test starts one on a loopback port and sets it; or point it at a server \
             whose user may create databases, e.g. postgres://tidemark@127.0.0.1:5432/postgres"
        )
    })
}

async fn admin_connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connecting to the test PostgreSQL server {url}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

impl TestDatabase {
    /// Creates an empty database on the test server.
    ///
    /// # Panics
    /// If the server is not configured or cannot be reached.
    pub async fn create() -> Self {
        let admin_url = server_url();
        let name = format!(
            "tidemark_test_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        admin_connect(&admin_url)
            .await
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
        TestDatabase {
            url: crate::postgres_url_with_database(&admin_url, &name),
            admin_url,
            name,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside a runtime: the cleanup gets a thread and a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok((client, connection)) =
                    tokio_postgres::connect(&admin_url, tokio_postgres::NoTls).await
                {
                    tokio::spawn(connection);
                    let _ = client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

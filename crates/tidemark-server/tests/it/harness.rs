//! Starts the API on `127.0.0.1:0` and gives tests a client, tenants and accounts.
//!
//! The store is SQLite in a temporary directory, or, with `TIDEMARK_TEST_STORE=postgres`, a
//! fresh PostgreSQL database on the test server (`./scripts/test` runs the suite both ways).

use std::sync::Arc;

use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};
use tidemark_model::Activity;
use tidemark_store::pgtest::TestDatabase;
use tidemark_store::{CommitBatch, PostgresStore, SqliteStore, Store};

/// A running API server with its store.
pub struct TestServer {
    pub base: String,
    pub store: Arc<dyn Store>,
    pub client: reqwest::Client,
    /// The first application's API key.
    pub api_key: String,
    pub application_id: i64,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
    _database: Option<TestDatabase>,
}

/// The store the suite runs on: `TIDEMARK_TEST_STORE` is `sqlite` (the default) or
/// `postgres`.
async fn test_store(dir: &std::path::Path) -> (Arc<dyn Store>, Option<TestDatabase>) {
    match std::env::var("TIDEMARK_TEST_STORE").as_deref() {
        Ok("postgres") => {
            let database = TestDatabase::create().await;
            let store = PostgresStore::connect(&database.url)
                .await
                .expect("PostgreSQL store");
            (Arc::new(store), Some(database))
        }
        Ok("sqlite") | Err(_) => (
            Arc::new(SqliteStore::open(dir.join("api.db")).expect("store")),
            None,
        ),
        Ok(other) => panic!("TIDEMARK_TEST_STORE={other}: expected sqlite or postgres"),
    }
}

/// Credentials for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    ApiKey(String),
    Bearer(String),
    None,
    Raw(String),
}

/// A connected `local` account: its id, bearer token and watched directory.
pub struct TestAccount {
    pub id: i64,
    pub token: String,
    /// The create response.
    #[allow(dead_code)]
    pub json: Value,
    /// The watched directory (kept alive as long as the account).
    #[allow(dead_code)]
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(tidemark_notify::webhooks::NotifierConfig::default()).await
    }

    /// A server whose webhook test requests are sent as `webhook_config` says (e.g. trusting
    /// a test CA).
    pub async fn start_with(
        webhook_config: tidemark_notify::webhooks::NotifierConfig,
    ) -> TestServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let (store, database) = test_store(dir.path()).await;
        let (application_id, api_key) =
            tidemark_server::bootstrap_application(&*store, "test", None)
                .await
                .expect("bootstrap");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state =
            tidemark_server::AppState::new(store.clone(), None).with_webhook_config(webhook_config);
        tokio::spawn(tidemark_server::serve(listener, state, async move {
            let _ = stopped.await;
        }));
        TestServer {
            base,
            store,
            client: reqwest::Client::new(),
            api_key,
            application_id,
            stop: Some(stop),
            _dir: dir,
            _database: database,
        }
    }

    /// The first application's key.
    pub fn key(&self) -> Auth {
        Auth::ApiKey(self.api_key.clone())
    }

    /// A request to `path` (relative to the server).
    pub fn request(&self, method: Method, path: &str, auth: &Auth) -> RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.base));
        match auth {
            Auth::ApiKey(key) => builder.header("Authorization", format!("APIKey {key}")),
            Auth::Bearer(token) => builder.header("Authorization", format!("Bearer {token}")),
            Auth::Raw(header) => builder.header("Authorization", header.clone()),
            Auth::None => builder,
        }
    }

    /// Sends a request with an optional JSON body; returns status and parsed body (`Null`
    /// for an empty one). Every response must carry JSON (or nothing) and a request id.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        auth: &Auth,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut builder = self.request(method, path, auth);
        if let Some(body) = body {
            builder = builder.json(&body);
        }
        read(builder.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str, auth: &Auth) -> (StatusCode, Value) {
        self.call(Method::GET, path, auth, None).await
    }

    /// A second application (tenant) with its own key.
    pub async fn new_tenant(&self, name: &str) -> (i64, Auth) {
        let (id, key) = tidemark_server::bootstrap_application(&*self.store, name, None)
            .await
            .expect("tenant");
        (id, Auth::ApiKey(key))
    }

    /// Connects a `local` account on a fresh directory through the API.
    pub async fn connect_local(&self, auth: &Auth) -> TestAccount {
        let dir = tempfile::tempdir().expect("dir");
        let (status, json) = self
            .call(
                Method::POST,
                "/v1/accounts",
                auth,
                Some(json!({"service": "local", "config": {"path": dir.path().to_string_lossy()}})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
        TestAccount {
            id: json["id"].as_i64().expect("id"),
            token: json["bearer_token"]["key"]
                .as_str()
                .expect("token")
                .to_owned(),
            json,
            dir,
        }
    }

    /// Connects a `local` account and creates its default subscription; returns both ids.
    pub async fn account_with_subscription(&self, auth: &Auth) -> (TestAccount, i64) {
        let account = self.connect_local(auth).await;
        let (status, json) = self
            .call(
                Method::POST,
                &format!("/v2/accounts/{}/subscriptions", account.id),
                auth,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
        let id = json["id"].as_i64().expect("subscription id");
        (account, id)
    }

    /// Appends activity `ids` to a subscription's stream directly in the store.
    pub async fn append(&self, subscription_id: i64, account_id: i64, ids: &[&str]) {
        let activities: Vec<Activity> = ids
            .iter()
            .map(|id| tidemark_store::testsuite::sample_activity(account_id, id))
            .collect();
        self.store
            .commit(CommitBatch::new(subscription_id, &activities).expect("encode"))
            .await
            .expect("commit");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Status and JSON body of a response, checking the invariants every response keeps.
pub async fn read(response: Response) -> (StatusCode, Value) {
    let status = response.status();
    let request_id = response
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .expect("every response has an X-Request-Id");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = response.bytes().await.expect("body");
    if bytes.is_empty() {
        return (status, Value::Null);
    }
    assert!(
        content_type.starts_with("application/json"),
        "{status} with Content-Type `{content_type}`"
    );
    let body: Value = serde_json::from_slice(&bytes).expect("JSON body");
    if !status.is_success() {
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["status_code"], status.as_u16(), "{body}");
        assert!(
            body["error_code"].is_string() && body["message"].is_string(),
            "{body}"
        );
        assert_eq!(
            body["id"],
            request_id.as_str(),
            "error id is the request id"
        );
        assert!(
            status != StatusCode::INTERNAL_SERVER_ERROR,
            "a client input caused a 500: {body}"
        );
    }
    (status, body)
}

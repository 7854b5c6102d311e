//! Webhooks over real HTTP against real receivers: test-on-create, signatures checked by stock
//! code, coalescing, retries and give-up, filters, the attempts API and recovery.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tidemark_model::{EventSubtype, EventType};
use tidemark_notify::webhooks::{Notifier, NotifierConfig};
use tidemark_store::CommitBatch;

use crate::harness::{Auth, TestServer};

mod api;
mod isolation;
mod ssrf;
mod success_rule;
mod tls;

/// One request a receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: std::time::Instant,
}

#[derive(Default)]
struct ReceiverState {
    /// Answer to the `{}` test request: (status, body).
    test_answer: Mutex<(u16, String)>,
    /// Statuses to answer notifications with, in turn (the last one repeats).
    statuses: Mutex<Vec<u16>>,
    /// How long to wait before answering notifications, in turn (then at once).
    delays: Mutex<Vec<Duration>>,
    received: Mutex<Vec<Received>>,
}

/// A webhook receiver on a loopback port whose answers a test can change.
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

impl Receiver {
    pub async fn start(application_id: i64) -> Receiver {
        let (state, app) = Self::app(application_id);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, state }
    }

    /// The receiver's state and routes, answering the test request for `application_id`.
    fn app(application_id: i64) -> (Arc<ReceiverState>, axum::Router) {
        let state = Arc::new(ReceiverState::default());
        *state.test_answer.lock().expect("lock") = (200, application_id.to_string());
        state.statuses.lock().expect("lock").push(200);
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(Arc::clone(&state));
        (state, app)
    }

    pub fn answer_test_with(&self, status: u16, body: &str) {
        *self.state.test_answer.lock().expect("lock") = (status, body.to_owned());
    }

    pub fn answer_notifications_with(&self, statuses: &[u16]) {
        *self.state.statuses.lock().expect("lock") = statuses.to_vec();
    }

    /// Waits `delays[0]` before answering the next notification, `delays[1]` the one after...
    pub fn delay_notifications_by(&self, delays: &[Duration]) {
        *self.state.delays.lock().expect("lock") = delays.to_vec();
    }

    pub fn notifications(&self) -> Vec<Received> {
        self.state.received.lock().expect("lock").clone()
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (AxumStatus, String) {
    if body.as_ref() == b"{}" {
        let (status, text) = state.test_answer.lock().expect("lock").clone();
        return (AxumStatus::from_u16(status).unwrap_or(AxumStatus::OK), text);
    }
    state.received.lock().expect("lock").push(Received {
        headers,
        body: body.to_vec(),
        at: std::time::Instant::now(),
    });
    let status = {
        let mut statuses = state.statuses.lock().expect("lock");
        if statuses.len() > 1 {
            statuses.remove(0)
        } else {
            statuses.first().copied().unwrap_or(200)
        }
    };
    let delay = {
        let mut delays = state.delays.lock().expect("lock");
        (!delays.is_empty()).then(|| delays.remove(0))
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    (
        AxumStatus::from_u16(status).unwrap_or(AxumStatus::OK),
        String::new(),
    )
}

fn fast_config() -> NotifierConfig {
    NotifierConfig {
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(2),
        backoff_jitter: 0.0,
        scan_interval: Duration::from_millis(20),
        ..NotifierConfig::default()
    }
}

fn start_notifier(
    server: &TestServer,
    config: NotifierConfig,
) -> (Arc<Notifier>, tokio::sync::oneshot::Sender<()>) {
    let notifier = Notifier::new(server.store.clone(), config).expect("notifier");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(Arc::clone(&notifier).run(async move {
        let _ = stopped.await;
    }));
    (notifier, stop)
}

/// An endpoint's attempts through the API, newest first, once there are at least `count`.
async fn wait_for_attempts(
    server: &TestServer,
    endpoint_id: i64,
    count: usize,
    timeout: Duration,
) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (status, list) = server
            .get(
                &format!("/v1/webhooks/{endpoint_id}/attempts"),
                &server.key(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let objects = list["objects"].as_array().cloned().unwrap_or_default();
        if objects.len() >= count {
            return objects;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {count} attempts at endpoint {endpoint_id}: {list}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_for<F: Fn() -> bool>(what: &str, timeout: Duration, condition: F) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn create_endpoint(server: &TestServer, url: &str, filter: Option<Value>) -> Value {
    let mut body = json!({ "url": url });
    if let Some(filter) = filter {
        body["filter"] = filter;
    }
    let (status, created) = server
        .call(Method::POST, "/v1/webhooks", &server.key(), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    created
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_create_sends_the_seed_test_request_and_refuses_failures() {
    let server = TestServer::start().await;
    let receiver = Receiver::start(server.application_id).await;
    let created = create_endpoint(&server, &receiver.url, None).await;
    assert!(
        created["secret"]
            .as_str()
            .unwrap_or_default()
            .starts_with("whsec_"),
        "{created}"
    );
    assert_eq!(created["enabled"], true);
    let id = created["id"].as_i64().expect("id");
    let (status, fetched) = server
        .get(&format!("/v1/webhooks/{id}"), &server.key())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(fetched.get("secret").is_none(), "the secret is shown once");

    receiver.answer_test_with(404, "nope");
    let (status, error) = server
        .call(
            Method::POST,
            "/v1/webhooks",
            &server.key(),
            Some(json!({"url": receiver.url})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["error_code"], "webhook_test_failed");
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("got 404 with body `nope`"),
        "{error}"
    );
    receiver.answer_test_with(200, "someone-else");
    let (_, error) = server
        .call(
            Method::POST,
            "/v1/webhooks",
            &server.key(),
            Some(json!({"url": receiver.url})),
        )
        .await;
    assert_eq!(
        error["error_code"], "webhook_test_failed",
        "the body must be the application id"
    );
    let (_, error) = server
        .call(
            Method::POST,
            "/v1/webhooks",
            &server.key(),
            Some(json!({"url": "http://127.0.0.1:9/closed"})),
        )
        .await;
    assert_eq!(error["error_code"], "webhook_test_failed");
    for (url, needle) in [
        ("ftp://example.com/x", "http or https"),
        ("not a url", "not a valid URL"),
        ("http://user:pw@example.com/", "credentials"),
    ] {
        let (status, error) = server
            .call(
                Method::POST,
                "/v1/webhooks",
                &server.key(),
                Some(json!({"url": url})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            error["message"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{url}: {error}"
        );
    }
    let (_, list) = server.get("/v1/webhooks", &server.key()).await;
    assert_eq!(list["total"], 1, "failed tests save nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_burst_of_ten_thousand_activities_yields_a_handful_of_webhooks() {
    let server = TestServer::start().await;
    let receiver = Receiver::start(server.application_id).await;
    let (account, subscription) = server.account_with_subscription(&server.key()).await;
    create_endpoint(&server, &receiver.url, None).await;
    let (notifier, stop) = start_notifier(&server, fast_config());
    for batch in 0..10 {
        let ids: Vec<String> = (0..1000).map(|i| format!("b{batch}-{i}")).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        server.append(subscription, account.id, &refs).await;
        notifier.wake();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Delivered through the last activity.
    let store = server.store.clone();
    let mut delivered_through = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while delivered_through < 10_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not notified through the end"
        );
        let attempts = store
            .list_webhook_attempts(
                1,
                tidemark_store::AttemptQuery {
                    success: Some(true),
                    limit: 1,
                    ..Default::default()
                },
            )
            .await
            .expect("attempts");
        delivered_through = attempts.first().map_or(0, |a| a.sequence);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let webhooks = receiver.notifications().len();
    assert!(
        (1..=15).contains(&webhooks),
        "{webhooks} webhooks for 10,000 activities"
    );
    for received in receiver.notifications() {
        let body: Value = serde_json::from_slice(&received.body).expect("json");
        assert_eq!(
            body,
            json!({"account": account.id, "subscription": subscription})
        );
    }
    // The receiver, following cursors, gets all 10,000.
    let mut cursor = String::new();
    let mut seen = 0;
    loop {
        let (_, page) = server
            .get(
                &format!(
                    "/v2/accounts/{}/subscriptions/{subscription}/activity?cursor={cursor}",
                    account.id
                ),
                &server.key(),
            )
            .await;
        let count = page["count"].as_u64().expect("count");
        if count == 0 {
            break;
        }
        seen += count;
        cursor = page["cursor"].as_str().expect("cursor").to_owned();
    }
    assert_eq!(seen, 10_000);
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_failures_retry_with_doubling_delays_then_succeed() {
    let server = TestServer::start().await;
    let receiver = Receiver::start(server.application_id).await;
    let (account, subscription) = server.account_with_subscription(&server.key()).await;
    let endpoint = create_endpoint(&server, &receiver.url, None).await;
    receiver.answer_notifications_with(&[500, 502, 503, 200]);
    let config = NotifierConfig {
        backoff_initial: Duration::from_millis(500),
        backoff_max: Duration::from_secs(10),
        ..fast_config()
    };
    let (notifier, stop) = start_notifier(&server, config);
    server.append(subscription, account.id, &["x"]).await;
    notifier.wake();
    wait_for("four attempts", Duration::from_secs(30), || {
        receiver.notifications().len() >= 4
    })
    .await;
    let times: Vec<std::time::Instant> = receiver.notifications().iter().map(|r| r.at).collect();
    let gaps: Vec<u128> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis())
        .collect();
    // Each delay is a floor (the retry is due that long after the failure) and load only adds
    // to it; a gap below twice its delay tells doubling apart from any steeper schedule, and
    // the floors from any flatter one.
    for (gap, expected) in gaps.iter().zip([500u128, 1000, 2000]) {
        assert!(
            *gap >= expected - 20 && *gap < expected * 2,
            "delays {gaps:?}, expected 500, 1000, 2000 ms (each below twice that)"
        );
    }
    let id = endpoint["id"].as_i64().expect("id");
    let attempts = wait_for_attempts(&server, id, 4, Duration::from_secs(20)).await;
    let statuses: Vec<u64> = attempts
        .iter()
        .map(|a| a["status_code"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(statuses, [200, 503, 502, 500], "newest first");
    let (_, failures) = server
        .get(
            &format!("/v1/webhooks/{id}/attempts?status=failure&page_size=2"),
            &server.key(),
        )
        .await;
    assert_eq!(failures["count"], 2);
    let before = failures["next_before"].as_i64().expect("another page");
    let (_, older) = server
        .get(
            &format!("/v1/webhooks/{id}/attempts?status=failure&page_size=2&before={before}"),
            &server.key(),
        )
        .await;
    assert_eq!(older["count"], 1);
    assert!(older["next_before"].is_null());
    let (status, _) = server
        .get(
            &format!("/v1/webhooks/{id}/attempts?status=maybe"),
            &server.key(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_gives_up_after_continuous_failure_until_new_activity() {
    let server = TestServer::start().await;
    let receiver = Receiver::start(server.application_id).await;
    let (account, subscription) = server.account_with_subscription(&server.key()).await;
    create_endpoint(&server, &receiver.url, None).await;
    receiver.answer_notifications_with(&[500]);
    let config = NotifierConfig {
        give_up_after: Duration::from_millis(500),
        ..fast_config()
    };
    let (notifier, stop) = start_notifier(&server, config);
    server.append(subscription, account.id, &["x"]).await;
    notifier.wake();
    wait_for("a first attempt", Duration::from_secs(20), || {
        !receiver.notifications().is_empty()
    })
    .await;
    // Tries come at least 100, 200, 400 ms apart, so the fourth starts at least 700 ms after
    // the first: by then 500 ms of failure have passed, and it is the last one at the latest
    // (on a slow machine an earlier one already is). Without giving up, retries would go on
    // every 2 s at most.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let given_up_at = receiver.notifications().len();
    assert!(
        (1..=4).contains(&given_up_at),
        "{given_up_at} attempts: it did not give up after 500 ms of failure"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        receiver.notifications().len(),
        given_up_at,
        "no attempts after giving up"
    );

    receiver.answer_notifications_with(&[200]);
    server.append(subscription, account.id, &["y"]).await;
    notifier.wake();
    wait_for(
        "delivery after new activity",
        Duration::from_secs(20),
        || receiver.notifications().len() > given_up_at,
    )
    .await;

    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_filters_send_only_for_matching_activity_and_disabled_endpoints_wait() {
    let server = TestServer::start().await;
    let receiver = Receiver::start(server.application_id).await;
    let (account, subscription) = server.account_with_subscription(&server.key()).await;
    let endpoint = create_endpoint(
        &server,
        &receiver.url,
        Some(json!({"detail": {"activity": {"v1": {"type": ["delete"]}}}})),
    )
    .await;
    let (notifier, stop) = start_notifier(&server, fast_config());
    server
        .append(subscription, account.id, &["added-1", "added-2"])
        .await;
    notifier.wake();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        receiver.notifications().is_empty(),
        "adds do not match a delete filter"
    );
    let mut deleted = tidemark_store::testsuite::sample_activity(account.id, "deleted-1");
    deleted.event_type = EventType::Delete;
    deleted.event_subtype = EventSubtype::Unknown;
    server
        .store
        .commit(CommitBatch::new(subscription, &[deleted]).expect("encode"))
        .await
        .expect("commit");
    notifier.wake();
    wait_for("the delete's webhook", Duration::from_secs(5), || {
        receiver.notifications().len() == 1
    })
    .await;

    let id = endpoint["id"].as_i64().expect("id");
    let (status, patched) = server
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            &server.key(),
            Some(json!({"enabled": false, "filter": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert!(patched["filter"].is_null());
    server
        .append(subscription, account.id, &["while-disabled"])
        .await;
    notifier.wake();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        receiver.notifications().len(),
        1,
        "disabled endpoints are not notified"
    );
    let (_, _) = server
        .call(
            Method::PATCH,
            &format!("/v1/webhooks/{id}"),
            &server.key(),
            Some(json!({"enabled": true})),
        )
        .await;
    notifier.wake();
    wait_for("delivery once enabled", Duration::from_secs(5), || {
        receiver.notifications().len() == 2
    })
    .await;

    let (status, error) = server
        .call(
            Method::POST,
            "/v1/webhooks",
            &server.key(),
            Some(json!({"url": receiver.url, "filter": {"detail": "add"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(error["message"]
        .as_str()
        .unwrap_or_default()
        .contains("invalid `filter`"));
    let (_, other_tenant) = server.new_tenant("other").await;
    let (status, _) = server
        .get(&format!("/v1/webhooks/{id}"), &other_tenant)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server
        .call(
            Method::DELETE,
            &format!("/v1/webhooks/{id}"),
            &other_tenant,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server
        .call(
            Method::DELETE,
            &format!("/v1/webhooks/{id}"),
            &server.key(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let _ = Auth::None;
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_both_signatures_verify_with_stock_code() {
    let server = TestServer::start().await;
    let receiver = Receiver::start(server.application_id).await;
    let (account, subscription) = server.account_with_subscription(&server.key()).await;
    let endpoint = create_endpoint(&server, &receiver.url, None).await;
    let (notifier, stop) = start_notifier(&server, fast_config());
    server.append(subscription, account.id, &["signed"]).await;
    notifier.wake();
    wait_for("the webhook", Duration::from_secs(5), || {
        !receiver.notifications().is_empty()
    })
    .await;
    let received = receiver.notifications().remove(0);
    let header = |name: &str| {
        received
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("content-type"), "application/json");
    assert_eq!(header("user-agent"), "tidemark-webhook/1");
    assert_eq!(
        received.body,
        format!(
            "{{\"account\":{},\"subscription\":{subscription}}}",
            account.id
        )
        .into_bytes()
    );
    let case = json!({
        "secret": endpoint["secret"],
        "api_key": server.api_key,
        "body": String::from_utf8(received.body.clone()).expect("utf-8"),
        "headers": {
            "webhook-id": header("webhook-id"),
            "webhook-timestamp": header("webhook-timestamp"),
            "webhook-signature": header("webhook-signature"),
            "x-kloudless-signature": header("x-kloudless-signature"),
        },
    });
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), serde_json::to_vec(&case).expect("json")).expect("write");
    let python = tokio::task::spawn_blocking(|| {
        crate::python::venv_with(
            "standardwebhooks-venv",
            "standardwebhooks==1.0.0",
            "standardwebhooks",
        )
    })
    .await
    .expect("venv task")
    .unwrap_or_else(|message| {
        panic!("the standardwebhooks library could not be set up: {message}")
    });
    let output = std::process::Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/verify_signatures.py"
        ))
        .arg(file.path())
        .output()
        .expect("python runs");
    assert!(
        output.status.success(),
        "signature verification failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_private_targets_can_be_refused_by_the_application() {
    let server = TestServer::start().await;
    let receiver = Receiver::start(server.application_id).await;
    let (_, application) = server.get("/v1/application", &server.key()).await;
    assert_eq!(
        application["allow_private_webhook_targets"], true,
        "allowed by default, for self-hosting"
    );
    let (status, _) = server
        .call(
            Method::PATCH,
            "/v1/application",
            &server.key(),
            Some(json!({"allow_private_webhook_targets": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for url in [
        receiver.url.clone(),
        "http://localhost:9/x".into(),
        "http://[::1]:9/x".into(),
        "http://10.1.2.3/x".into(),
        "http://169.254.169.254/latest/meta-data".into(),
    ] {
        let (status, error) = server
            .call(
                Method::POST,
                "/v1/webhooks",
                &server.key(),
                Some(json!({"url": url})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{url}: {error}");
        assert!(
            error["message"]
                .as_str()
                .unwrap_or_default()
                .contains("private address"),
            "{url}: {error}"
        );
    }
    let (status, _) = server
        .call(
            Method::PATCH,
            "/v1/application",
            &server.key(),
            Some(json!({"allow_private_webhook_targets": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    create_endpoint(&server, &receiver.url, None).await;
}

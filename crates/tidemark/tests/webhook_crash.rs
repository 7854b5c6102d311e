//! `kill -9` between a commit and its webhook's delivery loses nothing: after a restart the
//! notification is still due (it is derived from committed activity) and is delivered.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{json, Value};
use tidemark_store::Store as _;

const API_KEY: &str = "tmk_crash_test_key_0123456789";

#[derive(Default)]
struct Receiver {
    status: AtomicU16,
    attempts: AtomicUsize,
    delivered: AtomicUsize,
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    if body.as_ref() == b"{}" {
        return (StatusCode::OK, "1".into()); // the first application's id
    }
    receiver.attempts.fetch_add(1, Ordering::SeqCst);
    let status = receiver.status.load(Ordering::SeqCst);
    if status < 500 {
        receiver.delivered.fetch_add(1, Ordering::SeqCst);
    }
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        String::new(),
    )
}

fn serve(db: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--bootstrap-api-key",
            API_KEY,
        ])
        .arg("--db")
        .arg(format!("sqlite://{}", db.display()))
        .env("TIDEMARK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts")
}

async fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "serve never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn call(client: &reqwest::Client, url: String, body: Value) -> Value {
    let response = client
        .post(url)
        .header("Authorization", format!("APIKey {API_KEY}"))
        .json(&body)
        .send()
        .await
        .expect("request");
    assert!(response.status().is_success(), "{}", response.status());
    response.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_kill_9_between_commit_and_delivery_then_restart_delivers() {
    let dir = tempfile::tempdir().expect("dir");
    let watched = dir.path().join("watched");
    std::fs::create_dir(&watched).expect("mkdir");
    let db = dir.path().join("data/t.db");
    let receiver = Arc::new(Receiver::default());
    receiver.status.store(500, Ordering::SeqCst);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let app = axum::Router::new()
        .route("/hook", post(receive))
        .with_state(Arc::clone(&receiver));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut child = serve(&db, port);
    wait_healthy(&client, &base).await;
    let account = call(
        &client,
        format!("{base}/v1/accounts"),
        json!({"service": "local", "config": {"path": watched}}),
    )
    .await;
    let account_id = account["id"].as_i64().expect("id");
    let subscription = call(
        &client,
        format!("{base}/v2/accounts/{account_id}/subscriptions"),
        json!({}),
    )
    .await;
    let subscription_id = subscription["id"].as_i64().expect("subscription id");
    call(&client, format!("{base}/v1/webhooks"), json!({"url": hook})).await;
    // The subscription's baseline poll: files written before it are the baseline, not
    // activity. It is done once its checkpoint is committed.
    let store = tidemark_store::SqliteStore::open(&db).expect("the server's database");
    let deadline = Instant::now() + Duration::from_secs(30);
    while store
        .load_checkpoint(subscription_id)
        .await
        .expect("checkpoint")
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "the baseline poll never committed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Activity is committed; its webhook fails (500) and is due again in a second...
    std::fs::write(watched.join("important.txt"), "do not lose me").expect("write");
    wait_until("a first (failing) attempt", Duration::from_secs(20), || {
        receiver.attempts.load(Ordering::SeqCst) >= 1
    })
    .await;
    // ...when the server dies without warning.
    child.kill().expect("kill -9");
    child.wait().expect("reaped");
    assert_eq!(receiver.delivered.load(Ordering::SeqCst), 0);

    receiver.status.store(200, Ordering::SeqCst);
    let mut restarted = serve(&db, port);
    wait_healthy(&client, &base).await;
    wait_until(
        "delivery after the restart",
        Duration::from_secs(30),
        || receiver.delivered.load(Ordering::SeqCst) >= 1,
    )
    .await;
    restarted.kill().expect("kill");
    let _ = restarted.wait();
}

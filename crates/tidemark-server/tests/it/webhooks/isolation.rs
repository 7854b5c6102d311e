//! One slow endpoint never delays the others: it holds at most its own places, and never two
//! requests for the same subscription at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{json, Value};
use tidemark_notify::webhooks::NotifierConfig;
use tidemark_store::{NewAccount, NewSubscription};

use super::{create_endpoint, fast_config, start_notifier, wait_for, Receiver};
use crate::harness::TestServer;

/// How long the slow receiver takes to answer each notification.
const SLOW_ANSWER: Duration = Duration::from_secs(10);

/// Requests in flight at the slow receiver, per subscription and in all, with their peaks.
#[derive(Default)]
struct InFlight {
    per_subscription: HashMap<i64, usize>,
    peak_per_subscription: usize,
    total: usize,
    peak_total: usize,
    started: usize,
}

struct SlowReceiver {
    application_id: i64,
    in_flight: Mutex<InFlight>,
}

/// Leaves the in-flight count when the request ends, however it ends.
struct Leaving<'a>(&'a SlowReceiver, i64);

impl Drop for Leaving<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.0.in_flight.lock().expect("lock");
        in_flight.total -= 1;
        *in_flight.per_subscription.entry(self.1).or_default() -= 1;
    }
}

async fn answer_slowly(
    State(receiver): State<Arc<SlowReceiver>>,
    body: axum::body::Bytes,
) -> (StatusCode, String) {
    if body.as_ref() == b"{}" {
        return (StatusCode::OK, receiver.application_id.to_string());
    }
    let body: Value = serde_json::from_slice(&body).expect("json");
    let subscription = body["subscription"].as_i64().expect("subscription");
    {
        let mut in_flight = receiver.in_flight.lock().expect("lock");
        in_flight.started += 1;
        in_flight.total += 1;
        in_flight.peak_total = in_flight.peak_total.max(in_flight.total);
        let mine = in_flight.per_subscription.entry(subscription).or_default();
        *mine += 1;
        let mine = *mine;
        in_flight.peak_per_subscription = in_flight.peak_per_subscription.max(mine);
    }
    let _leaving = Leaving(&receiver, subscription);
    tokio::time::sleep(SLOW_ANSWER).await;
    (StatusCode::OK, String::new())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_slow_endpoint_with_many_due_notifications_does_not_delay_a_fast_one() {
    let server = TestServer::start().await;
    let slow = Arc::new(SlowReceiver {
        application_id: server.application_id,
        in_flight: Mutex::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let slow_url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let app = axum::Router::new()
        .route("/hook", post(answer_slowly))
        .with_state(Arc::clone(&slow));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let fast = Receiver::start(server.application_id).await;
    // The slow endpoint first, so it comes first wherever the store breaks ties by id.
    create_endpoint(&server, &slow_url, None).await;
    create_endpoint(&server, &fast.url, None).await;

    const SUBSCRIPTIONS: usize = 30;
    let mut subscriptions = Vec::new();
    for _ in 0..SUBSCRIPTIONS {
        let account = server
            .store
            .create_account(NewAccount {
                application_id: server.application_id,
                service: "local".into(),
                admin: false,
                config: json!({"path": "/tmp"}),
                token_digest: None,
            })
            .await
            .expect("account");
        let subscription = server
            .store
            .create_subscription(NewSubscription::changes(account.id))
            .await
            .expect("subscription");
        subscriptions.push((account.id, subscription.id));
    }
    for (account, subscription) in &subscriptions {
        server.append(*subscription, *account, &["x"]).await;
    }
    let config = NotifierConfig {
        max_in_flight: 8,
        max_in_flight_per_endpoint: 4,
        // Shorter than the slow answers: the notifier must not let a claim lapse mid-request.
        claim_ttl: Duration::from_secs(2),
        ..fast_config()
    };
    // Every subscription is due at both endpoints before the notifier starts.
    let started = Instant::now();
    let (_notifier, stop) = start_notifier(&server, config);
    wait_for(
        "every subscription's webhook at the fast endpoint",
        Duration::from_secs(20),
        || fast.notifications().len() >= SUBSCRIPTIONS,
    )
    .await;
    let fast_took = started.elapsed();
    let slow_started = slow.in_flight.lock().expect("lock").started;
    assert!(
        fast_took < Duration::from_secs(5),
        "the fast endpoint's {SUBSCRIPTIONS} webhooks took {fast_took:?} behind a slow endpoint"
    );
    assert!(
        slow_started <= 4,
        "the slow endpoint got {slow_started} requests before any could finish"
    );

    // Past the first slow answers, the next ones start, never two for one subscription.
    let deadline = started + SLOW_ANSWER + Duration::from_secs(20);
    while slow.in_flight.lock().expect("lock").started <= 4 {
        assert!(
            Instant::now() < deadline,
            "the slow endpoint got no second round"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let in_flight = slow.in_flight.lock().expect("lock");
    assert_eq!(
        in_flight.peak_per_subscription, 1,
        "two requests in flight at once for one subscription"
    );
    assert!(
        in_flight.peak_total <= 4,
        "{} requests in flight at once at one endpoint, beyond its limit of 4",
        in_flight.peak_total
    );
    drop(in_flight);
    let _ = stop.send(());
}

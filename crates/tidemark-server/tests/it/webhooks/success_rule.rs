//! Seed 003's success rule: a status below 500 within the timeouts is a success (a 4xx is
//! not retried); no answer within the read timeout is a failure (retried).

use std::time::Duration;

use tidemark_notify::webhooks::NotifierConfig;

use super::{create_endpoint, fast_config, start_notifier, wait_for, wait_for_attempts, Receiver};
use crate::harness::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_4xx_answer_is_a_success_and_is_not_retried() {
    let server = TestServer::start().await;
    let receiver = Receiver::start(server.application_id).await;
    let (account, subscription) = server.account_with_subscription(&server.key()).await;
    let endpoint = create_endpoint(&server, &receiver.url, None).await;
    let id = endpoint["id"].as_i64().expect("id");
    receiver.answer_notifications_with(&[404, 499]);
    let (notifier, stop) = start_notifier(&server, fast_config());
    server.append(subscription, account.id, &["x"]).await;
    notifier.wake();
    let attempts = wait_for_attempts(&server, id, 1, Duration::from_secs(20)).await;
    assert_eq!(
        (&attempts[0]["status"], &attempts[0]["status_code"]),
        (&"success".into(), &404.into()),
        "{attempts:?}"
    );
    assert!(attempts[0]["error"].is_null(), "{attempts:?}");
    // A failure would be retried after 100 ms; give it ten times that.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.notifications().len(), 1, "a 4xx is not retried");
    // The 404 covered the activity: only newer activity is notified again.
    server.append(subscription, account.id, &["y"]).await;
    notifier.wake();
    let attempts = wait_for_attempts(&server, id, 2, Duration::from_secs(20)).await;
    assert_eq!(attempts[0]["status_code"], 499, "{attempts:?}");
    assert_eq!(attempts[0]["status"], "success", "{attempts:?}");
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_no_answer_within_the_read_timeout_is_a_failure_and_is_retried() {
    let server = TestServer::start().await;
    let receiver = Receiver::start(server.application_id).await;
    let (account, subscription) = server.account_with_subscription(&server.key()).await;
    let endpoint = create_endpoint(&server, &receiver.url, None).await;
    let id = endpoint["id"].as_i64().expect("id");
    // The seed's 27 s read timeout scaled down to 500 ms (connecting may still take 3 s); the
    // first answer takes 6 s, longer than both together.
    receiver.delay_notifications_by(&[Duration::from_secs(6)]);
    let config = NotifierConfig {
        connect_timeout: Duration::from_secs(3),
        read_timeout: Duration::from_millis(500),
        ..fast_config()
    };
    let (notifier, stop) = start_notifier(&server, config);
    server.append(subscription, account.id, &["x"]).await;
    notifier.wake();
    let attempts = wait_for_attempts(&server, id, 2, Duration::from_secs(30)).await;
    let (retry, timed_out) = (&attempts[0], &attempts[1]);
    assert_eq!(timed_out["status"], "failure", "{attempts:?}");
    assert!(timed_out["status_code"].is_null(), "{attempts:?}");
    assert!(
        timed_out["error"]
            .as_str()
            .unwrap_or_default()
            .contains("timed out"),
        "{attempts:?}"
    );
    let latency = timed_out["latency_ms"].as_f64().unwrap_or_default();
    assert!(
        (400.0..2900.0).contains(&latency),
        "gave up after {latency} ms, not at the 500 ms read timeout (the whole request may take 3.5 s)"
    );
    assert_eq!(retry["status"], "success", "{attempts:?}");
    assert_eq!(retry["status_code"], 200, "{attempts:?}");
    wait_for(
        "both requests at the receiver",
        Duration::from_secs(10),
        || receiver.notifications().len() >= 2,
    )
    .await;
    let _ = stop.send(());
}

//! Private targets refused at delivery: an application that forbids them after its endpoints
//! were created gets refused attempts, and nothing reaches the receiver, whether the URL
//! names a literal address or a host name that resolves to one.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{create_endpoint, fast_config, start_notifier, wait_for, wait_for_attempts, Receiver};
use crate::harness::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_delivery_is_refused_once_the_application_forbids_private_targets() {
    let server = TestServer::start().await;
    let receiver = Receiver::start(server.application_id).await;
    let (account, subscription) = server.account_with_subscription(&server.key()).await;
    // Allowed by default: one endpoint by literal address, one by a name that resolves to
    // loopback (checked by the resolver as the request connects).
    let by_address = create_endpoint(&server, &receiver.url, None).await;
    let port = receiver.url.rsplit(':').next().expect("port");
    let by_name = create_endpoint(&server, &format!("http://localhost:{port}"), None).await;
    let endpoints = [
        by_address["id"].as_i64().expect("id"),
        by_name["id"].as_i64().expect("id"),
    ];
    // Both work while private targets are allowed.
    let (notifier, stop) = start_notifier(&server, fast_config());
    server.append(subscription, account.id, &["allowed"]).await;
    notifier.wake();
    wait_for("both webhooks", Duration::from_secs(20), || {
        receiver.notifications().len() >= 2
    })
    .await;
    for endpoint in endpoints {
        wait_for_attempts(&server, endpoint, 1, Duration::from_secs(20)).await;
    }
    let _ = stop.send(());

    let (status, _) = server
        .call(
            Method::PATCH,
            "/v1/application",
            &server.key(),
            Some(json!({"allow_private_webhook_targets": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // A new notifier, so no cached setting can stand in the way.
    let (notifier, stop) = start_notifier(&server, fast_config());
    server.append(subscription, account.id, &["refused"]).await;
    notifier.wake();
    for endpoint in endpoints {
        let attempts = wait_for_attempts(&server, endpoint, 2, Duration::from_secs(20)).await;
        let refused = &attempts[0];
        assert_eq!(refused["status"], "failure", "{attempts:?}");
        assert!(refused["status_code"].is_null(), "{attempts:?}");
        let error = refused["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("refused") && error.contains("private address"),
            "endpoint {endpoint}: {error}"
        );
    }
    assert_eq!(
        receiver.notifications().len(),
        2,
        "nothing reaches a private target once refused"
    );
    let _ = stop.send(());
}

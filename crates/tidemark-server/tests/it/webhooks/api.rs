//! The attempts API's filters and recovery, over HTTP.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tidemark_notify::webhooks::NotifierConfig;

use super::{create_endpoint, fast_config, start_notifier, wait_for, wait_for_attempts, Receiver};
use crate::harness::TestServer;

/// An attempt's `started_at`, parsed.
fn started_at(attempt: &Value) -> chrono::DateTime<chrono::Utc> {
    tidemark_model::time::parse(attempt["started_at"].as_str().expect("started_at"))
        .expect("ISO 8601")
}

/// A timestamp for a query string (`+` would read as a space).
fn query_time(time: chrono::DateTime<chrono::Utc>) -> String {
    tidemark_model::time::format(&time).replace('+', "%2B")
}

fn statuses(list: &Value) -> Vec<u64> {
    list["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|a| a["status_code"].as_u64().unwrap_or(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_attempts_filter_by_since_until_and_status_and_refuse_bad_timestamps() {
    let server = TestServer::start().await;
    let receiver = Receiver::start(server.application_id).await;
    let (account, subscription) = server.account_with_subscription(&server.key()).await;
    let endpoint = create_endpoint(&server, &receiver.url, None).await;
    let id = endpoint["id"].as_i64().expect("id");
    receiver.answer_notifications_with(&[500, 502, 200]);
    let (notifier, stop) = start_notifier(&server, fast_config());
    server.append(subscription, account.id, &["x"]).await;
    notifier.wake();
    let attempts = wait_for_attempts(&server, id, 3, Duration::from_secs(30)).await;
    // Newest first: 200, 502, 500.
    let (success, second, first) = (&attempts[0], &attempts[1], &attempts[2]);
    assert_eq!(statuses(&json!({ "objects": attempts })), [200, 502, 500]);
    let (t1, t2, t3) = (started_at(first), started_at(second), started_at(success));
    assert!(t1 < t2 && t2 < t3, "{attempts:?}");
    let list = |query: String| {
        let server = &server;
        async move {
            let (status, list) = server
                .get(
                    &format!("/v1/webhooks/{id}/attempts?{query}"),
                    &server.key(),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{query}: {list}");
            list
        }
    };
    // `since` is inclusive, `until` exclusive.
    assert_eq!(
        statuses(&list(format!("since={}", query_time(t2))).await),
        [200, 502]
    );
    assert_eq!(
        statuses(&list(format!("until={}", query_time(t2))).await),
        [500]
    );
    assert_eq!(
        statuses(&list(format!("since={}&until={}", query_time(t1), query_time(t3))).await),
        [502, 500]
    );
    assert_eq!(
        statuses(&list(format!("status=failure&since={}", query_time(t2))).await),
        [502]
    );
    assert_eq!(
        statuses(&list(format!("status=success&until={}", query_time(t3))).await),
        Vec::<u64>::new()
    );
    assert_eq!(statuses(&list("status=success".into()).await), [200]);
    // Any RFC 3339 offset is accepted.
    let in_paris = t2
        .with_timezone(&chrono::FixedOffset::east_opt(3600).expect("offset"))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
        .replace('+', "%2B");
    assert_eq!(
        statuses(&list(format!("since={in_paris}")).await),
        [200, 502]
    );

    for (query, needle) in [
        ("since=yesterday", "`since` must be an ISO 8601 timestamp"),
        (
            "until=2026-13-01T00:00:00Z",
            "`until` must be an ISO 8601 timestamp",
        ),
        ("status=maybe", "`status` must be `success` or `failure`"),
        ("before=newest", "`before` must be an attempt id"),
    ] {
        // The harness checks the error shape: type, status_code, error_code, message, id.
        let (status, error) = server
            .get(
                &format!("/v1/webhooks/{id}/attempts?{query}"),
                &server.key(),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {error}");
        assert_eq!(
            error["error_code"], "invalid_parameters",
            "{query}: {error}"
        );
        assert!(
            error["message"]
                .as_str()
                .unwrap_or_default()
                .contains(needle),
            "{query}: {error}"
        );
    }
    let _ = stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_recover_resends_what_failed_since_a_time_and_counts_it() {
    let server = TestServer::start().await;
    let receiver = Receiver::start(server.application_id).await;
    let (account, failed) = server.account_with_subscription(&server.key()).await;
    let (other_account, failed_then_delivered) =
        server.account_with_subscription(&server.key()).await;
    let endpoint = create_endpoint(&server, &receiver.url, None).await;
    let id = endpoint["id"].as_i64().expect("id");
    receiver.answer_notifications_with(&[500]);
    // Every failure gives up at once: without recovery, nothing is sent again until new
    // activity arrives.
    let config = NotifierConfig {
        give_up_after: Duration::ZERO,
        ..fast_config()
    };
    let (notifier, stop) = start_notifier(&server, config);
    server.append(failed, account.id, &["lost"]).await;
    server
        .append(failed_then_delivered, other_account.id, &["lost-too"])
        .await;
    notifier.wake();
    let attempts = wait_for_attempts(&server, id, 2, Duration::from_secs(30)).await;
    assert!(
        attempts.iter().all(|a| a["status"] == "failure"),
        "{attempts:?}"
    );
    let first_failure = attempts.iter().map(started_at).min().expect("attempts");
    let last_failure = attempts.iter().map(started_at).max().expect("attempts");
    // The second subscription gets newer activity and is delivered; the first stays failed.
    receiver.answer_notifications_with(&[200]);
    server
        .append(failed_then_delivered, other_account.id, &["newer"])
        .await;
    notifier.wake();
    wait_for_attempts(&server, id, 3, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        receiver.notifications().len(),
        3,
        "a given-up notification is not retried"
    );

    let recover = |since: String| {
        let server = &server;
        async move {
            server
                .call(
                    Method::POST,
                    &format!("/v1/webhooks/{id}/recover"),
                    &server.key(),
                    Some(json!({ "since": since })),
                )
                .await
        }
    };
    let after = last_failure + chrono::Duration::seconds(1);
    let (status, recovered) = recover(tidemark_model::time::format(&after)).await;
    assert_eq!(status, StatusCode::OK, "{recovered}");
    assert_eq!(recovered["recovered"], 0, "nothing failed since then");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.notifications().len(), 3);

    let before = first_failure - chrono::Duration::seconds(1);
    let (status, recovered) = recover(tidemark_model::time::format(&before)).await;
    assert_eq!(status, StatusCode::OK, "{recovered}");
    assert_eq!(
        recovered["recovered"], 1,
        "only the subscription still undelivered is sent again"
    );
    notifier.wake();
    wait_for("the recovered webhook", Duration::from_secs(20), || {
        receiver.notifications().len() >= 4
    })
    .await;
    let resent: Value = serde_json::from_slice(&receiver.notifications()[3].body).expect("json");
    assert_eq!(
        resent,
        json!({"account": account.id, "subscription": failed})
    );
    let attempts = wait_for_attempts(&server, id, 4, Duration::from_secs(20)).await;
    assert_eq!(attempts[0]["status"], "success", "{attempts:?}");
    assert_eq!(attempts[0]["subscription"], failed, "{attempts:?}");

    for body in [
        json!({"since": "yesterday"}),
        json!({}),
        json!({"since": 12}),
    ] {
        let (status, error) = server
            .call(
                Method::POST,
                &format!("/v1/webhooks/{id}/recover"),
                &server.key(),
                Some(body.clone()),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
    }
    let (_, error) = recover("yesterday".into()).await;
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("`since` must be an ISO 8601 timestamp"),
        "{error}"
    );
    let _ = stop.send(());
}

//! The SDK against the real server: accounts, subscriptions, pages, streams, ranges with their
//! watermark, and typed errors; 429 handling against a fake server that asks to wait.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures::TryStreamExt as _;
use tidemark_client::{
    AccountRef, Auth, Client, ClientError, NewAccount, NewSubscription, Query, RetryPolicy,
    SubscriptionRef,
};

use crate::harness::{micros, spread, TestServer};

#[tokio::test]
async fn test_accounts_and_subscriptions_are_created_listed_and_read() {
    let server = TestServer::start().await;
    let client = server.client();
    let watched = tempfile::tempdir().expect("dir");
    let created = client
        .create_account(&NewAccount {
            service: "local".into(),
            admin: false,
            config: serde_json::json!({"path": watched.path()}),
        })
        .await
        .expect("create account");
    assert_eq!(created.service, "local");
    let token = created.bearer_token.clone().expect("shown once").key;
    let account = AccountRef::Id(created.id);
    let read = client.get_account(account).await.expect("get account");
    assert_eq!(read.id, created.id);
    assert_eq!(read.bearer_token, None, "only the create answer has it");
    let listed = client.list_accounts().await.expect("list accounts");
    assert_eq!(
        listed.iter().map(|a| a.id).collect::<Vec<_>>(),
        [created.id]
    );

    let subscription = client
        .create_subscription(account, &NewSubscription::default())
        .await
        .expect("create subscription");
    assert!(subscription.active && subscription.default);
    let by_default = client
        .get_subscription(account, SubscriptionRef::Default)
        .await
        .expect("default");
    assert_eq!(by_default.id, subscription.id);
    let listed = client
        .list_subscriptions(account)
        .await
        .expect("list subscriptions");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, subscription.id);
    assert_eq!(listed[0].last_cursor, None, "lists leave it out");

    // A bearer token reaches its own account as `me`.
    let mine = Client::new(&server.base, Auth::Bearer(token)).expect("client");
    assert_eq!(
        mine.get_account(AccountRef::Me).await.expect("me").id,
        created.id
    );
    assert_eq!(
        mine.get_subscription(AccountRef::Me, SubscriptionRef::Default)
            .await
            .expect("my default")
            .id,
        subscription.id
    );
}

#[tokio::test]
async fn test_errors_are_typed_with_the_servers_code_message_and_request_id() {
    let server = TestServer::start().await;
    let client = server.client();
    let error = client
        .get_account(AccountRef::Id(987_654))
        .await
        .expect_err("no such account");
    match &error {
        ClientError::Api {
            status,
            error_code,
            id,
            ..
        } => {
            assert_eq!(*status, 404);
            assert_eq!(error_code, "not_found");
            assert!(!id.is_empty(), "the request id comes along");
        }
        other => panic!("{other:?}"),
    }
    assert!(!error.is_transient());

    let (account, subscription) = server.subscription().await;
    let error = client
        .activity_page(
            account.into(),
            subscription.into(),
            &Query::start().page_size(5000),
        )
        .await
        .expect_err("page_size out of range");
    assert_eq!(error.status(), Some(400));
    assert!(error.to_string().contains("page_size"), "{error}");
    let error = client
        .activity_page(
            account.into(),
            subscription.into(),
            &Query {
                cursor: Some("after-auth".into()),
                from: Some(Utc::now()),
                ..Query::default()
            },
        )
        .await
        .expect_err("cursor with a range");
    assert!(error.to_string().contains("cannot be combined"), "{error}");

    let stranger = Client::new(&server.base, Auth::ApiKey("tmk_not_a_key".into())).expect("client");
    let error = stranger.list_accounts().await.expect_err("bad key");
    assert_eq!(error.status(), Some(401), "{error}");

    for bad in ["ftp://example.com", "not a url", "http://"] {
        let error = Client::new(bad, Auth::ApiKey("k".into())).expect_err(bad);
        assert!(matches!(error, ClientError::InvalidRequest(_)), "{error}");
    }
    // Nothing listens there: a transport error, worth retrying.
    let nowhere = Client::new("http://127.0.0.1:9", Auth::ApiKey("k".into())).expect("client");
    let error = nowhere.list_accounts().await.expect_err("refused");
    assert!(
        matches!(error, ClientError::Http(_)) && error.is_transient(),
        "{error}"
    );
}

#[tokio::test]
async fn test_activity_stream_follows_cursors_until_an_empty_page() {
    let server = TestServer::start().await;
    let client = server.client();
    let (account, subscription) = server.subscription().await;
    let activities = spread(
        account,
        "s",
        2500,
        Utc::now() - chrono::Duration::hours(1),
        chrono::Duration::minutes(10),
        1,
    );
    server.commit(subscription, &activities, None).await;

    let streamed: Vec<String> = client
        .activity_stream(
            account.into(),
            subscription.into(),
            Query::start().page_size(1000),
        )
        .map_ok(|activity| activity.id)
        .try_collect()
        .await
        .expect("stream");
    let committed: Vec<String> = activities.iter().map(|a| a.id.clone()).collect();
    assert_eq!(
        streamed, committed,
        "every activity once, in sequence order"
    );

    let pages: Vec<_> = client
        .activity_pages(
            account.into(),
            SubscriptionRef::Default,
            Query::start().page_size(1000),
        )
        .try_collect()
        .await
        .expect("pages");
    assert_eq!(
        pages.iter().map(|p| p.count).collect::<Vec<_>>(),
        [1000, 1000, 500]
    );
    // The last cursor is where to continue: nothing yet, then what is committed next.
    let last = pages.last().expect("a page").cursor.clone();
    let page = client
        .activity_page(account.into(), subscription.into(), &Query::after(&last))
        .await
        .expect("page");
    assert!(page.objects.is_empty());
    assert_eq!(page.total, 2500);
    let more = spread(account, "m", 3, Utc::now(), chrono::Duration::seconds(1), 2);
    server.commit(subscription, &more, None).await;
    let page = client
        .activity_page(account.into(), subscription.into(), &Query::after(last))
        .await
        .expect("page");
    assert_eq!(page.count, 3);
    assert_eq!(page.watermark, None, "stream answers carry no watermark");
}

#[tokio::test]
async fn test_a_time_range_is_read_whole_in_time_order_with_the_watermark() {
    let server = TestServer::start().await;
    let client = server.client();
    let (account, subscription) = server.subscription().await;
    let from = micros(Utc::now() - chrono::Duration::hours(2));
    let activities = spread(account, "r", 1200, from, chrono::Duration::hours(1), 3);
    let watermark = from + chrono::Duration::minutes(40);
    server
        .commit(subscription, &activities, Some(watermark))
        .await;

    let until = from + chrono::Duration::minutes(30);
    let read = client
        .read_range(account.into(), subscription.into(), from, Some(until), 100)
        .await
        .expect("range");
    let mut expected: Vec<(i64, usize, &str)> = activities
        .iter()
        .enumerate()
        .filter_map(|(sequence, a)| {
            let at = a.timestamp.expect("timestamp");
            (at >= from && at < until).then_some((at.timestamp_micros(), sequence, a.id.as_str()))
        })
        .collect();
    expected.sort();
    let ids: Vec<&str> = read.activities.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, expected.iter().map(|e| e.2).collect::<Vec<_>>());
    assert!(ids.len() > 400, "{}", ids.len());
    assert_eq!(read.watermark, Some(watermark));

    // The same range as a stream: the same activity.
    let streamed: Vec<String> = client
        .activity_stream(
            account.into(),
            subscription.into(),
            Query::range(from, Some(until)).page_size(333),
        )
        .map_ok(|a| a.id)
        .try_collect()
        .await
        .expect("stream");
    assert_eq!(streamed, ids);
}

/// A server that answers 429 (with `Retry-After: 0`) `limited` times, then an empty page.
async fn rate_limited_server(limited: usize) -> (String, Arc<AtomicUsize>) {
    use axum::http::{HeaderMap, StatusCode};
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let app = axum::Router::new().fallback(move || {
        let counter = Arc::clone(&counter);
        async move {
            let call = counter.fetch_add(1, Ordering::SeqCst);
            let mut headers = HeaderMap::new();
            headers.insert("content-type", "application/json".parse().expect("header"));
            if call < limited {
                headers.insert("retry-after", "0".parse().expect("header"));
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    headers,
                    r#"{"type":"error","status_code":429,"error_code":"rate_limited","message":"slow down","id":"r1"}"#,
                );
            }
            (
                StatusCode::OK,
                headers,
                r#"{"objects":[],"cursor":"c9","count":0,"total":0,"type":"object_list","api":"activity"}"#,
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, calls)
}

#[tokio::test]
async fn test_429_is_waited_out_within_the_retry_policy_then_reported() {
    let (base, calls) = rate_limited_server(2).await;
    let client = Client::new(&base, Auth::ApiKey("k".into())).expect("client");
    let page = client
        .activity_page(AccountRef::Me, SubscriptionRef::Default, &Query::start())
        .await
        .expect("after two waits");
    assert_eq!(page.cursor, "c9");
    assert_eq!(calls.load(Ordering::SeqCst), 3);

    let (base, calls) = rate_limited_server(usize::MAX).await;
    let client = Client::new(&base, Auth::ApiKey("k".into()))
        .expect("client")
        .with_retry(RetryPolicy {
            max_retries: 3,
            max_wait: Duration::from_secs(5),
        });
    let error = client
        .activity_page(AccountRef::Me, SubscriptionRef::Default, &Query::start())
        .await
        .expect_err("always limited");
    match error {
        ClientError::RateLimited { retry_after } => assert_eq!(retry_after, Duration::ZERO),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        4,
        "the first try and three retries"
    );
}

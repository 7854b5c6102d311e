//! List Activity (v1 and v2 prefixes) and the v1 event stream, followed by cursor.

use reqwest::StatusCode;
use serde_json::Value;
use tidemark_model::{EventSubtype, EventType};
use tidemark_store::CommitBatch;

use crate::harness::{Auth, TestServer};

fn ids(page: &Value) -> Vec<String> {
    page["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| o["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn test_following_cursors_returns_every_activity_once_in_order() {
    let server = TestServer::start().await;
    let (account, id) = server.account_with_subscription(&server.key()).await;
    server
        .append(id, account.id, &["a1", "a2", "a3", "a4", "a5"])
        .await;
    let token = Auth::Bearer(account.token.clone());

    let (status, everything) = server
        .get("/v2/accounts/me/subscriptions/default/activity", &token)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(everything["type"], "object_list");
    assert_eq!(everything["api"], "activity");
    assert_eq!(
        (everything["count"].as_u64(), everything["total"].as_u64()),
        (Some(5), Some(5))
    );
    assert_eq!(everything["objects"][0]["type"], "activity");

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut empty_page_cursor = None;
    for prefix in ["/v1", "/v2", "/v1", "/v2"] {
        let mut path = format!(
            "{prefix}/accounts/{}/subscriptions/{id}/activity?page_size=2",
            account.id
        );
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={cursor}"));
        }
        let (status, page) = server.get(&path, &server.key()).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let next = page["cursor"]
            .as_str()
            .expect("a cursor on every page")
            .to_owned();
        assert_ne!(next, "-1");
        if page["count"] == 0 {
            empty_page_cursor = Some(next.clone());
        }
        seen.extend(ids(&page));
        cursor = Some(next);
    }
    assert_eq!(seen, ["a1", "a2", "a3", "a4", "a5"]);
    let empty_page_cursor = empty_page_cursor.expect("the last page is empty");

    // The cursor from the empty page is the one to store: new activity appears after it.
    server.append(id, account.id, &["a6"]).await;
    let (_, page) = server
        .get(
            &format!("/v2/accounts/me/subscriptions/default/activity?cursor={empty_page_cursor}"),
            &token,
        )
        .await;
    assert_eq!(ids(&page), ["a6"]);
    // An old cursor stays valid when reused.
    let (_, again) = server
        .get(
            &format!("/v2/accounts/me/subscriptions/default/activity?cursor={empty_page_cursor}"),
            &token,
        )
        .await;
    assert_eq!(ids(&again), ["a6"]);

    // `last_cursor` is the newest cursor handed out.
    let (_, subscription) = server
        .get("/v2/accounts/me/subscriptions/default", &token)
        .await;
    assert_eq!(subscription["last_cursor"], again["cursor"]);
    assert!(subscription["last_cursor_updated_at"].is_string());
    // ... and reaches the store shortly after (written in batches off the request path).
    let newest = again["cursor"].as_str().expect("cursor").to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let stored = server
            .store
            .get_subscription(id)
            .await
            .expect("subscription");
        if stored.last_cursor.as_deref() == Some(newest.as_str()) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "last_cursor never written: {:?}",
            stored.last_cursor
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn test_after_auth_and_foreign_or_altered_cursors() {
    let server = TestServer::start().await;
    let (account, id) = server.account_with_subscription(&server.key()).await;
    let (other, other_id) = server.account_with_subscription(&server.key()).await;
    server.append(id, account.id, &["x1"]).await;
    server.append(other_id, other.id, &["y1"]).await;
    let path = format!("/v2/accounts/{}/subscriptions/{id}/activity", account.id);
    let (status, page) = server
        .get(&format!("{path}?cursor=after-auth"), &server.key())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ids(&page), ["x1"]);

    let (_, other_page) = server
        .get(
            &format!(
                "/v2/accounts/{}/subscriptions/{other_id}/activity",
                other.id
            ),
            &server.key(),
        )
        .await;
    let foreign = other_page["cursor"].as_str().expect("cursor");
    let (status, error) = server
        .get(&format!("{path}?cursor={foreign}"), &server.key())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("another subscription"),
        "{error}"
    );

    let mine = page["cursor"].as_str().expect("cursor");
    let mut altered: Vec<char> = mine.chars().collect();
    let last = altered.len() - 1;
    altered[last] = if altered[last] == 'A' { 'B' } else { 'A' };
    let altered: String = altered.into_iter().collect();
    let (status, error) = server
        .get(&format!("{path}?cursor={altered}"), &server.key())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
}

#[tokio::test]
async fn test_v1_events_follow_the_default_subscription_in_v1_form() {
    let server = TestServer::start().await;
    let (account, id) = server.account_with_subscription(&server.key()).await;
    // Reads have no v1 form: the event stream passes over them without ending early.
    let mut reads = Vec::new();
    for index in 0..3 {
        let mut activity =
            tidemark_store::testsuite::sample_activity(account.id, &format!("read{index}"));
        activity.event_type = EventType::Access;
        activity.event_subtype = EventSubtype::Preview;
        reads.push(activity);
    }
    server
        .store
        .commit(CommitBatch::new(id, &reads).expect("encode"))
        .await
        .expect("commit");
    server.append(id, account.id, &["e1", "e2", "e3"]).await;
    let token = Auth::Bearer(account.token.clone());

    let (status, first) = server
        .get("/v1/accounts/me/events?page_size=2", &token)
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["type"], "object_list");
    assert_eq!(ids(&first), ["e1", "e2"]);
    assert_eq!(first["objects"][0]["type"], "add");
    assert_eq!(first["objects"][0]["action"], "+");
    let cursor = first["cursor"].as_str().expect("cursor");
    let (_, second) = server
        .get(
            &format!("/v1/accounts/me/events?page_size=2&cursor={cursor}"),
            &token,
        )
        .await;
    assert_eq!(ids(&second), ["e3"]);
    let cursor = second["cursor"].as_str().expect("cursor");
    let (_, end) = server
        .get(
            &format!("/v1/accounts/{}/events?cursor={cursor}", account.id),
            &server.key(),
        )
        .await;
    assert_eq!(end["count"], 0);

    let (status, latest) = server.get("/v1/accounts/me/events/latest", &token).await;
    assert_eq!(status, StatusCode::OK);
    server.append(id, account.id, &["e4"]).await;
    let latest = latest["cursor"].as_str().expect("cursor");
    let (_, after_latest) = server
        .get(&format!("/v1/accounts/me/events?cursor={latest}"), &token)
        .await;
    assert_eq!(ids(&after_latest), ["e4"]);
    assert_eq!(server.store.latest_sequence(id).await.expect("seq"), 7);
}

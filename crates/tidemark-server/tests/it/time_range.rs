//! List Activity with `from`/`until` over real HTTP: [from, until) by activity timestamp, in
//! timestamp order, with a cursor bound to the range and the subscription's watermark.

use chrono::{DateTime, Duration, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use tidemark_model::Activity;
use tidemark_store::CommitBatch;

use crate::harness::TestServer;

fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        .replace('+', "%2B")
}

fn ids(page: &Value) -> Vec<String> {
    page["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|a| a["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// Commits activities with the given timestamps (seconds after `base`; `None`: no timestamp).
async fn commit_at(
    server: &TestServer,
    subscription: i64,
    account: i64,
    base: DateTime<Utc>,
    items: &[(&str, Option<i64>)],
    watermark: Option<DateTime<Utc>>,
) {
    let activities: Vec<Activity> = items
        .iter()
        .map(|(id, second)| {
            let mut activity = tidemark_store::testsuite::sample_activity(account, id);
            activity.timestamp = second.map(|s| base + Duration::seconds(s));
            activity
        })
        .collect();
    server
        .store
        .commit(CommitBatch {
            watermark,
            ..CommitBatch::new(subscription, &activities).expect("encode")
        })
        .await
        .expect("commit");
}

#[tokio::test]
async fn test_a_time_range_is_read_in_time_order_and_its_cursor_stays_inside() {
    let server = TestServer::start().await;
    let (account, subscription) = server.account_with_subscription(&server.key()).await;
    let base = Utc::now() - Duration::hours(2);
    commit_at(
        &server,
        subscription,
        account.id,
        base,
        &[
            ("late", Some(40)),
            ("early", Some(10)),
            ("tie1", Some(20)),
            ("none", None),
            ("tie2", Some(20)),
            ("before", Some(5)),
            ("after", Some(60)),
        ],
        None,
    )
    .await;
    let path = format!(
        "/v2/accounts/{}/subscriptions/{subscription}/activity",
        account.id
    );
    let range = format!(
        "from={}&until={}",
        iso(base + Duration::seconds(10)),
        iso(base + Duration::seconds(60))
    );

    let (status, page) = server.get(&format!("{path}?{range}"), &server.key()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        ids(&page),
        ["early", "tie1", "tie2", "late"],
        "[from, until) in time order"
    );
    assert_eq!(page["count"], 4);
    assert_eq!(page["total"], 7);
    assert_eq!(page["type"], "object_list");
    assert!(page["watermark"].is_null(), "no connector has reported one");

    // Paged two at a time by the bound cursor: the same four, then an empty page whose cursor
    // is still the one to keep.
    let (_, first) = server
        .get(&format!("{path}?{range}&page_size=2"), &server.key())
        .await;
    assert_eq!(ids(&first), ["early", "tie1"]);
    let cursor = first["cursor"].as_str().expect("cursor").to_owned();
    let (status, second) = server
        .get(
            &format!("{path}?cursor={cursor}&page_size=2"),
            &server.key(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(ids(&second), ["tie2", "late"]);
    let cursor = second["cursor"].as_str().expect("cursor").to_owned();
    let (_, end) = server
        .get(&format!("{path}?cursor={cursor}"), &server.key())
        .await;
    assert_eq!(
        ids(&end),
        Vec::<String>::new(),
        "nothing more in the range for now"
    );
    let kept = end["cursor"].as_str().expect("cursor").to_owned();
    // Activity later in the range than the cursor's position appears on the next read; the
    // cursor never leaves the range.
    commit_at(
        &server,
        subscription,
        account.id,
        base,
        &[("new", Some(50)), ("outside", Some(70))],
        None,
    )
    .await;
    let (_, more) = server
        .get(&format!("{path}?cursor={kept}"), &server.key())
        .await;
    assert_eq!(ids(&more), ["new"]);
    // An old cursor stays valid when reused.
    let (_, again) = server
        .get(&format!("{path}?cursor={kept}"), &server.key())
        .await;
    assert_eq!(ids(&again), ["new"]);

    // `from` alone is open-ended; the v1 prefix answers the same.
    let v1 = format!(
        "/v1/accounts/{}/subscriptions/{subscription}/activity",
        account.id
    );
    let (_, open) = server
        .get(
            &format!("{v1}?from={}", iso(base + Duration::seconds(41))),
            &server.key(),
        )
        .await;
    assert_eq!(ids(&open), ["new", "after", "outside"]);

    // A range cursor with a (new) range, on v1 events, or altered: refused.
    let (status, body) = server
        .get(&format!("{path}?cursor={kept}&{range}"), &server.key())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = server
        .get(
            &format!("/v1/accounts/{}/events?cursor={kept}", account.id),
            &server.key(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("time range"),
        "{body}"
    );
    let mut altered = kept.clone();
    let last = altered
        .pop()
        .map_or('A', |c| if c == 'A' { 'B' } else { 'A' });
    altered.push(last);
    let (status, _) = server
        .get(&format!("{path}?cursor={altered}"), &server.key())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn test_time_range_answers_carry_the_watermark_which_only_moves_forward() {
    let server = TestServer::start().await;
    let (account, subscription) = server.account_with_subscription(&server.key()).await;
    let base = Utc::now() - Duration::hours(1);
    let mark = DateTime::from_timestamp_millis((base + Duration::seconds(30)).timestamp_millis())
        .expect("time");
    commit_at(
        &server,
        subscription,
        account.id,
        base,
        &[("a", Some(10))],
        Some(mark),
    )
    .await;
    // An older watermark reported later does not move it back.
    commit_at(
        &server,
        subscription,
        account.id,
        base,
        &[("b", Some(20))],
        Some(base),
    )
    .await;
    let path = format!(
        "/v2/accounts/{}/subscriptions/{subscription}/activity",
        account.id
    );
    let (_, page) = server
        .get(&format!("{path}?from={}", iso(base)), &server.key())
        .await;
    let watermark = page["watermark"].as_str().expect("watermark");
    let parsed = DateTime::parse_from_rfc3339(watermark).expect("ISO 8601");
    assert_eq!(parsed, mark, "{page}");
    assert_eq!(ids(&page), ["a", "b"]);
    // A stream read (no range) has no watermark field.
    let (_, stream) = server.get(&path, &server.key()).await;
    assert!(stream.get("watermark").is_none());
}

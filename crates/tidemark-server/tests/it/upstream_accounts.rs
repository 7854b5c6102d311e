//! Accounts of HTTP upstreams (Jive, Onna) against their simulators: connecting checks the
//! credentials with the upstream, credentials stay write-only across PATCH, and fixing
//! rejected credentials re-enables the subscriptions they had stopped.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tidemark_simulators::{JiveSimulator, OnnaSimulator};

use crate::harness::TestServer;

async fn connect(server: &TestServer, service: &str, config: Value) -> (StatusCode, Value) {
    server
        .call(
            Method::POST,
            "/v1/accounts",
            &server.key(),
            Some(json!({"service": service, "admin": true, "config": config})),
        )
        .await
}

#[tokio::test]
async fn test_connecting_checks_credentials_with_the_upstream() {
    let server = TestServer::start().await;
    let jive = JiveSimulator::start().await.expect("jive");
    let onna = OnnaSimulator::start().await.expect("onna");
    let good_jive = json!({"base_url": jive.base_url(), "credentials": {"username": "admin", "password": "password"}});
    let (status, body) = connect(&server, "jive", good_jive).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(body["config"].get("credentials").is_none(), "write-only");
    let good_onna = json!({"base_url": onna.base_url(), "credentials": {"token": "sim-token"}});
    let (status, body) = connect(&server, "onna", good_onna).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    for (service, config, says) in [
        (
            "jive",
            json!({"base_url": jive.base_url(), "credentials": {"username": "admin", "password": "nope"}}),
            "credentials",
        ),
        (
            "onna",
            json!({"base_url": onna.base_url(), "credentials": {"token": "wrong"}}),
            "credentials",
        ),
        ("jive", json!({"credentials": {"token": "t"}}), "base_url"),
        ("onna", json!({"base_url": onna.base_url()}), "credentials"),
        (
            "jive",
            json!({"base_url": jive.base_url(), "credentials": {"token": "t"}, "page_size": 1000}),
            "page_size",
        ),
        (
            "onna",
            json!({"base_url": "http://127.0.0.1:9/closed", "credentials": {"token": "t"}}),
            "onna",
        ),
    ] {
        let (status, body) = connect(&server, service, config.clone()).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{service} {config}: {body}"
        );
        assert_eq!(body["error_code"], "invalid_parameters");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{service} {config}: {message}");
    }
}

#[tokio::test]
async fn test_fixing_rejected_credentials_by_patch_re_enables_the_subscription() {
    let server = TestServer::start().await;
    let jive = JiveSimulator::start().await.expect("jive");
    let config = json!({"base_url": jive.base_url(), "credentials": {"username": "admin", "password": "password"}});
    let (status, account) = connect(&server, "jive", config).await;
    assert_eq!(status, StatusCode::CREATED, "{account}");
    let id = account["id"].as_i64().expect("id");
    let (status, subscription) = server
        .call(
            Method::POST,
            &format!("/v2/accounts/{id}/subscriptions"),
            &server.key(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{subscription}");
    let subscription_id = subscription["id"].as_i64().expect("id");

    // The upstream rotates the password; the engine disables the subscription (proven in the
    // engine's tests) with this reason.
    jive.set_basic("admin", "rotated");
    server
        .store
        .set_subscription_active(subscription_id, false, "invalid_credentials")
        .await
        .expect("disable");
    let path = format!("/v1/accounts/{id}");
    let subscription_path = format!("/v2/accounts/{id}/subscriptions/{subscription_id}");

    // A PATCH that keeps the old credentials is checked with the upstream and refused.
    let (status, body) = server
        .call(
            Method::PATCH,
            &path,
            &server.key(),
            Some(json!({"config": {"base_url": jive.base_url(), "poll_interval_seconds": 60}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, still) = server.get(&subscription_path, &server.key()).await;
    assert_eq!(still["active"], false);
    assert_eq!(still["disable_reason"], "invalid_credentials");

    // The new password: accepted, and the subscription runs again.
    let fixed = json!({"config": {"base_url": jive.base_url(), "credentials": {"username": "admin", "password": "rotated"}}});
    let (status, body) = server
        .call(Method::PATCH, &path, &server.key(), Some(fixed))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["config"].get("credentials").is_none(), "write-only");
    let (_, running) = server.get(&subscription_path, &server.key()).await;
    assert_eq!(running["active"], true, "{running}");
    assert_eq!(running["disable_reason"], "");

    // Credentials omitted from a later PATCH are kept, not dropped.
    let (status, body) = server
        .call(
            Method::PATCH,
            &path,
            &server.key(),
            Some(json!({"config": {"base_url": jive.base_url(), "page_size": 50}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let stored = server.store.get_account(id).await.expect("account");
    assert_eq!(stored.config["credentials"]["password"], "rotated");
    assert_eq!(stored.config["page_size"], 50);

    // A subscription the user deactivated stays deactivated.
    let (status, _) = server
        .call(
            Method::PATCH,
            &subscription_path,
            &server.key(),
            Some(json!({"active": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let again = json!({"config": {"base_url": jive.base_url()}});
    let (status, _) = server
        .call(Method::PATCH, &path, &server.key(), Some(again))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, deactivated) = server.get(&subscription_path, &server.key()).await;
    assert_eq!(deactivated["active"], false);
    assert_eq!(deactivated["disable_reason"], "deactivated_by_user");
}

#[tokio::test]
async fn test_backfill_jobs_are_created_read_and_refused_where_unsupported() {
    let server = TestServer::start().await;
    let jive = JiveSimulator::start().await.expect("jive");
    let config = json!({"base_url": jive.base_url(), "credentials": {"token": "sim-token"}});
    let (_, account) = connect(&server, "jive", config).await;
    let id = account["id"].as_i64().expect("id");
    let (status, _) = server
        .call(
            Method::POST,
            &format!("/v2/accounts/{id}/subscriptions"),
            &server.key(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let path = format!("/v2/accounts/{id}/subscriptions/default/backfill");
    let body = json!({"from": "2026-11-01T00:00:00Z", "until": "2026-11-02T00:00:00+01:00"});
    let (status, job) = server
        .call(Method::POST, &path, &server.key(), Some(body))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(job["type"], "backfill");
    assert_eq!(job["state"], "pending");
    assert_eq!(job["until"], "2026-11-01T23:00:00.000000Z");
    let job_id = job["id"].as_i64().expect("job id");
    let (status, read) = server.get(&format!("{path}/{job_id}"), &server.key()).await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["id"], job_id);
    assert_eq!(read["fetched"], 0);
    let (status, _) = server
        .get(
            &format!("/v1/accounts/{id}/subscriptions/default/backfill/{job_id}/"),
            &server.key(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "v1 prefix, trailing slash");

    for (bad, says) in [
        (
            json!({"from": "2026-11-02T00:00:00Z", "until": "2026-11-01T00:00:00Z"}),
            "before",
        ),
        (
            json!({"from": "2026-11-01T00:00:00Z", "until": "2026-11-01T00:00:00Z"}),
            "before",
        ),
        (
            json!({"from": "yesterday", "until": "2026-11-01T00:00:00Z"}),
            "ISO 8601",
        ),
        (json!({"from": "2026-11-01T00:00:00Z"}), "until"),
        (
            json!({"from": "2026-11-01T00:00:00Z", "until": "2026-11-02T00:00:00Z", "speed": 1}),
            "speed",
        ),
    ] {
        let (status, body) = server
            .call(Method::POST, &path, &server.key(), Some(bad.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(
            body["message"].as_str().unwrap_or_default().contains(says),
            "{bad}: {body}"
        );
    }
    for missing in ["999999", "abc"] {
        let (status, body) = server
            .get(&format!("{path}/{missing}"), &server.key())
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    }
    // Another tenant sees neither the route's subscription nor the job.
    let (_, other) = server.new_tenant("other").await;
    let (status, _) = server.get(&format!("{path}/{job_id}"), &other).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let body = json!({"from": "2026-11-01T00:00:00Z", "until": "2026-11-02T00:00:00Z"});
    let (status, _) = server
        .call(Method::POST, &path, &other, Some(body.clone()))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A `local` account cannot fetch history by time range.
    let (local, subscription) = server.account_with_subscription(&server.key()).await;
    let (status, refused) = server
        .call(
            Method::POST,
            &format!(
                "/v2/accounts/{}/subscriptions/{subscription}/backfill",
                local.id
            ),
            &server.key(),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error_code"], "not_supported");
}

//! `/v1/application`, `/v1/keys`, `/healthz`.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Auth, TestServer};

#[tokio::test]
async fn test_application_settings_read_and_change() {
    let server = TestServer::start().await;
    let (status, app) = server.get("/v1/application", &server.key()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(app["id"], server.application_id);
    assert_eq!(
        (
            app["track_activity"].as_bool(),
            app["max_subscriptions_per_account"].as_u64()
        ),
        (Some(false), Some(1))
    );
    assert!(app["retention_days"].is_null());
    let (status, changed) = server
        .call(
            Method::PATCH,
            "/v1/application",
            &server.key(),
            Some(json!({"retention_days": 30, "name": "renamed"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        (changed["retention_days"].as_u64(), changed["name"].as_str()),
        (Some(30), Some("renamed"))
    );
    let (_, cleared) = server
        .call(
            Method::PATCH,
            "/v1/application",
            &server.key(),
            Some(json!({"retention_days": null})),
        )
        .await;
    assert!(
        cleared["retention_days"].is_null(),
        "null keeps activity forever"
    );
}

#[tokio::test]
async fn test_keys_are_shown_once_and_work_until_deleted() {
    let server = TestServer::start().await;
    let (status, created) = server
        .call(Method::POST, "/v1/keys", &server.key(), None)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["key"].as_str().expect("key shown once").to_owned();
    let new_key = Auth::ApiKey(secret.clone());
    let (status, listed) = server.get("/v1/keys", &new_key).await;
    assert_eq!(status, StatusCode::OK, "the new key works");
    assert_eq!(listed["total"], 2);
    assert!(listed["objects"]
        .as_array()
        .expect("list")
        .iter()
        .all(|k| k.get("key").is_none()));
    let id = created["id"].as_i64().expect("id");
    let (status, _) = server
        .call(
            Method::DELETE,
            &format!("/v1/keys/{id}"),
            &server.key(),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.get("/v1/keys", &new_key).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a deleted key no longer works"
    );
    let (_, listed) = server.get("/v1/keys", &server.key()).await;
    let last = listed["objects"][0]["id"].as_i64().expect("id");
    let (status, error) = server
        .call(
            Method::DELETE,
            &format!("/v1/keys/{last}"),
            &server.key(),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "the last key cannot be deleted: {error}"
    );
}

#[tokio::test]
async fn test_health_needs_no_credentials() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/healthz", &Auth::None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ok");
}

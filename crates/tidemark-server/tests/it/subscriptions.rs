//! `/accounts/{account}/subscriptions`: create, list, read, change, delete, `default`.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Auth, TestServer};

#[tokio::test]
async fn test_empty_body_creates_an_active_default_changes_subscription() {
    let server = TestServer::start().await;
    let account = server.connect_local(&server.key()).await;
    let path = format!("/v2/accounts/{}/subscriptions", account.id);
    let response = server
        .request(Method::POST, &path, &server.key())
        .send()
        .await
        .expect("sent");
    let (status, created) = crate::harness::read(response).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    for (field, value) in [
        ("type", json!("subscription")),
        ("api", json!("activity")),
        ("active", json!(true)),
        ("disable_reason", json!("")),
        ("subscription_type", json!("changes")),
        ("default", json!(true)),
        ("monitored_resources", json!([])),
        ("monitored_resource_api", json!("storage")),
        ("monitored_resource_object_type", json!("folder")),
        ("account", json!(account.id)),
    ] {
        assert_eq!(created[field], value, "{field} in {created}");
    }
    for field in [
        "expiry",
        "created",
        "modified",
        "last_cursor",
        "last_cursor_updated_at",
    ] {
        assert!(created.get(field).is_some(), "missing {field}");
    }
    let (status, by_alias) = server
        .get(
            &format!("{path}/default"),
            &Auth::Bearer(account.token.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(by_alias["id"], created["id"]);
    let (status, listed) = server
        .get(
            "/v1/accounts/me/subscriptions/",
            &Auth::Bearer(account.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["type"], "object_list");
    assert_eq!(listed["total"], 1);
    assert!(
        listed["objects"][0].get("last_cursor").is_none(),
        "left out of lists (seed 003)"
    );
}

#[tokio::test]
async fn test_one_subscription_per_account_unless_the_application_raises_it() {
    let server = TestServer::start().await;
    let (account, first) = server.account_with_subscription(&server.key()).await;
    let path = format!("/v2/accounts/{}/subscriptions", account.id);
    let (status, error) = server
        .call(Method::POST, &path, &server.key(), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{error}");
    let (status, _) = server
        .call(
            Method::PATCH,
            "/v1/application",
            &server.key(),
            Some(json!({"max_subscriptions_per_account": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, second) = server
        .call(
            Method::POST,
            &path,
            &server.key(),
            Some(json!({"default": true})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_eq!(second["default"], true);
    let (_, old) = server.get(&format!("{path}/{first}"), &server.key()).await;
    assert_eq!(old["default"], false, "one default per account");
}

#[tokio::test]
async fn test_deactivation_sets_the_reason_and_monitored_resources_are_immutable() {
    let server = TestServer::start().await;
    let (account, id) = server.account_with_subscription(&server.key()).await;
    let path = format!("/v2/accounts/{}/subscriptions/{id}", account.id);
    let (status, patched) = server
        .call(
            Method::PATCH,
            &path,
            &server.key(),
            Some(json!({"active": false})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        (
            patched["active"].as_bool(),
            patched["disable_reason"].as_str()
        ),
        (Some(false), Some("deactivated_by_user"))
    );
    let (_, reactivated) = server
        .call(
            Method::PATCH,
            &path,
            &server.key(),
            Some(json!({"active": true})),
        )
        .await;
    assert_eq!(
        (
            reactivated["active"].as_bool(),
            reactivated["disable_reason"].as_str()
        ),
        (Some(true), Some(""))
    );
    let (status, error) = server
        .call(
            Method::PATCH,
            &path,
            &server.key(),
            Some(json!({"monitored_resources": [{"resource": "root"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot be changed"),
        "{error}"
    );
}

#[tokio::test]
async fn test_deleting_a_subscription_removes_its_activity() {
    let server = TestServer::start().await;
    let (account, id) = server.account_with_subscription(&server.key()).await;
    server.append(id, account.id, &["a", "b"]).await;
    let path = format!("/v2/accounts/{}/subscriptions/{id}", account.id);
    let (status, _) = server
        .call(Method::DELETE, &path, &server.key(), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.get(&path, &server.key()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = server.get(&format!("{path}/activity"), &server.key()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        tidemark_store::Store::read_activity(&*server.store, id, 0, 10)
            .await
            .expect("read")
            .is_empty()
    );
}

#[tokio::test]
async fn test_track_activity_gives_new_accounts_a_default_subscription() {
    let server = TestServer::start().await;
    let (status, settings) = server
        .call(
            Method::PATCH,
            "/v1/application",
            &server.key(),
            Some(json!({"track_activity": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{settings}");
    let account = server.connect_local(&server.key()).await;
    let (status, default) = server
        .get(
            "/v2/accounts/me/subscriptions/default",
            &Auth::Bearer(account.token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{default}");
    assert_eq!(default["subscription_type"], "changes");
}

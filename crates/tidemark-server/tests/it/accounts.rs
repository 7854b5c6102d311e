//! `/accounts`: connect, list, read, change, disconnect; bearer tokens.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Auth, TestServer};

#[tokio::test]
async fn test_create_account_mints_a_token_shown_once_and_hides_credentials() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().expect("dir");
    let (status, created) = server
        .call(
            Method::POST,
            "/v1/accounts",
            &server.key(),
            Some(json!({"service": "local", "config": {"path": dir.path().to_string_lossy(), "credentials": {"token": "s3cret"}}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["type"], "account");
    assert_eq!(created["service"], "local");
    assert!(
        created["id"].is_i64(),
        "numeric ids keep Kloudless clients working"
    );
    assert!(
        created["config"].get("credentials").is_none(),
        "credentials are write-only"
    );
    let token = created["bearer_token"]["key"]
        .as_str()
        .expect("token")
        .to_owned();
    let id = created["id"].as_i64().expect("id");

    let (status, fetched) = server
        .get(&format!("/v1/accounts/{id}"), &server.key())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        fetched.get("bearer_token").is_none(),
        "the token is shown only once"
    );
    assert!(fetched["config"].get("credentials").is_none());

    let (status, me) = server
        .get("/v1/accounts/me", &Auth::Bearer(token.clone()))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["id"], id);
    let (status, same) = server
        .get(&format!("/v2/accounts/{id}/"), &Auth::Bearer(token))
        .await;
    assert_eq!(status, StatusCode::OK, "v2 prefix and trailing slash");
    assert_eq!(same["id"], id);
}

#[tokio::test]
async fn test_list_accounts_pages_and_ends() {
    let server = TestServer::start().await;
    for _ in 0..3 {
        server.connect_local(&server.key()).await;
    }
    let (status, page) = server.get("/v1/accounts?page_size=2", &server.key()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (
            page["type"].as_str(),
            page["count"].as_u64(),
            page["total"].as_u64()
        ),
        (Some("object_list"), Some(2), Some(3))
    );
    assert_eq!(page["next_page"], 2);
    let (_, last) = server
        .get("/v1/accounts?page_size=2&page=2", &server.key())
        .await;
    assert_eq!(last["count"], 1);
    assert!(last["next_page"].is_null());
}

#[tokio::test]
async fn test_patch_account_rechecks_config_and_delete_revokes_its_token() {
    let server = TestServer::start().await;
    let account = server.connect_local(&server.key()).await;
    let path = format!("/v1/accounts/{}", account.id);
    let (status, patched) = server
        .call(
            Method::PATCH,
            &path,
            &server.key(),
            Some(json!({"admin": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["admin"], true);
    let (status, error) = server
        .call(
            Method::PATCH,
            &path,
            &server.key(),
            Some(json!({"config": {"path": "/no/such/dir"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["message"]
            .as_str()
            .unwrap_or_default()
            .contains("/no/such/dir"),
        "{error}"
    );

    let (status, _) = server
        .call(Method::DELETE, &path, &server.key(), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.get(&path, &server.key()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, error) = server
        .get("/v1/accounts/me", &Auth::Bearer(account.token))
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "deleting an account revokes its token: {error}"
    );
}

#[tokio::test]
async fn test_bearer_token_reaches_only_its_own_account() {
    let server = TestServer::start().await;
    let mine = server.connect_local(&server.key()).await;
    let other = server.connect_local(&server.key()).await;
    let token = Auth::Bearer(mine.token.clone());
    let (status, _) = server
        .get(&format!("/v1/accounts/{}", other.id), &token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, list) = server.get("/v1/accounts", &token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["total"], 1);
    assert_eq!(list["objects"][0]["id"], mine.id);
    let (status, _) = server
        .call(
            Method::POST,
            "/v1/accounts",
            &token,
            Some(json!({"service": "local"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "connecting accounts needs the API key"
    );
}

#[tokio::test]
async fn test_oauth_token_describes_a_bearer_token() {
    let server = TestServer::start().await;
    let account = server.connect_local(&server.key()).await;
    let (status, info) = server
        .get("/v1/oauth/token", &Auth::Bearer(account.token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(info["client_id"], server.application_id.to_string());
    assert_eq!(info["account_id"], account.id);
    assert_eq!(info["token_type"], "Bearer");
    let (status, _) = server.get("/v1/oauth/token", &server.key()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

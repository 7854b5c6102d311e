//! Tenant isolation: another application's key, or another account's token, reaches nothing
//! (404 on every route, never 200, never 403), and changes nothing.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tidemark_store::NewWebhookEndpoint;

use crate::harness::{Auth, TestServer};

#[tokio::test]
async fn test_every_route_answers_404_to_other_tenants() {
    let server = TestServer::start().await;
    let (victim, subscription) = server.account_with_subscription(&server.key()).await;
    server
        .append(subscription, victim.id, &["secret-1", "secret-2"])
        .await;
    let (_, victim_keys) = server.get("/v1/keys", &server.key()).await;
    let victim_key_id = victim_keys["objects"][0]["id"].as_i64().expect("key id");

    let (_, intruder_key) = server.new_tenant("intruder").await;
    let (intruder_account, _) = server.account_with_subscription(&intruder_key).await;
    let intruder_token = Auth::Bearer(intruder_account.token.clone());
    // A sibling account of the same application: its token must not reach the victim either.
    let sibling = server.connect_local(&server.key()).await;
    let sibling_token = Auth::Bearer(sibling.token.clone());

    let a = victim.id;
    let s = subscription;
    let account_routes: Vec<(Method, String, Option<Value>)> = ["/v1", "/v2"]
        .into_iter()
        .flat_map(|v| {
            vec![
                (Method::GET, format!("{v}/accounts/{a}"), None),
                (
                    Method::PATCH,
                    format!("{v}/accounts/{a}"),
                    Some(json!({"admin": true})),
                ),
                (Method::GET, format!("{v}/accounts/{a}/subscriptions"), None),
                (
                    Method::POST,
                    format!("{v}/accounts/{a}/subscriptions"),
                    Some(json!({})),
                ),
                (
                    Method::GET,
                    format!("{v}/accounts/{a}/subscriptions/{s}"),
                    None,
                ),
                (
                    Method::GET,
                    format!("{v}/accounts/{a}/subscriptions/default"),
                    None,
                ),
                (
                    Method::PATCH,
                    format!("{v}/accounts/{a}/subscriptions/{s}"),
                    Some(json!({"active": false})),
                ),
                (
                    Method::GET,
                    format!("{v}/accounts/{a}/subscriptions/{s}/activity"),
                    None,
                ),
                (
                    Method::GET,
                    format!("{v}/accounts/{a}/subscriptions/default/activity"),
                    None,
                ),
                (
                    Method::GET,
                    format!(
                        "{v}/accounts/{a}/subscriptions/{s}/activity?from=2000-01-01T00:00:00Z"
                    ),
                    None,
                ),
                (
                    Method::POST,
                    format!("{v}/accounts/{a}/subscriptions/{s}/backfill"),
                    Some(json!({"from": "2026-01-01T00:00:00Z", "until": "2026-01-02T00:00:00Z"})),
                ),
                (
                    Method::GET,
                    format!("{v}/accounts/{a}/subscriptions/{s}/backfill/1"),
                    None,
                ),
                (
                    Method::GET,
                    format!("{v}/accounts/me/subscriptions/{s}"),
                    None,
                ),
                (
                    Method::GET,
                    format!("{v}/accounts/me/subscriptions/{s}/activity"),
                    None,
                ),
                (
                    Method::PATCH,
                    format!("{v}/accounts/me/subscriptions/{s}"),
                    Some(json!({"active": false})),
                ),
                (
                    Method::DELETE,
                    format!("{v}/accounts/me/subscriptions/{s}"),
                    None,
                ),
                (
                    Method::DELETE,
                    format!("{v}/accounts/{a}/subscriptions/{s}"),
                    None,
                ),
                (Method::DELETE, format!("{v}/accounts/{a}"), None),
            ]
        })
        .chain([
            (Method::GET, format!("/v1/accounts/{a}/events"), None),
            (Method::GET, format!("/v1/accounts/{a}/events/latest"), None),
        ])
        .collect();

    for auth in [&intruder_key, &intruder_token, &sibling_token] {
        for (method, path, body) in &account_routes {
            if auth == &intruder_key && path.contains("/me/") {
                continue; // `me` with an API key is a 400 (which account?), tested elsewhere
            }
            let (status, response) = server.call(method.clone(), path, auth, body.clone()).await;
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{method} {path} as {auth:?}: {response}"
            );
        }
    }
    let (status, _) = server
        .call(
            Method::DELETE,
            &format!("/v1/keys/{victim_key_id}"),
            &intruder_key,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another application's key");

    // Nothing changed.
    let (status, account) = server
        .get(&format!("/v1/accounts/{a}"), &server.key())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(account["admin"], false);
    let still = server
        .store
        .get_subscription(s)
        .await
        .expect("subscription survives");
    assert!(still.active);
    assert_eq!(server.store.latest_sequence(s).await.expect("seq"), 2);
    let (_, keys) = server.get("/v1/keys", &server.key()).await;
    assert_eq!(keys["total"], 1);
    // The intruder's own listing shows only its own account.
    let (_, listed) = server.get("/v1/accounts", &intruder_key).await;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["objects"][0]["id"], intruder_account.id);
}

/// A webhook endpoint of the first application, made in the store (no receiver needed).
async fn victim_webhook(server: &TestServer) -> i64 {
    server
        .store
        .create_webhook(NewWebhookEndpoint {
            application_id: server.application_id,
            url: "http://127.0.0.1:9/hook".into(),
            filter: None,
            secret: "whsec_dGVuYW5jeS10ZXN0LXNlY3JldC0wMTIzNDU2Nzg5".into(),
        })
        .await
        .expect("webhook")
        .id
}

/// Every route under `/v1/webhooks/{id}`, with a valid body where it takes one.
fn webhook_routes(webhook: i64) -> Vec<(Method, String, Option<Value>)> {
    let one = format!("/v1/webhooks/{webhook}");
    vec![
        (Method::GET, one.clone(), None),
        (
            Method::PATCH,
            one.clone(),
            Some(json!({"enabled": false, "filter": null})),
        ),
        (Method::GET, format!("{one}/attempts"), None),
        (
            Method::POST,
            format!("{one}/recover"),
            Some(json!({"since": "2026-01-01T00:00:00Z"})),
        ),
        (Method::DELETE, one, None),
    ]
}

#[tokio::test]
async fn test_webhook_routes_answer_404_to_other_tenants() {
    let server = TestServer::start().await;
    let webhook = victim_webhook(&server).await;
    let (_, intruder_key) = server.new_tenant("intruder").await;

    for (method, path, body) in webhook_routes(webhook) {
        let (status, response) = server
            .call(method.clone(), &path, &intruder_key, body)
            .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "{method} {path} with another application's key: {response}"
        );
        assert_eq!(response["error_code"], "not_found", "{response}");
        assert_eq!(response["message"], "webhook not found", "{response}");
    }
    // An id that exists nowhere gets the same answer: no existence oracle.
    let (status, missing) = server
        .get(&format!("/v1/webhooks/{}", webhook + 1000), &intruder_key)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(missing["message"], "webhook not found");

    // Nothing changed, and the intruder's listing is empty.
    let (status, kept) = server
        .get(&format!("/v1/webhooks/{webhook}"), &server.key())
        .await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    assert_eq!(kept["enabled"], true);
    let (_, listed) = server.get("/v1/webhooks", &intruder_key).await;
    assert_eq!(listed["total"], 0, "{listed}");
}

#[tokio::test]
async fn test_account_tokens_are_refused_on_application_routes() {
    let server = TestServer::start().await;
    let webhook = victim_webhook(&server).await;
    let (_, keys) = server.get("/v1/keys", &server.key()).await;
    let key_id = keys["objects"][0]["id"].as_i64().expect("key id");
    // A token of the application's own account, and one of another application's account.
    let own = server.connect_local(&server.key()).await;
    let (_, intruder_key) = server.new_tenant("intruder").await;
    let foreign = server.connect_local(&intruder_key).await;

    let routes: Vec<(Method, String, Option<Value>)> = [
        (Method::GET, "/v1/application".to_owned(), None),
        (
            Method::PATCH,
            "/v1/application".to_owned(),
            Some(json!({"track_activity": true})),
        ),
        (Method::GET, "/v1/keys".to_owned(), None),
        (Method::POST, "/v1/keys".to_owned(), None),
        (Method::DELETE, format!("/v1/keys/{key_id}"), None),
        (Method::GET, "/v1/webhooks".to_owned(), None),
        (
            Method::POST,
            "/v1/webhooks".to_owned(),
            Some(json!({"url": "http://127.0.0.1:9/hook"})),
        ),
    ]
    .into_iter()
    .chain(webhook_routes(webhook))
    .collect();
    for token in [&own.token, &foreign.token] {
        let auth = Auth::Bearer(token.clone());
        for (method, path, body) in &routes {
            let (status, response) = server.call(method.clone(), path, &auth, body.clone()).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with a bearer token: {response}"
            );
            assert_eq!(response["error_code"], "unauthorized", "{response}");
            assert_eq!(
                response["message"],
                "this route needs an application API key (`Authorization: APIKey <key>`), not a bearer token",
                "{response}"
            );
        }
    }

    // Nothing changed.
    let (_, application) = server.get("/v1/application", &server.key()).await;
    assert_eq!(application["track_activity"], false, "{application}");
    let (_, keys) = server.get("/v1/keys", &server.key()).await;
    assert_eq!(keys["total"], 1, "{keys}");
    let (_, webhooks) = server.get("/v1/webhooks", &server.key()).await;
    assert_eq!(webhooks["total"], 1, "{webhooks}");
    assert_eq!(webhooks["objects"][0]["enabled"], true, "{webhooks}");
}

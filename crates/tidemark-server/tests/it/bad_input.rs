//! Bad input gets a precise 4xx in the one error shape, never a 500 or a panic (DESIGN 2.7).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use tidemark_store::NewWebhookEndpoint;

use crate::harness::{read, Auth, TestServer};

enum Body {
    None,
    Json(Value),
    Raw(&'static str, Vec<u8>),
}

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    auth: Auth,
    body: Body,
    status: StatusCode,
    message: &'static str,
}

#[tokio::test]
async fn test_bad_input_table() {
    let server = TestServer::start().await;
    let (account, subscription) = server.account_with_subscription(&server.key()).await;
    let (other, other_subscription) = server.account_with_subscription(&server.key()).await;
    let (_, other_page) = server
        .get(
            &format!(
                "/v2/accounts/{}/subscriptions/{other_subscription}/activity",
                other.id
            ),
            &server.key(),
        )
        .await;
    let foreign_cursor = other_page["cursor"].as_str().expect("cursor").to_owned();
    let key = server.key();
    let activity = format!(
        "/v2/accounts/{}/subscriptions/{subscription}/activity",
        account.id
    );
    let subscriptions = format!("/v2/accounts/{}/subscriptions", account.id);
    let one_subscription = format!("{subscriptions}/{subscription}");
    let webhook = server
        .store
        .create_webhook(NewWebhookEndpoint {
            application_id: server.application_id,
            url: "http://127.0.0.1:9/hook".into(),
            filter: None,
            secret: "whsec_YmFkLWlucHV0LXRlc3Qtc2VjcmV0LTAxMjM0NTY3".into(),
        })
        .await
        .expect("webhook")
        .id;
    let one_webhook = format!("/v1/webhooks/{webhook}");
    let long_url = format!("http://example.com/{}", "a".repeat(3000));
    let long_cursor = "A".repeat(200);
    let events = format!("/v1/accounts/{}/events", account.id);
    let case = |name, method, path: &str, body, status, message| Case {
        name,
        method,
        path: path.to_owned(),
        auth: key.clone(),
        body,
        status,
        message,
    };
    let get = |name, path: &str, status, message| {
        case(name, Method::GET, path, Body::None, status, message)
    };
    let post_account = |name, body: Value, message| {
        case(
            name,
            Method::POST,
            "/v1/accounts",
            Body::Json(body),
            StatusCode::BAD_REQUEST,
            message,
        )
    };
    let bad = StatusCode::BAD_REQUEST;
    let cases = vec![
        // Bodies.
        case(
            "malformed JSON",
            Method::POST,
            "/v1/accounts",
            Body::Raw("application/json", b"{\"service\": ".to_vec()),
            bad,
            "malformed JSON",
        ),
        case(
            "not JSON at all",
            Method::POST,
            "/v1/accounts",
            Body::Raw("application/json", b"service=local".to_vec()),
            bad,
            "malformed JSON",
        ),
        case(
            "form body",
            Method::POST,
            "/v1/accounts",
            Body::Raw(
                "application/x-www-form-urlencoded",
                b"service=local".to_vec(),
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "must be JSON",
        ),
        post_account("wrong type", json!({"service": 5}), "invalid type"),
        post_account(
            "unknown field",
            json!({"service": "local", "colour": "blue"}),
            "unknown field `colour`",
        ),
        post_account(
            "missing field",
            json!({"config": {}}),
            "missing field `service`",
        ),
        post_account(
            "unknown service",
            json!({"service": "gopher"}),
            "unknown service `gopher`",
        ),
        post_account(
            "over-long service",
            json!({"service": "x".repeat(100)}),
            "1 to 64 characters",
        ),
        post_account(
            "config not an object",
            json!({"service": "local", "config": [1]}),
            "must be a JSON object",
        ),
        post_account(
            "over-long config string",
            json!({"service": "local", "config": {"path": "/".repeat(5000)}}),
            "longer than 4096 bytes",
        ),
        post_account(
            "missing local path",
            json!({"service": "local", "config": {}}),
            "path",
        ),
        post_account(
            "relative local path",
            json!({"service": "local", "config": {"path": "relative/dir"}}),
            "absolute",
        ),
        post_account(
            "nonexistent local path",
            json!({"service": "local", "config": {"path": "/no/such/dir"}}),
            "/no/such/dir",
        ),
        post_account(
            "bad poll interval",
            json!({"service": "local", "config": {"path": "/tmp", "poll_interval_seconds": 0}}),
            "poll_interval_seconds",
        ),
        case(
            "body over the size limit",
            Method::POST,
            "/v1/accounts",
            Body::Raw("application/json", vec![b' '; 300 * 1024]),
            StatusCode::PAYLOAD_TOO_LARGE,
            "larger than",
        ),
        case(
            "unknown subscription type",
            Method::POST,
            &subscriptions,
            Body::Json(json!({"subscription_type": "sync"})),
            bad,
            "unknown subscription_type `sync`",
        ),
        case(
            "monitored_resources not a list",
            Method::POST,
            &subscriptions,
            Body::Json(json!({"monitored_resources": "root"})),
            bad,
            "malformed monitored_resources",
        ),
        case(
            "subscription wrong type",
            Method::POST,
            &subscriptions,
            Body::Json(json!({"active": "yes"})),
            bad,
            "invalid type",
        ),
        case(
            "internal_state import",
            Method::POST,
            &subscriptions,
            Body::Json(json!({"internal_state": {"x": 1}})),
            StatusCode::NOT_IMPLEMENTED,
            "internal_state",
        ),
        case(
            "unknown field on subscription create",
            Method::POST,
            &subscriptions,
            Body::Json(json!({"subscription_type": "changes", "colour": "blue"})),
            bad,
            "invalid request body: unknown field `colour`, expected one of `active`, `subscription_type`",
        ),
        case(
            "unknown field on subscription update",
            Method::PATCH,
            &one_subscription,
            Body::Json(json!({"active": true, "colour": "blue"})),
            bad,
            "invalid request body: unknown field `colour`, expected one of `active`, `default`",
        ),
        case(
            "unknown field on account update",
            Method::PATCH,
            &format!("/v1/accounts/{}", account.id),
            Body::Json(json!({"colour": "blue"})),
            bad,
            "invalid request body: unknown field `colour`, expected",
        ),
        case(
            "unknown field on application update",
            Method::PATCH,
            "/v1/application",
            Body::Json(json!({"track_activity": true, "colour": "blue"})),
            bad,
            "invalid request body: unknown field `colour`, expected one of `name`, `track_activity`",
        ),
        case(
            "unknown field on webhook create",
            Method::POST,
            "/v1/webhooks",
            Body::Json(json!({"url": "http://127.0.0.1:9/hook", "colour": "blue"})),
            bad,
            "invalid request body: unknown field `colour`, expected `url` or `filter`",
        ),
        case(
            "unknown field on webhook update",
            Method::PATCH,
            &one_webhook,
            Body::Json(json!({"enabled": false, "colour": "blue"})),
            bad,
            "invalid request body: unknown field `colour`, expected one of `url`, `filter`, `enabled`",
        ),
        case(
            "unknown field on webhook recovery",
            Method::POST,
            &format!("{one_webhook}/recover"),
            Body::Json(json!({"since": "2026-01-01T00:00:00Z", "colour": "blue"})),
            bad,
            "invalid request body: unknown field `colour`, expected `since`",
        ),
        case(
            "over-long webhook url on create",
            Method::POST,
            "/v1/webhooks",
            Body::Json(json!({"url": long_url})),
            bad,
            "`url` is longer than 2048 characters",
        ),
        case(
            "over-long webhook url on update",
            Method::PATCH,
            &one_webhook,
            Body::Json(json!({"url": long_url})),
            bad,
            "`url` is longer than 2048 characters",
        ),
        case(
            "retention out of range",
            Method::PATCH,
            "/v1/application",
            Body::Json(json!({"retention_days": 0})),
            bad,
            "retention_days",
        ),
        case(
            "subscription limit out of range",
            Method::PATCH,
            "/v1/application",
            Body::Json(json!({"max_subscriptions_per_account": 0})),
            bad,
            "max_subscriptions_per_account",
        ),
        case(
            "over-long application name",
            Method::PATCH,
            "/v1/application",
            Body::Json(json!({"name": "n".repeat(300)})),
            bad,
            "1 to 200 characters",
        ),
        // Query parameters.
        get(
            "page_size zero",
            &format!("{activity}?page_size=0"),
            bad,
            "`page_size` must be a whole number from 1 to 1000",
        ),
        get(
            "page_size too large",
            &format!("{activity}?page_size=1001"),
            bad,
            "from 1 to 1000",
        ),
        get(
            "page_size not a number",
            &format!("{activity}?page_size=ten"),
            bad,
            "got `ten`",
        ),
        get(
            "page_size negative",
            &format!("{activity}?page_size=-1"),
            bad,
            "from 1 to 1000",
        ),
        get(
            "page_size fractional",
            &format!("{activity}?page_size=1.5"),
            bad,
            "from 1 to 1000",
        ),
        get(
            "garbage cursor",
            &format!("{activity}?cursor=garbage"),
            bad,
            "malformed cursor",
        ),
        get(
            "over-long cursor",
            &format!("{activity}?cursor={long_cursor}"),
            bad,
            "cursor is longer than 128 bytes, so not one this server issued",
        ),
        get(
            "over-long v1 events cursor",
            &format!("{events}?cursor={long_cursor}"),
            bad,
            "cursor is longer than 128 bytes, so not one this server issued",
        ),
        get(
            "cursor of another subscription",
            &format!("{activity}?cursor={foreign_cursor}"),
            bad,
            "another subscription",
        ),
        get(
            "from after until",
            &format!("{activity}?from=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z"),
            bad,
            "`from` must not be after `until`",
        ),
        get(
            "until without from",
            &format!("{activity}?until=2026-01-01T00:00:00Z"),
            bad,
            "`until` must be used together with `from`",
        ),
        get(
            "cursor with from",
            &format!("{activity}?from=2026-01-01T00:00:00Z&cursor=after-auth"),
            bad,
            "cannot be combined",
        ),
        get(
            "non-ISO from",
            &format!("{activity}?from=yesterday"),
            bad,
            "ISO 8601",
        ),
        get(
            "date without time",
            &format!("{activity}?from=2026-01-01"),
            bad,
            "ISO 8601",
        ),
        get("accounts page zero", "/v1/accounts?page=0", bad, "`page`"),
        get(
            "events page_size",
            "/v1/accounts/me/events?page_size=5000",
            bad,
            "from 1 to 1000",
        ),
        // Paths, routes and methods.
        get(
            "`me` with an API key",
            "/v1/accounts/me",
            bad,
            "bearer token",
        ),
        get(
            "non-numeric account",
            "/v1/accounts/abc",
            StatusCode::NOT_FOUND,
            "account not found",
        ),
        get(
            "huge account id",
            "/v1/accounts/99999999999999999999999",
            StatusCode::NOT_FOUND,
            "account not found",
        ),
        get(
            "unknown subscription alias",
            &format!("{subscriptions}/latest"),
            StatusCode::NOT_FOUND,
            "subscription not found",
        ),
        get(
            "unknown route",
            "/v1/nothing-here",
            StatusCode::NOT_FOUND,
            "no such route",
        ),
        case(
            "wrong method",
            Method::PUT,
            "/v1/application",
            Body::None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed",
        ),
    ];
    let mut auth_cases = vec![
        Case {
            name: "no credentials",
            method: Method::GET,
            path: "/v1/accounts".into(),
            auth: Auth::None,
            body: Body::None,
            status: StatusCode::UNAUTHORIZED,
            message: "missing Authorization header",
        },
        Case {
            name: "unknown scheme",
            method: Method::GET,
            path: "/v1/accounts".into(),
            auth: Auth::Raw("Basic dXNlcjpwYXNz".into()),
            body: Body::None,
            status: StatusCode::UNAUTHORIZED,
            message: "unsupported Authorization scheme",
        },
        Case {
            name: "unknown key",
            method: Method::GET,
            path: "/v1/accounts".into(),
            auth: Auth::ApiKey("tmk_nope".into()),
            body: Body::None,
            status: StatusCode::UNAUTHORIZED,
            message: "invalid API key",
        },
        Case {
            name: "unknown token",
            method: Method::GET,
            path: "/v1/accounts/me".into(),
            auth: Auth::Bearer("tmb_nope".into()),
            body: Body::None,
            status: StatusCode::UNAUTHORIZED,
            message: "invalid bearer token",
        },
        Case {
            name: "empty key",
            method: Method::GET,
            path: "/v1/accounts".into(),
            auth: Auth::Raw("APIKey ".into()),
            body: Body::None,
            status: StatusCode::UNAUTHORIZED,
            message: "invalid credentials",
        },
        Case {
            name: "over-long key",
            method: Method::GET,
            path: "/v1/accounts".into(),
            auth: Auth::ApiKey("k".repeat(5000)),
            body: Body::None,
            status: StatusCode::UNAUTHORIZED,
            message: "invalid credentials",
        },
    ];
    let mut all = cases;
    all.append(&mut auth_cases);
    let mut failures = Vec::new();
    for case in all {
        let mut request = server.request(case.method.clone(), &case.path, &case.auth);
        request = match case.body {
            Body::None => request,
            Body::Json(value) => request.json(&value),
            Body::Raw(content_type, bytes) => {
                request.header("Content-Type", content_type).body(bytes)
            }
        };
        let (status, body) = read(request.send().await.expect("sent")).await;
        let message = body["message"].as_str().unwrap_or_default();
        if status != case.status || !message.contains(case.message) {
            failures.push(format!(
                "{}: {} {} -> {status} {message:?} (expected {} containing {:?})",
                case.name, case.method, case.path, case.status, case.message
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "bad input handled wrongly:\n{}",
        failures.join("\n")
    );
}

/// Random requests (paths, ids, query strings, bodies, headers) never get a 5xx, and every
/// error has the JSON shape (checked by `read`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_random_requests_never_cause_a_server_error() {
    use rand::prelude::*;
    let server = TestServer::start().await;
    let (account, subscription) = server.account_with_subscription(&server.key()).await;
    server.append(subscription, account.id, &["r1", "r2"]).await;
    let mut rng = StdRng::seed_from_u64(20261122);
    let segments = [
        "v1",
        "v2",
        "accounts",
        "me",
        "subscriptions",
        "default",
        "activity",
        "events",
        "latest",
        "application",
        "keys",
        "oauth",
        "token",
        "healthz",
        "openapi.json",
        "%00",
        "..",
        "%ff%fe",
        "-1",
        "0",
        "18446744073709551616",
        "9223372036854775807",
        "",
        "null",
    ];
    let ids = [account.id.to_string(), subscription.to_string()];
    let queries = [
        "",
        "cursor=",
        "cursor=%ff",
        "page_size=1e3",
        "page_size=%20%20",
        "from=2026-13-45T00:00:00Z",
        "from=2026-01-01T00:00:00Z&until=2026-01-01T00:00:00Z",
        "page=-5",
        "cursor=AAAA&cursor=BBBB",
        "&&&==",
        "page_size=18446744073709551616",
    ];
    let bodies: [&[u8]; 8] = [
        b"",
        b"null",
        b"[]",
        b"{\"service\": null}",
        b"{\"config\": {\"path\": 1}}",
        b"\xff\xfe",
        b"{\"active\": 1e400}",
        b"{\"monitored_resources\": [{\"resource\": \"\\u0000\"}]}",
    ];
    let auths = [
        server.key(),
        Auth::Bearer(account.token.clone()),
        Auth::None,
        Auth::Raw("APIKey \u{7f}".into()),
    ];
    for _ in 0..400 {
        let depth = rng.random_range(1..7);
        let mut path = String::new();
        for _ in 0..depth {
            path.push('/');
            if rng.random_bool(0.2) {
                path.push_str(ids.choose(&mut rng).expect("id"));
            } else {
                path.push_str(segments.choose(&mut rng).expect("segment"));
            }
        }
        let query = queries.choose(&mut rng).expect("query");
        if !query.is_empty() {
            path.push('?');
            path.push_str(query);
        }
        let method = [
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::PUT,
        ]
        .choose(&mut rng)
        .expect("method")
        .clone();
        let body = bodies.choose(&mut rng).expect("body");
        let auth = auths.choose(&mut rng).expect("auth");
        let request = server
            .request(method.clone(), &path, auth)
            .header("Content-Type", "application/json")
            .body(body.to_vec());
        let Ok(response) = request.send().await else {
            continue; // a URL the client itself refuses to send
        };
        let (status, body) = read(response).await;
        assert!(
            !status.is_server_error(),
            "{method} {path} -> {status} {body}"
        );
    }
}

//! `/openapi.json`: generated from the handlers, valid OpenAPI, listing every route; and the
//! hand-written List Activity body matches its documented schema.

use reqwest::StatusCode;
use serde_json::Value;

use crate::harness::{Auth, TestServer};

/// Every route the API serves, as `(method, path)`.
fn expected_routes() -> Vec<(&'static str, String)> {
    let mut routes = Vec::new();
    for version in ["/v1", "/v2"] {
        for (method, path) in [
            ("get", "/accounts"),
            ("post", "/accounts"),
            ("get", "/accounts/{account}"),
            ("patch", "/accounts/{account}"),
            ("delete", "/accounts/{account}"),
            ("get", "/accounts/{account}/subscriptions"),
            ("post", "/accounts/{account}/subscriptions"),
            ("get", "/accounts/{account}/subscriptions/{subscription}"),
            ("patch", "/accounts/{account}/subscriptions/{subscription}"),
            ("delete", "/accounts/{account}/subscriptions/{subscription}"),
            (
                "get",
                "/accounts/{account}/subscriptions/{subscription}/activity",
            ),
            (
                "post",
                "/accounts/{account}/subscriptions/{subscription}/backfill",
            ),
            (
                "get",
                "/accounts/{account}/subscriptions/{subscription}/backfill/{job}",
            ),
        ] {
            routes.push((method, format!("{version}{path}")));
        }
    }
    for (method, path) in [
        ("get", "/v1/accounts/{account}/events"),
        ("get", "/v1/accounts/{account}/events/latest"),
        ("get", "/v1/oauth/token"),
        ("get", "/v1/application"),
        ("patch", "/v1/application"),
        ("get", "/v1/keys"),
        ("post", "/v1/keys"),
        ("delete", "/v1/keys/{key}"),
        ("get", "/v1/webhooks"),
        ("post", "/v1/webhooks"),
        ("get", "/v1/webhooks/{webhook}"),
        ("patch", "/v1/webhooks/{webhook}"),
        ("delete", "/v1/webhooks/{webhook}"),
        ("get", "/v1/webhooks/{webhook}/attempts"),
        ("post", "/v1/webhooks/{webhook}/recover"),
        ("get", "/v1/destinations"),
        ("post", "/v1/destinations"),
        ("get", "/v1/destinations/{destination}"),
        ("patch", "/v1/destinations/{destination}"),
        ("delete", "/v1/destinations/{destination}"),
        ("get", "/v1/destinations/{destination}/attempts"),
        ("get", "/healthz"),
        ("get", "/metrics"),
        ("get", "/openapi.json"),
    ] {
        routes.push((method, path.to_owned()));
    }
    routes
}

async fn document(server: &TestServer) -> Value {
    let (status, document) = server.get("/openapi.json", &Auth::None).await;
    assert_eq!(status, StatusCode::OK);
    document
}

#[tokio::test]
async fn test_openapi_lists_every_route_with_its_errors() {
    let server = TestServer::start().await;
    let document = document(&server).await;
    assert!(
        document["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3."),
        "{}",
        document["openapi"]
    );
    let paths = document["paths"].as_object().expect("paths");
    let expected = expected_routes();
    for (method, path) in &expected {
        let operation = &paths
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not documented"))[*method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        let responses = operation["responses"].as_object().expect("responses");
        if !["/healthz", "/metrics", "/openapi.json"].contains(&path.as_str()) {
            assert!(
                responses.contains_key("400") && responses.contains_key("401"),
                "{method} {path}: errors not documented"
            );
        }
    }
    let documented: usize = paths
        .values()
        .map(|item| {
            item.as_object().map_or(0, |o| {
                o.keys()
                    .filter(|k| ["get", "post", "patch", "delete", "put"].contains(&k.as_str()))
                    .count()
            })
        })
        .sum();
    assert_eq!(
        documented,
        expected.len(),
        "documented operations beyond the known routes"
    );
    for schema in [
        "Activity",
        "Subscription",
        "V1Event",
        "ErrorBody",
        "Account",
        "ActivityList",
        "EventList",
    ] {
        assert!(
            document["components"]["schemas"].get(schema).is_some(),
            "schema {schema} missing"
        );
    }
}

#[tokio::test]
async fn test_list_activity_body_has_exactly_the_documented_fields() {
    let server = TestServer::start().await;
    let (account, subscription) = server.account_with_subscription(&server.key()).await;
    server.append(subscription, account.id, &["a"]).await;
    let document = document(&server).await;
    let mut documented: Vec<String> = document["components"]["schemas"]["ActivityList"]
        ["properties"]
        .as_object()
        .expect("ActivityList properties")
        .keys()
        .cloned()
        .collect();
    let (_, page) = server
        .get(
            &format!(
                "/v2/accounts/{}/subscriptions/{subscription}/activity",
                account.id
            ),
            &server.key(),
        )
        .await;
    let mut served: Vec<String> = page.as_object().expect("object").keys().cloned().collect();
    // `watermark` is in answers to time ranges only.
    served.push("watermark".to_owned());
    documented.sort();
    served.sort();
    assert_eq!(served, documented);
    let (_, range) = server
        .get(
            &format!(
                "/v2/accounts/{}/subscriptions/{subscription}/activity?from=2000-01-01T00:00:00Z",
                account.id
            ),
            &server.key(),
        )
        .await;
    let mut served: Vec<String> = range.as_object().expect("object").keys().cloned().collect();
    served.sort();
    assert_eq!(served, documented, "{range}");
    let mut activity_fields: Vec<String> = page["objects"][0]
        .as_object()
        .expect("activity")
        .keys()
        .cloned()
        .collect();
    let mut documented_activity: Vec<String> = document["components"]["schemas"]["Activity"]
        ["properties"]
        .as_object()
        .expect("Activity properties")
        .keys()
        .cloned()
        .collect();
    activity_fields.sort();
    documented_activity.sort();
    assert_eq!(activity_fields, documented_activity);
}

#[tokio::test(flavor = "multi_thread")]
async fn test_openapi_document_validates() {
    let server = TestServer::start().await;
    let document = document(&server).await;
    let python = tokio::task::spawn_blocking(|| {
        crate::python::venv_with(
            "openapi-validator-venv",
            "openapi-spec-validator==0.7.1",
            "openapi_spec_validator",
        )
    })
    .await
    .expect("venv task")
    .unwrap_or_else(|message| panic!("the OpenAPI validator could not be set up: {message}"));
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), serde_json::to_vec(&document).expect("json")).expect("write");
    let output = std::process::Command::new(python)
        .args(["-m", "openapi_spec_validator"])
        .arg(file.path())
        .output()
        .expect("validator runs");
    assert!(
        output.status.success(),
        "the OpenAPI document does not validate:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

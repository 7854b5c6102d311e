//! `/v1/destinations`: created only once the broker accepts the target, shown without
//! passwords, changed, listed, deleted, scoped to their application; bad input is a 400.
//!
//! Needs the test NATS server (`TIDEMARK_TEST_NATS_URL`, started with JetStream by
//! `./scripts/test`); without it the tests fail, never skip.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::harness::{Auth, TestServer};

fn nats_url() -> String {
    std::env::var("TIDEMARK_TEST_NATS_URL").unwrap_or_else(|_| {
        panic!(
            "TIDEMARK_TEST_NATS_URL is not set: these tests need a NATS server with JetStream \
             (./scripts/test starts one)"
        )
    })
}

fn nats_destination(stream: &str, create: bool) -> Value {
    json!({
        "kind": "nats",
        "target": {"url": nats_url(), "stream": stream, "subject_prefix": format!("{}.activity", stream.to_lowercase()), "create_stream": create},
        "filter": {"detail": {"activity": {"v1": {"type": ["add"]}}}},
        "payload": "both",
        "batch_size": 50,
    })
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", rand::random::<u32>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_destination_is_checked_created_changed_and_deleted() {
    let server = TestServer::start().await;
    let key = server.key();
    let stream = unique("TMTEST");
    let (status, created) = server
        .call(
            Method::POST,
            "/v1/destinations",
            &key,
            Some(nats_destination(&stream, true)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["type"], "destination");
    assert_eq!(created["kind"], "nats");
    assert_eq!(created["target"]["stream"], stream.as_str());
    assert_eq!(created["payload"], "both");
    assert_eq!(created["batch_size"], 50);
    assert_eq!(created["enabled"], true);
    let id = created["id"].as_i64().expect("id");

    let (status, listed) = server.get("/v1/destinations", &key).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["objects"][0]["id"], id);
    let (status, one) = server.get(&format!("/v1/destinations/{id}"), &key).await;
    assert_eq!((status, &one["id"]), (StatusCode::OK, &json!(id)));

    let (status, changed) = server
        .call(
            Method::PATCH,
            &format!("/v1/destinations/{id}"),
            &key,
            Some(json!({"enabled": false, "filter": null, "payload": "v2", "batch_size": 10})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    assert_eq!(
        (
            &changed["enabled"],
            &changed["filter"],
            &changed["payload"],
            &changed["batch_size"]
        ),
        (&json!(false), &Value::Null, &json!("v2"), &json!(10))
    );

    let (status, attempts) = server
        .get(&format!("/v1/destinations/{id}/attempts"), &key)
        .await;
    assert_eq!(status, StatusCode::OK, "{attempts}");
    assert_eq!(attempts["count"], 0);
    let (status, _) = server
        .get(
            &format!("/v1/destinations/{id}/attempts?status=sideways"),
            &key,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, _) = server
        .call(
            Method::DELETE,
            &format!("/v1/destinations/{id}"),
            &key,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = server.get(&format!("/v1/destinations/{id}"), &key).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_target_the_broker_refuses_is_not_saved() {
    let server = TestServer::start().await;
    let key = server.key();
    // The stream does not exist and creating it was not asked.
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/destinations",
            &key,
            Some(nats_destination(&unique("TMMISSING"), false)),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error_code"], "destination_check_failed", "{body}");
    // Nothing listens there.
    let (status, body) = server
        .call(
            Method::POST,
            "/v1/destinations",
            &key,
            Some(json!({"kind": "nats", "target": {"url": "nats://127.0.0.1:1", "stream": "S", "subject_prefix": "s"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error_code"], "destination_check_failed", "{body}");
    let (_, listed) = server.get("/v1/destinations", &key).await;
    assert_eq!(listed["count"], 0, "nothing saved: {listed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_bad_destination_input_is_a_clear_400() {
    let server = TestServer::start().await;
    let key = server.key();
    let good = nats_destination(&unique("TMBAD"), true);
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let cases = [
        with("kind", json!("kafka")),
        with("kind", json!(7)),
        with("payload", json!("v3")),
        with("batch_size", json!(0)),
        with("batch_size", json!(1001)),
        with("batch_size", json!(-1)),
        with("filter", json!({"detail": "not a pattern"})),
        with("target", json!("nats://127.0.0.1:4222")),
        with(
            "target",
            json!({"url": "http://127.0.0.1:4222", "stream": "S", "subject_prefix": "s"}),
        ),
        with("target", json!({"url": nats_url(), "subject_prefix": "s"})),
        with(
            "target",
            json!({"url": nats_url(), "stream": "S", "subject_prefix": "s", "extra": 1}),
        ),
        with("surprise", json!(true)),
        json!({"target": {"url": nats_url()}}),
    ];
    for body in cases {
        let (status, answer) = server
            .call(Method::POST, "/v1/destinations", &key, Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {answer}");
        assert_eq!(
            answer["error_code"], "invalid_parameters",
            "{body} -> {answer}"
        );
    }
    let (_, listed) = server.get("/v1/destinations", &key).await;
    assert_eq!(listed["count"], 0);
    for path in ["/v1/destinations/abc", "/v1/destinations/999999"] {
        let (status, _) = server.get(path, &key).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = server.get("/v1/destinations", &Auth::None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_destinations_belong_to_their_application() {
    let server = TestServer::start().await;
    let (status, created) = server
        .call(
            Method::POST,
            "/v1/destinations",
            &server.key(),
            Some(nats_destination(&unique("TMTENANT"), true)),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_i64().expect("id");
    let (_, other) = server.new_tenant("other").await;
    let (_, listed) = server.get("/v1/destinations", &other).await;
    assert_eq!(listed["count"], 0);
    for (method, path, body) in [
        (Method::GET, format!("/v1/destinations/{id}"), None),
        (Method::GET, format!("/v1/destinations/{id}/attempts"), None),
        (
            Method::PATCH,
            format!("/v1/destinations/{id}"),
            Some(json!({"enabled": false})),
        ),
        (Method::DELETE, format!("/v1/destinations/{id}"), None),
    ] {
        let (status, _) = server.call(method.clone(), &path, &other, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    let (status, still) = server
        .get(&format!("/v1/destinations/{id}"), &server.key())
        .await;
    assert_eq!((status, &still["enabled"]), (StatusCode::OK, &json!(true)));
}

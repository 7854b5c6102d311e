//! The Onna simulator over HTTP.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use tidemark_simulators::onna::{ActivityLogSpec, AuditLogSpec};
use tidemark_simulators::{Fault, OnnaSimulator};

use crate::helpers::{client, Answer};

const TOKEN: &str = "sim-token";
const BASE_SECOND: i64 = 1_562_857_496;

fn at_millis(millis: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(millis)
        .single()
        .expect("valid time")
}

fn second(offset: i64, extra_millis: i64) -> DateTime<Utc> {
    at_millis((BASE_SECOND + offset) * 1000 + extra_millis)
}

async fn activity(sim: &OnnaSimulator, query: &[(&str, &str)]) -> Answer {
    let response = client()
        .get(format!("{}/@activityLog", sim.base_url()))
        .query(query)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request reaches the simulator");
    Answer::read(response).await
}

async fn audit(sim: &OnnaSimulator, body: &Value) -> Answer {
    audit_raw(sim, serde_json::to_string(body).expect("json")).await
}

async fn audit_raw(sim: &OnnaSimulator, body: String) -> Answer {
    let response = client()
        .post(format!("{}/@auditLog", sim.base_url()))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request reaches the simulator");
    Answer::read(response).await
}

fn hit_ids(hits: &Value) -> Vec<String> {
    hits.as_array()
        .expect("an array of hits")
        .iter()
        .map(|hit| hit["_id"].as_str().expect("an _id").to_string())
        .collect()
}

fn items(answer: &Answer) -> Value {
    assert_eq!(answer.status, 200, "{}", answer.text);
    answer.json()["items"].clone()
}

#[tokio::test]
async fn test_onna_activity_is_newest_first_with_ties_by_id_descending() {
    let sim = OnnaSimulator::start().await.expect("simulator starts");
    let user = "acmeuser@acmecorp.com";
    let old = sim.add_activity(ActivityLogSpec::new("login", user, second(0, 100)));
    let tie_a = sim.add_activity(ActivityLogSpec::new("search", user, second(1, 10)));
    let tie_b = sim.add_activity(ActivityLogSpec::new(
        "nav-menu-opened",
        user,
        second(1, 990),
    ));
    let new = sim.add_activity(
        ActivityLogSpec::new("logout", user, second(2, 0)).with_route("/dashboard/workspace/list"),
    );

    let answer = activity(&sim, &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    let hits = answer.json();
    let mut ties = [tie_a, tie_b];
    ties.sort();
    assert_eq!(
        hit_ids(&hits),
        vec![new, ties[1].clone(), ties[0].clone(), old]
    );
    let first = &hits[0];
    assert_eq!(first["_type"], "doc");
    assert_eq!(first["_score"], Value::Null);
    assert_eq!(first["_index"], "user-activity-account-2019-07-11");
    let millis = (BASE_SECOND + 2) * 1000;
    assert_eq!(first["_source"]["@timestamp"], millis.to_string());
    assert_eq!(first["sort"], json!([millis]));
    assert_eq!(first["_source"]["type"], "log");
    assert_eq!(first["_source"]["action"], "logout");
    assert_eq!(first["_source"]["date"], "2019-07-11");
    let payload = &first["_source"]["payload"];
    assert_eq!(payload["user"], user);
    assert_eq!(payload["account"], "ACMECORP");
    assert_eq!(payload["route"], "/dashboard/workspace/list");
    assert!(payload["session-id"].is_string() && payload["user_agent"].is_string());
    // Tied records carry the same whole-second timestamp.
    assert_eq!(
        hits[1]["_source"]["@timestamp"],
        hits[2]["_source"]["@timestamp"]
    );
}

#[tokio::test]
async fn test_onna_activity_epoch_range_is_inclusive_at_second_granularity() {
    let sim = OnnaSimulator::start().await.expect("simulator starts");
    let user = "acmeuser@acmecorp.com";
    let _before = sim.add_activity(ActivityLogSpec::new("login", user, second(-1, 999)));
    let start = sim.add_activity(ActivityLogSpec::new("search", user, second(0, 999)));
    let end = sim.add_activity(ActivityLogSpec::new("search", user, second(1, 0)));
    let _after = sim.add_activity(ActivityLogSpec::new("logout", user, second(2, 0)));

    let from = BASE_SECOND.to_string();
    let to = (BASE_SECOND + 1).to_string();
    let hits = activity(&sim, &[("epoch_from", &from), ("epoch_to", &to)])
        .await
        .json();
    assert_eq!(hit_ids(&hits), vec![end.clone(), start]);
    let hits = activity(&sim, &[("epoch_from", &to)]).await.json();
    assert_eq!(hit_ids(&hits).len(), 2);
    let hits = activity(&sim, &[("epoch_to", &from)]).await.json();
    assert_eq!(hit_ids(&hits).len(), 2);

    for bad in ["1562857496.5", "yesterday", ""] {
        let answer = activity(&sim, &[("epoch_from", bad)]).await;
        assert_eq!(answer.status, 400, "{bad}");
        let body = answer.json();
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("epoch_from")));
        assert!(body["error"]["type"].is_string());
    }
}

#[tokio::test]
async fn test_onna_max_hits_truncation_keeps_the_newest() {
    let sim = OnnaSimulator::start().await.expect("simulator starts");
    sim.set_max_hits(3);
    let ids: Vec<String> = (0..5)
        .map(|i| sim.add_activity(ActivityLogSpec::new("search", "u@acme.com", second(i, 0))))
        .collect();
    let hits = activity(&sim, &[]).await.json();
    assert_eq!(
        hit_ids(&hits),
        vec![ids[4].clone(), ids[3].clone(), ids[2].clone()]
    );

    let audits: Vec<String> = (0..5)
        .map(|i| sim.add_audit(AuditLogSpec::new("add", format!("Added {i}"), second(i, 0))))
        .collect();
    let hits = items(&audit(&sim, &json!({"size": 50})).await);
    assert_eq!(
        hit_ids(&hits),
        vec![audits[4].clone(), audits[3].clone(), audits[2].clone()]
    );
}

#[tokio::test]
async fn test_onna_audit_hits_match_the_seed_shape() {
    let sim = OnnaSimulator::start().await.expect("simulator starts");
    let at = Utc
        .timestamp_micros(1_562_857_210_104_770)
        .single()
        .expect("valid");
    let id = sim.add_audit(AuditLogSpec::new(
        "add",
        "Added SlackDatasource source: \"DEMO\"",
        at,
    ));
    let hits = items(&audit(&sim, &json!({})).await);
    let hit = &hits[0];
    assert_eq!(hit["_id"], id);
    assert_eq!(hit["sort"], json!([1_562_857_210_104_i64]));
    let source = &hit["_source"];
    assert_eq!(source["@timestamp"], "2019-07-11T15:00:10.104770+00:00");
    assert_eq!(source["date"], "2019-07-11");
    assert_eq!(source["action"], "add");
    for field in [
        "account",
        "ip",
        "method",
        "request_url",
        "user",
        "user_agent",
        "user_name",
        "code",
        "log_type",
        "category",
        "action",
        "message",
    ] {
        assert!(source["payload"][field].is_string(), "payload.{field}");
    }
    assert_eq!(source["payload"]["code"], "DS001");
    assert_eq!(source["payload"]["log_type"], "success");
}

#[tokio::test]
async fn test_onna_audit_json_logic_filters() {
    let sim = OnnaSimulator::start().await.expect("simulator starts");
    let base = 1_586_031_963_641_i64;
    let spec = |action: &str, message: &str, millis: i64, ip: &str| {
        let mut spec = AuditLogSpec::new(action, message, at_millis(millis));
        spec.ip = ip.into();
        spec
    };
    let a = sim.add_audit(spec("add", "Added Slack source", base, "10.9.4.29"));
    let b = sim.add_audit(spec(
        "delete",
        "Deleted Slack source",
        base + 1,
        "10.9.4.30",
    ));
    let c = sim.add_audit(spec("add", "Added Box source", base + 2, "10.9.4.29"));
    let d = sim.add_audit(spec(
        "update",
        "Custom field change",
        base + 3,
        "172.16.0.1",
    ));

    let filtered = |advanced: Value| {
        let sim = sim.clone();
        async move {
            let body = json!({"size": 50, "sort": {"field": "@timestamp", "direction": "asc"}, "advanced": advanced});
            hit_ids(&items(&audit(&sim, &body).await))
        }
    };
    // The seed's date window: strict bounds, epoch milliseconds.
    assert_eq!(
        filtered(json!({"and": [{">": [{"var": "@timestamp"}, base]}, {"<": [{"var": "@timestamp"}, base + 3]}]})).await,
        vec![b.clone(), c.clone()]
    );
    assert_eq!(
        filtered(json!({"and": [{">=": [{"var": "@timestamp"}, base + 1]}, {"<=": [{"var": "@timestamp"}, base + 3]}]})).await,
        vec![b.clone(), c.clone(), d.clone()]
    );
    // The seed's IP filter, with Elasticsearch's .keyword suffix.
    assert_eq!(
        filtered(json!({"and": [{"in": [{"var": "payload.ip.keyword"}, ["10.9.4.29"]]}]})).await,
        vec![a.clone(), c.clone()]
    );
    assert_eq!(
        filtered(json!({"or": [{"==": [{"var": "action"}, "delete"]}, {"==": [{"var": "payload.action"}, "update"]}]})).await,
        vec![b.clone(), d.clone()]
    );
    assert_eq!(
        filtered(json!({"in": ["Slack", {"var": "message"}]})).await,
        vec![a.clone(), b.clone()]
    );
    assert!(filtered(json!({"==": [{"var": "payload.nothing"}, "x"]}))
        .await
        .is_empty());

    // Sort direction, and size defaulting to 10.
    let descending = hit_ids(&items(
        &audit(&sim, &json!({"sort": {"direction": "desc"}})).await,
    ));
    assert_eq!(descending, vec![d, c, b, a]);
    for i in 0..10 {
        sim.add_audit(AuditLogSpec::new(
            "add",
            format!("Bulk {i}"),
            at_millis(base + 100 + i),
        ));
    }
    assert_eq!(hit_ids(&items(&audit(&sim, &json!({})).await)).len(), 10);
    assert_eq!(
        hit_ids(&items(&audit_raw(&sim, String::new()).await)).len(),
        10
    );
}

#[tokio::test]
async fn test_onna_audit_ties_in_the_same_millisecond_are_ordered_by_id() {
    let sim = OnnaSimulator::start().await.expect("simulator starts");
    let at = at_millis(1_586_031_963_641);
    let mut ids: Vec<String> = (0..4)
        .map(|i| sim.add_audit(AuditLogSpec::new("add", format!("Tie {i}"), at)))
        .collect();
    ids.sort();
    let ascending = hit_ids(&items(
        &audit(
            &sim,
            &json!({"sort": {"field": "@timestamp", "direction": "asc"}}),
        )
        .await,
    ));
    assert_eq!(ascending, ids);
    let descending = hit_ids(&items(
        &audit(
            &sim,
            &json!({"sort": {"field": "@timestamp", "direction": "desc"}}),
        )
        .await,
    ));
    ids.reverse();
    assert_eq!(descending, ids);
}

#[tokio::test]
async fn test_onna_audit_malformed_requests_get_400() {
    let sim = OnnaSimulator::start().await.expect("simulator starts");
    sim.add_audit(AuditLogSpec::new("add", "Added", Utc::now()));
    let cases = [
        (
            json!({"advanced": {"like": [{"var": "action"}, "add"]}}).to_string(),
            "like",
        ),
        (
            json!({"advanced": {">": [{"var": "@timestamp"}]}}).to_string(),
            "arguments",
        ),
        (
            json!({"advanced": {"and": [{">": [1, 2], "<": [1, 2]}]}}).to_string(),
            "exactly one",
        ),
        (json!({"advanced": [1, 2]}).to_string(), "advanced"),
        (
            json!({"advanced": "@timestamp > 5"}).to_string(),
            "advanced",
        ),
        (json!({"size": 0}).to_string(), "size"),
        (json!({"size": "ten"}).to_string(), "size"),
        (
            json!({"sort": {"field": "@timestamp", "direction": "up"}}).to_string(),
            "direction",
        ),
        (json!({"query": {"match_all": {}}}).to_string(), "query"),
        (json!([1]).to_string(), "object"),
        (r#"{"size": 50, "sort": "#.to_string(), "JSON"),
        // The seed's own IP example is missing its opening brace.
        (
            "\n    \"size\": 50,\n    \"sort\": {}\n}".to_string(),
            "JSON",
        ),
    ];
    for (body, named) in cases {
        let answer = audit_raw(&sim, body.clone()).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text);
        let error = &answer.json()["error"];
        assert!(error["type"].is_string(), "{body}");
        let message = error["message"].as_str().expect("a message");
        assert!(message.contains(named), "{body}: {message}");
    }
}

#[tokio::test]
async fn test_onna_credentials_and_revocation() {
    let sim = OnnaSimulator::start().await.expect("simulator starts");
    let url = format!("{}/@activityLog", sim.base_url());
    let no_auth = Answer::read(client().get(&url).send().await.expect("request")).await;
    assert_eq!(no_auth.status, 401);
    assert!(no_auth.json()["reason"].is_string());
    let wrong = client()
        .get(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status().as_u16(), 401);
    let basic = client()
        .get(&url)
        .basic_auth("admin", Some("password"))
        .send()
        .await
        .expect("request");
    assert_eq!(
        basic.status().as_u16(),
        401,
        "Onna takes bearer tokens only"
    );
    assert_eq!(activity(&sim, &[]).await.status, 200);

    sim.revoke_credentials();
    assert_eq!(activity(&sim, &[]).await.status, 401);
    assert_eq!(audit(&sim, &json!({})).await.status, 401);
    sim.restore_credentials();
    assert_eq!(activity(&sim, &[]).await.status, 200);

    sim.set_token("rotated");
    assert_eq!(activity(&sim, &[]).await.status, 401);
    let rotated = client()
        .get(&url)
        .bearer_auth("rotated")
        .send()
        .await
        .expect("request");
    assert_eq!(rotated.status().as_u16(), 200);
}

#[tokio::test]
async fn test_onna_faults() {
    let sim = OnnaSimulator::start().await.expect("simulator starts");
    sim.add_activity(ActivityLogSpec::new("login", "u@acme.com", Utc::now()));

    sim.push_fault(Fault::RateLimited {
        retry_after_secs: 7,
    });
    let limited = audit(&sim, &json!({})).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("7"));
    assert!(limited.json()["error"]["message"].is_string());

    sim.push_fault(Fault::ServerError { status: 500 });
    let failed = activity(&sim, &[]).await;
    assert_eq!(failed.status, 500);
    assert_eq!(failed.json()["reason"], "unknownError");
    sim.push_fault(Fault::ServerError { status: 503 });
    assert_eq!(activity(&sim, &[]).await.status, 503);

    sim.push_fault(Fault::MissingField);
    let hits = activity(&sim, &[]).await.json();
    let hit = &hits[0];
    assert!(hit.get("_id").is_none() && hit.get("sort").is_none());
    assert!(hit.get("_source").is_some());
    sim.push_fault(Fault::MissingField);
    let hits = items(&audit(&sim, &json!({})).await);
    assert!(
        hits[0].get("_id").is_none(),
        "an empty answer gets a stripped item"
    );

    sim.push_fault(Fault::MalformedJson);
    let broken = activity(&sim, &[]).await;
    assert_eq!(broken.status, 200);
    assert!(serde_json::from_str::<Value>(&broken.text).is_err());

    sim.push_fault(Fault::Slow {
        delay: Duration::from_millis(200),
    });
    let started = std::time::Instant::now();
    assert_eq!(activity(&sim, &[]).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));

    let statuses: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 500, 503, 200, 200, 200, 200]);
    assert!(sim.requests()[0].body.contains('{'));
}

#[tokio::test]
async fn test_onna_lag_hides_records_then_shows_them() {
    let sim = OnnaSimulator::start().await.expect("simulator starts");
    sim.set_lag(Duration::from_millis(1000));
    let now = Utc::now();
    let id = sim.add_activity(ActivityLogSpec::new("login", "u@acme.com", now));
    let audit_id = sim.add_audit(AuditLogSpec::new("add", "Added", now));
    assert!(hit_ids(&activity(&sim, &[]).await.json()).is_empty());
    assert!(hit_ids(&items(&audit(&sim, &json!({})).await)).is_empty());
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let hits = activity(&sim, &[]).await.json();
    assert_eq!(hit_ids(&hits), vec![id]);
    assert_eq!(hits[0]["sort"], json!([now.timestamp() * 1000]));
    assert_eq!(
        hit_ids(&items(&audit(&sim, &json!({})).await)),
        vec![audit_id]
    );
}

#[tokio::test]
async fn test_onna_account_name_and_unknown_paths() {
    let sim = OnnaSimulator::start_with_account("GLOBEX")
        .await
        .expect("simulator starts");
    assert!(sim.base_url().ends_with("/GLOBEX/GLOBEX"));
    sim.add_activity(ActivityLogSpec::new("login", "u@globex.com", Utc::now()));
    let hits = activity(&sim, &[]).await.json();
    assert_eq!(hits[0]["_source"]["payload"]["account"], "GLOBEX");
    let wrong = client()
        .get(format!(
            "http://{}/ACMECORP/ACMECORP/@activityLog",
            sim.addr()
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status().as_u16(), 404);
    let encoded = client()
        .get(format!(
            "http://{}/GLOBEX/GLOBEX/%40activityLog",
            sim.addr()
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(encoded.status().as_u16(), 200);
    let wrong_method = client()
        .get(format!("{}/@auditLog", sim.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(wrong_method.status().as_u16(), 404);
}

#[tokio::test]
async fn test_onna_control_api_mirrors_the_scripting_methods() {
    let sim = OnnaSimulator::start().await.expect("simulator starts");
    let control = |path: &str| format!("http://{}/_sim{path}", sim.addr());
    let post = |path: String, body: Value| async move {
        Answer::read(
            client()
                .post(path)
                .json(&body)
                .send()
                .await
                .expect("control"),
        )
        .await
    };
    let created = post(
        control("/activity"),
        json!({"action": "sharing-add-user", "user": "u@acme.com", "at": (BASE_SECOND * 1000) + 250, "route": "/share"}),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let id = created.json()["_id"].as_str().expect("_id").to_string();
    let hits = activity(&sim, &[]).await.json();
    assert_eq!(hit_ids(&hits), vec![id]);
    assert_eq!(hits[0]["sort"], json!([BASE_SECOND * 1000]));

    let audits = post(
        control("/audit"),
        json!([{"action": "add", "message": "Created Workspace", "category": "workspace", "ip": "10.0.0.1"},
               {"action": "delete", "message": "Deleted Workspace", "at": "2020-04-04T20:26:03.641123Z"}]),
    )
    .await;
    assert_eq!(audits.json()["ids"].as_array().map(Vec::len), Some(2));
    let hits = items(
        &audit(
            &sim,
            &json!({"advanced": {"==": [{"var": "payload.category"}, "workspace"]}}),
        )
        .await,
    );
    assert_eq!(hits.as_array().map(Vec::len), Some(1));
    assert_eq!(hits[0]["_source"]["payload"]["ip"], "10.0.0.1");
    assert_eq!(
        post(control("/audit"), json!({"action": "add"}))
            .await
            .status,
        400
    );

    assert_eq!(
        post(control("/max_hits"), json!({"max_hits": 1}))
            .await
            .status,
        200
    );
    assert_eq!(
        hit_ids(&items(&audit(&sim, &json!({"size": 5})).await)).len(),
        1
    );
    assert_eq!(
        post(control("/credentials"), json!({"token": "t2"}))
            .await
            .status,
        200
    );
    assert_eq!(activity(&sim, &[]).await.status, 401);
    assert_eq!(
        post(control("/faults"), json!({"kind": "missing_field"}))
            .await
            .status,
        200
    );
    let state = Answer::read(client().get(control("")).send().await.expect("control"))
        .await
        .json();
    assert_eq!(state["service"], "onna");
    assert_eq!(state["pending_faults"], 1);
    assert_eq!(state["max_hits"], 1);
    assert_eq!(
        Answer::read(
            client()
                .delete(control("/faults"))
                .send()
                .await
                .expect("control")
        )
        .await
        .status,
        200
    );
    assert_eq!(
        post(control("/generate"), json!({"rate_per_sec": -1}))
            .await
            .status,
        400
    );
}

#[tokio::test]
async fn test_onna_generator_produces_both_logs() {
    let sim = OnnaSimulator::start().await.expect("simulator starts");
    sim.spawn_generator(400.0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    sim.stop_generator();
    let hits = activity(&sim, &[]).await.json();
    assert!(
        hit_ids(&hits).len() > 10,
        "{} activity records",
        hit_ids(&hits).len()
    );
    let audits = items(&audit(&sim, &json!({"size": 1000})).await);
    assert!(!hit_ids(&audits).is_empty());
}

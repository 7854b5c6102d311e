//! The Jive simulator over HTTP.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Value};
use tidemark_simulators::jive::{ContentSpec, Person, PREFIX};
use tidemark_simulators::{Fault, JiveSimulator};

use crate::helpers::{client, Answer};

const TOKEN: &str = "sim-token";

fn t(millis: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_430_954_190_000 + millis)
        .single()
        .expect("valid time")
}

fn jive_date(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string()
}

async fn get(sim: &JiveSimulator, path: &str, query: &[(&str, &str)]) -> Answer {
    let response = client()
        .get(format!("{}{path}", sim.base_url()))
        .query(query)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request reaches the simulator");
    Answer::read(response).await
}

async fn get_url(url: &str) -> Answer {
    let response = client()
        .get(url)
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request reaches the simulator");
    Answer::read(response).await
}

fn ids(body: &Value) -> Vec<String> {
    body["list"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|item| item["id"].as_str().expect("an id").to_string())
        .collect()
}

/// Follows `links.next` from the first page to the last, returning every page's body.
async fn all_pages(sim: &JiveSimulator, path: &str, query: &[(&str, &str)]) -> Vec<Value> {
    let first = get(sim, path, query).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let mut pages = vec![first.jive_json()];
    while let Some(next) = pages
        .last()
        .and_then(|page| page["links"]["next"].as_str())
        .map(str::to_string)
    {
        assert!(pages.len() < 100, "runaway paging");
        let page = get_url(&next).await;
        assert_eq!(page.status, 200, "{}", page.text);
        pages.push(page.jive_json());
    }
    pages
}

#[tokio::test]
async fn test_jive_pages_follow_links_next_with_a_small_max_count() {
    let sim = JiveSimulator::start().await.expect("simulator starts");
    sim.set_max_count(7);
    let created: Vec<String> = (0..20)
        .map(|i| sim.create_content(ContentSpec::new(format!("Doc {i}"), t(i * 1000))))
        .collect();

    let pages = all_pages(
        &sim,
        "/contents",
        &[
            ("sort", "latestActivityAsc"),
            ("count", "25"),
            ("fields", "@all"),
        ],
    )
    .await;

    let sizes: Vec<usize> = pages.iter().map(|p| ids(p).len()).collect();
    assert_eq!(sizes, vec![7, 7, 6]);
    assert!(pages.iter().all(|p| p["itemsPerPage"] == 7));
    assert_eq!(pages[1]["startIndex"], 7);
    assert!(pages[0]["links"].get("previous").is_none());
    assert!(pages[1]["links"]["previous"].is_string());
    assert!(pages[2]["links"].get("next").is_none());
    let next = pages[0]["links"]["next"].as_str().expect("next link");
    assert!(
        next.starts_with(&format!("{}/contents?", sim.base_url())),
        "{next}"
    );
    assert!(next.contains("startIndex=7") && next.contains("sort=latestActivityAsc"));
    let seen: Vec<String> = pages.iter().flat_map(ids).collect();
    assert_eq!(seen, created);
}

#[tokio::test]
async fn test_jive_content_entity_has_the_documented_fields() {
    let sim = JiveSimulator::start().await.expect("simulator starts");
    let author = Person::new("2001", "Jane Doe", "jane@example.com");
    let id = sim.create_content(
        ContentSpec::new("Specs", t(594))
            .with_type("file")
            .with_author(author)
            .with_place("Engineering"),
    );
    let body = get(&sim, "/contents", &[]).await.jive_json();
    let item = &body["list"][0];
    assert_eq!(item["id"], id);
    assert_eq!(item["contentID"], id);
    assert_eq!(item["type"], "file");
    assert_eq!(item["typeCode"], 13);
    assert_eq!(item["status"], "published");
    assert_eq!(item["subject"], "Specs");
    assert_eq!(item["published"], "2015-05-06T23:16:30.594+0000");
    assert_eq!(item["updated"], item["published"]);
    assert_eq!(item["lastActivityDate"], item["published"]);
    assert_eq!(item["author"]["displayName"], "Jane Doe");
    assert_eq!(item["author"]["type"], "person");
    assert_eq!(item["author"]["emails"][0]["value"], "jane@example.com");
    assert_eq!(item["parentPlace"]["name"], "Engineering");
    assert_eq!(item["parentPlace"]["type"], "group");
    assert_eq!(
        item["resources"]["self"]["ref"],
        format!("{}/contents/{id}", sim.base_url())
    );
    assert!(item["resources"]["html"]["ref"].is_string());
    assert_eq!(body["itemsPerPage"], 25);
    assert!(body.get("links").is_none(), "one page needs no links");

    let single = get(&sim, &format!("/contents/{id}"), &[]).await;
    assert_eq!(single.status, 200);
    assert_eq!(single.jive_json()["id"], id);
    assert_eq!(get(&sim, "/contents/999999", &[]).await.status, 404);
}

#[tokio::test]
async fn test_jive_updated_range_is_inclusive_at_both_ends_in_either_order() {
    let sim = JiveSimulator::start().await.expect("simulator starts");
    let at = [t(0), t(1000), t(2000), t(3000)];
    let id: Vec<String> = at
        .iter()
        .map(|time| sim.create_content(ContentSpec::new("Doc", *time)))
        .collect();
    let sorted = ("sort", "latestActivityAsc");

    let range = format!("updated({},{})", jive_date(at[1]), jive_date(at[2]));
    let body = get(&sim, "/contents", &[("filter", &range), sorted])
        .await
        .jive_json();
    assert_eq!(ids(&body), vec![id[1].clone(), id[2].clone()]);

    // Seed 001's spelling, dates given (beforeDate, afterDate).
    let reversed = format!(
        "modificationDate({},{})",
        jive_date(at[2]),
        jive_date(at[1])
    );
    let body = get(&sim, "/contents", &[("filter", &reversed), sorted])
        .await
        .jive_json();
    assert_eq!(ids(&body), vec![id[1].clone(), id[2].clone()]);

    let zulu = format!("updated({})", at[2].format("%Y-%m-%dT%H:%M:%S%.3fZ"));
    let body = get(&sim, "/contents", &[("filter", &zulu), sorted])
        .await
        .jive_json();
    assert_eq!(ids(&body), vec![id[2].clone(), id[3].clone()]);

    // A millisecond outside either end excludes the item there.
    let narrow = format!(
        "updated({},{})",
        jive_date(at[1] + chrono::Duration::milliseconds(1)),
        jive_date(at[2] - chrono::Duration::milliseconds(1))
    );
    let body = get(&sim, "/contents", &[("filter", &narrow), sorted])
        .await
        .jive_json();
    assert!(ids(&body).is_empty());
}

#[tokio::test]
async fn test_jive_type_filters_are_anded() {
    let sim = JiveSimulator::start().await.expect("simulator starts");
    let doc = sim.create_content(ContentSpec::new("Doc", t(0)));
    let file = sim.create_content(ContentSpec::new("File", t(1)).with_type("file"));
    let _thread = sim.create_content(ContentSpec::new("Thread", t(2)).with_type("discussion"));
    let sorted = ("sort", "dateCreatedAsc");
    let body = get(
        &sim,
        "/contents",
        &[("filter", "type(document,file)"), sorted],
    )
    .await
    .jive_json();
    assert_eq!(ids(&body), vec![doc, file.clone()]);
    let body = get(
        &sim,
        "/contents",
        &[
            ("filter", "type(document,file)"),
            ("filter", "type(file)"),
            sorted,
        ],
    )
    .await
    .jive_json();
    assert_eq!(ids(&body), vec![file]);
}

#[tokio::test]
async fn test_jive_tied_timestamps_split_across_pages_are_neither_lost_nor_repeated() {
    let sim = JiveSimulator::start().await.expect("simulator starts");
    sim.set_max_count(3);
    let early: Vec<String> = (0..2)
        .map(|_| sim.create_content(ContentSpec::new("Early", t(0))))
        .collect();
    let tied: Vec<String> = (0..5)
        .map(|_| sim.create_content(ContentSpec::new("Tied", t(5000))))
        .collect();
    // Modify an early one into the tie: it now ties, and sorts by id among the tied.
    assert!(sim.modify_content(&early[0], t(5000)));

    let query = [("sort", "latestActivityAsc")];
    let first_run: Vec<String> = all_pages(&sim, "/contents", &query)
        .await
        .iter()
        .flat_map(ids)
        .collect();
    let second_run: Vec<String> = all_pages(&sim, "/contents", &query)
        .await
        .iter()
        .flat_map(ids)
        .collect();
    assert_eq!(first_run, second_run, "paging is deterministic");
    let mut expected = vec![early[1].clone(), early[0].clone()];
    expected.extend(tied.iter().cloned());
    assert_eq!(first_run, expected);

    let descending: Vec<String> = all_pages(&sim, "/contents", &[("sort", "latestActivityDesc")])
        .await
        .iter()
        .flat_map(ids)
        .collect();
    let mut reversed = expected.clone();
    reversed.reverse();
    assert_eq!(descending, reversed);
}

#[tokio::test]
async fn test_jive_deleted_content_moves_to_deleted_objects() {
    let sim = JiveSimulator::start().await.expect("simulator starts");
    let kept = sim.create_content(ContentSpec::new("Kept", t(0)));
    let gone = sim.create_content(ContentSpec::new("Gone", t(1)).with_type("discussion"));
    let uuid = sim.delete_content(&gone, t(3000)).expect("deleted");
    assert!(
        !sim.modify_content(&gone, t(4000)),
        "deleted content cannot change"
    );
    assert_eq!(sim.delete_content(&gone, t(4000)), None);
    assert_eq!(sim.delete_content("424242", t(4000)), None);
    let second = sim.create_content(ContentSpec::new("Also gone", t(2)));
    let second_uuid = sim.delete_content(&second, t(3000)).expect("deleted");

    let body = get(&sim, "/contents", &[]).await.jive_json();
    assert_eq!(ids(&body), vec![kept]);

    let since = format!("since({})", jive_date(t(3000)));
    let body = get(
        &sim,
        "/deletedObjects/contents",
        &[("filter", &since), ("sort", "eventDateAsc")],
    )
    .await
    .jive_json();
    assert_eq!(ids(&body), vec![uuid.clone(), second_uuid.clone()]);
    let item = &body["list"][0];
    assert_eq!(item["type"], "deletedObject");
    assert_eq!(item["objectType"], "discussion");
    assert_eq!(item["objectId"], gone);
    assert_eq!(item["eventDate"], jive_date(t(3000)));
    assert_eq!(item["url"], format!("{}/contents/{gone}", sim.base_url()));
    assert!(item["resources"]["self"]["ref"].is_string());

    // Default sort is eventDateDesc (ties latest deletion first).
    let body = get(&sim, "/deletedObjects/contents", &[]).await.jive_json();
    assert_eq!(ids(&body), vec![second_uuid.clone(), uuid.clone()]);

    let later = format!("since({})", jive_date(t(3001)));
    let body = get(&sim, "/deletedObjects/contents", &[("filter", &later)])
        .await
        .jive_json();
    assert!(ids(&body).is_empty(), "since is inclusive, not earlier");

    let body = get(
        &sim,
        "/deletedObjects/contents",
        &[("filter", &since), ("filter", "type(document,file)")],
    )
    .await
    .jive_json();
    assert_eq!(ids(&body), vec![second_uuid]);
}

#[tokio::test]
async fn test_jive_every_body_carries_the_prefix() {
    let sim = JiveSimulator::start().await.expect("simulator starts");
    sim.create_content(ContentSpec::new("Doc", t(0)));
    let ok = get(&sim, "/contents", &[]).await;
    assert!(ok.text.starts_with(PREFIX));
    assert!(ok
        .header("content-type")
        .is_some_and(|ct| ct.starts_with("application/json")));
    let bad = get(&sim, "/contents", &[("sort", "sideways")]).await;
    assert_eq!(bad.status, 400);
    assert!(bad.text.starts_with(PREFIX));
    let missing = get(&sim, "/nothing/here", &[]).await;
    assert_eq!(missing.status, 404);
    assert!(missing.text.starts_with(PREFIX));
    let unauthorized = Answer::read(
        client()
            .get(format!("{}/contents", sim.base_url()))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(unauthorized.status, 401);
    assert!(unauthorized.text.starts_with(PREFIX));
    assert_eq!(unauthorized.jive_json()["error"]["status"], 401);
}

#[tokio::test]
async fn test_jive_lag_hides_new_items_then_shows_them_with_their_timestamp() {
    let sim = JiveSimulator::start().await.expect("simulator starts");
    let before = sim.create_content(ContentSpec::new("Before lag", t(0)));
    sim.set_lag(Duration::from_millis(1000));
    let now = Utc::now();
    let lagging = sim.create_content(ContentSpec::new("Lagging", now));
    assert!(sim.modify_content(&before, now));
    let deleted_uuid = sim.delete_content(&before, now).expect("deleted");

    let body = get(&sim, "/contents", &[("sort", "latestActivityAsc")])
        .await
        .jive_json();
    assert_eq!(
        ids(&body),
        vec![before.clone()],
        "only the old version shows"
    );
    assert_eq!(body["list"][0]["updated"], jive_date(t(0)));
    let deleted = get(&sim, "/deletedObjects/contents", &[]).await.jive_json();
    assert!(ids(&deleted).is_empty());

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let body = get(&sim, "/contents", &[]).await.jive_json();
    assert_eq!(ids(&body), vec![lagging]);
    let now_millis = DateTime::from_timestamp_millis(now.timestamp_millis()).expect("valid");
    assert_eq!(body["list"][0]["updated"], jive_date(now_millis));
    let deleted = get(&sim, "/deletedObjects/contents", &[]).await.jive_json();
    assert_eq!(ids(&deleted), vec![deleted_uuid]);
}

#[tokio::test]
async fn test_jive_rate_limit_fault_answers_429_with_retry_after_then_recovers() {
    let sim = JiveSimulator::start().await.expect("simulator starts");
    sim.create_content(ContentSpec::new("Doc", t(0)));
    sim.push_fault(Fault::RateLimited {
        retry_after_secs: 2,
    });
    let limited = get(&sim, "/contents", &[]).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("2"));
    assert_eq!(limited.jive_json()["error"]["status"], 429);
    let recovered = get(&sim, "/contents", &[]).await;
    assert_eq!(recovered.status, 200);

    let log = sim.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].status, 429);
    assert_eq!(log[1].status, 200);
    assert!(log[0].at <= log[1].at);
}

#[tokio::test]
async fn test_jive_faults_are_consumed_in_order_by_data_requests_only() {
    let sim = JiveSimulator::start().await.expect("simulator starts");
    sim.push_fault(Fault::ServerError { status: 503 });
    sim.push_fault(Fault::ServerError { status: 500 });
    // A control request does not take a fault.
    let control = Answer::read(
        client()
            .get(format!("http://{}/_sim", sim.addr()))
            .send()
            .await
            .expect("control request"),
    )
    .await;
    assert_eq!(control.status, 200);
    assert_eq!(control.json()["pending_faults"], 2);
    let first = get(&sim, "/contents", &[]).await;
    assert_eq!(first.status, 503);
    assert_eq!(first.jive_json()["error"]["status"], 503);
    assert_eq!(get(&sim, "/contents", &[]).await.status, 500);
    assert_eq!(get(&sim, "/contents", &[]).await.status, 200);
}

#[tokio::test]
async fn test_jive_slow_fault_delays_the_real_answer() {
    let sim = JiveSimulator::start().await.expect("simulator starts");
    let id = sim.create_content(ContentSpec::new("Doc", t(0)));
    sim.push_fault(Fault::Slow {
        delay: Duration::from_millis(300),
    });
    let started = Instant::now();
    let answer = get(&sim, "/contents", &[]).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(answer.status, 200);
    assert_eq!(ids(&answer.jive_json()), vec![id]);
}

#[tokio::test]
async fn test_jive_malformed_json_fault_keeps_the_prefix_but_breaks_the_json() {
    let sim = JiveSimulator::start().await.expect("simulator starts");
    sim.create_content(ContentSpec::new("Doc", t(0)));
    sim.push_fault(Fault::MalformedJson);
    let answer = get(&sim, "/contents", &[]).await;
    assert_eq!(answer.status, 200);
    let json = answer.text.strip_prefix(PREFIX).expect("prefix kept");
    assert!(serde_json::from_str::<Value>(json).is_err(), "{json}");
}

#[tokio::test]
async fn test_jive_missing_field_fault_strips_required_fields() {
    let sim = JiveSimulator::start().await.expect("simulator starts");
    sim.create_content(ContentSpec::new("Doc", t(0)));
    sim.push_fault(Fault::MissingField);
    let body = get(&sim, "/contents", &[]).await.jive_json();
    let item = &body["list"][0];
    assert!(item.get("updated").is_none() && item.get("id").is_none());
    assert!(item.get("subject").is_some());

    // An empty deleted list still gets an item that lacks its id and eventDate.
    sim.push_fault(Fault::MissingField);
    let body = get(&sim, "/deletedObjects/contents", &[]).await.jive_json();
    let item = &body["list"][0];
    assert_eq!(item["type"], "deletedObject");
    assert!(item.get("eventDate").is_none() && item.get("id").is_none());
}

#[tokio::test]
async fn test_jive_credentials_bearer_basic_and_revocation() {
    let sim = JiveSimulator::start().await.expect("simulator starts");
    let url = format!("{}/contents", sim.base_url());
    let status = |request: reqwest::RequestBuilder| async move {
        request.send().await.expect("request").status().as_u16()
    };
    assert_eq!(status(client().get(&url)).await, 401);
    assert_eq!(status(client().get(&url).bearer_auth("wrong")).await, 401);
    assert_eq!(status(client().get(&url).bearer_auth(TOKEN)).await, 200);
    assert_eq!(
        status(client().get(&url).basic_auth("admin", Some("password"))).await,
        200
    );
    assert_eq!(
        status(client().get(&url).basic_auth("admin", Some("nope"))).await,
        401
    );
    assert_eq!(
        status(client().get(&url).header("authorization", "Basic !!!")).await,
        401
    );

    sim.set_basic("svc", "s3cret");
    sim.set_token("fresh");
    assert_eq!(
        status(client().get(&url).basic_auth("svc", Some("s3cret"))).await,
        200
    );
    assert_eq!(status(client().get(&url).bearer_auth(TOKEN)).await, 401);
    assert_eq!(status(client().get(&url).bearer_auth("fresh")).await, 200);

    sim.revoke_credentials();
    let revoked = Answer::read(
        client()
            .get(&url)
            .bearer_auth("fresh")
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(revoked.status, 401);
    assert_eq!(revoked.jive_json()["error"]["status"], 401);
    sim.restore_credentials();
    assert_eq!(status(client().get(&url).bearer_auth("fresh")).await, 200);
}

#[tokio::test]
async fn test_jive_bad_parameters_get_400_naming_the_problem() {
    let sim = JiveSimulator::start().await.expect("simulator starts");
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            "/contents",
            &[("filter", "updated(not-a-date)")],
            "not-a-date",
        ),
        ("/contents", &[("filter", "updated")], "updated"),
        ("/contents", &[("filter", "bogus(1)")], "bogus"),
        ("/contents", &[("sort", "newest")], "newest"),
        ("/contents", &[("count", "abc")], "count"),
        ("/contents", &[("count", "0")], "count"),
        ("/contents", &[("startIndex", "-3")], "startIndex"),
        (
            "/deletedObjects/contents",
            &[("filter", "since(a,b)")],
            "since",
        ),
        (
            "/deletedObjects/contents",
            &[("sort", "latestActivityAsc")],
            "latestActivityAsc",
        ),
    ];
    for (path, query, named) in cases {
        let answer = get(&sim, path, query).await;
        assert_eq!(answer.status, 400, "{path} {query:?}: {}", answer.text);
        let body = answer.jive_json();
        assert_eq!(body["error"]["status"], 400);
        let message = body["error"]["message"].as_str().expect("a message");
        assert!(message.contains(named), "{query:?}: {message}");
    }

    // A '+' sent unencoded reads as a space; the error says how to send it.
    let url = format!(
        "{}/contents?filter=updated(2015-05-06T23:16:30.594+0000)",
        sim.base_url()
    );
    let answer = get_url(&url).await;
    assert_eq!(answer.status, 400);
    assert!(answer.jive_json()["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("%2B")));
    // Encoded, the same date is fine.
    let url = format!(
        "{}/contents?filter=updated(2015-05-06T23:16:30.594%2B0000)",
        sim.base_url()
    );
    assert_eq!(get_url(&url).await.status, 200);

    assert_eq!(get(&sim, "/places/12", &[]).await.status, 404);
    let post = client()
        .post(format!("{}/contents", sim.base_url()))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("request");
    assert_eq!(post.status().as_u16(), 405);
}

#[tokio::test]
async fn test_jive_request_log_records_queries_and_statuses() {
    let sim = JiveSimulator::start().await.expect("simulator starts");
    let since = format!("since({})", jive_date(t(0)));
    get(
        &sim,
        "/deletedObjects/contents",
        &[("filter", &since), ("filter", "type(file)")],
    )
    .await;
    get(&sim, "/contents", &[("sort", "bad")]).await;
    let log = sim.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].method, "GET");
    assert_eq!(log[0].path(), "/api/core/v3/deletedObjects/contents");
    assert_eq!(
        log[0].query_values("filter"),
        vec![since, "type(file)".to_string()]
    );
    assert_eq!(log[0].status, 200);
    assert_eq!(log[1].status, 400);
    sim.clear_requests();
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn test_jive_control_api_mirrors_the_scripting_methods() {
    let sim = JiveSimulator::start().await.expect("simulator starts");
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
        control("/contents"),
        json!({"subject": "From curl", "type": "file", "at": "2015-05-06T23:16:30.594Z",
               "author": {"id": "7", "display_name": "Curl User", "email": "curl@example.com"},
               "place": "Ops"}),
    )
    .await;
    assert_eq!(created.status, 200, "{}", created.text);
    let id = created.json()["id"].as_str().expect("id").to_string();
    let many = post(
        control("/contents"),
        json!([{"subject": "A"}, {"subject": "B"}]),
    )
    .await;
    assert_eq!(many.json()["ids"].as_array().map(Vec::len), Some(2));

    let body = get(&sim, "/contents/", &[("filter", "type(file)")])
        .await
        .jive_json();
    assert_eq!(ids(&body), vec![id.clone()]);
    assert_eq!(body["list"][0]["published"], "2015-05-06T23:16:30.594+0000");
    assert_eq!(body["list"][0]["author"]["displayName"], "Curl User");

    let modified = post(
        control(&format!("/contents/{id}/modify")),
        json!({"at": 1_430_954_200_000_i64}),
    )
    .await;
    assert_eq!(modified.status, 200, "{}", modified.text);
    let deleted = post(control(&format!("/contents/{id}/delete")), json!({})).await;
    assert!(deleted.json()["deleted_object_id"].is_string());
    assert_eq!(
        post(control("/contents/999/delete"), json!({}))
            .await
            .status,
        404
    );
    assert_eq!(
        post(control("/contents"), json!({"nope": 1})).await.status,
        400
    );

    assert_eq!(
        post(control("/max_count"), json!({"max_count": 1}))
            .await
            .status,
        200
    );
    let body = get(&sim, "/contents", &[]).await.jive_json();
    assert_eq!(body["itemsPerPage"], 1);

    assert_eq!(
        post(control("/faults"), json!([{"kind": "server_error", "status": 502}, {"kind": "rate_limited", "retry_after_secs": 1}])).await.status,
        200
    );
    assert_eq!(get(&sim, "/contents", &[]).await.status, 502);
    assert_eq!(get(&sim, "/contents", &[]).await.status, 429);
    assert_eq!(
        post(control("/faults"), json!({"kind": "explode"}))
            .await
            .status,
        400
    );

    assert_eq!(
        post(control("/credentials/revoke"), json!({})).await.status,
        200
    );
    assert_eq!(get(&sim, "/contents", &[]).await.status, 401);
    assert_eq!(
        post(control("/credentials/restore"), json!({}))
            .await
            .status,
        200
    );
    assert_eq!(get(&sim, "/contents", &[]).await.status, 200);

    assert_eq!(
        post(control("/lag"), json!({"lag_ms": 60_000}))
            .await
            .status,
        200
    );
    post(control("/contents"), json!({"subject": "Much later"})).await;
    let body = get(&sim, "/contents", &[("count", "100")])
        .await
        .jive_json();
    assert!(body["list"]
        .as_array()
        .is_some_and(|list| list.iter().all(|c| c["subject"] != "Much later")));

    let log = Answer::read(
        client()
            .get(control("/requests"))
            .send()
            .await
            .expect("log"),
    )
    .await;
    let recorded = log.json();
    assert_eq!(
        recorded.as_array().map(Vec::len),
        Some(sim.requests().len())
    );
    assert!(recorded[0]["path_and_query"]
        .as_str()
        .is_some_and(|p| p.starts_with("/api/core/v3/contents")));

    let unknown = Answer::read(
        client()
            .get(control("/nope"))
            .send()
            .await
            .expect("control"),
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["error"].is_string());
}

#[tokio::test]
async fn test_jive_generator_keeps_producing_activity() {
    let sim = JiveSimulator::start().await.expect("simulator starts");
    sim.spawn_generator(200.0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    sim.stop_generator();
    let produced = sim.content_count();
    assert!(produced > 5, "{produced} contents");
    let body = get(&sim, "/contents", &[("count", "100")])
        .await
        .jive_json();
    assert!(!ids(&body).is_empty());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let settled = sim.content_count();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        sim.content_count(),
        settled,
        "stopped generators stay stopped"
    );

    let started = Answer::read(
        client()
            .post(format!("http://{}/_sim/generate", sim.addr()))
            .json(&json!({"rate_per_sec": 100}))
            .send()
            .await
            .expect("control"),
    )
    .await;
    assert_eq!(started.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sim.content_count() > settled);
}

#[tokio::test]
async fn test_jive_shutdown_stops_the_server() {
    let sim = JiveSimulator::start().await.expect("simulator starts");
    let url = format!("{}/contents", sim.base_url());
    assert_eq!(get_url(&url).await.status, 200);
    let clone = sim.clone();
    clone.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let fresh = reqwest::Client::new();
    assert!(fresh.get(&url).bearer_auth(TOKEN).send().await.is_err());

    let dropped = JiveSimulator::start().await.expect("simulator starts");
    let dropped_url = format!("{}/contents", dropped.base_url());
    drop(dropped);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(reqwest::Client::new()
        .get(&dropped_url)
        .send()
        .await
        .is_err());
}

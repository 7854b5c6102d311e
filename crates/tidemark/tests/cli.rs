//! The `tidemark` command, run as a process: the demo prints live activity; `serve` answers
//! `/healthz` and `/metrics` and stops cleanly; `app create` prints a working API key; the
//! engine's and the notifier's metrics reach `/metrics`; bad arguments get clear errors;
//! `migrate` moves a store to PostgreSQL, where `serve` then accepts its API keys.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn tidemark() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    command.env("TIDEMARK_LOG", "warn");
    command
}

#[test]
fn test_demo_prints_the_activity_of_real_file_changes() {
    let output = tidemark().arg("demo").output().expect("demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for expected in [
        "add      unknown  folder  /reports",
        "add      unknown  file    /reports/q3.txt",
        "update   unknown  file    /notes.md",
        "update   rename   file    /notes.md -> /notes-final.md",
        "update   move     file    /reports/q3.txt -> /archive/q3.txt",
        "delete   unknown  file    /notes-final.md",
        "8 activities in the stream",
        "webhook  {\"account\":1,\"subscription\":1} (signed twice)",
    ] {
        assert!(
            stdout.contains(expected),
            "missing `{expected}` in demo output:\n{stdout}"
        );
    }
}

#[test]
fn test_demo_shows_the_jive_and_onna_simulators_activity() {
    for (service, expected) in [
        (
            "jive",
            [
                "add      unknown  file    Q3 plan",
                "update   unknown  file    Q3 plan",
                "add      unknown  file    Launch date?",
                "delete   unknown  file",
            ],
        ),
        (
            "onna",
            [
                "access   login    page    /login",
                "access   unknown  page    /dashboard",
                "add      unknown  source  Added SlackDatasource",
                "add      permission_create page    /dashboard/workspace",
            ],
        ),
    ] {
        let output = tidemark()
            .args(["demo", "--service", service])
            .output()
            .expect("demo runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "demo failed:\n{stdout}\n{stderr}");
        for line in expected
            .iter()
            .chain(["5 activities in the stream", "(signed twice)"].iter())
        {
            assert!(
                stdout.contains(line),
                "missing `{line}` in the {service} demo output:\n{stdout}"
            );
        }
    }
    let output = tidemark()
        .args(["demo", "--service", "gopher"])
        .output()
        .expect("demo runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("gopher"));
}

#[test]
fn test_simulate_serves_jive_with_generated_activity_until_stopped() {
    use std::io::BufRead as _;
    let mut child = tidemark()
        .args(["simulate", "jive", "--generate", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("simulate starts");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .expect("first line");
    let printed: serde_json::Value = serde_json::from_str(&line).expect("one JSON line");
    let base = printed["base_url"].as_str().expect("base_url").to_owned();
    assert_eq!(printed["account_config"]["base_url"], base.as_str());
    let address = base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host:port")
        .to_owned();
    let path = format!(
        "{}/contents?sort=latestActivityAsc&count=100",
        base.trim_start_matches(&format!("http://{address}"))
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut stream = TcpStream::connect(&address).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        // admin:password, the simulator's default Basic credentials.
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic YWRtaW46cGFzc3dvcmQ=\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("throw 'allowIllegalResourceCall is false.';"));
        if response.contains("\"subject\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no generated content: {response}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("exits");
    assert!(
        status.success(),
        "simulate exits cleanly on SIGTERM: {status}"
    );
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn test_serve_answers_health_and_metrics_then_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let mut child = tidemark()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--db")
        .arg(format!(
            "sqlite://{}",
            dir.path().join("data/t.db").display()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    // On an empty database, serve creates the first application and prints its key once.
    let mut first_line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().expect("stdout")),
        &mut first_line,
    )
    .expect("first line");
    let bootstrap: serde_json::Value = serde_json::from_str(&first_line).expect("one JSON line");
    let api_key = bootstrap["api_key"].as_str().expect("api_key").to_owned();
    assert!(bootstrap["application_id"].is_i64(), "{bootstrap}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        if let Some(response) = http_get(port, "/healthz") {
            break response;
        }
        assert!(Instant::now() < deadline, "serve never answered");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains(r#"{"status":"ok"}"#));
    let metrics = http_get(port, "/metrics").expect("metrics");
    assert!(metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    assert!(
        metrics.contains("tidemark_http_requests_total{") && metrics.contains("route=\"/healthz\""),
        "requests by route and status: {metrics}"
    );
    assert!(
        metrics.contains("tidemark_http_request_duration_seconds"),
        "latency: {metrics}"
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        stream,
        "GET /v1/application HTTP/1.1\r\nHost: localhost\r\nAuthorization: APIKey {api_key}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut application = String::new();
    stream.read_to_string(&mut application).expect("response");
    assert!(application.starts_with("HTTP/1.1 200"), "{application}");
    assert!(
        application.contains("\"track_activity\":false"),
        "{application}"
    );
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "serve exited with {status}");
            break;
        }
        assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        dir.path().join("data/t.db").exists(),
        "the store was created"
    );
}

#[test]
fn test_bad_database_urls_are_refused_clearly() {
    let output = tidemark()
        .args(["serve", "--db", "postgres://u:hunter2@127.0.0.1:notaport/x"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid PostgreSQL URL"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the password is not echoed: {stderr}"
    );
    let output = tidemark()
        .args(["serve", "--db", "mysql://x"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("expected sqlite://PATH or postgres://")
    );
}

#[test]
fn test_lease_and_webhook_timeouts_out_of_range_are_refused_clearly() {
    for (flag, value) in [
        ("--lease-ttl-secs", "1"),
        ("--webhook-read-timeout-secs", "0"),
        ("--webhook-claim-ttl-secs", "soon"),
    ] {
        let output = tidemark()
            .args(["serve", flag, value])
            .output()
            .expect("runs");
        assert!(!output.status.success(), "{flag} {value} accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
    }
}

#[test]
fn test_a_bad_webhook_ca_file_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("missing.pem");
    let output = tidemark()
        .args(["serve", "--webhook-ca-file"])
        .arg(&missing)
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("reading --webhook-ca-file"), "{stderr}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate\n").expect("write");
    let output = tidemark()
        .env("TIDEMARK_WEBHOOK_CA_FILE", &empty)
        .arg("serve")
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("holds no certificate"), "{stderr}");
}

#[test]
fn test_small_benchmarks_run_and_report_ratios() {
    let dir = tempfile::tempdir().expect("dir");
    let output = tidemark()
        .args([
            "bench",
            "ingest",
            "--activities",
            "3000",
            "--batch",
            "500",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(r#""bench":"ingest""#) && stdout.contains(r#""ratio":"#),
        "{stdout}"
    );
    let output = tidemark()
        .args(["bench", "read", "--activities", "3000", "--dir"])
        .arg(dir.path())
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains(r#""pages":4"#), "{stdout}");
    let output = tidemark()
        .args([
            "bench",
            "webhooks",
            "--subscriptions",
            "20",
            "--seconds",
            "1",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(r#""bench":"webhooks""#)
            && stdout.contains(r#""ratio_to_baseline":"#)
            && stdout.contains(r#""webhooks_per_1000_activities_bursts":"#),
        "{stdout}"
    );
}

/// A `tidemark serve` process, killed when dropped (a failing test leaves no server behind).
struct Served {
    child: std::process::Child,
    base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `serve` on the SQLite file `db` (with `extra` arguments) and waits until it answers.
async fn serve_on(db: &std::path::Path, extra: &[&str]) -> Served {
    serve_on_url(&format!("sqlite://{}", db.display()), extra).await
}

/// Starts `serve` on the database URL `db` (with `extra` arguments) and waits until it answers.
async fn serve_on_url(db: &str, extra: &[&str]) -> Served {
    let port = free_port();
    let child = tidemark()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--db", db])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let served = Served {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while client
        .get(format!("{}/healthz", served.base))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "serve never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    served
}

/// `tidemark app create --name NAME` on `db`: its stdout, parsed as the one JSON line it
/// must be.
fn app_create(db: &std::path::Path, name: &str) -> serde_json::Value {
    let output = tidemark()
        .args(["app", "create", "--name", name])
        .arg("--db")
        .arg(format!("sqlite://{}", db.display()))
        .output()
        .expect("app create runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "app create failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line: {stdout:?}");
    let printed: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON");
    let keys: Vec<&String> = printed.as_object().expect("an object").keys().collect();
    assert_eq!(keys, ["api_key", "application_id"], "{printed}");
    printed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_app_create_prints_an_api_key_that_serve_accepts() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("data/t.db");
    let first = app_create(&db, "Acme");
    let second = app_create(&db, "Globex");
    assert_eq!(first["application_id"], 1, "{first}");
    assert_eq!(second["application_id"], 2, "{second}");
    let first_key = first["api_key"].as_str().expect("api_key").to_owned();
    let second_key = second["api_key"].as_str().expect("api_key").to_owned();
    assert_ne!(first_key, second_key);

    // The database is not empty, so serve bootstraps nothing: the printed keys must work.
    let served = serve_on(&db, &[]).await;
    let client = reqwest::Client::new();
    let application = |key: String| {
        let request = client
            .get(format!("{}/v1/application", served.base))
            .header("Authorization", format!("APIKey {key}"));
        async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.expect("JSON body");
            (status, body)
        }
    };
    let (status, body) = application(first_key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["id"].as_i64(), body["name"].as_str()),
        (Some(1), Some("Acme"))
    );
    let (status, body) = application(second_key).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["id"].as_i64(), body["name"].as_str()),
        (Some(2), Some("Globex"))
    );
    let (status, body) = application("tmk_not_a_key_anyone_was_given".into()).await;
    assert_eq!(status, 401, "an unknown key is refused: {body}");
}

/// The value of the sample of `name` whose labels include every one of `labels`
/// (`key="value"`), in Prometheus text.
fn sample(metrics: &str, name: &str, labels: &[&str]) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let (label_text, value) = match rest.strip_prefix('{') {
            Some(labelled) => labelled.split_once("} ")?,
            None => ("", rest.strip_prefix(' ')?),
        };
        let have: Vec<&str> = label_text.split(',').collect();
        labels
            .iter()
            .all(|label| have.contains(label))
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

#[derive(Default)]
struct WebhookReceiver {
    delivered: std::sync::atomic::AtomicUsize,
}

/// Answers the endpoint test (`{}`) with the application id, and counts notifications.
async fn receive_webhook(
    axum::extract::State(receiver): axum::extract::State<std::sync::Arc<WebhookReceiver>>,
    body: axum::body::Bytes,
) -> String {
    if body.as_ref() == b"{}" {
        return "1".into();
    }
    receiver
        .delivered
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    String::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_metrics_show_polls_commits_leases_and_webhook_attempts() {
    const KEY: &str = "tmk_metrics_test_key_0123456789";
    let dir = tempfile::tempdir().expect("dir");
    let watched = dir.path().join("watched");
    std::fs::create_dir(&watched).expect("mkdir");
    let receiver = std::sync::Arc::new(WebhookReceiver::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hook = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive_webhook))
        .with_state(std::sync::Arc::clone(&receiver));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let served = serve_on(&dir.path().join("data/t.db"), &["--bootstrap-api-key", KEY]).await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: serde_json::Value| {
        let request = client
            .post(format!("{}{path}", served.base))
            .header("Authorization", format!("APIKey {KEY}"))
            .json(&body);
        async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.expect("JSON body");
            assert_eq!(status, 201, "{body}");
            body
        }
    };
    post("/v1/webhooks", serde_json::json!({ "url": hook })).await;
    let account = post(
        "/v1/accounts",
        serde_json::json!({"service": "local", "config": {"path": watched}}),
    )
    .await;
    let account_id = account["id"].as_i64().expect("account id");
    post(
        &format!("/v2/accounts/{account_id}/subscriptions"),
        serde_json::json!({}),
    )
    .await;
    // Before or after the subscription's first poll, a new file is an `add`.
    std::fs::write(watched.join("report.txt"), "q3 figures").expect("write");

    let expectations: [(&str, &[&str]); 5] = [
        (
            "tidemark_engine_activities_committed_total",
            &[r#"service="local""#],
        ),
        (
            "tidemark_engine_polls_total",
            &[r#"service="local""#, r#"outcome="ok""#],
        ),
        ("tidemark_engine_leases_acquired_total", &[]),
        ("tidemark_engine_leases_held", &[]),
        (
            "tidemark_notify_webhook_attempts_total",
            &[r#"result="delivered""#],
        ),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    let metrics = loop {
        let metrics = client
            .get(format!("{}/metrics", served.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        let counted = |name: &str, labels: &[&str]| sample(&metrics, name, labels);
        let complete = receiver.delivered.load(std::sync::atomic::Ordering::SeqCst) >= 1
            && expectations
                .iter()
                .filter(|(name, _)| *name != "tidemark_engine_leases_held")
                .all(|(name, labels)| counted(name, labels).is_some_and(|value| value >= 1.0));
        if complete {
            break metrics;
        }
        assert!(
            Instant::now() < deadline,
            "metrics incomplete ({} webhooks delivered):\n{metrics}",
            receiver.delivered.load(std::sync::atomic::Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let held = sample(&metrics, "tidemark_engine_leases_held", &[]).expect("leases held gauge");
    assert!((0.0..=1.0).contains(&held), "one subscription: {held}");
    // Each crate describes its metrics where its component starts.
    for (name, _) in expectations {
        assert!(
            metrics.contains(&format!("# HELP {name} ")),
            "{name} has no description:\n{metrics}"
        );
    }
}

/// `tidemark migrate --from sqlite://DB --to URL`: its exit status, stdout and stderr.
fn migrate(db: &std::path::Path, to: &str) -> (bool, String, String) {
    let output = tidemark()
        .arg("migrate")
        .arg("--from")
        .arg(format!("sqlite://{}", db.display()))
        .args(["--to", to])
        .output()
        .expect("migrate runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_migrate_moves_a_store_to_postgres_where_its_api_keys_still_work() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("t.db");
    let first = app_create(&db, "Acme");
    let second = app_create(&db, "Globex");
    let database = tidemark_store::pgtest::TestDatabase::create().await;

    let (ok, stdout, stderr) = migrate(&db, &database.url);
    assert!(ok, "migrate failed:\n{stdout}\n{stderr}");
    let line = |table: &str| {
        stdout
            .lines()
            .find(|line| line.split_whitespace().next() == Some(table))
            .map(|line| line.split_whitespace().nth(1).unwrap_or("").to_owned())
    };
    assert_eq!(line("applications").as_deref(), Some("2"), "{stdout}");
    assert_eq!(line("api_keys").as_deref(), Some("2"), "{stdout}");
    assert_eq!(line("activity").as_deref(), Some("0"), "{stdout}");
    assert!(stdout.contains("copied 5 rows in "), "{stdout}");

    // A second run finds the target holding data and refuses it.
    let (ok, stdout, stderr) = migrate(&db, &database.url);
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("already holds Tidemark data"), "{stderr}");

    // Served from PostgreSQL, the keys printed by the SQLite store authenticate.
    let served = serve_on_url(&database.url, &[]).await;
    let client = reqwest::Client::new();
    for printed in [&first, &second] {
        let key = printed["api_key"].as_str().expect("api_key");
        let response = client
            .get(format!("{}/v1/application", served.base))
            .header("Authorization", format!("APIKey {key}"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status().as_u16(), 200);
        let body: serde_json::Value = response.json().await.expect("JSON body");
        assert_eq!(body["id"], printed["application_id"], "{body}");
    }
}

#[test]
fn test_migrate_refuses_bad_input_clearly_without_passwords() {
    let dir = tempfile::tempdir().expect("dir");
    let missing = dir.path().join("missing.db");
    let not_sqlite = dir.path().join("notes.txt");
    std::fs::write(&not_sqlite, "x".repeat(4096)).expect("write");
    for (from, to, expected) in [
        (
            format!("sqlite://{}", missing.display()),
            "postgres://u:hunter2@127.0.0.1:1/x",
            "missing.db",
        ),
        (
            format!("sqlite://{}", not_sqlite.display()),
            "postgres://u:hunter2@127.0.0.1:1/x",
            "is not a SQLite database",
        ),
        (
            format!("sqlite://{}", missing.display()),
            "mysql://u:hunter2@h/x",
            "expected sqlite://PATH or postgres://",
        ),
        (
            "postgres://u:hunter2@h/x".to_owned(),
            "postgres://u:hunter2@h/x",
            "--from must name a SQLite store",
        ),
        (
            format!("sqlite://{}", missing.display()),
            "sqlite://other.db",
            "--to must name a PostgreSQL database",
        ),
    ] {
        let output = tidemark()
            .args(["migrate", "--from", &from, "--to", to])
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{from} -> {to}");
        assert!(stderr.contains(expected), "{from} -> {to}: {stderr}");
        assert!(!stderr.contains("hunter2"), "password echoed: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(!missing.exists(), "migrate never creates its source");

    // An unreachable server, with a real source.
    let db = dir.path().join("t.db");
    app_create(&db, "Acme");
    let (ok, stdout, stderr) = migrate(&db, "postgres://u:hunter2@127.0.0.1:1/x");
    assert!(!ok, "{stdout}");
    assert!(
        stderr.contains("connecting to postgres://u@127.0.0.1:1/x"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "password echoed: {stderr}");
}

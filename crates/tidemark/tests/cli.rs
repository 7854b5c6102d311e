//! The `tidemark` command, run as a process: the demo prints live activity; `serve` answers
//! `/healthz` and `/metrics` and stops cleanly; bad arguments get clear errors.

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
        .args(["serve", "--db", "postgres://localhost/x"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not_implemented"), "{stderr}");
    let output = tidemark()
        .args(["serve", "--db", "mysql://x"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("expected sqlite://PATH"));
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

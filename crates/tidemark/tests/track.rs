//! `tidemark track` as a process against `tidemark serve`: killed with `kill -9` twice in the
//! middle of a run and restarted with the same `--state` and `--out`, its combined output is
//! every activity of `[start, watermark)` exactly once, in time order, as one reader of the
//! range sees it. Bad flags get clear errors.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;
use tidemark_client::{Auth, Client, NewAccount, NewSubscription};
use tidemark_model::{Activity, EventCategory, EventSubtype, EventType};
use tidemark_store::{CommitBatch, Store as _};

const API_KEY: &str = "tmk_track_crash_test_key_0123456789";

/// Activities in the crash test; `TIDEMARK_TRACK_CRASH_ACTIVITIES` sets another count.
fn activity_count() -> usize {
    std::env::var("TIDEMARK_TRACK_CRASH_ACTIVITIES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(100_000)
}

fn tidemark() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tidemark"));
    command.env("TIDEMARK_LOG", "warn");
    command
}

/// A child process, killed when dropped (a failing test leaves nothing running).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port")
}

async fn serve(db: &Path) -> (Running, String) {
    let port = free_port();
    let child = tidemark()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--bootstrap-api-key", API_KEY])
        .arg("--db")
        .arg(format!("sqlite://{}", db.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "serve never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (Running(child), base)
}

/// `count` activities over an hour from `start`, committed out of time order.
fn activities(account: i64, count: usize, start: DateTime<Utc>) -> Vec<Activity> {
    let hour_micros = 3_600_000_000u64;
    (0..count)
        .map(|i| {
            let mut activity = Activity::new(
                format!("a{i:07}"),
                account,
                EventCategory::Storage,
                EventType::Add,
                EventSubtype::Unknown,
            );
            // A stride coprime with the count scatters sequence order over the hour.
            let slot = (i as u64 * 7_919) % count as u64;
            let offset = slot * hour_micros / count as u64;
            activity.timestamp = Some(start + chrono::Duration::microseconds(offset as i64));
            activity.target = Some(json!({"id": format!("F{i}"), "name": format!("report-{i}.txt"),
                "type": "file", "api": "storage", "path": format!("/reports/{}/report-{i}.txt", i % 97)}));
            activity.raw = Some(json!({"object": {"event": "created", "n": i}}));
            activity
        })
        .collect()
}

/// The state file's JSON, once it is there.
fn read_state(path: &Path) -> Option<serde_json::Value> {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_kill_9_mid_run_then_restart_with_the_same_state_loses_and_repeats_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("data/t.db");
    let watched = dir.path().join("watched");
    std::fs::create_dir_all(&watched).expect("mkdir");
    let (_server, base) = serve(&db).await;
    let client = Client::new(&base, Auth::ApiKey(API_KEY.into())).expect("client");
    let account = client
        .create_account(&NewAccount {
            service: "local".into(),
            admin: false,
            config: json!({"path": watched}),
        })
        .await
        .expect("account");
    let subscription = client
        .create_subscription(account.id.into(), &NewSubscription::default())
        .await
        .expect("subscription");

    // The activity and its watermark, committed straight into the server's database.
    let count = activity_count();
    let now = Utc::now() - chrono::Duration::hours(3);
    let start = DateTime::from_timestamp_micros(now.timestamp_micros()).expect("time");
    let watermark = start + chrono::Duration::hours(1);
    let store = tidemark_store::SqliteStore::open(&db).expect("the server's database");
    let all = activities(account.id, count, start);
    for (index, batch) in all.chunks(5000).enumerate() {
        let last = (index + 1) * 5000 >= count;
        store
            .commit(CommitBatch {
                watermark: last.then_some(watermark),
                ..CommitBatch::new(subscription.id, batch).expect("encode")
            })
            .await
            .expect("commit");
    }
    let reference = client
        .read_range(
            account.id.into(),
            subscription.id.into(),
            start,
            Some(watermark),
            1000,
        )
        .await
        .expect("one reader")
        .activities;
    assert_eq!(reference.len(), count);

    let (out, state) = (dir.path().join("out.ndjson"), dir.path().join("state.json"));
    let track = || {
        tidemark()
            .args(["track", "--url", &base, "--api-key", API_KEY])
            .args([
                "--account",
                &account.id.to_string(),
                "--subscription",
                "default",
            ])
            .args(["--workers", "4", "--slices", "40", "--once"])
            .args(["--from", &tidemark_model::time::format(&start)])
            .arg("--out")
            .arg(&out)
            .arg("--state")
            .arg(&state)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("track starts")
    };
    // Two runs are killed without warning once a quarter, then two thirds, of the slices are
    // written; the third runs to the end.
    for kill_after in [10, 27] {
        let mut running = Running(track());
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if read_state(&state).is_some_and(|s| s["slices"].as_u64() >= Some(kill_after)) {
                break;
            }
            assert!(
                running.0.try_wait().expect("status").is_none(),
                "track ended before it could be killed"
            );
            assert!(Instant::now() < deadline, "track made no progress");
            std::thread::sleep(Duration::from_millis(2));
        }
        running.0.kill().expect("kill -9");
        running.0.wait().expect("reaped");
        let saved = read_state(&state).expect("the state file is whole after kill -9");
        assert!(
            saved["slices"].as_u64() < Some(40),
            "killed mid-run: {saved}"
        );
        let written = std::fs::metadata(&out).expect("out").len();
        assert!(saved["sink_mark"].as_u64() <= Some(written), "{saved}");
    }
    let output = track().wait_with_output().expect("track runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("tracked "), "{stderr}");

    let text = std::fs::read_to_string(&out).expect("out");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), reference.len(), "every activity exactly once");
    for (index, (line, expected)) in lines.iter().zip(&reference).enumerate() {
        let activity: Activity = serde_json::from_str(line).expect("each line is an activity");
        assert_eq!(&activity, expected, "line {index}");
    }
    let saved = read_state(&state).expect("state");
    assert_eq!(saved["activities"], count, "{saved}");
    assert_eq!(
        saved["position"],
        tidemark_model::time::format(&watermark),
        "up to the watermark: {saved}"
    );
}

#[test]
fn test_track_refuses_bad_flags_clearly() {
    let base = [
        "track",
        "--url",
        "http://127.0.0.1:9",
        "--subscription",
        "default",
    ];
    for (extra, expected) in [
        (
            vec![
                "--api-key",
                "k",
                "--account",
                "1",
                "--out",
                "-",
                "--workers",
                "0",
            ],
            "0 is not in 1..=256",
        ),
        (
            vec!["--api-key", "k", "--account", "x", "--out", "-"],
            "is not an account id",
        ),
        (
            vec![
                "--api-key",
                "k",
                "--account",
                "1",
                "--out",
                "-",
                "--from",
                "yesterday",
            ],
            "is not an ISO 8601 timestamp",
        ),
        (vec!["--account", "1", "--out", "-"], "--api-key <API_KEY>"),
        (
            vec!["--api-key", "k", "--account", "me", "--out", "-"],
            "--account me names a bearer token's account",
        ),
        (
            vec![
                "--api-key",
                "k",
                "--account",
                "1",
                "--out",
                "-",
                "--page-size",
                "5000",
            ],
            "5000 is not in 1..=1000",
        ),
        (
            vec![
                "--api-key",
                "k",
                "--account",
                "1",
                "--out",
                "-",
                "--poll-interval",
                "soon",
            ],
            "not a number of seconds",
        ),
    ] {
        let output = tidemark()
            .args(base)
            .args(&extra)
            .env_remove("TIDEMARK_API_KEY")
            .output()
            .expect("runs");
        assert!(!output.status.success(), "{extra:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{extra:?}: {stderr}");
    }
}

#[test]
fn test_bench_track_runs_small_and_reports_the_speedup() {
    let dir = tempfile::tempdir().expect("dir");
    let output = tidemark()
        .args([
            "bench",
            "track",
            "--activities",
            "3000",
            "--workers",
            "1,4",
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
    let last = stdout.lines().last().unwrap_or_default();
    let report: serde_json::Value = serde_json::from_str(last).expect("a JSON line last");
    assert_eq!(report["bench"], "track");
    assert_eq!(report["workers"], json!([1, 4]));
    assert_eq!(report["speedup"]["1"], 1.0);
    assert!(report["speedup"]["4"].as_f64() > Some(0.0), "{report}");
    assert!(
        report["activities_per_s"]["4"].as_f64() > Some(0.0),
        "{report}"
    );
}

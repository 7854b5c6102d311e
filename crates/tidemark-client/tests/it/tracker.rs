//! The parallel tracker over real HTTP: whatever the number of workers, its output is exactly
//! what one reader of `[start, watermark)` yields in time order; it follows a lagging upstream
//! round by round; it resumes from its state file after dying mid-slice without loss or
//! duplicates.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, Utc};
use tidemark_client::tracker::{
    ActivitySink, NdjsonFile, NdjsonWriter, Sink, Slice, TrackError, Tracker, TrackerConfig,
};
use tidemark_client::Client;
use tidemark_model::Activity;

use crate::harness::{micros, spread, TestServer};

/// Activities in the large test; `TIDEMARK_TRACK_TEST_ACTIVITIES` sets another count (the
/// issue's 1,000,000, say).
fn large_count() -> usize {
    std::env::var("TIDEMARK_TRACK_TEST_ACTIVITIES")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(100_000)
}

/// What one reader of `[from, until)` yields, in pages of 1000.
async fn single_reader(
    client: &Client,
    account: i64,
    subscription: i64,
    from: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<Activity> {
    client
        .read_range(account.into(), subscription.into(), from, Some(until), 1000)
        .await
        .expect("reference read")
        .activities
}

/// Parses NDJSON output, one activity per line.
fn parse_lines(bytes: &[u8]) -> Vec<Activity> {
    std::str::from_utf8(bytes)
        .expect("utf-8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is an activity"))
        .collect()
}

/// Equal lists, reported by the first difference (the lists are long).
fn assert_same(what: &str, actual: &[Activity], expected: &[Activity]) {
    if actual == expected {
        return;
    }
    let first = actual
        .iter()
        .zip(expected)
        .position(|(a, e)| a != e)
        .unwrap_or(actual.len().min(expected.len()));
    let mut ids: Vec<&str> = actual.iter().map(|a| a.id.as_str()).collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    panic!(
        "{what}: {} activities, expected {}; first difference at {first}: {:?} instead of {:?}; {} repeated",
        actual.len(),
        expected.len(),
        actual.get(first).map(|a| &a.id),
        expected.get(first).map(|a| &a.id),
        before - ids.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_tracker_with_1_4_and_16_workers_yields_exactly_what_one_range_reader_yields() {
    let server = TestServer::start().await;
    let client = server.client();
    let (account, subscription) = server.subscription().await;
    let count = large_count();
    let start = micros(Utc::now() - Duration::hours(3));
    // An hour of activity; the watermark at 50 minutes leaves the last ten above it, where
    // late activity may still land: the tracker must not deliver those.
    let activities = spread(account, "t", count, start, Duration::hours(1), 7);
    let watermark = start + Duration::minutes(50);
    server
        .commit(subscription, &activities, Some(watermark))
        .await;
    let reference = single_reader(&client, account, subscription, start, watermark).await;
    assert!(
        reference.len() > count * 4 / 5 && reference.len() < count * 7 / 8,
        "{} of {count} below the watermark",
        reference.len()
    );

    // 16 workers keep little in memory, so their slices spill to files.
    for (workers, spool_memory) in [(1, 32 << 20), (4, 32 << 20), (16, 64 << 10)] {
        let tracker = Tracker::new(
            client.clone(),
            account.into(),
            subscription.into(),
            TrackerConfig {
                workers,
                once: true,
                start: Some(start),
                spool_memory,
                ..TrackerConfig::default()
            },
        )
        .expect("tracker");
        let (sink, summary) = tracker
            .run(NdjsonWriter::new(Vec::new()))
            .await
            .expect("tracked");
        let output = parse_lines(&sink.into_inner());
        assert_same(&format!("{workers} workers"), &output, &reference);
        assert_eq!(summary.activities, reference.len() as u64);
        assert_eq!(
            summary.slices, workers as u64,
            "one round of one slice per worker"
        );
        assert_eq!(
            summary.position,
            Some(watermark),
            "up to the watermark, not past it"
        );
        let progress = tracker.progress();
        assert_eq!(progress.slices_released(), workers as u64);
        assert_eq!(progress.activities_read(), reference.len() as u64);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_tracker_follows_a_lagging_upstream_round_by_round_without_loss() {
    let server = TestServer::start().await;
    let client = server.client();
    let (account, subscription) = server.subscription().await;
    // A scaled upstream clock: each step is three minutes of upstream time; activity arrives
    // up to four minutes late (seed 000's delayed provider), so each step's activity lands
    // behind timestamps already committed, but never below the published watermark.
    let base = micros(Utc::now() - Duration::hours(5));
    let step = Duration::minutes(3);
    let lag = Duration::minutes(4);
    let steps = 25;
    let watermark_after = |k: i32| base + step * (k + 1) - lag;
    let final_watermark = watermark_after(steps - 1);

    let tracker = Tracker::new(
        client.clone(),
        account.into(),
        subscription.into(),
        TrackerConfig {
            workers: 4,
            poll_interval: StdDuration::from_millis(10),
            ..TrackerConfig::default()
        },
    )
    .expect("tracker");
    let progress = tracker.progress();
    let seen = Arc::new(Mutex::new(Vec::<Activity>::new()));
    let collected = Arc::clone(&seen);
    let sink = ActivitySink::new(move |activity| {
        collected
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?
            .push(activity);
        Ok(())
    });
    let stop = async {
        while progress.position() < Some(final_watermark) {
            tokio::time::sleep(StdDuration::from_millis(10)).await;
        }
    };
    let upstream = async {
        for k in 0..steps {
            // Step k's activity: from the last published watermark (or the start) to now.
            let from = if k == 0 { base } else { watermark_after(k - 1) };
            let now = base + step * (k + 1);
            let batch = spread(account, &format!("k{k}-"), 400, from, now - from, k as u64);
            server
                .commit(subscription, &batch, Some(watermark_after(k)))
                .await;
            tokio::time::sleep(StdDuration::from_millis(30)).await;
        }
    };
    let (tracked, ()) = tokio::join!(tracker.run_until(sink, stop), upstream);
    let (_, summary) = tracked.expect("tracked");

    // Late activity of step 1 lands before `base`, behind the first watermark.
    let reference = single_reader(
        &client,
        account,
        subscription,
        base - Duration::hours(1),
        final_watermark,
    )
    .await;
    let output = seen.lock().expect("seen").clone();
    assert_same("lagging upstream", &output, &reference);
    assert!(summary.rounds > 3, "followed in rounds: {summary:?}");
    assert_eq!(summary.position, Some(final_watermark));
    // What is above the final watermark was not delivered: it may still gain late activity.
    let above = single_reader(
        &client,
        account,
        subscription,
        final_watermark,
        base + step * steps,
    )
    .await;
    assert!(!above.is_empty());
}

/// A file sink that fails (as a crash would stop it) after accepting `budget` activities.
#[derive(Debug)]
struct DyingSink {
    inner: NdjsonFile,
    budget: usize,
}

impl Sink for DyingSink {
    fn resume(&mut self, saved: Option<u64>) -> io::Result<Option<u64>> {
        self.inner.resume(saved)
    }

    fn accept(&mut self, activity: &str) -> io::Result<()> {
        if self.budget == 0 {
            return Err(io::Error::other("the process died"));
        }
        self.budget -= 1;
        self.inner.accept(activity)
    }

    fn finish_slice(&mut self, slice: &Slice) -> io::Result<Option<u64>> {
        self.inner.finish_slice(slice)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_tracker_resumes_from_its_state_after_dying_mid_slice_without_loss_or_duplicates() {
    let server = TestServer::start().await;
    let client = server.client();
    let (account, subscription) = server.subscription().await;
    let start = micros(Utc::now() - Duration::hours(2));
    let activities = spread(account, "c", 20_000, start, Duration::hours(1), 11);
    let watermark = start + Duration::hours(1);
    server
        .commit(subscription, &activities, Some(watermark))
        .await;
    let reference = single_reader(&client, account, subscription, start, watermark).await;
    assert_eq!(reference.len(), 20_000);

    let dir = tempfile::tempdir().expect("dir");
    let (out, state) = (dir.path().join("out.ndjson"), dir.path().join("state.json"));
    let config = TrackerConfig {
        workers: 4,
        slices: Some(10),
        once: true,
        start: Some(start),
        state_path: Some(state.clone()),
        spool_dir: Some(dir.path().join("spool")),
        ..TrackerConfig::default()
    };
    let tracker = |config: &TrackerConfig| {
        Tracker::new(
            client.clone(),
            account.into(),
            subscription.into(),
            config.clone(),
        )
        .expect("tracker")
    };
    // Dies in the middle of the fourth slice (about 2,000 activities each)...
    let dying = DyingSink {
        inner: NdjsonFile::open(&out, false).expect("out"),
        budget: 7_000,
    };
    let error = tracker(&config)
        .run(dying)
        .await
        .expect_err("the sink died");
    assert!(matches!(error, TrackError::Sink(_)), "{error}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).expect("state")).expect("json");
    assert_eq!(saved["slices"], 3, "{saved}");
    let written = std::fs::metadata(&out).expect("out").len();
    assert!(
        saved["sink_mark"].as_u64() < Some(written),
        "the file holds part of the fourth slice beyond the saved mark: {saved}"
    );
    // ...and a torn last line, as `kill -9` during a write leaves.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&out)
        .and_then(|mut file| io::Write::write_all(&mut file, b"{\"id\":\"torn"))
        .expect("torn line");

    // Restarted with the same state and output (and another start, which the state overrides).
    let restarted = TrackerConfig {
        start: Some(start + Duration::minutes(30)),
        ..config.clone()
    };
    let (_, summary) = tracker(&restarted)
        .run(NdjsonFile::open(&out, false).expect("out"))
        .await
        .expect("resumed");
    assert_eq!(
        summary.slices, 10,
        "the rest of the range in ten new slices"
    );
    assert_eq!(summary.total_activities, 20_000);
    let output = parse_lines(&std::fs::read(&out).expect("out"));
    assert_same("after the crash", &output, &reference);

    // Caught up: a third run delivers nothing and leaves the output as it is.
    let before = std::fs::read(&out).expect("out");
    let (_, summary) = tracker(&config)
        .run(NdjsonFile::open(&out, false).expect("out"))
        .await
        .expect("nothing new");
    assert_eq!(summary.activities, 0);
    assert_eq!(std::fs::read(&out).expect("out"), before);
    let spooled: Vec<_> = std::fs::read_dir(dir.path().join("spool"))
        .map(|entries| entries.collect())
        .unwrap_or_default();
    assert!(spooled.is_empty(), "no spool file is left: {spooled:?}");

    // The state belongs to this subscription; another one is refused.
    let (other_account, other_subscription) = server.subscription().await;
    let error = Tracker::new(
        client.clone(),
        other_account.into(),
        other_subscription.into(),
        config.clone(),
    )
    .expect("tracker")
    .run(NdjsonWriter::new(Vec::new()))
    .await
    .expect_err("another subscription's state");
    assert!(error.to_string().contains("tracks account"), "{error}");
}

#[tokio::test]
async fn test_tracking_once_without_a_watermark_is_an_error_and_bad_configs_are_refused() {
    let server = TestServer::start().await;
    let client = server.client();
    let (account, subscription) = server.subscription().await;
    let activities = spread(account, "n", 10, Utc::now(), Duration::seconds(10), 5);
    server.commit(subscription, &activities, None).await;
    let tracker = Tracker::new(
        client.clone(),
        account.into(),
        subscription.into(),
        TrackerConfig {
            once: true,
            ..TrackerConfig::default()
        },
    )
    .expect("tracker");
    let error = tracker
        .run(NdjsonWriter::new(Vec::new()))
        .await
        .expect_err("no watermark");
    assert!(matches!(error, TrackError::NoWatermark), "{error}");

    for (config, needle) in [
        (
            TrackerConfig {
                workers: 0,
                ..TrackerConfig::default()
            },
            "workers",
        ),
        (
            TrackerConfig {
                page_size: 1001,
                ..TrackerConfig::default()
            },
            "page_size",
        ),
        (
            TrackerConfig {
                slices: Some(0),
                ..TrackerConfig::default()
            },
            "slices",
        ),
    ] {
        let error = Tracker::new(client.clone(), account.into(), subscription.into(), config)
            .expect_err(needle);
        assert!(error.to_string().contains(needle), "{error}");
    }
}

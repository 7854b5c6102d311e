//! `tidemark bench track`: the parallel time-range tracker over HTTP with 1, 4 and 16
//! workers against the real server on loopback, in one run, with the speed-up over one
//! worker.

use std::io::BufRead as _;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use serde::Deserialize;
use serde_json::json;
use tidemark_client::tracker::{NdjsonFile, Tracker, TrackerConfig};
use tidemark_client::{Auth, Client};
use tidemark_store::{CommitBatch, NewAccount, NewSubscription, SqliteStore, Store};

use super::{progress, synthetic, BenchDir};

/// Options of `tidemark bench track`.
#[derive(Debug, Args)]
pub struct TrackArgs {
    /// Activities in the subscription, their timestamps spread evenly over one day.
    #[arg(long, default_value_t = 1_000_000)]
    activities: u64,
    /// Worker counts to run, in this order (one worker is always measured, first, as the
    /// baseline of the speed-up).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: Vec<u16>,
    #[command(flatten)]
    dir: BenchDir,
}

/// One tracker run.
struct Run {
    workers: u16,
    seconds: f64,
    activities_per_s: f64,
}

pub async fn run(args: TrackArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.activities >= 1, "--activities must be at least 1");
    let mut workers = vec![1u16];
    workers.extend(args.workers.iter().copied().filter(|&w| w != 1));
    let dir = args.dir.create()?;
    let store = Arc::new(SqliteStore::open(dir.path().join("track.db"))?);
    let (application_id, api_key) =
        tidemark_server::bootstrap_application(&*store, "bench", None).await?;
    let account = store
        .create_account(NewAccount {
            application_id,
            service: "synthetic".into(),
            admin: false,
            config: json!({}),
            token_digest: None,
        })
        .await?;
    let subscription = store
        .create_subscription(NewSubscription::changes(account.id))
        .await?;
    println!(
        "bench track: {} activities over one day, workers {:?}, in {}",
        args.activities,
        workers,
        dir.path().display()
    );

    // The activity, a day of it, with the watermark at the end of the day.
    let now = chrono::Utc::now() - chrono::Duration::days(2);
    let start = chrono::DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now);
    let day_micros: i64 = 86_400_000_000;
    let step = (day_micros / i64::try_from(args.activities)?).max(1);
    let watermark = start + chrono::Duration::days(1);
    let bar = progress(args.activities, "filling");
    let mut next = 0u64;
    while next < args.activities {
        let end = (next + 5000).min(args.activities);
        let activities: Vec<_> = (next..end)
            .map(|i| {
                let mut activity = synthetic::activity(account.id, i, start);
                activity.timestamp = Some(start + chrono::Duration::microseconds(i as i64 * step));
                activity
            })
            .collect();
        store
            .commit(CommitBatch {
                watermark: (end == args.activities).then_some(watermark),
                ..CommitBatch::new(subscription.id, &activities)?
            })
            .await?;
        bar.inc(end - next);
        next = end;
    }
    bar.finish_and_clear();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let state = tidemark_server::AppState::new(store.clone(), None);
    let server = tokio::spawn(tidemark_server::serve(listener, state, async move {
        let _ = stop_rx.await;
    }));
    let client = Client::new(&base, Auth::ApiKey(api_key))?;

    let mut runs = Vec::new();
    for &count in &workers {
        let out = dir.path().join(format!("out-{count}.ndjson"));
        let tracker = Tracker::new(
            client.clone(),
            account.id.into(),
            subscription.id.into(),
            TrackerConfig {
                workers: usize::from(count),
                once: true,
                start: Some(start),
                state_path: Some(dir.path().join(format!("state-{count}.json"))),
                spool_dir: Some(dir.path().join("spool")),
                ..TrackerConfig::default()
            },
        )?;
        let timer = Instant::now();
        let (_, summary) = tracker.run(NdjsonFile::open(&out, false)?).await?;
        let seconds = timer.elapsed().as_secs_f64();
        anyhow::ensure!(
            summary.activities == args.activities,
            "{count} workers delivered {} activities, not {}",
            summary.activities,
            args.activities
        );
        verify_in_order(&out, args.activities)?;
        std::fs::remove_file(&out)?;
        let activities_per_s = args.activities as f64 / seconds;
        println!(
            "  {count:>3} workers  {seconds:>7.2} s  {activities_per_s:>9.0} activities/s  ({} slices)",
            summary.slices
        );
        runs.push(Run {
            workers: count,
            seconds,
            activities_per_s,
        });
    }
    let _ = stop_tx.send(());
    let _ = server.await;

    let baseline = runs.first().map_or(1.0, |run| run.activities_per_s);
    let mut rates = serde_json::Map::new();
    let mut speedups = serde_json::Map::new();
    let mut seconds = serde_json::Map::new();
    for run in &runs {
        let speedup = run.activities_per_s / baseline;
        if run.workers != 1 {
            println!(
                "  speed-up {:>3} workers / 1 worker: {speedup:.2}",
                run.workers
            );
        }
        rates.insert(run.workers.to_string(), json!(run.activities_per_s.round()));
        speedups.insert(
            run.workers.to_string(),
            json!((speedup * 100.0).round() / 100.0),
        );
        seconds.insert(
            run.workers.to_string(),
            json!((run.seconds * 100.0).round() / 100.0),
        );
    }
    println!(
        "{}",
        json!({"bench": "track", "activities": args.activities, "workers": workers,
               "seconds": seconds, "activities_per_s": rates, "speedup": speedups})
    );
    Ok(())
}

/// Checks that `path` holds the `expected` synthetic activities, each once, in time order
/// (their ids count up with their timestamps). Not timed.
fn verify_in_order(path: &std::path::Path, expected: u64) -> anyhow::Result<()> {
    #[derive(Deserialize)]
    struct Id<'a> {
        #[serde(borrow)]
        id: &'a str,
    }
    let file = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut count = 0u64;
    for line in file.lines() {
        let line = line?;
        let activity: Id<'_> = serde_json::from_str(&line)?;
        let wanted = format!("evt-{count:012}");
        anyhow::ensure!(
            activity.id == wanted,
            "line {count} of {} is {}, expected {wanted}",
            path.display(),
            activity.id
        );
        count += 1;
    }
    anyhow::ensure!(
        count == expected,
        "{} has {count} activities, expected {expected}",
        path.display()
    );
    Ok(())
}

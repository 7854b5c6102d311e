//! `tidemark bench ingest`: activities committed per second through the whole engine, as a
//! ratio over a bare batched SQLite insert of the same rows, measured in the same run.
//!
//! The two are interleaved in rounds (baseline chunk, engine chunk, baseline chunk, ...) so
//! that the machine's noise, which on shared hosts changes from second to second, falls on
//! both sides alike.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use rusqlite::params;
use serde_json::json;
use tidemark_engine::{Engine, EngineConfig};
use tidemark_store::{SqliteStore, Store};

use super::synthetic::{self, SyntheticConnector};
use super::{progress, BenchDir};

/// Options of `tidemark bench ingest`.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Activities to commit (on each side).
    #[arg(long, default_value_t = 1_000_000)]
    pub(super) activities: u64,
    /// Activities per connector page (= per commit), as the engine commits them; the baseline
    /// inserts in transactions of the same size.
    #[arg(long, default_value_t = 1000)]
    pub(super) batch: u64,
    /// Alternating baseline/engine rounds the activities are split into.
    #[arg(long, default_value_t = 10)]
    pub(super) rounds: u64,
    /// Skip the baseline (for profiling the engine path alone; no ratio is reported).
    #[arg(long)]
    no_baseline: bool,
    /// `postgres://USER@HOST:PORT/DB`: benchmark the PostgreSQL store instead, with 1 and 3
    /// nodes, against bare COPY and multi-row INSERT baselines (scratch databases are created
    /// on that server and dropped afterwards). Default: SQLite in `--dir`.
    #[arg(long)]
    pub(super) db: Option<String>,
    /// Subscriptions the activity is spread over (PostgreSQL only: nodes share them).
    #[arg(long, default_value_t = 12)]
    pub(super) subscriptions: usize,
    #[command(flatten)]
    dir: BenchDir,
}

pub async fn run(args: IngestArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.activities > 0 && args.batch > 0 && (1..=args.activities).contains(&args.rounds),
        "--activities, --batch and --rounds must be positive, with rounds <= activities"
    );
    if let Some(url) = &args.db {
        anyhow::ensure!(
            url.starts_with("postgres://") || url.starts_with("postgresql://"),
            "--db takes a postgres:// URL (SQLite is the default, in --dir)"
        );
        return super::ingest_pg::run(&args, url).await;
    }
    let dir = args.dir.create()?;
    let base = chrono::Utc::now();
    println!(
        "bench ingest: {} activities, {} per commit, {} interleaved rounds, in {}",
        args.activities,
        args.batch,
        args.rounds,
        dir.path().display()
    );

    // Baseline: the same rows, serialized beforehand (untimed), inserted in batched
    // transactions into a table with the same indexes, on the same disk.
    let baseline = Arc::new(std::sync::Mutex::new(Baseline::open(
        &dir.path().join("baseline.db"),
        base,
    )?));

    // The engine path: synthetic connector (fetch + normalize) -> encode -> dedup ->
    // sequence -> commit with checkpoint under a fenced lease, through the real scheduler.
    let store = Arc::new(SqliteStore::open(dir.path().join("engine.db"))?);
    let connector = Arc::new(SyntheticConnector::new(args.batch, base));
    let source = Arc::clone(&connector);
    let engine = Engine::with_connectors(
        store.clone(),
        EngineConfig {
            tick: Duration::from_millis(100),
            wake_debounce: Duration::from_millis(1),
            max_pages_per_lease: usize::MAX,
            ..EngineConfig::default()
        },
        Arc::new(move |_service: &str, _config: &serde_json::Value| {
            Ok(Arc::clone(&source) as Arc<dyn tidemark_connectors::Connector>)
        }),
    );
    let subscription = super::bench_subscription(&*store, "synthetic").await?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let engine_task = tokio::spawn(Arc::clone(&engine).run(async move {
        let _ = stop_rx.wait_for(|stopped| *stopped).await;
    }));
    // The first poll (with nothing available) sets the baseline checkpoint.
    while store.load_checkpoint(subscription.id).await?.is_none() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let bar = progress(
        args.activities * if args.no_baseline { 1 } else { 2 },
        "ingesting",
    );
    let mut baseline_time = Duration::ZERO;
    let mut engine_time = Duration::ZERO;
    let mut round_ratios = Vec::new();
    let mut commits = engine.subscribe_commits();
    for round in 0..args.rounds {
        let start = args.activities * round / args.rounds;
        let end = args.activities * (round + 1) / args.rounds;
        let mut round_baseline = None;
        if !args.no_baseline {
            let baseline = Arc::clone(&baseline);
            let batch = args.batch;
            let took = tokio::task::spawn_blocking(move || -> anyhow::Result<Duration> {
                let mut baseline = baseline
                    .lock()
                    .map_err(|_| anyhow::anyhow!("baseline poisoned"))?;
                baseline.insert(start, end, batch)
            })
            .await??;
            bar.inc(end - start);
            baseline_time += took;
            round_baseline = Some(took);
        }

        let timer = Instant::now();
        connector.available.store(end, Ordering::SeqCst);
        engine.request_poll(subscription.id);
        // Follow the engine's commit announcements rather than reading the store, so that
        // the measurement adds no readers to the database being written.
        let mut committed = 0;
        while committed < end {
            match tokio::time::timeout(Duration::from_secs(1), commits.recv()).await {
                Ok(Ok(notice)) => committed = committed.max(notice.last_sequence),
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) | Err(_) => {
                    committed = store.latest_sequence(subscription.id).await?;
                    if let Some(error) = store.poll_state(subscription.id).await?.last_error {
                        anyhow::bail!("engine poll failed: {error}");
                    }
                }
                Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => {
                    anyhow::bail!("engine stopped")
                }
            }
        }
        let took = timer.elapsed();
        bar.inc(end - start);
        engine_time += took;
        if let Some(baseline_took) = round_baseline {
            round_ratios.push(baseline_took.as_secs_f64() / took.as_secs_f64());
        }
    }
    bar.finish_and_clear();
    let _ = stop_tx.send(true);
    engine_task.await?;

    let engine_rate = args.activities as f64 / engine_time.as_secs_f64();
    println!(
        "  engine (whole path)     {engine_rate:>10.0} activities/s  ({:.1} s)",
        engine_time.as_secs_f64()
    );
    if args.no_baseline {
        return Ok(());
    }
    let average_bytes = baseline
        .lock()
        .map(|b| b.bytes as f64 / args.activities as f64)
        .unwrap_or(f64::NAN);
    let baseline_rate = args.activities as f64 / baseline_time.as_secs_f64();
    let ratio = engine_rate / baseline_rate;
    let rounds: Vec<String> = round_ratios.iter().map(|r| format!("{r:.2}")).collect();
    println!("  ratio per round         {}", rounds.join(" "));
    round_ratios.sort_by(f64::total_cmp);
    let median = round_ratios[round_ratios.len() / 2];
    println!(
        "  baseline (bare insert)  {baseline_rate:>10.0} rows/s  ({:.1} s)",
        baseline_time.as_secs_f64()
    );
    println!("  activity JSON size      {average_bytes:.0} bytes on average");
    println!("  ratio engine/baseline   {ratio:.2} overall, {median:.2} median of rounds  (target >= 0.70)");
    println!(
        "{}",
        json!({"bench": "ingest", "activities": args.activities, "batch": args.batch, "rounds": args.rounds,
               "avg_bytes": average_bytes.round(), "baseline_rows_per_s": baseline_rate.round(),
               "engine_activities_per_s": engine_rate.round(), "ratio": (ratio * 100.0).round() / 100.0,
               "median_round_ratio": (median * 100.0).round() / 100.0})
    );
    Ok(())
}

/// The bare-insert baseline: one SQLite connection, the activity table and its indexes.
struct Baseline {
    conn: rusqlite::Connection,
    base: chrono::DateTime<chrono::Utc>,
    bytes: usize,
}

impl Baseline {
    /// A fresh database with the store's own schema (so the activity table and its indexes
    /// are exactly the store's), written through a plain connection.
    fn open(path: &std::path::Path, base: chrono::DateTime<chrono::Utc>) -> anyhow::Result<Self> {
        drop(SqliteStore::open(path)?);
        let conn = rusqlite::Connection::open(path)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(Baseline {
            conn,
            base,
            bytes: 0,
        })
    }

    /// Inserts rows `start..end` in transactions of `batch`; returns the time spent inserting.
    fn insert(&mut self, start: u64, end: u64, batch: u64) -> anyhow::Result<Duration> {
        let mut elapsed = Duration::ZERO;
        let mut next = start;
        while next < end {
            let stop = (next + batch).min(end);
            // Serialization happens outside the timed section: the baseline measures the
            // database alone.
            let rows: Vec<(String, i64, String)> = (next..stop)
                .map(|index| synthetic::stored_row(index, self.base))
                .collect();
            self.bytes += rows.iter().map(|r| r.2.len()).sum::<usize>();
            let timer = Instant::now();
            let tx = self.conn.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO activity (subscription_id, sequence, activity_id, occurred_at, committed_at, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                let committed_at = chrono::Utc::now().timestamp_micros();
                for (offset, (id, occurred, body)) in rows.iter().enumerate() {
                    insert.execute(params![
                        1,
                        (next + offset as u64 + 1) as i64,
                        id,
                        occurred,
                        committed_at,
                        body
                    ])?;
                }
            }
            tx.commit()?;
            elapsed += timer.elapsed();
            next = stop;
        }
        Ok(elapsed)
    }
}

//! `tidemark bench read`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use tidemark_model::Cursor;
use tidemark_store::{CommitBatch, SqliteStore, Store};

use super::synthetic;
use super::{progress, BenchDir};

/// Options of `tidemark bench read`.
#[derive(Debug, Args)]
pub struct ReadArgs {
    /// Activities in the stream read.
    #[arg(long, default_value_t = 1_000_000)]
    activities: u64,
    /// Objects per page (the List Activity `page_size`).
    #[arg(long, default_value_t = 1000)]
    page_size: usize,
    #[command(flatten)]
    dir: BenchDir,
}

pub async fn run(args: ReadArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=1000).contains(&args.page_size),
        "--page-size must be in 1..=1000"
    );
    let dir = args.dir.create()?;
    let path = dir.path().join("read.db");
    let store = Arc::new(SqliteStore::open(&path)?);
    let subscription = super::bench_subscription(&*store, "synthetic").await?;
    println!(
        "bench read: {} activities, page_size {}, in {}",
        args.activities,
        args.page_size,
        dir.path().display()
    );

    let bar = progress(args.activities, "filling");
    let base = chrono::Utc::now();
    let mut next = 0u64;
    while next < args.activities {
        let end = (next + 5000).min(args.activities);
        let activities: Vec<_> = (next..end)
            .map(|i| synthetic::activity(subscription.account, i, base))
            .collect();
        store
            .commit(CommitBatch::new(subscription.id, &activities)?)
            .await?;
        next = end;
        bar.set_position(end);
    }
    bar.finish_and_clear();

    // Tidemark's read path, as List Activity runs it: decode the cursor, read a page and the
    // retained total, assemble the response body around the stored JSON, sign the next cursor.
    let key = store.cursor_key().clone();
    let mut cursor_text = Cursor::new(subscription.id, 0).encode(&key);
    let mut latencies = Vec::new();
    let mut bytes = 0usize;
    let started = Instant::now();
    loop {
        let timer = Instant::now();
        let position = Cursor::decode(&cursor_text, &key, subscription.id)?.position;
        let rows = store
            .read_activity(subscription.id, position, args.page_size)
            .await?;
        let total = store.activity_total(subscription.id).await?;
        let last = rows.last().map(|r| r.sequence).unwrap_or(position);
        cursor_text = Cursor::new(subscription.id, last).encode(&key);
        let mut body =
            String::with_capacity(rows.iter().map(|r| r.json.len() + 1).sum::<usize>() + 200);
        body.push_str("{\"objects\":[");
        for (index, row) in rows.iter().enumerate() {
            if index > 0 {
                body.push(',');
            }
            body.push_str(&row.json);
        }
        body.push_str(&format!(
            "],\"cursor\":\"{cursor_text}\",\"count\":{},\"total\":{total},\"type\":\"object_list\",\"api\":\"activity\"}}",
            rows.len()
        ));
        bytes += body.len();
        latencies.push(timer.elapsed());
        if rows.is_empty() {
            break;
        }
    }
    let elapsed = started.elapsed();
    let pages = latencies.len();

    // Baseline: the bare SELECT of the same pages on a plain connection to the same file.
    let baseline = {
        let path = path.clone();
        let subscription_id = subscription.id;
        let page_size = args.page_size as i64;
        tokio::task::spawn_blocking(move || -> anyhow::Result<Duration> {
            let conn = rusqlite::Connection::open(&path)?;
            let mut stmt = conn.prepare(
                "SELECT sequence, committed_at, body FROM activity WHERE subscription_id = ?1 AND sequence > ?2 ORDER BY sequence LIMIT ?3",
            )?;
            let timer = Instant::now();
            let mut position = 0i64;
            loop {
                let mut rows = stmt.query(rusqlite::params![subscription_id, position, page_size])?;
                let mut any = false;
                while let Some(row) = rows.next()? {
                    let _body: String = row.get(2)?;
                    position = row.get(0)?;
                    any = true;
                }
                if !any {
                    break;
                }
            }
            Ok(timer.elapsed())
        })
        .await??
    };

    latencies.sort();
    let percentile = |p: f64| latencies[((pages as f64 - 1.0) * p).round() as usize];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pages_per_s = pages as f64 / elapsed.as_secs_f64();
    let baseline_pages_per_s = pages as f64 / baseline.as_secs_f64();
    println!(
        "  pages read              {pages} ({:.0} MB of responses)",
        bytes as f64 / 1e6
    );
    println!("  tidemark read path      {pages_per_s:>8.0} pages/s");
    println!("  baseline (bare SELECT)  {baseline_pages_per_s:>8.0} pages/s");
    println!(
        "  ratio tidemark/baseline {:.2}",
        pages_per_s / baseline_pages_per_s
    );
    println!(
        "  latency per page        p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms  (target p99 < 5 ms)",
        ms(percentile(0.5)),
        ms(percentile(0.99)),
        ms(percentile(1.0))
    );
    println!(
        "{}",
        json!({"bench": "read", "activities": args.activities, "page_size": args.page_size, "pages": pages,
               "pages_per_s": pages_per_s.round(), "baseline_pages_per_s": baseline_pages_per_s.round(),
               "ratio": (pages_per_s / baseline_pages_per_s * 100.0).round() / 100.0,
               "p50_ms": (ms(percentile(0.5)) * 100.0).round() / 100.0, "p99_ms": (ms(percentile(0.99)) * 100.0).round() / 100.0})
    );
    Ok(())
}

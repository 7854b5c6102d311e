//! `tidemark bench read`: following cursors over a whole stream at the store level.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use tidemark_model::{Cursor, CursorKey, SubscriptionId};
use tidemark_store::{CommitBatch, SqliteStore, Store, TimeRange};

use super::synthetic;
use super::{progress, BenchDir, Latencies};

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

/// Commits `count` synthetic activities to a subscription, 5,000 per commit.
pub(super) async fn fill(
    store: &dyn Store,
    subscription: &tidemark_model::Subscription,
    count: u64,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let base = chrono::Utc::now();
    let mut next = 0u64;
    while next < count {
        let end = (next + 5000).min(count);
        let activities: Vec<_> = (next..end)
            .map(|i| synthetic::activity(subscription.account, i, base))
            .collect();
        store
            .commit(CommitBatch::new(subscription.id, &activities)?)
            .await?;
        bar.inc(end - next);
        next = end;
    }
    Ok(())
}

/// One page along the path List Activity takes at the store: decode and verify the cursor,
/// read the page and the retained total from one snapshot, assemble the response body around
/// the stored JSON, sign the next cursor. Returns the next cursor, the body size and how many
/// activities the page held.
pub(super) async fn store_page(
    store: &dyn Store,
    key: &CursorKey,
    subscription_id: SubscriptionId,
    cursor: &str,
    page_size: usize,
) -> anyhow::Result<(String, usize, usize)> {
    let position = Cursor::decode(cursor, key, subscription_id)?.position;
    let mut body = Vec::with_capacity(page_size * 1400 + 256);
    body.extend_from_slice(b"{\"objects\":[");
    let page = store
        .read_page_json(subscription_id, position, page_size, body)
        .await?;
    let next = Cursor::new(subscription_id, page.last_sequence.unwrap_or(position)).encode(key);
    let mut body = page.out;
    body.extend_from_slice(
        format!(
            "],\"cursor\":\"{next}\",\"count\":{},\"total\":{},\"type\":\"object_list\",\"api\":\"activity\"}}",
            page.count, page.total
        )
        .as_bytes(),
    );
    Ok((next, body.len(), page.count))
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
    fill(&*store, &subscription, args.activities, &bar).await?;
    bar.finish_and_clear();

    let key = store.cursor_key().clone();
    let mut cursor = Cursor::new(subscription.id, 0).encode(&key);
    let mut latencies = Latencies::default();
    let mut bytes = 0usize;
    let started = Instant::now();
    loop {
        let timer = Instant::now();
        let (next, size, count) =
            store_page(&*store, &key, subscription.id, &cursor, args.page_size).await?;
        latencies.record(timer.elapsed());
        bytes += size;
        cursor = next;
        if count == 0 {
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

    // The same stream read again as one time range (`from` before everything), along the
    // time index, then a narrow range at its very end: a range page should cost what a cursor
    // page costs, wherever the range lies in the stream.
    let everything = TimeRange {
        from_micros: i64::MIN,
        until_micros: None,
    };
    let mut range_latencies = Latencies::default();
    let mut after = None;
    loop {
        let timer = Instant::now();
        let body = Vec::with_capacity(args.page_size * 1400 + 256);
        let page = store
            .read_range_json(subscription.id, everything, after, args.page_size, body)
            .await?;
        range_latencies.record(timer.elapsed());
        if page.count == 0 {
            break;
        }
        after = page.last;
    }
    let tail_start = args.activities.saturating_sub(10_000);
    let tail_from = store
        .read_activity(subscription.id, tail_start, 1)
        .await?
        .first()
        .map(|row| row.activity())
        .transpose()?
        .and_then(|activity| activity.timestamp)
        .map_or(i64::MIN, |at| at.timestamp_micros());
    let mut tail_latencies = Latencies::default();
    for _ in 0..100 {
        let timer = Instant::now();
        let body = Vec::with_capacity(args.page_size * 1400 + 256);
        let tail = TimeRange {
            from_micros: tail_from,
            until_micros: None,
        };
        store
            .read_range_json(subscription.id, tail, None, args.page_size, body)
            .await?;
        tail_latencies.record(timer.elapsed());
    }
    let range_p99 = range_latencies.percentile_ms(0.99);
    let tail_p99 = tail_latencies.percentile_ms(0.99);

    let pages_per_s = pages as f64 / elapsed.as_secs_f64();
    let baseline_pages_per_s = pages as f64 / baseline.as_secs_f64();
    let (p50, p99, max) = (
        latencies.percentile_ms(0.5),
        latencies.percentile_ms(0.99),
        latencies.percentile_ms(1.0),
    );
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
    println!("  latency per page        p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms  (target p99 < 5 ms)");
    println!(
        "  time-range pages        p50 {:.2} ms, p99 {range_p99:.2} ms ({:.2}x the cursor p99); first page of a range at the end of the stream p99 {tail_p99:.2} ms",
        range_latencies.percentile_ms(0.5),
        range_p99 / p99.max(f64::EPSILON)
    );
    println!(
        "{}",
        json!({"bench": "read", "activities": args.activities, "page_size": args.page_size, "pages": pages,
               "pages_per_s": pages_per_s.round(), "baseline_pages_per_s": baseline_pages_per_s.round(),
               "ratio": (pages_per_s / baseline_pages_per_s * 100.0).round() / 100.0,
               "p50_ms": (p50 * 100.0).round() / 100.0, "p99_ms": (p99 * 100.0).round() / 100.0,
               "range_p99_ms": (range_p99 * 100.0).round() / 100.0, "tail_range_first_page_p99_ms": (tail_p99 * 100.0).round() / 100.0})
    );
    Ok(())
}

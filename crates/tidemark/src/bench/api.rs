//! `tidemark bench api`: List Activity over HTTP with concurrent readers, each following the
//! cursors of its own subscription, against the same reads done directly on the store in the
//! same run (what HTTP, authentication and routing add).
//!
//! With `--db postgres://...` the store is PostgreSQL (a scratch database on that server), and
//! the HTTP passes run against 1 node and against 3 nodes (servers with connection pools of
//! their own; readers spread over them, as behind a load balancer).

use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use serde::Deserialize;
use serde_json::json;
use tidemark_model::{Cursor, Subscription};
use tidemark_store::{NewAccount, NewSubscription, PostgresStore, SqliteStore, Store};

use super::read::{fill, store_page};
use super::{progress, BenchDir, Latencies};

/// Options of `tidemark bench api`.
#[derive(Debug, Args)]
pub struct ApiArgs {
    /// Activities in the store, split evenly over the readers' subscriptions.
    #[arg(long, default_value_t = 1_000_000)]
    activities: u64,
    /// Concurrent readers, each on its own subscription.
    #[arg(long, default_value_t = 4)]
    readers: usize,
    /// The List Activity `page_size`.
    #[arg(long, default_value_t = 1000)]
    page_size: usize,
    /// Alternating store/HTTP passes over all subscriptions (the added p99 is also reported
    /// as the median over rounds, which shared machines' bursts of noise disturb less).
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// `postgres://USER@HOST:PORT/DB`: read from the PostgreSQL store (scratch database on
    /// that server) through 1 and 3 nodes. Default: SQLite in `--dir`.
    #[arg(long)]
    db: Option<String>,
    #[command(flatten)]
    dir: BenchDir,
}

/// Bytes kept from the end of a response: the cursor, count, total, type and api fields.
const TAIL_BYTES: usize = 512;

/// The part of a List Activity response a reader needs, read from the fields after
/// `objects` without parsing the whole (about 1 MB) body: the readers share the machine with
/// the server, and a full parse on their side would be measured as server latency.
#[derive(Deserialize)]
struct PageSummary {
    cursor: String,
    count: usize,
}

impl PageSummary {
    fn read(body: &[u8]) -> anyhow::Result<Self> {
        let tail_start = body
            .windows(b"],\"cursor\":".len())
            .rposition(|window| window == b"],\"cursor\":")
            .ok_or_else(|| anyhow::anyhow!("no cursor in the List Activity response"))?;
        let tail = std::str::from_utf8(&body[tail_start + 2..])?;
        Ok(serde_json::from_str(&format!("{{{tail}"))?)
    }
}

struct Pass {
    latencies: Latencies,
    pages: usize,
    seconds: f64,
}

pub async fn run(args: ApiArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=1000).contains(&args.page_size),
        "--page-size must be in 1..=1000"
    );
    anyhow::ensure!(
        (1..=256).contains(&args.readers),
        "--readers must be in 1..=256"
    );
    anyhow::ensure!(args.rounds >= 1, "--rounds must be at least 1");
    let dir = args.dir.create()?;
    let mut scratch = None;
    let store: Arc<dyn Store> = match &args.db {
        Some(url) => {
            anyhow::ensure!(
                url.starts_with("postgres://") || url.starts_with("postgresql://"),
                "--db takes a postgres:// URL (SQLite is the default, in --dir)"
            );
            let mut databases = super::ingest_pg::Scratch::connect(url).await?;
            let database = databases.create("api").await?;
            scratch = Some((databases, database.clone()));
            Arc::new(PostgresStore::connect(&database).await?)
        }
        None => Arc::new(SqliteStore::open(dir.path().join("api.db"))?),
    };
    let result = measure(&args, store, scratch.as_ref().map(|(_, url)| url.as_str())).await;
    if let Some((databases, _)) = scratch {
        databases.drop_all().await;
    }
    result
}

async fn measure(
    args: &ApiArgs,
    store: Arc<dyn Store>,
    postgres: Option<&str>,
) -> anyhow::Result<()> {
    let (application_id, api_key) =
        tidemark_server::bootstrap_application(&*store, "bench", None).await?;
    println!(
        "bench api: {} activities over {} subscriptions, {} concurrent readers, page_size {}, on {}",
        args.activities,
        args.readers,
        args.readers,
        args.page_size,
        if postgres.is_some() { "PostgreSQL" } else { "SQLite" }
    );
    let bar = progress(args.activities, "filling");
    let mut subscriptions = Vec::new();
    for reader in 0..args.readers as u64 {
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
        let share = args.activities * (reader + 1) / args.readers as u64
            - args.activities * reader / args.readers as u64;
        fill(&*store, &subscription, share, &bar).await?;
        subscriptions.push(subscription);
    }
    bar.finish_and_clear();

    // One node; with PostgreSQL, two more, each with a store (connection pool) of its own.
    let mut stores = vec![Arc::clone(&store)];
    if let Some(url) = postgres {
        for _ in 0..2 {
            stores.push(Arc::new(PostgresStore::connect(url).await?) as Arc<dyn Store>);
        }
    }
    let mut bases = Vec::new();
    let mut servers = Vec::new();
    for node_store in &stores {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        bases.push(format!("http://{}", listener.local_addr()?));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let state = tidemark_server::AppState::new(Arc::clone(node_store), None);
        servers.push((
            stop_tx,
            tokio::spawn(tidemark_server::serve(listener, state, async move {
                let _ = stop_rx.await;
            })),
        ));
    }
    let node_counts: Vec<usize> = if bases.len() > 1 { vec![1, 3] } else { vec![1] };
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.readers)
        .build()?;

    let new_pass = || Pass {
        latencies: Latencies::default(),
        pages: 0,
        seconds: 0.0,
    };
    let mut store_pass = new_pass();
    let mut http_passes: Vec<Pass> = node_counts.iter().map(|_| new_pass()).collect();
    let mut round_added = Vec::with_capacity(args.rounds);
    for _ in 0..args.rounds {
        let pass = run_pass(&subscriptions, |_, subscription| {
            let store = Arc::clone(&store);
            let page_size = args.page_size;
            async move { follow_store(&*store, &subscription, page_size).await }
        })
        .await?;
        let mut round_store = pass.latencies.clone();
        merge(&mut store_pass, pass);
        for (slot, &nodes) in node_counts.iter().enumerate() {
            let pass = run_pass(&subscriptions, |reader, subscription| {
                let client = client.clone();
                let url = format!(
                    "{}/v2/accounts/{}/subscriptions/{}/activity",
                    bases[reader % nodes],
                    subscription.account,
                    subscription.id
                );
                let auth = format!("APIKey {api_key}");
                let page_size = args.page_size;
                async move { follow_http(&client, &url, &auth, page_size).await }
            })
            .await?;
            if slot == 0 {
                let mut round_http = pass.latencies.clone();
                round_added.push(round_http.percentile_ms(0.99) - round_store.percentile_ms(0.99));
            }
            merge(&mut http_passes[slot], pass);
        }
    }
    round_added.sort_by(f64::total_cmp);
    let median_added = round_added[round_added.len() / 2];
    for (stop_tx, server) in servers {
        let _ = stop_tx.send(());
        server.await??;
    }

    let report = |name: &str, pass: &mut Pass| -> (f64, f64, f64) {
        let pages_per_s = pass.pages as f64 / pass.seconds;
        let (p50, p99) = (
            pass.latencies.percentile_ms(0.5),
            pass.latencies.percentile_ms(0.99),
        );
        println!("  {name:<22} {pages_per_s:>8.0} pages/s   p50 {p50:.2} ms   p99 {p99:.2} ms   ({} pages)", pass.pages);
        (pages_per_s, p50, p99)
    };
    let (store_rate, store_p50, store_p99) = report("store (same reads)", &mut store_pass);
    let mut http = Vec::new();
    for (slot, &nodes) in node_counts.iter().enumerate() {
        let name = if nodes == 1 {
            "HTTP List Activity".to_owned()
        } else {
            format!("HTTP, {nodes} nodes")
        };
        http.push(report(&name, &mut http_passes[slot]));
    }
    let (http_rate, http_p50, http_p99) = http[0];
    let added = http_p99 - store_p99;
    println!(
        "  HTTP adds (median of {} rounds) {median_added:.2} ms at p99",
        args.rounds
    );
    println!(
        "  HTTP adds               {added:.2} ms at p99 per {}-object page (target < 2 ms); p99 ratio HTTP/store {:.2}",
        args.page_size,
        http_p99 / store_p99
    );
    let mut summary = json!({"bench": "api", "store": if postgres.is_some() { "postgres" } else { "sqlite" },
           "activities": args.activities, "readers": args.readers, "page_size": args.page_size,
           "store_pages_per_s": store_rate.round(), "store_p50_ms": round2(store_p50), "store_p99_ms": round2(store_p99),
           "http_pages_per_s": http_rate.round(), "http_p50_ms": round2(http_p50), "http_p99_ms": round2(http_p99),
           "http_added_p99_ms": round2(added), "median_round_added_p99_ms": round2(median_added), "p99_ratio": round2(http_p99 / store_p99)});
    if let Some(&(three_rate, _, three_p99)) = http.get(1) {
        println!(
            "  3 nodes / 1 node        {:.2} pages/s; p99 ratio 3-node HTTP/store {:.2}",
            three_rate / http_rate,
            three_p99 / store_p99
        );
        summary["three_node_pages_per_s"] = json!(three_rate.round());
        summary["three_node_p99_ms"] = json!(round2(three_p99));
        summary["three_over_one"] = json!(round2(three_rate / http_rate));
    }
    println!("{summary}");
    Ok(())
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn merge(total: &mut Pass, pass: Pass) {
    total.pages += pass.pages;
    total.seconds += pass.seconds;
    total.latencies.extend(pass.latencies);
}

/// Runs one reader per subscription concurrently (told its index); each returns its page
/// latencies.
async fn run_pass<F, Fut>(subscriptions: &[Subscription], reader: F) -> anyhow::Result<Pass>
where
    F: Fn(usize, Subscription) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Latencies>> + Send + 'static,
{
    let started = Instant::now();
    let tasks: Vec<_> = subscriptions
        .iter()
        .cloned()
        .enumerate()
        .map(|(index, s)| tokio::spawn(reader(index, s)))
        .collect();
    let mut latencies = Latencies::default();
    for task in tasks {
        latencies.extend(task.await??);
    }
    Ok(Pass {
        pages: latencies.len(),
        latencies,
        seconds: started.elapsed().as_secs_f64(),
    })
}

async fn follow_store(
    store: &dyn Store,
    subscription: &Subscription,
    page_size: usize,
) -> anyhow::Result<Latencies> {
    let key = store.cursor_key().clone();
    let mut cursor = Cursor::new(subscription.id, 0).encode(&key);
    let mut latencies = Latencies::default();
    loop {
        let timer = Instant::now();
        let (next, _, count) = store_page(store, &key, subscription.id, &cursor, page_size).await?;
        latencies.record(timer.elapsed());
        cursor = next;
        if count == 0 {
            return Ok(latencies);
        }
    }
}

async fn follow_http(
    client: &reqwest::Client,
    url: &str,
    auth: &str,
    page_size: usize,
) -> anyhow::Result<Latencies> {
    let mut cursor: Option<String> = None;
    let mut latencies = Latencies::default();
    loop {
        let mut request = client
            .get(url)
            .header("Authorization", auth)
            .query(&[("page_size", page_size.to_string())]);
        if let Some(cursor) = &cursor {
            request = request.query(&[("cursor", cursor)]);
        }
        let timer = Instant::now();
        let mut response = request.send().await?;
        let status = response.status();
        // Read the whole body, keeping only its tail (where the cursor is).
        let mut tail: Vec<u8> = Vec::with_capacity(2 * TAIL_BYTES);
        while let Some(chunk) = response.chunk().await? {
            tail.extend_from_slice(&chunk[chunk.len().saturating_sub(TAIL_BYTES)..]);
            if tail.len() > TAIL_BYTES {
                tail.drain(..tail.len() - TAIL_BYTES);
            }
        }
        latencies.record(timer.elapsed());
        anyhow::ensure!(
            status.is_success(),
            "List Activity answered {status}: {}",
            String::from_utf8_lossy(&tail)
        );
        let page = PageSummary::read(&tail)?;
        cursor = Some(page.cursor);
        if page.count == 0 {
            return Ok(latencies);
        }
    }
}

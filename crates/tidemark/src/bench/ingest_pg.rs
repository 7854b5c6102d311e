//! `tidemark bench ingest --db postgres://...`: activities committed per second through whole
//! engines on the PostgreSQL store, with 1 node and with 3, against two bare baselines of the
//! same rows into the same schema on the same server, in the same run: batched binary `COPY`,
//! and batched multi-row `INSERT ... SELECT FROM unnest(...)`.
//!
//! The URL names a server (its database is used only to connect): the bench creates scratch
//! databases there and drops them at the end. Nodes are engines in this process, each with a
//! connection pool of its own, exactly as separate processes would use the server; the
//! activity is spread over several subscriptions so that nodes can share it. Rounds
//! interleave (baseline chunk, 1-node chunk, 3-node chunk, ...) so that noise falls on every
//! side alike.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use tidemark_engine::{Engine, EngineConfig};
use tidemark_store::{NewAccount, NewSubscription, PostgresStore, Store};
use tokio_postgres::types::{ToSql, Type};

use super::ingest::IngestArgs;
use super::progress;
use super::synthetic::{self, SyntheticConnector};

/// Scratch databases on the server, dropped (sessions and all) at the end.
pub(super) struct Scratch {
    admin: tokio_postgres::Client,
    names: Vec<String>,
    server_url: String,
}

impl Scratch {
    pub(super) async fn connect(url: &str) -> anyhow::Result<Self> {
        let (admin, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok(Scratch {
            admin,
            names: Vec::new(),
            server_url: url.to_owned(),
        })
    }

    /// Creates a database and returns its URL.
    pub(super) async fn create(&mut self, role: &str) -> anyhow::Result<String> {
        let name = format!("tidemark_bench_{role}_{}", std::process::id());
        // Two statements: DROP DATABASE refuses to run in the implicit transaction of a batch.
        self.admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await?;
        self.admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await?;
        self.names.push(name.clone());
        Ok(tidemark_store::postgres_url_with_database(
            &self.server_url,
            &name,
        ))
    }

    pub(super) async fn drop_all(self) {
        for name in &self.names {
            if let Err(error) = self
                .admin
                .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
            {
                tracing::warn!(%error, name, "could not drop a scratch database");
            }
        }
    }
}

/// Engines sharing one database, over `subscriptions` subscriptions each fed by its own
/// synthetic upstream.
struct Cluster {
    store: Arc<PostgresStore>,
    engines: Vec<Arc<Engine>>,
    stops: Vec<tokio::sync::watch::Sender<bool>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    upstreams: Vec<Arc<SyntheticConnector>>,
    subscriptions: Vec<i64>,
}

impl Cluster {
    async fn start(
        url: &str,
        nodes: usize,
        subscriptions: usize,
        batch: u64,
        base: chrono::DateTime<chrono::Utc>,
    ) -> anyhow::Result<Self> {
        let store = Arc::new(PostgresStore::connect(url).await?);
        let application = store.create_application("bench").await?;
        let mut ids = Vec::new();
        let mut upstreams = Vec::new();
        for index in 0..subscriptions {
            let account = store
                .create_account(NewAccount {
                    application_id: application.id,
                    service: "synthetic".into(),
                    admin: false,
                    config: json!({"upstream": index}),
                    token_digest: None,
                })
                .await?;
            ids.push(
                store
                    .create_subscription(NewSubscription::changes(account.id))
                    .await?
                    .id,
            );
            upstreams.push(Arc::new(SyntheticConnector::new(batch, base)));
        }
        let mut cluster = Cluster {
            store,
            engines: Vec::new(),
            stops: Vec::new(),
            tasks: Vec::new(),
            upstreams,
            subscriptions: ids,
        };
        for node in 0..nodes {
            // Each node has a store (a connection pool) of its own, as a process would.
            let node_store: Arc<dyn Store> = Arc::new(PostgresStore::connect(url).await?);
            let upstreams = cluster.upstreams.clone();
            let engine = Engine::with_connectors(
                node_store,
                EngineConfig {
                    node_id: format!("bench-node-{node}"),
                    tick: Duration::from_millis(50),
                    wake_debounce: Duration::from_millis(1),
                    max_pages_per_lease: usize::MAX,
                    ..EngineConfig::default()
                },
                Arc::new(move |_service: &str, config: &serde_json::Value| {
                    let index = config
                        .get("upstream")
                        .and_then(serde_json::Value::as_u64)
                        .and_then(|i| usize::try_from(i).ok())
                        .and_then(|i| upstreams.get(i))
                        .ok_or_else(|| {
                            tidemark_connectors::ConnectorError::BadConfig("no upstream".into())
                        })?;
                    Ok(Arc::clone(index) as Arc<dyn tidemark_connectors::Connector>)
                }),
            );
            let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
            cluster
                .tasks
                .push(tokio::spawn(Arc::clone(&engine).run(async move {
                    let _ = stop_rx.wait_for(|stopped| *stopped).await;
                })));
            cluster.stops.push(stop_tx);
            cluster.engines.push(engine);
        }
        // The first polls (nothing available yet) set every checkpoint.
        for &id in &cluster.subscriptions {
            while cluster.store.load_checkpoint(id).await?.is_none() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        Ok(cluster)
    }

    /// Makes the first `end` activities available (split over the subscriptions) and returns
    /// how long the nodes took to commit what was new.
    async fn ingest(&self, end: u64) -> anyhow::Result<Duration> {
        let shares = self.subscriptions.len() as u64;
        // Commit announcements of every node, merged: the measurement follows them rather than
        // reading the store, so it adds no load to the database being written.
        let (notices_tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
        let forwarders: Vec<_> = self
            .engines
            .iter()
            .map(|engine| {
                let mut commits = engine.subscribe_commits();
                let notices_tx = notices_tx.clone();
                tokio::spawn(async move {
                    loop {
                        match commits.recv().await {
                            Ok(notice) => {
                                let _ = notices_tx.send(Some(notice));
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                                let _ = notices_tx.send(None);
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        }
                    }
                })
            })
            .collect();
        drop(notices_tx);
        let timer = Instant::now();
        let mut remaining = std::collections::HashMap::new();
        for (index, (&id, upstream)) in self.subscriptions.iter().zip(&self.upstreams).enumerate() {
            let index = index as u64;
            let target = end * (index + 1) / shares - end * index / shares;
            upstream.available.store(target, Ordering::SeqCst);
            self.store.request_poll(id).await?;
            remaining.insert(id, target);
        }
        for engine in &self.engines {
            for &id in remaining.keys() {
                engine.request_poll(id);
            }
        }
        while !remaining.is_empty() {
            match tokio::time::timeout(Duration::from_secs(1), notices.recv()).await {
                Ok(Some(Some(notice))) => {
                    if remaining
                        .get(&notice.subscription_id)
                        .is_some_and(|&target| notice.last_sequence >= target)
                    {
                        remaining.remove(&notice.subscription_id);
                    }
                }
                // Lagged, quiet for a second, or closed: ask the store.
                _ => {
                    let mut done = Vec::new();
                    for (&id, &target) in &remaining {
                        if self.store.latest_sequence(id).await? >= target {
                            done.push(id);
                        } else if let Some(error) = self.store.poll_state(id).await?.last_error {
                            anyhow::bail!("engine poll failed: {error}");
                        }
                    }
                    for id in done {
                        remaining.remove(&id);
                    }
                }
            }
        }
        let took = timer.elapsed();
        for forwarder in forwarders {
            forwarder.abort();
        }
        Ok(took)
    }

    async fn stop(self) -> anyhow::Result<()> {
        for stop in &self.stops {
            let _ = stop.send(true);
        }
        for task in self.tasks {
            task.await?;
        }
        Ok(())
    }
}

/// The bare baselines: the same rows into the store's own `activity` table (same indexes) on
/// a plain connection, in transactions of `batch` rows.
struct Baseline {
    client: tokio_postgres::Client,
    base: chrono::DateTime<chrono::Utc>,
    bytes: usize,
}

type Row3 = (String, i64, String);

impl Baseline {
    async fn open(url: &str, base: chrono::DateTime<chrono::Utc>) -> anyhow::Result<Self> {
        // The store's own schema, created by its migrations.
        drop(PostgresStore::connect(url).await?);
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok(Baseline {
            client,
            base,
            bytes: 0,
        })
    }

    /// Rows `start..end`, serialized (outside the timing).
    fn rows(&mut self, start: u64, end: u64) -> Vec<Row3> {
        let rows: Vec<Row3> = (start..end)
            .map(|index| synthetic::stored_row(index, self.base))
            .collect();
        self.bytes += rows.iter().map(|r| r.2.len()).sum::<usize>();
        rows
    }

    /// Binary COPY, one transaction per batch.
    async fn copy(
        &mut self,
        subscription: i64,
        start: u64,
        end: u64,
        batch: u64,
    ) -> anyhow::Result<Duration> {
        let mut elapsed = Duration::ZERO;
        let mut next = start;
        while next < end {
            let stop = (next + batch).min(end);
            let rows = self.rows(next, stop);
            let timer = Instant::now();
            let tx = self.client.transaction().await?;
            let sink = tx
                .copy_in(
                    "COPY activity (subscription_id, sequence, activity_id, occurred_at, \
                     committed_at, body) FROM STDIN (FORMAT binary)",
                )
                .await?;
            let writer = tokio_postgres::binary_copy::BinaryCopyInWriter::new(
                sink,
                &[
                    Type::INT8,
                    Type::INT8,
                    Type::TEXT,
                    Type::INT8,
                    Type::INT8,
                    Type::TEXT,
                ],
            );
            let mut writer = std::pin::pin!(writer);
            let committed_at = chrono::Utc::now().timestamp_micros();
            for (offset, (id, occurred, body)) in rows.iter().enumerate() {
                let sequence = (next + offset as u64 + 1) as i64;
                let values: [&(dyn ToSql + Sync); 6] =
                    [&subscription, &sequence, id, occurred, &committed_at, body];
                writer.as_mut().write(&values).await?;
            }
            writer.as_mut().finish().await?;
            tx.commit().await?;
            elapsed += timer.elapsed();
            next = stop;
        }
        Ok(elapsed)
    }

    /// One multi-row INSERT (arrays through unnest) per batch, one transaction each.
    async fn insert(
        &mut self,
        subscription: i64,
        start: u64,
        end: u64,
        batch: u64,
    ) -> anyhow::Result<Duration> {
        let statement = self
            .client
            .prepare(
                "INSERT INTO activity (subscription_id, sequence, activity_id, occurred_at, \
                 committed_at, body) SELECT $1, $2 + t.ord, t.id, t.ts, $3, t.body \
                 FROM unnest($4::TEXT[], $5::BIGINT[], $6::TEXT[]) WITH ORDINALITY AS t(id, ts, body, ord)",
            )
            .await?;
        let mut elapsed = Duration::ZERO;
        let mut next = start;
        while next < end {
            let stop = (next + batch).min(end);
            let rows = self.rows(next, stop);
            let ids: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
            let times: Vec<i64> = rows.iter().map(|r| r.1).collect();
            let bodies: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
            let timer = Instant::now();
            let committed_at = chrono::Utc::now().timestamp_micros();
            self.client
                .execute(
                    &statement,
                    &[
                        &subscription,
                        &(next as i64),
                        &committed_at,
                        &ids,
                        &times,
                        &bodies,
                    ],
                )
                .await?;
            elapsed += timer.elapsed();
            next = stop;
        }
        Ok(elapsed)
    }
}

pub async fn run(args: &IngestArgs, url: &str) -> anyhow::Result<()> {
    let base = chrono::Utc::now();
    let mut scratch = Scratch::connect(url).await?;
    let result = measure(args, &mut scratch, base).await;
    scratch.drop_all().await;
    result
}

async fn measure(
    args: &IngestArgs,
    scratch: &mut Scratch,
    base: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    let subscriptions = args.subscriptions.max(1);
    println!(
        "bench ingest (PostgreSQL): {} activities on each side, {} per commit, {} subscriptions, \
         {} interleaved rounds",
        args.activities, args.batch, subscriptions, args.rounds
    );
    let mut baseline = Baseline::open(&scratch.create("baseline").await?, base).await?;
    let one = Cluster::start(
        &scratch.create("one").await?,
        1,
        subscriptions,
        args.batch,
        base,
    )
    .await?;
    let three = Cluster::start(
        &scratch.create("three").await?,
        3,
        subscriptions,
        args.batch,
        base,
    )
    .await?;

    let bar = progress(args.activities * 4, "ingesting");
    let (mut copy_time, mut insert_time) = (Duration::ZERO, Duration::ZERO);
    let (mut one_time, mut three_time) = (Duration::ZERO, Duration::ZERO);
    for round in 0..args.rounds {
        let start = args.activities * round / args.rounds;
        let end = args.activities * (round + 1) / args.rounds;
        // Baseline rows go to two subscription ids of their own (1: COPY, 2: INSERT), numbered
        // like the store numbers them.
        copy_time += baseline.copy(1, start, end, args.batch).await?;
        bar.inc(end - start);
        insert_time += baseline.insert(2, start, end, args.batch).await?;
        bar.inc(end - start);
        one_time += one.ingest(end).await?;
        bar.inc(end - start);
        three_time += three.ingest(end).await?;
        bar.inc(end - start);
    }
    bar.finish_and_clear();
    one.stop().await?;
    three.stop().await?;

    let rate = |time: Duration| args.activities as f64 / time.as_secs_f64();
    let (copy_rate, insert_rate) = (rate(copy_time), rate(insert_time));
    let (one_rate, three_rate) = (rate(one_time), rate(three_time));
    let average_bytes = baseline.bytes as f64 / (2 * args.activities) as f64;
    println!("  baseline COPY (binary)   {copy_rate:>10.0} rows/s");
    println!("  baseline multi-row INSERT{insert_rate:>10.0} rows/s");
    println!("  engine, 1 node           {one_rate:>10.0} activities/s");
    println!("  engine, 3 nodes          {three_rate:>10.0} activities/s");
    println!("  activity JSON size       {average_bytes:.0} bytes on average");
    println!(
        "  ratio 1 node / COPY      {:.2}   / INSERT {:.2}   (target >= 0.5)",
        one_rate / copy_rate,
        one_rate / insert_rate
    );
    println!(
        "  ratio 3 nodes / COPY     {:.2}   / INSERT {:.2}",
        three_rate / copy_rate,
        three_rate / insert_rate
    );
    println!("  3 nodes / 1 node         {:.2}", three_rate / one_rate);
    println!(
        "{}",
        json!({"bench": "ingest", "store": "postgres", "activities": args.activities,
               "batch": args.batch, "subscriptions": subscriptions, "rounds": args.rounds,
               "avg_bytes": average_bytes.round(), "copy_rows_per_s": copy_rate.round(),
               "insert_rows_per_s": insert_rate.round(), "one_node_per_s": one_rate.round(),
               "three_nodes_per_s": three_rate.round(),
               "ratio_one_node_copy": (one_rate / copy_rate * 100.0).round() / 100.0,
               "ratio_one_node_insert": (one_rate / insert_rate * 100.0).round() / 100.0,
               "three_over_one": (three_rate / one_rate * 100.0).round() / 100.0})
    );
    Ok(())
}

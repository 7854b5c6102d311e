//! `tidemark bench chaos`: several `tidemark serve` processes on one PostgreSQL database,
//! killed with `kill -9` at random moments and restarted while activity flows, then checked
//! for DESIGN.md's guarantees 1, 2, 3 and 5 end to end.
//!
//! # A run
//!
//! 1. `--nodes` real `tidemark serve` processes (this executable) start together on one
//!    database, each with its own port and `--node-id`, all with the same
//!    `--bootstrap-api-key` (they race to create the application).
//! 2. One simulator per subscription runs in this process, Jive and Onna in turn; an account is connected to
//!    each through the API (`POST /v1/accounts`, then a subscription), on random nodes, and a
//!    webhook endpoint is registered with a receiver in this process.
//! 3. For `--duration-secs`, the workload changes random simulators ([`upstream`] says how the
//!    expected streams stay exact) and now and then makes one misbehave; cursor readers follow
//!    every stream through List Activity on random nodes, and a range reader reads time
//!    ranges the server declares final (below the watermark); every `--kill-interval-ms`
//!    (randomly 0.5 to 1.5 times that) a fault strikes: mostly one random node killed with
//!    `SIGKILL` and restarted on its port after a random pause, sometimes under a new node id;
//!    sometimes every node at once, a node still starting, a node frozen (`SIGSTOP`) past its
//!    leases' lifetime, every node's database connections cut, or the webhook receiver
//!    refusing everything for a while ([`inflict`]).
//! 4. The workload stops. Within `--settle-timeout-secs`: every stream holds its simulator's
//!    changes, every subscription is polled once more (no lease is stuck), readers reach the
//!    end of every stream, and a webhook arrives after each subscription's last commit. The
//!    nodes are then stopped with `SIGTERM`.
//! 5. [`verify`] compares the streams (read from PostgreSQL) with the simulators, the readers
//!    and the final ranges, checks that no lease is left held, and prints the counts. Any
//!    violation fails the run (non-zero exit).
//!
//! # Database
//!
//! `--db postgres://...` names an empty database to use (it is left as the run leaves it).
//! Without it, a throw-away database is created on `--postgres-server` (default: the
//! `TIDEMARK_TEST_POSTGRES_URL` server, whose user must be allowed to create databases) and
//! dropped at the end.
//!
//! The short form runs in the test suite (`crates/tidemark/tests/chaos.rs`); the long form is
//! `tidemark bench chaos` with its defaults (see BENCHMARKS.md).

mod nodes;
mod observers;
mod upstream;
mod verify;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;
use tidemark_client::{Auth, Client, NewAccount, NewSubscription};

use nodes::{NodeSettings, Nodes};
use observers::Followed;
use verify::{StoredStream, Tally};

/// Options of `tidemark bench chaos`.
#[derive(Debug, Args)]
pub struct ChaosArgs {
    /// `tidemark serve` processes sharing the database.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=16))]
    nodes: u16,
    /// Subscriptions, each on its own account and simulator (Jive and Onna in turn).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=5000))]
    subscriptions: u32,
    /// Jive simulators only (no Onna accounts).
    #[arg(long)]
    jive_only: bool,
    /// Seconds of activity and kills.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration_secs: u64,
    /// Upstream changes a second, over all simulators.
    #[arg(long, default_value_t = 40.0)]
    rate: f64,
    /// Mean time between two kills, in milliseconds (each wait is 0.5 to 1.5 times this).
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(10..=3_600_000))]
    kill_interval_ms: u64,
    /// Longest time a killed node stays down before its restart, in milliseconds.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=600_000))]
    max_down_ms: u64,
    /// The nodes' `--lease-ttl-secs`: how long a killed node's leases hold up its subscriptions.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(2..=3600))]
    lease_ttl_secs: u64,
    /// Cursor readers (tasks), the subscriptions shared among them.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=1000))]
    readers: u32,
    /// Longest wait for quiescence after the workload stops, in seconds.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=3600))]
    settle_timeout_secs: u64,
    /// An empty PostgreSQL database for the run (`postgres://user@host:port/db`).
    #[arg(long)]
    db: Option<String>,
    /// Without `--db`: the server on which a throw-away database is created and dropped.
    #[arg(long, env = "TIDEMARK_TEST_POSTGRES_URL", hide_env_values = true)]
    postgres_server: Option<String>,
    /// Where the nodes' logs go (kept). Default: a temporary directory, kept only when the
    /// run fails.
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// `TIDEMARK_LOG` of the nodes.
    #[arg(long, default_value = "warn")]
    node_log: String,
    /// Seed of the kill schedule and the workload (default: random; printed).
    #[arg(long)]
    seed: Option<u64>,
}

/// The application key every node bootstraps with.
const API_KEY: &str = "tmk_chaos_bench_key_0123456789abcdef";

/// The nodes' webhook read timeout: with it a dead node's claim lapses after about ten
/// seconds (connect 3.05 s + read + the notifier's 5 s margin).
const WEBHOOK_READ_TIMEOUT_SECS: u64 = 2;

/// How long one node gets to start (migrations, bootstrap) and answer `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Concurrent API calls while connecting accounts.
const SETUP_CONCURRENCY: usize = 8;

pub async fn run(args: ChaosArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.rate.is_finite() && (0.0..=10_000.0).contains(&args.rate),
        "--rate must be between 0 and 10000 changes a second"
    );
    let (db_url, temp_db) = match (&args.db, &args.postgres_server) {
        (Some(db), _) => (db.clone(), None),
        (None, Some(server)) => {
            let temp = TempDatabase::create(server).await?;
            (temp.url.clone(), Some(temp))
        }
        (None, None) => anyhow::bail!(
            "give --db postgres://... (an empty database), or --postgres-server (or \
             TIDEMARK_TEST_POSTGRES_URL) naming a server where a throw-away database may be created"
        ),
    };
    anyhow::ensure!(
        db_url.starts_with("postgres://") || db_url.starts_with("postgresql://"),
        "--db must be a postgres:// URL"
    );
    let (log_dir, log_tempdir) = match &args.log_dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            (dir.clone(), None)
        }
        None => {
            let dir = tempfile::Builder::new()
                .prefix("tidemark-chaos-")
                .tempdir()?;
            (dir.path().to_owned(), Some(dir))
        }
    };
    let outcome = run_chaos(&args, &db_url, log_dir.clone()).await;
    // Give the run's connection time to close before the database is dropped under it.
    tokio::task::yield_now().await;
    if let Some(temp) = temp_db {
        temp.drop_database().await;
    }
    match outcome {
        Ok(tally) if tally.violations() == 0 => Ok(()),
        Ok(tally) => {
            if let Some(dir) = log_tempdir {
                let _ = dir.keep();
            }
            for message in &tally.messages {
                eprintln!("violation: {message}");
            }
            anyhow::bail!(
                "chaos run found {} violations (node logs in {})",
                tally.violations(),
                log_dir.display()
            )
        }
        Err(error) => {
            if let Some(dir) = log_tempdir {
                let _ = dir.keep();
            }
            Err(error.context(format!(
                "chaos run failed (node logs in {})",
                log_dir.display()
            )))
        }
    }
}

/// Everything of one run; returns the tally (violations included) or why it could not finish.
async fn run_chaos(args: &ChaosArgs, db_url: &str, log_dir: PathBuf) -> anyhow::Result<Tally> {
    let seed = args.seed.unwrap_or_else(rand::random);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    println!(
        "chaos: {} nodes, {} subscriptions, {} s at {} changes/s, a kill every ~{} ms, lease ttl {} s, seed {seed}",
        args.nodes, args.subscriptions, args.duration_secs, args.rate, args.kill_interval_ms, args.lease_ttl_secs
    );
    let db = Db::connect(db_url).await?;
    let settings = NodeSettings {
        exe: std::env::current_exe().context("finding the tidemark executable")?,
        db_url: db_url.to_owned(),
        api_key: API_KEY.to_owned(),
        lease_ttl_secs: args.lease_ttl_secs,
        webhook_read_timeout_secs: WEBHOOK_READ_TIMEOUT_SECS,
        webhook_claim_ttl_secs: 1,
        log_filter: args.node_log.clone(),
        log_dir,
    };
    let mut nodes = Nodes::new(settings, usize::from(args.nodes))?;
    // All at once: they race to migrate the schema and bootstrap the application.
    for index in 0..nodes.len() {
        nodes.spawn(index, false)?;
    }
    for index in 0..nodes.len() {
        nodes.wait_healthy(index, START_TIMEOUT).await?;
    }
    let clients = Arc::new(
        nodes
            .base_urls()
            .iter()
            .map(|base| node_client(base))
            .collect::<anyhow::Result<Vec<_>>>()?,
    );

    // Upstreams, accounts, subscriptions, the webhook endpoint.
    let upstreams = upstream::start(args.subscriptions as usize, !args.jive_only).await?;
    let application_id = application_id(&nodes.base_url(0)).await?;
    let (hook_url, receiver) = observers::start_receiver(application_id).await?;
    let followed = connect_accounts(&clients, &upstreams).await?;
    register_webhook(&nodes.base_url(0), &hook_url).await?;
    let subscription_ids: Vec<i64> = followed.iter().map(|f| f.subscription).collect();
    let followed_pairs: Vec<(i64, i64)> = followed
        .iter()
        .map(|f| (f.account, f.subscription))
        .collect();
    println!(
        "setup: {} accounts connected in {:.1} s",
        followed.len(),
        started.elapsed().as_secs_f64()
    );

    // Readers, the workload, and the kills.
    let (finish_readers, finish) = tokio::sync::watch::channel(false);
    let mut shares: Vec<Vec<Followed>> = (0..args.readers).map(|_| Vec::new()).collect();
    for (index, one) in followed.into_iter().enumerate() {
        shares[index % args.readers as usize].push(one);
    }
    let readers: Vec<_> = shares
        .into_iter()
        .map(|share| {
            tokio::spawn(observers::follow(
                Arc::clone(&clients),
                share,
                finish.clone(),
            ))
        })
        .collect();
    let range_reader = tokio::spawn(observers::read_final_ranges(
        Arc::clone(&clients),
        followed_pairs,
        chrono::Utc::now() - chrono::Duration::minutes(1),
        finish.clone(),
    ));
    let (stop_workload, workload_stop) = tokio::sync::watch::channel(false);
    let workload = tokio::spawn(upstream::generate(
        Arc::clone(&upstreams),
        args.rate,
        rng.random(),
        workload_stop,
    ));
    let chaos_started = Instant::now();
    let chaos_end = chaos_started + Duration::from_secs(args.duration_secs);
    let mut faults = FaultCounts::default();
    loop {
        let wait = Duration::from_millis(args.kill_interval_ms).mul_f64(rng.random_range(0.5..1.5));
        if Instant::now() + wait >= chaos_end {
            tokio::time::sleep_until(chaos_end.into()).await;
            break;
        }
        tokio::time::sleep(wait).await;
        if let Some((index, status)) = nodes.unexpected_exits().into_iter().next() {
            anyhow::bail!("node {index} exited by itself with {status} during the run");
        }
        inflict(&mut nodes, &db, &receiver, &mut rng, args, &mut faults).await?;
    }
    let _ = stop_workload.send(true);
    let (changes, upstream_faults) = workload.await.context("the workload task")?;
    if let Some((index, status)) = nodes.unexpected_exits().into_iter().next() {
        anyhow::bail!("node {index} exited by itself with {status} during the run");
    }
    let chaos_secs = chaos_started.elapsed().as_secs_f64();
    let expected: HashMap<i64, Vec<String>> = subscription_ids
        .iter()
        .zip(upstreams.iter())
        .map(|(id, upstream)| (*id, upstream::lock(upstream).expected.clone()))
        .collect();
    let kills = faults.kills;
    println!(
        "chaos: {kills} kills ({} of every node at once, {} while starting), {} pauses, {} database connection cuts, {} webhook receiver outages, {changes} upstream changes ({upstream_faults} upstream faults) in {chaos_secs:.1} s; settling",
        faults.whole_cluster, faults.during_startup, faults.pauses, faults.connection_cuts, faults.receiver_outages
    );

    // Quiescence, within one deadline.
    let settle_started = Instant::now();
    let deadline = settle_started + Duration::from_secs(args.settle_timeout_secs);
    let behind = wait_for(deadline, || async {
        let heads = db.heads().await?;
        Ok(expected
            .iter()
            .filter(|(id, changes)| {
                heads
                    .get(id)
                    .is_none_or(|head| head.last_sequence < changes.len() as i64)
            })
            .count())
    })
    .await?;
    anyhow::ensure!(
        behind == 0,
        "{behind} subscriptions still lack upstream changes after {} s",
        args.settle_timeout_secs
    );
    let caught_up_secs = settle_started.elapsed().as_secs_f64();
    // One more poll of every subscription: a lease left by a killed node must lapse.
    let tokens: HashMap<i64, i64> = db
        .heads()
        .await?
        .into_iter()
        .map(|(id, head)| (id, head.lease_token))
        .collect();
    let unpolled = wait_for(deadline, || async {
        let heads = db.heads().await?;
        Ok(tokens
            .iter()
            .filter(|(id, token)| heads.get(id).is_none_or(|head| head.lease_token <= **token))
            .count())
    })
    .await?;
    anyhow::ensure!(
        unpolled == 0,
        "{unpolled} subscriptions were not polled again within {} s of the workload's end (stuck leases?)",
        args.settle_timeout_secs
    );
    let _ = finish_readers.send(true);
    let mut seen: HashMap<i64, Followed> = HashMap::new();
    let mut reader_pages = 0u64;
    let mut failed_reads = 0u64;
    for reader in readers {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let (followed, stats) = tokio::time::timeout(remaining, reader)
            .await
            .context("readers did not reach the end of their streams in time")?
            .context("a reader task")??;
        reader_pages += stats.pages;
        failed_reads += stats.failed_requests;
        seen.extend(followed.into_iter().map(|f| (f.subscription, f)));
    }
    let (final_ranges, failed_range_reads) = range_reader.await.context("the range reader")?;
    let last_commits = db.last_commits().await?;
    let late = wait_for(deadline, || async {
        let received = observers_snapshot(&receiver);
        Ok(last_commits
            .iter()
            .filter(|(id, committed)| {
                received
                    .get(id)
                    .is_none_or(|(_, arrived)| *arrived < **committed)
            })
            .count())
    })
    .await?;
    if late > 0 {
        tracing::warn!(
            late,
            "subscriptions without a webhook after their last commit"
        );
    }
    let settle_secs = settle_started.elapsed().as_secs_f64();
    let stop_problems = nodes.stop_all(Duration::from_secs(30)).await;

    // The checks.
    // Stale pollers refused at commit or renewal (fencing), as the nodes logged it.
    let fenced = nodes.count_log_lines("lease lost");
    let mut tally = Tally::default();
    tally.check_stops(stop_problems);
    let heads = db.heads().await?;
    let received = observers_snapshot(&receiver);
    let mut streams: HashMap<i64, StoredStream> = HashMap::new();
    for id in &subscription_ids {
        let stored = StoredStream {
            rows: db.stream(*id).await?,
            last_committed_at: last_commits.get(id).copied(),
            last_sequence: heads.get(id).map_or(0, |head| head.last_sequence),
        };
        let (reader_seen, reader_repeats) = seen
            .get(id)
            .map_or((&[][..], 0), |f| (&f.seen[..], f.repeats));
        tally.check_subscription(
            *id,
            &expected[id],
            &stored,
            reader_seen,
            reader_repeats,
            received.get(id).map(|(_, arrived)| *arrived),
        );
        streams.insert(*id, stored);
    }
    for range in &final_ranges {
        if let Some(stored) = streams.get(&range.subscription) {
            tally.check_final_range(range, stored);
        }
    }
    let now = chrono::Utc::now().timestamp_micros();
    let held: Vec<(i64, String, i64)> = heads
        .iter()
        .filter_map(
            |(id, head)| match (&head.lease_holder, head.lease_expires_at) {
                (Some(holder), Some(expires)) if expires > now => {
                    Some((*id, holder.clone(), expires))
                }
                _ => None,
            },
        )
        .collect();
    tally.check_leases(&held);
    let webhooks: u64 = received.values().map(|(count, _)| count).sum();
    let refused = receiver
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .refused;
    println!(
        "result: kills={kills} pauses={} fenced_polls={fenced} connection_cuts={} receiver_outages={} changes={changes} upstream_faults={upstream_faults} activities={} expected={} duplicates={} lost={} \
         skipped={} out_of_order={} sequence_gaps={} reader_repeats={} late_webhooks={} \
         final_ranges={} (holding {}) ranges_changed={} stuck_leases={} unclean_stops={} webhooks={webhooks} refused_webhooks={refused} reader_pages={reader_pages} failed_reads={}",
        faults.pauses,
        faults.connection_cuts,
        faults.receiver_outages,
        tally.activities,
        tally.expected,
        tally.duplicates,
        tally.lost,
        tally.skipped,
        tally.out_of_order,
        tally.sequence_gaps,
        tally.reader_repeats,
        tally.late_webhooks,
        final_ranges.len(),
        final_ranges.iter().map(|r| r.ids.len()).sum::<usize>(),
        tally.ranges_changed,
        tally.stuck_leases,
        tally.unclean_stops,
        failed_reads + failed_range_reads,
    );
    println!(
        "timing: chaos {chaos_secs:.1} s, streams complete {caught_up_secs:.1} s after, settled in {settle_secs:.1} s, total {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(tally)
}

/// What the run did to the nodes.
#[derive(Debug, Default, Clone, Copy)]
struct FaultCounts {
    /// `kill -9` of one node (every node of a whole-cluster kill counts).
    kills: u64,
    /// Kills of every node at once.
    whole_cluster: u64,
    /// Kills of a node still starting (migrating, bootstrapping, binding).
    during_startup: u64,
    /// `SIGSTOP` past the lease TTL, then `SIGCONT`.
    pauses: u64,
    /// Times every node's database connections were terminated by the server.
    connection_cuts: u64,
    /// Times the webhook receiver refused everything for a while.
    receiver_outages: u64,
}

/// One random fault, after which every node runs and answers again:
/// - most often `kill -9` of one node, restarted after up to `--max-down-ms`;
/// - sometimes `kill -9` of every node at once (a power cut);
/// - sometimes a kill of a node that was just restarted and is still starting;
/// - sometimes a pause (`SIGSTOP`) of one node for longer than its leases last, so that
///   others take its subscriptions over while it still believes it holds them, then `SIGCONT`
///   (its stale commits must be refused: fencing);
/// - sometimes every node's database connections terminated by the server
///   (`pg_terminate_backend`), as a database restart or failover does;
/// - sometimes the webhook receiver answering 503 to everything for 1 to 3 s (deliveries
///   fail and are retried with back-off).
async fn inflict(
    nodes: &mut Nodes,
    db: &Db,
    receiver: &std::sync::Mutex<observers::Received>,
    rng: &mut StdRng,
    args: &ChaosArgs,
    counts: &mut FaultCounts,
) -> anyhow::Result<()> {
    let index = rng.random_range(0..nodes.len());
    let down = Duration::from_millis(rng.random_range(0..=args.max_down_ms));
    let roll: f64 = rng.random();
    if roll < 0.1 {
        for node in 0..nodes.len() {
            nodes.kill(node)?;
        }
        counts.kills += nodes.len() as u64;
        counts.whole_cluster += 1;
        tokio::time::sleep(down).await;
        for node in 0..nodes.len() {
            nodes.spawn(node, rng.random_bool(0.5))?;
        }
        for node in 0..nodes.len() {
            nodes.wait_healthy(node, START_TIMEOUT).await?;
        }
        return Ok(());
    }
    if roll < 0.3 {
        let pause = Duration::from_secs(args.lease_ttl_secs).mul_f64(rng.random_range(1.1..1.6));
        nodes.pause(index)?;
        counts.pauses += 1;
        tokio::time::sleep(pause).await;
        nodes.resume(index)?;
        return Ok(());
    }
    if roll < 0.4 {
        let cut = db.terminate_other_connections().await?;
        tracing::debug!(cut, "terminated the nodes' database connections");
        counts.connection_cuts += 1;
        return Ok(());
    }
    if roll < 0.5 {
        set_refusing(receiver, true);
        counts.receiver_outages += 1;
        tokio::time::sleep(Duration::from_millis(rng.random_range(1000..3000))).await;
        set_refusing(receiver, false);
        return Ok(());
    }
    nodes.kill(index)?;
    counts.kills += 1;
    if roll < 0.6 {
        nodes.spawn(index, rng.random_bool(0.5))?;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
        nodes.kill(index)?;
        counts.kills += 1;
        counts.during_startup += 1;
    }
    tokio::time::sleep(down).await;
    nodes.spawn(index, rng.random_bool(0.5))?;
    nodes.wait_healthy(index, START_TIMEOUT).await
}

fn set_refusing(receiver: &std::sync::Mutex<observers::Received>, refusing: bool) {
    receiver
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .refusing = refusing;
}

/// Polls `count` every 250 ms until it is zero or `deadline` passes; returns the last count.
async fn wait_for<F, Fut>(deadline: Instant, mut count: F) -> anyhow::Result<usize>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    loop {
        let left = count().await?;
        if left == 0 || Instant::now() >= deadline {
            return Ok(left);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn observers_snapshot(
    received: &std::sync::Mutex<observers::Received>,
) -> HashMap<i64, (u64, i64)> {
    received
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .by_subscription
        .clone()
}

/// An SDK client of one node, with short timeouts (a killed node must not hold a reader up).
fn node_client(base: &str) -> anyhow::Result<Client> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(5))
        .build()?;
    Ok(Client::with_http(base, Auth::ApiKey(API_KEY.into()), http)?)
}

/// The id of the application the nodes bootstrapped.
///
/// # Errors
/// If the key is refused: the database was not empty (another application was first).
async fn application_id(base: &str) -> anyhow::Result<i64> {
    let response = reqwest::Client::new()
        .get(format!("{base}/v1/application"))
        .header("Authorization", format!("APIKey {API_KEY}"))
        .send()
        .await?;
    anyhow::ensure!(
        response.status().is_success(),
        "GET /v1/application answered {}: --db must name an empty database",
        response.status()
    );
    let body: serde_json::Value = response.json().await?;
    body["id"]
        .as_i64()
        .context("GET /v1/application without a numeric id")
}

/// Connects one account per simulator and subscribes to it, through random nodes, a few at a
/// time (a request that fails is retried on another node).
async fn connect_accounts(
    clients: &Arc<Vec<Client>>,
    upstreams: &upstream::Upstreams,
) -> anyhow::Result<Vec<Followed>> {
    let mut connected = Vec::with_capacity(upstreams.len());
    for chunk_start in (0..upstreams.len()).step_by(SETUP_CONCURRENCY) {
        let mut tasks = tokio::task::JoinSet::new();
        for index in chunk_start..(chunk_start + SETUP_CONCURRENCY).min(upstreams.len()) {
            let (service, config) = {
                let upstream = upstream::lock(&upstreams[index]);
                (upstream.service(), upstream.account_config())
            };
            let clients = Arc::clone(clients);
            tasks.spawn(async move {
                let client = &clients[index % clients.len()];
                let account = client
                    .create_account(&NewAccount {
                        service: service.into(),
                        admin: false,
                        config,
                    })
                    .await
                    .with_context(|| format!("connecting account {index}"))?;
                let subscription = client
                    .create_subscription(account.id.into(), &NewSubscription::default())
                    .await
                    .with_context(|| format!("subscribing to account {}", account.id))?;
                anyhow::Ok((index, Followed::new(account.id, subscription.id)))
            });
        }
        let mut chunk = Vec::new();
        while let Some(done) = tasks.join_next().await {
            chunk.push(done.context("an account task")??);
        }
        chunk.sort_by_key(|(index, _)| *index);
        connected.extend(chunk.into_iter().map(|(_, followed)| followed));
    }
    Ok(connected)
}

/// Registers the receiver as the application's webhook endpoint.
async fn register_webhook(base: &str, url: &str) -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/webhooks"))
        .header("Authorization", format!("APIKey {API_KEY}"))
        .json(&json!({ "url": url }))
        .send()
        .await?;
    let status = response.status();
    anyhow::ensure!(
        status.is_success(),
        "POST /v1/webhooks answered {status}: {}",
        response.text().await.unwrap_or_default()
    );
    Ok(())
}

/// A subscription's row, as the checks need it.
#[derive(Debug, Clone)]
struct Head {
    last_sequence: i64,
    lease_token: i64,
    lease_holder: Option<String>,
    lease_expires_at: Option<i64>,
}

/// The harness's own connection to the nodes' database (read-only use).
struct Db {
    client: tokio_postgres::Client,
    connection: tokio::task::JoinHandle<()>,
}

impl Drop for Db {
    fn drop(&mut self) {
        self.connection.abort();
    }
}

impl Db {
    async fn connect(url: &str) -> anyhow::Result<Db> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .context("connecting to the chaos database")?;
        let connection = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "chaos database connection ended");
            }
        });
        Ok(Db { client, connection })
    }

    /// Every subscription's head and lease (empty before the nodes made the schema).
    async fn heads(&self) -> anyhow::Result<HashMap<i64, Head>> {
        let rows = self
            .client
            .query(
                "SELECT id, last_sequence, lease_token, lease_holder, lease_expires_at \
                 FROM subscriptions",
                &[],
            )
            .await
            .context("reading subscriptions")?;
        Ok(rows
            .into_iter()
            .map(|row| {
                (
                    row.get(0),
                    Head {
                        last_sequence: row.get(1),
                        lease_token: row.get(2),
                        lease_holder: row.get(3),
                        lease_expires_at: row.get(4),
                    },
                )
            })
            .collect())
    }

    /// Terminates every other session on this database (the nodes' pools); returns how many.
    async fn terminate_other_connections(&self) -> anyhow::Result<u64> {
        let row = self
            .client
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = current_database() AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .context("terminating the nodes' connections")?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or_default())
    }

    /// When each subscription with activity last committed some (epoch µs).
    async fn last_commits(&self) -> anyhow::Result<HashMap<i64, i64>> {
        let rows = self
            .client
            .query(
                "SELECT subscription_id, max(committed_at) FROM activity GROUP BY subscription_id",
                &[],
            )
            .await
            .context("reading commit times")?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect())
    }

    /// A subscription's stream: `(sequence, activity id, timestamp)` in sequence order.
    async fn stream(&self, subscription: i64) -> anyhow::Result<Vec<verify::StoredRow>> {
        let rows = self
            .client
            .query(
                "SELECT sequence, activity_id, occurred_at FROM activity \
                 WHERE subscription_id = $1 ORDER BY sequence",
                &[&subscription],
            )
            .await
            .context("reading a stream")?;
        Ok(rows
            .into_iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect())
    }
}

/// A database created for one run on a server, dropped at its end.
struct TempDatabase {
    url: String,
    server: String,
    name: String,
}

impl TempDatabase {
    async fn create(server: &str) -> anyhow::Result<TempDatabase> {
        let name = format!(
            "tidemark_chaos_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let admin = Db::connect(server)
            .await
            .context("connecting to --postgres-server")?;
        admin
            .client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| {
                format!("creating database {name} (may this user create databases?)")
            })?;
        Ok(TempDatabase {
            url: tidemark_store::postgres_url_with_database(server, &name),
            server: server.to_owned(),
            name,
        })
    }

    async fn drop_database(self) {
        let dropped = async {
            Db::connect(&self.server)
                .await?
                .client
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await?;
            anyhow::Ok(())
        }
        .await;
        if let Err(error) = dropped {
            tracing::warn!(%error, database = %self.name, "could not drop the chaos database");
        }
    }
}

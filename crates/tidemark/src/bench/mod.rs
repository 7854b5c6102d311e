//! `tidemark bench ...`: the project's benchmarks.
//!
//! Every figure is reported next to a baseline measured in the same run on the same disk, as a
//! ratio, because the machines these run on are shared and noisy.

use std::path::PathBuf;

use clap::{Args, Subcommand};

mod api;
mod brokers;
mod chaos;
mod ingest;
mod ingest_pg;
mod read;
mod synthetic;
mod track;
mod webhooks;

/// Benchmarks.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Activities committed per second through the whole engine, over a bare batched insert
    /// of the same rows (SQLite; or PostgreSQL with 1 and 3 nodes, `--db postgres://...`).
    Ingest(ingest::IngestArgs),
    /// Following cursors over a whole stream: pages per second and latency per page.
    Read(read::ReadArgs),
    /// List Activity over HTTP with concurrent readers, against the same reads at the store.
    Api(api::ApiArgs),
    /// Webhook deliveries per second, commit-to-receipt latency and coalescing.
    Webhooks(webhooks::WebhooksArgs),
    /// Activities per second published to NATS JetStream, RabbitMQ and Redis Streams with
    /// acknowledgements, from many subscriptions, over a bare client publishing the same
    /// messages.
    Brokers(brokers::BrokersArgs),
    /// The parallel time-range tracker over HTTP: activities per second with 1, 4 and 16
    /// workers, and the speed-up over one worker.
    Track(track::TrackArgs),
    /// Several `tidemark serve` processes on one PostgreSQL database, killed with `kill -9`
    /// and restarted while activity flows; fails on any lost, repeated or misordered
    /// activity, missed webhook or stuck lease.
    Chaos(chaos::ChaosArgs),
}

/// Where benchmark databases are written.
#[derive(Debug, Args, Clone)]
pub struct BenchDir {
    /// Directory for the benchmark's database files (a fresh temporary directory inside it is
    /// used and removed afterwards).
    #[arg(long, env = "TIDEMARK_BENCH_DIR")]
    dir: Option<PathBuf>,
}

impl BenchDir {
    fn create(&self) -> anyhow::Result<tempfile::TempDir> {
        let parent = self.dir.clone().unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&parent)?;
        Ok(tempfile::Builder::new()
            .prefix("tidemark-bench-")
            .tempdir_in(parent)?)
    }
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ingest(args) => ingest::run(args).await,
        BenchCommand::Read(args) => read::run(args).await,
        BenchCommand::Api(args) => api::run(args).await,
        BenchCommand::Webhooks(args) => webhooks::run(args).await,
        BenchCommand::Brokers(args) => brokers::run(args).await,
        BenchCommand::Track(args) => track::run(args).await,
        BenchCommand::Chaos(args) => chaos::run(args).await,
    }
}

fn progress(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{msg:>14} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// An application, a `service` account and an active `changes` subscription to benchmark with.
async fn bench_subscription(
    store: &dyn tidemark_store::Store,
    service: &str,
) -> anyhow::Result<tidemark_model::Subscription> {
    let application = store.create_application("bench").await?;
    let account = store
        .create_account(tidemark_store::NewAccount {
            application_id: application.id,
            service: service.to_owned(),
            admin: false,
            config: serde_json::json!({}),
            token_digest: None,
        })
        .await?;
    Ok(store
        .create_subscription(tidemark_store::NewSubscription::changes(account.id))
        .await?)
}

/// Latency samples, summarized as percentiles.
#[derive(Debug, Default, Clone)]
pub(super) struct Latencies(Vec<std::time::Duration>);

impl Latencies {
    fn record(&mut self, sample: std::time::Duration) {
        self.0.push(sample);
    }

    fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// The `p` quantile (0.0..=1.0) in milliseconds (0 when empty).
    fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return 0.0;
        }
        self.0.sort_unstable();
        let index = ((self.0.len() - 1) as f64 * p).round() as usize;
        self.0[index].as_secs_f64() * 1000.0
    }
}

/// CPU time this process has used so far (user and system, all threads), from
/// `/proc/self/stat`; `None` where that is not readable (not Linux).
fn process_cpu() -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name (which is in parentheses and may hold spaces):
    // utime and stime are the 14th and 15th fields of the line, in clock ticks.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let mut fields = rest.split(' ').skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // USER_HZ is 100 on every Linux architecture we build for.
    Some(std::time::Duration::from_millis((utime + stime) * 10))
}

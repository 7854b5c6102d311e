//! `tidemark bench brokers`: activities per second that the destination worker publishes to
//! NATS JetStream, RabbitMQ and Redis Streams with the broker's acknowledgement awaited (JetStream
//! `PubAck`, publisher confirms, the `XADD` reply), from many subscriptions at once, against the
//! same broker taking the same messages from a bare client in the same run.
//!
//! Per broker:
//! 1. A destination is created (so it publishes what is committed from now on) and disabled;
//!    every subscription's activity is committed (synthetic ~1 KB activities).
//! 2. **Baseline**: each subscription's stream is read and cut into the very messages the
//!    worker will send (same builder, payload and batch size), then published with the
//!    broker's own client to a separate stream, exchange or key: one connection, every
//!    subscription concurrently, each awaiting a message's acknowledgement before its next
//!    (the ordering rule the worker keeps), the same headers and message ids.
//! 3. **Tidemark**: the destination is enabled and a [`DestinationWorker`] started on the
//!    store; timed until the broker holds every message (stream length, queue depth, `XLEN`).
//!    This includes everything the worker does per message: claiming, reading the stream,
//!    building, publishing, and committing the position after each ack.
//!
//! The ratio is tidemark / baseline (target >= 0.6).

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use serde_json::{json, Value};
use tidemark_notify::brokers::worker::run_on_own_thread;
use tidemark_notify::brokers::{
    DestinationWorker, Message, MessageBuilder, PayloadFormat, WorkerConfig,
};
use tidemark_store::{
    CommitBatch, DestinationPatch, NewAccount, NewDestination, NewSubscription, SqliteStore, Store,
};

use super::{process_cpu, progress, synthetic, BenchDir};

/// CPU time the process used since `before`.
fn cpu_since(before: Option<Duration>) -> Option<Duration> {
    Some(process_cpu()?.saturating_sub(before?))
}

/// Options of `tidemark bench brokers`.
#[derive(Debug, Clone, Args)]
pub struct BrokersArgs {
    /// Subscriptions publishing at once.
    #[arg(long, default_value_t = 1000)]
    subscriptions: usize,
    /// Activities committed to each subscription. The worker's start (claiming every pair,
    /// then reading every subscription's first page) takes about 0.1 s on a 2-core host before
    /// the rate is steady: 200 per subscription makes it a small part of each round.
    #[arg(long, default_value_t = 200)]
    activities: usize,
    /// The destination's batch size (most activities per message; a message also ends where
    /// the v1 type changes).
    #[arg(long, default_value_t = 10)]
    batch_size: u32,
    /// Rounds per broker (each: fresh activity, the bare client, then Tidemark); the median
    /// ratio is reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Brokers to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "nats,rabbitmq,redis")]
    brokers: Vec<BrokerName>,
    /// NATS server with JetStream.
    #[arg(
        long,
        env = "TIDEMARK_BENCH_NATS_URL",
        default_value = "nats://127.0.0.1:4222"
    )]
    nats_url: String,
    /// RabbitMQ broker.
    #[arg(
        long,
        env = "TIDEMARK_BENCH_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
    /// Redis server.
    #[arg(
        long,
        env = "TIDEMARK_BENCH_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/"
    )]
    redis_url: String,
    #[command(flatten)]
    dir: BenchDir,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BrokerName {
    Nats,
    Rabbitmq,
    Redis,
}

impl BrokerName {
    fn as_str(self) -> &'static str {
        match self {
            BrokerName::Nats => "nats",
            BrokerName::Rabbitmq => "rabbitmq",
            BrokerName::Redis => "redis",
        }
    }
}

/// A bare client of one broker: publishes with acknowledgements, and counts what a target holds.
enum Bare {
    Nats(async_nats::jetstream::Context),
    Rabbitmq {
        _connection: lapin::Connection,
        channel: lapin::Channel,
    },
    Redis(redis::aio::MultiplexedConnection),
}

/// Names of one target on the broker (a stream and subject prefix, an exchange, routing key
/// prefix and counting queue, or a stream key), fresh for each run.
struct Names {
    stream: String,
    prefix: String,
    queue: String,
}

impl Names {
    fn new(broker: BrokerName, role: &str) -> Names {
        let tag = format!("{:08x}", rand::random::<u32>());
        match broker {
            BrokerName::Nats => Names {
                stream: format!("TMBENCH_{role}_{tag}"),
                prefix: format!("tmbench.{role}.{tag}"),
                queue: String::new(),
            },
            BrokerName::Rabbitmq => Names {
                stream: format!("tm-bench-{role}-{tag}"),
                prefix: format!("{role}.{tag}"),
                queue: format!("tm-bench-{role}-{tag}"),
            },
            BrokerName::Redis => Names {
                stream: format!("tm:bench:{role}:{tag}"),
                prefix: String::new(),
                queue: String::new(),
            },
        }
    }

    /// The destination target that publishes here (creating the stream or exchange).
    fn target(&self, broker: BrokerName, args: &BrokersArgs) -> Value {
        match broker {
            BrokerName::Nats => json!({"url": args.nats_url, "stream": self.stream,
                "subject_prefix": self.prefix, "create_stream": true}),
            BrokerName::Rabbitmq => json!({"url": args.amqp_url, "exchange": self.stream,
                "routing_key_prefix": self.prefix, "declare": true}),
            BrokerName::Redis => json!({"url": args.redis_url, "stream_key": self.stream}),
        }
    }
}

impl Bare {
    async fn connect(broker: BrokerName, args: &BrokersArgs) -> anyhow::Result<Bare> {
        Ok(match broker {
            BrokerName::Nats => Bare::Nats(async_nats::jetstream::new(
                async_nats::connect(&args.nats_url)
                    .await
                    .with_context(|| format!("connecting to NATS at {}", args.nats_url))?,
            )),
            BrokerName::Rabbitmq => {
                let connection = lapin::Connection::connect(
                    &args.amqp_url,
                    lapin::ConnectionProperties::default(),
                )
                .await
                .context("connecting to RabbitMQ")?;
                let channel = connection.create_channel().await?;
                channel
                    .confirm_select(lapin::options::ConfirmSelectOptions::default())
                    .await?;
                Bare::Rabbitmq {
                    _connection: connection,
                    channel,
                }
            }
            BrokerName::Redis => Bare::Redis(
                redis::Client::open(args.redis_url.as_str())?
                    .get_multiplexed_async_connection()
                    .await
                    .context("connecting to Redis")?,
            ),
        })
    }

    /// Creates what `names` needs: the JetStream stream (file storage, as the destination
    /// creates it), or the exchange and a durable queue bound to it that holds the messages.
    async fn prepare(&self, names: &Names) -> anyhow::Result<()> {
        match self {
            Bare::Nats(jetstream) => {
                jetstream
                    .create_stream(async_nats::jetstream::stream::Config {
                        name: names.stream.clone(),
                        subjects: vec![format!("{}.>", names.prefix)],
                        storage: async_nats::jetstream::stream::StorageType::File,
                        duplicate_window: Duration::from_secs(120),
                        ..Default::default()
                    })
                    .await?;
            }
            Bare::Rabbitmq { channel, .. } => {
                use lapin::options::{
                    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
                };
                use lapin::types::FieldTable;
                channel
                    .exchange_declare(
                        names.stream.as_str().into(),
                        lapin::ExchangeKind::Topic,
                        ExchangeDeclareOptions {
                            durable: true,
                            ..ExchangeDeclareOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await?;
                channel
                    .queue_declare(
                        names.queue.as_str().into(),
                        QueueDeclareOptions {
                            durable: true,
                            ..QueueDeclareOptions::default()
                        },
                        FieldTable::default(),
                    )
                    .await?;
                channel
                    .queue_bind(
                        names.queue.as_str().into(),
                        names.stream.as_str().into(),
                        format!("{}.#", names.prefix).as_str().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
            }
            Bare::Redis(_) => {}
        }
        Ok(())
    }

    /// Messages the target holds.
    async fn count(&self, names: &Names) -> anyhow::Result<u64> {
        Ok(match self {
            Bare::Nats(jetstream) => match jetstream.get_stream(&names.stream).await {
                Ok(mut stream) => stream.info().await?.state.messages,
                // The destination creates its stream when it first connects.
                Err(_) => 0,
            },
            Bare::Rabbitmq { channel, .. } => {
                let queue = channel
                    .queue_declare(
                        names.queue.as_str().into(),
                        lapin::options::QueueDeclareOptions {
                            passive: true,
                            ..lapin::options::QueueDeclareOptions::default()
                        },
                        lapin::types::FieldTable::default(),
                    )
                    .await?;
                u64::from(queue.message_count())
            }
            Bare::Redis(connection) => {
                let mut connection = connection.clone();
                redis::cmd("XLEN")
                    .arg(&names.stream)
                    .query_async::<u64>(&mut connection)
                    .await?
            }
        })
    }

    /// Removes what `names` made.
    async fn clean_up(&self, names: &Names) {
        match self {
            Bare::Nats(jetstream) => {
                let _ = jetstream.delete_stream(&names.stream).await;
            }
            Bare::Rabbitmq { channel, .. } => {
                let _ = channel
                    .queue_delete(names.queue.as_str().into(), Default::default())
                    .await;
                let _ = channel
                    .exchange_delete(names.stream.as_str().into(), Default::default())
                    .await;
            }
            Bare::Redis(connection) => {
                let mut connection = connection.clone();
                let _ = redis::cmd("DEL")
                    .arg(&names.stream)
                    .query_async::<i64>(&mut connection)
                    .await;
            }
        }
    }

    /// Publishes one message and waits for the broker's acknowledgement, as the destination's
    /// publisher does (same subject or routing key, headers and message id).
    async fn publish(&self, names: &Names, message: &Message) -> anyhow::Result<()> {
        match self {
            Bare::Nats(jetstream) => {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", message.message_id().as_str());
                for (name, value) in message.headers() {
                    headers.insert(name, value.as_str());
                }
                jetstream
                    .publish_with_headers(
                        format!("{}.{}", names.prefix, message.subscription),
                        headers,
                        message.body.clone(),
                    )
                    .await?
                    .await?;
            }
            Bare::Rabbitmq { channel, .. } => {
                let mut headers = lapin::types::FieldTable::default();
                for (name, value) in message.headers() {
                    headers.insert(
                        name.into(),
                        lapin::types::AMQPValue::LongString(value.into()),
                    );
                }
                let confirm = channel
                    .basic_publish(
                        names.stream.as_str().into(),
                        format!("{}.{}", names.prefix, message.subscription)
                            .as_str()
                            .into(),
                        lapin::options::BasicPublishOptions {
                            mandatory: true,
                            ..Default::default()
                        },
                        &message.body,
                        lapin::BasicProperties::default()
                            .with_message_id(message.message_id().into())
                            .with_content_type("application/json".into())
                            .with_delivery_mode(2)
                            .with_headers(headers),
                    )
                    .await?
                    .await?;
                anyhow::ensure!(
                    matches!(confirm, lapin::Confirmation::Ack(None)),
                    "RabbitMQ did not take the message: {confirm:?}"
                );
            }
            Bare::Redis(connection) => {
                let mut connection = connection.clone();
                let mut command = redis::cmd("XADD");
                command
                    .arg(&names.stream)
                    .arg("*")
                    .arg("message_id")
                    .arg(message.message_id());
                for (name, value) in message.headers() {
                    command.arg(name).arg(value);
                }
                command.arg("body").arg(message.body.as_ref());
                command.query_async::<String>(&mut connection).await?;
            }
        }
        Ok(())
    }
}

struct Setup {
    store: Arc<SqliteStore>,
    application_id: i64,
    /// (account, subscription)
    subscriptions: Vec<(i64, i64)>,
}

async fn setup(store: Arc<SqliteStore>, count: usize) -> anyhow::Result<Setup> {
    let application = store.create_application("bench-brokers").await?;
    let mut subscriptions = Vec::with_capacity(count);
    for _ in 0..count {
        let account = store
            .create_account(NewAccount {
                application_id: application.id,
                service: "synthetic".into(),
                admin: false,
                config: json!({}),
                token_digest: None,
            })
            .await?;
        let subscription = store
            .create_subscription(NewSubscription::changes(account.id))
            .await?;
        subscriptions.push((account.id, subscription.id));
    }
    Ok(Setup {
        store,
        application_id: application.id,
        subscriptions,
    })
}

/// Commits `per_subscription` fresh activities to every subscription.
async fn commit_activity(setup: &Setup, per_subscription: usize, first: u64) -> anyhow::Result<()> {
    let base = chrono::Utc::now();
    let bar = progress(setup.subscriptions.len() as u64, "committing");
    for (offset, &(account, subscription)) in setup.subscriptions.iter().enumerate() {
        let start = first + (offset * per_subscription) as u64;
        let activities: Vec<_> = (start..start + per_subscription as u64)
            .map(|index| synthetic::activity(account, index, base))
            .collect();
        setup
            .store
            .commit(CommitBatch::new(subscription, &activities)?)
            .await?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(())
}

/// The messages the destination will publish, per subscription (read from the stream after
/// `after` and built as the worker builds them).
async fn messages(
    setup: &Setup,
    after: u64,
    count: usize,
    batch_size: u32,
) -> anyhow::Result<Vec<Vec<Message>>> {
    let builder = MessageBuilder::new(
        PayloadFormat::Both,
        NonZeroUsize::new(batch_size as usize).context("--batch-size must be positive")?,
    );
    let mut all = Vec::with_capacity(setup.subscriptions.len());
    for &(account, subscription) in &setup.subscriptions {
        let page = setup
            .store
            .read_activity(subscription, after, count)
            .await?;
        all.push(builder.build(account, subscription, &page)?);
    }
    Ok(all)
}

/// Waits until the broker holds `expected` messages for `names`; the time it took from
/// `started`.
async fn wait_for(
    bare: &Bare,
    names: &Names,
    expected: u64,
    started: Instant,
    what: &str,
) -> anyhow::Result<Duration> {
    let bar = progress(expected, what);
    let deadline = started + Duration::from_secs(600);
    loop {
        let held = bare.count(names).await?;
        bar.set_position(held.min(expected));
        if held >= expected {
            bar.finish_and_clear();
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what}: only {held} of {expected} messages arrived in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// One round on one broker: the baseline's and Tidemark's rates and the messages sent.
struct Round {
    baseline_rate: f64,
    tidemark_rate: f64,
    messages: u64,
    /// CPU this process used publishing (the bare client's, and the worker's), where known.
    baseline_cpu: Option<Duration>,
    tidemark_cpu: Option<Duration>,
}

impl Round {
    fn ratio(&self) -> f64 {
        self.tidemark_rate / self.baseline_rate.max(f64::EPSILON)
    }
}

/// Commits fresh activity to every subscription, publishes it with the bare client, then
/// through a destination and the worker.
async fn run_round(
    args: &BrokersArgs,
    broker: BrokerName,
    setup: &Setup,
    first_activity: u64,
) -> anyhow::Result<Round> {
    let store = &setup.store;
    let bare = Bare::connect(broker, args).await?;
    let tidemark_names = Names::new(broker, "tidemark");
    let baseline_names = Names::new(broker, "bare");
    bare.prepare(&baseline_names).await?;
    if broker == BrokerName::Rabbitmq {
        // The destination declares its exchange; the queue that holds (and counts) the
        // messages is the consumer's, bound beforehand.
        bare.prepare(&tidemark_names).await?;
    }
    // Created disabled: it will publish what is committed next, once enabled.
    let destination = store
        .create_destination(NewDestination {
            application_id: setup.application_id,
            kind: broker.as_str().into(),
            target: tidemark_names.target(broker, args),
            filter: None,
            payload: "both".into(),
            batch_size: args.batch_size,
        })
        .await?;
    store
        .update_destination(
            destination.id,
            DestinationPatch {
                enabled: Some(false),
                ..DestinationPatch::default()
            },
        )
        .await?;
    let before = store.latest_sequence(setup.subscriptions[0].1).await?;
    commit_activity(setup, args.activities, first_activity).await?;
    let work = messages(setup, before, args.activities, args.batch_size).await?;
    let message_count: u64 = work.iter().map(|m| m.len() as u64).sum();
    let activity_count = (args.subscriptions * args.activities) as f64;

    // Baseline: the bare client, every subscription at once, each in order, on a thread and
    // runtime of its own as the worker runs (`run_on_own_thread`), connected there so that
    // its connection's driver runs there too.
    let baseline_names = Arc::new(baseline_names);
    let (started, cpu_before) = {
        let names = Arc::clone(&baseline_names);
        let args = args.clone();
        run_on_own_thread("bench-bare-client", move || async move {
            let bare = Arc::new(Bare::connect(broker, &args).await?);
            let started = Instant::now();
            let cpu_before = process_cpu();
            let mut tasks = Vec::with_capacity(work.len());
            for messages in work {
                let bare = Arc::clone(&bare);
                let names = Arc::clone(&names);
                tasks.push(tokio::spawn(async move {
                    for message in &messages {
                        bare.publish(&names, message).await?;
                    }
                    anyhow::Ok(())
                }));
            }
            for task in tasks {
                task.await??;
            }
            anyhow::Ok((started, cpu_before))
        })?
        .await
        .context("the bare client's thread ended")??
    };
    let baseline_elapsed = started.elapsed();
    let baseline_cpu = cpu_since(cpu_before);
    anyhow::ensure!(
        bare.count(&baseline_names).await? >= message_count,
        "the baseline's messages are not all on the broker"
    );
    // The broker should not carry the baseline's messages while Tidemark is measured (a
    // Redis rewriting its append-only file, say, would rewrite them too).
    bare.clean_up(&baseline_names).await;

    // Tidemark: the worker publishes the same activity from the store.
    let worker = DestinationWorker::new(store.clone(), WorkerConfig::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let cpu_before = process_cpu();
    store
        .update_destination(
            destination.id,
            DestinationPatch {
                enabled: Some(true),
                ..DestinationPatch::default()
            },
        )
        .await?;
    // As `tidemark serve` runs it: on a thread of its own.
    let running = Arc::clone(&worker).spawn(async move {
        let _ = stopped.await;
    })?;
    let tidemark_elapsed = wait_for(
        &bare,
        &tidemark_names,
        message_count,
        started,
        broker.as_str(),
    )
    .await?;
    let tidemark_cpu = cpu_since(cpu_before);
    let _ = stop.send(());
    let _ = running.await;
    store.delete_destination(destination.id).await?;
    bare.clean_up(&tidemark_names).await;
    tracing::info!(
        broker = broker.as_str(),
        baseline_ms = baseline_elapsed.as_millis() as u64,
        tidemark_ms = tidemark_elapsed.as_millis() as u64,
        baseline_cpu_ms = baseline_cpu.map(|cpu| cpu.as_millis() as u64),
        tidemark_cpu_ms = tidemark_cpu.map(|cpu| cpu.as_millis() as u64),
        "round"
    );
    Ok(Round {
        baseline_rate: activity_count / baseline_elapsed.as_secs_f64().max(f64::EPSILON),
        tidemark_rate: activity_count / tidemark_elapsed.as_secs_f64().max(f64::EPSILON),
        messages: message_count,
        baseline_cpu,
        tidemark_cpu,
    })
}

pub async fn run(args: BrokersArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.subscriptions >= 1
            && args.activities >= 1
            && args.rounds >= 1
            && (1..=1000).contains(&args.batch_size),
        "--subscriptions, --activities and --rounds must be positive, --batch-size in 1..=1000"
    );
    let dir = args.dir.create()?;
    let store = Arc::new(SqliteStore::open(dir.path().join("brokers.db"))?);
    let setup = setup(Arc::clone(&store), args.subscriptions).await?;
    let mut next_activity = 0u64;
    let mut results = Vec::new();
    println!(
        "bench brokers: {} subscriptions x {} activities, batch size {}, acknowledgements awaited, median of {} rounds",
        args.subscriptions, args.activities, args.batch_size, args.rounds
    );
    for &broker in &args.brokers {
        let mut rounds = Vec::with_capacity(args.rounds);
        for _ in 0..args.rounds {
            rounds.push(run_round(&args, broker, &setup, next_activity).await?);
            next_activity += (args.subscriptions * args.activities) as u64;
        }
        let ratios: Vec<f64> = rounds.iter().map(Round::ratio).collect();
        rounds.sort_by(|a, b| a.ratio().total_cmp(&b.ratio()));
        let median = &rounds[rounds.len() / 2];
        // This process's CPU per message (the broker's own is not counted).
        let per_message = |cpu: Option<Duration>| {
            cpu.map(|cpu| cpu.as_secs_f64() * 1e6 / median.messages.max(1) as f64)
        };
        let (bare_us, tidemark_us) = (
            per_message(median.baseline_cpu),
            per_message(median.tidemark_cpu),
        );
        if let (Some(bare_us), Some(tidemark_us)) = (bare_us, tidemark_us) {
            println!(
                "  {:<8} CPU of this process per message: tidemark {tidemark_us:.1} µs, bare client {bare_us:.1} µs",
                broker.as_str()
            );
        }
        println!(
            "  {:<8} tidemark {:>8.0} activities/s ({:>6.0} messages/s), bare client {:>8.0} activities/s: ratio {:.2} (target >= 0.6; rounds {})",
            broker.as_str(),
            median.tidemark_rate,
            median.tidemark_rate * median.messages as f64
                / (args.subscriptions * args.activities) as f64,
            median.baseline_rate,
            median.ratio(),
            ratios
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        results.push(json!({
            "broker": broker.as_str(), "messages": median.messages,
            "activities": args.subscriptions * args.activities,
            "tidemark_activities_per_s": median.tidemark_rate.round(),
            "baseline_activities_per_s": median.baseline_rate.round(),
            "ratio_to_baseline": (median.ratio() * 1000.0).round() / 1000.0,
            "round_ratios": ratios.iter().map(|r| (r * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
            "tidemark_cpu_us_per_message": tidemark_us.map(|us| (us * 10.0).round() / 10.0),
            "baseline_cpu_us_per_message": bare_us.map(|us| (us * 10.0).round() / 10.0),
        }));
    }
    println!(
        "{}",
        json!({"bench": "brokers", "subscriptions": args.subscriptions,
               "activities_per_subscription": args.activities, "batch_size": args.batch_size,
               "rounds": args.rounds, "results": results})
    );
    Ok(())
}

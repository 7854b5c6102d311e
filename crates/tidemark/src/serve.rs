//! `tidemark serve` and `tidemark app`.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use tidemark_engine::{Engine, EngineConfig};

use crate::db::{self, DbUrl, DEFAULT_DB};

/// Options of `tidemark serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Database URL.
    #[arg(long, env = "TIDEMARK_DB", default_value = DEFAULT_DB)]
    db: DbUrl,
    /// Address the HTTP endpoints listen on.
    #[arg(long, env = "TIDEMARK_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// This node's name in leases (defaults to host-pid).
    #[arg(long, env = "TIDEMARK_NODE_ID")]
    node_id: Option<String>,
    /// Polls run at once on this node.
    #[arg(long, env = "TIDEMARK_MAX_CONCURRENT_POLLS", default_value_t = 16)]
    max_concurrent_polls: usize,
    /// How long a poll lease lasts: a node that dies holding one delays that subscription's
    /// next poll by up to this long (other nodes take it over once it lapses).
    #[arg(long, env = "TIDEMARK_LEASE_TTL_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(2..=3600))]
    lease_ttl_secs: u64,
    /// Seconds to wait for a webhook endpoint's answer once connected (seed: 27). A claim on
    /// a notification outlasts one attempt, so this also bounds how long a node that dies
    /// mid-delivery delays that notification.
    #[arg(long, env = "TIDEMARK_WEBHOOK_READ_TIMEOUT_SECS", default_value_t = 27,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    webhook_read_timeout_secs: u64,
    /// How long a notifier's claim on a notification lasts (raised to outlast one attempt).
    #[arg(long, env = "TIDEMARK_WEBHOOK_CLAIM_TTL_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    webhook_claim_ttl_secs: u64,
    /// On an empty database, use this as the first application's API key instead of minting
    /// one (for scripted set-ups).
    #[arg(long, env = "TIDEMARK_BOOTSTRAP_API_KEY", hide_env_values = true)]
    bootstrap_api_key: Option<String>,
    /// Seconds to wait for a broker to acknowledge one published message (reconnecting
    /// included) before retrying it with back-off.
    #[arg(long, env = "TIDEMARK_BROKER_PUBLISH_TIMEOUT_SECS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=600))]
    broker_publish_timeout_secs: u64,
    /// How long a claim on a (destination, subscription) pair lasts, renewed with every
    /// acknowledged message: a node that dies mid-publish delays that pair by up to this long.
    #[arg(long, env = "TIDEMARK_BROKER_CLAIM_TTL_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    broker_claim_ttl_secs: u64,
    /// A PEM file of root certificates that https webhook endpoints may also chain to (a
    /// private CA, or a receiver's self-signed certificate), e.g. `/etc/tidemark/webhook-ca.pem`.
    #[arg(long, env = "TIDEMARK_WEBHOOK_CA_FILE")]
    webhook_ca_file: Option<std::path::PathBuf>,
}

impl ServeArgs {
    /// Broker publishing settings.
    fn destination_config(&self) -> tidemark_notify::brokers::WorkerConfig {
        let defaults = tidemark_notify::brokers::WorkerConfig::default();
        tidemark_notify::brokers::WorkerConfig {
            publisher: tidemark_notify::brokers::PublisherOptions {
                publish_timeout: std::time::Duration::from_secs(self.broker_publish_timeout_secs),
                ..defaults.publisher
            },
            claim_ttl: std::time::Duration::from_secs(self.broker_claim_ttl_secs),
            ..defaults
        }
    }

    /// Webhook delivery settings: the seed's schedule, trusting `--webhook-ca-file` too.
    fn webhook_config(&self) -> anyhow::Result<tidemark_notify::webhooks::NotifierConfig> {
        let mut config = tidemark_notify::webhooks::NotifierConfig {
            read_timeout: std::time::Duration::from_secs(self.webhook_read_timeout_secs),
            claim_ttl: std::time::Duration::from_secs(self.webhook_claim_ttl_secs),
            ..tidemark_notify::webhooks::NotifierConfig::default()
        };
        if let Some(path) = &self.webhook_ca_file {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading --webhook-ca-file {}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .with_context(|| format!("--webhook-ca-file {} is not PEM", path.display()))?;
            anyhow::ensure!(
                !certificates.is_empty(),
                "--webhook-ca-file {} holds no certificate",
                path.display()
            );
            config.extra_root_certificates_pem = Some(pem);
        }
        Ok(config)
    }
}

/// `tidemark app ...`
#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Create an application with an API key and print both as one JSON line (the key is
    /// shown only here).
    Create {
        /// Application name.
        #[arg(long)]
        name: String,
        /// Database URL.
        #[arg(long, env = "TIDEMARK_DB", default_value = DEFAULT_DB)]
        db: DbUrl,
    },
}

/// Installs the Prometheus recorder behind `/metrics`.
pub fn install_metrics() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let webhook_config = args.webhook_config()?;
    let destination_config = args.destination_config();
    let metrics = install_metrics()?;
    let store = db::open(&args.db).await?;
    if store.list_applications().await?.is_empty() {
        if let Some(key) = &args.bootstrap_api_key {
            anyhow::ensure!(
                (16..=256).contains(&key.len()) && key.chars().all(|c| c.is_ascii_graphic()),
                "--bootstrap-api-key must be 16 to 256 printable ASCII characters"
            );
        }
        match tidemark_server::bootstrap_application(
            &*store,
            "default",
            args.bootstrap_api_key.clone(),
        )
        .await
        {
            Ok((application_id, api_key)) => {
                tracing::info!(application_id, "created the first application");
                if args.bootstrap_api_key.is_none() {
                    print_new_application(application_id, &api_key);
                }
            }
            // Nodes started together on one empty database race to bootstrap; with the same
            // key, the one that loses finds the winner's application (its key is unique).
            Err(error)
                if args.bootstrap_api_key.is_some()
                    && !store.list_applications().await?.is_empty() =>
            {
                tracing::info!(%error, "another node created the first application");
            }
            Err(error) => return Err(error.into()),
        }
    }
    let mut config = EngineConfig {
        max_concurrent_polls: args.max_concurrent_polls,
        lease_ttl: std::time::Duration::from_secs(args.lease_ttl_secs),
        ..EngineConfig::default()
    };
    if let Some(node_id) = args.node_id {
        config.node_id = node_id;
    }
    let engine = Engine::new(Arc::clone(&store), config);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, db = ?args.db, "tidemark serving");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let engine_task = tokio::spawn({
        let mut stop = stop_rx.clone();
        Arc::clone(&engine).run(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
    });
    let notifier = start_notifier(&store, &engine, webhook_config.clone(), stop_rx.clone())?;
    let publisher = start_destination_worker(&store, &engine, destination_config, stop_rx.clone())?;
    let mut http_stop = stop_rx;
    let state =
        tidemark_server::AppState::new(store, Some(metrics)).with_webhook_config(webhook_config);
    let http_task = tokio::spawn(tidemark_server::serve(listener, state, async move {
        let _ = http_stop.wait_for(|stopped| *stopped).await;
    }));
    shutdown_signal().await;
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    engine_task.await.context("engine task")?;
    notifier.stopped().await;
    publisher.stopped().await;
    http_task.await.context("http task")??;
    Ok(())
}

pub async fn app(command: AppCommand) -> anyhow::Result<()> {
    match command {
        AppCommand::Create { name, db } => {
            let store = db::open(&db).await?;
            let (application_id, api_key) =
                tidemark_server::bootstrap_application(&*store, &name, None).await?;
            tracing::info!(application_id, "created an application");
            print_new_application(application_id, &api_key);
            Ok(())
        }
    }
}

/// Prints a new application's id and API key as one JSON line on stdout (DESIGN 3a):
/// `{"application_id": 1, "api_key": "..."}`. The key is shown only here: the store keeps its
/// digest.
fn print_new_application(application_id: i64, api_key: &str) {
    println!(
        "{}",
        serde_json::json!({ "application_id": application_id, "api_key": api_key })
    );
}

/// A notifier (webhooks or broker destinations), running until `stop` turns true, woken by
/// every commit of `engine` so notifications leave at once (it also looks for due work on its
/// own).
pub struct RunningNotifier {
    task: tokio::task::JoinHandle<()>,
    waker: tokio::task::JoinHandle<()>,
}

impl RunningNotifier {
    /// Waits for the notifier to finish what it has in flight after `stop`.
    pub async fn stopped(self) {
        let _ = self.task.await;
        self.waker.abort();
    }

    /// Runs the future `run(shutdown)` gives in a task, calling `wake` on every commit of
    /// `engine`.
    fn start<F>(
        engine: &Arc<Engine>,
        wake: impl Fn() + Send + 'static,
        run: impl FnOnce(
            std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
        ) -> anyhow::Result<F>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<Self>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut commits = engine.subscribe_commits();
        let waker = tokio::spawn(async move {
            // A lagged receiver still means "there was a commit".
            while !matches!(
                commits.recv().await,
                Err(tokio::sync::broadcast::error::RecvError::Closed)
            ) {
                wake();
            }
        });
        let run = run(Box::pin(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        }));
        let run = match run {
            Ok(run) => run,
            Err(error) => {
                waker.abort();
                return Err(error);
            }
        };
        let task = tokio::spawn(run);
        Ok(RunningNotifier { task, waker })
    }
}

/// Starts the webhook notifier for `store` with `config`, woken by `engine`'s commits.
pub fn start_notifier(
    store: &Arc<dyn tidemark_store::Store>,
    engine: &Arc<Engine>,
    config: tidemark_notify::webhooks::NotifierConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<RunningNotifier> {
    let notifier = tidemark_notify::webhooks::Notifier::new(Arc::clone(store), config)
        .context("starting the webhook notifier")?;
    let awake = Arc::clone(&notifier);
    RunningNotifier::start(
        engine,
        move || awake.wake(),
        |shutdown| Ok(notifier.run(shutdown)),
        stop,
    )
}

/// Starts the broker destination worker for `store` with `config` on a thread of its own
/// (see `DestinationWorker::spawn`), woken by `engine`'s commits.
pub fn start_destination_worker(
    store: &Arc<dyn tidemark_store::Store>,
    engine: &Arc<Engine>,
    config: tidemark_notify::brokers::WorkerConfig,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<RunningNotifier> {
    let worker = tidemark_notify::brokers::DestinationWorker::new(Arc::clone(store), config);
    let awake = Arc::clone(&worker);
    RunningNotifier::start(
        engine,
        move || awake.wake(),
        |shutdown| {
            let finished = worker
                .spawn(shutdown)
                .context("starting the broker destination worker's thread")?;
            Ok(async move {
                let _ = finished.await;
            })
        },
        stop,
    )
}

//! `tidemark demo`: the quick start. Watches a temporary directory with the `local` connector
//! (or, with `--service jive|onna`, that upstream's simulator), makes a few changes there, and
//! prints the activity stream as it is committed, and each webhook as it arrives.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};
use tidemark_engine::{Engine, EngineConfig};
use tidemark_model::Activity;
use tidemark_store::{NewAccount, NewSubscription, SqliteStore, Store};

use crate::simulate::{SimulatedService, Simulator};

/// Options of `tidemark demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep watching (and printing) after the scripted changes, until Ctrl-C.
    #[arg(long)]
    follow: bool,
    /// Watch this directory instead of a fresh temporary one (no scripted changes are made
    /// outside a temporary directory unless --script is given).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Make the scripted changes even in a directory given with --dir.
    #[arg(long)]
    script: bool,
    /// What to watch: a local directory, or the Jive or Onna simulator run in this process.
    #[arg(long, value_enum, default_value = "local")]
    service: DemoService,
}

/// The upstreams the demo can watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DemoService {
    /// A directory on this machine (`local` connector).
    Local,
    /// The Jive simulator (`jive` connector).
    Jive,
    /// The Onna simulator (`onna` connector).
    Onna,
}

/// Scripted changes on a simulator; returns how many activities they produce.
async fn make_upstream_changes(simulator: &Simulator) -> anyhow::Result<usize> {
    use tidemark_simulators::jive::ContentSpec;
    use tidemark_simulators::onna::{ActivityLogSpec, AuditLogSpec};
    // Longer than a poll interval: polling sees states, so two changes of one item between
    // two polls would be one activity.
    let pause = || tokio::time::sleep(Duration::from_millis(1_500));
    let now = chrono::Utc::now;
    let step = |what: &str| println!("  $ {what}");
    match simulator {
        Simulator::Jive(sim) => {
            step("create document \"Q3 plan\" and file \"budget.xlsx\"");
            let plan = sim.create_content(ContentSpec::new("Q3 plan", now()));
            let budget =
                sim.create_content(ContentSpec::new("budget.xlsx", now()).with_type("file"));
            pause().await;
            step("edit \"Q3 plan\"");
            sim.modify_content(&plan, now());
            pause().await;
            step("start discussion \"Launch date?\"");
            sim.create_content(ContentSpec::new("Launch date?", now()).with_type("discussion"));
            pause().await;
            step("delete \"budget.xlsx\"");
            sim.delete_content(&budget, now());
            Ok(5)
        }
        Simulator::Onna(sim) => {
            let user = "ann@acmecorp.com";
            step("ann logs in and opens the navigation menu");
            sim.add_activity(ActivityLogSpec::new("login", user, now()).with_route("/login"));
            sim.add_activity(
                ActivityLogSpec::new("nav-menu-opened", user, now()).with_route("/dashboard"),
            );
            pause().await;
            step("ann adds a Slack source (audit log)");
            sim.add_audit(AuditLogSpec::new(
                "add",
                "Added SlackDatasource source: \"DEMO\"",
                now(),
            ));
            pause().await;
            step("ann shares a workspace, then removes a resource");
            sim.add_activity(
                ActivityLogSpec::new("sharing", user, now())
                    .with_route("/dashboard/workspace/list"),
            );
            sim.add_audit(AuditLogSpec::new("delete", "Resource removed", now()));
            Ok(5)
        }
    }
}

/// The scripted changes and how many activities each produces.
async fn make_changes(root: &Path) -> anyhow::Result<usize> {
    let pause = || tokio::time::sleep(Duration::from_millis(400));
    let step = |what: &str| println!("  $ {what}");
    step("mkdir reports && echo ... > reports/q3.txt");
    std::fs::create_dir(root.join("reports"))?;
    std::fs::write(root.join("reports/q3.txt"), "Q3 revenue: 1.2M\n")?;
    pause().await;
    step("echo ... > notes.md");
    std::fs::write(root.join("notes.md"), "# Notes\n")?;
    pause().await;
    step("echo ... >> notes.md");
    std::fs::write(root.join("notes.md"), "# Notes\n- ship the demo\n")?;
    pause().await;
    step("mv notes.md notes-final.md");
    std::fs::rename(root.join("notes.md"), root.join("notes-final.md"))?;
    pause().await;
    step("mkdir archive && mv reports/q3.txt archive/q3.txt");
    std::fs::create_dir(root.join("archive"))?;
    std::fs::rename(root.join("reports/q3.txt"), root.join("archive/q3.txt"))?;
    pause().await;
    step("rm notes-final.md");
    std::fs::remove_file(root.join("notes-final.md"))?;
    // add reports, add q3, add notes, update notes, rename notes, add archive, move q3, delete
    Ok(8)
}

/// One line per activity: sequence, time, type/subtype, object type, path.
fn describe(sequence: u64, activity: &Activity) -> String {
    let path = |object: &Option<Value>| -> String {
        let object = object.as_ref();
        ["path", "name", "id"]
            .iter()
            .find_map(|key| object.and_then(|o| o.get(*key)).and_then(Value::as_str))
            .unwrap_or("?")
            .to_owned()
    };
    let kind = activity
        .target
        .as_ref()
        .and_then(|t| t.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    let what = match &activity.previous_target {
        Some(previous) if path(&Some(previous.clone())) != path(&activity.target) => {
            format!(
                "{} -> {}",
                path(&activity.previous_target),
                path(&activity.target)
            )
        }
        _ => path(&activity.target),
    };
    let when = activity
        .timestamp
        .map(|t| t.format("%H:%M:%S%.3f").to_string())
        .unwrap_or_else(|| "--:--:--.---".into());
    format!(
        "  #{sequence:<4} {when}  {:<8} {:<8} {:<7} {what}",
        activity.event_type.as_str(),
        activity.event_subtype.as_str(),
        kind
    )
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let workspace = tempfile::tempdir().context("creating a temporary directory")?;
    let upstream = match args.service {
        DemoService::Local => None,
        DemoService::Jive => Some(SimulatedService::Jive),
        DemoService::Onna => Some(SimulatedService::Onna),
    };
    let simulator = match upstream {
        Some(service) => {
            Some(Simulator::start(service, std::net::SocketAddr::from(([127, 0, 0, 1], 0))).await?)
        }
        None => None,
    };
    let (root, scripted) = match (&args.dir, &simulator) {
        (_, Some(_)) => (PathBuf::new(), true),
        (Some(dir), None) => (
            dir.canonicalize()
                .with_context(|| format!("{} is not accessible", dir.display()))?,
            args.script,
        ),
        (None, None) => {
            let root = workspace.path().join("watched");
            std::fs::create_dir(&root)?;
            (root, true)
        }
    };
    let (service, config, watching) = match &simulator {
        Some(simulator) => {
            let mut config = simulator.account_config();
            // Poll every second, up to now (a simulator indexes without lag), so the demo is
            // lively.
            config["poll_interval_seconds"] = json!(1);
            config["safety_lag_seconds"] = json!(0);
            let service = match upstream {
                Some(SimulatedService::Onna) => "onna",
                _ => "jive",
            };
            (
                service,
                config,
                format!("the {service} simulator at {}", simulator.base_url()),
            )
        }
        None => (
            "local",
            json!({ "path": root.to_string_lossy() }),
            root.display().to_string(),
        ),
    };
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(workspace.path().join("tidemark.db"))?);
    // An application with an API key, so webhooks carry X-Kloudless-Signature too.
    let (application_id, _) = tidemark_server::bootstrap_application(&*store, "demo", None).await?;
    let application = store.get_application(application_id).await?;
    let account = store
        .create_account(NewAccount {
            application_id: application.id,
            service: service.into(),
            admin: simulator.is_some(),
            config,
            token_digest: None,
        })
        .await?;
    let subscription = store
        .create_subscription(NewSubscription {
            monitored_resource_api: Some("storage".into()),
            monitored_resource_object_type: Some("folder".into()),
            ..NewSubscription::changes(account.id)
        })
        .await?;
    println!("tidemark demo: watching {watching}");
    println!(
        "  account {} ({service}), subscription {}; activity appears below as it is committed\n",
        account.id, subscription.id
    );

    let engine = Engine::new(
        Arc::clone(&store),
        EngineConfig {
            tick: Duration::from_millis(250),
            ..EngineConfig::default()
        },
    );
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let engine_task = tokio::spawn(Arc::clone(&engine).run(async move {
        let _ = stop_rx.wait_for(|stopped| *stopped).await;
    }));

    // A webhook receiver on loopback, told by the real notifier whenever activity is committed.
    let receiver_url = start_webhook_receiver(application.id).await?;
    store
        .create_webhook(tidemark_store::NewWebhookEndpoint {
            application_id: application.id,
            url: receiver_url.clone(),
            filter: None,
            secret: tidemark_notify::signing::new_endpoint_secret(),
        })
        .await?;
    println!("  webhooks go to {receiver_url}; each one is shown as it arrives\n");
    let notifier = crate::serve::start_notifier(
        &store,
        &engine,
        tidemark_notify::webhooks::NotifierConfig::default(),
        stop_tx.subscribe(),
    )?;

    // The first poll records the baseline; changes after it become activity.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.load_checkpoint(subscription.id).await?.is_none() {
        if tokio::time::Instant::now() > deadline {
            let state = store.poll_state(subscription.id).await?;
            bail!(
                "the {service} connector did not start: {}",
                state.last_error.unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let printer = tokio::spawn(print_stream(
        Arc::clone(&store),
        Arc::clone(&engine),
        subscription.id,
    ));
    let expected = match (&simulator, scripted) {
        (Some(simulator), _) => make_upstream_changes(simulator).await?,
        (None, true) => make_changes(&root).await?,
        (None, false) => 0,
    };
    if scripted {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while store.latest_sequence(subscription.id).await? < expected as u64 {
            if tokio::time::Instant::now() > deadline {
                tracing::warn!("not every scripted change arrived in time");
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if args.follow || !scripted {
        match &simulator {
            Some(simulator) => {
                simulator.generate(1.0);
                println!("\nthe simulator now makes about one change a second; Ctrl-C to stop");
            }
            None => println!("\nwatching {watching} — change files there; Ctrl-C to stop"),
        }
        crate::serve::shutdown_signal().await;
    }
    let total = store.latest_sequence(subscription.id).await?;
    let _ = stop_tx.send(true);
    engine_task.await?;
    notifier.stopped().await;
    printer.abort();
    if let Some(simulator) = &simulator {
        simulator.shutdown();
    }
    println!(
        "\n{total} activities in the stream of subscription {}. Done.",
        subscription.id
    );
    Ok(())
}

/// Follows the stream by cursor position, woken by the engine's commit announcements.
async fn print_stream(store: Arc<dyn Store>, engine: Arc<Engine>, subscription_id: i64) {
    let mut commits = engine.subscribe_commits();
    let mut position = 0u64;
    loop {
        match store.read_activity(subscription_id, position, 1000).await {
            Ok(rows) => {
                for row in &rows {
                    match row.activity() {
                        Ok(activity) => println!("{}", describe(row.sequence, &activity)),
                        Err(error) => println!("  #{} <unreadable: {error}>", row.sequence),
                    }
                    position = row.sequence;
                }
                if !rows.is_empty() {
                    continue;
                }
            }
            Err(error) => tracing::warn!(%error, "reading the stream failed"),
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), commits.recv()).await;
    }
}

/// Answers the webhook test request with the application id and prints every notification.
async fn start_webhook_receiver(application_id: i64) -> anyhow::Result<String> {
    use axum::routing::post;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/webhook", listener.local_addr()?);
    let app = axum::Router::new().route(
        "/webhook",
        post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                if body.as_ref() != b"{}" {
                    let signed = headers.contains_key("webhook-signature")
                        && headers.contains_key("x-kloudless-signature");
                    println!(
                        "        webhook  {} {}",
                        String::from_utf8_lossy(&body),
                        if signed {
                            "(signed twice)"
                        } else {
                            "(unsigned!)"
                        }
                    );
                }
                application_id.to_string()
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

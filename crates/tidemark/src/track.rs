//! `tidemark track`: follows one subscription's activity by time range with parallel workers
//! (seed 000's parallel tracking, through [`tidemark_client::tracker`]), writing NDJSON, with
//! a progress bar on stderr.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use clap::Args;
use tidemark_client::tracker::{
    NdjsonFile, NdjsonWriter, Progress, Summary, Tracker, TrackerConfig,
};
use tidemark_client::{AccountRef, Auth, Client, SubscriptionRef};

/// Options of `tidemark track`.
#[derive(Debug, Args)]
pub struct TrackArgs {
    /// The Tidemark server, e.g. `http://127.0.0.1:8080`.
    #[arg(long, env = "TIDEMARK_URL")]
    url: String,
    /// The application's API key.
    #[arg(
        long,
        env = "TIDEMARK_API_KEY",
        hide_env_values = true,
        required_unless_present = "bearer_token",
        conflicts_with = "bearer_token"
    )]
    api_key: Option<String>,
    /// An account's bearer token instead of an API key (`--account me` names its account).
    #[arg(long, env = "TIDEMARK_BEARER_TOKEN", hide_env_values = true)]
    bearer_token: Option<String>,
    /// The account: its numeric id, or `me` with a bearer token.
    #[arg(long, env = "TIDEMARK_ACCOUNT")]
    account: AccountRef,
    /// The subscription: its numeric id, or `default`.
    #[arg(long, env = "TIDEMARK_SUBSCRIPTION")]
    subscription: SubscriptionRef,
    /// Time slices read at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    workers: u16,
    /// Slices each round is split into (default: one per worker).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    slices: Option<u32>,
    /// Where the NDJSON goes (one activity per line): a file, appended to, or `-` for stdout.
    #[arg(long)]
    out: String,
    /// Where tracking starts (ISO 8601, e.g. 2026-01-31T12:00:00Z) when there is no saved
    /// state; default: the subscription's oldest activity (or its watermark, if older).
    #[arg(long, value_parser = parse_time)]
    from: Option<DateTime<Utc>>,
    /// State file (JSON): the position is saved there after every slice written, and a
    /// restart resumes from it (it wins over `--from`). With a file `--out`, the file is cut
    /// back to the length the state records, so a slice interrupted by a crash is neither
    /// lost nor written twice.
    #[arg(long)]
    state: Option<PathBuf>,
    /// Stop once caught up to the watermark, instead of waiting for more.
    #[arg(long)]
    once: bool,
    /// Seconds between watermark reads once caught up.
    #[arg(long, default_value_t = 30.0, value_parser = parse_seconds)]
    poll_interval: f64,
    /// Activities per page.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
    page_size: u32,
    /// Flush the output file to disk after every slice, before the position moves past it
    /// (to survive power loss, not only a crash of this process).
    #[arg(long)]
    sync: bool,
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    tidemark_model::time::parse(text)
}

fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && (0.0..=86_400.0).contains(&seconds) => Ok(seconds),
        _ => Err(format!(
            "`{text}` is not a number of seconds between 0 and 86400"
        )),
    }
}

pub async fn run(args: TrackArgs) -> anyhow::Result<()> {
    let auth = match (&args.api_key, &args.bearer_token) {
        (Some(key), _) => Auth::ApiKey(key.clone()),
        (None, Some(token)) => Auth::Bearer(token.clone()),
        (None, None) => anyhow::bail!("--api-key or --bearer-token is required"),
    };
    if args.account == AccountRef::Me && matches!(auth, Auth::ApiKey(_)) {
        anyhow::bail!(
            "--account me names a bearer token's account: give --bearer-token, or the account's id"
        );
    }
    let client = Client::new(&args.url, auth).map_err(|e| anyhow::anyhow!("--url: {e}"))?;
    let config = TrackerConfig {
        workers: usize::from(args.workers),
        slices: args.slices.map(|s| s as usize),
        page_size: args.page_size,
        poll_interval: Duration::from_secs_f64(args.poll_interval),
        once: args.once,
        start: args.from,
        state_path: args.state.clone(),
        ..TrackerConfig::default()
    };
    let tracker = Tracker::new(client, args.account, args.subscription, config)?;
    let progress = tracker.progress();
    let bar = progress_bar();
    let ticker = tokio::spawn(tick(Arc::clone(&progress), bar.clone()));
    let started = Instant::now();
    let summary = if args.out == "-" {
        if args.state.is_some() {
            eprintln!("note: with --out -, a slice interrupted by a crash is written again after a restart");
        }
        tracker
            .run(NdjsonWriter::new(std::io::BufWriter::with_capacity(
                1 << 20,
                std::io::stdout(),
            )))
            .await
            .map(|(_, summary)| summary)
    } else {
        let sink = NdjsonFile::open(std::path::Path::new(&args.out), args.sync)
            .with_context(|| format!("opening --out {}", args.out))?;
        tracker.run(sink).await.map(|(_, summary)| summary)
    };
    ticker.abort();
    bar.finish_and_clear();
    let summary = summary?;
    eprintln!("{}", describe(&summary, started.elapsed()));
    Ok(())
}

fn progress_bar() -> indicatif::ProgressBar {
    let bar =
        indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} slices {pos}/{len} [{bar:30}] {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

/// Redraws the bar from the tracker's counters four times a second.
async fn tick(progress: Arc<Progress>, bar: indicatif::ProgressBar) {
    let started = Instant::now();
    let mut interval = tokio::time::interval(Duration::from_millis(250));
    loop {
        interval.tick().await;
        bar.set_length(progress.slices_planned());
        bar.set_position(progress.slices_released());
        let read = progress.activities_read();
        let rate = read as f64 / started.elapsed().as_secs_f64().max(1e-3);
        let position = progress
            .position()
            .map_or_else(|| "-".to_owned(), |at| tidemark_model::time::format(&at));
        bar.set_message(format!(
            "{} activities written, {read} read ({rate:.0}/s), at {position}",
            progress.activities_released()
        ));
    }
}

fn describe(summary: &Summary, elapsed: Duration) -> String {
    let time = |at: Option<DateTime<Utc>>| {
        at.map_or_else(|| "none".to_owned(), |at| tidemark_model::time::format(&at))
    };
    format!(
        "tracked {} activities in {} slices ({:.0}/s); position {}, watermark {}",
        summary.activities,
        summary.slices,
        summary.activities as f64 / elapsed.as_secs_f64().max(1e-3),
        time(summary.position),
        time(summary.watermark)
    )
}

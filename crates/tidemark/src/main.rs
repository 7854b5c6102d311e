//! The `tidemark` command: runs the service (`serve`), shows it working (`demo`), follows a
//! subscription by time range (`track`), moves a SQLite store to PostgreSQL (`migrate`), and
//! measures it (`bench`). It wires the crates together and owns nothing else: configuration
//! parsing, process lifecycle, and what is printed to a person.

use clap::{Parser, Subcommand};

/// mimalloc: the engine's hot path allocates many small JSON values per activity and hands
/// encoded pages between threads; mimalloc handles both better than glibc's allocator
/// (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod bench;
mod db;
mod demo;
mod migrate;
mod serve;
mod simulate;
mod track;

/// Tidemark: self-hosted activity monitoring, wire-compatible with the Kloudless Activity API.
#[derive(Debug, Parser)]
#[command(name = "tidemark", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the engine and the HTTP endpoints until interrupted.
    Serve(serve::ServeArgs),
    /// Watch a temporary directory, change files in it, and print the activity stream live.
    Demo(demo::DemoArgs),
    /// Run one upstream simulator (jive, onna) on a loopback port.
    Simulate(simulate::SimulateArgs),
    /// Follow a subscription's activity by time range with parallel workers (seed 000),
    /// writing NDJSON; resumable from a state file.
    Track(track::TrackArgs),
    /// Copy a whole SQLite store into an empty PostgreSQL database (ids, activity sequence
    /// numbers and cursors unchanged), to move to several nodes.
    Migrate(migrate::MigrateArgs),
    /// Applications (tenants).
    #[command(subcommand)]
    App(serve::AppCommand),
    /// Benchmarks (figures are reported as ratios over a baseline measured in the same run).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Logs to stderr; `TIDEMARK_LOG` (an `EnvFilter` spec) overrides `default`.
fn init_tracing(default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("TIDEMARK_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .compact()
        .init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The demo and the benchmarks print their own output; only problems are logged.
    init_tracing(match cli.command {
        Command::Serve(_) | Command::App(_) => "info",
        Command::Migrate(_) => "warn",
        Command::Demo(_) | Command::Bench(_) | Command::Simulate(_) | Command::Track(_) => "warn",
    });
    match cli.command {
        Command::Serve(args) => serve::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::App(command) => serve::app(command).await,
        Command::Bench(command) => bench::run(command).await,
        Command::Simulate(args) => simulate::run(args).await,
        Command::Track(args) => track::run(args).await,
        Command::Migrate(args) => migrate::run(args).await,
    }
}

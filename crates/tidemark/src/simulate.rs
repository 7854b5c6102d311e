//! `tidemark simulate SERVICE`: runs one upstream simulator on a port, for the demo, the
//! benchmarks and anyone who wants to point a connector at something real without an account.

use std::net::SocketAddr;

use clap::{Args, ValueEnum};
use tidemark_simulators::{JiveSimulator, OnnaSimulator};

/// The services that have a simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SimulatedService {
    /// Jive REST v3 (`/api/core/v3/contents`, `/deletedObjects/contents`).
    Jive,
    /// Onna (`@activityLog`, `@auditLog`).
    Onna,
}

/// Options of `tidemark simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Which upstream to simulate.
    service: SimulatedService,
    /// Loopback port to listen on (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Produce random, realistic activity at about this many items a second.
    #[arg(long, default_value_t = 0.0)]
    generate: f64,
}

/// A running simulator of either kind.
pub enum Simulator {
    /// Jive.
    Jive(JiveSimulator),
    /// Onna.
    Onna(OnnaSimulator),
}

impl Simulator {
    /// Starts the simulator of `service` on `addr`.
    pub async fn start(service: SimulatedService, addr: SocketAddr) -> std::io::Result<Self> {
        Ok(match service {
            SimulatedService::Jive => Simulator::Jive(JiveSimulator::start_on(addr).await?),
            SimulatedService::Onna => Simulator::Onna(OnnaSimulator::start_on(addr).await?),
        })
    }

    /// The API root a connector's `base_url` names.
    pub fn base_url(&self) -> String {
        match self {
            Simulator::Jive(sim) => sim.base_url(),
            Simulator::Onna(sim) => sim.base_url(),
        }
    }

    /// The account config that reaches this simulator with its default credentials.
    pub fn account_config(&self) -> serde_json::Value {
        let credentials = match self {
            Simulator::Jive(_) => serde_json::json!({"username": "admin", "password": "password"}),
            Simulator::Onna(_) => serde_json::json!({"token": "sim-token"}),
        };
        serde_json::json!({"base_url": self.base_url(), "credentials": credentials})
    }

    /// Keeps producing activity at about `rate` items a second (0 stops).
    pub fn generate(&self, rate: f64) {
        match self {
            Simulator::Jive(sim) => sim.spawn_generator(rate),
            Simulator::Onna(sim) => sim.spawn_generator(rate),
        }
    }

    /// Stops the server.
    pub fn shutdown(&self) {
        match self {
            Simulator::Jive(sim) => sim.shutdown(),
            Simulator::Onna(sim) => sim.shutdown(),
        }
    }
}

/// Runs the simulator until Ctrl-C or SIGTERM.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    if !(0.0..=100_000.0).contains(&args.generate) {
        anyhow::bail!("--generate must be between 0 and 100000 items a second");
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], args.port));
    let simulator = Simulator::start(args.service, addr).await?;
    if args.generate > 0.0 {
        simulator.generate(args.generate);
    }
    let config = simulator.account_config();
    println!(
        "{}",
        serde_json::json!({"base_url": simulator.base_url(), "account_config": config})
    );
    eprintln!(
        "simulating {:?} at {}; script it under /_sim (POST /_sim/faults, GET /_sim/requests, ...); Ctrl-C to stop",
        args.service,
        simulator.base_url()
    );
    crate::serve::shutdown_signal().await;
    simulator.shutdown();
    Ok(())
}

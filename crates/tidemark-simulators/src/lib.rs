//! Simulators: faithful local HTTP fakes of the upstream APIs Tidemark's connectors talk to.
//!
//! This crate owns the upstreams' *wire formats* and nothing else: request parameters,
//! response envelopes, pagination, timestamp formats, error bodies, rate limiting. It depends on
//! no Tidemark crate, so a simulator cannot quietly agree with our own bugs (STYLE.md 1).
//! Connector tests use it as a dev-dependency; `tidemark simulate`, the demo and the
//! benchmarks run it as a server.
//!
//! # Layout
//!
//! - [`jive`]: [`JiveSimulator`], Jive REST v3 (`/contents`, `/deletedObjects/contents`).
//! - [`onna`]: [`OnnaSimulator`], Onna's `@activityLog` and `@auditLog`.
//! - [`faults`]: what every simulator shares: scripted [`Fault`]s and the [`RecordedRequest`]
//!   log.
//!
//! # What every simulator does
//!
//! Each simulator is a real axum HTTP server on a loopback port (`start()` binds
//! `127.0.0.1:0`, `start_on(addr)` a given address) serving in a background tokio task. The
//! handle is cheap to [`Clone`]; all clones share one state. The server stops when
//! `shutdown()` is called on any clone, or when the last clone is dropped.
//!
//! Every request outside `/_sim` is a *data request*: it is recorded (see `requests()`),
//! consumes at most one scripted [`Fault`], is authenticated, and is answered in the upstream's
//! own format, errors included. A request the upstream would refuse gets the upstream's error
//! response, never a panic.
//!
//! Scripted items become visible after the simulator's *lag* (`set_lag`): an item scripted at
//! wall-clock time W with timestamp T appears in responses from W + lag on, still carrying T.
//! The lag in force when the item was scripted is the one that applies to it.
//!
//! Under `/_sim/...` the same server offers a JSON control API without authentication, which
//! mirrors the scripting methods so a simulator started by `tidemark simulate` can be driven
//! with curl. The routes are listed in each simulator's module doc.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use tidemark_simulators::{jive::ContentSpec, Fault, JiveSimulator};
//!
//! let sim = JiveSimulator::start().await?;
//! let id = sim.create_content(ContentSpec::new("Quarterly report", chrono::Utc::now()));
//! sim.push_fault(Fault::RateLimited { retry_after_secs: 2 });
//! // point the connector at sim.base_url() ...
//! # let _ = id;
//! sim.shutdown();
//! # Ok(())
//! # }
//! ```

pub mod faults;
pub mod jive;
pub mod onna;

mod generator;
mod server;

pub use faults::{Fault, RecordedRequest};
pub use jive::JiveSimulator;
pub use onna::OnnaSimulator;

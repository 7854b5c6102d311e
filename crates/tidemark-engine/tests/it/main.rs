//! Engine integration tests: the real scheduler and store (SQLite; PostgreSQL for several
//! nodes), with scripted connectors and simulated upstreams.

mod jive_e2e;
mod local_e2e;
mod multi_node;
mod onna_e2e;
mod scheduling;
mod upstream;

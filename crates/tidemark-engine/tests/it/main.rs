//! Engine integration tests: the real scheduler and SQLite store, with scripted connectors.

mod jive_e2e;
mod local_e2e;
mod onna_e2e;
mod scheduling;
mod upstream;

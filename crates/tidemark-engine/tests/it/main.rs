//! Engine integration tests: the real scheduler and SQLite store, with scripted connectors.

mod local_e2e;
mod scheduling;

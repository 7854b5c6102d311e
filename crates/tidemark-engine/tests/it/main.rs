//! Engine integration tests: the real scheduler and SQLite store, with scripted connectors.

mod scheduling;

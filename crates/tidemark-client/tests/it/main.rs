//! The client and its tracker against a real Tidemark server started in this process.

mod client;
mod harness;
mod tracker;

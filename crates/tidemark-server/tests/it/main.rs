//! The HTTP API tested through real HTTP: the server runs in-process on a loopback port with a
//! temporary SQLite store, and tests talk to it with an ordinary HTTP client.

mod harness;
mod python;

mod accounts;
mod activity;
mod application;
mod bad_input;
mod destinations;
mod kloudless_sdk;
mod openapi;
mod subscriptions;
mod tenancy;
mod time_range;
mod upstream_accounts;
mod webhooks;

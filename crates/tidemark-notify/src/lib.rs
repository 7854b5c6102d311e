//! Notifications: telling applications that a subscription has new activity.
//!
//! This crate owns webhook delivery (signing, coalescing, retries, the attempts log), the
//! publishers for message brokers (NATS JetStream, RabbitMQ, Redis Streams; the `brokers`
//! feature, on by default) and the EventBridge-style event patterns that filter what is sent. It reads the stream and keeps
//! its delivery state through the [`tidemark_store::Store`]; it does not poll upstreams and
//! serves no HTTP.
//!
//! # Layout
//! - [`brokers`]: broker targets, messages and publishers (acknowledged, ordered per subscription).
//! - [`filter`]: event patterns (seed 003's `{"detail": {"activity": {"v1": {"type": ["add"]}}}}`).
//! - [`signing`]: `X-Kloudless-Signature` and the Standard Webhooks headers.
//! - [`targets`]: where webhooks may go (URL rules, the private-address policy).
//! - [`webhooks`]: the [`webhooks::Notifier`] that finds due notifications and delivers them.

#[cfg(feature = "brokers")]
pub mod brokers;
pub mod filter;
pub mod metrics;
pub mod signing;
pub mod targets;
pub mod webhooks;

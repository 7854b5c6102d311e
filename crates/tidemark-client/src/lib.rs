//! A Rust SDK for Tidemark's HTTP API (Kloudless-compatible), and the parallel time-range
//! tracker built on it.
//!
//! This crate owns the client side of the wire: requests, credentials, decoding answers into
//! [`tidemark_model`] types, typed errors, waiting out rate limits, and following cursors.
//! It knows nothing of how the server stores or produces activity; it depends on no other
//! Tidemark crate than the model.
//!
//! # Layout
//! - [`Client`]: accounts (list, get, create), subscriptions (list, get, create), List
//!   Activity one page at a time ([`Client::activity_page`] with a [`Query`]: a cursor, or a
//!   time range whose answer carries the watermark), as a [`futures::Stream`]
//!   ([`Client::activity_stream`]), or a whole time range ([`Client::read_range`]).
//! - [`ClientError`]: the server's error body ([`ClientError::Api`]), rate limits that outlast
//!   the [`RetryPolicy`], transport and decoding failures.
//! - [`tracker`]: seed 000's parallel tracking: a subscription's activity by time slices read
//!   in parallel, delivered in time order, resumable after a crash without loss or
//!   duplicates.
//!
//! # Example
//! ```no_run
//! # async fn example() -> Result<(), tidemark_client::ClientError> {
//! use futures::TryStreamExt as _;
//! use tidemark_client::{AccountRef, Auth, Client, Query, SubscriptionRef};
//!
//! let client = Client::new("http://127.0.0.1:8080", Auth::ApiKey("tmk_...".into()))?;
//! let mut stream = Box::pin(client.activity_stream(
//!     AccountRef::Id(12),
//!     SubscriptionRef::Default,
//!     Query::start(),
//! ));
//! while let Some(activity) = stream.try_next().await? {
//!     println!("{} {}", activity.id, activity.event_type);
//! }
//! # Ok(())
//! # }
//! ```

mod client;
mod error;
pub mod tracker;
mod types;

pub use client::{Auth, Client, RetryPolicy};
pub use error::ClientError;
pub use types::{
    Account, AccountRef, ActivityPage, BearerToken, NewAccount, NewSubscription, Query, RangeRead,
    RefError, SubscriptionRef,
};

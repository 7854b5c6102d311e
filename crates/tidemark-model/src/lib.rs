//! The unified data model of Tidemark, shared by every other crate.
//!
//! This crate owns the *shapes* of things and the pure functions on them; it does no I/O.
//!
//! # Layout
//! - [`activity`]: the v2 [`Activity`] object of the Kloudless Activity API (seed 003) with its
//!   category / type / subtype vocabularies ([`EventCategory`], [`EventType`], [`EventSubtype`]).
//! - [`v1`]: the v1 event object (seed 004) and the documented v2 -> v1 mapping.
//! - [`account`]: [`Application`], [`Account`], [`Subscription`] and the validation of the
//!   fields a client may send for them.
//! - [`cursor`]: the opaque, authenticated [`Cursor`] naming a position in one subscription's
//!   stream.
//!
//! Everything that crosses the wire serializes to exactly the JSON the Kloudless API uses, so
//! an application written for Kloudless can read Tidemark's output unchanged.

pub mod account;
pub mod activity;
pub mod cursor;
pub mod time;
pub mod v1;

pub use account::{
    Account, AccountId, Application, ApplicationId, MonitoredResource, Subscription,
    SubscriptionId, SubscriptionLiterals, SubscriptionType, ValidationError,
};
pub use activity::{Activity, EventCategory, EventSubtype, EventType};
pub use cursor::{Cursor, CursorError, CursorKey, CursorRange};
pub use v1::{StoredV1, V1Action, V1Event, V1EventType};

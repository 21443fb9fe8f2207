//! Everything the trecho processes share: the client protocol (framing,
//! JSON-RPC envelope, methods), the internal protocol between router and
//! shards, errors with their codes, slot hashing, the shard map, the
//! schedule model, civil time, and configuration loading.
//!
//! Modules:
//! - [`protocol`]: client framing, envelope and methods.
//! - [`internal`]: router-to-shard and shard-to-shard messages.
//! - [`link`]: a pipelined connection to one shard.
//! - [`types`]: segments, bookings, locators.
//! - [`error`]: client-visible errors and their codes.
//! - [`hashing`] and [`shardmap`]: placement.
//! - [`schedule`]: airports, flights, segments, and the OpenFlights importer.
//! - [`time`]: dates and RFC 3339.
//! - [`failpoint`]: crash points for tests.
//! - [`config`]: layered configuration.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod failpoint;
pub mod hashing;
pub mod internal;
pub mod link;
pub mod process;
pub mod protocol;
pub mod schedule;
pub mod shardmap;
pub mod time;
pub mod types;

pub use error::Error;

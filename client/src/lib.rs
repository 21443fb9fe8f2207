//! A typed async client for trecho, and an invariant checker for a whole
//! cluster.
//!
//! The client speaks the router's JSON-RPC 2.0 protocol over one TCP
//! connection. It does not parse or validate params: the router does, and
//! its errors come back as [`ClientError::Rpc`]. The command line `trecho`
//! (in `main.rs`), the integration tests and the benchmark build on this
//! crate.
//!
//! Modules:
//! - [`Client`]: a pipelined connection to the router, shared by many tasks.
//! - [`RawConnection`]: one connection that sends and reads raw lines, for
//!   protocol tests.
//! - [`ClientError`]: why a call failed.
//! - [`audit`]: reads every shard's state and checks the seat invariants.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
mod client;
mod error;
mod raw;

pub use client::{Client, ClientOptions};
pub use error::{ClientError, RpcError};
pub use raw::RawConnection;
pub use trecho_common::protocol::methods::{
    AddShardResult, AdminToken, BookParams, MoveSlotsResult, RoutesParams, SearchParams,
};
pub use trecho_common::types::{Booking, BookingStatus, Passenger, Segment};

//! In-process tests: the router's `run` on 127.0.0.1:0 in front of fake
//! shards that answer the internal protocol. They check framing,
//! pipelining, batches, limits, forwarding, merges, the router's side of
//! the two-phase commit and of slot moves, and the admin methods. Tests
//! with real shards live in the workspace's integration tests.

mod admin;
mod booking;
mod fake_shard;
mod framing;
mod harness;
mod methods;
mod moving;

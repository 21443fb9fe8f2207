//! `trecho-node`: runs one shard or the router, for integration tests that
//! start real processes so that they can kill them.
//!
//! `trecho-node shard ARGS...` takes the flags of `trecho-shard`, and
//! `trecho-node router ARGS...` those of `trecho-router`.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

/// Runs one trecho process for the integration tests.
#[derive(Parser)]
#[command(name = "trecho-node")]
struct Cli {
    #[command(subcommand)]
    node: Node,
}

#[derive(Subcommand)]
enum Node {
    /// Run a shard.
    Shard(trecho_shard::Args),
    /// Run the router.
    Router(trecho_router::Args),
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().node {
        Node::Shard(args) => trecho_shard::main_with(args),
        Node::Router(args) => trecho_router::main_with(args),
    }
}

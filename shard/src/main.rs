//! The `trecho-shard` binary: parses the command line and runs a shard.

#![forbid(unsafe_code)]

use clap::Parser;

/// Owns the segments and bookings of its slots, keeps them on disk, and
/// serves the router's internal protocol.
#[derive(Debug, Parser)]
#[command(name = "trecho-shard", version)]
struct Cli {
    #[command(flatten)]
    args: trecho_shard::Args,
}

fn main() -> anyhow::Result<()> {
    trecho_shard::main_with(Cli::parse().args)
}

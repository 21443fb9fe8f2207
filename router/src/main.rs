//! The `trecho-router` binary: parses the command line and runs the router.

#![forbid(unsafe_code)]

use clap::Parser;

/// Accepts trecho clients (JSON-RPC 2.0, one JSON value per line) and
/// forwards their requests to the shards.
#[derive(Debug, Parser)]
#[command(name = "trecho-router", version)]
struct Cli {
    #[command(flatten)]
    args: trecho_router::Args,
}

fn main() -> anyhow::Result<()> {
    trecho_router::main_with(Cli::parse().args)
}

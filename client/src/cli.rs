//! The `trecho` command line: argument parsing and dispatch.
//!
//! Client commands call the router through [`trecho_client::Client`], and
//! `admin` commands move slots between shards through it. The
//! `shard` and `router` commands run that process in this one, `cluster`
//! starts a local cluster of child processes, and `schedule import` builds
//! a schedule file.

mod admin;
mod args;
mod audit;
mod cluster;
mod commands;
mod health;
mod output;
mod request_id;
mod schedule;
mod table;
mod view;

use std::future::Future;
use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context;

use clap::Parser;

use args::{Cli, Command};

/// Environment variable that `trecho cluster` sets on its children: while
/// it is set, a shard or router exits once its stdin reaches end of file.
pub(crate) const EXIT_WITH_PARENT: &str = "TRECHO_EXIT_WITH_PARENT";

/// Makes this process exit when its stdin closes, if [`EXIT_WITH_PARENT`]
/// is set. `trecho cluster` holds the other end of that pipe, so its
/// children never outlive it and keep a data directory locked.
fn exit_with_parent() {
    if std::env::var_os(EXIT_WITH_PARENT).is_none() {
        return;
    }
    std::thread::spawn(|| {
        let mut buffer = [0u8; 256];
        let mut stdin = std::io::stdin();
        loop {
            match std::io::Read::read(&mut stdin, &mut buffer) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                // The pipe may come non-blocking from the parent's runtime.
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                }
                Err(_) => break,
            }
        }
        // Exiting without a shutdown is safe: every answer already sent is
        // on disk, and a restart replays the journal.
        // stderr is a pipe to the supervisor too, so this write may fail;
        // eprintln! would panic then and never reach the exit.
        let _ = writeln!(
            std::io::stderr(),
            "trecho cluster is gone (stdin closed); exiting"
        );
        std::process::exit(1);
    });
}

/// Parses the command line, runs the command, and prints any error.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        // The shard and the router start their own runtime and logging.
        Command::Shard(node) => {
            exit_with_parent();
            trecho_shard::main_with(node.args)
        }
        Command::Router(node) => {
            exit_with_parent();
            trecho_router::main_with(node.args)
        }
        Command::Cluster(args) => {
            install_tracing("info");
            block_on(cluster::run(args))
        }
        Command::Health(args) => block_on(health::run(args)),
        Command::Bench(args) => {
            install_tracing("warn");
            crate::bench::main(args)
        }
        Command::Audit(args) => {
            install_tracing("warn");
            block_on(audit::run(args))
        }
        Command::Admin(command) => {
            install_tracing("warn");
            block_on(admin::run(command))
        }
        Command::Schedule(command) => schedule::run(command),
        Command::Client(command) => {
            install_tracing("warn");
            block_on(commands::run(command))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            output::print_error(&error);
            ExitCode::FAILURE
        }
    }
}

fn block_on(future: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the Tokio runtime")?;
    runtime.block_on(future)
}

/// Logs to standard error, filtered by `RUST_LOG` or else by `default`.
fn install_tracing(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

//! `trecho bench`: a load generator that measures trecho, Redis and
//! PostgreSQL on the same bookings.
//!
//! The run builds the segments of the schedule and dates it is given, and
//! loads them into Redis or PostgreSQL when one of those is the target. It
//! then opens C connections with D requests in flight on each, and sends
//! requests for a duration or a count. Every answer's latency goes into an HDR histogram.
//! After the load stops it reads the server's own data and checks that the
//! seats taken during the run equal the seats of the bookings confirmed to
//! it (and, on trecho, runs the cluster's invariant audit).
//!
//! Modules:
//! - `args`: the command line options.
//! - `workload`: the segments, trips and the next request of each task.
//! - `idle`: idle connections and the server memory they take.
//! - `load`: the connections, request loops and progress line.
//! - `stats`: histograms, error counts and the summary.
//! - `trecho`, `redis`, `postgres`: each target's requests and totals.

mod args;
mod idle;
mod load;
mod postgres;
mod redis;
mod stats;
mod trecho;
mod workload;

use std::sync::Arc;

use anyhow::Context;

pub(crate) use args::BenchArgs;
use args::Target;
use load::Connection;
use stats::{Check, RunInfo, Summary};
use workload::Catalog;

/// Connections opened at once while the run starts.
const CONNECT_CONCURRENCY: usize = 64;

/// Runs the bench on a runtime of `args.threads` worker threads and prints
/// the summary.
pub(crate) fn main(args: BenchArgs) -> anyhow::Result<()> {
    args.validate().map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads as usize)
        .enable_all()
        .build()
        .context("failed to start the Tokio runtime")?;
    let summary = runtime.block_on(run(&args))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{}", summary.to_table());
    }
    if summary.check_passed == Some(false) {
        anyhow::bail!(
            "the server-side check failed: the seats taken do not match the bookings confirmed \
             to the bench; see the check line above"
        );
    }
    Ok(())
}

async fn run(args: &BenchArgs) -> anyhow::Result<Summary> {
    let catalog = Catalog::load(args)?;
    let address = args.address();
    let bookable = catalog.bookable(args.workload);
    let sha = prepare_target(args, &address, &catalog, &bookable).await?;

    // Every trecho shard stops serving while it builds its audit dump, so a
    // run without the check reads nothing before the load either.
    let before = match args.no_check {
        true => None,
        false => Some(totals(args, &address, &catalog, &bookable).await?),
    };

    let connections = open_connections(args, &address, sha).await?;
    let (idle_streams, idle_cost) = match args.idle {
        0 => (Vec::new(), None),
        count => {
            let (streams, cost) = idle::open(&address, count, args.server_pid).await?;
            (streams, Some(cost))
        }
    };
    eprintln!(
        "{} {} workload: {} connections x {} in flight over {} segments",
        args.target.name(),
        args.workload.name(),
        args.connections,
        args.depth,
        bookable.len()
    );

    let outcome = load::run(args, catalog.clone(), connections).await;
    drop(idle_streams);
    let run = RunInfo {
        target: args.target.name().to_owned(),
        label: args.label.clone(),
        address: address.clone(),
        workload: args.workload.name().to_owned(),
        connections: args.connections,
        depth: args.depth,
    };

    let mut summary = Summary::new(run, &outcome.tally, outcome.elapsed);
    summary.idle = idle_cost;

    if let Some(before) = before {
        let after = totals(args, &address, &catalog, &bookable).await?;
        let problems = match args.target {
            Target::Trecho => trecho::audit(&address, outcome.locators).await?,
            Target::Redis | Target::Postgres => Vec::new(),
        };
        summary.set_check(Check {
            seats_taken_before: before.0,
            seats_taken_after: after.0,
            seats_confirmed: outcome.tally.seats,
            bookings_in_doubt: outcome.tally.in_doubt,
            seats_in_doubt: outcome.tally.seats_in_doubt,
            bookings_added: after.1.saturating_sub(before.1),
            problems,
        });
    }
    Ok(summary)
}

/// Loads the segments into Redis or PostgreSQL; returns the Redis script's
/// SHA1.
async fn prepare_target(
    args: &BenchArgs,
    address: &str,
    catalog: &Catalog,
    bookable: &[usize],
) -> anyhow::Result<Option<Arc<str>>> {
    match args.target {
        Target::Trecho => Ok(None),
        Target::Redis => {
            let connection = redis::RedisConnection::connect(address).await?;
            let sha = redis::prepare(&connection, catalog, bookable).await?;
            Ok(Some(sha.into()))
        }
        Target::Postgres => {
            postgres::prepare(address, &args.pg_user, catalog, bookable).await?;
            Ok(None)
        }
    }
}

/// Returns the seats taken and the number of booking records.
async fn totals(
    args: &BenchArgs,
    address: &str,
    catalog: &Catalog,
    bookable: &[usize],
) -> anyhow::Result<(u64, u64)> {
    match args.target {
        Target::Trecho => trecho::totals(address).await,
        Target::Redis => {
            let connection = redis::RedisConnection::connect(address).await?;
            redis::totals(&connection, catalog, bookable).await
        }
        Target::Postgres => postgres::totals(address, &args.pg_user).await,
    }
}

async fn open_connections(
    args: &BenchArgs,
    address: &str,
    sha: Option<Arc<str>>,
) -> anyhow::Result<Vec<Connection>> {
    use futures::StreamExt;

    let opens = (0..args.connections).map(|_| {
        let sha = sha.clone();
        async move {
            match args.target {
                Target::Trecho => Ok(Connection::Trecho(
                    trecho::connect(address, args.timeout()).await?,
                )),
                Target::Redis => Ok(Connection::Redis {
                    connection: redis::RedisConnection::connect(address).await?,
                    sha: sha.context("the Redis script was not loaded")?,
                }),
                Target::Postgres => Ok(Connection::Postgres(Arc::new(
                    postgres::PgConnection::connect(address, &args.pg_user).await?,
                ))),
            }
        }
    });
    futures::stream::iter(opens)
        .buffer_unordered(CONNECT_CONCURRENCY)
        .collect::<Vec<anyhow::Result<Connection>>>()
        .await
        .into_iter()
        .collect()
}

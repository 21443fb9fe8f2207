//! The trecho router: accepts client connections speaking JSON-RPC 2.0 over
//! newline-delimited JSON, forwards each request to the shard that owns it
//! over one pipelined link per shard, fans reads out to every shard and
//! merges them, and drives the prepare and decide steps of a booking that
//! spans shards.
//!
//! The router holds no booking state: shards own segments and bookings, and
//! the home shard of a booking decides its outcome. The wire types, the
//! shard map, the schedule and the shard link live in `trecho_common`.
//!
//! Modules:
//! - [`config`]: [`RouterConfig`] and the command line [`Args`].
//! - `server`: the accept loop, the connection limit and shutdown.
//! - `connection`: one client connection, its framing, pipelining and
//!   back-pressure.
//! - `response`: results and how responses and batches are written.
//! - `dispatch`: turns a validated call into shard requests.
//! - `forward`, `fanout`, `booking` (with `booking/two_phase`) and
//!   `routes`: the methods.
//! - `admin`: `admin.move_slots` and `admin.add_shard`, behind the admin
//!   token.
//! - `retry`: when a request refused for a slot that moved or is moving
//!   is sent again.
//! - `cluster`: the shard map, the links (with `cluster/links`, a table
//!   that grows as shards join) and the schedule the methods share, and
//!   the refresh of the map from the shards.
//! - `discover`: the shard map asked from the shards listed in `seeds`,
//!   and single requests to shards without a link.
//! - `shard_error`: maps link failures and shard refusals to client errors.
//! - `rfc3339`: timestamp parsing for merges.

#![forbid(unsafe_code)]

pub mod config;

mod admin;
mod booking;
mod cluster;
mod connection;
mod discover;
mod dispatch;
mod fanout;
mod forward;
mod response;
mod retry;
mod rfc3339;
mod routes;
mod server;
mod shard_error;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use trecho_common::shardmap::ShardMap;

pub use config::{Args, RouterConfig};

use cluster::Cluster;

/// Why the router could not start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration or the shard map is invalid.
    #[error(transparent)]
    Config(#[from] trecho_common::config::Error),
    /// The schedule file could not be loaded.
    #[error(transparent)]
    Schedule(#[from] trecho_common::schedule::Error),
    /// A setting is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// Serves clients on `listener` until `shutdown` completes.
///
/// Takes the shard map from the shards listed in `seeds`, or builds it from
/// `config` and rejects one that does not cover every slot exactly once.
/// Then it loads the schedule (the `schedule` file, or the built-in one),
/// starts one link per shard, and accepts connections. On
/// shutdown it stops accepting, lets open connections finish the requests
/// they have started for up to five seconds, and returns.
///
/// # Errors
///
/// Returns [`Error`] when the configuration, the shard map or the schedule
/// is invalid; nothing is served then.
pub async fn run(
    listener: TcpListener,
    config: RouterConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    config.validate().map_err(Error::Invalid)?;
    let map = match config.seed_addresses().map_err(Error::Invalid)? {
        Some(seeds) => {
            tracing::info!(seeds = ?seeds, "asking the shards for the shard map");
            discover::shard_map(&seeds).await
        }
        None => config.shard_map()?,
    };
    serve_with_map(listener, config, map, shutdown).await
}

/// Loads the schedule and serves clients on `listener` with `map` until
/// `shutdown` completes.
async fn serve_with_map(
    listener: TcpListener,
    config: RouterConfig,
    map: ShardMap,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let schedule = match &config.schedule {
        Some(path) => trecho_common::schedule::Schedule::load(path)?,
        None => trecho_common::schedule::Schedule::builtin(),
    };
    tracing::info!(
        shards = map.shards.len(),
        map_version = map.version,
        airports = schedule.airports.len(),
        flights = schedule.flights.len(),
        "router starting"
    );
    let cluster = Arc::new(Cluster::start(map, schedule, &config).map_err(Error::Invalid)?);
    if config.map_refresh_ms > 0 {
        let every = std::time::Duration::from_millis(config.map_refresh_ms);
        tokio::spawn(Cluster::refresh_periodically(
            Arc::downgrade(&cluster),
            every,
        ));
    }
    server::serve(listener, cluster, server::Settings::from(&config), shutdown).await;
    tracing::info!("router stopped");
    Ok(())
}

/// Runs the router process: installs logging (filter from `RUST_LOG`,
/// default `info`), loads the configuration, starts a multi-thread Tokio
/// runtime, listens on `listen`, and serves until SIGTERM or Ctrl-C.
///
/// # Errors
///
/// Returns an error when the configuration is invalid, the runtime cannot
/// start, or the listen address cannot be bound.
pub fn main_with(args: Args) -> anyhow::Result<()> {
    trecho_common::process::install_tracing();
    let config = RouterConfig::load(&args).context("failed to load the router configuration")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the Tokio runtime")?;
    runtime.block_on(async move {
        let mut shutdown = Box::pin(async {
            trecho_common::process::shutdown_signal("router").await;
            tracing::info!("shutdown requested");
        });
        config
            .validate()
            .map_err(Error::Invalid)
            .context("the router could not start")?;
        let seeds = config
            .seed_addresses()
            .map_err(Error::Invalid)
            .context("the router could not start")?;
        // With seeds, the router listens only once it has a map, so that
        // clients are refused rather than kept waiting while it has none.
        let map = match seeds {
            Some(seeds) => {
                tracing::info!(seeds = ?seeds, "asking the shards for the shard map before listening");
                tokio::select! {
                    map = discover::shard_map(&seeds) => map,
                    () = &mut shutdown => return Ok(()),
                }
            }
            None => config.shard_map().context("the router could not start")?,
        };
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("failed to listen on {}", config.listen))?;
        let address = listener
            .local_addr()
            .context("failed to read the listen address")?;
        tracing::info!(address = %address, "router listening");
        serve_with_map(listener, config, map, shutdown)
            .await
            .context("the router could not start")
    })
}

//! The trecho shard: owns the segments and bookings of its hash slots and
//! keeps them on disk.
//!
//! One owner task applies every request in arrival order, so no lock
//! decides who gets the last seat; a journal thread writes each batch of
//! changes, syncs it once (group commit) and only then releases the
//! replies. On start the shard seeds its segments from the schedule (first
//! start only) and replays its journal.
//!
//! Modules:
//! - [`config`]: [`ShardConfig`] and the command line [`Args`].
//! - `storage`: the data directory, `meta.json` and `segments.json`.
//! - `catalog`: the segments and their seat counts.
//! - `record` and `state`: the journal records and the state machine that
//!   applies them (bookings, holds, two-phase commit).
//! - `journal`: the journal file, replay and the group-commit thread.
//! - `owner`: the task that owns the state, its timers and its messages to
//!   other shards.
//! - `server` and `batch`: the internal protocol listener and the replies.

#![forbid(unsafe_code)]

pub mod config;

mod batch;
mod catalog;
mod journal;
mod owner;
mod record;
mod server;
mod state;
mod storage;

use std::future::Future;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

pub use config::{Args, ShardConfig};
pub use journal::Error as JournalError;
pub use state::ApplyError;
pub use storage::Error as StorageError;

use owner::{Owner, OwnerChannels};
use state::{Rng, State};

/// Requests waiting for the owner task before new ones get `overloaded`.
const REQUEST_QUEUE: usize = 65_536;
/// Batches waiting for the journal thread before the owner task waits.
const JOURNAL_QUEUE: usize = 2;

/// Why the shard stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration or the shard map is invalid.
    #[error(transparent)]
    Config(#[from] trecho_common::config::Error),
    /// The configured id is not in the shard map.
    #[error("shard {0} is not in the shard map; check --id and --shards")]
    NotInMap(u32),
    /// The data directory could not be opened or seeded.
    #[error(transparent)]
    Storage(#[from] storage::Error),
    /// The journal could not be replayed.
    #[error(transparent)]
    Journal(#[from] journal::Error),
    /// The journal thread could not start or stopped after a failed write.
    #[error("the journal stopped: {0}; restart the shard to replay the journal")]
    JournalStopped(String),
}

/// Serves the internal protocol on `listener` until `shutdown` completes.
///
/// Opens the data directory (seeding it on the first start), replays the
/// journal, starts the journal thread and the owner task, and accepts
/// connections. On shutdown it stops accepting, writes what is pending and
/// returns.
///
/// # Errors
///
/// Returns [`Error`] when the configuration is invalid, the data cannot be
/// read, or the journal cannot be written.
pub async fn run(
    listener: TcpListener,
    config: ShardConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let map = config.shard_map()?;
    if map.shard(config.id).is_err() {
        return Err(Error::NotInMap(config.id));
    }
    let dir = config.data_dir();
    let seed = storage::SeedSource {
        schedule: config.schedule.clone(),
        start: config.start_date(),
        days: config.days,
    };
    let open_dir = dir.clone();
    let open_map = map.clone();
    let id = config.id;
    // Seeding and replay read whole files; keep them off the runtime.
    let (data_dir_lock, state, file) = tokio::task::spawn_blocking(move || -> Result<_, Error> {
        let (lock, catalog) = storage::open(&open_dir, id, &open_map, &seed)?;
        let mut state = State::new(
            id,
            open_map,
            catalog,
            Rng::from_entropy(),
            config.prepare_timeout_ms,
        );
        let (file, _) = journal::replay(&open_dir.join(storage::JOURNAL_FILE), &mut state)?;
        Ok((lock, state, file))
    })
    .await
    .map_err(|error| Error::JournalStopped(error.to_string()))??;

    let (request_sender, requests) = mpsc::channel(REQUEST_QUEUE);
    let (command_sender, commands) = mpsc::unbounded_channel();
    let (journal_sender, batches) = mpsc::channel(JOURNAL_QUEUE);
    let (recycle, recycled) = mpsc::unbounded_channel();
    let writer = journal::writer::JournalWriter {
        file,
        batches,
        recycle,
        commands: command_sender.clone(),
        shard_id: id,
    };
    let journal_thread = std::thread::Builder::new()
        .name(format!("journal-{id}"))
        .spawn(move || writer.run())
        .map_err(|error| Error::JournalStopped(error.to_string()))?;
    let owner = Owner::new(
        state,
        OwnerChannels {
            requests,
            commands,
            command_sender,
            journal: journal_sender,
            recycled,
        },
    );
    let (stop_sender, stop) = watch::channel(false);
    let owner_task = tokio::spawn(owner.run(stop.clone()));
    let options = server::ServerOptions {
        shard_id: id,
        max_connections: config.max_connections,
    };
    let address = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    tracing::info!(shard.id = id, %address, data_dir = %dir.display(), "shard ready");
    let server_task = tokio::spawn(server::serve(listener, request_sender, options, stop));

    // The shard stops on request, or when the owner stops on its own
    // because the journal thread failed.
    tokio::pin!(owner_task);
    let mut owner_result = None;
    tokio::select! {
        () = shutdown => tracing::info!(shard.id = id, "shutdown requested"),
        result = &mut owner_task => owner_result = Some(result),
    }
    let _ = stop_sender.send(true);
    let _ = server_task.await;
    let owner_result = match owner_result {
        Some(result) => result,
        None => owner_task.await,
    };
    let journal_result = tokio::task::spawn_blocking(move || journal_thread.join())
        .await
        .ok()
        .and_then(Result::ok);
    // Another shard may take the directory only once the journal thread,
    // which writes to it, has stopped.
    drop(data_dir_lock);
    if let Some(Err(error)) = journal_result {
        return Err(Error::JournalStopped(error.to_string()));
    }
    match owner_result {
        Ok(Ok(())) => {
            tracing::info!(shard.id = id, "shard stopped");
            Ok(())
        }
        Ok(Err(stopped)) => Err(Error::JournalStopped(stopped.to_string())),
        Err(panic) => Err(Error::JournalStopped(panic.to_string())),
    }
}

/// Runs the shard process: installs logging to stderr (filter from
/// `RUST_LOG`, default `info`), loads the configuration, listens on
/// `listen`, and serves until SIGTERM or Ctrl-C.
///
/// # Errors
///
/// Returns an error when the configuration is invalid, the listen address
/// cannot be bound, or the data cannot be read or written.
pub fn main_with(args: Args) -> anyhow::Result<()> {
    trecho_common::process::install_tracing();
    let config = ShardConfig::load(&args).context("failed to load the shard configuration")?;
    // The owner task is the hot path; one worker thread per core is plenty
    // beside the journal thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("failed to start the Tokio runtime")?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("failed to listen on {}", config.listen))?;
        let id = config.id;
        let shutdown = trecho_common::process::shutdown_signal("shard");
        run(listener, config, shutdown)
            .await
            .with_context(|| format!("shard {id} stopped"))
    })
}

//! An invariant checker over a whole cluster.
//!
//! [`check`] reads `cluster.status` from the router for the shard map,
//! connects to every shard's internal protocol directly, fetches each
//! shard's audit dump ([`ShardOp::Audit`]) and checks:
//!
//! - no segment has more seats taken than its capacity;
//! - every segment's `taken` equals the sum of seats over the live
//!   (prepared or committed) reservations on it;
//! - every held or confirmed booking has a committed reservation of its
//!   seats on every one of its segments, on the shards that own them, and a
//!   cancelled or expired booking has none once its finishes are
//!   acknowledged;
//! - no committed reservation lacks a booking record at its home shard;
//! - nothing stays prepared, pending or unacknowledged for longer than
//!   [`Options::in_doubt_after`];
//! - bookings the caller saw are there with the status it expects.
//!
//! The audit is meant for a quiet cluster, after the load of a test stops.
//! Under load, a booking's records on two shards are read at slightly
//! different times and may disagree for a moment.
//!
//! [`ShardOp::Audit`]: trecho_common::internal::ShardOp::Audit

mod checks;
mod report;
mod snapshot;

use std::time::Duration;

use tokio::time::Instant;
use trecho_common::link::LinkError;
use trecho_common::types::BookingStatus;

use crate::error::ClientError;

pub use report::{Report, Violation};

use snapshot::{Cluster, Snapshot};

/// How often the audit reads the shards again while it waits for
/// transactions to settle.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A failure to read the cluster. Violations found are not errors: they are
/// in the [`Report`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `cluster.status` failed.
    #[error("cannot read the shard map from the router: {0}")]
    Router(#[from] ClientError),
    /// The router's shard map failed validation, for example because it
    /// does not cover every slot exactly once.
    #[error("the router's shard map is invalid: {0}")]
    Map(#[from] trecho_common::shardmap::Error),
    /// A shard did not accept a connection.
    #[error(
        "shard {shard} at {address} did not accept a connection within {timeout:?}; \
         start it and run the audit again"
    )]
    ShardUnreachable {
        /// The shard's id.
        shard: u32,
        /// Its internal address.
        address: String,
        /// The time allowed.
        timeout: Duration,
    },
    /// A shard failed the audit request.
    #[error("shard {shard} at {address} failed the audit request: {error}")]
    Shard {
        /// The shard's id.
        shard: u32,
        /// Its internal address.
        address: String,
        /// The cause.
        error: LinkError,
    },
    /// Slots changed shards while the audit read the cluster, so the
    /// shards' dumps do not describe one moment.
    #[error(
        "slots moved between shards while the audit ran; run it again once `trecho status` \
         shows no move in progress"
    )]
    MapChanged,
    /// A shard returned another reply to the audit request.
    #[error("shard {shard} returned {reply} to the audit request")]
    UnexpectedReply {
        /// The shard's id.
        shard: u32,
        /// The reply, as debug text.
        reply: String,
    },
}

/// A booking the caller saw, and the status it must have now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedBooking {
    /// The locator.
    pub locator: String,
    /// The status the booking must have.
    pub status: BookingStatus,
}

/// Settings of [`check`]: how long to wait, and the bookings expected.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long a reservation may stay prepared, a transaction pending at
    /// home, or a finish unacknowledged before the audit reports it as in
    /// doubt. It should exceed the shards' prepare timeout (5 s by default)
    /// plus the time a participant needs to resolve with the home shard.
    pub in_doubt_after: Duration,
    /// Bookings that must exist with the given status.
    pub expected: Vec<ExpectedBooking>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            in_doubt_after: Duration::from_secs(10),
            expected: Vec::new(),
        }
    }
}

/// Checks every invariant of the cluster behind the router at `router` and
/// returns every violation found.
///
/// When the first reading shows prepared reservations, pending
/// transactions or unacknowledged finishes, the audit reads again until
/// they settle or `options.in_doubt_after` passes. Whatever was unsettled in
/// the first reading and still is in the last is reported as in doubt, and
/// the other checks run on the last reading.
///
/// # Errors
///
/// Returns an [`Error`] when the router or a shard cannot be read.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), trecho_client::audit::Error> {
/// use trecho_client::audit::{check, Options};
///
/// let report = check("127.0.0.1:7878", &Options::default()).await?;
/// assert!(report.is_clean(), "{report}");
/// # Ok(())
/// # }
/// ```
pub async fn check(router: &str, options: &Options) -> Result<Report, Error> {
    let before = ownership(router).await?;
    let cluster = Cluster::connect(router).await?;
    let first = cluster.snapshot().await?;
    let unsettled = first.unsettled();
    let last = if unsettled.is_empty() {
        first
    } else {
        settle(&cluster, Instant::now() + options.in_doubt_after)
            .await?
            .0
    };
    if ownership(router).await? != before {
        return Err(Error::MapChanged);
    }
    let in_doubt = last.unsettled().intersection(&unsettled).copied().collect();
    Ok(checks::run(&last, &in_doubt, &options.expected))
}

/// Returns every shard's slots from `cluster.status`, or
/// [`Error::MapChanged`] while a move is in progress.
async fn ownership(router: &str) -> Result<Vec<(u32, Vec<[u16; 2]>)>, Error> {
    let status = crate::client::Client::connect(router)
        .await?
        .status()
        .await?;
    if status.shards.iter().any(|shard| shard.moving.is_some()) {
        return Err(Error::MapChanged);
    }
    Ok(status
        .shards
        .into_iter()
        .map(|shard| (shard.id, shard.slots))
        .collect())
}

/// Waits until no reservation is prepared, no transaction is pending and
/// every finish is acknowledged, on every shard. Returns whether that
/// happened within `timeout`.
///
/// # Errors
///
/// Returns an [`Error`] when the router or a shard cannot be read.
///
/// # Examples
///
/// ```no_run
/// # async fn run() -> Result<(), trecho_client::audit::Error> {
/// use std::time::Duration;
///
/// let settled = trecho_client::audit::wait_settled("127.0.0.1:7878", Duration::from_secs(15)).await?;
/// assert!(settled, "transactions are still in flight after 15 s");
/// # Ok(())
/// # }
/// ```
pub async fn wait_settled(router: &str, timeout: Duration) -> Result<bool, Error> {
    let cluster = Cluster::connect(router).await?;
    let (_, settled) = settle(&cluster, Instant::now() + timeout).await?;
    Ok(settled)
}

/// Reads the shards until nothing is unsettled or `deadline` passes, and
/// returns the last reading and whether it is settled.
async fn settle(cluster: &Cluster, deadline: Instant) -> Result<(Snapshot, bool), Error> {
    loop {
        let snapshot = cluster.snapshot().await?;
        let settled = snapshot.unsettled().is_empty();
        if settled || Instant::now() >= deadline {
            return Ok((snapshot, settled));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

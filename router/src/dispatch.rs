//! Turns a validated call into its result, or into the shard requests that
//! produce it.
//!
//! Ordering contract: [`dispatch`] queues the call's first shard messages on
//! the links before it returns. The connection calls it for each request in
//! the order the requests were read, so requests of one connection that
//! touch the same segment reach its shard in the order the client sent them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use trecho_common::internal::ShardOp;
use trecho_common::protocol::Call;

use crate::cluster::Cluster;
use crate::response::{Outcome, Reply};
use crate::{admin, booking, fanout, forward, routes};

/// The rest of a request, after its first shard messages were queued.
pub(crate) type Pending = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// A call's result, or the future of it.
pub(crate) enum Dispatched {
    /// Answered without a shard.
    Ready(Outcome),
    /// Waiting for shards.
    Pending(Pending),
}

/// Starts `call`: answers it locally, or queues its first shard messages
/// and returns the future of its result.
pub(crate) fn dispatch(cluster: &Arc<Cluster>, call: Call) -> Dispatched {
    if asks_every_shard(&call) {
        return match cluster.fanout_permit() {
            Ok(permit) => {
                let pending = start(cluster, call);
                Dispatched::Pending(Box::pin(async move {
                    let outcome = pending.await;
                    drop(permit);
                    outcome
                }))
            }
            Err(error) => Dispatched::Ready(Err(error)),
        };
    }
    match call {
        Call::Ping => Dispatched::Ready(Ok(Reply::Pong)),
        Call::AirportsList => Dispatched::Ready(Ok(Reply::Encoded(cluster.airports()))),
        call => Dispatched::Pending(start(cluster, call)),
    }
}

/// Returns whether `call` asks every shard, so it needs a fan-out permit.
/// `cluster.status` does not: operators need it most when the router is
/// busy, and its answers are small.
fn asks_every_shard(call: &Call) -> bool {
    matches!(
        call,
        Call::SegmentsSearch(_) | Call::RoutesFind(_) | Call::List(_)
    )
}

/// Queues the shard messages of a call that needs shards.
fn start(cluster: &Arc<Cluster>, call: Call) -> Pending {
    match call {
        Call::Ping => Box::pin(async { Ok(Reply::Pong) }),
        Call::AirportsList => {
            let airports = cluster.airports();
            Box::pin(async move { Ok(Reply::Encoded(airports)) })
        }
        Call::SegmentsSearch(params) => fanout::search(cluster, params),
        Call::SegmentsGet(segment) => forward::get_segment(cluster, segment.id),
        Call::RoutesFind(params) => routes::find(cluster, params),
        Call::Book(request) => booking::book(cluster, request),
        Call::Confirm(locator, document) => {
            let op = ShardOp::Confirm {
                locator: locator.0,
                document,
            };
            forward::to_home(cluster, locator, op)
        }
        Call::Cancel(locator, document) => {
            let op = ShardOp::Cancel {
                locator: locator.0,
                document,
            };
            forward::cancel(cluster, locator, op)
        }
        Call::Get(locator, document) => {
            let op = ShardOp::GetBooking {
                locator: locator.0,
                document,
            };
            forward::to_home(cluster, locator, op)
        }
        Call::List(document) => fanout::list(cluster, document),
        Call::ClusterStatus => fanout::status(cluster),
        Call::MoveSlots(params) => admin::move_slots(cluster, params),
        Call::AddShard(params) => admin::add_shard(cluster, params),
    }
}

//! Requests that go to exactly one shard: `segments.get`, the single-shard
//! booking, and `bookings.confirm`, `cancel` and `get`.

use std::sync::Arc;

use trecho_common::hashing::slot;
use trecho_common::internal::{ShardError, ShardOp, ShardReply};
use trecho_common::link::LinkError;
use trecho_common::types::Locator;

use crate::cluster::Cluster;
use crate::dispatch::Pending;
use crate::response::Reply;
use crate::shard_error::{client_error, reply_type, unexpected_reply};

/// Picks the client's result out of a shard's answer, or gives the answer
/// back when it has the wrong type.
pub(crate) type Expect = fn(ShardReply) -> Result<Reply, &'static str>;

/// Sends `op` now to the shard that owns `slot` and returns the future of
/// the client's result.
///
/// When that shard rejects it with `not_owner`, the router
/// refreshes its map from the shards and sends `op` once more, to the new
/// owner. The refusing shard changed nothing, so the second send cannot
/// apply `op` twice.
pub(crate) fn forward(
    cluster: &Arc<Cluster>,
    slot: u16,
    op: ShardOp,
    expected: &'static str,
    expect: Expect,
) -> Pending {
    let write = op.is_write();
    let link = cluster.link(cluster.owner_of_slot(slot)).clone();
    let answer = link.send(&op);
    let cluster = cluster.clone();
    Box::pin(async move {
        let (link, result) = match answer.await {
            Err(LinkError::Remote(ShardError::NotOwner { .. })) => {
                cluster.refresh().await;
                let link = cluster.link(cluster.owner_of_slot(slot)).clone();
                let again = link.send(&op).await;
                (link, again)
            }
            first => (link, first),
        };
        match result {
            Ok(reply) => {
                expect(reply).map_err(|other| unexpected_reply(link.shard(), expected, other))
            }
            Err(error) => Err(client_error(&link, error, write)),
        }
    })
}

/// Extracts a segment.
pub(crate) fn expect_segment(reply: ShardReply) -> Result<Reply, &'static str> {
    match reply {
        ShardReply::Segment { segment } => Ok(Reply::Segment(segment)),
        other => Err(reply_type(&other)),
    }
}

/// Extracts a booking.
pub(crate) fn expect_booking(reply: ShardReply) -> Result<Reply, &'static str> {
    match reply {
        ShardReply::Booking { booking } => Ok(Reply::Booking(booking)),
        other => Err(reply_type(&other)),
    }
}

/// `segments.get`: asks the shard that owns the segment.
pub(crate) fn get_segment(cluster: &Arc<Cluster>, id: String) -> Pending {
    let slot = slot(&id);
    forward(
        cluster,
        slot,
        ShardOp::GetSegment { id },
        "segment",
        expect_segment,
    )
}

/// `bookings.confirm`, `cancel` and `get`: ask the booking's home shard,
/// the owner of the slot the locator encodes.
pub(crate) fn to_home(cluster: &Arc<Cluster>, locator: Locator, op: ShardOp) -> Pending {
    forward(cluster, locator.slot(), op, "booking", expect_booking)
}

//! Requests that go to exactly one shard: `segments.get`, the single-shard
//! booking, and `bookings.confirm`, `cancel` and `get`.

use trecho_common::internal::{ShardOp, ShardReply};
use trecho_common::link::ShardLink;
use trecho_common::types::Locator;

use crate::cluster::Cluster;
use crate::dispatch::Pending;
use crate::response::Reply;
use crate::shard_error::{client_error, reply_type, unexpected_reply};

/// Picks the client's result out of a shard's answer, or gives the answer
/// back when it has the wrong type.
pub(crate) type Expect = fn(ShardReply) -> Result<Reply, &'static str>;

/// Sends `op` over `link` now and returns the future of the client's
/// result.
pub(crate) fn forward(
    link: &ShardLink,
    op: &ShardOp,
    expected: &'static str,
    expect: Expect,
) -> Pending {
    let write = op.is_write();
    let answer = link.send(op);
    let link = link.clone();
    Box::pin(async move {
        match answer.await {
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
pub(crate) fn get_segment(cluster: &Cluster, id: String) -> Pending {
    let link = cluster.link(cluster.owner_of_segment(&id));
    forward(link, &ShardOp::GetSegment { id }, "segment", expect_segment)
}

/// `bookings.confirm`, `cancel` and `get`: ask the booking's home shard,
/// the owner of the slot the locator encodes.
pub(crate) fn to_home(cluster: &Cluster, locator: Locator, op: &ShardOp) -> Pending {
    let link = cluster.link(cluster.owner_of_slot(locator.slot()));
    forward(link, op, "booking", expect_booking)
}

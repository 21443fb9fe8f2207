//! Requests that go to exactly one shard: `segments.get`, the single-shard
//! booking, and `bookings.confirm`, `cancel` and `get`.

use std::future::Future;
use std::sync::Arc;

use trecho_common::hashing::slot;
use trecho_common::internal::{Release, ShardOp, ShardReply};
use trecho_common::link::{LinkError, ShardLink};
use trecho_common::types::Locator;

use crate::cluster::Cluster;
use crate::dispatch::Pending;
use crate::response::Reply;
use crate::retry::{Refusal, Retries};
use crate::shard_error::{client_error, reply_type, unexpected_reply};

/// Picks the client's result out of a shard's answer, or gives the answer
/// back when it has the wrong type.
pub(crate) type Expect = fn(ShardReply) -> Result<Reply, &'static str>;

/// Sends `op` now to the shard that owns `slot` and returns the future of
/// the client's result.
///
/// When that shard rejects it with `not_owner` or `slot_moving`, the router
/// waits when the slot is moving, refreshes its map from the shards and
/// sends `op` again to the owner, as [`Retries`] allows. The refusing shard
/// changed nothing, so sending again cannot apply `op` twice.
pub(crate) fn forward(
    cluster: &Arc<Cluster>,
    slot: u16,
    op: ShardOp,
    expected: &'static str,
    expect: Expect,
) -> Pending {
    let write = op.is_write();
    let answer = send_to_owner(cluster, slot, op);
    Box::pin(async move {
        let (link, result) = answer.await;
        match result {
            Ok(reply) => {
                expect(reply).map_err(|other| unexpected_reply(link.shard(), expected, other))
            }
            Err(error) => Err(client_error(&link, error, write)),
        }
    })
}

/// Sends `op` now to the shard that owns `slot`, and returns the future of
/// its response with the link that gave it. While the shard refuses `op`
/// because it does not own or is moving `slot`, the future retries as
/// [`Retries`] allows, on the owner in the refreshed map, and returns the
/// last response.
pub(crate) fn send_to_owner(
    cluster: &Arc<Cluster>,
    slot: u16,
    op: ShardOp,
) -> impl Future<Output = (ShardLink, Result<ShardReply, LinkError>)> + Send + 'static {
    let link = cluster.link(cluster.owner_of_slot(slot)).clone();
    let first = link.send(&op);
    let cluster = cluster.clone();
    async move {
        let mut link = link;
        let mut answer = first.await;
        let mut retries = Retries::default();
        while let Some(refusal) = Refusal::of(&answer) {
            if !retries.again(&cluster, refusal).await {
                break;
            }
            link = cluster.link(cluster.owner_of_slot(slot)).clone();
            tracing::debug!(
                shard.id = link.shard(),
                slot,
                "sending a refused request again"
            );
            answer = link.send(&op).await;
        }
        (link, answer)
    }
}

/// `bookings.cancel`: sends the cancel to the booking's home shard, then
/// releases the booking's seats on the other shards before responding, so
/// that a request sent after the response finds them free. The home shard
/// sends the same releases from its outbox, and a second release changes
/// nothing.
pub(crate) fn cancel(cluster: &Arc<Cluster>, locator: Locator, op: ShardOp) -> Pending {
    let answer = send_to_owner(cluster, locator.slot(), op);
    let cluster = cluster.clone();
    Box::pin(async move {
        let (link, result) = answer.await;
        match result {
            Ok(ShardReply::Cancelled { booking, release }) => {
                if let Some(release) = release {
                    release_elsewhere(&cluster, release).await;
                }
                Ok(Reply::Booking(booking))
            }
            Ok(other) => Err(unexpected_reply(
                link.shard(),
                "cancelled",
                reply_type(&other),
            )),
            Err(error) => Err(client_error(&link, error, true)),
        }
    })
}

/// Sends the release of `release` to the owner of each of its slots and
/// waits for their responses. A shard that does not respond, or refuses
/// because the slot moved or is moving, gets the release from the home
/// shard's outbox later.
async fn release_elsewhere(cluster: &Cluster, release: Release) {
    let mut by_link: Vec<(usize, Vec<u16>)> = Vec::new();
    for slot in release.slots {
        let link = cluster.owner_of_slot(slot);
        match by_link.iter_mut().find(|(index, _)| *index == link) {
            Some((_, slots)) => slots.push(slot),
            None => by_link.push((link, vec![slot])),
        }
    }
    let sends = by_link.into_iter().map(|(index, slots)| {
        let op = ShardOp::Finish {
            txn: release.txn,
            commit: false,
            slots,
        };
        cluster.link(index).send(&op)
    });
    for answer in futures::future::join_all(sends).await {
        if let Err(error) = answer {
            tracing::debug!(txn = release.txn, %error, "release left to the home shard");
        }
    }
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

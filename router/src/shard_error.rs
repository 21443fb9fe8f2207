//! Maps what went wrong between the router and a shard to the error the
//! client sees. The choice between `shard_unavailable` and
//! `outcome_unknown` depends only on the link error and whether the
//! operation writes, never on message text.

use trecho_common::error::Error;
use trecho_common::internal::{ShardError, ShardReply};
use trecho_common::link::{LinkError, ShardLink};

/// Returns the client's error for a failed call over `link`.
///
/// - `Unavailable`: the request was never sent, so `shard_unavailable`.
/// - `Lost`: `shard_unavailable` for a read, `outcome_unknown` for a write,
///   because a write may have happened.
/// - A shard's client error passes through unchanged.
/// - `NotOwner`: the slot changed shards after the router chose one, so
///   `map_changed`, which is safe to retry. Callers refresh the map and
///   retry once before the client sees it.
/// - `SlotMoving`: the slot is being handed to another shard and nothing
///   changed, so `map_changed` too. Callers wait and retry for up to
///   about two seconds first (see `retry`).
/// - `BadRequest` is a router bug or a version mismatch: logged at error and
///   returned as an internal error.
pub(crate) fn client_error(link: &ShardLink, error: LinkError, write: bool) -> Error {
    match error {
        LinkError::Unavailable {
            shard,
            retry_after_ms,
        } => Error::ShardUnavailable {
            shard,
            retry_after_ms,
        },
        LinkError::Lost { shard } if write => Error::OutcomeUnknown { shard },
        LinkError::Lost { shard } => Error::ShardUnavailable {
            shard,
            retry_after_ms: link.retry_after_ms(),
        },
        LinkError::Remote(ShardError::Client { error }) => error,
        LinkError::Remote(ShardError::NotOwner {
            slot,
            shard,
            map_version,
            owner,
        }) => {
            tracing::info!(
                shard.id = shard,
                slot,
                shard.map_version = map_version,
                owner = ?owner,
                "the shard does not own a slot the router sent it"
            );
            Error::MapChanged { slot, shard }
        }
        LinkError::Remote(ShardError::SlotMoving { slot, shard, .. }) => {
            Error::MapChanged { slot, shard }
        }
        LinkError::Remote(ShardError::BadRequest { message }) => {
            tracing::error!(shard.id = link.shard(), error = %message, "shard rejected a router request");
            Error::internal(format!(
                "shard {} rejected the router's request ({message}); the router and the shard \
                 run incompatible versions",
                link.shard()
            ))
        }
    }
}

/// Returns the internal error for an answer of the wrong type, and logs it.
pub(crate) fn unexpected_reply(shard: u32, expected: &'static str, got: &'static str) -> Error {
    tracing::error!(
        shard.id = shard,
        expected,
        got,
        "unexpected answer from shard"
    );
    Error::internal(format!(
        "shard {shard} answered {got} where {expected} was expected; the router and the shard \
         run incompatible versions"
    ))
}

/// Returns the wire name of a reply's type, for logs that must not carry a
/// passenger's details.
pub(crate) fn reply_type(reply: &ShardReply) -> &'static str {
    match reply {
        ShardReply::Pong => "pong",
        ShardReply::Status(_) => "status",
        ShardReply::ClusterMap { .. } => "cluster_map",
        ShardReply::Segments { .. } => "segments",
        ShardReply::Segment { .. } => "segment",
        ShardReply::Seats { .. } => "seats",
        ShardReply::Booking { .. } => "booking",
        ShardReply::Cancelled { .. } => "cancelled",
        ShardReply::Bookings { .. } => "bookings",
        ShardReply::Prepared => "prepared",
        ShardReply::Outcome { .. } => "outcome",
        ShardReply::Ack => "ack",
        ShardReply::Audit(_) => "audit",
        ShardReply::Moved { .. } => "moved",
        ShardReply::Imported => "imported",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trecho_common::link::LinkOptions;

    #[tokio::test]
    async fn lost_is_unavailable_for_reads_and_unknown_for_writes() {
        // The link is used only for its id and retry hint, so whether
        // anything listens at the address does not matter.
        let link = ShardLink::spawn(4, "127.0.0.1:9".into(), LinkOptions::default());
        let read = client_error(&link, LinkError::Lost { shard: 4 }, false);
        assert_eq!(read.kind(), Some("shard_unavailable"));
        let write = client_error(&link, LinkError::Lost { shard: 4 }, true);
        assert_eq!(write, Error::OutcomeUnknown { shard: 4 });
        let unavailable = LinkError::Unavailable {
            shard: 4,
            retry_after_ms: 250,
        };
        assert_eq!(
            client_error(&link, unavailable, true),
            Error::ShardUnavailable {
                shard: 4,
                retry_after_ms: 250
            }
        );
    }

    #[tokio::test]
    async fn shard_refusals_map_to_client_errors() {
        let link = ShardLink::spawn(1, "127.0.0.1:9".into(), LinkOptions::default());
        let sold_out = Error::SoldOut {
            segment: "AD1-2026-12-20".into(),
            requested: 2,
            left: 1,
        };
        let refusal = LinkError::Remote(ShardError::Client {
            error: sold_out.clone(),
        });
        assert_eq!(client_error(&link, refusal, true), sold_out);
        let not_owner = LinkError::Remote(ShardError::NotOwner {
            slot: 7,
            shard: 1,
            map_version: 2,
            owner: Some(0),
        });
        let error = client_error(&link, not_owner, true);
        assert_eq!(error, Error::MapChanged { slot: 7, shard: 1 });
        assert!(error.is_retryable());
        let moving = LinkError::Remote(ShardError::SlotMoving {
            slot: 9,
            shard: 1,
            retry_after_ms: 50,
        });
        let error = client_error(&link, moving, true);
        assert_eq!(error, Error::MapChanged { slot: 9, shard: 1 });
    }
}

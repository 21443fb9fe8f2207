//! `bookings.create` and `bookings.hold`.
//!
//! A booking whose segments all live on one shard is one `book` request to
//! that shard. Otherwise the router runs the prepare and decide steps of the
//! two-phase commit in [`two_phase`]; the home shard (the owner of the first
//! segment) records the decision and finishes the other participants.

mod two_phase;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use trecho_common::error::Error;
use trecho_common::hashing::slot;
use trecho_common::internal::{ShardOp, ShardReply};
use trecho_common::link::{LinkError, ShardLink};
use trecho_common::protocol::methods::BookRequest;

use crate::cluster::Cluster;
use crate::dispatch::Pending;
use crate::forward::expect_booking;
use crate::response::Reply;
use crate::retry::{Refusal, Retries};
use crate::shard_error::{client_error, unexpected_reply};

/// The segments of a booking that live on one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    /// Index of the shard's link in [`Cluster::links`].
    pub(crate) link: usize,
    /// Its segments, in request order.
    pub(crate) segments: Vec<String>,
}

/// Groups `segments` by the shard `owner` maps them to. Groups come in the
/// order of their first segment, so the first group is the home shard's.
pub(crate) fn group_by_owner(segments: &[String], owner: impl Fn(&str) -> usize) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for segment in segments {
        let link = owner(segment);
        match groups.iter_mut().find(|group| group.link == link) {
            Some(group) => group.segments.push(segment.clone()),
            None => groups.push(Group {
                link,
                segments: vec![segment.clone()],
            }),
        }
    }
    groups
}

/// Starts a booking: the single-shard fast path or a two-phase commit.
///
/// A request id belongs to the passenger's document, so it is checked on
/// the shard that owns the document's slot. When that shard is not the home
/// shard, it joins the two-phase commit, with no segments when it owns none,
/// to claim the request id; its refusal is `request_id_reused`.
///
/// When a shard rejects a slot of the booking with `not_owner` or
/// `slot_moving`, the router waits and refreshes its map as [`Retries`]
/// allows, then plans and books again. The rejecting shard changed
/// nothing, and a two-phase commit is aborted before its response.
pub(crate) fn book(cluster: &Arc<Cluster>, request: BookRequest) -> Pending {
    let first = attempt(cluster, request);
    let cluster = cluster.clone();
    Box::pin(async move {
        let mut result = first.await;
        let mut retries = Retries::default();
        loop {
            let failed = match result {
                Ok(reply) => return Ok(reply),
                Err(failed) => failed,
            };
            let Some(refusal) = failed.refusal else {
                return Err(failed.error);
            };
            if !retries.again(&cluster, refusal).await {
                return Err(failed.error);
            }
            tracing::debug!(?refusal, "booking again after the map changed");
            result = attempt(&cluster, failed.request).await;
        }
    })
}

/// A failed attempt at a booking.
struct Failed {
    /// The client's error when the booking is not tried again.
    error: Error,
    /// Set when a shard rejected a slot that it does not serve at the
    /// moment, so that booking again on a refreshed map may succeed.
    refusal: Option<Refusal>,
    /// The request, for the next attempt.
    request: BookRequest,
}

/// The future of one attempt.
type Attempt = Pin<Box<dyn Future<Output = Result<Reply, Failed>> + Send>>;

/// Plans a booking on the map in use and queues its first shard messages
/// now, before returning the future of the attempt.
fn attempt(cluster: &Arc<Cluster>, request: BookRequest) -> Attempt {
    let (groups, claim_at) = plan(cluster, &request);
    if groups.len() > 1 {
        let booking = two_phase::start(cluster.clone(), request.clone(), groups, claim_at);
        return Box::pin(async move {
            booking.await.map(Reply::Booking).map_err(|failure| Failed {
                error: failure.error,
                refusal: failure.refusal,
                request,
            })
        });
    }
    let link = cluster.link(groups[0].link).clone();
    let op = ShardOp::Book { request };
    let answer = link.send(&op);
    Box::pin(async move {
        let answer = answer.await;
        let refusal = Refusal::of(&answer);
        booking_result(&link, answer).map_err(|error| {
            let ShardOp::Book { request } = op else {
                unreachable!("the op was built as a book request above");
            };
            Failed {
                error,
                refusal,
                request,
            }
        })
    })
}

/// Returns the client's result for a single-shard booking's answer from
/// `link`.
fn booking_result(link: &ShardLink, answer: Result<ShardReply, LinkError>) -> Result<Reply, Error> {
    match answer {
        Ok(reply) => {
            expect_booking(reply).map_err(|other| unexpected_reply(link.shard(), "booking", other))
        }
        Err(error) => Err(client_error(link, error, true)),
    }
}

/// Groups the booking's segments by owner, home first, and adds the shard
/// of the passenger's document when the booking carries a request id.
/// Returns the groups and the index of the claiming link, if any.
fn plan(cluster: &Cluster, request: &BookRequest) -> (Vec<Group>, Option<usize>) {
    let mut groups = group_by_owner(&request.segments, |id| cluster.owner_of_segment(id));
    let mut claim_at = None;
    if request.request_id.is_some() {
        let document_link = cluster.owner_of_slot(slot(&request.passenger.document));
        if document_link != groups[0].link {
            if !groups.iter().any(|group| group.link == document_link) {
                groups.push(Group {
                    link: document_link,
                    segments: Vec::new(),
                });
            }
            claim_at = Some(document_link);
        }
    }
    (groups, claim_at)
}

/// Returns the refusal to show the client when several participants
/// refused: the one about the segment that comes first in the request.
/// Refusals about no segment in particular (such as `request_id_reused`)
/// concern the whole request and come before all others.
pub(crate) fn first_in_request_order(segments: &[String], refusals: Vec<Error>) -> Option<Error> {
    let rank = |error: &Error| match refused_segment(error) {
        None => 0,
        Some(id) => {
            1 + segments
                .iter()
                .position(|s| s == id)
                .unwrap_or(segments.len())
        }
    };
    // `min_by_key` keeps the first of equal ranks: participant order.
    refusals.into_iter().min_by_key(rank)
}

/// Returns the segment an error is about, from its `data.segment`.
fn refused_segment(error: &Error) -> Option<&str> {
    match error {
        Error::SoldOut { segment, .. }
        | Error::UnknownSegment { segment }
        | Error::SalesClosed { segment, .. } => Some(segment),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    /// Owner by the flight number's last digit, like a tiny shard map.
    fn owner(id: &str) -> usize {
        let digit = id.as_bytes()[id.len() - 12];
        usize::from(digit - b'0') % 3
    }

    #[test]
    fn groups_follow_first_appearance_and_keep_request_order() {
        let segments = ids(&[
            "AD1-2026-12-20",
            "AD2-2026-12-20",
            "AD4-2026-12-21",
            "AD5-2026-12-21",
        ]);
        let groups = group_by_owner(&segments, owner);
        assert_eq!(
            groups,
            vec![
                Group {
                    link: 1,
                    segments: ids(&["AD1-2026-12-20", "AD4-2026-12-21"]),
                },
                Group {
                    link: 2,
                    segments: ids(&["AD2-2026-12-20", "AD5-2026-12-21"]),
                },
            ]
        );
    }

    #[test]
    fn one_owner_gives_one_group() {
        let segments = ids(&["AD3-2026-12-20", "AD6-2026-12-20"]);
        let groups = group_by_owner(&segments, owner);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].link, 0);
        assert_eq!(groups[0].segments, segments);
    }

    #[test]
    fn refusal_of_the_earliest_segment_wins() {
        let segments = ids(&["AD1-2026-12-20", "AD2-2026-12-20", "AD3-2026-12-20"]);
        let refusals = vec![
            Error::SoldOut {
                segment: "AD3-2026-12-20".into(),
                requested: 2,
                left: 0,
            },
            Error::SalesClosed {
                segment: "AD2-2026-12-20".into(),
                departure: "2026-12-20T10:00:00-03:00".into(),
            },
        ];
        let chosen = first_in_request_order(&segments, refusals).unwrap();
        assert_eq!(chosen.kind(), Some("sales_closed"));
    }

    #[test]
    fn refusal_without_segment_comes_first() {
        let segments = ids(&["AD1-2026-12-20", "AD2-2026-12-20"]);
        let refusals = vec![
            Error::UnknownSegment {
                segment: "AD1-2026-12-20".into(),
            },
            Error::RequestIdReused {
                request_id: "r1".into(),
            },
        ];
        let chosen = first_in_request_order(&segments, refusals).unwrap();
        assert_eq!(chosen.kind(), Some("request_id_reused"));
        assert_eq!(first_in_request_order(&segments, Vec::new()), None);
    }
}

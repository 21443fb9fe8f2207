//! Requests that ask every shard and merge the answers: `segments.search`,
//! `bookings.list` and `cluster.status`. A shard that does not answer makes
//! the result partial instead of failing it. Searches and listings skip
//! shards that own no slots, but `cluster.status` queries them too.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;

use futures::future::join_all;
use trecho_common::internal::{ShardOp, ShardReply};
use trecho_common::link::LinkError;
use trecho_common::protocol::methods::{
    BookingsResult, ClusterStatus, Coverage, SearchParams, SearchResult, ShardStatusView,
};
use trecho_common::types::{Booking, Segment};

use crate::cluster::Cluster;
use crate::dispatch::Pending;
use crate::response::Reply;
use crate::retry::{Refusal, Retries};
use crate::rfc3339;
use crate::shard_error::reply_type;

/// Default `limit` of `segments.search`, for params that bypassed
/// validation.
const DEFAULT_SEARCH_LIMIT: u32 = 100;

/// Every shard's reply or error, by shard id, in link order.
type Answers = Vec<(u32, Result<ShardReply, LinkError>)>;

/// Replies or errors, by link index.
type Indexed = Vec<(usize, Result<ShardReply, LinkError>)>;

/// Sends `op` now to every shard, including shards that own no slots, and
/// returns the future of all replies.
pub(crate) fn ask_every_shard(
    cluster: &Cluster,
    op: &ShardOp,
) -> impl Future<Output = Answers> + Send {
    let answers: Vec<_> = cluster
        .links()
        .map(|(_, link)| {
            let shard = link.shard();
            let answer = link.send(op);
            async move { (shard, answer.await) }
        })
        .collect();
    join_all(answers)
}

/// Sends `op` now to every shard that owns slots, and returns the future
/// of their replies.
///
/// While a shard rejects the request with `slot_moving`, the future waits
/// and refreshes the map as [`Retries`] allows, then sends the request to
/// that shard again. When the refresh changed the map, it sends the
/// request to every owner in the new map instead, because a move's target
/// may now have what the rejecting shard gave away. The last reply of
/// each shard counts.
pub(crate) fn ask_owners(cluster: &Arc<Cluster>, op: ShardOp) -> impl Future<Output = Answers> {
    let version = cluster.map_version();
    let owners: Vec<usize> = cluster.owner_links().map(|(index, _)| index).collect();
    let first = send_each(cluster, &op, &owners);
    let cluster = cluster.clone();
    async move {
        let mut answers: Indexed = join_all(first).await;
        let mut version = version;
        let mut retries = Retries::default();
        while let Some(refusal) = moving(&answers) {
            if !retries.again(&cluster, refusal).await {
                break;
            }
            let again: Vec<usize> = if cluster.map_version() == version {
                answers
                    .iter()
                    .filter(|(_, answer)| is_moving(answer))
                    .map(|(index, _)| *index)
                    .collect()
            } else {
                version = cluster.map_version();
                answers.clear();
                cluster.owner_links().map(|(index, _)| index).collect()
            };
            answers.retain(|(index, _)| !again.contains(index));
            answers.extend(join_all(send_each(&cluster, &op, &again)).await);
        }
        answers.sort_by_key(|(index, _)| *index);
        let shard = |index: usize| cluster.link(index).shard();
        answers
            .into_iter()
            .map(|(index, answer)| (shard(index), answer))
            .collect()
    }
}

/// Sends `op` now to each link of `indices`.
fn send_each(
    cluster: &Cluster,
    op: &ShardOp,
    indices: &[usize],
) -> Vec<impl Future<Output = (usize, Result<ShardReply, LinkError>)> + Send + 'static> {
    indices
        .iter()
        .map(|&index| {
            let answer = cluster.link(index).send(op);
            async move { (index, answer.await) }
        })
        .collect()
}

/// Returns whether `answer` is a `slot_moving` rejection.
fn is_moving(answer: &Result<ShardReply, LinkError>) -> bool {
    matches!(Refusal::of(answer), Some(Refusal::Moving { .. }))
}

/// Returns the `slot_moving` rejection with the longest wait in `answers`.
fn moving(answers: &Indexed) -> Option<Refusal> {
    let refusals = answers.iter().filter_map(|(_, answer)| Refusal::of(answer));
    let moves = refusals.filter(|refusal| matches!(refusal, Refusal::Moving { .. }));
    Refusal::worst(moves)
}

/// Splits answers into the items `pick` extracts and the coverage. A shard
/// that failed or answered the wrong type counts as unavailable.
pub(crate) fn gather<T>(
    answers: Answers,
    expected: &'static str,
    mut pick: impl FnMut(u32, ShardReply) -> Result<T, &'static str>,
) -> (Vec<T>, Coverage) {
    let mut items = Vec::with_capacity(answers.len());
    let mut unavailable = Vec::new();
    for (shard, answer) in answers {
        match answer.map(|reply| pick(shard, reply)) {
            Ok(Ok(item)) => items.push(item),
            Ok(Err(got)) => {
                tracing::error!(
                    shard.id = shard,
                    expected,
                    got,
                    "unexpected answer from shard"
                );
                unavailable.push(shard);
            }
            Err(error) => {
                tracing::debug!(shard.id = shard, %error, "shard left out of a merged result");
                unavailable.push(shard);
            }
        }
    }
    unavailable.sort_unstable();
    let coverage = Coverage {
        partial: !unavailable.is_empty(),
        unavailable_shards: unavailable,
    };
    (items, coverage)
}

/// `segments.search`: every shard searches its own segments; the router
/// merges by departure instant, then id, and keeps the first `limit`.
pub(crate) fn search(cluster: &Arc<Cluster>, params: SearchParams) -> Pending {
    let limit = params.limit.unwrap_or(DEFAULT_SEARCH_LIMIT);
    let op = ShardOp::Search {
        origin: params.origin,
        destination: params.destination,
        date: params.date,
        limit,
    };
    let answers = ask_owners(cluster, op);
    Box::pin(async move {
        let (lists, coverage) = gather(answers.await, "segments", |_, reply| match reply {
            ShardReply::Segments { segments } => Ok(segments),
            other => Err(reply_type(&other)),
        });
        let mut segments: Vec<Segment> = lists.into_iter().flatten().collect();
        sort_by_departure(&mut segments);
        // Two shards queried again during a move may both return a moved
        // segment. Equal ids sort next to each other, so dedup drops the
        // copy.
        segments.dedup_by(|a, b| a.id == b.id);
        segments.truncate(limit as usize);
        Ok(Reply::Search(SearchResult { segments, coverage }))
    })
}

/// Sorts by departure instant, then id; unreadable departures go last.
pub(crate) fn sort_by_departure(segments: &mut Vec<Segment>) {
    let mut keyed: Vec<(i64, Segment)> = segments
        .drain(..)
        .map(|segment| {
            let instant = rfc3339::parse(&segment.departure).unwrap_or(i64::MAX);
            (instant, segment)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    segments.extend(keyed.into_iter().map(|(_, segment)| segment));
}

/// `bookings.list`: every shard lists the bookings whose home it is; the
/// router merges them newest first.
pub(crate) fn list(cluster: &Arc<Cluster>, document: String) -> Pending {
    let answers = ask_owners(cluster, ShardOp::ListBookings { document });
    Box::pin(async move {
        let (lists, coverage) = gather(answers.await, "bookings", |_, reply| match reply {
            ShardReply::Bookings { bookings } => Ok(bookings),
            other => Err(reply_type(&other)),
        });
        let mut bookings = without_repeats(lists.into_iter().flatten());
        sort_newest_first(&mut bookings);
        Ok(Reply::Bookings(BookingsResult { bookings, coverage }))
    })
}

/// Keeps the first booking of each locator, because two shards queried
/// again during a move may both return a moved booking.
fn without_repeats(bookings: impl Iterator<Item = Booking>) -> Vec<Booking> {
    let mut seen = HashSet::new();
    bookings
        .filter(|booking| seen.insert(booking.id.clone()))
        .collect()
}

/// Sorts by creation instant to the millisecond, newest first. The sort is
/// stable, so bookings created in the same millisecond keep the order their
/// home shard gave them.
pub(crate) fn sort_newest_first(bookings: &mut [Booking]) {
    bookings.sort_by_cached_key(|booking| {
        std::cmp::Reverse(rfc3339::parse_millis(&booking.created_at).unwrap_or(i64::MIN))
    });
}

/// `cluster.status`: requests the counts of every shard, including shards
/// that own no slots. A shard that does not reply is listed as unhealthy
/// with unknown counts.
pub(crate) fn status(cluster: &Arc<Cluster>) -> Pending {
    let answers = ask_every_shard(cluster, &ShardOp::Status);
    let cluster = cluster.clone();
    Box::pin(async move {
        let (statuses, _) = gather(answers.await, "status", |shard, reply| match reply {
            ShardReply::Status(status) => Ok((shard, status)),
            other => Err(reply_type(&other)),
        });
        let map = cluster.map();
        let shards = map
            .shards
            .iter()
            .map(|info| {
                let status = statuses.iter().find(|(id, _)| *id == info.id);
                if let Some((_, status)) = status {
                    if status.map_version != map.version {
                        // Only the shards of a move raise their version, so
                        // versions differ after any move.
                        tracing::debug!(
                            shard.id = info.id,
                            shard.map_version = status.map_version,
                            map_version = map.version,
                            "shard runs another shard map version than the router"
                        );
                    }
                }
                ShardStatusView {
                    id: info.id,
                    address: info.address.clone(),
                    // A shard's own word on its slots wins over the
                    // router's map, which may be older.
                    slots: status.map_or_else(|| info.slots.clone(), |(_, s)| s.slots.clone()),
                    healthy: status.is_some(),
                    segments: status.map(|(_, s)| s.segments),
                    bookings: status.map(|(_, s)| s.bookings),
                    moving: status.and_then(|(_, s)| s.moving.clone()),
                }
            })
            .collect();
        Ok(Reply::Status(ClusterStatus {
            slots_total: trecho_common::hashing::SLOT_COUNT,
            map_version: map.version,
            shards,
        }))
    })
}

#[cfg(test)]
mod tests {
    use trecho_common::types::{BookingStatus, Passenger};

    use super::*;

    fn segment(id: &str, departure: &str) -> Segment {
        Segment {
            id: id.into(),
            flight: "AD1".into(),
            origin: "GRU".into(),
            destination: "MAO".into(),
            departure: departure.into(),
            arrival: departure.into(),
            capacity: 100,
            seats_left: 100,
        }
    }

    fn booking(id: &str, created_at: &str) -> Booking {
        Booking {
            id: id.into(),
            status: BookingStatus::Held,
            passenger: Passenger {
                name: "Ana".into(),
                document: "X1".into(),
            },
            seats: 1,
            segments: vec!["AD1-2026-12-20".into()],
            created_at: created_at.into(),
            expires_at: None,
        }
    }

    #[test]
    fn search_merge_orders_by_instant_then_id() {
        let mut segments = vec![
            segment("B2-2026-12-20", "2026-12-20T10:00:00-03:00"),
            segment("C3-2026-12-20", "2026-12-20T09:30:00-04:00"),
            segment("A1-2026-12-20", "2026-12-20T10:00:00-03:00"),
            segment("Z9-2026-12-20", "2026-12-20T08:00:00-03:00"),
        ];
        sort_by_departure(&mut segments);
        let ids: Vec<&str> = segments.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "Z9-2026-12-20",
                "A1-2026-12-20",
                "B2-2026-12-20",
                "C3-2026-12-20"
            ]
        );
    }

    #[test]
    fn bookings_merge_newest_first_and_keeps_shard_order_on_ties() {
        let mut bookings = vec![
            booking("AAAAAB", "2026-01-01T10:00:00Z"),
            booking("AAAAAC", "2026-01-01T10:00:00Z"),
            booking("AAAAAD", "2026-01-02T10:00:00Z"),
        ];
        sort_newest_first(&mut bookings);
        let ids: Vec<&str> = bookings.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["AAAAAD", "AAAAAB", "AAAAAC"]);
        let mut bookings = vec![
            booking("AAAAAB", "2026-01-01T10:00:00.100Z"),
            booking("AAAAAC", "2026-01-01T10:00:00.900Z"),
        ];
        sort_newest_first(&mut bookings);
        assert_eq!(
            bookings[0].id, "AAAAAC",
            "milliseconds decide within a second"
        );
    }

    #[test]
    fn bookings_merge_keeps_one_copy_per_locator() {
        let bookings = vec![
            booking("AAAAAB", "2026-01-01T10:00:00Z"),
            booking("AAAAAC", "2026-01-01T11:00:00Z"),
            booking("AAAAAB", "2026-01-01T10:00:00Z"),
        ];
        let kept = without_repeats(bookings.into_iter());
        let ids: Vec<&str> = kept.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["AAAAAB", "AAAAAC"]);
    }

    #[test]
    fn failed_and_wrong_answers_make_the_result_partial() {
        let answers: Answers = vec![
            (0, Ok(ShardReply::Pong)),
            (2, Err(LinkError::Lost { shard: 2 })),
            (1, Ok(ShardReply::Bookings { bookings: vec![] })),
        ];
        let (items, coverage) = gather(answers, "bookings", |_, reply| match reply {
            ShardReply::Bookings { bookings } => Ok(bookings),
            other => Err(reply_type(&other)),
        });
        assert_eq!(items.len(), 1);
        assert!(coverage.partial);
        assert_eq!(coverage.unavailable_shards, vec![0, 2]);
    }
}

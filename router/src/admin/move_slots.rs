//! `admin.move_slots`: validates a move against the shards' map and status,
//! sends it to the shard that owns the slots, and waits until it ends.
//!
//! The source shard drives the move and records each step, so the router
//! keeps no state for it. When the router loses the source mid-move, the
//! move goes on, and the same request sent again waits for its end. Once
//! the target owns the slots, the same request moves nothing and succeeds,
//! so that an operator can always run the command again.

use std::time::Duration;

use futures::future::join_all;
use trecho_common::error::Error;
use trecho_common::internal::{ShardOp, ShardReply, ShardStatus};
use trecho_common::link::{LinkError, LinkOptions, ShardLink};
use trecho_common::protocol::methods::MoveSlotsResult;
use trecho_common::shardmap::{ShardInfo, ShardMap};

use crate::cluster::Cluster;
use crate::shard_error::{client_error, reply_type, unexpected_reply};

/// Timeout for the source shard's reply to a move. The source replies once
/// the target owns the slots, so this includes the copy of their rows.
const MOVE_TIMEOUT: Duration = Duration::from_secs(30);
/// Maximum number of owner ranges that an error message lists.
const MAX_LISTED_RUNS: usize = 8;

/// Moves slots `first..=last` to shard `to` and returns the result. When
/// `to` owns them already, nothing moves and the result has `from` equal
/// to `to`, with no rows and no pause.
///
/// # Errors
///
/// - `invalid_params` when the slots belong to several shards or `to` is
///   not in the map.
/// - `overloaded` when another move is in progress.
/// - `shard_unavailable` when a shard does not report its map version,
///   since the new version could then repeat one in use.
/// - `outcome_unknown` when the source was lost mid-move.
/// - The source shard's rejection, mapped as for other requests.
pub(super) async fn run(
    cluster: &Cluster,
    first: u16,
    last: u16,
    to: u32,
) -> Result<MoveSlotsResult, Error> {
    cluster.refresh().await;
    let map = cluster.map();
    let source = single_owner(&map, first, last)?.clone();
    let target = map.shard(to).map_err(|_| {
        Error::invalid_params(format!(
            "shard {to} is not in the shard map; start it with no slots and add it with \
             admin.add_shard first"
        ))
    })?;
    if source.id == to {
        tracing::info!(
            to,
            first,
            last,
            map_version = map.version,
            "slot move skipped, the target already owns the slots"
        );
        return Ok(MoveSlotsResult {
            from: to,
            to,
            map_version: map.version,
            rows: 0,
            pause_ms: 0,
        });
    }

    let statuses = statuses(cluster, &map).await?;
    let version = move_version(&statuses, source.id, first, last, to)?;
    let op = ShardOp::MoveSlots {
        first,
        last,
        target: to,
        target_address: target.address.clone(),
        version,
    };
    tracing::info!(
        from = source.id,
        to,
        first,
        last,
        version,
        "slot move requested"
    );
    let moved = send_move(cluster, &source, to, &op).await?;

    // The target owns the slots now, so refresh the map before replying.
    cluster.refresh().await;
    tracing::info!(
        from = source.id,
        to,
        first,
        last,
        version = moved.map_version,
        rows = moved.rows,
        pause_ms = moved.pause_ms,
        "slot move finished"
    );
    Ok(moved)
}

/// Returns the one shard that owns every slot of `first..=last`.
///
/// # Errors
///
/// Returns `invalid_params` naming each owner's part when there are
/// several.
fn single_owner(map: &ShardMap, first: u16, last: u16) -> Result<&ShardInfo, Error> {
    let mut runs: Vec<(u32, u16, u16)> = Vec::new();
    for slot in first..=last {
        let owner = map.owner_of_slot(slot).id;
        match runs.last_mut() {
            Some((id, _, end)) if *id == owner => *end = slot,
            _ => runs.push((owner, slot, slot)),
        }
    }
    if runs.len() == 1 {
        return Ok(map.owner_of_slot(first));
    }
    let mut parts: Vec<String> = runs
        .iter()
        .take(MAX_LISTED_RUNS)
        .map(|(id, a, b)| format!("{a}-{b} to shard {id}"))
        .collect();
    if runs.len() > MAX_LISTED_RUNS {
        parts.push(format!("{} more ranges", runs.len() - MAX_LISTED_RUNS));
    }
    Err(Error::invalid_params(format!(
        "slots {first}-{last} belong to more than one shard ({}); move each shard's part with \
         its own admin.move_slots",
        parts.join(", ")
    )))
}

/// Requests the status of every shard in `map`.
///
/// # Errors
///
/// Returns the error of the first shard, in map order, that did not reply
/// with its status.
async fn statuses(cluster: &Cluster, map: &ShardMap) -> Result<Vec<ShardStatus>, Error> {
    let mut links = Vec::with_capacity(map.shards.len());
    for shard in &map.shards {
        let index = cluster.link_index(shard.id).ok_or_else(|| {
            Error::internal(format!(
                "the router has no link to shard {} of its own map; this is a bug",
                shard.id
            ))
        })?;
        links.push(cluster.link(index).clone());
    }
    let answers = join_all(links.iter().map(|link| link.call(&ShardOp::Status))).await;
    let mut statuses = Vec::with_capacity(answers.len());
    for (link, answer) in links.iter().zip(answers) {
        match answer {
            Ok(ShardReply::Status(status)) => statuses.push(status),
            Ok(other) => return Err(unexpected_reply(link.shard(), "status", reply_type(&other))),
            Err(error) => {
                tracing::warn!(
                    shard.id = link.shard(),
                    %error,
                    "slot move rejected: a shard did not report its map version"
                );
                return Err(client_error(link, error, false));
            }
        }
    }
    Ok(statuses)
}

/// Returns the map version for the move: one more than the highest version
/// any shard reports. When the source reports the same move in progress,
/// returns that move's version, so that a repeated request waits for it.
///
/// # Errors
///
/// Returns `overloaded` when a shard reports another move in progress,
/// because one move runs in the cluster at a time.
fn move_version(
    statuses: &[ShardStatus],
    source: u32,
    first: u16,
    last: u16,
    to: u32,
) -> Result<u64, Error> {
    for status in statuses {
        let Some(moving) = &status.moving else {
            continue;
        };
        let same = status.shard_id == source
            && moving.first == first
            && moving.last == last
            && moving.target == to;
        if same {
            return Ok(moving.version);
        }
        return Err(Error::Overloaded {
            message: format!(
                "shard {} is moving slots {}-{} to shard {}, and one move runs at a time; wait \
                 until cluster.status shows no move in progress",
                status.shard_id, moving.first, moving.last, moving.target
            ),
        });
    }
    let highest = statuses.iter().map(|s| s.map_version).max().unwrap_or(0);
    Ok(highest + 1)
}

/// Sends the move `op` to `source` over a dedicated link whose request
/// timeout is [`MOVE_TIMEOUT`], and returns the result that the source
/// reports.
async fn send_move(
    cluster: &Cluster,
    source: &ShardInfo,
    to: u32,
    op: &ShardOp,
) -> Result<MoveSlotsResult, Error> {
    let options = LinkOptions {
        request_timeout: MOVE_TIMEOUT,
        map_version: cluster.map_version_handle(),
        ..LinkOptions::default()
    };
    let link = ShardLink::spawn(source.id, source.address.clone(), options);
    match link.call(op).await {
        Ok(ShardReply::Moved {
            version,
            rows,
            pause_ms,
        }) => Ok(MoveSlotsResult {
            from: source.id,
            to,
            map_version: version,
            rows,
            pause_ms,
        }),
        Ok(other) => Err(unexpected_reply(source.id, "moved", reply_type(&other))),
        Err(LinkError::Lost { shard }) => {
            tracing::warn!(
                shard.id = shard,
                timeout_ms = MOVE_TIMEOUT.as_millis() as u64,
                "no reply to a slot move, the source shard continues the move and a repeated \
                 request waits for its end"
            );
            Err(Error::OutcomeUnknown { shard })
        }
        Err(error) => {
            tracing::warn!(shard.id = source.id, %error, "slot move failed");
            Err(client_error(&link, error, true))
        }
    }
}

#[cfg(test)]
mod tests {
    use trecho_common::internal::MoveView;

    use super::*;

    fn map() -> ShardMap {
        ShardMap::parse_spec(3, "0=a:1@0-99,200-16383;1=b:2@100-199;2=c:3@").unwrap()
    }

    fn status(shard_id: u32, map_version: u64, moving: Option<MoveView>) -> ShardStatus {
        ShardStatus {
            shard_id,
            map_version,
            slots: Vec::new(),
            segments: 0,
            bookings: 0,
            moving,
        }
    }

    fn view(first: u16, last: u16, target: u32, version: u64) -> MoveView {
        MoveView {
            first,
            last,
            target,
            version,
            rows: 10,
            paused_since_ms: 0,
        }
    }

    #[test]
    fn range_of_one_owner_is_accepted() {
        let map = map();
        assert_eq!(single_owner(&map, 100, 199).unwrap().id, 1);
        assert_eq!(single_owner(&map, 300, 300).unwrap().id, 0);
    }

    #[test]
    fn range_of_several_owners_names_each_part() {
        let error = single_owner(&map(), 50, 250).unwrap_err();
        let Error::InvalidParams { message } = error else {
            panic!("expected invalid params, got {error:?}");
        };
        assert!(message.contains("50-99 to shard 0"), "{message}");
        assert!(message.contains("100-199 to shard 1"), "{message}");
        assert!(message.contains("200-250 to shard 0"), "{message}");
        assert!(message.contains("each shard's part"), "{message}");
    }

    #[test]
    fn version_is_one_above_highest_reported() {
        let statuses = [status(0, 3, None), status(1, 5, None), status(2, 1, None)];
        assert_eq!(move_version(&statuses, 0, 0, 9, 2), Ok(6));
    }

    #[test]
    fn same_move_in_progress_keeps_its_version() {
        let statuses = [status(0, 3, Some(view(0, 9, 2, 4))), status(2, 1, None)];
        assert_eq!(move_version(&statuses, 0, 0, 9, 2), Ok(4));
    }

    #[test]
    fn other_move_in_progress_is_rejected() {
        let statuses = [status(0, 3, Some(view(0, 9, 2, 4))), status(2, 1, None)];
        let error = move_version(&statuses, 0, 0, 10, 2).unwrap_err();
        assert_eq!(error.kind(), Some("overloaded"));
        assert!(
            error.to_string().contains("slots 0-9 to shard 2"),
            "{error}"
        );
    }
}

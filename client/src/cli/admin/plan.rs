//! Planning of slot moves, as pure functions of the shard map and the
//! segment counts that `cluster.status` returns.
//!
//! A plan is a list of [`Transfer`]s: ranges of slots and the shard each
//! range should end on. Before every batch the runner compares the plan
//! with the current owners ([`pending_moves`]), so slots already at their
//! target are skipped, and a plan that stopped half way resumes where it
//! stopped.
//!
//! Segments per slot are not known. The planner estimates them per shard
//! as the shard's segments divided by its slots, so every figure of
//! segments moved is an estimate.
//!
//! Modules: `rebalance` evens out segments over the shards, and `remove`
//! gives every slot of one shard to the others.

use serde::Serialize;
use trecho_common::hashing::SLOT_COUNT;
use trecho_common::protocol::methods::ClusterStatus;
use trecho_common::shardmap::{self, merged, ShardInfo, ShardMap};

mod rebalance;
mod remove;

pub(crate) use rebalance::{balance_tolerance, rebalance_plan, MAX_REBALANCE_ROUNDS};
pub(crate) use remove::remove_plan;
#[cfg(test)]
use remove::{apportion, water_fill};

/// Errors of planning.
#[derive(Debug, PartialEq, thiserror::Error)]
pub(crate) enum Error {
    /// No shard in `cluster.status` has the id.
    #[error("shard {0} is not in the shard map; list the shards with `trecho status`")]
    UnknownShard(u32),
    /// A shard the plan needs did not report its segments.
    #[error(
        "shard {0} did not report its segment count in cluster.status; start it, wait until \
         `trecho status` shows it healthy, then run the command again"
    )]
    NoSegmentCount(u32),
    /// Only the shard to remove owns slots.
    #[error(
        "shard {0} is the only shard that owns slots, so its slots have nowhere to go; add a \
         shard first with `trecho admin add-shard ADDRESS`"
    )]
    LastShard(u32),
    /// The slot ranges in `cluster.status` do not give every slot one owner.
    #[error("cluster.status returned an inconsistent shard map ({0}); run the command again")]
    Map(#[from] shardmap::Error),
}

/// A shard's slots and segment count, as planning uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardLoad {
    /// Shard id.
    pub(crate) id: u32,
    /// Inclusive slot ranges, sorted.
    pub(crate) slots: Vec<[u16; 2]>,
    /// Segments it owns, or `None` when it did not respond to the router.
    pub(crate) segments: Option<u64>,
}

impl ShardLoad {
    /// Returns every shard of `status`.
    pub(crate) fn from_status(status: &ClusterStatus) -> Vec<ShardLoad> {
        status
            .shards
            .iter()
            .map(|shard| ShardLoad {
                id: shard.id,
                slots: merged(&shard.slots),
                segments: shard.segments,
            })
            .collect()
    }

    /// Returns the number of slots it owns.
    pub(crate) fn slot_count(&self) -> u32 {
        self.slots.iter().map(|&[a, b]| span(a, b)).sum()
    }

    /// Returns its segments per slot, or 0 when the count is unknown or it
    /// owns no slots.
    fn segment_density(&self) -> f64 {
        match (self.segments, self.slot_count()) {
            (Some(segments), slots) if slots > 0 => segments as f64 / f64::from(slots),
            _ => 0.0,
        }
    }
}

/// Slots `first..=last` that the plan gives to shard `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Transfer {
    /// First slot.
    pub(crate) first: u16,
    /// Last slot, inclusive.
    pub(crate) last: u16,
    /// The owner when the plan was made.
    pub(crate) from: u32,
    /// The shard that receives them.
    pub(crate) to: u32,
    /// Estimated segments in these slots.
    pub(crate) segments: u64,
}

impl Transfer {
    /// Returns the number of slots.
    pub(crate) fn slot_count(&self) -> u32 {
        span(self.first, self.last)
    }
}

/// One `admin.move_slots` call: slots `first..=last`, all owned by shard
/// `from`, to shard `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Move {
    /// First slot.
    pub(crate) first: u16,
    /// Last slot, inclusive.
    pub(crate) last: u16,
    /// The current owner.
    pub(crate) from: u32,
    /// The shard that receives them.
    pub(crate) to: u32,
}

impl Move {
    /// Returns the number of slots.
    pub(crate) fn slot_count(&self) -> u32 {
        span(self.first, self.last)
    }
}

/// A shard's slots and segments now and once the plan has run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Projection {
    /// Shard id.
    pub(crate) id: u32,
    /// Slots it owns now.
    pub(crate) slots_now: u32,
    /// Slots it owns after the plan.
    pub(crate) slots_after: u32,
    /// Segments it owns now, or `None` when unknown.
    pub(crate) segments_now: Option<u64>,
    /// Estimated segments after the plan, or `None` when unknown.
    pub(crate) segments_after: Option<u64>,
}

fn span(first: u16, last: u16) -> u32 {
    u32::from(last) - u32::from(first) + 1
}

fn find(shards: &[ShardLoad], id: u32) -> Result<&ShardLoad, Error> {
    shards
        .iter()
        .find(|s| s.id == id)
        .ok_or(Error::UnknownShard(id))
}

/// Builds the slot owner table of `shards`.
///
/// # Errors
///
/// Returns [`Error::Map`] when a slot has no owner or more than one.
pub(crate) fn owner_map(shards: &[ShardLoad]) -> Result<ShardMap, Error> {
    let infos = shards
        .iter()
        .map(|shard| ShardInfo {
            id: shard.id,
            address: String::new(),
            slots: shard.slots.clone(),
        })
        .collect();
    Ok(ShardMap::new(0, infos)?)
}

/// Returns the moves still needed to carry out `plan` from the owners in
/// `map`. They cover the slots not yet at their target, in runs of one
/// owner of at most `batch` slots each, in plan order.
pub(crate) fn pending_moves(map: &ShardMap, plan: &[Transfer], batch: u16) -> Vec<Move> {
    let batch = u32::from(batch.max(1));
    let mut moves = Vec::new();
    for transfer in plan {
        let mut open: Option<Move> = None;
        for slot in transfer.first..=transfer.last {
            let owner = map.owner_of_slot(slot).id;
            if let Some(run) = open.as_mut() {
                if run.from == owner && run.slot_count() < batch {
                    run.last = slot;
                    continue;
                }
            }
            moves.extend(open.take());
            if owner != transfer.to {
                open = Some(Move {
                    first: slot,
                    last: slot,
                    from: owner,
                    to: transfer.to,
                });
            }
        }
        moves.extend(open);
    }
    moves
}

/// Plans the move of slots `first..=last` to shard `to`, with one transfer
/// per run of slots with one owner. Slots that `to` owns already are left
/// out.
///
/// # Errors
///
/// Returns [`Error::UnknownShard`] when `to` is not in `shards`, and
/// [`Error::Map`] for an inconsistent map.
pub(crate) fn range_plan(
    shards: &[ShardLoad],
    first: u16,
    last: u16,
    to: u32,
) -> Result<Vec<Transfer>, Error> {
    find(shards, to)?;
    let map = owner_map(shards)?;
    let whole = Transfer {
        first,
        last,
        from: to,
        to,
        segments: 0,
    };
    let mut plan = Vec::new();
    for run in pending_moves(&map, &[whole], SLOT_COUNT) {
        let source = find(shards, run.from)?;
        plan.push(transfer(source, [run.first, run.last], to));
    }
    Ok(plan)
}

fn transfer(source: &ShardLoad, [first, last]: [u16; 2], to: u32) -> Transfer {
    let estimate = f64::from(span(first, last)) * source.segment_density();
    Transfer {
        first,
        last,
        from: source.id,
        to,
        segments: estimate.round() as u64,
    }
}

/// A shard during planning: the slots it will own and its load in the
/// unit being balanced (segments, or slots when no shard has segments).
#[derive(Debug, Clone)]
struct Pool {
    id: u32,
    ranges: Vec<[u16; 2]>,
    load: f64,
    /// Load per slot.
    density: f64,
    /// The shard as it is now, for segment estimates.
    source: ShardLoad,
}

impl Pool {
    fn slot_count(&self) -> u32 {
        self.ranges.iter().map(|&[a, b]| span(a, b)).sum()
    }

    /// Returns whether this shard owns the slot just below `other`'s lowest
    /// slot. In that case `other` should give slots from its low end, so
    /// that they stay contiguous with this shard's.
    fn borders_low_end_of(&self, other: &[[u16; 2]]) -> bool {
        let Some(&[low, _]) = other.first() else {
            return false;
        };
        low > 0
            && self
                .ranges
                .iter()
                .any(|&[a, b]| (a..=b).contains(&(low - 1)))
    }

    /// Returns whether this shard owns the slot just above `other`'s
    /// highest slot.
    fn borders_high_end_of(&self, other: &[[u16; 2]]) -> bool {
        let Some(&[_, high]) = other.last() else {
            return false;
        };
        high + 1 < SLOT_COUNT
            && self
                .ranges
                .iter()
                .any(|&[a, b]| (a..=b).contains(&(high + 1)))
    }
}

/// Builds the pools of `members`, balancing segments, or slots when the
/// members own no segments at all.
fn pools(members: &[&ShardLoad], by_slots: bool) -> Vec<Pool> {
    members
        .iter()
        .map(|shard| {
            let slots = f64::from(shard.slot_count());
            let load = if by_slots {
                slots
            } else {
                shard.segments.unwrap_or(0) as f64
            };
            Pool {
                id: shard.id,
                ranges: shard.slots.clone(),
                load,
                density: if slots > 0.0 { load / slots } else { 0.0 },
                source: (*shard).clone(),
            }
        })
        .collect()
}

/// Checks that every member with slots reported its segments. A member
/// without slots counts as empty whether it responded or not.
fn require_segments(members: &[&ShardLoad]) -> Result<(), Error> {
    match members
        .iter()
        .find(|s| s.segments.is_none() && !s.slots.is_empty())
    {
        Some(shard) => Err(Error::NoSegmentCount(shard.id)),
        None => Ok(()),
    }
}

/// Cuts `count` slots off the low or high end of `ranges` (sorted and
/// disjoint) and returns the cut ranges in ascending order.
fn cut_slots(ranges: &mut Vec<[u16; 2]>, mut count: u32, from_low: bool) -> Vec<[u16; 2]> {
    let mut cut = Vec::new();
    while count > 0 && !ranges.is_empty() {
        let index = if from_low { 0 } else { ranges.len() - 1 };
        let [first, last] = ranges[index];
        let length = span(first, last);
        if length <= count {
            cut.push([first, last]);
            ranges.remove(index);
            count -= length;
            continue;
        }
        // count < length <= 16384, so it fits in a u16.
        let keep = count as u16;
        if from_low {
            cut.push([first, first + keep - 1]);
            ranges[index] = [first + keep, last];
        } else {
            cut.push([last - keep + 1, last]);
            ranges[index] = [first, last - keep];
        }
        count = 0;
    }
    cut.sort_unstable();
    cut
}

/// Joins transfers of adjacent slots between the same two shards, and
/// sorts the plan by first slot.
fn coalesced(mut plan: Vec<Transfer>) -> Vec<Transfer> {
    plan.sort_by_key(|t| (t.from, t.to, t.first));
    let mut joined: Vec<Transfer> = Vec::with_capacity(plan.len());
    for transfer in plan {
        match joined.last_mut() {
            Some(previous)
                if previous.from == transfer.from
                    && previous.to == transfer.to
                    && u32::from(previous.last) + 1 == u32::from(transfer.first) =>
            {
                previous.last = transfer.last;
                previous.segments += transfer.segments;
            }
            _ => joined.push(transfer),
        }
    }
    joined.sort_by_key(|t| t.first);
    joined
}

/// Returns each shard's slots and segments now and after `plan`, with the
/// segments after it estimated from the transfers.
pub(crate) fn project(shards: &[ShardLoad], plan: &[Transfer]) -> Vec<Projection> {
    shards
        .iter()
        .map(|shard| {
            let outgoing = plan.iter().filter(|t| t.from == shard.id);
            let incoming = plan.iter().filter(|t| t.to == shard.id);
            let slots_out: u32 = outgoing.clone().map(Transfer::slot_count).sum();
            let slots_in: u32 = incoming.clone().map(Transfer::slot_count).sum();
            let segments_out: u64 = outgoing.map(|t| t.segments).sum();
            let segments_in: u64 = incoming.map(|t| t.segments).sum();
            Projection {
                id: shard.id,
                slots_now: shard.slot_count(),
                slots_after: shard.slot_count() + slots_in - slots_out,
                segments_now: shard.segments,
                segments_after: shard
                    .segments
                    .map(|s| (s + segments_in).saturating_sub(segments_out)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;

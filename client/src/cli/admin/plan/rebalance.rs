//! The rebalance plan: evens out segments over the shards that own slots.

use trecho_common::shardmap::merged;

use super::{coalesced, cut_slots, find, pools, require_segments, transfer, Error, Pool};
use super::{ShardLoad, Transfer};

/// Minimum distance from the mean, as a fraction of the mean, that a
/// rebalance corrects.
const MIN_IMBALANCE: f64 = 0.01;

/// Maximum number of rebalance plans that one command runs. Each plan
/// after the first is made from the segment counts that the shards report
/// after the previous one, which corrects the error of its estimates.
pub(crate) const MAX_REBALANCE_ROUNDS: u32 = 3;

/// Returns the maximum distance of a shard's load from `mean` that a
/// rebalance leaves as it is: 1 % of the mean, or twice its square root
/// when that is more.
///
/// Segments land in slots by hash, so the segments in a run of slots
/// differ from the estimate by about the square root of their number. A
/// rebalance therefore leaves shards that far off the mean, and without
/// this margin a second rebalance would move slots again to chase that
/// noise.
pub(crate) fn balance_tolerance(mean: f64) -> f64 {
    (mean * MIN_IMBALANCE).max(2.0 * mean.sqrt())
}

/// Plans a rebalance: evens out the segments of the shards that own slots,
/// and of the shards in `include`, which may own none yet.
///
/// Only shards above the mean give slots, and only shards below it get
/// them, so no slot moves twice. A giving shard cuts runs of slots off the
/// end of its ranges that borders the receiving shard, or off its high end
/// when neither end does, so that both keep few ranges. Nothing moves when
/// every shard is within [`balance_tolerance`] of the mean.
///
/// # Errors
///
/// Returns [`Error::UnknownShard`] for an id in `include` that is not in
/// `shards`, and [`Error::NoSegmentCount`] when a member did not report
/// its segments.
pub(crate) fn rebalance_plan(
    shards: &[ShardLoad],
    include: &[u32],
) -> Result<Vec<Transfer>, Error> {
    for &id in include {
        find(shards, id)?;
    }
    let members: Vec<&ShardLoad> = shards
        .iter()
        .filter(|s| !s.slots.is_empty() || include.contains(&s.id))
        .collect();
    require_segments(&members)?;
    let by_slots = members.iter().all(|s| s.segments.unwrap_or(0) == 0);
    let mut pools = pools(&members, by_slots);
    let total: f64 = pools.iter().map(|p| p.load).sum();
    let mean = total / pools.len().max(1) as f64;
    let tolerance = balance_tolerance(mean);
    let balanced = pools.iter().all(|p| (p.load - mean).abs() <= tolerance);
    if balanced {
        return Ok(Vec::new());
    }
    let mut givers: Vec<usize> = (0..pools.len()).filter(|&i| pools[i].load > mean).collect();
    let takers: Vec<usize> = (0..pools.len()).filter(|&i| pools[i].load < mean).collect();
    givers.sort_by(|&a, &b| {
        let excess = |i: usize| pools[i].load - mean;
        excess(b)
            .total_cmp(&excess(a))
            .then(pools[a].id.cmp(&pools[b].id))
    });
    let mut plan = Vec::new();
    for giver in givers {
        drain_giver(&mut pools, giver, &takers, mean, &mut plan);
    }
    Ok(coalesced(plan))
}

/// Moves slots from `pools[giver]` to the takers with the largest deficit.
/// Stops when the giver's excess over `mean` or the largest deficit is
/// under half a slot's load, or when the giver has one slot left.
fn drain_giver(
    pools: &mut [Pool],
    giver: usize,
    takers: &[usize],
    mean: f64,
    plan: &mut Vec<Transfer>,
) {
    loop {
        let deficit = |i: usize| mean - pools[i].load;
        let Some(taker) = takers.iter().copied().max_by(|&a, &b| {
            deficit(a)
                .total_cmp(&deficit(b))
                .then(pools[b].id.cmp(&pools[a].id))
        }) else {
            return;
        };
        let amount = (pools[giver].load - mean).min(deficit(taker));
        let density = pools[giver].density;
        if amount <= 0.0 || density <= 0.0 {
            return;
        }
        // A giver above the mean keeps at least one slot.
        let max_count = pools[giver].slot_count().saturating_sub(1);
        let count = ((amount / density).round() as u32).min(max_count);
        if count == 0 {
            return;
        }
        give(pools, giver, taker, count, plan);
    }
}

/// Cuts `count` slots off the giver's end that borders the taker, or off
/// its high end when neither end does. Gives them to the taker and adds
/// the transfers to `plan`.
fn give(pools: &mut [Pool], giver: usize, taker: usize, count: u32, plan: &mut Vec<Transfer>) {
    let from_low = pools[taker].borders_low_end_of(&pools[giver].ranges)
        && !pools[taker].borders_high_end_of(&pools[giver].ranges);
    let cut = cut_slots(&mut pools[giver].ranges, count, from_low);
    let moved = f64::from(count) * pools[giver].density;
    pools[giver].load -= moved;
    pools[taker].load += moved;
    let mut ranges = pools[taker].ranges.clone();
    ranges.extend_from_slice(&cut);
    pools[taker].ranges = merged(&ranges);
    let to = pools[taker].id;
    for range in cut {
        plan.push(transfer(&pools[giver].source, range, to));
    }
}

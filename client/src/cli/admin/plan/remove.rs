//! The removal plan: gives every slot of one shard to the others.

use super::{coalesced, cut_slots, find, pools, require_segments, transfer, Error, Pool};
use super::{ShardLoad, Transfer};

/// Plans the removal of shard `id` by giving all its slots to the other
/// shards that own slots. The least-loaded shards get the most, so that
/// the result is as even as moving only `id`'s slots allows.
///
/// The slots go out in ascending order: first to the shard that borders
/// `id`'s lowest slot, last to the one that borders its highest, and to
/// the others in between from the least-loaded up. Segments are shared
/// out, or slots when shard `id` owns no segments.
///
/// # Errors
///
/// Returns [`Error::UnknownShard`] when `id` is not in `shards`,
/// [`Error::LastShard`] when no other shard owns slots, and
/// [`Error::NoSegmentCount`] when a shard involved did not report its
/// segments. A shard that owns no slots gets an empty plan.
pub(crate) fn remove_plan(shards: &[ShardLoad], id: u32) -> Result<Vec<Transfer>, Error> {
    let removed = find(shards, id)?;
    if removed.slots.is_empty() {
        return Ok(Vec::new());
    }
    let takers: Vec<&ShardLoad> = shards
        .iter()
        .filter(|s| s.id != id && !s.slots.is_empty())
        .collect();
    if takers.is_empty() {
        return Err(Error::LastShard(id));
    }
    require_segments(&takers)?;
    require_segments(&[removed])?;
    let by_slots = removed.segments == Some(0);
    let pools = pools(&takers, by_slots);
    let amount = if by_slots {
        f64::from(removed.slot_count())
    } else {
        removed.segments.unwrap_or(0) as f64
    };
    let loads: Vec<f64> = pools.iter().map(|p| p.load).collect();
    let counts = apportion(&water_fill(&loads, amount), removed.slot_count());
    let mut shares: Vec<(Pool, u32)> = pools.into_iter().zip(counts).collect();
    order_takers(&mut shares, &removed.slots);
    let mut ranges = removed.slots.clone();
    let mut plan = Vec::new();
    for (pool, count) in &shares {
        for range in cut_slots(&mut ranges, *count, true) {
            plan.push(transfer(removed, range, pool.id));
        }
    }
    Ok(coalesced(plan))
}

/// Sorts the takers of a removal, each with its slot count. The taker that
/// borders the removed shard's lowest slot comes first, the one that
/// borders its highest slot comes last, and the rest are sorted by load.
fn order_takers(shares: &mut [(Pool, u32)], removed: &[[u16; 2]]) {
    let rank = |pool: &Pool| {
        if pool.borders_low_end_of(removed) {
            0
        } else if pool.borders_high_end_of(removed) {
            2
        } else {
            1
        }
    };
    shares.sort_by(|(a, _), (b, _)| {
        rank(a)
            .cmp(&rank(b))
            .then(a.load.total_cmp(&b.load))
            .then(a.id.cmp(&b.id))
    });
}

/// Divides `amount` over `loads` so that the lowest loads are filled first
/// (water filling). Every share raises its load to one common level, and
/// loads already above that level get nothing.
pub(super) fn water_fill(loads: &[f64], amount: f64) -> Vec<f64> {
    let mut sorted = loads.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut below = 0.0;
    let mut level = 0.0;
    for (index, &load) in sorted.iter().enumerate() {
        below += load;
        level = (amount + below) / (index + 1) as f64;
        let next = sorted.get(index + 1).copied().unwrap_or(f64::INFINITY);
        if level <= next {
            break;
        }
    }
    loads.iter().map(|&load| (level - load).max(0.0)).collect()
}

/// Splits `total` whole slots in proportion to `shares`, giving the
/// remainder to the largest fractional parts, so the counts sum to `total`.
pub(super) fn apportion(shares: &[f64], total: u32) -> Vec<u32> {
    let sum: f64 = shares.iter().sum();
    if sum <= 0.0 {
        let mut counts = vec![total / shares.len() as u32; shares.len()];
        let extra = total as usize % shares.len();
        counts.iter_mut().take(extra).for_each(|c| *c += 1);
        return counts;
    }
    let quotas: Vec<f64> = shares
        .iter()
        .map(|share| share / sum * f64::from(total))
        .collect();
    let mut counts: Vec<u32> = quotas.iter().map(|q| q.floor() as u32).collect();
    let mut order: Vec<usize> = (0..quotas.len()).collect();
    order.sort_by(|&a, &b| {
        let fraction = |i: usize| quotas[i] - quotas[i].floor();
        fraction(b).total_cmp(&fraction(a)).then(a.cmp(&b))
    });
    let given: u32 = counts.iter().sum();
    for &index in order
        .iter()
        .cycle()
        .take(total.saturating_sub(given) as usize)
    {
        counts[index] += 1;
    }
    counts
}

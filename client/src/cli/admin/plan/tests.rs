use trecho_common::hashing::slot;

use super::*;

fn shard(id: u32, slots: &[[u16; 2]], segments: u64) -> ShardLoad {
    ShardLoad {
        id,
        slots: slots.to_vec(),
        segments: Some(segments),
    }
}

/// Splits the slots evenly over `count` shards, as `ShardMap::even` does,
/// each with `segments` segments.
fn even(count: u32, segments: u64) -> Vec<ShardLoad> {
    let total = u32::from(SLOT_COUNT);
    (0..count)
        .map(|index| {
            let first = (total * index / count) as u16;
            let last = (total * (index + 1) / count - 1) as u16;
            shard(index, &[[first, last]], segments)
        })
        .collect()
}

/// Segments per slot of a schedule of 336 flights a day over 30 days,
/// placed by the real slot hash.
fn schedule_counts() -> Vec<u64> {
    let mut counts = vec![0; usize::from(SLOT_COUNT)];
    for flight in 0..336 {
        for day in 1..=30 {
            let id = format!("AD{}-2026-11-{day:02}", 1000 + flight);
            counts[usize::from(slot(&id))] += 1;
        }
    }
    counts
}

/// Returns the shards of `map`, with segments counted from `counts`.
fn loads_of(map: &ShardMap, counts: &[u64]) -> Vec<ShardLoad> {
    map.shards
        .iter()
        .map(|info| {
            let segments = info
                .slots
                .iter()
                .flat_map(|&[a, b]| a..=b)
                .map(|s| counts[usize::from(s)])
                .sum();
            shard(info.id, &info.slots, segments)
        })
        .collect()
}

/// Applies `plan` to the map of `shards`. `ShardMap::assign` checks after
/// every transfer that each slot has exactly one owner.
fn apply(shards: &[ShardLoad], plan: &[Transfer]) -> ShardMap {
    let mut map = owner_map(shards).unwrap();
    for transfer in plan {
        map.assign(transfer.first, transfer.last, transfer.to, "", 1)
            .unwrap();
    }
    map
}

fn with_counts(shards: Vec<ShardLoad>, counts: &[u64]) -> Vec<ShardLoad> {
    loads_of(&owner_map(&shards).unwrap(), counts)
}

fn assert_within(loads: &[ShardLoad], fraction: f64) {
    let total: u64 = loads.iter().map(|s| s.segments.unwrap()).sum();
    let mean = total as f64 / loads.len() as f64;
    for load in loads {
        let segments = load.segments.unwrap() as f64;
        assert!(
            (segments - mean).abs() <= mean * fraction,
            "shard {} has {segments} segments, mean {mean}",
            load.id
        );
    }
}

#[test]
fn move_plan_leaves_out_slots_at_target() {
    let shards = [
        shard(0, &[[0, 99]], 100),
        shard(1, &[[100, 199]], 100),
        shard(2, &[[200, 16383]], 16184),
    ];
    let plan = range_plan(&shards, 50, 250, 1).unwrap();
    let ranges: Vec<(u16, u16, u32, u32)> = plan
        .iter()
        .map(|t| (t.first, t.last, t.from, t.to))
        .collect();
    assert_eq!(ranges, [(50, 99, 0, 1), (200, 250, 2, 1)]);
    assert_eq!(plan[0].segments, 50);
    assert_eq!(plan[1].segments, 51);
}

#[test]
fn move_plan_of_owned_slots_is_empty() {
    let shards = even(2, 10);
    assert_eq!(range_plan(&shards, 0, 8191, 0).unwrap(), []);
    assert_eq!(range_plan(&shards, 17, 17, 0).unwrap(), []);
}

#[test]
fn move_plan_rejects_unknown_target() {
    let shards = even(2, 10);
    assert_eq!(range_plan(&shards, 0, 10, 9), Err(Error::UnknownShard(9)));
}

#[test]
fn batches_never_exceed_batch_size() {
    let shards = even(3, 3000);
    let plan = range_plan(&shards, 0, 16383, 2).unwrap();
    let planned: u32 = plan.iter().map(Transfer::slot_count).sum();
    let map = owner_map(&shards).unwrap();
    for batch in [1, 7, 256, 1000, SLOT_COUNT] {
        let moves = pending_moves(&map, &plan, batch);
        for step in &moves {
            assert!(step.slot_count() <= u32::from(batch), "{step:?}");
            assert_ne!(step.from, step.to, "{step:?}");
            for slot in step.first..=step.last {
                assert_eq!(map.owner_of_slot(slot).id, step.from, "{step:?}");
            }
        }
        let moved: u32 = moves.iter().map(Move::slot_count).sum();
        assert_eq!(moved, planned, "batch {batch}");
    }
}

#[test]
fn pending_moves_skip_slots_moved_since() {
    let shards = even(2, 1000);
    let plan = range_plan(&shards, 8000, 8500, 1).unwrap();
    let mut map = owner_map(&shards).unwrap();
    let before = pending_moves(&map, &plan, 100);
    assert_eq!(before.len(), 2);
    assert_eq!((before[0].first, before[0].last), (8000, 8099));
    assert_eq!((before[1].first, before[1].last), (8100, 8191));
    map.assign(8000, 8099, 1, "", 2).unwrap();
    let after = pending_moves(&map, &plan, 100);
    assert_eq!(after, before[1..]);
    map.assign(8100, 8191, 1, "", 3).unwrap();
    assert_eq!(pending_moves(&map, &plan, 100), []);
}

#[test]
fn rebalance_of_even_cluster_moves_nothing() {
    assert_eq!(rebalance_plan(&even(4, 2520), &[]).unwrap(), []);
}

#[test]
fn rebalance_within_tolerance_moves_nothing() {
    let mut shards = even(3, 3360);
    // Twice the square root of 3360 is about 116 segments.
    shards[0].segments = Some(3470);
    shards[2].segments = Some(3250);
    assert_eq!(rebalance_plan(&shards, &[]).unwrap(), []);
    shards[0].segments = Some(3490);
    shards[2].segments = Some(3230);
    assert!(!rebalance_plan(&shards, &[]).unwrap().is_empty());
}

#[test]
fn tolerance_is_one_percent_for_large_means() {
    assert_eq!(balance_tolerance(100.0), 20.0);
    assert_eq!(balance_tolerance(1_000_000.0), 10_000.0);
}

#[test]
fn rebalance_with_new_shard_gives_it_a_quarter() {
    let counts = schedule_counts();
    let mut shards = with_counts(even(3, 0), &counts);
    shards.push(shard(3, &[], 0));
    let plan = rebalance_plan(&shards, &[3]).unwrap();
    assert!(plan.iter().all(|t| t.to == 3), "{plan:?}");
    let after = loads_of(&apply(&shards, &plan), &counts);
    let new_shard = after.iter().find(|s| s.id == 3).unwrap();
    let quarter = counts.iter().sum::<u64>() as f64 / 4.0;
    let got = new_shard.segments.unwrap() as f64;
    assert!(
        (got - quarter).abs() <= quarter * 0.03,
        "{got} vs {quarter}"
    );
    assert_within(&after, 0.03);
}

#[test]
fn rebalance_keeps_givers_contiguous() {
    let counts = schedule_counts();
    let mut shards = with_counts(even(3, 0), &counts);
    shards.push(shard(3, &[], 0));
    let plan = rebalance_plan(&shards, &[3]).unwrap();
    let map = apply(&shards, &plan);
    for id in 0..3 {
        let ranges = &map.shard(id).unwrap().slots;
        assert_eq!(ranges.len(), 1, "shard {id}: {ranges:?}");
    }
    assert_eq!(plan.len(), 3, "one run from each giver: {plan:?}");
}

#[test]
fn rebalance_moves_only_from_overloaded_to_underloaded() {
    let mut shards = even(3, 0);
    shards[0].segments = Some(6000);
    shards[1].segments = Some(2000);
    shards[2].segments = Some(4000);
    let plan = rebalance_plan(&shards, &[]).unwrap();
    assert!(!plan.is_empty());
    assert!(plan.iter().all(|t| t.from == 0 && t.to == 1), "{plan:?}");
    let moved: u32 = plan.iter().map(Transfer::slot_count).sum();
    // Shard 0 has about 1.1 segments per slot and 2000 too many.
    let expected = (2000.0_f64 / (6000.0 / 5461.0)).round() as u32;
    assert_eq!(moved, expected);
    let projected = project(&shards, &plan);
    assert_eq!(projected[2].slots_after, projected[2].slots_now);
    assert!(projected[0].segments_after.unwrap().abs_diff(4000) <= 1);
    assert!(projected[1].segments_after.unwrap().abs_diff(4000) <= 1);
}

#[test]
fn rebalance_gives_from_end_bordering_taker() {
    let shards = [
        shard(0, &[[0, 8191]], 2000),
        shard(1, &[[8192, 16383]], 6000),
    ];
    let plan = rebalance_plan(&shards, &[]).unwrap();
    assert_eq!(plan.len(), 1, "{plan:?}");
    assert_eq!(plan[0].first, 8192);
    let map = apply(&shards, &plan);
    assert_eq!(map.shard(0).unwrap().slots.len(), 1);
    assert_eq!(map.shard(1).unwrap().slots, [[plan[0].last + 1, 16383]]);
}

#[test]
fn rebalance_settles_within_three_rounds() {
    let counts = schedule_counts();
    let mut shards = with_counts(even(2, 0), &counts);
    shards.push(shard(2, &[], 0));
    shards.push(shard(3, &[], 0));
    let mut include = vec![2, 3];
    let mut moved = Vec::new();
    for _ in 0..MAX_REBALANCE_ROUNDS {
        let plan = rebalance_plan(&shards, &include).unwrap();
        if plan.is_empty() {
            break;
        }
        moved.push(plan.iter().map(Transfer::slot_count).sum::<u32>());
        shards = loads_of(&apply(&shards, &plan), &counts);
        include.clear();
    }
    assert_eq!(rebalance_plan(&shards, &[]).unwrap(), []);
    assert!(moved.windows(2).all(|w| w[1] < w[0] / 4), "{moved:?}");
    let tolerance = balance_tolerance(counts.iter().sum::<u64>() as f64 / 4.0);
    assert_within(&shards, tolerance / 2520.0);
}

#[test]
fn rebalance_without_segments_evens_slots() {
    let mut shards = even(3, 0);
    shards.push(shard(3, &[], 0));
    let plan = rebalance_plan(&shards, &[3]).unwrap();
    let map = apply(&shards, &plan);
    for info in &map.shards {
        let slots: u32 = info.slots.iter().map(|&[a, b]| span(a, b)).sum();
        assert!(slots.abs_diff(4096) <= 1, "shard {}: {slots}", info.id);
    }
}

#[test]
fn rebalance_skips_slotless_shards_not_included() {
    let mut shards = even(3, 3000);
    shards.push(shard(3, &[], 0));
    assert_eq!(rebalance_plan(&shards, &[]).unwrap(), []);
    assert_eq!(rebalance_plan(&shards, &[7]), Err(Error::UnknownShard(7)));
}

#[test]
fn rebalance_needs_every_segment_count() {
    let mut shards = even(3, 3000);
    shards[1].segments = None;
    assert_eq!(rebalance_plan(&shards, &[]), Err(Error::NoSegmentCount(1)));
}

#[test]
fn remove_empties_shard_and_evens_others() {
    let counts = schedule_counts();
    let shards = with_counts(even(4, 0), &counts);
    let plan = remove_plan(&shards, 1).unwrap();
    assert!(plan.iter().all(|t| t.from == 1 && t.to != 1), "{plan:?}");
    let map = apply(&shards, &plan);
    assert!(map.shard(1).unwrap().slots.is_empty());
    let others: Vec<ShardLoad> = loads_of(&map, &counts)
        .into_iter()
        .filter(|s| s.id != 1)
        .collect();
    assert_within(&others, 0.03);
}

#[test]
fn remove_gives_least_loaded_the_most() {
    let mut shards = even(4, 0);
    shards[0].segments = Some(1000);
    shards[1].segments = Some(3000);
    shards[2].segments = Some(2000);
    shards[3].segments = Some(2400);
    let plan = remove_plan(&shards, 3).unwrap();
    let projected = project(&shards, &plan);
    // The water level is (2400 + 1000 + 2000) / 2 = 2700, under shard 1's
    // 3000, so shard 0 gets 1700 segments, shard 2 gets 700 and shard 1
    // gets none.
    assert!(projected[0].segments_after.unwrap().abs_diff(2700) <= 1);
    assert!(projected[2].segments_after.unwrap().abs_diff(2700) <= 1);
    assert_eq!(projected[1].slots_after, projected[1].slots_now);
    assert_eq!(projected[3].slots_after, 0);
}

#[test]
fn remove_hands_ranges_to_bordering_shards() {
    let shards = even(3, 3000);
    let [[low, high]] = shards[1].slots[..] else {
        panic!("one range: {:?}", shards[1].slots)
    };
    let plan = remove_plan(&shards, 1).unwrap();
    assert_eq!(plan.len(), 2, "{plan:?}");
    assert_eq!((plan[0].first, plan[0].to), (low, 0));
    assert_eq!((plan[1].last, plan[1].to), (high, 2));
    let map = apply(&shards, &plan);
    assert_eq!(map.shard(0).unwrap().slots.len(), 1);
    assert_eq!(map.shard(2).unwrap().slots.len(), 1);
}

#[test]
fn remove_of_segmentless_shard_evens_slots() {
    let mut shards = even(3, 3000);
    shards[2].segments = Some(0);
    let plan = remove_plan(&shards, 2).unwrap();
    let projected = project(&shards, &plan);
    assert!(projected[0].slots_after.abs_diff(8192) <= 1);
    assert!(projected[1].slots_after.abs_diff(8192) <= 1);
}

#[test]
fn remove_rejects_last_shard_with_slots() {
    let shards = [shard(0, &[[0, 16383]], 10), shard(1, &[], 0)];
    assert_eq!(remove_plan(&shards, 0), Err(Error::LastShard(0)));
}

#[test]
fn remove_of_slotless_shard_plans_nothing() {
    let shards = [shard(0, &[[0, 16383]], 10), shard(1, &[], 0)];
    assert_eq!(remove_plan(&shards, 1).unwrap(), []);
    assert_eq!(remove_plan(&shards, 5), Err(Error::UnknownShard(5)));
}

#[test]
fn every_slot_keeps_one_owner_after_plans() {
    let counts = schedule_counts();
    let mut grown = with_counts(even(3, 0), &counts);
    grown.push(shard(3, &[], 0));
    let plans = [
        (grown.clone(), rebalance_plan(&grown, &[3]).unwrap()),
        (grown.clone(), range_plan(&grown, 5000, 12000, 3).unwrap()),
        (
            with_counts(even(5, 0), &counts),
            remove_plan(&with_counts(even(5, 0), &counts), 4).unwrap(),
        ),
    ];
    for (shards, plan) in plans {
        assert!(!plan.is_empty());
        let map = apply(&shards, &plan);
        let owned: u32 = map
            .shards
            .iter()
            .flat_map(|s| &s.slots)
            .map(|&[a, b]| span(a, b))
            .sum();
        assert_eq!(owned, u32::from(SLOT_COUNT));
    }
}

#[test]
fn inconsistent_map_is_rejected() {
    let gap = [shard(0, &[[0, 100]], 1), shard(1, &[[200, 16383]], 1)];
    assert!(matches!(owner_map(&gap), Err(Error::Map(_))));
    let overlap = [shard(0, &[[0, 200]], 1), shard(1, &[[100, 16383]], 1)];
    assert!(matches!(owner_map(&overlap), Err(Error::Map(_))));
}

#[test]
fn apportion_sums_to_total() {
    assert_eq!(apportion(&[1.0, 1.0, 1.0], 10), [4, 3, 3]);
    assert_eq!(apportion(&[0.0, 2.0, 1.0], 7), [0, 5, 2]);
    assert_eq!(apportion(&[0.0, 0.0], 5), [3, 2]);
}

#[test]
fn water_fill_raises_lowest_first() {
    assert_eq!(water_fill(&[1.0, 3.0, 2.0], 2.0), [1.5, 0.0, 0.5]);
    assert_eq!(water_fill(&[5.0, 5.0], 4.0), [2.0, 2.0]);
}

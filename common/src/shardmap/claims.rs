//! Merging the maps that shards return into one cluster map. Routers use
//! it, and so do shards that send messages to each other.
//!
//! A shard's map is authoritative for the shard's own slots, but shows the
//! other shards' slots only as they were when it last learned of them. So
//! the owner of a slot is the shard that claims it in its own map. Two
//! shards claim a slot only between a move's import and its hand-off, and
//! the claim with the higher map version wins. A slot that no responding
//! shard claims keeps its owner from the newest map, which is the best
//! information available about the shards that did not respond.

use super::{Error, ShardInfo, ShardMap};
use crate::hashing::SLOT_COUNT;

/// Merges `answers`, each a shard's id and the map it returned, into one
/// map. Invalid maps are left out, and the result is `None` when no entry
/// of `answers` is a valid map.
///
/// The map's version is the highest of theirs. It lists every shard any of
/// them names, at the address the shard gives for itself, else at the one
/// in the newest map that names it.
///
/// # Errors
///
/// Returns the validation error of the merged map. Because invalid inputs
/// are left out, an error here means a bug in the merge.
pub fn merge_claims(answers: &[(u32, ShardMap)]) -> Option<Result<ShardMap, Error>> {
    // A map read off the wire has no slot table until it is checked.
    let answers: Vec<(u32, ShardMap)> = answers
        .iter()
        .filter_map(|(id, map)| {
            let mut map = map.clone();
            map.validate().ok()?;
            Some((*id, map))
        })
        .collect();
    let answers = answers.as_slice();
    let newest = &answers.iter().max_by_key(|(_, map)| map.version)?.1;
    let mut by_version: Vec<&ShardMap> = answers.iter().map(|(_, map)| map).collect();
    by_version.sort_by_key(|map| std::cmp::Reverse(map.version));
    let mut shards: Vec<ShardInfo> = Vec::new();
    for info in by_version.iter().flat_map(|map| &map.shards) {
        if !shards.iter().any(|known| known.id == info.id) {
            shards.push(ShardInfo {
                id: info.id,
                address: info.address.clone(),
                slots: Vec::new(),
            });
        }
    }
    // Each slot's owner and the version of its claim. Every slot starts
    // with its owner in the newest map and no claim version, and any
    // shard's claim of its own slot overrides that.
    let mut owners: Vec<(u32, Option<u64>)> = (0..SLOT_COUNT)
        .map(|slot| (newest.owner_of_slot(slot).id, None))
        .collect();
    for (id, map) in answers {
        let Ok(own) = map.shard(*id) else {
            continue;
        };
        if let Some(entry) = shards.iter_mut().find(|known| known.id == *id) {
            entry.address = own.address.clone();
        }
        for &[first, last] in &own.slots {
            for slot in first..=last {
                let owner = &mut owners[usize::from(slot)];
                if owner.1.is_none_or(|version| map.version > version) {
                    *owner = (*id, Some(map.version));
                }
            }
        }
    }
    for (slot, (owner, _)) in (0..SLOT_COUNT).zip(&owners) {
        if let Some(entry) = shards.iter_mut().find(|known| known.id == *owner) {
            match entry.slots.last_mut() {
                Some([_, last]) if *last + 1 == slot => *last = slot,
                _ => entry.slots.push([slot, slot]),
            }
        }
    }
    Some(ShardMap::new(newest.version, shards))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(version: u64, spec: &str) -> ShardMap {
        ShardMap::parse_spec(version, spec).unwrap()
    }

    #[test]
    fn empty_answers_give_no_map() {
        assert!(merge_claims(&[]).is_none());
    }

    #[test]
    fn unchecked_map_from_the_wire_merges() {
        let sent = map(2, "0=a:1@0-99;1=b:2@100-16383");
        let received: ShardMap =
            serde_json::from_str(&serde_json::to_string(&sent).unwrap()).unwrap();
        let merged = merge_claims(&[(1, received)]).unwrap().unwrap();
        assert_eq!(merged.owner_of_slot(5).id, 0);
    }

    #[test]
    fn target_claim_wins_before_the_hand_off() {
        // Shard 1 imported 0-99 at version 2; shard 0 has not handed off.
        let source = map(1, "0=a:1@0-8191;1=b:2@8192-16383");
        let target = map(2, "0=a:1@100-8191;1=b:2@0-99,8192-16383");
        let merged = merge_claims(&[(0, source), (1, target)]).unwrap().unwrap();
        assert_eq!(merged.version, 2);
        assert_eq!(merged.owner_of_slot(50).id, 1);
        assert_eq!(merged.owner_of_slot(100).id, 0);
    }

    #[test]
    fn own_claim_wins_over_stale_map() {
        // Shard 0 moved 0-99 to shard 1 at version 2. Shard 2 then moved
        // 10923-11022 to shard 0 at version 3 without hearing of the first
        // move, and shard 0 does not respond.
        let one = map(2, "0=a:1@100-5460;1=b:2@0-99,5461-10922;2=c:3@10923-16383");
        let two = map(
            3,
            "0=a:1@0-5460,10923-11022;1=b:2@5461-10922;2=c:3@11023-16383",
        );
        let merged = merge_claims(&[(2, two), (1, one)]).unwrap().unwrap();
        assert_eq!(merged.version, 3);
        assert_eq!(merged.owner_of_slot(0).id, 1, "shard 1 claims 0-99 itself");
        assert_eq!(merged.owner_of_slot(10923).id, 0);
        assert_eq!(merged.owner_of_slot(11023).id, 2);
        let zero = &merged.shard(0).unwrap().slots;
        assert_eq!(zero, &vec![[100, 5460], [10923, 11022]]);
    }

    #[test]
    fn silent_shard_keeps_newest_map_slots() {
        let zero = map(2, "0=a:1@0-99;1=b:2@100-16383;2=c:3@");
        let merged = merge_claims(&[(0, zero)]).unwrap().unwrap();
        assert_eq!(merged.owner_of_slot(200).id, 1);
        assert!(
            merged.shard(2).unwrap().slots.is_empty(),
            "shard 2 is listed"
        );
    }

    #[test]
    fn shard_address_comes_from_own_map() {
        let zero = map(2, "0=a:1@0-8191;1=old:2@8192-16383");
        let one = map(1, "0=a:1@0-8191;1=new:2@8192-16383");
        let merged = merge_claims(&[(0, zero), (1, one)]).unwrap().unwrap();
        assert_eq!(merged.shard(1).unwrap().address, "new:2");
    }
}

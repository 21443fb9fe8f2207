//! The shard map: which shard owns which slots, and where it listens.
//!
//! The map is data. It comes from configuration, carries a version, and is
//! what `cluster.status` shows. Every process checks it on start and refuses
//! a map that does not cover every slot exactly once.

use serde::{Deserialize, Serialize};

use crate::hashing::{slot, SLOT_COUNT};

mod claims;

pub use claims::merge_claims;

/// Errors found while checking a shard map.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The map lists no shards.
    #[error("the shard map lists no shards; give at least one shard with slots 0-16383")]
    Empty,
    /// Two shards share an id.
    #[error("shard id {0} appears twice in the shard map; give every shard its own id")]
    DuplicateId(u32),
    /// A range is reversed or reaches past the last slot.
    #[error("shard {shard} has an invalid slot range {first}-{last}; slots run from 0 to 16383 and first must not exceed last")]
    InvalidRange {
        /// The shard whose range is invalid.
        shard: u32,
        /// First slot of the range.
        first: u32,
        /// Last slot of the range.
        last: u32,
    },
    /// A slot is owned by two shards.
    #[error(
        "slot {slot} is owned by shards {first} and {second}; every slot needs exactly one owner"
    )]
    Overlap {
        /// The slot owned twice.
        slot: u16,
        /// One owner.
        first: u32,
        /// The other owner.
        second: u32,
    },
    /// A slot is owned by nobody.
    #[error(
        "slots {first}-{last} have no owner; every slot from 0 to 16383 needs exactly one shard"
    )]
    Gap {
        /// First unowned slot.
        first: u16,
        /// Last unowned slot of that run.
        last: u16,
    },
    /// A shard id named in configuration is not in the map.
    #[error("shard id {0} is not in the shard map")]
    UnknownShard(u32),
    /// A shard spec string could not be parsed.
    #[error("invalid shard spec {spec:?}: {reason}")]
    InvalidSpec {
        /// The text given.
        spec: String,
        /// What was wrong.
        reason: String,
    },
}

/// One shard's entry in the map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    /// Stable shard id.
    pub id: u32,
    /// Address the shard's internal protocol listens on, `host:port`.
    pub address: String,
    /// Inclusive `[first, last]` slot ranges.
    pub slots: Vec<[u16; 2]>,
}

/// The whole cluster's slot ownership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMap {
    /// Raised by every change of ownership.
    pub version: u64,
    /// Every shard, in no particular order.
    pub shards: Vec<ShardInfo>,
    /// Owner index into `shards` for every slot; filled by [`ShardMap::validate`].
    #[serde(skip)]
    owners: Vec<u32>,
}

impl ShardMap {
    /// Builds and checks a map.
    ///
    /// # Errors
    ///
    /// Returns an error when the shards do not cover every slot exactly once.
    pub fn new(version: u64, shards: Vec<ShardInfo>) -> Result<Self, Error> {
        let mut map = ShardMap {
            version,
            shards,
            owners: Vec::new(),
        };
        map.validate()?;
        Ok(map)
    }

    /// Splits the slots evenly over `addresses`, giving shard ids 0, 1, ...
    ///
    /// # Errors
    ///
    /// Returns [`Error::Empty`] when `addresses` is empty.
    pub fn even(addresses: &[String]) -> Result<Self, Error> {
        let count = addresses.len();
        if count == 0 {
            return Err(Error::Empty);
        }
        let total = usize::from(SLOT_COUNT);
        let shards = addresses
            .iter()
            .enumerate()
            .map(|(index, address)| {
                let first = total * index / count;
                let last = total * (index + 1) / count - 1;
                ShardInfo {
                    id: index as u32,
                    address: address.clone(),
                    slots: vec![[first as u16, last as u16]],
                }
            })
            .collect();
        Self::new(1, shards)
    }

    /// Parses `ID=HOST:PORT@FIRST-LAST[,FIRST-LAST...]` entries separated by
    /// `;`, as given on command lines and in environment variables.
    ///
    /// # Errors
    ///
    /// Returns an error for malformed text or a map that does not cover
    /// every slot exactly once.
    pub fn parse_spec(version: u64, spec: &str) -> Result<Self, Error> {
        let mut shards = Vec::new();
        for entry in spec.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            shards.push(parse_entry(entry)?);
        }
        Self::new(version, shards)
    }

    /// Checks the map and builds the slot lookup table.
    ///
    /// # Errors
    ///
    /// Returns the first problem found: duplicate ids, invalid ranges,
    /// overlaps or gaps.
    pub fn validate(&mut self) -> Result<(), Error> {
        if self.shards.is_empty() {
            return Err(Error::Empty);
        }
        let mut owners = vec![u32::MAX; usize::from(SLOT_COUNT)];
        for (index, shard) in self.shards.iter().enumerate() {
            if self.shards[..index].iter().any(|s| s.id == shard.id) {
                return Err(Error::DuplicateId(shard.id));
            }
            for &[first, last] in &shard.slots {
                if first > last || last >= SLOT_COUNT {
                    return Err(Error::InvalidRange {
                        shard: shard.id,
                        first: first.into(),
                        last: last.into(),
                    });
                }
                for slot in first..=last {
                    let owner = &mut owners[usize::from(slot)];
                    if *owner != u32::MAX {
                        return Err(Error::Overlap {
                            slot,
                            first: self.shards[*owner as usize].id,
                            second: shard.id,
                        });
                    }
                    *owner = index as u32;
                }
            }
        }
        if let Some(first) = owners.iter().position(|&o| o == u32::MAX) {
            let run = owners[first..].iter().take_while(|&&o| o == u32::MAX);
            let last = first + run.count() - 1;
            return Err(Error::Gap {
                first: first as u16,
                last: last as u16,
            });
        }
        self.owners = owners;
        Ok(())
    }

    /// Returns the shard that owns `slot`.
    pub fn owner_of_slot(&self, slot: u16) -> &ShardInfo {
        let index = self.owners[usize::from(slot % SLOT_COUNT)];
        &self.shards[index as usize]
    }

    /// Returns the shard that owns the slot of `key`.
    pub fn owner_of(&self, key: &str) -> &ShardInfo {
        self.owner_of_slot(slot(key))
    }

    /// Returns the shard with id `id`.
    ///
    /// # Errors
    ///
    /// Returns [`Error::UnknownShard`] when no shard has that id.
    pub fn shard(&self, id: u32) -> Result<&ShardInfo, Error> {
        self.shards
            .iter()
            .find(|s| s.id == id)
            .ok_or(Error::UnknownShard(id))
    }

    /// Returns whether shard `id` owns `slot`.
    pub fn owns(&self, id: u32, slot: u16) -> bool {
        self.owner_of_slot(slot).id == id
    }

    /// Gives slots `first..=last` to shard `to` at `address`, adding it
    /// when the map lacks it, and raises the version to `version` when
    /// that is higher. A shard left without slots stays in the map, so
    /// that its address is still known.
    ///
    /// # Errors
    ///
    /// Returns [`Error::InvalidRange`] for a reversed range or one past
    /// the last slot, and the map is then unchanged. Returns the error of
    /// [`ShardMap::validate`] when the map was invalid before the call, and
    /// the ranges are then already changed.
    pub fn assign(
        &mut self,
        first: u16,
        last: u16,
        to: u32,
        address: &str,
        version: u64,
    ) -> Result<(), Error> {
        if first > last || last >= SLOT_COUNT {
            return Err(Error::InvalidRange {
                shard: to,
                first: first.into(),
                last: last.into(),
            });
        }
        for shard in &mut self.shards {
            let mut kept = Vec::with_capacity(shard.slots.len() + 1);
            for &[a, b] in &shard.slots {
                if b < first || a > last {
                    kept.push([a, b]);
                    continue;
                }
                if a < first {
                    kept.push([a, first - 1]);
                }
                if b > last {
                    kept.push([last + 1, b]);
                }
            }
            shard.slots = kept;
        }
        let index = match self.shards.iter().position(|s| s.id == to) {
            Some(index) => index,
            None => {
                self.shards.push(ShardInfo {
                    id: to,
                    address: address.to_owned(),
                    slots: Vec::new(),
                });
                self.shards.len() - 1
            }
        };
        let target = &mut self.shards[index];
        target.address = address.to_owned();
        target.slots.push([first, last]);
        target.slots = merged(&target.slots);
        self.version = self.version.max(version);
        self.validate()
    }
}

/// Sorts inclusive ranges and joins those that touch or overlap.
pub fn merged(ranges: &[[u16; 2]]) -> Vec<[u16; 2]> {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<[u16; 2]> = Vec::with_capacity(sorted.len());
    for [first, last] in sorted {
        match out.last_mut() {
            Some(previous) if u32::from(first) <= u32::from(previous[1]) + 1 => {
                previous[1] = previous[1].max(last);
            }
            _ => out.push([first, last]),
        }
    }
    out
}

fn parse_entry(entry: &str) -> Result<ShardInfo, Error> {
    let invalid = |reason: &str| Error::InvalidSpec {
        spec: entry.to_owned(),
        reason: reason.to_owned(),
    };
    let (id, rest) = entry
        .split_once('=')
        .ok_or_else(|| invalid("expected ID=HOST:PORT@FIRST-LAST"))?;
    let (address, ranges) = rest
        .split_once('@')
        .ok_or_else(|| invalid("missing @ before the slot ranges"))?;
    let id = id
        .trim()
        .parse()
        .map_err(|_| invalid("the shard id must be a whole number"))?;
    let mut slots = Vec::new();
    // `ID=HOST:PORT@` with nothing after the `@` is a shard that owns no
    // slots yet, such as one started to join a running cluster.
    for range in ranges.split(',').filter(|r| !r.trim().is_empty()) {
        let (first, last) = range.split_once('-').unwrap_or((range, range));
        let first = first.trim().parse();
        let last = last.trim().parse();
        match (first, last) {
            (Ok(first), Ok(last)) => slots.push([first, last]),
            _ => return Err(invalid("slot ranges look like 0-5460,10000-10010")),
        }
    }
    Ok(ShardInfo {
        id,
        address: address.trim().to_owned(),
        slots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Vec<String> {
        ["a:1", "b:2", "c:3"].map(String::from).to_vec()
    }

    #[test]
    fn assign_moves_range_and_adds_shard() {
        let mut map = ShardMap::even(&three()).unwrap();
        map.assign(100, 199, 7, "d:4", 2).unwrap();
        assert_eq!(map.version, 2);
        assert_eq!(map.owner_of_slot(100).id, 7);
        assert_eq!(map.owner_of_slot(199).id, 7);
        assert_eq!(map.owner_of_slot(99).id, 0);
        assert_eq!(map.shard(0).unwrap().slots, vec![[0, 99], [200, 5460]]);
        map.assign(100, 199, 0, "a:1", 3).unwrap();
        assert_eq!(map.shard(0).unwrap().slots, vec![[0, 5460]]);
        assert!(map.shard(7).unwrap().slots.is_empty());
        assert!(map.assign(5, 4, 0, "a:1", 4).is_err());
    }

    #[test]
    fn spec_entry_without_ranges_owns_no_slots() {
        let map = ShardMap::parse_spec(1, "0=a:1@0-16383;1=b:2@").unwrap();
        assert!(map.shard(1).unwrap().slots.is_empty());
    }

    #[test]
    fn even_split_covers_every_slot() {
        let map = ShardMap::even(&three()).unwrap();
        assert_eq!(map.shards[0].slots, vec![[0, 5460]]);
        assert_eq!(map.shards[1].slots, vec![[5461, 10921]]);
        assert_eq!(map.shards[2].slots, vec![[10922, 16383]]);
        assert_eq!(map.owner_of_slot(0).id, 0);
        assert_eq!(map.owner_of_slot(5461).id, 1);
        assert_eq!(map.owner_of_slot(16383).id, 2);
    }

    #[test]
    fn spec_parses_ranges_and_lists() {
        let map = ShardMap::parse_spec(7, "0=h0:1@0-99,200-16383; 1=h1:2@100-199").unwrap();
        assert_eq!(map.version, 7);
        assert_eq!(map.owner_of_slot(150).address, "h1:2");
        assert_eq!(map.owner_of_slot(250).id, 0);
        assert!(map.owns(1, 100));
    }

    #[test]
    fn gap_is_rejected() {
        let err = ShardMap::parse_spec(1, "0=a:1@0-100;1=b:1@102-16383").unwrap_err();
        assert_eq!(
            err,
            Error::Gap {
                first: 101,
                last: 101
            }
        );
    }

    #[test]
    fn overlap_is_rejected() {
        let err = ShardMap::parse_spec(1, "0=a:1@0-100;1=b:1@100-16383").unwrap_err();
        assert_eq!(
            err,
            Error::Overlap {
                slot: 100,
                first: 0,
                second: 1
            }
        );
    }

    #[test]
    fn out_of_range_and_duplicates_are_rejected() {
        let err = ShardMap::parse_spec(1, "0=a:1@0-16384").unwrap_err();
        assert!(matches!(err, Error::InvalidRange { .. }));
        let err = ShardMap::parse_spec(1, "0=a:1@0-10;0=b:1@11-16383").unwrap_err();
        assert_eq!(err, Error::DuplicateId(0));
        assert_eq!(ShardMap::parse_spec(1, "").unwrap_err(), Error::Empty);
        assert!(ShardMap::parse_spec(1, "x=a:1@0-16383").is_err());
    }
}

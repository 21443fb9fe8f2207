//! The router's links to shards, in a table that only grows, so that
//! requests read it without a lock while shards join the running cluster.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use trecho_common::link::{LinkOptions, ShardLink};

/// Maximum number of shards that a router links to during its lifetime.
/// Link indices must fit the `u16` stored per slot.
pub(crate) const MAX_LINKS: usize = 1024;

/// One entry of the table.
struct Entry {
    link: OnceLock<ShardLink>,
    /// Whether the shard owns at least one slot in the map in use, so that
    /// requests sent to every shard can skip the shards without slots.
    owns_slots: AtomicBool,
}

/// Links by index, in the order they were added. An index never changes.
pub(crate) struct LinkTable {
    entries: Box<[Entry]>,
    /// Entries below this index are set. It is raised after the entry is
    /// set, with release ordering, so that readers that load it see the
    /// link.
    count: AtomicUsize,
    /// Lock held while a link is added, so that two additions never take
    /// the same entry or link the same shard twice.
    adding: Mutex<()>,
    options: LinkOptions,
}

/// The table contains [`MAX_LINKS`] links already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableFull;

impl LinkTable {
    /// Builds an empty table whose links use `options`.
    pub(crate) fn new(options: LinkOptions) -> Self {
        let entries = (0..MAX_LINKS)
            .map(|_| Entry {
                link: OnceLock::new(),
                owns_slots: AtomicBool::new(false),
            })
            .collect();
        LinkTable {
            entries,
            count: AtomicUsize::new(0),
            adding: Mutex::new(()),
            options,
        }
    }

    /// Returns the number of links.
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Returns the link at `index`.
    ///
    /// # Panics
    ///
    /// Panics when `index` is not below [`LinkTable::len`], which cannot
    /// happen for indices that the table returned.
    pub(crate) fn get(&self, index: usize) -> &ShardLink {
        self.entries[index]
            .link
            .get()
            .expect("link indices come from the table, and entries below its length are set")
    }

    /// Returns every link with its index.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (usize, &ShardLink)> + '_ {
        let count = self.len();
        self.entries[..count]
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| entry.link.get().map(|link| (index, link)))
    }

    /// Returns the index of the link to shard `shard`, if there is one.
    pub(crate) fn index_of(&self, shard: u32) -> Option<usize> {
        self.iter()
            .find(|(_, link)| link.shard() == shard)
            .map(|(index, _)| index)
    }

    /// Returns the index of the link to shard `shard`, and starts one to
    /// `address` when there is none. There is one link per shard id, so
    /// when a map gives a linked shard another address, the old link stays.
    ///
    /// Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// Returns [`TableFull`] when the shard is new and the table contains
    /// [`MAX_LINKS`] links.
    pub(crate) fn ensure(&self, shard: u32, address: &str) -> Result<usize, TableFull> {
        let _adding = match self.adding.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(index) = self.index_of(shard) {
            let link = self.get(index);
            if link.address() != address {
                // NOTE: a shard that moved to a new address keeps being
                // reached at its old one until the router restarts.
                tracing::warn!(
                    shard.id = shard,
                    address = link.address(),
                    map.address = address,
                    "shard address changed in the map, keeping the link to the old address; \
                     restart the router to use the new one"
                );
            }
            return Ok(index);
        }
        let index = self.len();
        let entry = self.entries.get(index).ok_or(TableFull)?;
        let link = ShardLink::spawn(shard, address.to_owned(), self.options.clone());
        if entry.link.set(link).is_err() {
            unreachable!(
                "entries at or above the count are unset, and only this lock's holder sets them"
            );
        }
        self.count.store(index + 1, Ordering::Release);
        tracing::info!(shard.id = shard, address, "link to shard started");
        Ok(index)
    }

    /// Records whether the shard at `index` owns slots.
    pub(crate) fn set_owns_slots(&self, index: usize, owns: bool) {
        self.entries[index]
            .owns_slots
            .store(owns, Ordering::Relaxed);
    }

    /// Returns whether the shard at `index` owns slots in the map in use.
    pub(crate) fn owns_slots(&self, index: usize) -> bool {
        self.entries[index].owns_slots.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ensure_adds_once_per_shard_and_keeps_indices() {
        let table = LinkTable::new(LinkOptions::default());
        assert_eq!(table.len(), 0);
        let first = table.ensure(7, "127.0.0.1:9").unwrap();
        let second = table.ensure(3, "127.0.0.1:9").unwrap();
        assert_eq!((first, second), (0, 1));
        assert_eq!(table.ensure(7, "127.0.0.1:9"), Ok(0));
        assert_eq!(table.len(), 2);
        assert_eq!(table.get(1).shard(), 3);
        assert_eq!(table.index_of(3), Some(1));
        assert_eq!(table.index_of(4), None);
        let shards: Vec<u32> = table.iter().map(|(_, link)| link.shard()).collect();
        assert_eq!(shards, [7, 3]);
    }

    #[tokio::test]
    async fn ensure_keeps_first_address_of_a_shard() {
        let table = LinkTable::new(LinkOptions::default());
        table.ensure(1, "127.0.0.1:9").unwrap();
        assert_eq!(table.ensure(1, "127.0.0.1:10"), Ok(0));
        assert_eq!(table.get(0).address(), "127.0.0.1:9");
    }

    #[tokio::test]
    async fn full_table_rejects_a_new_shard() {
        let table = LinkTable::new(LinkOptions::default());
        for shard in 0..MAX_LINKS as u32 {
            table.ensure(shard, "127.0.0.1:9").unwrap();
        }
        assert_eq!(table.ensure(u32::MAX, "127.0.0.1:9"), Err(TableFull));
        assert_eq!(
            table.ensure(5, "127.0.0.1:9"),
            Ok(5),
            "known shards still resolve"
        );
    }
}

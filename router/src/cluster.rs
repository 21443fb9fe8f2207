//! What every request handler shares: the shard map, the links to the
//! shards, the schedule and its route index.
//!
//! The shards own the map. The router routes with the map it has, and
//! refreshes it from the shards when one of them rejects a request for a
//! slot that it does not own or is moving, and also every
//! `map_refresh_ms` (see [`Cluster::refresh`]). Shards may join while the
//! router runs, so every map that the router routes by gets a link to each
//! shard it names. Lookups read one atomic per slot and links from a table
//! that only grows, so requests take no lock.

mod links;

use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::value::RawValue;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::MissedTickBehavior;
use trecho_common::error::Error;
use trecho_common::hashing::{slot, SLOT_COUNT};
use trecho_common::internal::{ShardOp, ShardReply};
use trecho_common::link::{LinkOptions, ShardLink};
use trecho_common::protocol::methods::{AirportView, AirportsResult};
use trecho_common::schedule::Schedule;
use trecho_common::shardmap::{ShardInfo, ShardMap};

use crate::admin::Admin;
use crate::config::RouterConfig;
use crate::routes::RouteIndex;

use links::LinkTable;
pub(crate) use links::MAX_LINKS;

/// The router's view of the cluster, shared by handlers through an `Arc`.
pub(crate) struct Cluster {
    /// The map in use, for `cluster.status`; requests route by
    /// `slot_owner`.
    map: Mutex<ShardMap>,
    /// Version of `map`, shared with the links, which write it into every
    /// request.
    map_version: Arc<AtomicU64>,
    /// One link per shard that any map so far has named.
    links: LinkTable,
    /// Index into `links` of the owner of every slot.
    slot_owner: Vec<AtomicU16>,
    /// Lock held by the refresh in progress, so that many rejections at
    /// once cause one refresh, and by [`Cluster::add_empty_shard`].
    refreshing: tokio::sync::Mutex<()>,
    /// Refreshes started so far; raised only under `refreshing`.
    refreshes: AtomicU64,
    /// Count of refreshes in a row in which no shard returned a valid map,
    /// which rate-limits the warning.
    failed_refreshes: AtomicU64,
    /// Shards added with `admin.add_shard` that own no slots yet. The
    /// other shards learn of a shard only when slots move to it, so their
    /// maps lack these and a refresh adds them back.
    added: Mutex<Vec<ShardInfo>>,
    schedule: Schedule,
    routes: RouteIndex,
    /// The `airports.list` result, encoded once.
    airports: Arc<RawValue>,
    prepare_timeout_ms: u64,
    /// One permit per request that asks every shard, across all clients.
    /// Their answers can be large (a search of up to 1,000 segments from
    /// each shard), so this bounds the memory they take.
    fanouts: Arc<Semaphore>,
    admin: Admin,
}

impl Cluster {
    /// Starts a link to every shard of `map`. Must be called inside a Tokio
    /// runtime.
    ///
    /// # Errors
    ///
    /// Returns a message when `map` names more than [`MAX_LINKS`] shards.
    pub(crate) fn start(
        map: ShardMap,
        schedule: Schedule,
        config: &RouterConfig,
    ) -> Result<Self, String> {
        if map.shards.len() > MAX_LINKS {
            return Err(format!(
                "the shard map names {} shards, and a router links to at most {MAX_LINKS}",
                map.shards.len()
            ));
        }
        let map_version = Arc::new(AtomicU64::new(map.version));
        let options = LinkOptions {
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            map_version: map_version.clone(),
            ..LinkOptions::default()
        };
        let slot_owner = (0..SLOT_COUNT).map(|_| AtomicU16::new(0)).collect();
        let cluster = Cluster {
            links: LinkTable::new(options),
            slot_owner,
            refreshing: tokio::sync::Mutex::new(()),
            refreshes: AtomicU64::new(0),
            failed_refreshes: AtomicU64::new(0),
            added: Mutex::new(Vec::new()),
            map_version,
            routes: RouteIndex::new(&schedule),
            airports: encode_airports(&schedule),
            schedule,
            map: Mutex::new(map.clone()),
            prepare_timeout_ms: config.prepare_timeout_ms,
            fanouts: Arc::new(Semaphore::new(config.max_fanouts)),
            admin: Admin::new(config),
        };
        // The map names at most MAX_LINKS shards, so every one gets a link.
        let _ = cluster.route_by(&map);
        Ok(cluster)
    }

    /// Starts a link to every shard of `map` that has none, then points
    /// every slot at its owner under `map`. Returns false, changing no
    /// route, when `map` names more shards than the router can link to.
    fn route_by(&self, map: &ShardMap) -> bool {
        let mut indices = Vec::with_capacity(map.shards.len());
        for shard in &map.shards {
            match self.links.ensure(shard.id, &shard.address) {
                Ok(index) => indices.push((shard.id, index)),
                Err(links::TableFull) => {
                    tracing::error!(
                        shard.id = shard.id,
                        shard.address = %shard.address,
                        map_version = map.version,
                        max_links = MAX_LINKS,
                        "shards' map names more shards than the router can link to; keeping \
                         the old map"
                    );
                    return false;
                }
            }
        }
        let index_of = |id: u32| {
            let found = indices.iter().find(|(shard, _)| *shard == id);
            found.map_or(0, |(_, index)| *index as u16)
        };
        for (slot, owner) in (0..SLOT_COUNT).zip(&self.slot_owner) {
            owner.store(index_of(map.owner_of_slot(slot).id), Ordering::Release);
        }
        for (index, link) in self.links.iter() {
            let owns = map
                .shards
                .iter()
                .any(|s| s.id == link.shard() && !s.slots.is_empty());
            self.links.set_owns_slots(index, owns);
        }
        self.map_version.store(map.version, Ordering::Relaxed);
        if let Ok(mut current) = self.map.lock() {
            *current = map.clone();
        }
        true
    }

    /// Requests the map of every shard, merges them (see
    /// [`merge_claims`](trecho_common::shardmap::merge_claims)) and
    /// routes by the result when it differs from the map in use, even when
    /// its version is lower, because a map that no shard uses is wrong.
    /// Shards added with `admin.add_shard` that the result lacks stay in
    /// it. Callers that find a slot owned elsewhere call this before they
    /// retry. A call that waits while another refresh runs does its own
    /// afterwards, unless a refresh started after the call did.
    pub(crate) async fn refresh(&self) {
        let started_before = self.refreshes.load(Ordering::Acquire);
        let _guard = self.refreshing.lock().await;
        if self.refreshes.load(Ordering::Acquire) != started_before {
            return;
        }
        self.refreshes.fetch_add(1, Ordering::AcqRel);
        let seen = self.map();
        let answers = self.shard_maps().await;
        let merged = match trecho_common::shardmap::merge_claims(&answers) {
            Some(Ok(map)) => self.with_added(map),
            Some(Err(error)) => Err(error),
            None => {
                let failed = self.failed_refreshes.fetch_add(1, Ordering::Relaxed) + 1;
                if failed.is_power_of_two() {
                    tracing::warn!(
                        failed_refreshes = failed,
                        "no shard returned its shard map; keeping the map in use"
                    );
                }
                return;
            }
        };
        self.failed_refreshes.store(0, Ordering::Relaxed);
        let newest = match merged {
            Ok(map) => map,
            Err(error) => {
                tracing::error!(
                    %error,
                    "shards' maps merged into an invalid map, keeping the current map"
                );
                return;
            }
        };
        if same_routes(&newest, &seen) {
            return;
        }
        if newest.version <= seen.version {
            // The shards own the map, so a router map that no shard uses is
            // wrong however high its version. Route by the shards' map.
            tracing::error!(
                router.map_version = seen.version,
                shards.map_version = newest.version,
                "router's shard map differs from every shard's; using the shards' map, start \
                 routers with --seeds to take it from the shards"
            );
        }
        if self.route_by(&newest) {
            tracing::info!(
                from = seen.version,
                to = newest.version,
                shards = newest.shards.len(),
                "shard map refreshed from the shards"
            );
        }
    }

    /// Requests every linked shard's map; returns the valid ones with the
    /// id of the shard that sent each.
    async fn shard_maps(&self) -> Vec<(u32, ShardMap)> {
        let calls = self
            .links
            .iter()
            .map(|(_, link)| async move { (link.shard(), link.call(&ShardOp::ClusterMap).await) });
        let mut maps = Vec::new();
        for (shard, answer) in futures::future::join_all(calls).await {
            let Ok(ShardReply::ClusterMap { map }) = answer else {
                continue;
            };
            match ShardMap::new(map.version, map.shards) {
                Ok(map) => maps.push((shard, map)),
                Err(error) => {
                    tracing::warn!(shard.id = shard, %error, "shard returned an invalid shard map");
                }
            }
        }
        maps
    }

    /// Refreshes the map every `every` while `cluster` is in use.
    /// Searches and listings are never rejected for a stale map, so this
    /// bounds how long they miss a shard that got its first slots from a
    /// move another router ran.
    pub(crate) async fn refresh_periodically(cluster: Weak<Cluster>, every: Duration) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(cluster) = cluster.upgrade() else {
                return;
            };
            cluster.refresh().await;
        }
    }

    /// Checks `map` from a shard and adds the shards of `added` it lacks,
    /// with no slots.
    fn with_added(&self, map: ShardMap) -> Result<ShardMap, trecho_common::shardmap::Error> {
        let mut shards = map.shards;
        if let Ok(mut added) = self.added.lock() {
            // Once the shards' map names a shard, the router no longer needs
            // to add it.
            added.retain(|extra| !shards.iter().any(|s| s.id == extra.id));
            shards.extend(added.iter().cloned());
        }
        ShardMap::new(map.version, shards)
    }

    /// Adds shard `id` at `address` to the map in use with no slots, and
    /// starts a link to it. The shard stays in the router's map across
    /// refreshes until the shards' maps name it.
    ///
    /// # Errors
    ///
    /// Returns `invalid_params` when the map would be invalid (the id is
    /// taken), and an internal error when the router links to
    /// [`MAX_LINKS`] shards already.
    pub(crate) async fn add_empty_shard(&self, id: u32, address: &str) -> Result<(), Error> {
        let _guard = self.refreshing.lock().await;
        let entry = ShardInfo {
            id,
            address: address.to_owned(),
            slots: Vec::new(),
        };
        let mut map = self.map();
        map.shards.push(entry.clone());
        map.validate().map_err(|error| {
            Error::invalid_params(format!("shard {id} cannot join the map: {error}"))
        })?;
        if !self.route_by(&map) {
            return Err(Error::internal(format!(
                "shard {id} cannot join: the router links to {MAX_LINKS} shards already, the \
                 most it can; restart it to drop links to shards no map names"
            )));
        }
        if let Ok(mut added) = self.added.lock() {
            added.push(entry);
        }
        Ok(())
    }

    /// Returns the version of the map in use.
    pub(crate) fn map_version(&self) -> u64 {
        self.map_version.load(Ordering::Relaxed)
    }

    /// Takes a permit for a request that asks every shard, or returns
    /// `overloaded` when `max_fanouts` of them are in progress.
    pub(crate) fn fanout_permit(&self) -> Result<OwnedSemaphorePermit, Error> {
        self.fanouts
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::Overloaded {
                message: "the router's limit of searches and listings in progress across all \
                      clients (max_fanouts) is reached; retry in a moment"
                    .to_owned(),
            })
    }

    /// Returns a copy of the map in use.
    pub(crate) fn map(&self) -> ShardMap {
        match self.map.lock() {
            Ok(map) => map.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Returns every link with its index, in the order they were added,
    /// including links to shards that own no slots.
    pub(crate) fn links(&self) -> impl Iterator<Item = (usize, &ShardLink)> + '_ {
        self.links.iter()
    }

    /// Returns the links to shards that own slots in the map in use, with
    /// their indices. A request sent to every shard needs these shards.
    pub(crate) fn owner_links(&self) -> impl Iterator<Item = (usize, &ShardLink)> + '_ {
        self.links
            .iter()
            .filter(|(index, _)| self.links.owns_slots(*index))
    }

    /// Returns the number of links; every link index is below it.
    pub(crate) fn link_count(&self) -> usize {
        self.links.len()
    }

    /// Returns the link at `index`, an index that [`Cluster::owner_of_slot`]
    /// or [`Cluster::links`] gave.
    pub(crate) fn link(&self, index: usize) -> &ShardLink {
        self.links.get(index)
    }

    /// Returns the index of the link to shard `shard`, if there is one.
    pub(crate) fn link_index(&self, shard: u32) -> Option<usize> {
        self.links.index_of(shard)
    }

    /// Returns the index of the link to the shard that owns `slot`.
    pub(crate) fn owner_of_slot(&self, slot: u16) -> usize {
        usize::from(self.slot_owner[usize::from(slot % SLOT_COUNT)].load(Ordering::Acquire))
    }

    /// Returns the index of the link to the shard that owns segment `id`.
    pub(crate) fn owner_of_segment(&self, id: &str) -> usize {
        self.owner_of_slot(slot(id))
    }

    pub(crate) fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    pub(crate) fn routes(&self) -> &RouteIndex {
        &self.routes
    }

    /// Returns the encoded `airports.list` result.
    pub(crate) fn airports(&self) -> Arc<RawValue> {
        self.airports.clone()
    }

    /// Returns how long participants keep prepared seats, in milliseconds.
    pub(crate) fn prepare_timeout_ms(&self) -> u64 {
        self.prepare_timeout_ms
    }

    /// Returns the admin methods' settings and state.
    pub(crate) fn admin(&self) -> &Admin {
        &self.admin
    }

    /// Returns the map version shared with the links, for a link created
    /// outside the table.
    pub(crate) fn map_version_handle(&self) -> Arc<AtomicU64> {
        self.map_version.clone()
    }
}

/// Returns whether `a` and `b` have the same version, list the same
/// shards at the same addresses in any order, and give every slot the same
/// owner, however their ranges are split.
fn same_routes(a: &ShardMap, b: &ShardMap) -> bool {
    let mut shards_a: Vec<(u32, &str)> = a.shards.iter().map(|s| (s.id, &*s.address)).collect();
    let mut shards_b: Vec<(u32, &str)> = b.shards.iter().map(|s| (s.id, &*s.address)).collect();
    shards_a.sort_unstable();
    shards_b.sort_unstable();
    a.version == b.version
        && shards_a == shards_b
        && (0..SLOT_COUNT).all(|slot| a.owner_of_slot(slot).id == b.owner_of_slot(slot).id)
}

/// Encodes every airport of the schedule, by code.
fn encode_airports(schedule: &Schedule) -> Arc<RawValue> {
    let mut airports: Vec<AirportView> = schedule
        .airports
        .iter()
        .map(|a| AirportView {
            code: a.code.clone(),
            name: a.name.clone(),
            city: a.city.clone(),
        })
        .collect();
    airports.sort_by(|a, b| a.code.cmp(&b.code));
    let result = AirportsResult { airports };
    let text = serde_json::to_string(&result).expect("strings and vectors always encode as JSON");
    Arc::from(RawValue::from_string(text).expect("serde_json output is valid JSON"))
}

#[cfg(test)]
mod tests;
